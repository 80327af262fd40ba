//! Legendre trace sets: one Legendre series per fiber in a normalised coordinate, as specex
//! writes them and specter evaluates them (reference/extraction.md §1.2).
//!
//! A [`TraceSet`] maps a variable `w` in its domain `[wmin, wmax]` to
//! `u = (w - wmin)·(2/(wmax - wmin)) - 1` (specter's exact operation order) and evaluates
//! `sum_k c[fiber][k]·L_k(u)`. Extrapolation outside `[-1, 1]` is allowed and used.

use ndarray::{Array1, Array2, ArrayView1};
use ndarray_linalg::LeastSquaresSvd;

/// Number of samples specter's `TraceSet.invert` fits (desihub/specter util/traceset.py).
const INVERT_SAMPLES: usize = 1000;

/// Legendre polynomials `L_0(u) .. L_{n-1}(u)` into `out` (length n), by the three-term
/// recurrence `(k+1) L_{k+1} = (2k+1) u L_k - k L_{k-1}`.
#[inline]
pub fn legendre_basis(u: f64, out: &mut [f64]) {
    let n = out.len();
    if n == 0 {
        return;
    }
    out[0] = 1.0;
    if n == 1 {
        return;
    }
    out[1] = u;
    for k in 1..n - 1 {
        let kf = k as f64;
        out[k + 1] = ((2.0 * kf + 1.0) * u * out[k] - kf * out[k - 1]) / (kf + 1.0);
    }
}

/// `sum_k c[k]·L_k(u)` by Clenshaw's recurrence, the algorithm of numpy's `legval`.
#[inline]
pub fn legval(u: f64, c: &[f64]) -> f64 {
    match c.len() {
        0 => 0.0,
        1 => c[0],
        2 => c[0] + c[1] * u,
        n => {
            // numpy.polynomial.legendre.legval, written out for scalars.
            let mut nd = n as f64;
            let mut c0 = c[n - 2];
            let mut c1 = c[n - 1];
            for i in 3..=n {
                let tmp = c0;
                nd -= 1.0;
                c0 = c[n - i] - c1 * (nd - 1.0) / nd;
                c1 = tmp + c1 * u * (2.0 * nd - 1.0) / nd;
            }
            c0 + c1 * u
        }
    }
}

/// Per-fiber Legendre series over a common domain.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSet {
    /// Coefficients `[nfiber, ncoef]`.
    pub coeff: Array2<f64>,
    /// Domain lower end (Angstrom for traces and PSF parameters, pixels for the inverse).
    pub wmin: f64,
    /// Domain upper end.
    pub wmax: f64,
}

impl TraceSet {
    /// A trace set from `coeff[nfiber, ncoef]` over `[wmin, wmax]`.
    pub fn new(coeff: Array2<f64>, wmin: f64, wmax: f64) -> Self {
        TraceSet { coeff, wmin, wmax }
    }

    /// Number of fibers.
    pub fn nfiber(&self) -> usize {
        self.coeff.nrows()
    }

    /// Number of coefficients per fiber (degree + 1).
    pub fn ncoef(&self) -> usize {
        self.coeff.ncols()
    }

    /// The normalised coordinate of `w`, with specter's operation order.
    #[inline]
    pub fn normalise(&self, w: f64) -> f64 {
        (w - self.wmin) * (2.0 / (self.wmax - self.wmin)) - 1.0
    }

    /// Value for `fiber` (0-based row) at `w`. Panics if `fiber` is out of range.
    #[inline]
    pub fn eval(&self, fiber: usize, w: f64) -> f64 {
        let nc = self.coeff.ncols();
        match self.coeff.as_slice() {
            Some(c) => legval(self.normalise(w), &c[fiber * nc..(fiber + 1) * nc]),
            None => legval(self.normalise(w), &self.coeff.row(fiber).to_vec()),
        }
    }

    /// Values for `fiber` at every `w` of `waves`.
    pub fn eval_many(&self, fiber: usize, waves: &[f64]) -> Vec<f64> {
        waves.iter().map(|&w| self.eval(fiber, w)).collect()
    }

    /// Least-squares fit of one Legendre series of degree `deg` per fiber to `values[fiber][i]`
    /// sampled at `x[i]` over `[xmin, xmax]` (numpy `legfit`, used by specter's `invert` and
    /// by whoever builds traces from sampled positions). Errors when the system is singular.
    pub fn fit(
        x: &[f64],
        values: &Array2<f64>,
        deg: usize,
        xmin: f64,
        xmax: f64,
    ) -> Result<TraceSet, String> {
        let n = x.len();
        if values.ncols() != n || n <= deg {
            return Err(format!(
                "cannot fit degree {deg} to {} samples (values have {} columns)",
                n,
                values.ncols()
            ));
        }
        let scale = 2.0 / (xmax - xmin);
        let mut vander = Array2::<f64>::zeros((n, deg + 1));
        let mut basis = vec![0.0; deg + 1];
        for (i, &xi) in x.iter().enumerate() {
            legendre_basis((xi - xmin) * scale - 1.0, &mut basis);
            vander.row_mut(i).assign(&ArrayView1::from(&basis[..]));
        }
        let mut coeff = Array2::<f64>::zeros((values.nrows(), deg + 1));
        for (f, row) in values.rows().into_iter().enumerate() {
            let b: Array1<f64> = row.to_owned();
            let sol = vander
                .least_squares(&b)
                .map_err(|e| format!("Legendre fit of row {f} failed ({e})"))?;
            coeff.row_mut(f).assign(&sol.solution);
        }
        Ok(TraceSet::new(coeff, xmin, xmax))
    }

