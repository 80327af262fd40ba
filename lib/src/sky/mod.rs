//! Sky model and sky subtraction (desispec `compute_sky` / `subtract_sky` of desispec 0.70,
//! reference/calibration.md §3).
//!
//! One deconvolved sky spectrum is fit to the sky fibers through each fiber's resolution
//! matrix ([`linear`]), convolved back with every fiber's resolution, given a statistical
//! variance from the parameter covariance through the mean resolution, inflated around sky
//! lines ([`variance`]), masked where unconstrained, and accompanied by the empirical per-fiber
//! sky-line throughput correction ([`throughput`]). The input frame is expected to be
//! flat-fielded (see `crate::fiberflat::apply_fiberflat`).

pub mod linear;
pub mod lines;
pub mod throughput;
pub mod variance;

use ndarray::{Array1, Array2, Axis};
use rayon::prelude::*;

use crate::io::frame::Frame;
use crate::io::sky::SkyModel;
use crate::maskbits::{fibermask, specmask};
use crate::resolution::Resolution;
pub use crate::stats::{allclose, combine_ivar, interp};

/// Errors of the sky stages.
#[derive(Debug, thiserror::Error)]
pub enum SkyError {
    /// No usable sky fiber: none with OBJTYPE=SKY, or all of them dead.
    #[error("no valid sky fibers: {0}")]
    NoSkyFibers(String),
    /// Frame and sky model do not match.
    #[error("sky model does not match the frame: {0}")]
    Mismatch(String),
}

/// Options of [`compute_sky`] (desispec defaults in [`Default`]).
#[derive(Debug, Clone, Copy)]
pub struct SkyOptions {
    /// Linear solve and rejection options.
    pub linear: linear::LinearOptions,
    /// Inflate the sky variance around sky lines (desispec `add_variance`, default on).
    pub add_variance: bool,
}

impl Default for SkyOptions {
    fn default() -> Self {
        SkyOptions {
            linear: linear::LinearOptions::default(),
            add_variance: true,
        }
    }
}

/// FIBERSTATUS bits that kill a fiber in this frame's camera for sky, flux calibration and
/// coadds; all three BADAMP bits when the frame has no CAMERA (desispec's 'brz' default).
pub fn sky_fatal_bits(frame: &Frame) -> i32 {
    match frame.camera().and_then(|c| c.chars().next()) {
        Some(b) => fibermask::fatal_for(b),
        None => fibermask::ALL_FATAL | fibermask::BADAMPB | fibermask::BADAMPR | fibermask::BADAMPZ,
    }
}

/// desispec `get_fiberbitmasked_frame_arrays(ivar_framemask=True)`: the frame ivar zeroed on
/// masked pixels and on fibers whose FIBERSTATUS has any of `bits`; the mask gets BADFIBER on
/// those fibers. Shapes `[nspec, nwave]`.
pub fn fiberbitmasked_ivar(frame: &Frame, bits: i32) -> (Array2<f64>, Array2<u32>) {
    let mut ivar = frame.ivar.clone();
    let mut mask = frame.mask.clone();
    ndarray::Zip::from(&mut ivar)
        .and(&frame.mask)
        .for_each(|iv, &m| {
            if m != 0 {
                *iv = 0.0
            }
        });
    for (f, &st) in frame.fibermap.fiberstatus().iter().enumerate() {
        if f < frame.nspec() && st & bits != 0 {
            mask.row_mut(f).mapv_inplace(|m| m | specmask::BADFIBER);
            ivar.row_mut(f).fill(0.0);
        }
    }
    (ivar, mask)
}

/// The mean resolution band over all fibers of the frame `[ndiag, nwave]`.
pub(crate) fn mean_resolution(frame: &Frame) -> Resolution {
    let n = frame.nspec().max(1) as f64;
    let sum = frame.resolution.sum_axis(Axis(0));
    Resolution::from_band(sum / n).unwrap_or_else(|_| {
        Resolution::identity(1, frame.nwave()).unwrap_or_else(|_| unreachable!())
    })
}

