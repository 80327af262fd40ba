//! Symmetric positive-definite band matrices: assembly, Cholesky factorisation, solves, and
//! two kinds of partial inverse computed from the factor without forming A⁻¹:
//!
//! - the entries of A⁻¹ inside A's band ([`BandCholesky::selected_inverse`], Takahashi et al.
//!   1973). The normal equations of the deconvolved sky and of the fiber-flat lamp spectrum,
//!   `A = Σ_f R_fᵀ W_f R_f`, are banded with half-bandwidth `2h` when each resolution matrix
//!   has `2h+1` diagonals (reference/calibration.md §8.7); the sky variance needs only
//!   `diag(R̄ A⁻¹ R̄ᵀ)`, i.e. the entries of A⁻¹ within the band. desispec densifies A (O(n³));
//!   the banded path is O(n·p²) and agrees to rounding.
//! - diagonal blocks of A⁻¹ for groups of unknowns ([`BandCholesky::inverse_blocks`]): the
//!   per-fiber covariance blocks the extraction's decorrelation needs
//!   (reference/extraction.md §4).
//!
//! One storage serves both: the lower band by rows, so that every inner product of the
//! factorisation and the solves runs over contiguous memory (the extraction's hot loop).

/// A symmetric `n × n` matrix with half bandwidth `bw` (entries `(i, j)` with
/// `|i - j| <= bw`), stored by rows of its lower triangle: row `i` holds columns
/// `i-bw ..= i` contiguously (positions before column 0 are zero padding).
#[derive(Debug, Clone, PartialEq)]
pub struct BandMatrix {
    n: usize,
    bw: usize,
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

impl BandMatrix {
    /// An `n × n` zero matrix with half bandwidth `bw`.
    pub fn zeros(n: usize, bw: usize) -> Self {
        BandMatrix {
            n,
            bw,
            data: vec![0.0; n * (bw + 1)],
        }
    }

    /// Builds from column bands: `cols[j][d] = A[j + d, j]` (at most `bw + 1` entries each;
    /// entries past the last row are ignored).
    pub fn from_columns(n: usize, bw: usize, cols: Vec<Vec<f64>>) -> Self {
        let mut m = Self::zeros(n, bw);
        for (j, c) in cols.into_iter().enumerate().take(n) {
            for (d, v) in c.into_iter().enumerate().take((bw + 1).min(n - j)) {
                let k = m.idx(j + d, j);
                m.data[k] = v;
            }
        }
        m
    }

    /// Size.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Half bandwidth.
    pub fn bw(&self) -> usize {
        self.bw
    }

    #[inline]
    fn idx(&self, i: usize, j: usize) -> usize {
        debug_assert!(j <= i && i - j <= self.bw);
        i * (self.bw + 1) + self.bw + j - i
    }

    /// `A[i, j]` in either order (zero outside the band or the matrix).
    pub fn get(&self, i: usize, j: usize) -> f64 {
        let (i, j) = if i >= j { (i, j) } else { (j, i) };
        if i >= self.n || i - j > self.bw {
            return 0.0;
        }
        self.data[self.idx(i, j)]
    }

    /// Sets `A[i, j]` (and `A[j, i]`); `|i - j|` must be within the band.
    pub fn set(&mut self, i: usize, j: usize, v: f64) {
        let (i, j) = if i >= j { (i, j) } else { (j, i) };
        let k = self.idx(i, j);
        self.data[k] = v;
    }

    /// Adds `v` to entry `(i, j)` (and implicitly `(j, i)`); needs `j <= i <= j + bw`.
    #[inline]
    pub fn add(&mut self, i: usize, j: usize, v: f64) {
        let k = self.idx(i, j);
        self.data[k] += v;
    }

    /// The diagonal `[n]`.
    pub fn diagonal(&self) -> Vec<f64> {
        (0..self.n).map(|i| self.data[self.idx(i, i)]).collect()
    }

