//! Empirical per-fiber sky-line throughput correction (desispec
//! `calculate_throughput_corrections`, reference/calibration.md §3.7): fit
//! `flux = a + b·sky` in ±4 Å around each bright sky line, combine the scales b per fiber with
//! outlier rejection.

use ndarray::ArrayView2;
use rayon::prelude::*;

use super::lines::SKY_LINES;
use crate::stats::{argmax, median};

/// Inverse of a 2×2 matrix `[[a, b], [c, d]]` by LU with partial pivoting, as numpy's `inv`
/// (LAPACK gesv); `None` when a pivot is exactly zero (numpy raises LinAlgError).
pub(crate) fn inv2(a: f64, b: f64, c: f64, d: f64) -> Option<[[f64; 2]; 2]> {
    // rows swapped when |c| > |a|
    let swap = c.abs() > a.abs();
    let (u00, u01, l10, r1) = if swap { (c, d, a, b) } else { (a, b, c, d) };
    if u00 == 0.0 {
        return None;
    }
    let l = l10 * (1.0 / u00);
    let u11 = r1 - l * u01;
    if u11 == 0.0 {
        return None;
    }
    // solve L U X = P I
    let cols = if swap {
        [[0.0, 1.0], [1.0, 0.0]]
    } else {
        [[1.0, 0.0], [0.0, 1.0]]
    };
    let mut inv = [[0.0; 2]; 2];
    for (k, e) in cols.iter().enumerate() {
        let y0 = e[0];
        let y1 = e[1] - l * y0;
        let x1 = y1 / u11;
        let x0 = (y0 - u01 * x1) / u00;
        inv[0][k] = x0;
        inv[1][k] = x1;
    }
    Some(inv)
}

/// Per-fiber throughput corrections `[nspec]` (1 where it cannot be measured or its error
/// exceeds 0.1). `flux`, `ivar`, `mask`: the frame; `sky`, `sky_ivar`: the sky model;
/// `wave` in Angstrom.
pub fn throughput_corrections(
    wave: &[f64],
    flux: ArrayView2<f64>,
    ivar: ArrayView2<f64>,
    mask: ArrayView2<u32>,
    sky: ArrayView2<f64>,
    sky_ivar: ArrayView2<f64>,
) -> Vec<f64> {
    let nwave = wave.len();
    let nspec = flux.nrows();
    if nwave == 0 {
        return vec![1.0; nspec];
    }
    let hw = 4.0; // Angstrom: best precision/robustness on a dark night (desispec)
    let windows: Vec<Vec<usize>> = SKY_LINES
        .iter()
        .filter(|&&l| l > wave[0] && l < wave[nwave - 1])
        .map(|&l| {
            (0..nwave)
                .filter(|&j| wave[j] >= l - hw && wave[j] <= l + hw)
                .collect::<Vec<_>>()
        })
        .filter(|ii| ii.len() >= 2)
        .collect();
    (0..nspec)
        .into_par_iter()
        .map(|f| {
            let tiv = |j: usize| {
                if mask[[f, j]] == 0 && sky_ivar[[f, j]] > 0.0 {
                    ivar[[f, j]]
                } else {
                    0.0
                }
            };
            let mut coef = Vec::new();
            let mut var = Vec::new();
            for ii in &windows {
                let (mut sw, mut swf, mut swsf, mut sws, mut sws2) = (0.0, 0.0, 0.0, 0.0, 0.0);
                for &j in ii {
                    let t = tiv(j);
                    let (fl, s) = (flux[[f, j]], sky[[f, j]]);
                    sw += t;
                    swf += t * fl;
                    swsf += t * fl * s;
                    sws += t * s;
                    sws2 += t * s * s;
                }
                if sw <= 0.0 {
                    continue;
                }
                if let Some(ai) = inv2(sw, sws, sws, sws2) {
                    coef.push(ai[1][0] * swf + ai[1][1] * swsf);
                    var.push(ai[1][1]);
                }
            }
            if coef.is_empty() {
                log::warn!("cannot correct the throughput of fiber {f}");
                return 1.0;
            }
            let floor = |v: f64, s: f64| {
                if v > 0.0 {
                    1.0 / (v + s * s)
                } else {
                    0.0
                }
            };
            let mut w: Vec<f64> = var.iter().map(|&v| floor(v, 0.005)).collect();
            let mut w_out: Vec<f64> = var.iter().map(|&v| floor(v, 0.02)).collect();
            let (mut mcoef, mut mcoeferr) = (1.0, f64::INFINITY);
            for _ in 0..50 {
                let a: f64 = w.iter().sum();
                if a <= 0.0 {
                    log::warn!("cannot correct the throughput of fiber {f}: no weight");
                    return 1.0;
                }
                mcoef = w.iter().zip(&coef).map(|(w, c)| w * c).sum::<f64>() / a;
                mcoeferr = 1.0 / a.sqrt();
                let chi2: Vec<f64> = w_out
                    .iter()
                    .zip(&coef)
                    .map(|(w, c)| w * (c - mcoef) * (c - mcoef))
                    .collect();
                let Some(worst) = argmax(&chi2) else { break };
                let med = median(chi2.iter().copied().filter(|&c| c > 0.0));
                if chi2[worst] > 9.0 * med {
                    w[worst] = 0.0;
                    w_out[worst] = 0.0;
                } else {
                    break;
                }
            }
            if mcoeferr > 0.1 {
                log::warn!(
                    "throughput correction error {mcoeferr:.4} > 0.1 for fiber {f}: not applied"
                );
                1.0
            } else {
                mcoef
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inv2_inverts_and_detects_singular() {
        let m = [[2.0, 1.0], [4.0, 3.0]];
        let i = inv2(m[0][0], m[0][1], m[1][0], m[1][1]).unwrap();
        let prod = |r: usize, c: usize| m[r][0] * i[0][c] + m[r][1] * i[1][c];
        assert!((prod(0, 0) - 1.0).abs() < 1e-14 && (prod(1, 1) - 1.0).abs() < 1e-14);
        assert!(prod(0, 1).abs() < 1e-14 && prod(1, 0).abs() < 1e-14);
        assert!(inv2(1.0, 2.0, 2.0, 4.0).is_none());
    }
}
