//! One extraction patch (specter `ex2d_patch`, reference/extraction.md §4.1–4.2 and §4.4):
//! projection matrix from the Gauss-Hermite spots, normal equations with the minweight
//! prior, flux, per-fiber (or full) Bolton–Schlegel decorrelation, chi2pix and
//! pixmask_fraction.
//!
//! Unknowns are ordered by wavelength then fiber inside the solver, which makes the normal
//! matrix banded (spots only overlap their neighbours in fiber and wavelength): a banded
//! Cholesky gives the flux, and the fiber blocks of the covariance come from
//! [`BandCholesky::inverse_blocks`] without forming the dense inverse. A patch whose normal
//! matrix is not numerically positive definite, or so ill-conditioned that specter's
//! eigenvalue floor would act on it, falls back to specter's dense eigen path (see
//! [`COND_SWITCH`]).

use ndarray::ArrayView2;

use crate::banded::{BandCholesky, BandMatrix};
use crate::linalg::{eigen_compose, eigh_in_place, EigenFn, LinalgError};
use crate::psf::{GaussHermitePsf, SpotEvaluator};

/// Estimated condition number of the normal matrix above which a patch leaves the banded path
/// for specter's dense eigen path.
///
/// The banded path computes the exact (unfloored) fiber blocks `C_ss` of `C = (AᵀWA)⁻¹`, whose
/// entries carry round-off of order `ε·‖C‖`. The small eigenvalues of `C_ss` (the well-measured
/// bins, which set ivar) are at least `1/λmax(AᵀWA)`, so their relative error is about
/// `ε·cond`. When bins are seen only by PSF wings (e.g. a sky line masked across every fiber)
/// `cond` reaches 1e17–1e19: the round-off swamps those eigenvalues, `C_ss^(-1/2)` turns them
/// into huge row sums and ivar came out at 1e7–1e10. specter floors the eigenvalues of
/// `AᵀWA` at `10ε·λmax` (cond ≤ 4.5e14), which bounds `‖C‖` and keeps its blocks sane; where
/// that floor is active the banded path cannot reproduce specter anyway, so such patches run
/// specter's own algorithm. The estimate `max_i M_ii · max(λmax(C_ss), 1/min pivot²)`
/// undershoots the true condition number by up to ~1e3 (it only sees the kept fibers' blocks
/// and the Cholesky pivots), hence the switch three decades below specter's floor; patches with
/// zero-weight bins at the CCD edges (cond ≈ 1e8–1e10, one decoupled direction each) stay
/// banded.
pub const COND_SWITCH: f64 = 1e-3 / (10.0 * f64::EPSILON);

/// Which decorrelation gives R and ivar (reference §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Decorrelation {
    /// Per-fiber ("signal") decorrelation, desispec's default: R never mixes fibers.
    PerFiber,
    /// Full Bolton–Schlegel decorrelation `Q = (C⁻¹)^½` (specter `ndecorr=True`).
    Full,
}

/// What one patch solves.
#[derive(Debug, Clone)]
pub struct PatchSpec {
    /// First fiber (PSF index) and number of fibers of the extraction set.
    pub speclo: usize,
    pub nspec: usize,
    /// Patch wavelengths `[nw]` (Angstrom), including the padding bins.
    pub waves: Vec<f64>,
    /// Pixel box `[xlo, xhi) × [ylo, yhi)` (absolute CCD pixels).
    pub xlo: i64,
    pub xhi: i64,
    pub ylo: i64,
    pub yhi: i64,
    /// Core bins `nlo .. nw - nhi`.
    pub nlo: usize,
    pub nhi: usize,
    /// Fibers of the extraction set (0-based within it) whose results are kept.
    pub keep: Vec<usize>,
}

