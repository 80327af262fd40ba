//! Spectro-perfectionism extraction (Bolton & Schlegel 2010) as specter's `ex2d` does it with
//! desispec's settings (reference/extraction.md §4): the bundle is split into sub-bundles,
//! each sub-bundle × wavelength block is a patch with pixel and wavelength padding, patches
//! are solved independently (in parallel) and stitched in a fixed order, so results do not
//! depend on the thread count.

pub mod boxcar;
pub mod geometry;
pub mod patch;
pub mod scores;
pub mod simcheck;

use ndarray::{Array2, Array3, ArrayView2};
use rayon::prelude::*;

use crate::psf::GaussHermitePsf;
use geometry::{np_gradient, split_bundle, SpotBoxes};
pub use patch::{Decorrelation, PatchOptions, PatchResult, PatchSpec, PatchWorkspace};

/// A problem with the extraction request.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("invalid extraction request: {0}")]
    Invalid(String),
}

/// Extraction parameters (desispec defaults in [`ExtractParams::new`]).
#[derive(Debug, Clone)]
pub struct ExtractParams {
    /// First fiber (0-based PSF index) and number of fibers.
    pub specmin: usize,
    pub nspec: usize,
    /// Output wavelength grid `[nwave]`, Angstrom; must be linear.
    pub wave: Vec<f64>,
    /// Fibers per bundle (independent groups).
    pub bundlesize: usize,
    /// Sub-bundles per bundle.
    pub nsubbundles: usize,
    /// Core wavelength bins per patch.
    pub nwavestep: usize,
    /// Extra CCD rows as a fraction of the spot height.
    pub pixpad_frac: f64,
    /// Extra wavelength padding as a fraction of the spot height.
    pub wavepad_frac: f64,
    /// Fractional PSF model error for chi2pix.
    pub psferr: f64,
    /// Regularisation added to every flux bin (0 = none).
    pub regularize: f64,
    pub decorrelation: Decorrelation,
    /// Also return the model image.
    pub want_model: bool,
}

impl ExtractParams {
    /// desispec's production settings for fibers `specmin .. specmin+nspec` on `wave`.
    pub fn new(specmin: usize, nspec: usize, wave: Vec<f64>, psferr: f64) -> Self {
        ExtractParams {
            specmin,
            nspec,
            wave,
            bundlesize: 25,
            nsubbundles: 5,
            nwavestep: 50,
            pixpad_frac: 0.8,
            wavepad_frac: 0.2,
            psferr,
            regularize: 0.0,
            decorrelation: Decorrelation::PerFiber,
            want_model: false,
        }
    }
}

/// Extraction results, per Angstrom (flux electrons/Angstrom, ivar its inverse variance).
#[derive(Debug, Clone)]
pub struct Extraction {
    /// `[nspec, nwave]`, electrons/Angstrom.
    pub flux: Array2<f64>,
    /// `[nspec, nwave]`, (electrons/Angstrom)^-2.
    pub ivar: Array2<f64>,
    /// Resolution diagonals `[nspec, 2·ndiag+1, nwave]`, DESI band storage.
    pub resolution: Array3<f64>,
    /// `[nspec, nwave]`.
    pub chi2pix: Array2<f64>,
    /// `[nspec, nwave]`, fraction of the PSF-weighted pixels that are masked.
    pub pixmask_fraction: Array2<f64>,
    /// Model image `[npix_y, npix_x]` (electrons), if requested.
    pub model: Option<Array2<f64>>,
}

/// Half width of the stored resolution band (specter: 9 sigma of the widest spot in
/// wavelength bins, capped by half the spot size).
pub fn resolution_ndiag(psf: &GaussHermitePsf, dw: f64) -> usize {
    let (wmin, wmax) = psf.wrange_any();
    let nf = psf.nfiber();
    let rows: Vec<f64> = (0..psf.npix_y).map(|y| y as f64).collect();
    let mut ndiag = 0i64;
    for f in [0, nf / 2, nf - 1] {
        // angstroms_per_pixel: np.interp(w, ww, gradient(ww)) over the CCD rows.
        let ww: Vec<f64> = rows.iter().map(|&y| psf.wavelength(f, y)).collect();
        let g = np_gradient(&ww);
        for w in [wmin, 0.5 * (wmin + wmax), wmax] {
            let app = np_interp(w, &ww, &g);
            let wdisp = app * psf.ysigma(f, w);
            // Python round() rounds half to even.
            ndiag = ndiag.max((9.0 * wdisp / dw).round_ties_even() as i64);
        }
    }
    let (lo, hi) = psf.wrange_all();
    let mut sb = SpotBoxes::new(psf);
    let (sny, snx) = sb.pix_shape(0, 0.5 * (lo + hi));
    ndiag.max(0).min((sny / 2) as i64).min((snx / 2) as i64) as usize
}

