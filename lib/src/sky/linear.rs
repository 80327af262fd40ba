//! The core linear solve of the sky model (desispec `compute_sky_linear`,
//! reference/calibration.md §3.2): one deconvolved sky `s[nwave]` shared by the sky fibers,
//! `model_f = R_f s`, weighted least squares with iterative outlier rejection.
//!
//! Only the default configuration of desispec 0.70 is implemented (no sector offsets, no sky
//! gradient PCA, no TPCORR model), with its exact normal equations and rejection order so that
//! the solution agrees to rounding.

use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

use crate::banded::{BandCholesky, BandMatrix, NotPositiveDefinite};
use crate::resolution::Resolution;
use crate::stats::{argmax, median};

/// Result of [`compute_sky_linear`].
#[derive(Debug, Clone)]
pub struct LinearFit {
    /// Deconvolved sky `[nwave]`, flat-fielded electrons/Angstrom; 0 where unconstrained.
    pub deconvolved: Vec<f64>,
    /// Whether the deconvolved sky at each wavelength was constrained (diag(A) > 0).
    pub good: Vec<bool>,
    /// Entries of the parameter covariance A⁻¹ within A's band (zero on unconstrained
    /// wavelengths, as numpy's `pinv` gives).
    pub covariance: BandMatrix,
    /// Inverse variance of the sky fibers after rejection `[nsky, nwave]`.
    pub ivar: Array2<f64>,
    /// Total number of rejected pixels.
    pub nrej: usize,
    /// Indices (into the sky-fiber list) of whole fibers rejected for an excess median residual.
    pub bad_fibers: Vec<usize>,
    /// Number of iterations run.
    pub iterations: usize,
}

/// Options of the linear solve (desispec defaults in [`Default`]).
#[derive(Debug, Clone, Copy)]
pub struct LinearOptions {
    /// Pixels with χ² > nsig² are rejected.
    pub nsig_clipping: f64,
    /// At least this many iterations.
    pub min_iterations: usize,
    /// At most this many iterations.
    pub max_iterations: usize,
}

impl Default for LinearOptions {
    fn default() -> Self {
        LinearOptions {
            nsig_clipping: 4.0,
            min_iterations: 5,
            max_iterations: 100,
        }
    }
}

/// Resolution matrices re-laid out per column for the normal equations:
/// `cols[j * nd + k] = R[j + k - h, j]` (zero where the row falls outside the matrix).
pub(crate) struct ColumnBands {
    pub nwave: usize,
    pub ndiag: usize,
    pub cols: Vec<f64>,
}

impl ColumnBands {
    pub fn new(r: &Resolution) -> Self {
        let (nd, n) = (r.ndiag(), r.nwave());
        let h = nd / 2;
        let band = r.band();
        let mut cols = vec![0.0; n * nd];
        for j in 0..n {
            for k in 0..nd {
                let i = j + k;
                if i >= h && i - h < n {
                    cols[j * nd + k] = band[[k, j]];
                }
            }
        }
        ColumnBands {
            nwave: n,
            ndiag: nd,
            cols,
        }
    }
}

