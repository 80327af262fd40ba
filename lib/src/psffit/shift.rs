//! Per-exposure trace shifts (desispec `desi_compute_trace_shifts`, reference/extraction.md
//! §3): the input PSF's traces are moved by smooth shifts dx(x, y), dy(x, y) measured on the
//! exposure itself, the shapes are kept.
//!
//! Measurements: x offsets from cross-dispersion profile fits of the continuum in bands of rows
//! (desispec: flux-weighted centroids in 100-row blocks, S/N > 3; here the PSF's own profile,
//! which has no window bias), and x and y offsets of emission lines of a reference list (sky
//! lines for science exposures, arc lines for arcs) fitted with the PSF spot — desispec
//! cross-correlates boxcar spectra with a sky or arc spectrum for y; a direct fit of the known
//! lines gives the same absolute offset without resampling. Each shift is a 2D Legendre
//! polynomial in the CCD coordinates of degrees (`degxx`, `degxy`) for dx and (`degyx`,
//! `degyy`) for dy (desi_proc: 2, 0, 2, 0 for science), fitted with 3σ rejection. Without line
//! measurements (e.g. a blue camera with no sky lines) dy is 0 and the input y(λ) is kept.

use ndarray::Array2;

use super::lines::{measure_lines, RefLine};
use super::measure::solve_spd;
use super::traces::measure_x_offsets;
use super::{with_traces, PsfFitError, PsfFitOptions};
use crate::io::header::HeaderValue;
use crate::io::preproc::PreprocImage;
use crate::psf::{legendre_basis, linspace, GaussHermitePsf, TraceSet};

/// Error floor added in quadrature to every offset (desispec: 0.01 px).
const ERR_FLOOR: f64 = 0.01;
/// Rejection threshold of the polynomial fits, σ.
const CLIP_NSIG: f64 = 3.0;
/// Wavelength samples per fiber when the shifts are folded into the trace coefficients.
const NSAMPLE: usize = 64;

/// Options of the trace-shift measurement.
#[derive(Debug, Clone)]
pub struct ShiftOptions {
    /// Degrees of dx in x and in y.
    pub degxx: usize,
    pub degxy: usize,
    /// Degrees of dy in x and in y.
    pub degyx: usize,
    pub degyy: usize,
    /// Measure x offsets on the continuum.
    pub continuum: bool,
    /// Rows per continuum band.
    pub band_rows: usize,
    /// Minimum S/N of a continuum band.
    pub min_snr: f64,
}

impl Default for ShiftOptions {
    fn default() -> Self {
        ShiftOptions {
            degxx: 2,
            degxy: 0,
            degyx: 2,
            degyy: 0,
            continuum: true,
            band_rows: 64,
            min_snr: 5.0,
        }
    }
}

/// A measured offset at a CCD position (pixels).
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub x: f64,
    pub y: f64,
    pub value: f64,
    pub err: f64,
}

/// A smooth 2D shift: Legendre in normalised CCD x and y.
#[derive(Debug, Clone)]
pub struct Shift2d {
    /// `coeff[i][j]` multiplies `L_i(x̃) L_j(ỹ)`.
    pub coeff: Array2<f64>,
    pub npix_x: usize,
    pub npix_y: usize,
    /// Number of measurements kept by the fit.
    pub nmeas: usize,
}

impl Shift2d {
    fn zero(npix_x: usize, npix_y: usize) -> Self {
        Shift2d {
            coeff: Array2::zeros((1, 1)),
            npix_x,
            npix_y,
            nmeas: 0,
        }
    }

    fn basis(&self, x: f64, y: f64, bx: &mut [f64], by: &mut [f64]) {
        let xn = 2.0 * x / (self.npix_x.max(2) - 1) as f64 - 1.0;
        let yn = 2.0 * y / (self.npix_y.max(2) - 1) as f64 - 1.0;
        legendre_basis(xn, bx);
        legendre_basis(yn, by);
    }

    /// Shift at CCD position (x, y), pixels.
    pub fn eval(&self, x: f64, y: f64) -> f64 {
        let (nx, ny) = self.coeff.dim();
        let mut bx = vec![0.0; nx];
        let mut by = vec![0.0; ny];
        self.basis(x, y, &mut bx, &mut by);
        let mut v = 0.0;
        for (i, bxi) in bx.iter().enumerate() {
            for (j, byj) in by.iter().enumerate() {
                v += self.coeff[[i, j]] * bxi * byj;
            }
        }
        v
    }