    /// The inverse trace set `w(y)` exactly as specter's `TraceSet.invert` builds it: for each
    /// fiber a Legendre fit of degree `ncoef + 2` to 1000 samples evenly spaced over this
    /// set's domain, with the y domain `[min, max]` over all fibers of the values at the two
    /// domain ends. It is a fit, not an exact inverse (differences up to ~5e-4 Angstrom on
    /// DESI PSFs); conformance with specter's padding and wavelength ranges needs this one.
    pub fn invert(&self) -> Result<TraceSet, String> {
        let nf = self.nfiber();
        if nf == 0 {
            return Err("cannot invert an empty trace set".into());
        }
        let mut ymin = f64::INFINITY;
        let mut ymax = f64::NEG_INFINITY;
        for f in 0..nf {
            for w in [self.wmin, self.wmax] {
                let y = self.eval(f, w);
                ymin = ymin.min(y);
                ymax = ymax.max(y);
            }
        }
        if ymax.partial_cmp(&ymin) != Some(std::cmp::Ordering::Greater) {
            return Err(format!("degenerate trace range [{ymin}, {ymax}]"));
        }
        let deg = self.ncoef() + 2;
        let w = linspace(self.wmin, self.wmax, INVERT_SAMPLES);
        let scale = 2.0 / (ymax - ymin);
        let mut coeff = Array2::<f64>::zeros((nf, deg + 1));
        let mut vander = Array2::<f64>::zeros((INVERT_SAMPLES, deg + 1));
        let mut basis = vec![0.0; deg + 1];
        let rhs = Array1::from(w.clone());
        for f in 0..nf {
            for (i, &wi) in w.iter().enumerate() {
                let yy = (self.eval(f, wi) - ymin) * scale - 1.0;
                legendre_basis(yy, &mut basis);
                vander.row_mut(i).assign(&ArrayView1::from(&basis[..]));
            }
            let sol = vander
                .least_squares(&rhs)
                .map_err(|e| format!("inverse trace fit of fiber {f} failed ({e})"))?;
            coeff.row_mut(f).assign(&sol.solution);
        }
        Ok(TraceSet::new(coeff, ymin, ymax))
    }
}

/// `numpy.linspace(a, b, n)` (endpoint included), with numpy's `a + i·step` and exact end.
pub fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![a];
    }
    let step = (b - a) / (n - 1) as f64;
    let mut v: Vec<f64> = (0..n).map(|i| a + i as f64 * step).collect();
    if let Some(last) = v.last_mut() {
        *last = b;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn legval_matches_basis_and_closed_forms() {
        let c = [0.3, -1.2, 0.7, 2.5, -0.4];
        for &u in &[-1.3, -1.0, -0.2, 0.0, 0.55, 1.0, 1.01] {
            let mut b = [0.0; 5];
            legendre_basis(u, &mut b);
            // L2 = (3u²-1)/2, L3 = (5u³-3u)/2: closed forms check the recurrence.
            assert!((b[2] - (3.0 * u * u - 1.0) / 2.0).abs() < 1e-14);
            assert!((b[3] - (5.0 * u * u * u - 3.0 * u) / 2.0).abs() < 1e-14);
            let direct: f64 = c.iter().zip(b.iter()).map(|(a, b)| a * b).sum();
            assert!((legval(u, &c) - direct).abs() < 1e-13);
        }
    }

    #[test]
    fn fit_recovers_a_series_and_invert_is_close_to_exact() {
        // y(w) = 2000 + 1800 u + 15 u² over [5000, 6000]: monotonic, like a DESI y trace.
        let t = TraceSet::new(
            array![[2000.0, 1800.0, 15.0], [2010.0, 1790.0, 12.0]],
            5000.0,
            6000.0,
        );
        let x = linspace(5000.0, 6000.0, 50);
        let vals = Array2::from_shape_fn((2, 50), |(f, i)| t.eval(f, x[i]));
        let back = TraceSet::fit(&x, &vals, 2, 5000.0, 6000.0).unwrap();
        for (a, b) in back.coeff.iter().zip(t.coeff.iter()) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
        let inv = t.invert().unwrap();
        for &w in &[5100.0, 5500.0, 5900.0] {
            let y = t.eval(1, w);
            // A degree-5 fit of a smooth inverse over 1000 samples: far below 1e-3 Angstrom.
            assert!((inv.eval(1, y) - w).abs() < 1e-3);
        }
    }
}
