//! The nightly PSF: several PSFs (one per arc exposure) averaged bundle by bundle, as
//! desispec's `mean_psf` (reference/extraction.md §2.1): per bundle the inputs with
//! `0 < BnnRCHI2 < median + 1` are averaged (mean, not median: the parameters are correlated
//! and a median would mix them inconsistently); with one such input it is copied; with none the
//! input of smallest positive χ² is taken (desispec raises when more than one input failed a
//! bundle; here the bundle keeps the best input and a warning is logged, so one bad bundle
//! never fails the night). Inputs on different Legendre domains are resampled onto the first
//! input's domain.

use ndarray::{Array2, Array3};

use super::{with_parts, PsfFitError, STATUS_OK};
use crate::io::header::HeaderValue;
use crate::psf::{linspace, GaussHermitePsf, TraceSet};

/// Samples per fiber when a series is moved to another domain.
const NSAMPLE: usize = 64;

/// `set` expressed on `[wmin, wmax]` with `ncoef` coefficients (a copy when it already is).
fn on_domain(set: &TraceSet, wmin: f64, wmax: f64, ncoef: usize) -> Result<TraceSet, PsfFitError> {
    if set.wmin == wmin && set.wmax == wmax && set.ncoef() == ncoef {
        return Ok(set.clone());
    }
    let w = linspace(wmin, wmax, NSAMPLE.max(2 * ncoef));
    let v = Array2::from_shape_fn((set.nfiber(), w.len()), |(f, i)| set.eval(f, w[i]));
    TraceSet::fit(&w, &v, ncoef.saturating_sub(1), wmin, wmax).map_err(PsfFitError::Input)
}

/// Number of bundles of a PSF: the BnnRCHI2 keys present, else `nfiber / 25` (DESI).
fn nbundles(psf: &GaussHermitePsf) -> usize {
    let n = (0..100)
        .take_while(|b| psf.extra_keys.get(&format!("B{b:02}RCHI2")).is_some())
        .count();
    if n > 0 {
        n
    } else {
        psf.nfiber().div_ceil(25).max(1)
    }
}