/// Computes the sky model of every fiber of a flat-fielded `frame` (desispec `compute_sky`
/// with its defaults: no wavelength/LSF adjustment, no offsets, gradients or TPCORR).
pub fn compute_sky(frame: &Frame, opts: &SkyOptions) -> Result<SkyModel, SkyError> {
    let (nspec, nwave) = (frame.nspec(), frame.nwave());
    let t0 = std::time::Instant::now();
    let lap = |what: &str| log::debug!("{what} done at {:.3} s", t0.elapsed().as_secs_f64());
    let status = frame.fibermap.fiberstatus();
    let candidates: Vec<usize> = frame
        .fibermap
        .sky_rows()
        .into_iter()
        .filter(|&f| f < nspec && status[f] & fibermask::VARIABLETHRU == 0)
        .collect();
    if candidates.is_empty() {
        return Err(SkyError::NoSkyFibers(
            "the FIBERMAP has no fiber with OBJTYPE=SKY (and without VARIABLETHRU)".into(),
        ));
    }
    // working ivar of the candidates: frame ivar × (mask == 0), zero on sky-fatal fibers
    let fatal = sky_fatal_bits(frame);
    let work_row = |f: usize| -> Vec<f64> {
        if status[f] & fatal != 0 {
            return vec![0.0; nwave];
        }
        (0..nwave)
            .map(|j| {
                if frame.mask[[f, j]] == 0 {
                    frame.ivar[[f, j]]
                } else {
                    0.0
                }
            })
            .collect()
    };
    let mut work: Vec<(usize, Vec<f64>)> = candidates.iter().map(|&f| (f, work_row(f))).collect();
    work.retain(|(_, iv)| iv.iter().any(|&v| v > 0.0));
    let skyfibers: Vec<usize> = work.iter().map(|(f, _)| *f).collect();
    if skyfibers.len() < candidates.len() {
        log::warn!(
            "{} sky fibers discarded (ivar=0 or bad FIBERSTATUS), {} left",
            candidates.len() - skyfibers.len(),
            skyfibers.len()
        );
    }
    if skyfibers.is_empty() {
        return Err(SkyError::NoSkyFibers(format!(
            "all {} sky fibers have IVAR=0 (or MASK set) everywhere or a fatal FIBERSTATUS",
            candidates.len()
        )));
    }
    let nsky = skyfibers.len();
    log::info!("sky model from {nsky} sky fibers, {nwave} wavelengths");
    let flux = frame.flux.select(Axis(0), &skyfibers);
    let ivar = Array2::from_shape_fn((nsky, nwave), |(s, j)| work[s].1[j]);
    let res: Vec<Resolution> = skyfibers.iter().map(|&f| frame.resolution_of(f)).collect();
    let fit = linear::compute_sky_linear(flux.view(), ivar.view(), &res, &opts.linear);
    log::info!(
        "linear fit: {} iterations, {} pixels and {} fibers rejected",
        fit.iterations,
        fit.nrej,
        fit.bad_fibers.len()
    );

    // statistical variance through the mean resolution: diag(R̄ C R̄ᵀ), the same for every
    // fiber (desispec's approximation to save time)
    lap("linear fit");
    let rmean = mean_resolution(frame);
    let stat_var = convolved_variance(&rmean, &fit.covariance);
    let stat_ivar: Vec<f64> = stat_var
        .iter()
        .map(|&v| if v > 0.0 { 1.0 / v } else { 0.0 })
        .collect();

    // the sky of every fiber
    let mut cbuf = vec![0.0; nspec * nwave];
    cbuf.par_chunks_mut(nwave.max(1))
        .enumerate()
        .for_each(|(f, row)| {
            convolve_band(
                frame.resolution.index_axis(Axis(0), f),
                &fit.deconvolved,
                row,
            )
        });
    let mut csky = Array2::from_shape_vec((nspec, nwave), cbuf)
        .unwrap_or_else(|_| Array2::zeros((nspec, nwave)));

    lap("convolved sky and statistical variance");
    let mut sky_ivar = if nsky > 1 && opts.add_variance {
        variance::model_variance(
            frame.flux.view(),
            frame.ivar.view(),
            csky.view(),
            &stat_ivar,
            &skyfibers,
            frame.wave.as_slice().unwrap_or(&[]),
        )
    } else {
        stat_ivar.clone()
    };

    // unconstrained wavelengths, smeared over the full resolution band (R̄ applied twice)
    let badw: Vec<f64> = fit
        .good
        .iter()
        .map(|&g| if g { 0.0 } else { 1.0 })
        .collect();
    let smeared = rmean
        .apply(&rmean.apply(&badw).unwrap_or_default())
        .unwrap_or_default();
    let mut bad: Vec<bool> = smeared.iter().map(|&v| v != 0.0).collect();
    // too few contributing sky fibers, grown by one pixel
    let min_fibers = 10.min((nsky / 2).max(1));
    let few: Vec<bool> = (0..nwave)
        .map(|j| fit.ivar.column(j).iter().filter(|&&v| v > 0.0).count() < min_fibers)
        .collect();
    for j in 0..nwave {
        let grown = few[j] || (j >= 1 && j + 1 < nwave && (few[j - 1] || few[j + 1]));
        if grown {
            bad[j] = true;
        }
    }
    for (j, &b) in bad.iter().enumerate() {
        if b {
            csky.column_mut(j).fill(0.0);
            sky_ivar[j] = 0.0;
        }
    }
    let ivar2 = Array2::from_shape_fn((nspec, nwave), |(_, j)| sky_ivar[j]);
    // desispec stores (ivar == 0) as the mask value, i.e. bit 0
    let mut mask = Array2::from_shape_fn((nspec, nwave), |(_, j)| u32::from(sky_ivar[j] == 0.0));
    let mut bad_rows: Vec<usize> = fit.bad_fibers.iter().map(|&s| skyfibers[s]).collect();
    bad_rows.sort_unstable();
    bad_rows.dedup();
    for &f in &bad_rows {
        mask.row_mut(f).mapv_inplace(|m| m | specmask::BADSKY);
    }

    lap("variance inflation and masking");
    let thru = throughput::throughput_corrections(
        frame.wave.as_slice().unwrap_or(&[]),
        frame.flux.view(),
        frame.ivar.view(),
        frame.mask.view(),
        csky.view(),
        ivar2.view(),
    );
    lap("throughput corrections");
    let targetids = frame.fibermap.targetids();
    Ok(SkyModel {
        wave: frame.wave.clone(),
        flux: csky,
        ivar: ivar2,
        mask,
        stat_ivar: Some(Array2::from_shape_fn((nspec, nwave), |(_, j)| stat_ivar[j])),
        throughput_corrections: Some(Array1::from(thru)),
        throughput_corrections_model: Some(Array1::ones(nspec)),
        skytargetid: Some(skyfibers.iter().map(|&f| targetids[f]).collect()),
        header: frame.header.clone(),
    })
}

