//! The few dense and banded kernels the solvers need: a banded Cholesky factorisation with
//! solves and "selected" block inversion (the diagonal blocks of the inverse that the
//! extraction's per-fiber decorrelation needs), and a symmetric eigendecomposition through
//! LAPACK `dsyevd` (divide and conquer; ndarray-linalg's `Eigh` calls the 6× slower `dsyev`,
//! reference/platform.md §4).

use std::os::raw::c_int;

/// A problem in a linear-algebra kernel.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LinalgError {
    /// The matrix is not (numerically) positive definite; the pivot at `row` was `pivot`.
    #[error("matrix not positive definite at row {row} (pivot {pivot:e})")]
    NotPositiveDefinite { row: usize, pivot: f64 },
    /// LAPACK reported `info` != 0.
    #[error("LAPACK {routine} failed (info {info})")]
    Lapack { routine: &'static str, info: i32 },
}

/// A symmetric band matrix of size `n` with half bandwidth `bw` (entries `(i, j)` with
/// `|i - j| <= bw`), stored by rows of its lower triangle: row `i` holds columns
/// `i-bw ..= i` contiguously (positions before column 0 are zero padding). After
/// [`BandMatrix::cholesky`] the same storage holds the lower factor `L` (`M = L Lᵀ`).
#[derive(Debug, Clone)]
pub struct BandMatrix {
    n: usize,
    bw: usize,
    data: Vec<f64>,
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

