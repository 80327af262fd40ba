//! Quick boxcar extraction (desispec `qproc_boxcar_extraction` style, reference/extraction.md
//! §3): per fiber and CCD row, the sum of 7 columns around the trace, converted to electrons
//! per Angstrom with the row's dλ/dy, then interpolated onto the output grid. For the fast
//! path and for trace checks, not for science: no deconvolution, and neighbouring fibers'
//! wings are included.

use ndarray::{Array2, Array3, ArrayView2};

use crate::psf::GaussHermitePsf;

/// Half width of the boxcar window in columns: columns `int(x-3) ..= int(x+3)` (desispec).
const HALF_WIDTH: f64 = 3.0;

/// Boxcar flux and ivar `[nspec, nwave]` (electrons/Angstrom) of fibers
/// `specmin..specmin+nspec` on `wave`, and Gaussian resolution diagonals
/// `[nspec, 2·ndiag+1, nwave]` from the PSF's GHSIGY. A row with any zero-ivar pixel in the
/// window has no information (ivar 0), as in desispec.
pub fn boxcar(
    psf: &GaussHermitePsf,
    image: ArrayView2<f32>,
    ivar: ArrayView2<f32>,
    specmin: usize,
    nspec: usize,
    wave: &[f64],
    ndiag: usize,
) -> (Array2<f64>, Array2<f64>, Array3<f64>) {
    let (ny, nx) = image.dim();
    let nwave = wave.len();
    let dw_out = if nwave > 1 { wave[1] - wave[0] } else { 1.0 };
    let mut flux = Array2::zeros((nspec, nwave));
    let mut fivar = Array2::zeros((nspec, nwave));
    let mut res = Array3::zeros((nspec, 2 * ndiag + 1, nwave));
    for s in 0..nspec {
        let f = specmin + s;
        // Per-row wavelength (fitted inverse), x, and flux density.
        let wrow: Vec<f64> = (0..ny).map(|y| psf.wavelength(f, y as f64)).collect();
        let grad = super::geometry::np_gradient(&wrow);
        let mut rflux = vec![0.0; ny];
        let mut rivar = vec![0.0; ny];
        for y in 0..ny {
            let x = psf.x(f, wrow[y]);
            let (c0, c1) = ((x - HALF_WIDTH) as i64, (x + HALF_WIDTH) as i64);
            if c0 < 0 || c1 >= nx as i64 || grad[y] <= 0.0 {
                continue;
            }
            let (mut sum, mut var, mut ok) = (0.0, 0.0, true);
            for c in c0..=c1 {
                let iv = f64::from(ivar[[y, c as usize]]);
                if iv <= 0.0 {
                    ok = false;
                    break;
                }
                sum += f64::from(image[[y, c as usize]]);
                var += 1.0 / iv;
            }
            if ok {
                rflux[y] = sum / grad[y];
                rivar[y] = grad[y] * grad[y] / var;
            }
        }
        for (j, &w) in wave.iter().enumerate() {
            let Some((k, t)) = locate(&wrow, w) else {
                continue;
            };
            if rivar[k] == 0.0 || rivar[k + 1] == 0.0 {
                continue;
            }
            flux[[s, j]] = rflux[k] + t * (rflux[k + 1] - rflux[k]);
            // A bin of dw_out Angstrom holds dw_out/dλ_row rows' worth of information.
            let iv_row = rivar[k] + t * (rivar[k + 1] - rivar[k]);
            let dl = grad[k] + t * (grad[k + 1] - grad[k]);
            fivar[[s, j]] = iv_row * dw_out / dl;
            // Gaussian resolution with the spot's y sigma in output bins.
            let sigma = psf.ysigma(f, w) * dl / dw_out;
            let mut col: Vec<f64> = (0..=2 * ndiag)
                .map(|d| {
                    let off = ndiag as f64 - d as f64;
                    (-0.5 * (off / sigma).powi(2)).exp()
                })
                .collect();
            let norm: f64 = col.iter().sum();
            col.iter_mut().for_each(|v| *v /= norm);
            for (d, v) in col.into_iter().enumerate() {
                res[[s, d, j]] = v;
            }
        }
    }
    (flux, fivar, res)
}

/// Index k and fraction t with `xs[k] <= x <= xs[k+1]` for increasing `xs`.
fn locate(xs: &[f64], x: f64) -> Option<(usize, f64)> {
    let n = xs.len();
    if n < 2 || x < xs[0] || x > xs[n - 1] {
        return None;
    }
    let k = (xs.partition_point(|&v| v <= x)).clamp(1, n - 1) - 1;
    Some((k, (x - xs[k]) / (xs[k + 1] - xs[k])))
}
