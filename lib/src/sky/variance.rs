//! Sky-line error inflation (desispec `_model_variance`, reference/calibration.md §3.5): around
//! each bright sky peak, find the smallest wavelength-error term σ_λ that brings the sky
//! fibers' median reduced χ² to 1, and add `(0.005·sky)² + (σ_λ·dsky/dλ)²` to the variance.

use ndarray::ArrayView2;

use crate::stats::median_in_place;

/// Python slice `a[start:stop]` bounds for a length-`n` array with possibly negative `start`
/// (desispec slices `peak-2:peak+3` without clipping, so a peak near pixel 0 selects nothing).
pub(crate) fn py_slice(start: isize, stop: isize, n: usize) -> std::ops::Range<usize> {
    let n = n as isize;
    let norm = |v: isize| {
        if v < 0 {
            (v + n).max(0)
        } else {
            v.min(n)
        }
    };
    let (s, e) = (norm(start), norm(stop));
    if e <= s {
        0..0
    } else {
        s as usize..e as usize
    }
}

/// numpy `arange(start, stop, step)` values: `start + i·delta` with `delta` as numpy computes it.
fn arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil().max(0.0) as usize;
    let delta = (start + step) - start;
    (0..len).map(|i| start + i as f64 * delta).collect()
}

/// Local maxima of `m` above 10% of its maximum (index 1..n-1).
pub(crate) fn sky_peaks(m: &[f64]) -> Vec<usize> {
    let n = m.len();
    if n < 3 {
        return Vec::new();
    }
    let mmax = m.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (1..n - 1)
        .filter(|&i| m[i] > m[i + 1] && m[i] > m[i - 1] && m[i] > 0.1 * mmax)
        .collect()
}

/// The inflated sky ivar `[nwave]` (the same for every fiber).
///
/// `flux`, `ivar`: the whole frame `[nspec, nwave]` (ivar as read, not masked, as desispec);
/// `csky`: the sky model of every fiber; `csky_ivar`: its statistical ivar `[nwave]`;
/// `skyfibers`: rows of the sky fibers used in the fit; `wave` in Angstrom.
pub fn model_variance(
    flux: ArrayView2<f64>,
    ivar: ArrayView2<f64>,
    csky: ArrayView2<f64>,
    csky_ivar: &[f64],
    skyfibers: &[usize],
    wave: &[f64],
) -> Vec<f64> {
    let nwave = wave.len();
    let nspec = csky.nrows();
    let nsky = skyfibers.len();
    // tivar = combine_ivar(frame ivar, sky ivar) over the sky fibers
    let mut tivar = vec![0.0; nsky * nwave];
    for (s, &f) in skyfibers.iter().enumerate() {
        for j in 0..nwave {
            let (a, b) = (ivar[[f, j]], csky_ivar[j]);
            if a > 0.0 && b > 0.0 {
                tivar[s * nwave + j] = 1.0 / (1.0 / a + 1.0 / b);
            }
        }
    }
    // mean sky over all fibers and |dsky/dλ|
    let mut msky = vec![0.0; nwave];
    for f in 0..nspec {
        for (j, m) in msky.iter_mut().enumerate() {
            *m += csky[[f, j]];
        }
    }
    msky.iter_mut().for_each(|m| *m /= nspec as f64);
    let mut dskydw = vec![0.0; nwave];
    for j in 1..nwave.saturating_sub(1) {
        dskydw[j] = ((msky[j + 1] - msky[j - 1]) / (wave[j + 1] - wave[j - 1])).abs();
    }
    // exclude residuals inconsistent (3σ) with a worst-case model error: 20% flat, 0.5 Å
    for (s, &f) in skyfibers.iter().enumerate() {
        for j in 0..nwave {
            let t = tivar[s * nwave + j];
            let maxvar = 1.0 / (t + if t == 0.0 { 1.0 } else { 0.0 })
                + (0.2 * msky[j]).powi(2)
                + (0.5 * dskydw[j]).powi(2);
            let r = flux[[f, j]] - csky[[f, j]];
            if r * r > 9.0 * maxvar {
                tivar[s * nwave + j] = 0.0;
            }
        }
    }
    let input_skyvar: Vec<f64> = csky_ivar
        .iter()
        .map(|&v| 1.0 / (v + if v == 0.0 { 1.0 } else { 0.0 }))
        .collect();
    let mut skyvar = input_skyvar.clone();
    let sigma_flat = 0.005;
    let sigma_waves = arange(0.005, 2.0, 0.005);
    let norm = 0.7888; // median → mean of a χ² with 3 degrees of freedom
    let mut chi2f = vec![0.0; nsky];
    for peak in sky_peaks(&msky) {
        let p = peak as isize;
        let win = py_slice(p - 2, p + 3, nwave);
        let win2 = py_slice(p - 3, p + 4, nwave);
        let mut sigma_peak = 2.0;
        for &sw in &sigma_waves {
            for (s, &f) in skyfibers.iter().enumerate() {
                let (mut sum, mut cnt) = (0.0, 0usize);
                for j in win.clone() {
                    let t = tivar[s * nwave + j];
                    let var = 1.0 / (t + if t == 0.0 { 1.0 } else { 0.0 });
                    let ok = if t > 0.0 { 1.0 } else { 0.0 };
                    let pivar =
                        ok / ((var + (sigma_flat * msky[j]).powi(2)) + (sw * dskydw[j]).powi(2));
                    let r = flux[[f, j]] - csky[[f, j]];
                    sum += pivar * (r * r);
                    if t > 0.0 {
                        cnt += 1;
                    }
                }
                // 0/0 is NaN in numpy, and a NaN median never passes the test below
                chi2f[s] = sum / cnt as f64;
            }
            let med = median_in_place(&mut chi2f.clone()) / norm;
            if med <= 1.0 {
                sigma_peak = sw;
                break;
            }
        }
        log::debug!("peak at {:.0} A: sigma_wave={sigma_peak}", wave[peak]);
        for j in win2 {
            skyvar[j] =
                input_skyvar[j] + (sigma_flat * msky[j]).powi(2) + (sigma_peak * dskydw[j]).powi(2);
        }
    }
    skyvar
        .iter()
        .zip(csky_ivar)
        .map(|(&v, &c)| {
            let ok = if c > 0.0 { 1.0 } else { 0.0 };
            ok / (v + if v == 0.0 { 1.0 } else { 0.0 })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_slices() {
        assert_eq!(py_slice(-1, 4, 100), 0..0); // a[-1:4] is empty
        assert_eq!(py_slice(0, 5, 100), 0..5);
        assert_eq!(py_slice(97, 102, 100), 97..100);
        assert_eq!(arange(0.005, 2.0, 0.005).len(), 399);
    }
}