/// The normal equations `A = Σ_f R_fᵀ W_f R_f`, `B = Σ_f R_fᵀ W_f y_f` with per-fiber weights
/// `w[f]` and data `y[f]` `[nfiber, nwave]`. Each column of A is summed over fibers in a fixed
/// order, so the result does not depend on the thread count.
pub(crate) fn normal_equations(
    bands: &[ColumnBands],
    w: ArrayView2<f64>,
    y: ArrayView2<f64>,
) -> (BandMatrix, Vec<f64>) {
    let n = bands.first().map(|b| b.nwave).unwrap_or(0);
    let nd = bands.first().map(|b| b.ndiag).unwrap_or(1);
    let h = nd / 2;
    let p = 2 * h;
    // contiguous copies: slice indexing in the hot loop instead of strided views
    let w = w.as_standard_layout();
    let y = y.as_standard_layout();
    let (w, y) = (w.as_slice().unwrap_or(&[]), y.as_slice().unwrap_or(&[]));
    let cols: Vec<(Vec<f64>, f64)> = (0..n)
        .into_par_iter()
        .map(|j| {
            let mut col = vec![0.0; p + 1];
            let mut bj = 0.0;
            let mut wrj = vec![0.0f64; nd];
            // rows i = j + k - h of column j, clipped to the matrix
            let k0 = h.saturating_sub(j);
            let k1 = nd.min(n + h - j);
            for (f, b) in bands.iter().enumerate() {
                // weighted column j: wrj[k] = w_f[i] R_f[i, j] with i = j + k - h
                let wf = &w[f * n..(f + 1) * n];
                let yf = &y[f * n..(f + 1) * n];
                let cj = &b.cols[j * nd..(j + 1) * nd];
                wrj.iter_mut().for_each(|v| *v = 0.0);
                for k in k0..k1 {
                    wrj[k] = wf[j + k - h] * cj[k];
                }
                // A[j+d, j] = Σ_k wrj[k] R[i, j+d], row i = j + k - h = (j+d) + (k-d) - h
                for (d, a) in col.iter_mut().enumerate().take(nd.min(n - j)) {
                    let other = &b.cols[(j + d) * nd..(j + d + 1) * nd];
                    let s: f64 = wrj[d..]
                        .iter()
                        .zip(&other[..nd - d])
                        .fold(0.0, |s, (a, b)| s + a * b);
                    *a += s;
                }
                let s: f64 = (k0..k1).fold(0.0, |s, k| s + wrj[k] * yf[j + k - h]);
                bj += s;
            }
            (col, bj)
        })
        .collect();
    let mut b = Vec::with_capacity(n);
    let mut acols = Vec::with_capacity(n);
    for (c, bj) in cols {
        acols.push(c);
        b.push(bj);
    }
    (BandMatrix::from_columns(n, p, acols), b)
}

/// Most degenerate wavelengths [`regularised_cholesky`] drops before it gives up.
const MAX_DEGENERATE: usize = 64;

