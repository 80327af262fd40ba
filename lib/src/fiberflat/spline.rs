//! Weighted least-squares cubic spline with desispec's knot placement (desispec
//! `linalg.spline_fit`, which calls scipy `splrep(task=-1)`; reference/calibration.md §8.9).
//!
//! Knots are spaced by about `resolution` between the first and last sample of positive weight
//! and kept only within one spacing of a sample. As in scipy, the weights multiply the
//! residuals, so the fit minimises `Σ (w_i (y_i − s(x_i)))²` (desispec passes ivar as w).

use crate::banded::BandMatrix;

/// The spline fit failed (too few samples, or a knot interval without data).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("spline fit failed: {0}")]
pub struct SplineError(pub String);

/// Cubic B-spline basis values at `x` for the full knot vector `t`: returns the index of the
/// first non-zero coefficient `l - 3` and the 4 values.
fn basis(t: &[f64], ncoef: usize, x: f64) -> (usize, [f64; 4]) {
    // interval l with t[l] <= x < t[l+1], clamped to the valid range 3..ncoef-1
    let mut l = t.partition_point(|&v| v <= x).saturating_sub(1);
    l = l.clamp(3, ncoef - 1);
    // de Boor–Cox recurrence
    let mut b = [0.0; 4];
    b[0] = 1.0;
    let mut left = [0.0; 4];
    let mut right = [0.0; 4];
    for j in 1..4 {
        left[j] = x - t[l + 1 - j];
        right[j] = t[l + j] - x;
        let mut saved = 0.0;
        for r in 0..j {
            let den = right[r + 1] + left[j - r];
            let temp = if den != 0.0 { b[r] / den } else { 0.0 };
            b[r] = saved + right[r + 1] * temp;
            saved = left[j - r] * temp;
        }
        b[j] = saved;
    }
    (l - 3, b)
}

/// Fits `y(x)` (x increasing) with weights `w` (multiplying residuals) and evaluates the spline
/// at `xout` (extrapolating the end pieces, as scipy `splev`).
pub fn spline_fit(
    xout: &[f64],
    x: &[f64],
    y: &[f64],
    resolution: f64,
    w: &[f64],
) -> Result<Vec<f64>, SplineError> {
    let sel: Vec<usize> = (0..x.len()).filter(|&i| w[i] > 0.0).collect();
    if sel.len() < 2 {
        return Err(SplineError(format!(
            "only {} values with positive weight",
            sel.len()
        )));
    }
    let (w1, w2) = (x[sel[0]], x[sel[sel.len() - 1]]);
    let n = ((w2 - w1) / resolution) as usize;
    let res = (w2 - w1) / (n + 1) as f64;
    let knots: Vec<f64> = (0..n)
        .map(|i| w1 + res * (0.5 + i as f64))
        .filter(|&k| {
            // keep knots within one spacing of a sample
            let p = x.partition_point(|&v| v < k);
            let d1 = if p < x.len() {
                (x[p] - k).abs()
            } else {
                f64::INFINITY
            };
            let d0 = if p > 0 {
                (k - x[p - 1]).abs()
            } else {
                f64::INFINITY
            };
            d0.min(d1) < res
        })
        .collect();
    let (xb, xe) = (x[0], x[x.len() - 1]);
    let mut t = vec![xb; 4];
    t.extend_from_slice(&knots);
    t.extend(std::iter::repeat_n(xe, 4));
    let ncoef = t.len() - 4;
    if sel.len() < ncoef {
        return Err(SplineError(format!(
            "{} samples for {ncoef} coefficients",
            sel.len()
        )));
    }
    let mut a = BandMatrix::zeros(ncoef, 3);
    let mut b = vec![0.0; ncoef];
    for &i in &sel {
        let (c0, bv) = basis(&t, ncoef, x[i]);
        let w2 = w[i] * w[i];
        for r in 0..4 {
            b[c0 + r] += w2 * y[i] * bv[r];
            for c in 0..=r {
                let v = a.get(c0 + r, c0 + c) + w2 * bv[r] * bv[c];
                a.set(c0 + r, c0 + c, v);
            }
        }
    }
    let coef = a
        .cholesky()
        .map_err(|e| SplineError(format!("singular spline system ({e})")))?
        .solve(&b);
    if coef.iter().any(|c| !c.is_finite()) {
        return Err(SplineError("non-finite spline coefficients".into()));
    }
    Ok(xout
        .iter()
        .map(|&xv| {
            let (c0, bv) = basis(&t, ncoef, xv);
            (0..4).map(|r| coef[c0 + r] * bv[r]).sum()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproduces_a_cubic_and_smooths_noise() {
        let x: Vec<f64> = (0..200).map(|i| 5000.0 + 0.8 * i as f64).collect();
        let f = |v: f64| 1.0 + 1e-3 * (v - 5050.0) - 2e-6 * (v - 5050.0).powi(2);
        let y: Vec<f64> = x.iter().map(|&v| f(v)).collect();
        let w = vec![1.0; x.len()];
        let s = spline_fit(&x, &x, &y, 5.0, &w).unwrap();
        for i in 0..x.len() {
            assert!((s[i] - y[i]).abs() < 1e-9, "{i}");
        }
        assert!(spline_fit(&x, &x, &y, 5.0, &vec![0.0; x.len()]).is_err());
    }
}
