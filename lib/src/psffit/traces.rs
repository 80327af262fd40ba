//! Trace corrections: Legendre series in wavelength fitted to measured offsets from the input
//! traces, folded into the input coefficients; fibers without measurements take the
//! correction interpolated from their neighbours (dead fibers keep a sensible trace).
//! Also the x traces of a continuum exposure (flat) from cross-dispersion profile fits in
//! bands of rows (reference/extraction.md §3: desispec measures x the same way, per row band).

use ndarray::Array2;
use rayon::prelude::*;

use super::measure::{fit_profile, solve_spd};
use super::PsfFitOptions;
use crate::io::preproc::PreprocImage;
use crate::psf::{legendre_basis, GaussHermitePsf, TraceSet};

/// One measured offset of a trace from its prediction at wavelength `wave` (Angstrom):
/// `value` ± `err`, pixels.
#[derive(Debug, Clone, Copy)]
pub struct Offset {
    pub wave: f64,
    pub value: f64,
    pub err: f64,
}

/// Outlier rejection of the correction fit, in σ of the measurement error (scaled by the fit's
/// reduced χ² when that exceeds 1).
const CLIP_NSIG: f64 = 4.0;
/// Largest degree of an x correction from a flat.
const MAX_XDEG: usize = 4;

/// Weighted least-squares Legendre fit over the trace domain `[wmin, wmax]` of the offsets,
/// of degree at most `maxdeg` (lowered to leave ≥ 2 degrees of freedom), with iterative
/// `CLIP_NSIG` rejection. Returns the coefficients and the number of offsets kept, or `None`
/// with fewer than `min_n` usable offsets.
pub fn fit_correction(
    offs: &[Offset],
    wmin: f64,
    wmax: f64,
    maxdeg: usize,
    min_n: usize,
) -> Option<(Vec<f64>, usize)> {
    let mut keep: Vec<bool> = offs
        .iter()
        .map(|o| o.err > 0.0 && o.err.is_finite() && o.value.is_finite())
        .collect();
    let scale = 2.0 / (wmax - wmin);
    for _ in 0..10 {
        let n = keep.iter().filter(|&&k| k).count();
        if n < min_n.max(1) {
            return None;
        }
        let deg = maxdeg.min(n.saturating_sub(3));
        let np = deg + 1;
        let mut a = vec![0.0; np * np];
        let mut b = vec![0.0; np];
        let mut basis = vec![0.0; np];
        for (o, _) in offs.iter().zip(&keep).filter(|(_, &k)| k) {
            legendre_basis((o.wave - wmin) * scale - 1.0, &mut basis);
            let w = 1.0 / (o.err * o.err);
            for i in 0..np {
                b[i] += w * basis[i] * o.value;
                for j in 0..np {
                    a[i * np + j] += w * basis[i] * basis[j];
                }
            }
        }
        let (c, _) = solve_spd(&a, &b)?;
        let eval = |w: f64, basis: &mut [f64]| {
            legendre_basis((w - wmin) * scale - 1.0, basis);
            basis.iter().zip(&c).map(|(a, b)| a * b).sum::<f64>()
        };
        let mut chi2 = 0.0;
        for (o, _) in offs.iter().zip(&keep).filter(|(_, &k)| k) {
            let r = (o.value - eval(o.wave, &mut basis)) / o.err;
            chi2 += r * r;
        }
        let rchi = (chi2 / (n - np).max(1) as f64).max(1.0).sqrt();
        let mut changed = false;
        for (o, k) in offs.iter().zip(keep.iter_mut()) {
            if *k && ((o.value - eval(o.wave, &mut basis)) / o.err).abs() > CLIP_NSIG * rchi {
                *k = false;
                changed = true;
            }
        }
        if !changed {
            return Some((c, n));
        }
    }
    None
}

/// Fills the `None` entries of per-fiber corrections by linear interpolation in fiber index
/// between the nearest fibers that have one (copying at the ends); all `None` stays zero.
pub fn fill_from_neighbours(corr: &mut [Option<Vec<f64>>]) {
    let good: Vec<usize> = (0..corr.len()).filter(|&i| corr[i].is_some()).collect();
    if good.is_empty() {
        return;
    }
    let filled: Vec<Option<Vec<f64>>> = (0..corr.len())
        .map(|i| {
            if corr[i].is_some() {
                return None;
            }
            let hi = good.partition_point(|&g| g < i);
            let pick = |g: usize| corr[g].clone().unwrap_or_default();
            Some(match (hi.checked_sub(1).map(|k| good[k]), good.get(hi)) {
                (Some(a), Some(&b)) => {
                    let t = (i - a) as f64 / (b - a) as f64;
                    let (ca, cb) = (pick(a), pick(b));
                    let n = ca.len().max(cb.len());
                    (0..n)
                        .map(|k| {
                            let va = ca.get(k).copied().unwrap_or(0.0);
                            let vb = cb.get(k).copied().unwrap_or(0.0);
                            va + t * (vb - va)
                        })
                        .collect()
                }
                (Some(a), None) => pick(a),
                (None, Some(&b)) => pick(b),
                (None, None) => vec![],
            })
        })
        .collect();
    for (c, f) in corr.iter_mut().zip(filled) {
        if f.is_some() {
            *c = f;
        }
    }
}