/// `numpy.interp(x, xp, fp)` for increasing `xp`, clamped at the ends.
fn np_interp(x: f64, xp: &[f64], fp: &[f64]) -> f64 {
    let n = xp.len();
    if x <= xp[0] {
        return fp[0];
    }
    if x >= xp[n - 1] {
        return fp[n - 1];
    }
    let i = xp.partition_point(|&v| v <= x) - 1;
    let t = (x - xp[i]) / (xp[i + 1] - xp[i]);
    fp[i] + t * (fp[i + 1] - fp[i])
}

/// The patches of the extraction, in specter's order (bundle, sub-bundle, wavelength block),
/// with the output positions of their kept results: (spec, first output fiber of each kept
/// fiber, first output bin).
pub fn plan(
    psf: &GaussHermitePsf,
    p: &ExtractParams,
    ndiag: usize,
) -> Result<Vec<(PatchSpec, Vec<usize>, usize)>, ExtractError> {
    let nwave = p.wave.len();
    if nwave < 2 {
        return Err(ExtractError::Invalid(
            "the wavelength grid needs at least 2 bins".into(),
        ));
    }
    let dw = p.wave[1] - p.wave[0];
    // ex2d requires a linear grid (np.allclose(dw, np.diff(wave))).
    if p.wave
        .windows(2)
        .any(|w| ((w[1] - w[0]) - dw).abs() > 1e-8 + 1e-5 * dw.abs())
        || dw <= 0.0
    {
        return Err(ExtractError::Invalid(
            "the wavelength grid must be linear and increasing".into(),
        ));
    }
    if p.specmin + p.nspec > psf.nfiber() || p.nspec == 0 {
        return Err(ExtractError::Invalid(format!(
            "fibers {}..{} outside the PSF's {} fibers",
            p.specmin,
            p.specmin + p.nspec,
            psf.nfiber()
        )));
    }
    if p.bundlesize == 0 || p.nsubbundles == 0 || p.nwavestep == 0 {
        return Err(ExtractError::Invalid(
            "bundlesize, nsubbundles and nwavestep must be > 0".into(),
        ));
    }
    let end = p.specmin + p.nspec;
    let bundles: Vec<usize> = (p.specmin..end).step_by(p.bundlesize).collect();
    // Bundles are planned in parallel (each with its own spot-box cache), kept in order.
    let per_bundle: Vec<Result<Vec<PlannedPatch>, ExtractError>> = bundles
        .par_iter()
        .map(|&bundlelo| plan_bundle(psf, p, ndiag, bundlelo, (bundlelo + p.bundlesize).min(end)))
        .collect();
    let mut out = Vec::new();
    for b in per_bundle {
        out.extend(b?);
    }
    Ok(out)
}

/// One planned patch: its spec, the output fiber of each kept fiber, the first output bin.
pub type PlannedPatch = (PatchSpec, Vec<usize>, usize);

fn plan_bundle(
    psf: &GaussHermitePsf,
    p: &ExtractParams,
    ndiag: usize,
    bundlelo: usize,
    bundlehi: usize,
) -> Result<Vec<PlannedPatch>, ExtractError> {
    let nwave = p.wave.len();
    let dw = p.wave[1] - p.wave[0];
    let mut sb = SpotBoxes::new(psf);
    let npix_y = psf.npix_y as i64;
    let mut out = Vec::new();
    {
        for (core, ext) in split_bundle(bundlehi - bundlelo, p.nsubbundles) {
            if core.is_empty() {
                continue;
            }
            let speclo = bundlelo + ext[0];
            let spechi = bundlelo + ext[ext.len() - 1] + 1;
            let keep: Vec<usize> = ext
                .iter()
                .enumerate()
                .filter(|(_, f)| core.contains(f))
                .map(|(i, _)| i)
                .collect();
            let outfib: Vec<usize> = keep
                .iter()
                .map(|&i| bundlelo + ext[i] - p.specmin)
                .collect();
            let mut iwave = 0;
            while iwave < nwave {
                let wlo = p.wave[iwave];
                // Core block [iwave, iwave+nwavestep): specter's outputs match cores that do not
                // overlap (the stored snapshot's cores overlapped by one bin).
                let whi = p.wave[(iwave + p.nwavestep).min(nwave) - 1];
                let (xlo, xhi, mut ylo, mut yhi) = sb.xyrange(speclo, spechi, wlo, whi);
                let (sny, _) = sb.pix_shape(speclo, wlo);
                // Pixel padding, clipped to the CCD; then wavelength padding beyond it.
                let extra = (p.pixpad_frac * sny as f64).round_ties_even() as i64;
                ylo = (ylo - extra).max(0);
                yhi = (yhi + extra).min(npix_y);
                let wpad = (p.wavepad_frac * sny as f64) as i64;
                let ymin = ylo - wpad;
                let ymax = yhi + wpad;
                let nlo = (((wlo - psf.wavelength(speclo, ymin as f64)) / dw) as i64 - 1)
                    .max(ndiag as i64) as usize;
                let nhi = (((psf.wavelength(speclo, ymax as f64) - whi) / dw) as i64 - 1)
                    .max(ndiag as i64) as usize;
                let ww =
                    geometry::np_arange(wlo - nlo as f64 * dw, whi + (nhi as f64 + 0.5) * dw, dw);
                if ww.len() <= nlo + nhi {
                    return Err(ExtractError::Invalid(format!("empty patch at {wlo} A")));
                }
                out.push((
                    PatchSpec {
                        speclo,
                        nspec: spechi - speclo,
                        waves: ww,
                        xlo,
                        xhi,
                        ylo,
                        yhi,
                        nlo,
                        nhi,
                        keep: keep.clone(),
                    },
                    outfib.clone(),
                    iwave,
                ));
                iwave += p.nwavestep;
            }
        }
    }
    Ok(out)
}