/// Results of one patch for its kept fibers and core bins, per electrons per bin (not yet
/// divided by the bin width). Arrays are `[nkeep][ncore]` flattened row-major, R diagonals
/// `[nkeep][2·ndiag+1][ncore]`.
#[derive(Debug, Clone, Default)]
pub struct PatchResult {
    pub flux: Vec<f64>,
    pub ivar: Vec<f64>,
    pub rdiag: Vec<f64>,
    pub chi2pix: Vec<f64>,
    pub pixmask_fraction: Vec<f64>,
    /// Model image `A f̂` of the pixel box `[ny][nx]`, if requested.
    pub model: Option<Vec<f64>>,
    /// Full (untruncated) R block `[nw][nw]` of each kept fiber, if requested.
    pub r_full: Option<Vec<Vec<f64>>>,
}

/// Options shared by all patches.
#[derive(Debug, Clone, Copy)]
pub struct PatchOptions {
    pub regularize: f64,
    pub psferr: f64,
    pub ndiag: usize,
    pub decorrelation: Decorrelation,
    pub want_model: bool,
    /// Keep each kept fiber's full R block (tests and diagnostics).
    pub want_full_r: bool,
}

/// Per-thread scratch reused across patches.
pub struct PatchWorkspace {
    ev: SpotEvaluator,
    spot: Vec<f64>,
    /// Buffers of the projection matrix, reused across patches (they are the large ones).
    stamps: Vec<(i64, i64, usize, usize)>,
    vals: Vec<f64>,
    fill: Vec<usize>,
    proj: Projection,
}

impl PatchWorkspace {
    pub fn new(psf: &GaussHermitePsf) -> Self {
        let ev = psf.evaluator();
        let spot = vec![0.0; ev.max_len()];
        PatchWorkspace {
            ev,
            spot,
            stamps: Vec::new(),
            vals: Vec::new(),
            fill: Vec::new(),
            proj: Projection::default(),
        }
    }
}

/// The sparse projection matrix of a patch, stored by pixel (CSR): for pixel p of the box,
/// `entries[start[p]..start[p+1]]` are (unknown in band order `iw·nspec + is`, value), in
/// increasing band order (so the normal-matrix updates of a pixel stay in the lower band).
#[derive(Default)]
struct Projection {
    start: Vec<usize>,
    entries: Vec<(u32, f64)>,
}

fn projection(psf: &GaussHermitePsf, spec: &PatchSpec, ws: &mut PatchWorkspace) {
    let nsp = spec.nspec;
    let nx = (spec.xhi - spec.xlo).max(0) as usize;
    let ny = (spec.yhi - spec.ylo).max(0) as usize;
    let npix = nx * ny;
    let params = psf.spot_params(spec.speclo, nsp, &spec.waves);
    let wr: Vec<(f64, f64)> = (0..nsp)
        .map(|is| psf.fiber_wrange(spec.speclo + is))
        .collect();
    // First pass, unknowns in band order: clipped stamps (one flat buffer) and pixel counts.
    ws.stamps.clear();
    ws.vals.clear();
    let start = &mut ws.proj.start;
    start.clear();
    start.resize(npix + 1, 0);
    for (iw, &w) in spec.waves.iter().enumerate() {
        for (is, &(wlo, whi)) in wr.iter().enumerate() {
            // specter's xypix: no spot for wavelengths off the CCD for this fiber.
            if w < wlo || w > whi {
                ws.stamps.push((0, 0, 0, 0));
                continue;
            }
            let st = ws.ev.eval(&params.get(is, iw), &mut ws.spot);
            match st.clip(spec.xlo, spec.xhi, spec.ylo, spec.yhi) {
                Some((c, dx, dy)) => {
                    ws.stamps.push((c.x0, c.y0, c.nx, c.ny));
                    for r in 0..c.ny {
                        let src = &ws.spot[(r + dy) * st.nx + dx..(r + dy) * st.nx + dx + c.nx];
                        ws.vals.extend_from_slice(src);
                        let p0 =
                            (c.y0 + r as i64 - spec.ylo) as usize * nx + (c.x0 - spec.xlo) as usize;
                        for c in start[p0 + 1..p0 + 1 + src.len()].iter_mut() {
                            *c += 1;
                        }
                    }
                }
                None => ws.stamps.push((0, 0, 0, 0)),
            }
        }
    }
    for p in 0..npix {
        start[p + 1] += start[p];
    }
    ws.fill.clear();
    ws.fill.extend_from_slice(&start[..npix]);
    let entries = &mut ws.proj.entries;
    entries.clear();
    entries.resize(start[npix], (0, 0.0));
    let mut off = 0;
    for (b, &(x0, y0, snx, sny)) in ws.stamps.iter().enumerate() {
        for r in 0..sny {
            let p0 = (y0 + r as i64 - spec.ylo) as usize * nx + (x0 - spec.xlo) as usize;
            for c in 0..snx {
                let p = p0 + c;
                entries[ws.fill[p]] = (b as u32, ws.vals[off + r * snx + c]);
                ws.fill[p] += 1;
            }
        }
        off += snx * sny;
    }
}

