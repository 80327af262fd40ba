//! Flux calibration (desispec `compute_flux_calibration` / `apply_flux_calibration`,
//! reference/calibration.md §4.2–4.3), simplified:
//!
//! - each standard-star model is interpolated onto the frame grid and convolved with the
//!   star's resolution: `M_s = R_s m_s`;
//! - the calibration C (electrons/Å per 1e-17 erg/s/cm²/Å) and a scale a_s per star are fit
//!   jointly, `flux_s ≈ a_s · C ⊙ M_s`, per pixel by weighted least squares over the stars,
//!   with desispec's rejection schedule (variance inflated by (0.2·flux)² for clipping only,
//!   χ² > nsig², only the worst star per pixel in the first iteration, a_s < 0.2 drops a
//!   star, a normalised to a harmonic mean of 1);
//! - C is fit in convolved space (`C ⊙ R m` instead of `R (C ⊙ m)`): C is smooth on the
//!   resolution scale, so the difference is of order σ_R²·C''/C, far below the noise;
//! - the fiber-acceptance correction FLAT_TO_PSF_FLUX is 1 for every fiber (fiber
//!   positions and seeing are not modelled); every fiber gets the same calibration.

// Numerical kernels index several parallel arrays by pixel: index loops read clearer here.
#![allow(clippy::needless_range_loop)]

use ndarray::Array2;
use rayon::prelude::*;

use crate::io::fluxcalib::FluxCalib;
use crate::io::frame::{Frame, BUNIT_CALIBRATED};
use crate::io::header::{Header, HeaderValue};
use crate::io::stdstars::StdStarModels;
use crate::maskbits::specmask;
use crate::stats::interp;

/// Errors of the flux-calibration stage.
#[derive(Debug, thiserror::Error)]
pub enum FluxCalError {
    /// No standard star of the stdstars file can be used on this frame.
    #[error("no standard star survives the cuts: {0}")]
    NoStars(String),
    /// Frame and calibration/models disagree.
    #[error("{0}")]
    Mismatch(String),
}

/// Fit options.
#[derive(Debug, Clone)]
pub struct FluxCalOptions {
    /// Clipping threshold (σ) on the error-inflated residuals.
    pub nsig_clipping: f64,
    /// Maximum number of fit/clip iterations.
    pub max_iterations: usize,
    /// Stars whose scale falls below this are dropped.
    pub min_scale: f64,
}

impl Default for FluxCalOptions {
    fn default() -> Self {
        FluxCalOptions {
            nsig_clipping: 10.0,
            max_iterations: 20,
            min_scale: 0.2,
        }
    }
}

/// Per-pixel joint estimate `C_j = Σ w a M d / Σ w a² M²` (0 where nothing constrains),
/// with its inverse variance `Σ w a² M²`; sums over stars in fixed order.
fn solve_c(
    m: &[Vec<f64>],
    d: &[Vec<f64>],
    w: &[Vec<f64>],
    a: &[f64],
    nw: usize,
) -> (Vec<f64>, Vec<f64>) {
    (0..nw)
        .into_par_iter()
        .map(|j| {
            let (mut num, mut den) = (0.0, 0.0);
            for s in 0..m.len() {
                let am = a[s] * m[s][j];
                num += w[s][j] * am * d[s][j];
                den += w[s][j] * am * am;
            }
            if den > 0.0 {
                (num / den, den)
            } else {
                (0.0, 0.0)
            }
        })
        .unzip()
}

/// Fills pixels with no constraint (`ivar == 0`) by linear interpolation (constant at the
/// ends) between constrained pixels.
fn fill_gaps(wave: &[f64], c: &mut [f64], ivar: &[f64]) {
    let good: Vec<usize> = (0..c.len()).filter(|&j| ivar[j] > 0.0).collect();
    if good.is_empty() {
        return;
    }
    let x: Vec<f64> = good.iter().map(|&j| wave[j]).collect();
    let y: Vec<f64> = good.iter().map(|&j| c[j]).collect();
    for j in 0..c.len() {
        if ivar[j] <= 0.0 {
            c[j] = interp(wave[j], &x, &y);
        }
    }
}