    /// Entry `(i, j)` of the lower triangle (`j <= i`, `i - j <= bw`).
    #[inline]
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.data[self.idx(i, j)]
    }

    /// Adds `v` to entry `(i, j)` (and implicitly `(j, i)`); needs `j <= i <= j + bw`.
    #[inline]
    pub fn add(&mut self, i: usize, j: usize, v: f64) {
        let k = self.idx(i, j);
        self.data[k] += v;
    }

    /// The lower-triangle part of row `i`: columns `max(i-bw,0) ..= i`, and the first column.
    #[inline]
    fn row(&self, i: usize) -> (&[f64], usize) {
        let j0 = i.saturating_sub(self.bw);
        let start = i * (self.bw + 1) + self.bw - (i - j0);
        (&self.data[start..i * (self.bw + 1) + self.bw + 1], j0)
    }

    /// Dense copy (for tests and the dense fallback).
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

    /// In-place Cholesky factorisation `M = L Lᵀ` (row-oriented; every inner product runs
    /// over contiguous row segments). Fails on a non-positive pivot.
    pub fn cholesky(&mut self) -> Result<(), LinalgError> {
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
                        return Err(LinalgError::NotPositiveDefinite { row: i, pivot: v });
                    }
                    self.data[ri + i] = v.sqrt();
                }
            }
        }
        Ok(())
    }

    /// Solves `L Lᵀ x = b` in place, after [`BandMatrix::cholesky`].
    pub fn solve_in_place(&self, b: &mut [f64]) {
        let n = self.n;
        for i in 0..n {
            let (r, j0) = self.row(i);
            let mut s = b[i];
            for (k, &l) in r[..r.len() - 1].iter().enumerate() {
                s -= l * b[j0 + k];
            }
            b[i] = s / r[r.len() - 1];
        }
        for i in (0..n).rev() {
            let (r, j0) = self.row(i);
            let xi = b[i] / r[r.len() - 1];
            b[i] = xi;
            for (k, &l) in r[..r.len() - 1].iter().enumerate() {
                b[j0 + k] -= l * xi;
            }
        }
    }

    /// The block `C[cols, cols]` of the inverse `C = M⁻¹` for increasing indices `cols`, after
    /// [`BandMatrix::cholesky`] (see [`BandMatrix::inverse_blocks`]).
    pub fn inverse_block(&self, cols: &[usize]) -> Vec<f64> {
        self.inverse_blocks(&[cols.to_vec()])
            .pop()
            .unwrap_or_default()
    }

    /// Diagonal blocks `C[g, g]` of the inverse `C = M⁻¹` for several groups `g` of increasing,
    /// disjoint indices, after [`BandMatrix::cholesky`]. With `Y = L⁻¹ E` (E = the unit
    /// columns of all groups), `C[g, g] = Y_gᵀ Y_g`. Column r of Y is zero above row
    /// `cols[r]`, so the forward substitution runs over the columns already "active"; with
    /// the columns of all groups merged in increasing order those form a prefix, which keeps
    /// the inner loops long and contiguous. Each block is returned `m × m` row-major.
    pub fn inverse_blocks(&self, groups: &[Vec<usize>]) -> Vec<Vec<f64>> {
        let n = self.n;
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
            let (r, j0) = self.row(i);
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

/// Eigendecomposition of the symmetric `n × n` matrix `a` (row-major, overwritten by the
/// eigenvectors as columns: `a[i*n + k]` is component i of eigenvector k) through LAPACK
/// `dsyevd`; returns the eigenvalues in ascending order.
pub fn eigh_in_place(a: &mut [f64], n: usize) -> Result<Vec<f64>, LinalgError> {
    assert_eq!(a.len(), n * n);
    let mut w = vec![0.0; n];
    if n == 0 {
        return Ok(w);
    }
    let nn = n as c_int;
    let (jobz, uplo) = (b'V' as std::os::raw::c_char, b'L' as std::os::raw::c_char);
    let mut info: c_int = 0;
    let (mut lwork_q, mut liwork_q) = (0.0f64, 0 as c_int);
    let minus1: c_int = -1;
    // Row-major symmetric = column-major symmetric; the eigenvectors come back column-major,
    // i.e. eigenvector k is row k of `a` in row-major terms; transposed below.
    // SAFETY: workspace query with valid pointers.
    unsafe {
        lapack_sys::dsyevd_(
            &jobz,
            &uplo,
            &nn,
            a.as_mut_ptr(),
            &nn,
            w.as_mut_ptr(),
            &mut lwork_q,
            &minus1,
            &mut liwork_q,
            &minus1,
            &mut info,
        );
    }
    if info != 0 {
        return Err(LinalgError::Lapack {
            routine: "dsyevd",
            info,
        });
    }
    let lwork = lwork_q as c_int;
    let mut work = vec![0.0; lwork.max(1) as usize];
    let mut iwork = vec![0 as c_int; liwork_q.max(1) as usize];
    // SAFETY: buffers sized by the workspace query.
    unsafe {
        lapack_sys::dsyevd_(
            &jobz,
            &uplo,
            &nn,
            a.as_mut_ptr(),
            &nn,
            w.as_mut_ptr(),
            work.as_mut_ptr(),
            &lwork,
            iwork.as_mut_ptr(),
            &liwork_q,
            &mut info,
        );
    }
    if info != 0 {
        return Err(LinalgError::Lapack {
            routine: "dsyevd",
            info,
        });
    }
    // Transpose so that a[i*n + k] = component i of eigenvector k.
    for i in 0..n {
        for k in 0..i {
            a.swap(i * n + k, k * n + i);
        }
    }
    Ok(w)
}

/// How [`eigen_compose`] transforms eigenvalues, with specter's floors
/// (ex2d.py `eigen_compose`, threshold 10·DBL_EPSILON relative to the largest eigenvalue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EigenFn {
    /// λ⁻¹, with λ ≤ max·thr replaced by 1/(max·thr).
    Inverse,
    /// √λ, with √λ ≤ √max·thr replaced by √max·thr.
    Sqrt,
    /// λ^(-1/2), with √λ ≤ √max·thr replaced by 1/(√max·thr).
    InverseSqrt,
}