/// Extracts fibers `p.specmin ..` from `image`/`ivar` (`[npix_y, npix_x]`, ivar zero where
/// masked). Patches run in parallel on the current rayon pool and are stitched in plan order.
pub fn ex2d(
    psf: &GaussHermitePsf,
    image: ArrayView2<f32>,
    ivar: ArrayView2<f32>,
    p: &ExtractParams,
) -> Result<Extraction, ExtractError> {
    ex2d_comm(psf, image, ivar, p, &crate::comm::SingleComm)?
        .ok_or_else(|| ExtractError::Invalid("single-process extraction returned no result".into()))
}

/// Like [`ex2d`], with the bundles spread over the ranks of `comm` (contiguous shares, as
/// specter's MPI driver does) and the results gathered on rank 0, which returns
/// `Some(extraction)`; other ranks return `None`. Every rank needs the same inputs.
/// Patch results are stitched in plan order, so the output does not depend on the number
/// of ranks or threads.
pub fn ex2d_comm(
    psf: &GaussHermitePsf,
    image: ArrayView2<f32>,
    ivar: ArrayView2<f32>,
    p: &ExtractParams,
    comm: &dyn crate::comm::Comm,
) -> Result<Option<Extraction>, ExtractError> {
    if image.dim() != (psf.npix_y, psf.npix_x) || ivar.dim() != image.dim() {
        return Err(ExtractError::Invalid(format!(
            "image shape {:?} does not match the PSF's CCD {}x{} (rows x columns)",
            image.dim(),
            psf.npix_y,
            psf.npix_x
        )));
    }
    let nwave = p.wave.len();
    let dw = if nwave > 1 {
        p.wave[1] - p.wave[0]
    } else {
        1.0
    };
    let ndiag = resolution_ndiag(psf, dw);
    let patches = plan(psf, p, ndiag)?;
    let opts = PatchOptions {
        regularize: p.regularize,
        psferr: p.psferr,
        ndiag,
        decorrelation: p.decorrelation,
        want_model: p.want_model,
        want_full_r: false,
    };
    // This rank's bundles (contiguous share of the bundle list).
    let nbundles = p.nspec.div_ceil(p.bundlesize);
    let mine = crate::comm::share(nbundles, comm.rank(), comm.size());
    let bundle_of = |of: usize| of / p.bundlesize;
    let my_patches: Vec<usize> = (0..patches.len())
        .filter(|&i| {
            patches[i]
                .1
                .first()
                .is_some_and(|&of| mine.contains(&bundle_of(of)))
        })
        .collect();

    let nd = 2 * ndiag + 1;
    let mut out = Stitched::new(
        p.nspec,
        nd,
        nwave,
        p.want_model.then_some((psf.npix_y, psf.npix_x)),
    );
    let mut mine_results: Vec<PatchResult> = Vec::new();
    // Patches in flight are bounded by chunks; each chunk is solved in parallel and stitched
    // in plan order, so memory does not grow with the frame and output is thread-invariant.
    let chunk = (rayon::current_num_threads() * 4).max(1);
    for group in my_patches.chunks(chunk) {
        let results: Vec<PatchResult> = group
            .par_iter()
            .map_init(
                || PatchWorkspace::new(psf),
                |ws, &i| patch::solve_patch(psf, image, ivar, &patches[i].0, &opts, ws),
            )
            .collect();
        if comm.size() == 1 {
            for (&i, r) in group.iter().zip(&results) {
                out.put(&patches[i], r, nwave);
            }
        } else {
            mine_results.extend(results);
        }
    }
    if comm.size() > 1 {
        let bytes = encode_results(&mine_results);
        let gathered = comm.gather_bytes(0, &bytes);
        let Some(all) = gathered else { return Ok(None) };
        // Ranks hold contiguous bundle shares in rank order, i.e. plan order.
        let mut it = all.iter().flat_map(|b| decode_results(b, p.want_model));
        for spec in &patches {
            let r = it.next().ok_or_else(|| {
                ExtractError::Invalid("a rank returned fewer patches than planned".into())
            })?;
            out.put(spec, &r, nwave);
        }
    }
    Ok(Some(out.finish(&p.wave)))
}

