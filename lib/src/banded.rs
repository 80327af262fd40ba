//! Symmetric positive-definite banded matrices: Cholesky factorisation, solve, and the
//! selected inverse (the entries of A⁻¹ inside A's band).
//!
//! The normal equations of the deconvolved sky and of the fiber-flat lamp spectrum,
//! `A = Σ_f R_fᵀ W_f R_f`, are banded with half-bandwidth `2h` when each resolution matrix has
//! `2h+1` diagonals (reference/calibration.md §8.7). desispec densifies A (O(n³)); a banded
//! Cholesky is O(n·p²) and gives the same solution to rounding. The sky variance needs only
//! `diag(R̄ A⁻¹ R̄ᵀ)`, i.e. the entries of A⁻¹ within the band, which the Takahashi recurrence
//! computes from the Cholesky factor without the full inverse.

/// A symmetric `n × n` matrix with half-bandwidth `p`, lower band stored by column:
/// `data[j * (p + 1) + d] = A[j + d, j]` for `d = 0..=p` (entries past the end are zero).
#[derive(Debug, Clone, PartialEq)]
pub struct SymBand {
    n: usize,
    p: usize,
    data: Vec<f64>,
}

/// The Cholesky factorisation failed: the matrix is not (numerically) positive definite.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("banded Cholesky failed at row {row}: pivot {pivot:e} is not positive")]
pub struct NotPositiveDefinite {
    /// Row where the pivot failed.
    pub row: usize,
    /// The failed pivot value.
    pub pivot: f64,
}

impl SymBand {
    /// A zero matrix of size `n` with half-bandwidth `p`.
    pub fn zeros(n: usize, p: usize) -> Self {
        SymBand {
            n,
            p,
            data: vec![0.0; n * (p + 1)],
        }
    }

    /// Builds from column bands: `cols[j][d] = A[j + d, j]`, each of length `p + 1`.
    pub fn from_columns(n: usize, p: usize, cols: Vec<Vec<f64>>) -> Self {
        let mut m = Self::zeros(n, p);
        for (j, c) in cols.into_iter().enumerate().take(n) {
            let len = c.len().min(p + 1);
            m.data[j * (p + 1)..j * (p + 1) + len].copy_from_slice(&c[..len]);
        }
        m
    }

    /// Matrix size.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Half-bandwidth.
    pub fn p(&self) -> usize {
        self.p
    }

    /// `A[i, j]` (symmetric; zero outside the band).
    pub fn get(&self, i: usize, j: usize) -> f64 {
        let (i, j) = if i >= j { (i, j) } else { (j, i) };
        if i - j > self.p || i >= self.n {
            return 0.0;
        }
        self.data[j * (self.p + 1) + (i - j)]
    }

    /// Sets `A[i, j]` (and `A[j, i]`); `|i - j|` must be within the band.
    pub fn set(&mut self, i: usize, j: usize, v: f64) {
        let (i, j) = if i >= j { (i, j) } else { (j, i) };
        debug_assert!(i - j <= self.p && i < self.n);
        self.data[j * (self.p + 1) + (i - j)] = v;
    }

    /// The diagonal.
    pub fn diagonal(&self) -> Vec<f64> {
        (0..self.n).map(|j| self.data[j * (self.p + 1)]).collect()
    }

    /// The dense matrix (tests and fallbacks only).
    pub fn to_dense(&self) -> ndarray::Array2<f64> {
        ndarray::Array2::from_shape_fn((self.n, self.n), |(i, j)| self.get(i, j))
    }

    /// Cholesky factor `L` (lower, same band) with `A = L Lᵀ`.
    pub fn cholesky(&self) -> Result<BandCholesky, NotPositiveDefinite> {
        let (n, p) = (self.n, self.p);
        let w = p + 1;
        let mut l = self.data.clone();
        for j in 0..n {
            // L[j, j] = sqrt(A[j, j] - Σ_k L[j, k]²) over k in max(0, j-p)..j
            let k0 = j.saturating_sub(p);
            let mut s = l[j * w];
            for k in k0..j {
                let v = l[k * w + (j - k)];
                s -= v * v;
            }
            if s.is_nan() || s <= 0.0 {
                return Err(NotPositiveDefinite { row: j, pivot: s });
            }
            let ljj = s.sqrt();
            l[j * w] = ljj;
            // L[i, j] = (A[i, j] - Σ_k L[i, k] L[j, k]) / L[j, j] for i in j+1..=j+p
            for i in j + 1..(j + p + 1).min(n) {
                let k0 = i.saturating_sub(p);
                let mut s = l[j * w + (i - j)];
                for k in k0..j {
                    s -= l[k * w + (i - k)] * l[k * w + (j - k)];
                }
                l[j * w + (i - j)] = s / ljj;
            }
        }
        Ok(BandCholesky { n, p, l })
    }
}