/// Averages `psfs` bundle by bundle (see the module doc). All inputs must describe the same
/// fibers, CCD, stamp and GH degrees.
pub fn mean_psf(psfs: &[GaussHermitePsf]) -> Result<GaussHermitePsf, PsfFitError> {
    let first = psfs
        .first()
        .ok_or_else(|| PsfFitError::Input("no PSF to average".into()))?;
    let nf = first.nfiber();
    for (i, p) in psfs.iter().enumerate() {
        let same = p.nfiber() == nf
            && p.fibermin == first.fibermin
            && (p.npix_x, p.npix_y) == (first.npix_x, first.npix_y)
            && (p.hsizex, p.hsizey) == (first.hsizex, first.hsizey)
            && (p.ghdegx, p.ghdegy) == (first.ghdegx, first.ghdegy);
        if !same {
            return Err(PsfFitError::Input(format!(
                "PSF #{i} differs from the first in fibers, CCD size, stamp size or GH degree"
            )));
        }
        for n in &first.param_names {
            if !p.param_names.contains(n) {
                return Err(PsfFitError::Input(format!(
                    "PSF #{i} has no parameter row {n}"
                )));
            }
        }
    }
    let nb = nbundles(first);
    let bsize = nf.div_ceil(nb);
    let ncoef = first.ncoef();
    // Every input moved onto the first input's domains and row order.
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    let mut tabs = Vec::new();
    for p in psfs {
        xs.push(on_domain(
            &p.xtrace,
            first.xtrace.wmin,
            first.xtrace.wmax,
            first.xtrace.ncoef(),
        )?);
        ys.push(on_domain(
            &p.ytrace,
            first.ytrace.wmin,
            first.ytrace.wmax,
            first.ytrace.ncoef(),
        )?);
        let mut t = Array3::<f64>::zeros(first.param_coeff.dim());
        for (r, name) in first.param_names.iter().enumerate() {
            let pr = p.param_names.iter().position(|n| n == name).unwrap_or(r);
            let row = TraceSet::new(
                p.param_coeff.index_axis(ndarray::Axis(0), pr).to_owned(),
                p.param_wmin,
                p.param_wmax,
            );
            let moved = if name == "STATUS" || name == "BUNDLE" {
                row
            } else {
                on_domain(&row, first.param_wmin, first.param_wmax, ncoef)?
            };
            for f in 0..nf {
                for c in 0..ncoef.min(moved.ncoef()) {
                    t[[r, f, c]] = moved.coeff[[f, c]];
                }
            }
        }
        tabs.push(t);
    }
    let mut xc = xs[0].coeff.clone();
    let mut yc = ys[0].coeff.clone();
    let mut tab = tabs[0].clone();
    let mut out_keys: Vec<(usize, f64, i64, i64)> = Vec::new();
    let status_row = first.param_names.iter().position(|n| n == "STATUS");
    for b in 0..nb {
        let rchi2: Vec<f64> = psfs
            .iter()
            .map(|p| {
                p.extra_keys
                    .get_f64(&format!("B{b:02}RCHI2"))
                    .unwrap_or(0.0)
            })
            .collect();
        let mut pos: Vec<f64> = rchi2.iter().copied().filter(|&v| v > 0.0).collect();
        let med = crate::stats::median_in_place(&mut pos);
        let mut sel: Vec<usize> = (0..psfs.len())
            .filter(|&i| rchi2[i] > 0.0 && rchi2[i] < med + 1.0)
            .collect();
        if sel.is_empty() {
            let best = (0..psfs.len())
                .filter(|&i| rchi2[i] > 0.0)
                .min_by(|&a, &c| rchi2[a].total_cmp(&rchi2[c]))
                .unwrap_or(0);
            log::warn!("bundle {b}: no input passes the χ² selection; using input #{best}");
            sel = vec![best];
        }
        let failed = psfs.len() - rchi2.iter().filter(|&&v| v > 0.0).count();
        if failed > 1 {
            log::warn!("bundle {b}: {failed} inputs have no fit (RCHI2 ≤ 0)");
        }
        let fibers = b * bsize..((b + 1) * bsize).min(nf);
        let k = sel.len() as f64;
        for f in fibers.clone() {
            for c in 0..xc.ncols() {
                xc[[f, c]] = sel.iter().map(|&i| xs[i].coeff[[f, c]]).sum::<f64>() / k;
            }
            for c in 0..yc.ncols() {
                yc[[f, c]] = sel.iter().map(|&i| ys[i].coeff[[f, c]]).sum::<f64>() / k;
            }
            for r in 0..tab.dim().0 {
                for c in 0..ncoef {
                    tab[[r, f, c]] = sel.iter().map(|&i| tabs[i][[r, f, c]]).sum::<f64>() / k;
                }
            }
            if let Some(sr) = status_row {
                // A fiber is good when any selected input fitted it.
                let ok = sel.iter().any(|&i| tabs[i][[sr, f, 0]] == STATUS_OK);
                tab[[sr, f, 0]] = if ok {
                    STATUS_OK
                } else {
                    tabs[sel[0]][[sr, f, 0]]
                };
            }
        }
        let key_i = |i: usize, k: &str| {
            psfs[i]
                .extra_keys
                .get_i64(&format!("B{b:02}{k}"))
                .unwrap_or(0)
        };
        out_keys.push((
            b,
            sel.iter().map(|&i| rchi2[i]).sum::<f64>() / k,
            key_i(sel[0], "NDATA"),
            key_i(sel[0], "NPAR"),
        ));
        log::debug!("bundle {b}: averaged inputs {sel:?} (rchi2 {rchi2:?})");
    }
    let mut out = with_parts(
        first,
        TraceSet::new(xc, first.xtrace.wmin, first.xtrace.wmax),
        TraceSet::new(yc, first.ytrace.wmin, first.ytrace.wmax),
        first.param_names.clone(),
        tab,
    )?;
    for (b, r, nd, np) in out_keys {
        out.extra_keys
            .set(&format!("B{b:02}RCHI2"), HeaderValue::Float(r));
        out.extra_keys
            .set(&format!("B{b:02}NDATA"), HeaderValue::Int(nd));
        out.extra_keys
            .set(&format!("B{b:02}NPAR"), HeaderValue::Int(np));
    }
    out.extra_keys
        .set("NPSFAVG", HeaderValue::Int(psfs.len() as i64));
    Ok(out)
}