/// Solves one patch. `image` and `ivar` are full-CCD `[npix_y, npix_x]` views (ivar already
/// zero where the mask excludes a pixel); the image may be f32 (preproc files) or f64.
pub fn solve_patch<T: Copy + Into<f64>>(
    psf: &GaussHermitePsf,
    image: ArrayView2<T>,
    ivar: ArrayView2<f32>,
    spec: &PatchSpec,
    opts: &PatchOptions,
    ws: &mut PatchWorkspace,
) -> PatchResult {
    let nw = spec.waves.len();
    let nsp = spec.nspec;
    let n = nsp * nw;
    let nx = (spec.xhi - spec.xlo).max(0) as usize;
    let ny = (spec.yhi - spec.ylo).max(0) as usize;
    projection(psf, spec, ws);
    let proj = &ws.proj;

    // Pixel values and weights of the box, f64 as specter uses them.
    let mut pix = vec![0.0; nx * ny];
    let mut wpix = vec![0.0; nx * ny];
    for r in 0..ny {
        let yy = (spec.ylo + r as i64) as usize;
        for c in 0..nx {
            let xx = (spec.xlo + c as i64) as usize;
            pix[r * nx + c] = image[[yy, xx]].into();
            wpix[r * nx + c] = f64::from(ivar[[yy, xx]]);
        }
    }

    // Band width from the pixels' sets of unknowns.
    let mut bw = 0usize;
    for p in 0..nx * ny {
        let e = &proj.entries[proj.start[p]..proj.start[p + 1]];
        if e.len() > 1 {
            let (mut lo, mut hi) = (usize::MAX, 0);
            for &(b, _) in e {
                lo = lo.min(b as usize);
                hi = hi.max(b as usize);
            }
            bw = bw.max(hi - lo);
        }
    }

    // Normal equations A^T W A (band order) and A^T W p, and the flux weights.
    let mut icov = BandMatrix::zeros(n, bw);
    let mut y = vec![0.0; n];
    let mut fluxweight = vec![0.0; n];
    let mut bidx: Vec<(usize, f64)> = Vec::with_capacity(64);
    for p in 0..nx * ny {
        let w = wpix[p];
        let e = &proj.entries[proj.start[p]..proj.start[p + 1]];
        if w == 0.0 || e.is_empty() {
            continue;
        }
        bidx.clear();
        bidx.extend(e.iter().map(|&(b, v)| (b as usize, v)));
        let wp = w * pix[p];
        for (a, &(ba, va)) in bidx.iter().enumerate() {
            fluxweight[ba] += w * va;
            y[ba] += wp * va;
            let wva = w * va;
            // Entries are in increasing band order, so (ba, bb) is in the lower band.
            for &(bb, vb) in &bidx[..=a] {
                icov.add(ba, bb, wva * vb);
            }
        }
    }
    let maxweight = fluxweight.iter().cloned().fold(0.0, f64::max);
    let all_masked = maxweight <= 0.0;
    // The minweight prior (reference §4.1): pins bins seen only by a few pixels / wings.
    let minweight = 1e-4 * maxweight;
    for (b, &fw) in fluxweight.iter().enumerate() {
        let alpha = if fw < minweight {
            minweight - fw
        } else {
            opts.regularize
        };
        if alpha != 0.0 {
            icov.add(b, b, alpha * alpha);
        }
    }
    if all_masked {
        // specter substitutes 1e-8·I: flux 0, R = I, ivar set to 0 below.
        for b in 0..n {
            icov.add(b, b, 1e-8);
        }
    }

    // xflux (band order), R blocks and ivar for kept fibers.
    let keep = &spec.keep;
    let ncore = nw - spec.nlo - spec.nhi;
    let nd = 2 * opts.ndiag + 1;
    let mut out = PatchResult {
        flux: vec![0.0; keep.len() * ncore],
        ivar: vec![0.0; keep.len() * ncore],
        rdiag: vec![0.0; keep.len() * nd * ncore],
        chi2pix: vec![0.0; keep.len() * ncore],
        pixmask_fraction: vec![0.0; keep.len() * ncore],
        model: None,
        r_full: None,
    };

    let solved = match opts.decorrelation {
        Decorrelation::PerFiber => banded_per_fiber(icov.clone(), &y, nsp, nw, keep).ok(),
        Decorrelation::Full => None,
    };
    if opts.decorrelation == Decorrelation::PerFiber && !matches!(solved, Some(Some(_))) {
        log::debug!(
            "patch fibers {}..{} from {:.1} A: ill-conditioned normal matrix, dense path",
            spec.speclo,
            spec.speclo + nsp,
            spec.waves.first().copied().unwrap_or(0.0)
        );
    }
    let (xflux, blocks) = match solved.flatten() {
        Some(v) => v,
        None => dense_path(&icov, &y, nsp, nw, keep, opts.decorrelation),
    };

    for (k, &is) in keep.iter().enumerate() {
        let (r, ivar_f, rflux) = &blocks[k];
        for (c, j) in (spec.nlo..nw - spec.nhi).enumerate() {
            let fw = fluxweight[j * nsp + is];
            out.flux[k * ncore + c] = rflux[j];
            // specter zeroes ivar where no pixel weight reaches the bin.
            // Last-resort guard against round-off: with Q = S^(1/2), S = C_ss⁻¹ the Schur
            // complement (S_jj ≤ M_jj), s_j = (Q e_j)·1 ≤ √nw·√S_jj, so ivar_j ≤ nw·M_jj in
            // exact arithmetic. A bin above it carries no trustworthy information: ivar 0.
            let bound = nw as f64 * icov.get(j * nsp + is, j * nsp + is);
            let iv = ivar_f[j];
            out.ivar[k * ncore + c] =
                if all_masked || fw == 0.0 || iv.is_nan() || iv > bound * IVAR_SLACK {
                    0.0
                } else {
                    iv
                };
            for d in 0..nd {
                // Rd[d, j] = R[j - ndiag + d, j]: column j of the fiber block.
                let row = j + d - opts.ndiag;
                out.rdiag[(k * nd + d) * ncore + c] = r[row * nw + j];
            }
        }
    }

    // chi2pix and pixmask_fraction from f̂ (reference §4.4).
    let npix = nx * ny;
    let mut model = vec![0.0; npix];
    for (p, m) in model.iter_mut().enumerate() {
        let mut s = 0.0;
        for &(b, v) in &proj.entries[proj.start[p]..proj.start[p + 1]] {
            s += v * xflux[b as usize];
        }
        *m = if s.is_finite() { s } else { 0.0 };
    }
    let mut chi2 = vec![0.0; n];
    let mut psfweight = vec![0.0; n];
    let mut unmasked = vec![0.0; n];
    for p in 0..npix {
        let w = wpix[p];
        let mv = model[p] * opts.psferr + 1e-32;
        let modelivar = 1.0 / (mv * mv);
        let tot = if modelivar > 0.0 && w > 0.0 {
            1.0 / (1.0 / modelivar + 1.0 / w)
        } else {
            0.0
        };
        let chi = (pix[p] - model[p]) * tot.sqrt();
        let chi2p = chi * chi;
        for &(b, v) in &proj.entries[proj.start[p]..proj.start[p + 1]] {
            let b = b as usize;
            chi2[b] += v * chi2p;
            if tot > 0.0 {
                psfweight[b] += v;
            }
            if w > 0.0 {
                unmasked[b] += v;
            }
        }
    }
    for (k, &is) in keep.iter().enumerate() {
        for (c, j) in (spec.nlo..nw - spec.nhi).enumerate() {
            let b = j * nsp + is;
            out.chi2pix[k * ncore + c] = if psfweight[b] == 0.0 {
                0.0
            } else {
                chi2[b] / psfweight[b]
            };
            out.pixmask_fraction[k * ncore + c] = 1.0 - unmasked[b];
        }
    }
    if opts.want_model {
        out.model = Some(model);
    }
    if opts.want_full_r {
        out.r_full = Some(blocks.into_iter().map(|b| b.0).collect());
    }
    out
}

