//! Standard-star fitting (desispec `desi_fit_stdstars`, reference/calibration.md §4.1), in a
//! simplified form:
//!
//! - selection: DESI_TARGET STD_FAINT|STD_BRIGHT or MWS_TARGET GAIA_STD_FAINT|GAIA_STD_BRIGHT,
//!   not VARIABLETHRU, FIBERSTATUS (OR over all input frames) free of the all-fatal bits and
//!   POORPOSITION, Legacy g and r fluxes within 10^((22.5−30)/2.5)…10^(22.5/2.5) nanomaggies,
//!   blue S/N (median of flux·√ivar/√dλ over the b cameras, quadrature sum over exposures)
//!   above `min_blue_snr`, at most `max_stars` ranked by blue S/N;
//! - fit ([`fit::fit_star`]): every camera of every exposure is its own segment with its own
//!   multiplicative polynomial (instead of desispec's median-filter continuum normalisation),
//!   the model convolved with the segment's resolution; radial velocity from a reference
//!   template, then the best colour-compatible grid model, refined by trilinear
//!   interpolation in (Teff, log g, [Fe/H]) as desispec (coordinate-wise parabolic steps,
//!   iterated with halving steps down to 1/8 of the grid spacing);
//! - the model is reddened with CCM89 (R_V 3.1) by the fibermap EBV and scaled to the
//!   catalogue (observed) r flux.
//!
//! Not done: Gaia-only photometry, the 4300–4500 Å and telluric masks.

// Numerical kernels index several parallel arrays by pixel: index loops read clearer here.
#![allow(clippy::needless_range_loop)]

pub mod fit;
pub mod grid;

use ndarray::Array2;
use rayon::prelude::*;

use crate::io::fibermap::Fibermap;
use crate::io::frame::Frame;
use crate::maskbits::fibermask as fiberstatus;
use crate::speclib::targets::{desi_target, mws_target};

pub use fit::{FitOptions, Photometry, Segment, StarFit};
pub use grid::StarGrid;

/// MWS_TARGET GAIA_STD_BRIGHT (desitarget).
const GAIA_STD_BRIGHT: i64 = 1 << 35;

/// Errors of the standard-star stage.
#[derive(Debug, thiserror::Error)]
pub enum StdStarError {
    /// No fiber passed the selection; the message says which cut removed them.
    #[error("no standard star survives the cuts: {0}")]
    NoStars(String),
    /// Inconsistent inputs (fibers, cameras).
    #[error("{0}")]
    Input(String),
}

/// Selection options.
#[derive(Debug, Clone)]
pub struct SelectOptions {
    /// Minimum blue S/N per √Å.
    pub min_blue_snr: f64,
    /// Maximum number of stars kept (highest blue S/N first).
    pub max_stars: usize,
}

impl Default for SelectOptions {
    fn default() -> Self {
        SelectOptions {
            min_blue_snr: 4.0,
            max_stars: 30,
        }
    }
}

/// One prepared input: a frame already flat-fielded and sky-subtracted.
pub struct Prepared {
    pub expid: i64,
    pub camera: String,
    pub frame: Frame,
}

/// The fitted standard stars of one petal.
pub struct StdStarsResult {
    /// Absolute FIBER of each star, in fibermap order.
    pub fibers: Vec<i32>,
    /// Rows of the first frame's fibermap, one per star.
    pub fibermap: Fibermap,
    pub fits: Vec<StarFit>,
    /// Blue, red, NIR S/N per √Å per star.
    pub snr: Vec<[f64; 3]>,
}