/// `V diag(f(λ)) Vᵀ` (row-major `n × n`) from eigenvalues `w` and eigenvectors `v` as returned
/// by [`eigh_in_place`].
pub fn eigen_compose(w: &[f64], v: &[f64], f: EigenFn) -> Vec<f64> {
    let n = w.len();
    let thr = 10.0 * f64::EPSILON;
    let maxval = w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let scaled: Vec<f64> = match f {
        EigenFn::Inverse => {
            let minval = maxval * thr;
            w.iter()
                .map(|&x| if x > minval { 1.0 / x } else { 1.0 / minval })
                .collect()
        }
        EigenFn::Sqrt => {
            let minval = maxval.sqrt() * thr;
            w.iter()
                .map(|&x| if x > minval { x.sqrt() } else { minval })
                .collect()
        }
        EigenFn::InverseSqrt => {
            let minval = maxval.sqrt() * thr;
            w.iter()
                .map(|&x| {
                    let s = x.sqrt();
                    if s > minval {
                        1.0 / s
                    } else {
                        1.0 / minval
                    }
                })
                .collect()
        }
    };
    // out = (V S) Vᵀ as one matrix product (matrixmultiply through ndarray).
    let vv = ndarray::ArrayView2::from_shape((n, n), v).expect("v is n x n");
    let mut vs = vv.to_owned();
    for mut row in vs.rows_mut() {
        for (x, &s) in row.iter_mut().zip(&scaled) {
            *x *= s;
        }
    }
    let out = vs.dot(&vv.t());
    out.into_raw_vec_and_offset().0
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn dense_inverse(a: &[f64], n: usize) -> Vec<f64> {
        let mut v = a.to_vec();
        let w = eigh_in_place(&mut v, n).unwrap();
        eigen_compose(&w, &v, EigenFn::Inverse)
    }

    #[test]
    fn band_cholesky_solve_and_inverse_blocks_match_dense() {
        let (n, bw) = (37, 6);
        let m = test_band(n, bw);
        let dense = m.to_dense();
        let inv = dense_inverse(&dense, n);
        let mut l = m.clone();
        l.cholesky().unwrap();
        let b: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
        let mut x = b.clone();
        l.solve_in_place(&mut x);
        for i in 0..n {
            let r: f64 = (0..n).map(|j| dense[i * n + j] * x[j]).sum();
            assert!((r - b[i]).abs() < 1e-12);
        }
        let cols = [2usize, 5, 9, 10, 20, 36];
        let blk = l.inverse_block(&cols);
        for (p, &i) in cols.iter().enumerate() {
            for (q, &j) in cols.iter().enumerate() {
                // Well-conditioned (diagonally dominant): agreement to ~1e-15 relative.
                assert!((blk[p * cols.len() + q] - inv[i * n + j]).abs() < 1e-13);
            }
        }
        // Several interleaved groups at once give each group's own block.
        let groups = vec![vec![2usize, 9, 20], vec![5usize, 10, 36], vec![0usize, 1]];
        for (g, b) in groups.iter().zip(l.inverse_blocks(&groups)) {
            for (p, &i) in g.iter().enumerate() {
                for (q, &j) in g.iter().enumerate() {
                    assert!((b[p * g.len() + q] - inv[i * n + j]).abs() < 1e-13);
                }
            }
        }
    }

    #[test]
    fn eigh_and_compose_roundtrip() {
        let n = 9;
        let m = test_band(n, 3).to_dense();
        let mut v = m.clone();
        let w = eigh_in_place(&mut v, n).unwrap();
        assert!(w.windows(2).all(|p| p[0] <= p[1]));
        let s = eigen_compose(&w, &v, EigenFn::Sqrt);
        let is = eigen_compose(&w, &v, EigenFn::InverseSqrt);
        for i in 0..n {
            for j in 0..n {
                let ss: f64 = (0..n).map(|k| s[i * n + k] * s[k * n + j]).sum();
                let p: f64 = (0..n).map(|k| s[i * n + k] * is[k * n + j]).sum();
                assert!((ss - m[i * n + j]).abs() < 1e-12);
                assert!((p - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
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
        assert!(matches!(
            m.cholesky(),
            Err(LinalgError::NotPositiveDefinite { row: 1, .. })
        ));
    }
}
