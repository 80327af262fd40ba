//! The few dense kernels the solvers need: a symmetric eigendecomposition through LAPACK
//! `dsyevd` (divide and conquer; ndarray-linalg's `Eigh` calls the 6× slower `dsyev`,
//! reference/platform.md §4) and specter's floored eigenvalue functions. Band matrices
//! (Cholesky, solves, partial inverses) live in [`crate::banded`].

use std::os::raw::c_int;

/// A problem in a linear-algebra kernel.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LinalgError {
    /// A band Cholesky factorisation met a non-positive pivot.
    #[error(transparent)]
    NotPositiveDefinite(#[from] crate::banded::NotPositiveDefinite),
    /// LAPACK reported `info` != 0.
    #[error("LAPACK {routine} failed (info {info})")]
    Lapack { routine: &'static str, info: i32 },
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
    // Row-major symmetric = column-major symmetric; the eigenvectors come back column-major,
    // i.e. eigenvector k is row k of `a` in row-major terms; transposed below.
    let (mut lwork_q, mut liwork_q) = ([0.0f64], [0 as c_int]);
    dsyevd(a, n, &mut w, &mut lwork_q, -1, &mut liwork_q, -1)?;
    let (lwork, liwork) = (lwork_q[0] as c_int, liwork_q[0]);
    let mut work = vec![0.0; lwork.max(1) as usize];
    let mut iwork = vec![0 as c_int; liwork.max(1) as usize];
    dsyevd(a, n, &mut w, &mut work, lwork, &mut iwork, liwork)?;
    // Transpose so that a[i*n + k] = component i of eigenvector k.
    for i in 0..n {
        for k in 0..i {
            a.swap(i * n + k, k * n + i);
        }
    }
    Ok(w)
}

/// One LAPACK `dsyevd` call (eigenvalues and eigenvectors, lower triangle) on the `n × n`
/// matrix `a`; `lwork = liwork = -1` is the workspace query, which writes the sizes needed
/// into `work[0]` and `iwork[0]`.
fn dsyevd(
    a: &mut [f64],
    n: usize,
    w: &mut [f64],
    work: &mut [f64],
    lwork: c_int,
    iwork: &mut [c_int],
    liwork: c_int,
) -> Result<(), LinalgError> {
    debug_assert!(a.len() == n * n && w.len() == n);
    debug_assert!(lwork < 0 || work.len() >= lwork as usize);
    debug_assert!(liwork < 0 || iwork.len() >= liwork as usize);
    let nn = n as c_int;
    let (jobz, uplo) = (b'V' as std::os::raw::c_char, b'L' as std::os::raw::c_char);
    let mut info: c_int = 0;
    // SAFETY: `a` is n×n, `w` has n entries, and work/iwork hold at least lwork/liwork
    // entries (one each for the query).
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
            &liwork,
            &mut info,
        );
    }
    if info != 0 {
        return Err(LinalgError::Lapack {
            routine: "dsyevd",
            info,
        });
    }
    Ok(())
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

    #[test]
    fn eigh_and_compose_roundtrip() {
        let n: usize = 9;
        // symmetric, diagonally dominant (eigenvalues in [3, 7]), entries of both signs
        let m: Vec<f64> = (0..n * n)
            .map(|k| {
                let (i, j) = (k / n, k % n);
                if i == j {
                    4.0 + (i % 3) as f64
                } else if i.abs_diff(j) <= 3 {
                    0.3 / (1.0 + i.abs_diff(j) as f64) * if (i + j) % 2 == 0 { 1.0 } else { -1.0 }
                } else {
                    0.0
                }
            })
            .collect();
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
}