/// Relative slack on the exact-arithmetic bound `ivar_j ≤ nw·M_jj` (eigenvalue floors and
/// round-off move ivar by ≪ 1e-6 relative on any patch where the bound is meaningful).
const IVAR_SLACK: f64 = 1.0 + 1e-6;

/// One kept fiber: (R block `[nw][nw]` row-major, ivar `[nw]`, R·f̂ `[nw]`).
type FiberBlock = (Vec<f64>, Vec<f64>, Vec<f64>);
type FiberBlocks = Vec<FiberBlock>;

/// Banded path: Cholesky, flux, and per kept fiber the covariance block → Q = C_ss^(-1/2).
/// `Ok(None)` when the patch is too ill-conditioned for it ([`COND_SWITCH`]).
fn banded_per_fiber(
    l: BandMatrix,
    y: &[f64],
    nsp: usize,
    nw: usize,
    keep: &[usize],
) -> Result<Option<(Vec<f64>, FiberBlocks)>, LinalgError> {
    let n = l.n();
    let max_diag = (0..n).map(|i| l.get(i, i)).fold(0.0, f64::max);
    let l: BandCholesky = l.cholesky()?;
    // 1/min pivot² ≤ λmax(C): a first, cheap look at the conditioning.
    let min_piv2 = (0..n)
        .map(|i| l.pivot(i).powi(2))
        .fold(f64::INFINITY, f64::min);
    let mut cmax = 1.0 / min_piv2;
    if too_ill_conditioned(max_diag * cmax) {
        return Ok(None);
    }
    let mut x = y.to_vec();
    l.solve_in_place(&mut x);
    let groups: Vec<Vec<usize>> = keep
        .iter()
        .map(|&is| (0..nw).map(|iw| iw * nsp + is).collect())
        .collect();
    let cblocks = l.inverse_blocks(&groups);
    let mut blocks = Vec::with_capacity(keep.len());
    for (c, cols) in cblocks.into_iter().zip(&groups) {
        let xs: Vec<f64> = cols.iter().map(|&b| x[b]).collect();
        let (block, lmax) = decorrelate_block(c, nw, &xs)?;
        cmax = cmax.max(lmax);
        blocks.push(block);
    }
    // λmax(C_ss) ≤ λmax(C): the second look, over the kept fibers' blocks.
    if too_ill_conditioned(max_diag * cmax) {
        return Ok(None);
    }
    Ok(Some((x, blocks)))
}