/// Median S/N per √Å of one fiber row: median of flux·√ivar/√dλ over pixels with ivar > 0.
fn row_snr(frame: &Frame, row: usize) -> f64 {
    let w = frame.wave.as_slice().unwrap_or(&[]);
    let mut v: Vec<f64> = (0..frame.nwave())
        .filter(|&j| frame.ivar[[row, j]] > 0.0)
        .map(|j| {
            let dw = if j + 1 < w.len() {
                w[j + 1] - w[j]
            } else {
                w[j] - w[j.saturating_sub(1)]
            };
            frame.flux[[row, j]] * frame.ivar[[row, j]].sqrt() / dw.abs().max(1e-12).sqrt()
        })
        .collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Selects and fits the standard stars in `inputs` (all from one petal).
pub fn fit_stdstars(
    inputs: &[Prepared],
    grid: &StarGrid,
    sel: &SelectOptions,
    opts: &FitOptions,
) -> Result<StdStarsResult, StdStarError> {
    let first = inputs
        .first()
        .ok_or_else(|| StdStarError::Input("no input frames".into()))?;
    let fm = &first.frame.fibermap;
    let t = fm.table();
    let n = fm.len();
    let fibers = fm.fibers();
    let dt = t.i64s("DESI_TARGET").unwrap_or_else(|| vec![0; n]);
    let mt = t.i64s("MWS_TARGET").unwrap_or_else(|| vec![0; n]);
    let std_bits = desi_target::STD_FAINT | desi_target::STD_BRIGHT;
    let gaia_bits = mws_target::GAIA_STD_FAINT | GAIA_STD_BRIGHT;
    let is_std: Vec<usize> = (0..n)
        .filter(|&i| dt[i] & std_bits != 0 || mt[i] & gaia_bits != 0)
        .collect();
    if is_std.is_empty() {
        return Err(StdStarError::NoStars(
            "no fiber has a standard-star target bit".into(),
        ));
    }
    // row of each fiber in every input
    let row_in =
        |p: &Prepared, fiber: i32| p.frame.fibermap.fibers().iter().position(|&f| f == fiber);
    let fatal = fiberstatus::ALL_FATAL | fiberstatus::POORPOSITION | fiberstatus::VARIABLETHRU;
    let status_ok: Vec<usize> = is_std
        .iter()
        .copied()
        .filter(|&i| {
            let mut st = 0;
            for p in inputs {
                match row_in(p, fibers[i]) {
                    Some(r) => st |= p.frame.fibermap.fiberstatus()[r],
                    None => return false,
                }
            }
            st & fatal == 0
        })
        .collect();
    if status_ok.is_empty() {
        return Err(StdStarError::NoStars(format!(
            "all {} standard-star fibers have a bad FIBERSTATUS or are missing from a frame",
            is_std.len()
        )));
    }
    let fg = t.f64s("FLUX_G").unwrap_or_else(|| vec![0.0; n]);
    let fr = t.f64s("FLUX_R").unwrap_or_else(|| vec![0.0; n]);
    let ebv = t.f64s("EBV").unwrap_or_else(|| vec![0.0; n]);
    let (fmin, fmax) = (10f64.powf((22.5 - 30.0) / 2.5), 10f64.powf(22.5 / 2.5));
    let phot_ok: Vec<usize> = status_ok
        .into_iter()
        .filter(|&i| [fg[i], fr[i]].iter().all(|&f| f > fmin && f < fmax) && ebv[i].is_finite())
        .collect();
    if phot_ok.is_empty() {
        return Err(StdStarError::NoStars(
            "no standard star has valid Legacy g and r photometry".into(),
        ));
    }
    // S/N per band, quadrature over exposures
    let snr: Vec<[f64; 3]> = phot_ok
        .iter()
        .map(|&i| {
            let mut s = [0.0; 3];
            for p in inputs {
                let band = match p.camera.chars().next() {
                    Some('b') => 0,
                    Some('r') => 1,
                    _ => 2,
                };
                if let Some(r) = row_in(p, fibers[i]) {
                    s[band] += row_snr(&p.frame, r).max(0.0).powi(2);
                }
            }
            s.map(f64::sqrt)
        })
        .collect();
    let mut order: Vec<usize> = (0..phot_ok.len())
        .filter(|&k| snr[k][0] > sel.min_blue_snr)
        .collect();
    if order.is_empty() {
        return Err(StdStarError::NoStars(format!(
            "none of {} standard stars has a blue S/N above {}",
            phot_ok.len(),
            sel.min_blue_snr
        )));
    }
    order.sort_by(|&a, &b| snr[b][0].total_cmp(&snr[a][0]).then(a.cmp(&b)));
    order.truncate(sel.max_stars);
    order.sort(); // back to fibermap order (fibers are keyed by FIBER, never by S/N rank)
    let rows: Vec<usize> = order.iter().map(|&k| phot_ok[k]).collect();
    let fits: Vec<StarFit> = rows
        .par_iter()
        .map(|&i| {
            let segs: Vec<Segment> = inputs
                .iter()
                .filter_map(|p| {
                    let r = row_in(p, fibers[i])?;
                    let f = &p.frame;
                    let ivar: Vec<f64> = (0..f.nwave())
                        .map(|j| {
                            let v = f.ivar[[r, j]];
                            if f.mask[[r, j]] == 0
                                && v.is_finite()
                                && v > 0.0
                                && f.flux[[r, j]].is_finite()
                            {
                                v
                            } else {
                                0.0
                            }
                        })
                        .collect();
                    Some(Segment {
                        camera: p.camera.clone(),
                        wave: f.wave.to_vec(),
                        flux: f
                            .flux
                            .row(r)
                            .iter()
                            .map(|v| if v.is_finite() { *v } else { 0.0 })
                            .collect(),
                        ivar,
                        res: f.resolution_of(r),
                    })
                })
                .collect();
            fit::fit_star(
                grid,
                &segs,
                Photometry {
                    flux_g: fg[i],
                    flux_r: fr[i],
                    ebv: ebv[i],
                },
                opts,
            )
        })
        .collect();
    Ok(StdStarsResult {
        fibers: rows.iter().map(|&i| fibers[i]).collect(),
        fibermap: fm.select(&rows),
        fits,
        snr: order.iter().map(|&k| snr[k]).collect(),
    })
}

/// Stacks the models of `fits` into [nstar, nwave].
pub fn model_array(fits: &[StarFit], nwave: usize) -> Array2<f64> {
    let mut a = Array2::zeros((fits.len(), nwave));
    for (i, f) in fits.iter().enumerate() {
        for (j, &v) in f.model.iter().enumerate().take(nwave) {
            a[[i, j]] = v;
        }
    }
    a
}