    /// Weighted fit with iterative rejection; degrees are lowered when there are too few
    /// samples. Zero shift without samples.
    pub fn fit(s: &[Sample], degx: usize, degy: usize, npix_x: usize, npix_y: usize) -> Shift2d {
        let mut out = Shift2d::zero(npix_x, npix_y);
        let mut keep = vec![true; s.len()];
        for _ in 0..20 {
            let n = keep.iter().filter(|&&k| k).count();
            if n == 0 {
                return Shift2d::zero(npix_x, npix_y);
            }
            // Leave at least 2 degrees of freedom per coefficient added.
            let (mut dx, mut dy) = (degx, degy);
            while (dx + 1) * (dy + 1) * 2 > n && (dx > 0 || dy > 0) {
                if dx >= dy {
                    dx -= 1;
                } else {
                    dy -= 1;
                }
            }
            let np = (dx + 1) * (dy + 1);
            out.coeff = Array2::zeros((dx + 1, dy + 1));
            let mut a = vec![0.0; np * np];
            let mut b = vec![0.0; np];
            let mut bx = vec![0.0; dx + 1];
            let mut by = vec![0.0; dy + 1];
            let mut row = vec![0.0; np];
            for (m, _) in s.iter().zip(&keep).filter(|(_, &k)| k) {
                out.basis(m.x, m.y, &mut bx, &mut by);
                for i in 0..=dx {
                    for j in 0..=dy {
                        row[i * (dy + 1) + j] = bx[i] * by[j];
                    }
                }
                let w = 1.0 / (m.err * m.err);
                for p in 0..np {
                    b[p] += w * row[p] * m.value;
                    for q in 0..np {
                        a[p * np + q] += w * row[p] * row[q];
                    }
                }
            }
            let Some((c, _)) = solve_spd(&a, &b) else {
                return Shift2d::zero(npix_x, npix_y);
            };
            for i in 0..=dx {
                for j in 0..=dy {
                    out.coeff[[i, j]] = c[i * (dy + 1) + j];
                }
            }
            let mut chi2 = 0.0;
            for (m, _) in s.iter().zip(&keep).filter(|(_, &k)| k) {
                chi2 += ((m.value - out.eval(m.x, m.y)) / m.err).powi(2);
            }
            let scale = (chi2 / (n.saturating_sub(np)).max(1) as f64)
                .max(1.0)
                .sqrt();
            let mut changed = false;
            for (m, k) in s.iter().zip(keep.iter_mut()) {
                if *k && ((m.value - out.eval(m.x, m.y)) / m.err).abs() > CLIP_NSIG * scale {
                    *k = false;
                    changed = true;
                }
            }
            out.nmeas = keep.iter().filter(|&&k| k).count();
            if !changed {
                break;
            }
        }
        out
    }
}

/// Result of a trace-shift measurement.
#[derive(Debug, Clone)]
pub struct ShiftReport {
    pub dx: Shift2d,
    pub dy: Shift2d,
    /// Mean, min, max of the applied shifts over all fibers and wavelengths, pixels.
    pub dx_stats: [f64; 3],
    pub dy_stats: [f64; 3],
}

/// Measures the trace shifts of `img` against `psf` and returns the shifted PSF (with
/// MEANDX/MINDX/MAXDX/MEANDY/MINDY/MAXDY in its header).
pub fn trace_shifts(
    img: &PreprocImage,
    psf: &GaussHermitePsf,
    lines: &[RefLine],
    sopts: &ShiftOptions,
) -> Result<(GaussHermitePsf, ShiftReport), PsfFitError> {
    super::check_shape(img, psf)?;
    let fopts = PsfFitOptions {
        band_rows: sopts.band_rows,
        min_snr_profile: sopts.min_snr,
        ..Default::default()
    };
    let mut sx: Vec<Sample> = Vec::new();
    let mut sy: Vec<Sample> = Vec::new();
    if sopts.continuum {
        for (f, offs) in measure_x_offsets(img, psf, &fopts).into_iter().enumerate() {
            for o in offs {
                sx.push(Sample {
                    x: psf.x(f, o.wave),
                    y: psf.y(f, o.wave),
                    value: o.value,
                    err: o.err.hypot(ERR_FLOOR),
                });
            }
        }
    }
    let ncont = sx.len();
    if !lines.is_empty() {
        for m in measure_lines(img, psf, 0..psf.nfiber(), lines, &fopts, true) {
            let (x, y) = (psf.x(m.fiber, m.wave), psf.y(m.fiber, m.wave));
            sx.push(Sample {
                x,
                y,
                value: m.fit.dx,
                err: m.fit.dx_err.hypot(ERR_FLOOR),
            });
            sy.push(Sample {
                x,
                y,
                value: m.fit.dy,
                err: m.fit.dy_err.hypot(ERR_FLOOR),
            });
        }
    }
    let (npx, npy) = (psf.npix_x, psf.npix_y);
    let dx = Shift2d::fit(&sx, sopts.degxx, sopts.degxy, npx, npy);
    let dy = Shift2d::fit(&sy, sopts.degyx, sopts.degyy, npx, npy);
    log::info!(
        "trace shifts: {} continuum and {} line x offsets ({} kept), {} line y offsets ({} kept)",
        ncont,
        sx.len() - ncont,
        dx.nmeas,
        sy.len(),
        dy.nmeas
    );
    if sy.is_empty() {
        log::warn!("no emission line measured: y(λ) kept from the input PSF (dy = 0)");
    }
    if sx.is_empty() {
        log::warn!("no continuum or line measured: x(λ) kept from the input PSF (dx = 0)");
    }
    let (shifted, dx_stats, dy_stats) =
        apply_shifts(psf, &|_, x, y| dx.eval(x, y), &|_, x, y| dy.eval(x, y))?;
    Ok((
        shifted,
        ShiftReport {
            dx,
            dy,
            dx_stats,
            dy_stats,
        },
    ))
}

