//! The resolution matrix of one fiber in DESI's band storage (desispec `Resolution`,
//! reference/calibration.md §0): `data[k, j] = R[j - d_k, j]` with offsets descending,
//! `d_k = ndiag/2 - k`, i.e. the storage is indexed by **column** j and `data[.., j]` is the
//! line-spread profile of true pixel j over output pixels j-h..=j+h (h = ndiag/2).
//! Model at output pixel i = Σ_j R[i, j] · true_j. Entries that fall outside the matrix are
//! stored but ignored.

use ndarray::{Array2, ArrayView2};

/// Errors building a resolution matrix.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ResolutionError {
    #[error("resolution band must have an odd number of diagonals, got {0}")]
    EvenDiagonals(usize),
    #[error("vector length {got} does not match the resolution's {want} wavelengths")]
    Length { got: usize, want: usize },
}

/// A band-diagonal resolution matrix, `[ndiag, nwave]` in DESI storage (f64 in memory).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    data: Array2<f64>,
}

impl Resolution {
    /// Wraps DESI band storage `[ndiag, nwave]`; ndiag must be odd.
    pub fn from_band(data: Array2<f64>) -> Result<Self, ResolutionError> {
        if data.nrows().is_multiple_of(2) {
            return Err(ResolutionError::EvenDiagonals(data.nrows()));
        }
        Ok(Resolution { data })
    }

    /// The identity with `ndiag` diagonals over `nwave` pixels.
    pub fn identity(ndiag: usize, nwave: usize) -> Result<Self, ResolutionError> {
        let mut data = Array2::zeros((ndiag, nwave));
        data.row_mut(ndiag / 2).fill(1.0);
        Self::from_band(data)
    }

    /// Keeps the band of a dense `[nwave, nwave]` matrix (entries outside it are dropped).
    pub fn from_dense(dense: ArrayView2<f64>, ndiag: usize) -> Result<Self, ResolutionError> {
        if ndiag.is_multiple_of(2) {
            return Err(ResolutionError::EvenDiagonals(ndiag));
        }
        let n = dense.ncols();
        let h = (ndiag / 2) as isize;
        let mut data = Array2::zeros((ndiag, n));
        for k in 0..ndiag {
            let d = h - k as isize;
            for j in 0..n {
                let i = j as isize - d;
                if i >= 0 && (i as usize) < dense.nrows() {
                    data[[k, j]] = dense[[i as usize, j]];
                }
            }
        }
        Self::from_band(data)
    }

    /// Gaussian line-spread profiles of width `sigma[j]` (pixels) per true pixel j, each
    /// column normalised to sum 1 over the band (flux conserving).
    pub fn from_gaussian_sigma(sigma: &[f64], ndiag: usize) -> Result<Self, ResolutionError> {
        if ndiag.is_multiple_of(2) {
            return Err(ResolutionError::EvenDiagonals(ndiag));
        }
        let h = (ndiag / 2) as isize;
        let mut data = Array2::zeros((ndiag, sigma.len()));
        for (j, &s) in sigma.iter().enumerate() {
            let mut col: Vec<f64> = (0..ndiag)
                .map(|k| {
                    // output pixel i = j - d_k, offset from the centre is -d_k
                    let x = (k as isize - h) as f64;
                    (-0.5 * x * x / (s * s)).exp()
                })
                .collect();
            let sum: f64 = col.iter().sum();
            col.iter_mut().for_each(|v| *v /= sum);
            for (k, v) in col.into_iter().enumerate() {
                data[[k, j]] = v;
            }
        }
        Self::from_band(data)
    }

    /// Number of stored diagonals (odd).
    pub fn ndiag(&self) -> usize {
        self.data.nrows()
    }

    /// Number of wavelengths.
    pub fn nwave(&self) -> usize {
        self.data.ncols()
    }