/// Whether a condition estimate sends the patch to the dense path (NaN counts as too large).
fn too_ill_conditioned(est: f64) -> bool {
    est.is_nan() || est > COND_SWITCH
}

/// Q = C_ss^(-1/2) with specter's eigenvalue floor; R = diag(1/s) Q, ivar = s², R·x. Also
/// returns λmax(C_ss).
fn decorrelate_block(
    mut c: Vec<f64>,
    nw: usize,
    xs: &[f64],
) -> Result<(FiberBlock, f64), LinalgError> {
    let w = eigh_in_place(&mut c, nw)?;
    let lmax = w.iter().cloned().fold(0.0, f64::max);
    let q = eigen_compose(&w, &c, EigenFn::InverseSqrt);
    Ok((normalise_rows(q, nw, nw, xs, 0), lmax))
}

/// R = diag(1/s) Q over the `nw` rows `row0..row0+nw` of a `ncols`-wide Q; returns the R
/// rows restricted to columns `row0..row0+nw`, ivar = s², and (R x) for those rows where `x`
/// spans all `ncols` columns.
fn normalise_rows(q: Vec<f64>, nw: usize, ncols: usize, x: &[f64], row0: usize) -> FiberBlock {
    let mut r = vec![0.0; nw * nw];
    let mut ivar = vec![0.0; nw];
    let mut rx = vec![0.0; nw];
    for i in 0..nw {
        let row = &q[(row0 + i) * ncols..(row0 + i + 1) * ncols];
        let s: f64 = row.iter().sum();
        ivar[i] = s * s;
        let mut acc = 0.0;
        for (k, &v) in row.iter().enumerate() {
            acc += (v / s) * x[k];
        }
        rx[i] = acc;
        for j in 0..nw {
            r[i * nw + j] = row[row0 + j] / s;
        }
    }
    (r, ivar, rx)
}