/// Folds shifts `dx(fiber, x, y)`, `dy(fiber, x, y)` (pixels) into the trace coefficients
/// (sampled along each fiber, refitted with the same degree and domain) and records the
/// summary keys MEANDX … MAXDY; returns the PSF and [mean, min, max] of dx and dy.
pub fn apply_shifts(
    psf: &GaussHermitePsf,
    dx: &dyn Fn(usize, f64, f64) -> f64,
    dy: &dyn Fn(usize, f64, f64) -> f64,
) -> Result<(GaussHermitePsf, [f64; 3], [f64; 3]), PsfFitError> {
    let nf = psf.nfiber();
    let refit = |set: &TraceSet, f: &dyn Fn(usize, f64) -> f64| -> Result<TraceSet, PsfFitError> {
        let w = linspace(set.wmin, set.wmax, NSAMPLE);
        let v = Array2::from_shape_fn((nf, NSAMPLE), |(k, i)| f(k, w[i]));
        TraceSet::fit(&w, &v, set.ncoef() - 1, set.wmin, set.wmax).map_err(PsfFitError::Input)
    };
    let shift_at =
        |s: &dyn Fn(usize, f64, f64) -> f64, k: usize, w: f64| s(k, psf.x(k, w), psf.y(k, w));
    let xt = refit(&psf.xtrace, &|k, w| psf.x(k, w) + shift_at(dx, k, w))?;
    let yt = refit(&psf.ytrace, &|k, w| psf.y(k, w) + shift_at(dy, k, w))?;
    let stats = |s: &dyn Fn(usize, f64, f64) -> f64| {
        let (mut sum, mut lo, mut hi, mut n) = (0.0, f64::INFINITY, f64::NEG_INFINITY, 0usize);
        for k in 0..nf {
            let (w0, w1) = psf.fiber_wrange(k);
            for w in linspace(w0, w1, 16) {
                let v = shift_at(s, k, w);
                sum += v;
                lo = lo.min(v);
                hi = hi.max(v);
                n += 1;
            }
        }
        [sum / n.max(1) as f64, lo, hi]
    };
    let (sdx, sdy) = (stats(dx), stats(dy));
    let mut out = with_traces(psf, xt, yt)?;
    for (name, v) in [
        ("MEANDX", sdx[0]),
        ("MINDX", sdx[1]),
        ("MAXDX", sdx[2]),
        ("MEANDY", sdy[0]),
        ("MINDY", sdy[1]),
        ("MAXDY", sdy[2]),
    ] {
        out.extra_keys.set(name, HeaderValue::Float(v));
    }
    Ok((out, sdx, sdy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_fit_recovers_a_quadratic_in_x_and_clips() {
        let mut s: Vec<Sample> = (0..200)
            .map(|i| {
                let x = (i % 20) as f64 * 10.0;
                let y = (i / 20) as f64 * 100.0;
                let xn = 2.0 * x / 199.0 - 1.0;
                Sample {
                    x,
                    y,
                    value: 0.2 - 0.1 * xn + 0.05 * (1.5 * xn * xn - 0.5),
                    err: 0.01,
                }
            })
            .collect();
        s[17].value = 5.0;
        let f = Shift2d::fit(&s, 2, 0, 200, 1000);
        assert_eq!(f.nmeas, 199);
        assert!((f.coeff[[0, 0]] - 0.2).abs() < 1e-9);
        assert!((f.coeff[[1, 0]] + 0.1).abs() < 1e-9);
        assert!((f.coeff[[2, 0]] - 0.05).abs() < 1e-9);
        // No samples: zero shift. Three samples: degree lowered to a constant.
        assert_eq!(Shift2d::fit(&[], 2, 0, 200, 1000).eval(50.0, 50.0), 0.0);
        let c = Shift2d::fit(&s[..3], 2, 0, 200, 1000);
        assert_eq!(c.coeff.dim(), (1, 1));
    }
}