/// Computes the calibration of a flat-fielded, sky-subtracted `frame` from the standard-star
/// `models`. Stars are matched by FIBER.
pub fn compute_calibration(
    frame: &Frame,
    models: &StdStarModels,
    opts: &FluxCalOptions,
) -> Result<FluxCalib, FluxCalError> {
    let fibers = frame.fibermap.fibers();
    let nw = frame.nwave();
    let wave = frame.wave.to_vec();
    let pairs: Vec<(usize, usize)> = models
        .fibers
        .iter()
        .enumerate()
        .filter_map(|(k, f)| fibers.iter().position(|x| x == f).map(|r| (k, r)))
        .collect();
    if pairs.is_empty() {
        return Err(FluxCalError::NoStars(
            "none of the stdstars fibers is in this frame".into(),
        ));
    }
    // convolved models, data and weights per star
    let prep: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = pairs
        .par_iter()
        .map(|&(k, r)| {
            let row = models.flux.row(k).to_vec();
            let m0: Vec<f64> = wave
                .iter()
                .map(|&x| interp(x, &models.wave, &row))
                .collect();
            let m = frame.resolution_of(r).apply(&m0).unwrap_or(m0);
            let d: Vec<f64> = frame
                .flux
                .row(r)
                .iter()
                .map(|&v| if v.is_finite() { v } else { 0.0 })
                .collect();
            let w: Vec<f64> = (0..nw)
                .map(|j| {
                    let v = frame.ivar[[r, j]];
                    let ok = v.is_finite() && v > 0.0 && frame.mask[[r, j]] == 0 && m[j] > 0.0;
                    if ok {
                        v
                    } else {
                        0.0
                    }
                })
                .collect();
            (m, d, w)
        })
        .collect();
    let m: Vec<Vec<f64>> = prep.iter().map(|p| p.0.clone()).collect();
    let d: Vec<Vec<f64>> = prep.iter().map(|p| p.1.clone()).collect();
    let w0: Vec<Vec<f64>> = prep.iter().map(|p| p.2.clone()).collect();
    let ns = m.len();
    let mut w = w0.clone();
    let mut a = vec![1.0; ns];
    let mut good = vec![true; ns];
    for (s, ws) in w.iter().enumerate() {
        if ws.iter().all(|&v| v == 0.0) {
            good[s] = false;
        }
    }
    let nsig2 = opts.nsig_clipping * opts.nsig_clipping;
    for iter in 0..opts.max_iterations {
        let (mut c, civ) = solve_c(&m, &d, &w, &a, nw);
        fill_gaps(&wave, &mut c, &civ);
        // per-star scale
        for s in 0..ns {
            if !good[s] {
                continue;
            }
            let (mut num, mut den) = (0.0, 0.0);
            for j in 0..nw {
                let cm = c[j] * m[s][j];
                num += w[s][j] * d[s][j] * cm;
                den += w[s][j] * cm * cm;
            }
            a[s] = if den > 0.0 { num / den } else { 0.0 };
            if a[s] < opts.min_scale {
                log::warn!(
                    "star FIBER {} has scale {:.3}: dropped",
                    models.fibers[pairs[s].0],
                    a[s]
                );
                good[s] = false;
                w[s].iter_mut().for_each(|v| *v = 0.0);
            }
        }
        let ngood = good.iter().filter(|&&g| g).count();
        if ngood == 0 {
            return Err(FluxCalError::NoStars(
                "every standard star was rejected by the scale cut".into(),
            ));
        }
        let hm = ngood as f64
            / (0..ns)
                .filter(|&s| good[s])
                .map(|s| 1.0 / a[s])
                .sum::<f64>();
        a.iter_mut().for_each(|v| *v /= hm);
        // clipping with inflated variance
        let mut nclip = 0;
        for j in 0..nw {
            let chi2: Vec<f64> = (0..ns)
                .map(|s| {
                    let wi = w[s][j];
                    if wi <= 0.0 {
                        return 0.0;
                    }
                    let r = d[s][j] - a[s] * c[j] * hm * m[s][j];
                    r * r / (1.0 / wi + (0.2 * d[s][j]).powi(2))
                })
                .collect();
            if iter == 0 {
                let worst = (0..ns).max_by(|&x, &y| chi2[x].total_cmp(&chi2[y]));
                if let Some(s) = worst {
                    if chi2[s] > nsig2 {
                        w[s][j] = 0.0;
                        nclip += 1;
                    }
                }
            } else {
                for s in 0..ns {
                    if chi2[s] > nsig2 {
                        w[s][j] = 0.0;
                        nclip += 1;
                    }
                }
            }
        }
        log::debug!("fluxcal iteration {iter}: {nclip} pixels clipped, {ngood} stars");
        if nclip == 0 && iter > 0 {
            break;
        }
    }
    // final pass: original ivar on the surviving pixels
    let wf: Vec<Vec<f64>> = (0..ns)
        .map(|s| {
            (0..nw)
                .map(|j| if w[s][j] > 0.0 { w0[s][j] } else { 0.0 })
                .collect()
        })
        .collect();
    let (mut c, mut civ) = solve_c(&m, &d, &wf, &a, nw);
    fill_gaps(&wave, &mut c, &civ);
    let ngood = good.iter().filter(|&&g| g).count();
    let min_stars = 3.min((ngood / 2).max(1));
    let nstar_at: Vec<usize> = (0..nw)
        .map(|j| (0..ns).filter(|&s| wf[s][j] > 0.0).count())
        .collect();
    let mut mask1 = vec![0u32; nw];
    for j in 0..nw {
        // too few stars (grown by one pixel) or negative: no calibration there
        let lo = j.saturating_sub(1);
        let hi = (j + 1).min(nw - 1);
        if (lo..=hi).any(|k| nstar_at[k] < min_stars) || c[j] <= 0.0 {
            mask1[j] = specmask::BADFIBER;
        }
    }
    for j in 0..nw {
        if mask1[j] != 0 {
            civ[j] = 0.0;
            c[j] = c[j].max(0.0);
        }
    }
    let nspec = frame.nspec();
    let calib = Array2::from_shape_fn((nspec, nw), |(_, j)| c[j]);
    let ivar = Array2::from_shape_fn((nspec, nw), |(_, j)| civ[j]);
    let mask = Array2::from_shape_fn((nspec, nw), |(_, j)| mask1[j]);
    let used: Vec<usize> = (0..ns).filter(|&s| good[s]).map(|s| pairs[s].1).collect();
    let mut header = Header::default();
    for k in ["NIGHT", "EXPID", "CAMERA", "SPECGRPH", "TILEID", "EXPTIME"] {
        if let Some(v) = frame.header.get(k) {
            header.set(k, v.clone());
        }
    }
    header.set("NSTDSTAR", HeaderValue::from(ngood as i64));
    Ok(FluxCalib {
        wave,
        calib,
        ivar,
        mask,
        flat_to_psf: vec![1.0; nspec],
        deconvolved: Some(c),
        stdstar_fibermap: Some(frame.fibermap.select(&used)),
        header,
    })
}