    /// The band storage `[ndiag, nwave]`.
    pub fn band(&self) -> ArrayView2<'_, f64> {
        self.data.view()
    }

    /// Consumes into the band storage.
    pub fn into_band(self) -> Array2<f64> {
        self.data
    }

    /// Diagonal offsets in storage order: `ndiag/2, …, 0, …, -ndiag/2`.
    pub fn offsets(&self) -> Vec<isize> {
        let h = (self.ndiag() / 2) as isize;
        (0..self.ndiag()).map(|k| h - k as isize).collect()
    }

    /// R[i, j], zero outside the band.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        let h = (self.ndiag() / 2) as isize;
        let d = j as isize - i as isize; // d_k = j - i
        if d.abs() > h || i >= self.nwave() || j >= self.nwave() {
            return 0.0;
        }
        self.data[[(h - d) as usize, j]]
    }

    /// `out = R · x` (x and out of length nwave): convolve a true spectrum.
    pub fn apply_into(&self, x: &[f64], out: &mut [f64]) -> Result<(), ResolutionError> {
        let n = self.check(x.len())?;
        self.check(out.len())?;
        out.iter_mut().for_each(|v| *v = 0.0);
        let h = (self.ndiag() / 2) as isize;
        for (k, row) in self.data.outer_iter().enumerate() {
            let d = h - k as isize;
            // R[j - d, j] = row[j]: contributes row[j] * x[j] to out[j - d].
            let (j0, j1) = band_cols(d, n);
            for j in j0..j1 {
                out[(j as isize - d) as usize] += row[j] * x[j];
            }
        }
        Ok(())
    }

    /// `R · x`.
    pub fn apply(&self, x: &[f64]) -> Result<Vec<f64>, ResolutionError> {
        let mut out = vec![0.0; x.len()];
        self.apply_into(x, &mut out)?;
        Ok(out)
    }

    /// `Rᵀ · y`.
    pub fn apply_transpose(&self, y: &[f64]) -> Result<Vec<f64>, ResolutionError> {
        let n = self.check(y.len())?;
        let mut out = vec![0.0; n];
        let h = (self.ndiag() / 2) as isize;
        for (k, row) in self.data.outer_iter().enumerate() {
            let d = h - k as isize;
            let (j0, j1) = band_cols(d, n);
            for j in j0..j1 {
                out[j] += row[j] * y[(j as isize - d) as usize];
            }
        }
        Ok(out)
    }

    /// The dense `[nwave, nwave]` matrix.
    pub fn to_dense(&self) -> Array2<f64> {
        let n = self.nwave();
        let h = (self.ndiag() / 2) as isize;
        let mut m = Array2::zeros((n, n));
        for (k, row) in self.data.outer_iter().enumerate() {
            let d = h - k as isize;
            let (j0, j1) = band_cols(d, n);
            for j in j0..j1 {
                m[[(j as isize - d) as usize, j]] = row[j];
            }
        }
        m
    }

    fn check(&self, len: usize) -> Result<usize, ResolutionError> {
        if len != self.nwave() {
            return Err(ResolutionError::Length {
                got: len,
                want: self.nwave(),
            });
        }
        Ok(len)
    }
}

/// Columns j for which row i = j - d lies inside `0..n`.
fn band_cols(d: isize, n: usize) -> (usize, usize) {
    let j0 = d.max(0) as usize;
    let j1 = ((n as isize + d).min(n as isize)).max(0) as usize;
    (j0.min(n), j1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An asymmetric kernel: a symmetric one would hide a transposed layout.
    fn asymmetric(n: usize) -> Array2<f64> {
        let mut dense = Array2::zeros((n, n));
        for j in 0..n {
            // true pixel j spreads 0.6 to itself, 0.3 to the next output pixel, 0.1 two below
            dense[[j, j]] = 0.6;
            if j + 1 < n {
                dense[[j + 1, j]] = 0.3;
            }
            if j >= 2 {
                dense[[j - 2, j]] = 0.1;
            }
        }
        dense
    }

    #[test]
    fn band_layout_is_desi_column_indexed() {
        let dense = asymmetric(8);
        let r = Resolution::from_dense(dense.view(), 5).unwrap();
        // offsets +2..-2; data[k, j] = R[j - d_k, j]
        assert_eq!(r.offsets(), vec![2, 1, 0, -1, -2]);
        let b = r.band();
        assert_eq!(b[[2, 4]], 0.6); // d=0: R[4,4]
        assert_eq!(b[[3, 4]], 0.3); // d=-1: R[5,4]
        assert_eq!(b[[0, 4]], 0.1); // d=+2: R[2,4]
        assert_eq!(r.to_dense(), dense);
        assert_eq!(r.get(5, 4), 0.3);
        assert_eq!(r.get(4, 5), 0.0);
    }

    #[test]
    fn apply_and_transpose_match_dense() {
        let n = 9;
        let dense = asymmetric(n);
        let r = Resolution::from_dense(dense.view(), 5).unwrap();
        let x: Vec<f64> = (0..n).map(|i| (i * i) as f64 + 1.0).collect();
        let want = dense.dot(&ndarray::Array1::from(x.clone()));
        let got = r.apply(&x).unwrap();
        for i in 0..n {
            assert!((got[i] - want[i]).abs() < 1e-12);
        }
        let want_t = dense.t().dot(&ndarray::Array1::from(x.clone()));
        let got_t = r.apply_transpose(&x).unwrap();
        for i in 0..n {
            assert!((got_t[i] - want_t[i]).abs() < 1e-12);
        }
    }

    #[test]
    fn gaussian_columns_sum_to_one_and_bad_shapes_fail() {
        let r = Resolution::from_gaussian_sigma(&[1.0, 1.5, 2.0], 11).unwrap();
        for j in 0..3 {
            let s: f64 = r.band().column(j).sum();
            assert!((s - 1.0).abs() < 1e-14);
        }
        assert_eq!(
            Resolution::identity(4, 3).unwrap_err(),
            ResolutionError::EvenDiagonals(4)
        );
        assert!(r.apply(&[1.0]).is_err());
    }
}