/// `out = R · x` for a resolution in DESI band storage `[ndiag, nwave]` (a view into a frame's
/// RESOLUTION, so that 500 fibers are convolved without copying their matrices).
pub fn convolve_band(band: ndarray::ArrayView2<f64>, x: &[f64], out: &mut [f64]) {
    let n = x.len().min(out.len()).min(band.ncols());
    out.iter_mut().for_each(|v| *v = 0.0);
    let h = (band.nrows() / 2) as isize;
    for (k, row) in band.outer_iter().enumerate() {
        let d = h - k as isize;
        // R[j - d, j] = row[j] contributes to out[j - d]
        let j0 = d.max(0) as usize;
        let j1 = (n as isize + d.min(0)).max(0) as usize;
        for j in j0..j1 {
            out[(j as isize - d) as usize] += row[j] * x[j];
        }
    }
}

/// `diag(R C Rᵀ)` `[nwave]` for a resolution R and the band of a covariance C whose
/// half-bandwidth covers R's full width (2h).
pub fn convolved_variance(r: &Resolution, cov: &crate::banded::BandMatrix) -> Vec<f64> {
    let n = r.nwave();
    let h = r.ndiag() / 2;
    (0..n)
        .into_par_iter()
        .map(|i| {
            let j0 = i.saturating_sub(h);
            let j1 = (i + h + 1).min(n);
            let mut s = 0.0;
            for j in j0..j1 {
                let rij = r.get(i, j);
                if rij == 0.0 {
                    continue;
                }
                let mut t = 0.0;
                for k in j0..j1 {
                    t += cov.get(j, k) * r.get(i, k);
                }
                s += rij * t;
            }
            s
        })
        .collect()
}