/// Turns a flat-fielded, sky-subtracted frame into a cframe: `flux /= C`,
/// `ivar = C⁴·ivar·ivar_C / (C²·ivar_C + flux²·ivar)` where C > 0, ivar_C > 0 and ivar > 0
/// (else 0), `mask |= calib mask`; the resolution passes through unchanged.
pub fn apply_calibration(frame: &mut Frame, fc: &FluxCalib) -> Result<(), FluxCalError> {
    let (ns, nw) = fc.calib.dim();
    if ns != frame.nspec() || nw != frame.nwave() {
        return Err(FluxCalError::Mismatch(format!(
            "frame is {}x{}, calibration is {ns}x{nw}",
            frame.nspec(),
            frame.nwave()
        )));
    }
    // desispec compares the grids with a 1e-3 Å tolerance (the fluxcalib wavelengths are f4)
    if frame
        .wave
        .iter()
        .zip(&fc.wave)
        .any(|(a, b)| (a - b).abs() > 1e-3)
    {
        return Err(FluxCalError::Mismatch(
            "frame and calibration are not on the same wavelength grid".into(),
        ));
    }
    ndarray::Zip::indexed(&mut frame.flux)
        .and(&mut frame.ivar)
        .and(&mut frame.mask)
        .for_each(|(f, j), fl, iv, mk| {
            let c = fc.calib[[f, j]];
            let ic = fc.ivar[[f, j]];
            *mk |= fc.mask[[f, j]];
            if !(c > 0.0 && fl.is_finite()) {
                *fl = 0.0;
                *iv = 0.0;
                return;
            }
            let x = *fl;
            *iv = if ic > 0.0 && *iv > 0.0 {
                c.powi(4) * *iv * ic / (c * c * ic + x * x * *iv)
            } else {
                0.0
            };
            *fl = x / c;
        });
    frame
        .header
        .set("BUNIT", HeaderValue::from(BUNIT_CALIBRATED));
    Ok(())
}