/// The frame being assembled from patch results.
struct Stitched {
    flux: Array2<f64>,
    ivar: Array2<f64>,
    res: Array3<f64>,
    chi2: Array2<f64>,
    pmf: Array2<f64>,
    model: Option<Array2<f64>>,
}

impl Stitched {
    fn new(nspec: usize, nd: usize, nwave: usize, model: Option<(usize, usize)>) -> Self {
        Stitched {
            flux: Array2::zeros((nspec, nwave)),
            ivar: Array2::zeros((nspec, nwave)),
            res: Array3::zeros((nspec, nd, nwave)),
            chi2: Array2::zeros((nspec, nwave)),
            pmf: Array2::zeros((nspec, nwave)),
            model: model.map(Array2::zeros),
        }
    }

    fn put(
        &mut self,
        (spec, outfib, iwave): &(PatchSpec, Vec<usize>, usize),
        r: &PatchResult,
        nwave: usize,
    ) {
        let nd = self.res.dim().1;
        let ncore = spec.waves.len() - spec.nlo - spec.nhi;
        let ncopy = ncore.min(nwave - iwave);
        for (k, &of) in outfib.iter().enumerate() {
            for c in 0..ncopy {
                self.flux[[of, iwave + c]] = r.flux[k * ncore + c];
                self.ivar[[of, iwave + c]] = r.ivar[k * ncore + c];
                self.chi2[[of, iwave + c]] = r.chi2pix[k * ncore + c];
                self.pmf[[of, iwave + c]] = r.pixmask_fraction[k * ncore + c];
                for d in 0..nd {
                    self.res[[of, d, iwave + c]] = r.rdiag[(k * nd + d) * ncore + c];
                }
            }
        }
        if let (Some(m), Some(pm)) = (self.model.as_mut(), r.model.as_ref()) {
            // specter: overlapping patch models overwrite each other in patch order.
            let nx = (spec.xhi - spec.xlo) as usize;
            for (i, &v) in pm.iter().enumerate() {
                m[[spec.ylo as usize + i / nx, spec.xlo as usize + i % nx]] = v;
            }
        }
    }

    fn finish(mut self, wave: &[f64]) -> Extraction {
        // Electrons per bin -> per Angstrom (np.gradient of the grid).
        let dwave = np_gradient(wave);
        for i in 0..self.flux.nrows() {
            for (j, &d) in dwave.iter().enumerate() {
                self.flux[[i, j]] /= d;
                self.ivar[[i, j]] *= d * d;
            }
        }
        Extraction {
            flux: self.flux,
            ivar: self.ivar,
            resolution: self.res,
            chi2pix: self.chi2,
            pixmask_fraction: self.pmf,
            model: self.model,
        }
    }
}

/// Patch results as bytes for gathering over MPI (little-endian f64 runs with lengths).
fn encode_results(rs: &[PatchResult]) -> Vec<u8> {
    let mut b = Vec::new();
    let mut put = |v: &[f64]| {
        b.extend_from_slice(&(v.len() as u64).to_le_bytes());
        for x in v {
            b.extend_from_slice(&x.to_le_bytes());
        }
    };
    for r in rs {
        put(&r.flux);
        put(&r.ivar);
        put(&r.rdiag);
        put(&r.chi2pix);
        put(&r.pixmask_fraction);
        put(r.model.as_deref().unwrap_or(&[]));
    }
    b
}

fn decode_results(b: &[u8], want_model: bool) -> Vec<PatchResult> {
    let mut pos = 0;
    let mut get = || -> Option<Vec<f64>> {
        let n = u64::from_le_bytes(b.get(pos..pos + 8)?.try_into().ok()?) as usize;
        pos += 8;
        let v = (0..n)
            .map(|i| {
                f64::from_le_bytes(b[pos + 8 * i..pos + 8 * i + 8].try_into().unwrap_or([0; 8]))
            })
            .collect();
        pos += 8 * n;
        Some(v)
    };
    let mut out = Vec::new();
    while let (Some(flux), Some(ivar), Some(rdiag), Some(chi2pix), Some(pmf), Some(model)) =
        (get(), get(), get(), get(), get(), get())
    {
        out.push(PatchResult {
            flux,
            ivar,
            rdiag,
            chi2pix,
            pixmask_fraction: pmf,
            model: want_model.then_some(model),
            r_full: None,
        });
    }
    out
}

#[cfg(test)]
mod tests;