    /// The lower-triangle part of row `i`: columns `max(i-bw,0) ..= i`, and the first column.
    #[inline]
    fn row(&self, i: usize) -> (&[f64], usize) {
        let j0 = i.saturating_sub(self.bw);
        let start = i * (self.bw + 1) + self.bw - (i - j0);
        (&self.data[start..i * (self.bw + 1) + self.bw + 1], j0)
    }

    /// Dense copy `[n * n]`, row-major (for tests and the dense fallbacks).
    pub fn to_dense(&self) -> Vec<f64> {
        let n = self.n;
        let mut d = vec![0.0; n * n];
        for i in 0..n {
            let (r, j0) = self.row(i);
            for (k, &v) in r.iter().enumerate() {
                d[i * n + j0 + k] = v;
                d[(j0 + k) * n + i] = v;
            }
        }
        d
    }

    /// Cholesky factorisation `A = L Lᵀ`, in place in this storage (row-oriented; every inner
    /// product runs over contiguous row segments). Fails on a non-positive or NaN pivot.
    pub fn cholesky(mut self) -> Result<BandCholesky, NotPositiveDefinite> {
        let (n, bw) = (self.n, self.bw);
        let w = bw + 1;
        for i in 0..n {
            let j0 = i.saturating_sub(bw);
            for j in j0..=i {
                // sum_{k = j0 .. j-1} L[i][k] L[j][k]; row j covers k >= j - bw, and j0 >= j - bw.
                let ri = i * w + bw - i; // index of column 0 in row i (may underflow logically)
                let rj = j * w + bw - j;
                let mut s = 0.0;
                for k in j0..j {
                    s += self.data[ri + k] * self.data[rj + k];
                }
                let v = self.data[ri + j] - s;
                if j < i {
                    self.data[ri + j] = v / self.data[rj + j];
                } else {
                    if v.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                        return Err(NotPositiveDefinite { row: i, pivot: v });
                    }
                    self.data[ri + i] = v.sqrt();
                }
            }
        }
        Ok(BandCholesky { l: self })
    }
}

/// The Cholesky factor `L` (lower, same band and storage) of a [`BandMatrix`] `A = L Lᵀ`.
#[derive(Debug, Clone)]
pub struct BandCholesky {
    l: BandMatrix,
}

impl BandCholesky {
    /// Size of the factored matrix.
    pub fn n(&self) -> usize {
        self.l.n
    }

    /// The Cholesky pivot `L[i, i]` (its square is the Schur complement left at row `i`).
    pub fn pivot(&self, i: usize) -> f64 {
        self.lij(i, i)
    }

    #[inline]
    fn lij(&self, i: usize, j: usize) -> f64 {
        self.l.data[self.l.idx(i, j)]
    }

    /// Solves `A x = b` in place (`b` becomes `x`).
    pub fn solve_in_place(&self, b: &mut [f64]) {
        let n = self.l.n;
        for i in 0..n {
            let (r, j0) = self.l.row(i);
            let mut s = b[i];
            for (k, &l) in r[..r.len() - 1].iter().enumerate() {
                s -= l * b[j0 + k];
            }
            b[i] = s / r[r.len() - 1];
        }
        for i in (0..n).rev() {
            let (r, j0) = self.l.row(i);
            let xi = b[i] / r[r.len() - 1];
            b[i] = xi;
            for (k, &l) in r[..r.len() - 1].iter().enumerate() {
                b[j0 + k] -= l * xi;
            }
        }
    }

    /// Solves `A x = b`.
    pub fn solve(&self, b: &[f64]) -> Vec<f64> {
        let mut x = b.to_vec();
        self.solve_in_place(&mut x);
        x
    }