/// desispec `subtract_sky` (default: THRPUTCORR applied to the sky lines only, never in the
/// b camera): fibers with a sky-fatal FIBERSTATUS get ivar 0 and BADFIBER, masked pixels
/// ivar 0; `flux -= sky`, `ivar = combine_ivar(ivar, sky ivar)`, `mask |= sky mask`.
/// `throughput_everywhere` multiplies the whole sky by THRPUTCORR instead.
pub fn subtract_sky(
    frame: &mut Frame,
    sky: &SkyModel,
    throughput_everywhere: bool,
) -> Result<(), SkyError> {
    if frame.nspec() != sky.nspec() || frame.nwave() != sky.nwave() {
        return Err(SkyError::Mismatch(format!(
            "frame is {}x{}, sky is {}x{}",
            frame.nspec(),
            frame.nwave(),
            sky.nspec(),
            sky.nwave()
        )));
    }
    if !allclose(
        frame.wave.as_slice().unwrap_or(&[]),
        sky.wave.as_slice().unwrap_or(&[]),
    ) {
        return Err(SkyError::Mismatch(
            "frame and sky not on the same wavelength grid".into(),
        ));
    }
    let (ivar, mask) = fiberbitmasked_ivar(frame, sky_fatal_bits(frame));
    frame.ivar = ivar;
    frame.mask = mask;
    let mut skyflux = sky.flux.clone();
    if let Some(tc) = &sky.throughput_corrections {
        if throughput_everywhere {
            for (mut row, &t) in skyflux.outer_iter_mut().zip(tc.iter()) {
                row.mapv_inplace(|v| v * t);
            }
        } else if frame.camera().is_some_and(|c| c.starts_with('b')) {
            log::info!("no throughput correction of sky lines in a b camera");
        } else {
            apply_line_throughput(&mut skyflux, sky, tc);
        }
    }
    frame.flux -= &skyflux;
    ndarray::Zip::from(&mut frame.ivar)
        .and(&sky.ivar)
        .for_each(|a, &b| *a = combine_ivar(*a, b));
    ndarray::Zip::from(&mut frame.mask)
        .and(&sky.mask)
        .for_each(|a, &b| *a |= b);
    Ok(())
}