/// `set` plus the per-fiber corrections (Legendre over the same domain; shorter or longer
/// series are padded; terms beyond the set's degree are dropped, which the correction
/// degree limit avoids).
pub fn apply_corrections(set: &TraceSet, corr: &[Option<Vec<f64>>]) -> TraceSet {
    let mut c: Array2<f64> = set.coeff.clone();
    for (f, cf) in corr.iter().enumerate() {
        if let Some(cf) = cf {
            for (k, v) in cf.iter().enumerate().take(c.ncols()) {
                c[[f, k]] += v;
            }
        }
    }
    TraceSet::new(c, set.wmin, set.wmax)
}

/// The x offsets of every fiber's trace on a continuum exposure, measured from the traces of
/// `psf`: one profile fit per band of `opts.band_rows` rows, at the wavelength of the band
/// centre from `psf`'s y(λ). Offsets with S/N below `opts.min_snr_profile` are dropped.
/// `[nfiber][band]` lists, in fiber order (fibers in parallel, deterministic).
pub fn measure_x_offsets(
    img: &PreprocImage,
    psf: &GaussHermitePsf,
    opts: &PsfFitOptions,
) -> Vec<Vec<Offset>> {
    let (ny, _) = img.shape();
    let band = opts.band_rows.max(1);
    let nband = ny / band;
    (0..psf.nfiber())
        .into_par_iter()
        .map_init(
            || psf.evaluator(),
            |ev, f| {
                let mut out = Vec::with_capacity(nband);
                for b in 0..nband {
                    let y0 = b * band;
                    let yc = y0 as f64 + 0.5 * (band as f64 - 1.0);
                    let w = psf.wavelength_exact(f, yc);
                    let batch = psf.spot_params(f, 1, &[w]);
                    let mut p = batch.get(0, 0);
                    // Centre the stamp on the band, not on y(w) rounded (same thing to 1e-6 px).
                    p.y = yc;
                    if let Some(m) = fit_profile(img, ev, &p, y0, band, opts.halfx) {
                        if m.snr >= opts.min_snr_profile {
                            out.push(Offset {
                                wave: w,
                                value: m.x - p.x,
                                err: m.x_err,
                            });
                        }
                    }
                }
                out
            },
        )
        .collect()
}

/// New x traces from a continuum exposure: offsets per band, one correction per fiber of
/// degree up to the trace degree, dead fibers interpolated. Returns the trace set and, per
/// fiber, whether it was measured.
pub fn x_traces_from_flat(
    img: &PreprocImage,
    psf: &GaussHermitePsf,
    opts: &PsfFitOptions,
) -> (TraceSet, Vec<bool>) {
    let offs = measure_x_offsets(img, psf, opts);
    let xt = &psf.xtrace;
    // A correction of the input shape, not a new trace: degree ≤ 4 keeps the ends from
    // swinging when a few bands there are rejected.
    let maxdeg = xt.ncoef().saturating_sub(1).min(MAX_XDEG);
    let mut corr: Vec<Option<Vec<f64>>> = offs
        .iter()
        .map(|o| fit_correction(o, xt.wmin, xt.wmax, maxdeg, opts.min_bands).map(|c| c.0))
        .collect();
    let measured: Vec<bool> = corr.iter().map(|c| c.is_some()).collect();
    fill_from_neighbours(&mut corr);
    (apply_corrections(xt, &corr), measured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correction_fit_recovers_polynomial_and_rejects_outlier() {
        let (wmin, wmax) = (4000.0, 5000.0);
        let truth = [0.3, -0.2, 0.05];
        let mut offs: Vec<Offset> = (0..40)
            .map(|i| {
                let w = wmin + 25.0 * i as f64;
                let mut b = [0.0; 3];
                legendre_basis((w - wmin) * 2.0 / (wmax - wmin) - 1.0, &mut b);
                Offset {
                    wave: w,
                    value: b.iter().zip(&truth).map(|(a, c)| a * c).sum(),
                    err: 0.01,
                }
            })
            .collect();
        offs[7].value += 1.0; // a cosmic ray on one band
        let (c, n) = fit_correction(&offs, wmin, wmax, 2, 5).unwrap();
        assert_eq!(n, 39);
        for (a, b) in c.iter().zip(&truth) {
            assert!((a - b).abs() < 1e-9, "{c:?}");
        }
        assert!(fit_correction(&offs[..3], wmin, wmax, 2, 5).is_none());
    }

    #[test]
    fn neighbours_fill_dead_fibers() {
        let mut c = vec![None, Some(vec![1.0, 2.0]), None, Some(vec![3.0]), None];
        fill_from_neighbours(&mut c);
        assert_eq!(c[0], Some(vec![1.0, 2.0]));
        assert_eq!(c[2], Some(vec![2.0, 1.0]));
        assert_eq!(c[4], Some(vec![3.0]));
    }
}