    /// The entries of `A⁻¹` within the band (Takahashi et al. 1973 recurrence on the
    /// Cholesky factor), as a [`BandMatrix`] with the same half-bandwidth.
    pub fn selected_inverse(&self) -> BandMatrix {
        let (n, p) = (self.l.n, self.l.bw);
        let mut z = BandMatrix::zeros(n, p);
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

    /// The block `C[cols, cols]` of the inverse `C = A⁻¹` for increasing indices `cols`
    /// (see [`BandCholesky::inverse_blocks`]).
    pub fn inverse_block(&self, cols: &[usize]) -> Vec<f64> {
        self.inverse_blocks(&[cols.to_vec()])
            .pop()
            .unwrap_or_default()
    }

    /// Diagonal blocks `C[g, g]` of the inverse `C = A⁻¹` for several groups `g` of
    /// increasing, disjoint indices. With `Y = L⁻¹ E` (E = the unit columns of all groups),
    /// `C[g, g] = Y_gᵀ Y_g`. Column r of Y is zero above row `cols[r]`, so the forward
    /// substitution runs over the columns already "active"; with the columns of all groups
    /// merged in increasing order those form a prefix, which keeps the inner loops long and
    /// contiguous. Each block is returned `m × m` row-major.
    pub fn inverse_blocks(&self, groups: &[Vec<usize>]) -> Vec<Vec<f64>> {
        let n = self.l.n;
        let mut cols: Vec<(usize, usize, usize)> = Vec::new(); // (index, group, position)
        for (g, c) in groups.iter().enumerate() {
            debug_assert!(c.windows(2).all(|w| w[0] < w[1]));
            cols.extend(c.iter().enumerate().map(|(p, &i)| (i, g, p)));
        }
        cols.sort_unstable();
        let m = cols.len();
        if m == 0 {
            return groups.iter().map(|_| Vec::new()).collect();
        }
        let j_first = cols[0].0;
        let rows = n - j_first;
        // active[i] = number of merged columns with index <= row i.
        let mut active = vec![0usize; rows];
        let mut a = 0;
        for (i, act) in active.iter_mut().enumerate() {
            while a < m && cols[a].0 <= i + j_first {
                a += 1;
            }
            *act = a;
        }
        let mut y = vec![0.0; rows * m];
        for i in j_first..n {
            let (r, j0) = self.l.row(i);
            let ai = active[i - j_first];
            let (head, tail) = y.split_at_mut((i - j_first) * m);
            let yi = &mut tail[..ai];
            for k in j0.max(j_first)..i {
                let l = r[k - j0];
                if l == 0.0 {
                    continue;
                }
                let ak = active[k - j_first];
                let yk = &head[(k - j_first) * m..(k - j_first) * m + ak];
                for (t, &v) in yi[..ak].iter_mut().zip(yk) {
                    *t -= l * v;
                }
            }
            // The unit entry of merged column c sits at row cols[c].0.
            if ai > 0 && cols[ai - 1].0 == i {
                yi[ai - 1] += 1.0;
            }
            let d = r[r.len() - 1];
            for t in yi.iter_mut() {
                *t /= d;
            }
        }
        // Per group: gather its columns contiguously, then Gram over the active prefix.
        let mut out = Vec::with_capacity(groups.len());
        for (g, gc) in groups.iter().enumerate() {
            let mg = gc.len();
            let merged: Vec<usize> = (0..m).filter(|&c| cols[c].1 == g).collect();
            let mut yg = vec![0.0; rows * mg];
            let mut gact = vec![0usize; rows];
            for i in 0..rows {
                let ai = active[i];
                let mut cnt = 0;
                for (p, &c) in merged.iter().enumerate() {
                    if c >= ai {
                        break;
                    }
                    yg[i * mg + p] = y[i * m + c];
                    cnt = p + 1;
                }
                gact[i] = cnt;
            }
            let mut c = vec![0.0; mg * mg];
            for i in 0..rows {
                let ai = gact[i];
                let yi = &yg[i * mg..i * mg + ai];
                for p in 0..ai {
                    let v = yi[p];
                    if v == 0.0 {
                        continue;
                    }
                    let crow = &mut c[p * mg..p * mg + p + 1];
                    for (q, &w) in crow.iter_mut().zip(&yi[..=p]) {
                        *q += v * w;
                    }
                }
            }
            for p in 0..mg {
                for q in 0..p {
                    c[q * mg + p] = c[p * mg + q];
                }
            }
            out.push(c);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray_linalg::{Inverse, Solve};

    /// A diagonally dominant (so well-conditioned) SPD band matrix with entries of both signs.
    fn test_band(n: usize, bw: usize) -> BandMatrix {
        let mut m = BandMatrix::zeros(n, bw);
        for i in 0..n {
            for j in i.saturating_sub(bw)..=i {
                let v = if i == j {
                    4.0 + (i % 3) as f64
                } else {
                    0.3 / (1.0 + (i - j) as f64) * if (i + j) % 2 == 0 { 1.0 } else { -1.0 }
                };
                m.add(i, j, v);
            }
        }
        m
    }

    fn dense(m: &BandMatrix) -> ndarray::Array2<f64> {
        ndarray::Array2::from_shape_vec((m.n(), m.n()), m.to_dense()).unwrap()
    }

    #[test]
    fn storage_get_set_from_columns_agree() {
        let (n, bw) = (7, 2);
        let m = test_band(n, bw);
        let cols: Vec<Vec<f64>> = (0..n)
            .map(|j| (0..=bw).map(|d| m.get(j + d, j)).collect())
            .collect();
        assert_eq!(BandMatrix::from_columns(n, bw, cols), m);
        let d = dense(&m);
        for i in 0..n {
            for j in 0..n {
                assert_eq!(m.get(i, j), d[[i, j]], "{i} {j}");
            }
        }
        assert_eq!(m.get(0, 3), 0.0);
        assert_eq!(m.diagonal()[4], 4.0 + 1.0);
        let mut s = m.clone();
        s.set(2, 4, 9.0);
        assert_eq!((s.get(4, 2), s.get(2, 4)), (9.0, 9.0));
    }

    #[test]
    fn solve_and_partial_inverses_match_dense() {
        let (n, bw) = (37, 6);
        let m = test_band(n, bw);
        let a = dense(&m);
        let inv = a.inv().unwrap();
        let l = m.cholesky().unwrap();
        let b: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
        let x = l.solve(&b);
        let want = a.solve(&ndarray::Array1::from(b)).unwrap();
        // Diagonally dominant, condition number < 3: agreement to ~1e-15 relative.
        for i in 0..n {
            assert!((x[i] - want[i]).abs() < 1e-12, "{i}");
        }
        let z = l.selected_inverse();
        for i in 0..n {
            for j in i.saturating_sub(bw)..=i {
                assert!((z.get(i, j) - inv[[i, j]]).abs() < 1e-13, "{i} {j}");
            }
        }
        let cols = [2usize, 5, 9, 10, 20, 36];
        let blk = l.inverse_block(&cols);
        for (p, &i) in cols.iter().enumerate() {
            for (q, &j) in cols.iter().enumerate() {
                assert!((blk[p * cols.len() + q] - inv[[i, j]]).abs() < 1e-13);
            }
        }
        // Several interleaved groups at once give each group's own block.
        let groups = vec![vec![2usize, 9, 20], vec![5usize, 10, 36], vec![0usize, 1]];
        for (g, b) in groups.iter().zip(l.inverse_blocks(&groups)) {
            for (p, &i) in g.iter().enumerate() {
                for (q, &j) in g.iter().enumerate() {
                    assert!((b[p * g.len() + q] - inv[[i, j]]).abs() < 1e-13);
                }
            }
        }
    }

    #[test]
    fn not_positive_definite_is_an_error() {
        let mut m = BandMatrix::zeros(3, 1);
        m.add(0, 0, 1.0);
        m.add(1, 0, 2.0);
        m.add(1, 1, 1.0);
        m.add(2, 2, 1.0);
        assert_eq!(m.cholesky().unwrap_err().row, 1);
        let mut nan = BandMatrix::zeros(2, 1);
        nan.set(0, 0, f64::NAN);
        assert_eq!(nan.cholesky().unwrap_err().row, 0);
    }
}
