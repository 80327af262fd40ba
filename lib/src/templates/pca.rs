//! Uncentred PCA of a set of spectra (what redrock's template builders do with EMPCA and unit
//! weights): the basis spans the spectra themselves, because the fitter models a spectrum as
//! Σ a_k T_k with no separate mean term.

use crate::linalg::{eigh_in_place, LinalgError};

/// The leading `nbasis` principal vectors of `rows` (`nrow` spectra of `nwave` samples,
/// row-major `[nrow * nwave]`), through the `nrow × nrow` Gram matrix X Xᵀ (cheap because
/// nrow ≪ nwave). Returns the basis `[nbasis * nwave]` (unit-norm rows, sign fixed so that the
/// largest-magnitude sample is positive) and the fraction of Σ‖x‖² each vector captures.
pub fn pca(
    rows: &[f64],
    nrow: usize,
    nwave: usize,
    nbasis: usize,
) -> Result<(Vec<f64>, Vec<f64>), LinalgError> {
    assert_eq!(rows.len(), nrow * nwave);
    assert!(nbasis <= nrow && nbasis > 0);
    let mut g = vec![0.0; nrow * nrow];
    for i in 0..nrow {
        let xi = &rows[i * nwave..(i + 1) * nwave];
        for j in 0..=i {
            let xj = &rows[j * nwave..(j + 1) * nwave];
            let v: f64 = xi.iter().zip(xj).map(|(a, b)| a * b).sum();
            g[i * nrow + j] = v;
            g[j * nrow + i] = v;
        }
    }
    let total: f64 = (0..nrow).map(|i| g[i * nrow + i]).sum();
    let evals = eigh_in_place(&mut g, nrow)?;
    let mut basis = vec![0.0; nbasis * nwave];
    let mut frac = Vec::with_capacity(nbasis);
    for k in 0..nbasis {
        // eigenvalues ascend: the k-th largest is column nrow-1-k
        let col = nrow - 1 - k;
        let lam = evals[col].max(0.0);
        frac.push(lam / total);
        let out = &mut basis[k * nwave..(k + 1) * nwave];
        for i in 0..nrow {
            let u = g[i * nrow + col];
            for (o, x) in out.iter_mut().zip(&rows[i * nwave..(i + 1) * nwave]) {
                *o += u * x;
            }
        }
        let norm = out.iter().map(|v| v * v).sum::<f64>().sqrt();
        let peak = out
            .iter()
            .fold(0.0f64, |m, &v| if v.abs() > m.abs() { v } else { m });
        let s = if norm > 0.0 {
            peak.signum() / norm
        } else {
            0.0
        };
        out.iter_mut().for_each(|v| *v *= s);
    }
    Ok((basis, frac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_two_dimensional_span() {
        // 6 spectra that are combinations of two shapes: two vectors capture everything.
        let n = 50;
        let a: Vec<f64> = (0..n).map(|i| 1.0 + 0.01 * i as f64).collect();
        let b: Vec<f64> = (0..n).map(|i| ((i as f64) * 0.3).sin()).collect();
        let mut rows = Vec::new();
        for (p, q) in [
            (1.0, 0.1),
            (0.5, -0.3),
            (2.0, 0.7),
            (1.2, 0.0),
            (0.3, 0.4),
            (1.0, -1.0),
        ] {
            rows.extend(a.iter().zip(&b).map(|(x, y)| p * x + q * y));
        }
        let (basis, frac) = pca(&rows, 6, n, 3).unwrap();
        assert!((frac[0] + frac[1] - 1.0).abs() < 1e-10, "{frac:?}");
        assert!(frac[2] < 1e-12);
        // b lies in the span of the first two vectors
        let proj: f64 = (0..2)
            .map(|k| {
                let v = &basis[k * n..(k + 1) * n];
                v.iter().zip(&b).map(|(x, y)| x * y).sum::<f64>().powi(2)
            })
            .sum();
        let bb: f64 = b.iter().map(|x| x * x).sum();
        assert!((proj - bb).abs() < 1e-9 * bb);
    }
}