/// `sky' = sky + (THRPUTCORR − 1)·lines`, with lines = max(sky − continuum, 0) and the
/// continuum interpolated from pixels more than 2 Å from every listed line ≥ 5700 Å.
fn apply_line_throughput(skyflux: &mut Array2<f64>, sky: &SkyModel, tc: &Array1<f64>) {
    let wave = sky.wave.as_slice().unwrap_or(&[]);
    let in_cont: Vec<usize> = (0..wave.len())
        .filter(|&j| {
            lines::SKY_LINES
                .iter()
                .filter(|&&l| l >= 5700.0)
                .all(|&l| (wave[j] - l).abs() > 2.0)
        })
        .collect();
    if in_cont.is_empty() {
        log::warn!("could not determine the sky continuum: no throughput correction of lines");
        return;
    }
    let xw: Vec<f64> = in_cont.iter().map(|&j| wave[j]).collect();
    for (f, mut row) in skyflux.outer_iter_mut().enumerate() {
        let yf: Vec<f64> = in_cont.iter().map(|&j| sky.flux[[f, j]]).collect();
        for (j, v) in row.iter_mut().enumerate() {
            let cont = interp(wave[j], &xw, &yf);
            let line = (sky.flux[[f, j]] - cont).max(0.0);
            *v += (tc[f] - 1.0) * line;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::io::fibermap::Fibermap;
    use crate::io::fits::{Column, ColumnData};
    use crate::io::header::Header;
    use ndarray::Array3;

    /// A small r-camera frame: 4 fibers over 5760–5840 Å (0.8 Å), identity resolution.
    pub(crate) fn tiny_frame(camera: &str) -> Frame {
        let (ns, nw) = (4, 101);
        let mut resolution = Array3::zeros((ns, 3, nw));
        resolution.index_axis_mut(Axis(1), 1).fill(1.0);
        let mut fibermap = Fibermap::minimal(&[0, 1, 2, 3]);
        fibermap
            .table_mut()
            .set(Column::new(
                "FIBERSTATUS",
                ColumnData::I32(vec![0, fibermask::BADFIBER, 0, 0]),
            ))
            .unwrap();
        let mut header = Header::default();
        header.set("CAMERA", camera.into());
        Frame {
            wave: Array1::from_iter((0..nw).map(|i| 5760.0 + 0.8 * i as f64)),
            flux: Array2::from_elem((ns, nw), 100.0),
            ivar: Array2::from_elem((ns, nw), 0.25),
            mask: Array2::zeros((ns, nw)),
            resolution,
            fibermap,
            chi2pix: None,
            scores: None,
            header,
        }
    }

    fn tiny_sky(frame: &Frame, thru: f64) -> SkyModel {
        let (ns, nw) = (frame.nspec(), frame.nwave());
        // continuum 60 plus a line at 5891.47 Å (a listed sky line ≥ 5700 Å) on every fiber
        let flux = Array2::from_shape_fn((ns, nw), |(_, j)| {
            let d = (frame.wave[j] - 5801.0) / 0.8;
            60.0 + 40.0 * (-0.5 * d * d).exp()
        });
        let mut mask = Array2::zeros((ns, nw));
        mask[[2, 7]] = specmask::BADSKY;
        SkyModel {
            wave: frame.wave.clone(),
            flux,
            ivar: Array2::from_elem((ns, nw), 1.0 / 12.0),
            mask,
            stat_ivar: None,
            throughput_corrections: Some(Array1::from_elem(ns, thru)),
            throughput_corrections_model: None,
            skytargetid: None,
            header: Header::default(),
        }
    }

    #[test]
    fn subtract_sky_propagates_ivar_and_masks() {
        let mut fr = tiny_frame("b0");
        fr.mask[[3, 5]] = specmask::COSMIC;
        let sky = tiny_sky(&fr, 1.1);
        subtract_sky(&mut fr, &sky, false).unwrap();
        // b camera: THRPUTCORR is not applied to the lines
        assert!((fr.flux[[0, 50]] - (100.0 - sky.flux[[0, 50]])).abs() < 1e-12);
        // var = 4 + 12
        assert!((fr.ivar[[0, 0]] - 1.0 / 16.0).abs() < 1e-15);
        // the BADFIBER fiber and the masked pixel get ivar 0; masks are OR-ed
        assert!(fr.ivar.row(1).iter().all(|&v| v == 0.0));
        assert!(fr.mask[[1, 0]] & specmask::BADFIBER != 0);
        assert_eq!(fr.ivar[[3, 5]], 0.0);
        assert_eq!(fr.mask[[2, 7]], specmask::BADSKY);
    }

    #[test]
    fn throughput_correction_applies_to_lines_only_outside_b() {
        // a sky line at a listed wavelength (5891.47 Å) on a flat continuum of 60
        let mut fr = tiny_frame("r0");
        fr.wave = Array1::from_iter((0..fr.nwave()).map(|i| 5851.0 + 0.8 * i as f64));
        let mut sky = tiny_sky(&fr, 1.1);
        sky.wave = fr.wave.clone();
        let line = 5891.47;
        sky.flux = Array2::from_shape_fn(sky.flux.dim(), |(_, j)| {
            let d = (fr.wave[j] - line) / 0.3;
            60.0 + 40.0 * (-0.5 * d * d).exp()
        });
        subtract_sky(&mut fr, &sky, false).unwrap();
        let jl = (0..fr.nwave())
            .min_by(|&a, &b| {
                (fr.wave[a] - line)
                    .abs()
                    .total_cmp(&(fr.wave[b] - line).abs())
            })
            .unwrap();
        // on the line: sky' = sky + 0.1 × (sky − continuum 60); far away: sky' = sky
        let want = 100.0 - (sky.flux[[0, jl]] + 0.1 * (sky.flux[[0, jl]] - 60.0));
        // (the continuum, interpolated from pixels > 2 Å from the listed lines, is 60 to 1e-8)
        assert!(
            (fr.flux[[0, jl]] - want).abs() < 1e-6,
            "{}",
            fr.flux[[0, jl]]
        );
        assert!((fr.flux[[0, 0]] - 40.0).abs() < 1e-9);
        // everywhere: sky × THRPUTCORR
        let mut fr2 = tiny_frame("r0");
        fr2.wave = fr.wave.clone();
        subtract_sky(&mut fr2, &sky, true).unwrap();
        assert!((fr2.flux[[0, 0]] - (100.0 - 66.0)).abs() < 1e-9);
        // mismatched grids are refused
        let mut fr3 = tiny_frame("r0");
        assert!(subtract_sky(&mut fr3, &sky, false).is_err());
    }

    #[test]
    fn no_sky_fibers_is_an_error() {
        let fr = tiny_frame("r0");
        let e = compute_sky(&fr, &SkyOptions::default()).unwrap_err();
        assert!(e.to_string().contains("no valid sky fibers"), "{e}");
    }
}
