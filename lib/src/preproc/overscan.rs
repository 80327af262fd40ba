//! The robust overscan statistic of desispec (`calc_overscan`, reference/calibration.md §1.2)
//! and the overscan-step score `OSTEP` (`compute_overscan_step`). Values are ADU when applied
//! to raw pixels, electrons when applied to a dark in electrons.

use crate::stats::median_in_place;

/// Clipping threshold (sigmas) and iterations of `calc_overscan`.
pub const OVERSCAN_NSIGMA: f64 = 5.0;
pub const OVERSCAN_NITER: usize = 3;

/// The factor by which the standard deviation of a Gaussian sample clipped at ±`a` σ is
/// smaller than σ: `sqrt(1 − 2a·exp(−a²/2) / (sqrt(2π)·erf(a/√2)))` (desispec
/// `_clipped_std_bias`). Divide a clipped std by it.
pub fn clipped_std_bias(a: f64) -> f64 {
    let num = 2.0 * a * (-a * a / 2.0).exp();
    let den = (2.0 * std::f64::consts::PI).sqrt() * libm::erf(a / std::f64::consts::SQRT_2);
    (1.0 - num / den).sqrt()
}

/// `(level, rms)` of `pix` as desispec's `calc_overscan(pix, nsigma=5, niter=3)`: start from
/// the median and 1.4826·MAD, then three times keep `|p − m| < 5σ` and take the mean and the
/// (population) std of the kept pixels; the std is finally corrected for the truncation.
/// With fewer than 5 kept pixels it returns the median and MAD values (as desispec does).
/// Returns NaN for an empty input.
pub fn calc_overscan(pix: &[f64]) -> (f64, f64) {
    let mut work = pix.to_vec();
    let med = median_in_place(&mut work);
    for (w, &p) in work.iter_mut().zip(pix) {
        *w = (p - med).abs();
    }
    let mad_rms = 1.4826 * median_in_place(&mut work);
    let (mut level, mut rms) = (med, mad_rms);
    for _ in 0..OVERSCAN_NITER {
        let cut = OVERSCAN_NSIGMA * rms;
        let (mut n, mut sum) = (0usize, 0.0);
        for &p in pix {
            if (p - level).abs() < cut {
                n += 1;
                sum += p;
            }
        }
        if n < 5 {
            return (med, mad_rms);
        }
        let mean = sum / n as f64;
        let mut ss = 0.0;
        for &p in pix {
            if (p - level).abs() < cut {
                ss += (p - mean) * (p - mean);
            }
        }
        level = mean;
        rms = (ss / n as f64).sqrt();
    }
    (level, rms / clipped_std_bias(OVERSCAN_NSIGMA))
}

/// scipy `median_filter(x, size)` with its default `mode='reflect'` (`d c b a | a b c d |
/// d c b a`), for odd `size`.
pub fn median_filter_reflect(x: &[f64], size: usize) -> Vec<f64> {
    let n = x.len() as i64;
    let h = (size / 2) as i64;
    let at = |i: i64| -> f64 {
        // reflect about the edges, repeating the edge sample
        let mut j = i;
        loop {
            if j < 0 {
                j = -j - 1;
            } else if j >= n {
                j = 2 * n - j - 1;
            } else {
                return x[j as usize];
            }
        }
    };
    let mut win = vec![0.0; size];
    (0..n)
        .map(|i| {
            for (k, w) in win.iter_mut().enumerate() {
                *w = at(i - h + k as i64);
            }
            median_in_place(&mut win)
        })
        .collect()
}

/// desispec `compute_overscan_step`: max − min of the first difference of the 7-row median
/// filtered per-row overscan, ignoring 50 rows at each edge (ADU). 0 when the amp has too
/// few rows to leave anything after the margins (desispec would fail there).
pub fn overscan_step(per_row: &[f64]) -> f64 {
    const MEDIAN_SIZE: usize = 7;
    const EDGE_MARGIN: usize = 50;
    let n = per_row.len();
    if n == 0 || n <= 2 * EDGE_MARGIN {
        return 0.0;
    }
    let med = median_filter_reflect(per_row, MEDIAN_SIZE);
    let mut diff = vec![0.0; n];
    for i in 0..n - 1 {
        diff[i] = med[i + 1] - med[i];
    }
    let d = &diff[EDGE_MARGIN..n - EDGE_MARGIN];
    let max = d.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = d.iter().copied().fold(f64::INFINITY, f64::min);
    max - min
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipped_std_bias_matches_desispec() {
        // desispec _clipped_std_bias(5) = 0.99999256637
        let b = clipped_std_bias(5.0);
        assert!((b - 0.999_992_566_37).abs() < 1e-10, "{b}");
        // a = 1: sqrt(1 − 2e^{-1/2}/(sqrt(2π) erf(1/√2))) = 0.53956
        assert!((clipped_std_bias(1.0) - 0.539_56).abs() < 1e-4);
    }

    #[test]
    fn overscan_recovers_level_and_rms_and_ignores_outliers() {
        use rand::SeedableRng;
        use rand_distr::{Distribution, Normal};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let nrm = Normal::new(1000.0, 2.0).unwrap();
        let mut v: Vec<f64> = (0..20000).map(|_| nrm.sample(&mut rng)).collect();
        // a cosmic-ray trail in the overscan must not move the level or the rms
        for x in v.iter_mut().take(30) {
            *x += 500.0;
        }
        let (m, s) = calc_overscan(&v);
        // σ_mean = 2/√20000 = 0.014; σ_rms/rms = 1/√40000 = 0.5%: 5σ bounds
        assert!((m - 1000.0).abs() < 0.07, "{m}");
        assert!((s / 2.0 - 1.0).abs() < 0.025, "{s}");
        // too few pixels: median/MAD fallback
        let (m, _) = calc_overscan(&[1.0, 2.0, 3.0]);
        assert_eq!(m, 2.0);
    }

    #[test]
    fn median_filter_reflects_like_scipy() {
        // scipy.ndimage.median_filter([5,1,4,2,8], 3) = [5,4,2,4,8]
        let r = median_filter_reflect(&[5.0, 1.0, 4.0, 2.0, 8.0], 3);
        assert_eq!(r, vec![5.0, 4.0, 2.0, 4.0, 8.0]);
        // a step of 3 ADU in the middle of 400 rows gives OSTEP = 3
        let rows: Vec<f64> = (0..400)
            .map(|i| if i < 200 { 10.0 } else { 13.0 })
            .collect();
        assert!((overscan_step(&rows) - 3.0).abs() < 1e-12);
    }
}