/// specter's dense path (also the fallback when the banded Cholesky fails): eigh of the
/// whole normal matrix with eigenvalue floors, flux from the floored inverse, and either
/// per-fiber blocks of the inverse or the full square root.
fn dense_path(
    icov: &BandMatrix,
    y: &[f64],
    nsp: usize,
    nw: usize,
    keep: &[usize],
    mode: Decorrelation,
) -> (Vec<f64>, FiberBlocks) {
    let n = nsp * nw;
    // Dense in specter order (j = is·nw + iw) so blocks are contiguous.
    let bd = icov.to_dense();
    let perm = |j: usize| (j % nw) * nsp + j / nw;
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            a[i * n + j] = bd[perm(i) * n + perm(j)];
        }
    }
    let ys: Vec<f64> = (0..n).map(|j| y[perm(j)]).collect();
    let zero = || {
        let blocks = keep
            .iter()
            .map(|_| (identity(nw), vec![0.0; nw], vec![0.0; nw]))
            .collect();
        (vec![0.0; n], blocks)
    };
    let mut v = a.clone();
    let Ok(w) = eigh_in_place(&mut v, n) else {
        return zero();
    };
    let inv = eigen_compose(&w, &v, EigenFn::Inverse);
    let xs: Vec<f64> = (0..n)
        .map(|i| (0..n).map(|k| inv[i * n + k] * ys[k]).sum())
        .collect();
    let mut blocks = Vec::with_capacity(keep.len());
    match mode {
        Decorrelation::PerFiber => {
            for &is in keep {
                let mut c = vec![0.0; nw * nw];
                for i in 0..nw {
                    for j in 0..nw {
                        c[i * nw + j] = inv[(is * nw + i) * n + is * nw + j];
                    }
                }
                match decorrelate_block(c, nw, &xs[is * nw..(is + 1) * nw]) {
                    Ok((b, _)) => blocks.push(b),
                    Err(_) => return zero(),
                }
            }
        }
        Decorrelation::Full => {
            let q = eigen_compose(&w, &v, EigenFn::Sqrt);
            for &is in keep {
                blocks.push(normalise_rows_full(&q, n, nw, is, &xs));
            }
        }
    }
    // Back to band order for the model image.
    let mut xb = vec![0.0; n];
    for j in 0..n {
        xb[perm(j)] = xs[j];
    }
    (xb, blocks)
}

/// Full decorrelation: rows of fiber `is` of R = diag(1/s) Q over all columns (R mixes
/// fibers), keeping the fiber's own block for storage.
fn normalise_rows_full(q: &[f64], n: usize, nw: usize, is: usize, x: &[f64]) -> FiberBlock {
    let mut r = vec![0.0; nw * nw];
    let mut ivar = vec![0.0; nw];
    let mut rx = vec![0.0; nw];
    for i in 0..nw {
        let row = &q[(is * nw + i) * n..(is * nw + i + 1) * n];
        let s: f64 = row.iter().sum();
        ivar[i] = s * s;
        rx[i] = row.iter().zip(x).map(|(&v, &xv)| (v / s) * xv).sum();
        for j in 0..nw {
            r[i * nw + j] = row[is * nw + j] / s;
        }
    }
    (r, ivar, rx)
}

fn identity(n: usize) -> Vec<f64> {
    let mut m = vec![0.0; n * n];
    for i in 0..n {
        m[i * n + i] = 1.0;
    }
    m
}