/// Cholesky of `A` restricted to its constrained wavelengths: diag(A) > 0, less those whose
/// pivot vanishes to rounding. An unconstrained wavelength has an all-zero row and column
/// (A_jj = Σ w R² = 0 forces every w R_ij = 0), so 1 on its diagonal decouples it exactly. A
/// wavelength with A_jj > 0 can still be a null direction (e.g. masked on every sky fiber and
/// reached only by the resolution tails of its neighbours): its pivot fails at ~1e-22, and it is
/// dropped the same way and retried, which costs O(n·p²) per retry where desispec's dense
/// `lstsq` fallback costs O(n³) (minutes at n = 2800). Returns the factor and the mask of the
/// wavelengths kept, or the last failure after [`MAX_DEGENERATE`] drops.
fn regularised_cholesky(a: &BandMatrix) -> Result<(BandCholesky, Vec<bool>), NotPositiveDefinite> {
    let mut good: Vec<bool> = a.diagonal().iter().map(|&d| d > 0.0).collect();
    let mut areg = a.clone();
    let decouple = |m: &mut BandMatrix, j: usize| {
        let (n, p) = (m.n(), m.bw());
        for i in j.saturating_sub(p)..(j + p + 1).min(n) {
            m.set(i, j, 0.0);
        }
        m.set(j, j, 1.0);
    };
    for (j, &g) in good.iter().enumerate() {
        if !g {
            decouple(&mut areg, j);
        }
    }
    let mut dropped = 0;
    loop {
        match areg.clone().cholesky() {
            Ok(c) => return Ok((c, good)),
            Err(e) if dropped < MAX_DEGENERATE && good[e.row] => {
                log::info!("{e}; dropping that wavelength as unconstrained");
                good[e.row] = false;
                decouple(&mut areg, e.row);
                dropped += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Solves `A x = B` on the constrained wavelengths (see [`regularised_cholesky`]; the others
/// get 0), with desispec's least-squares fallback when that fails. Returns the solution, the
/// constrained mask and the factor (when Cholesky succeeded).
pub(crate) fn solve_constrained(
    a: &BandMatrix,
    b: &[f64],
) -> (Vec<f64>, Vec<bool>, Option<BandCholesky>) {
    match regularised_cholesky(a) {
        Ok((c, good)) => {
            let breg: Vec<f64> = b
                .iter()
                .zip(&good)
                .map(|(&v, &g)| if g { v } else { 0.0 })
                .collect();
            let mut x = c.solve(&breg);
            for (xj, &g) in x.iter_mut().zip(&good) {
                if !g {
                    *xj = 0.0;
                }
            }
            (x, good, Some(c))
        }
        Err(e) => {
            log::info!("{e}; falling back to least squares");
            let good: Vec<bool> = a.diagonal().iter().map(|&d| d > 0.0).collect();
            (dense_lstsq(a, b, &good), good, None)
        }
    }
}

/// Minimum-norm least squares on the constrained block (numpy `lstsq` fallback of desispec).
fn dense_lstsq(a: &BandMatrix, b: &[f64], good: &[bool]) -> Vec<f64> {
    use ndarray_linalg::LeastSquaresSvd;
    let idx: Vec<usize> = (0..a.n()).filter(|&j| good[j]).collect();
    let m = idx.len();
    let sub = Array2::from_shape_fn((m, m), |(r, c)| a.get(idx[r], idx[c]));
    let rhs = ndarray::Array1::from_iter(idx.iter().map(|&j| b[j]));
    let mut x = vec![0.0; a.n()];
    if let Ok(sol) = sub.least_squares(&rhs) {
        for (r, &j) in idx.iter().enumerate() {
            x[j] = sol.solution[r];
        }
    }
    x
}

/// Band of the pseudo-inverse of A (desispec: `cholesky_invert(A)`, else `pinv(A)`): the
/// inverse of the constrained block, zero on unconstrained wavelengths.
pub(crate) fn covariance_band(a: &BandMatrix) -> BandMatrix {
    let (mut z, good) = match regularised_cholesky(a) {
        Ok((c, good)) => (c.selected_inverse(), good),
        Err(e) => {
            log::warn!("{e}; computing the covariance by eigen-decomposition");
            let good = a.diagonal().iter().map(|&d| d > 0.0).collect();
            (dense_pinv_band(a), good)
        }
    };
    for (j, &g) in good.iter().enumerate() {
        if !g {
            z.set(j, j, 0.0);
        }
    }
    z
}

fn dense_pinv_band(a: &BandMatrix) -> BandMatrix {
    use ndarray_linalg::{Eigh, UPLO};
    let (n, p) = (a.n(), a.bw());
    let mut z = BandMatrix::zeros(n, p);
    let dense = Array2::from_shape_fn((n, n), |(i, j)| a.get(i, j));
    let Ok((vals, vecs)) = dense.eigh(UPLO::Lower) else {
        return z;
    };
    let vmax = vals.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let cut = vmax * n as f64 * f64::EPSILON;
    for j in 0..n {
        for i in j..(j + p + 1).min(n) {
            let mut s = 0.0;
            for (k, &l) in vals.iter().enumerate() {
                if l.abs() > cut {
                    s += vecs[[i, k]] * vecs[[j, k]] / l;
                }
            }
            z.set(i, j, s);
        }
    }
    z
}

/// desispec `compute_sky_linear` without offsets, gradients or TPCORR.
///
/// `flux`, `ivar`: the sky fibers `[nsky, nwave]` (ivar already zeroed on masked pixels and bad
/// fibers); `res`: their resolution matrices. Iteration 0 rejects only the worst fiber per
/// wavelength with χ² > nsig², later iterations every such pixel; whole fibers whose median
/// residual exceeds 7 × 1.48 × median |median residual| are dropped (at least 3 fibers needed).
pub fn compute_sky_linear(
    flux: ArrayView2<f64>,
    ivar: ArrayView2<f64>,
    res: &[Resolution],
    opts: &LinearOptions,
) -> LinearFit {
    let (nfib, nwave) = flux.dim();
    let bands: Vec<ColumnBands> = res.iter().map(ColumnBands::new).collect();
    let mut current_ivar = ivar.to_owned();
    let nsig2 = opts.nsig_clipping * opts.nsig_clipping;
    let mut nout_tot = 0;
    let mut bad_fibers = Vec::new();
    let mut last_a = BandMatrix::zeros(nwave, 0);
    let mut param = vec![0.0; nwave];
    let mut good = vec![false; nwave];
    let mut iterations = 0;
    for iteration in 0..opts.max_iterations.max(1) {
        iterations = iteration + 1;
        let (a, b) = normal_equations(&bands, current_ivar.view(), flux);
        let (x, g, _) = solve_constrained(&a, &b);
        param = x;
        good = g;
        last_a = a;

        // χ² and median residual per fiber, with the ivar of this solve
        let rows: Vec<(Vec<f64>, f64)> = (0..nfib)
            .into_par_iter()
            .map(|f| {
                let model = res[f].apply(&param).unwrap_or_else(|_| vec![0.0; nwave]);
                let (fl, iv) = (flux.row(f), current_ivar.row(f));
                let mut chi2 = vec![0.0; nwave];
                let mut resid = Vec::new();
                for i in 0..nwave {
                    let r = fl[i] - model[i];
                    chi2[i] = iv[i] * r * r;
                    if iv[i] > 0.0 {
                        resid.push(r);
                    }
                }
                let med = if resid.is_empty() { 0.0 } else { median(resid) };
                (chi2, med)
            })
            .collect();
        let medflux: Vec<f64> = rows.iter().map(|r| r.1).collect();
        let chi2 = Array2::from_shape_fn((nfib, nwave), |(f, i)| rows[f].0[i]);

        // whole fibers with an excess median residual
        let nonzero: Vec<f64> = medflux
            .iter()
            .filter(|&&m| m != 0.0)
            .map(|m| m.abs())
            .collect();
        if nonzero.len() > 2 {
            let rms = 1.48 * median(nonzero);
            for (f, &m) in medflux.iter().enumerate() {
                if m.abs() > 7.0 * rms {
                    log::warn!("discarding sky fiber {f} with median residual {m:.2} > 7*{rms:.2}");
                    current_ivar.row_mut(f).fill(0.0);
                    bad_fibers.push(f);
                }
            }
        }

        let mut nout_iter = 0;
        if iteration < 1 {
            // only the worst fiber per wavelength
            for (i, col) in chi2.axis_iter(Axis(1)).enumerate() {
                if col.iter().any(|&c| c > nsig2) {
                    let c: Vec<f64> = col.to_vec();
                    if let Some(worst) = argmax(&c) {
                        current_ivar[[worst, i]] = 0.0;
                        nout_iter += 1;
                    }
                }
            }
        } else {
            for (iv, &c) in current_ivar.iter_mut().zip(chi2.iter()) {
                if c > nsig2 {
                    *iv = 0.0;
                    nout_iter += 1;
                }
            }
        }
        nout_tot += nout_iter;
        let sum_chi2: f64 = chi2.iter().sum();
        let ndf = chi2.iter().filter(|&&c| c > 0.0).count() as i64 - nwave as i64;
        log::debug!(
            "iter {iteration}: chi2={sum_chi2:.1} ndf={ndf} chi2pdf={:.3} nout={nout_iter}",
            if ndf > 0 { sum_chi2 / ndf as f64 } else { 0.0 }
        );
        if nout_iter == 0 && iteration + 1 >= opts.min_iterations {
            break;
        }
    }
    let covariance = covariance_band(&last_a);
    LinearFit {
        deconvolved: param,
        good,
        covariance,
        ivar: current_ivar,
        nrej: nout_tot,
        bad_fibers,
        iterations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wavelengths 5 and 6 seen only together (a rank-one 2×2 block): A_66 > 0 but its pivot
    /// vanishes. The solve drops 6, keeps the rest exact, and never needs the dense fallback.
    #[test]
    fn a_null_direction_with_positive_diagonal_is_dropped_not_densified() {
        let n = 12;
        let mut a = BandMatrix::zeros(n, 2);
        for j in 0..n {
            a.set(j, j, 2.0);
            if j + 1 < n {
                a.set(j + 1, j, 0.5);
            }
        }
        // rows/cols 5 and 6: only the combination x5 + x6 is measured
        for j in [4, 5, 6, 7] {
            for i in [4, 5, 6, 7] {
                if i >= j && i - j <= 2 {
                    a.set(i, j, 0.0);
                }
            }
        }
        for (i, j) in [(5, 5), (6, 5), (6, 6)] {
            a.set(i, j, 1.0);
        }
        a.set(4, 4, 2.0);
        a.set(7, 7, 2.0);
        assert!(a.clone().cholesky().is_err());
        let b: Vec<f64> = (0..n)
            .map(|j| if j == 6 { 3.0 } else { j as f64 + 1.0 })
            .collect();
        let mut b = b;
        b[5] = 3.0; // consistent with the rank-one block
        let (x, good, chol) = solve_constrained(&a, &b);
        assert!(
            chol.is_some(),
            "the banded path must succeed after dropping"
        );
        assert_eq!(good.iter().filter(|g| !**g).count(), 1);
        assert!(!good[6] && x[6] == 0.0);
        for i in (0..n).filter(|&i| i != 6) {
            let ax: f64 = (0..n).map(|j| a.get(i, j) * x[j]).sum();
            assert!((ax - b[i]).abs() < 1e-12, "row {i}: {ax} vs {}", b[i]);
        }
        let cov = covariance_band(&a);
        assert_eq!(cov.get(6, 6), 0.0);
        assert!(cov.get(5, 5) > 0.0);
    }
}