/// The Cholesky factor of a [`SymBand`].
#[derive(Debug, Clone)]
pub struct BandCholesky {
    n: usize,
    p: usize,
    l: Vec<f64>,
}

impl BandCholesky {
    fn lij(&self, i: usize, j: usize) -> f64 {
        self.l[j * (self.p + 1) + (i - j)]
    }

    /// Solves `A x = b`.
    pub fn solve(&self, b: &[f64]) -> Vec<f64> {
        let (n, p) = (self.n, self.p);
        let mut y = b.to_vec();
        // forward: L y = b
        for i in 0..n {
            let mut s = y[i];
            for (k, &yk) in y.iter().enumerate().take(i).skip(i.saturating_sub(p)) {
                s -= self.lij(i, k) * yk;
            }
            y[i] = s / self.lij(i, i);
        }
        // backward: Lᵀ x = y
        for i in (0..n).rev() {
            let mut s = y[i];
            for (k, &yk) in y.iter().enumerate().take((i + p + 1).min(n)).skip(i + 1) {
                s -= self.lij(k, i) * yk;
            }
            y[i] = s / self.lij(i, i);
        }
        y
    }

    /// The entries of `A⁻¹` within the band (Takahashi et al. 1973 recurrence on the
    /// Cholesky factor), as a [`SymBand`] with the same half-bandwidth.
    pub fn selected_inverse(&self) -> SymBand {
        let (n, p) = (self.n, self.p);
        let mut z = SymBand::zeros(n, p);
        let mut acc = vec![0.0; p + 1];
        for j in (0..n).rev() {
            let kmax = (j + p + 1).min(n);
            let ljj = self.lij(j, j);
            // Z[i, j] = -(Σ_{k>j} Z[i, k] L[k, j]) / L[j, j] for i > j (all Z[i, k] known)
            for i in j + 1..kmax {
                let mut s = 0.0;
                for k in j + 1..kmax {
                    s += z.get(i, k) * self.lij(k, j);
                }
                acc[i - j] = -s / ljj;
            }
            for i in j + 1..kmax {
                z.set(i, j, acc[i - j]);
            }
            // Z[j, j] = (1/L[j, j] - Σ_{k>j} Z[k, j] L[k, j]) / L[j, j]
            let mut s = 0.0;
            for k in j + 1..kmax {
                s += z.get(k, j) * self.lij(k, j);
            }
            z.set(j, j, (1.0 / ljj - s) / ljj);
        }
        z
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray_linalg::{Inverse, Solve};

    fn test_matrix(n: usize, p: usize) -> SymBand {
        // a random-ish SPD banded matrix: B Bᵀ + n I with B banded
        let mut m = SymBand::zeros(n, p);
        for i in 0..n {
            for j in i.saturating_sub(p)..=i {
                let v = ((i * 7 + j * 13) % 11) as f64 / 11.0 - 0.3;
                m.set(i, j, if i == j { 4.0 + v } else { 0.4 * v });
            }
        }
        m
    }

    #[test]
    fn solve_and_selected_inverse_match_dense() {
        let (n, p) = (40, 4);
        let a = test_matrix(n, p);
        let dense = a.to_dense();
        let b: Vec<f64> = (0..n).map(|i| (i as f64).sin()).collect();
        let x = a.cholesky().unwrap().solve(&b);
        let want = dense.solve(&ndarray::Array1::from(b)).unwrap();
        for i in 0..n {
            assert!((x[i] - want[i]).abs() < 1e-12, "{i}");
        }
        let inv = dense.inv().unwrap();
        let z = a.cholesky().unwrap().selected_inverse();
        for i in 0..n {
            for j in i.saturating_sub(p)..=i {
                assert!((z.get(i, j) - inv[[i, j]]).abs() < 1e-12, "{i} {j}");
            }
        }
    }

    #[test]
    fn indefinite_is_an_error() {
        let mut a = SymBand::zeros(3, 1);
        a.set(0, 0, 1.0);
        a.set(1, 0, 2.0);
        a.set(1, 1, 1.0);
        a.set(2, 2, 1.0);
        assert_eq!(a.cholesky().unwrap_err().row, 1);
    }
}
