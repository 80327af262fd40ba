//! Measurements on a preprocessed image with the PSF model: the position and flux of a group of
//! arc/sky-line spots of one fiber (2D spot fit), and the cross-dispersion centre of a
//! continuum trace over a band of rows (1D profile fit). Both are small Gauss-Newton fits whose
//! model is the PSF's own spot ([`crate::psf::SpotEvaluator`]), so the GH terms, the
//! pixel integration and the stamp normalisation are exactly those of the extraction.
//!
//! The fit windows are narrow in x (`halfx` columns either side of the trace, less than half
//! the fiber pitch) so that neighbouring fibers' light stays out; the spot model is still the
//! full stamp, clipped to the window.

use crate::io::preproc::PreprocImage;
use crate::psf::{SpotDerivs, SpotEvaluator, SpotParams};

/// Gauss-Newton iterations of one measurement; converged well before (quadratic near the
/// optimum, steps < 1e-4 px after 3–4 iterations on simulated spots).
const MAX_ITER: usize = 12;
/// Convergence on the position step, pixels.
const STEP_TOL: f64 = 1e-4;
/// A measurement whose position moved farther than this from the prediction is rejected:
/// the input PSF is supposed to be within a few pixels (specex uses the same kind of guard).
pub const MAX_SHIFT: f64 = 3.0;

/// Solves the symmetric positive-definite `a x = b` (`a` row-major `n×n`); returns the solution
/// and the diagonal of `a⁻¹` (parameter variances), or `None` if `a` is not positive definite.
pub fn solve_spd(a: &[f64], b: &[f64]) -> Option<(Vec<f64>, Vec<f64>)> {
    let n = b.len();
    if n == 0 {
        return Some((vec![], vec![]));
    }
    let mut m = crate::banded::BandMatrix::zeros(n, n - 1);
    for i in 0..n {
        for j in 0..=i {
            m.set(i, j, a[i * n + j]);
        }
    }
    let ch = m.cholesky().ok()?;
    let x = ch.solve(b);
    let inv = ch.selected_inverse();
    let var = inv.diagonal();
    if x.iter().chain(&var).all(|v| v.is_finite()) {
        Some((x, var))
    } else {
        None
    }
}

/// A pixel box `[x0, x0+nx) × [y0, y0+ny)` on the CCD.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub x0: i64,
    pub y0: i64,
    pub nx: usize,
    pub ny: usize,
}

impl Window {
    /// Box of columns `xc ± halfx` (xc rounded) and rows `ylo-hy ..= yhi+hy`, clipped to the
    /// CCD; `None` if nothing is left.
    pub fn around(
        img: &PreprocImage,
        xc: f64,
        halfx: usize,
        ylo: f64,
        yhi: f64,
        hy: usize,
    ) -> Option<Window> {
        let (ny, nx) = img.shape();
        let cx = xc.round() as i64;
        let x0 = (cx - halfx as i64).max(0);
        let x1 = (cx + halfx as i64 + 1).min(nx as i64);
        let y0 = (ylo.round() as i64 - hy as i64).max(0);
        let y1 = (yhi.round() as i64 + hy as i64 + 1).min(ny as i64);
        (x1 > x0 && y1 > y0).then(|| Window {
            x0,
            y0,
            nx: (x1 - x0) as usize,
            ny: (y1 - y0) as usize,
        })
    }

    /// Data and weights (ivar, 0 where masked) of the box, `[ny][nx]`.
    pub fn data(&self, img: &PreprocImage) -> (Vec<f64>, Vec<f64>) {
        let mut d = Vec::with_capacity(self.nx * self.ny);
        let mut w = Vec::with_capacity(self.nx * self.ny);
        for r in 0..self.ny {
            let y = (self.y0 as usize) + r;
            for c in 0..self.nx {
                let x = (self.x0 as usize) + c;
                let iv = img.ivar[[y, x]] as f64;
                let ok = img.mask[[y, x]] == 0 && iv > 0.0;
                d.push(img.image[[y, x]] as f64);
                w.push(if ok { iv } else { 0.0 });
            }
        }
        (d, w)
    }
}

/// Adds `scale·stamp` (a spot buffer laid out on `st`) into a window buffer `[ny][nx]`.
pub fn add_stamp(win: &Window, st: &crate::psf::Stamp, src: &[f64], scale: f64, dst: &mut [f64]) {
    let Some((clip, dx, dy)) = st.clip(
        win.x0,
        win.x0 + win.nx as i64,
        win.y0,
        win.y0 + win.ny as i64,
    ) else {
        return;
    };
    let ox = (clip.x0 - win.x0) as usize;
    let oy = (clip.y0 - win.y0) as usize;
    for r in 0..clip.ny {
        let s = &src[(r + dy) * st.nx + dx..(r + dy) * st.nx + dx + clip.nx];
        let d = &mut dst[(r + oy) * win.nx + ox..(r + oy) * win.nx + ox + clip.nx];
        for (a, b) in d.iter_mut().zip(s) {
            *a += scale * b;
        }
    }
}

/// Result of a spot-group fit.
#[derive(Debug, Clone)]
pub struct SpotFit {
    /// Common offset of the group from the predicted positions, pixels.
    pub dx: f64,
    pub dy: f64,
    /// 1σ errors of the offsets, pixels.
    pub dx_err: f64,
    pub dy_err: f64,
    /// Fluxes of the spots, electrons, and their 1σ errors.
    pub flux: Vec<f64>,
    pub flux_err: Vec<f64>,
    /// χ², number of pixels with weight, number of parameters.
    pub chi2: f64,
    pub ndata: usize,
    pub npar: usize,
}

/// Fits a group of spots of one fiber: one flux per spot, a background per window column
/// (constant along y: a continuum trace under the lines, as sky lines on a science spectrum
/// or the arc continuum), and one
/// common offset (dx, dy) of all spots from their predicted positions `params` (x offset only
/// when `fit_x`). Lines closer than a stamp are fit together this way, their relative
/// positions fixed by the wavelength solution being refined (a blend has one position).
/// `None` when the data do not constrain the fit (masked, no signal, diverged).
pub fn fit_spot_group(
    img: &PreprocImage,
    ev: &mut SpotEvaluator,
    params: &[SpotParams],
    halfx: usize,
    hy: usize,
    fit_x: bool,
) -> Option<SpotFit> {
    let ns = params.len();
    if ns == 0 {
        return None;
    }
    let xc = params.iter().map(|p| p.x).sum::<f64>() / ns as f64;
    let ylo = params.iter().map(|p| p.y).fold(f64::INFINITY, f64::min);
    let yhi = params.iter().map(|p| p.y).fold(f64::NEG_INFINITY, f64::max);
    let win = Window::around(img, xc, halfx, ylo, yhi, hy)?;
    let (data, w) = win.data(img);
    let ndata = w.iter().filter(|&&v| v > 0.0).count();
    let npix = win.nx * win.ny;
    // Parameters: fluxes, one background per column, dy, (dx).
    let nb = win.nx;
    let npar = ns + nb + 1 + usize::from(fit_x);
    if ndata <= npar + 2 {
        return None;
    }
    let mut spot = vec![0.0; ev.max_len()];
    let mut der = SpotDerivs::default();
    // Basis images of the current positions: S_k, dS_k/dx, dS_k/dy.
    let mut s_img = vec![0.0; ns * npix];
    let mut sx_img = vec![0.0; ns * npix];
    let mut sy_img = vec![0.0; ns * npix];
    let (mut dx, mut dy) = (0.0, 0.0);
    let mut flux = vec![0.0; ns];
    let mut bkg = vec![0.0; nb];
    let mut cov_diag = vec![0.0; npar];
    let mut chi2 = 0.0;
    let mut a = vec![0.0; npar * npar];
    let mut b = vec![0.0; npar];
    let mut col = vec![0.0; npar];
    for it in 0..=MAX_ITER {
        s_img.fill(0.0);
        sx_img.fill(0.0);
        sy_img.fill(0.0);
        for (k, p) in params.iter().enumerate() {
            let q = SpotParams {
                x: p.x + dx,
                y: p.y + dy,
                ..*p
            };
            let st = ev.eval_with_derivs(&q, &mut spot, &mut der);
            let r = k * npix..(k + 1) * npix;
            add_stamp(&win, &st, &spot, 1.0, &mut s_img[r.clone()]);
            add_stamp(&win, &st, &der.dx, 1.0, &mut sx_img[r.clone()]);
            add_stamp(&win, &st, &der.dy, 1.0, &mut sy_img[r]);
        }
        // First pass: linear fit of fluxes and background at the predicted positions (the
        // position derivatives vanish at zero flux).
        let linear = it == 0;
        let np = if linear { ns + nb } else { npar };
        a[..np * np].fill(0.0);
        b[..np].fill(0.0);
        chi2 = 0.0;
        for i in 0..npix {
            if w[i] <= 0.0 {
                continue;
            }
            let ic = i % win.nx;
            let mut model = bkg[ic];
            for k in 0..ns {
                model += flux[k] * s_img[k * npix + i];
            }
            let res = data[i] - if linear { 0.0 } else { model };
            chi2 += w[i] * (data[i] - model) * (data[i] - model);
            for k in 0..ns {
                col[k] = s_img[k * npix + i];
            }
            col[ns..ns + nb].fill(0.0);
            col[ns + ic] = 1.0;
            if !linear {
                let mut gy = 0.0;
                let mut gx = 0.0;
                for k in 0..ns {
                    gy += flux[k] * sy_img[k * npix + i];
                    gx += flux[k] * sx_img[k * npix + i];
                }
                col[ns + nb] = gy;
                if fit_x {
                    col[ns + nb + 1] = gx;
                }
            }
            for p in 0..np {
                let wp = w[i] * col[p];
                if wp == 0.0 {
                    continue;
                }
                b[p] += wp * res;
                for q in 0..=p {
                    a[p * np + q] += wp * col[q];
                }
            }
        }
        for p in 0..np {
            for q in 0..p {
                a[q * np + p] = a[p * np + q];
            }
        }
        let (step, var) = solve_spd(&a[..np * np], &b[..np])?;
        cov_diag[..np].copy_from_slice(&var);
        if linear {
            flux.copy_from_slice(&step[..ns]);
            bkg.copy_from_slice(&step[ns..ns + nb]);
            continue;
        }
        for k in 0..ns {
            flux[k] += step[k];
        }
        for (v, d) in bkg.iter_mut().zip(&step[ns..ns + nb]) {
            *v += d;
        }
        // Damp position steps: the model is far from linear beyond ~0.5 px.
        let mut sy = step[ns + nb];
        let mut sx = if fit_x { step[ns + nb + 1] } else { 0.0 };
        let big = sy.abs().max(sx.abs());
        if big > 0.5 {
            sy *= 0.5 / big;
            sx *= 0.5 / big;
        }
        dy += sy;
        dx += sx;
        if !(dx.is_finite() && dy.is_finite()) || dx.abs() > MAX_SHIFT || dy.abs() > MAX_SHIFT {
            return None;
        }
        if big < STEP_TOL {
            break;
        }
    }
    Some(SpotFit {
        dx,
        dy,
        dx_err: if fit_x {
            cov_diag[ns + nb + 1].sqrt()
        } else {
            0.0
        },
        dy_err: cov_diag[ns + nb].sqrt(),
        flux_err: cov_diag[..ns].iter().map(|v| v.sqrt()).collect(),
        flux,
        chi2,
        ndata,
        npar,
    })
}

/// Result of a cross-dispersion profile fit.
#[derive(Debug, Clone, Copy)]
pub struct ProfileFit {
    /// Fitted trace centre, pixels.
    pub x: f64,
    /// Its 1σ error, pixels.
    pub x_err: f64,
    /// Amplitude (electrons summed over the band and the window) and its S/N.
    pub amp: f64,
    pub snr: f64,
}

/// Fits the centre of a continuum trace on the rows `y0 .. y0+nrows` summed: model
/// `A·P(x - xc) + b`, where the profile `P` is the column sum of the PSF spot at
/// (`p.x`, `p.y`) (a continuum integrates the spot along y). Columns with any masked pixel
/// in the band are left out. `None` without signal or when the fit diverges.
pub fn fit_profile(
    img: &PreprocImage,
    ev: &mut SpotEvaluator,
    p: &SpotParams,
    y0: usize,
    nrows: usize,
    halfx: usize,
) -> Option<ProfileFit> {
    let (ny, nx) = img.shape();
    let cx = p.x.round() as i64;
    let x0 = (cx - halfx as i64).max(0) as usize;
    let x1 = ((cx + halfx as i64 + 1).min(nx as i64)).max(0) as usize;
    let y1 = (y0 + nrows).min(ny);
    if x1 <= x0 + 3 || y1 <= y0 {
        return None;
    }
    let ncol = x1 - x0;
    let mut d = vec![0.0; ncol];
    let mut w = vec![0.0; ncol];
    for (c, x) in (x0..x1).enumerate() {
        let mut var = 0.0;
        let mut ok = true;
        for y in y0..y1 {
            let iv = img.ivar[[y, x]];
            if iv <= 0.0 || img.mask[[y, x]] != 0 {
                ok = false;
                break;
            }
            d[c] += img.image[[y, x]] as f64;
            var += 1.0 / iv as f64;
        }
        w[c] = if ok && var > 0.0 { 1.0 / var } else { 0.0 };
    }
    if w.iter().filter(|&&v| v > 0.0).count() < 5 {
        return None;
    }
    let mut spot = vec![0.0; ev.max_len()];
    let mut der = SpotDerivs::default();
    let (mut xc, mut amp, mut bkg) = (p.x, 0.0, 0.0);
    let mut prof = vec![0.0; ncol];
    let mut dprof = vec![0.0; ncol];
    let mut var_x = f64::INFINITY;
    let mut var_a = f64::INFINITY;
    for it in 0..=MAX_ITER {
        let q = SpotParams { x: xc, ..*p };
        let st = ev.eval_with_derivs(&q, &mut spot, &mut der);
        prof.fill(0.0);
        dprof.fill(0.0);
        for r in 0..st.ny {
            for c in 0..st.nx {
                let x = st.x0 + c as i64;
                if x >= x0 as i64 && x < x1 as i64 {
                    let k = (x - x0 as i64) as usize;
                    prof[k] += spot[r * st.nx + c];
                    dprof[k] += der.dx[r * st.nx + c];
                }
            }
        }
        let linear = it == 0;
        let np = if linear { 2 } else { 3 };
        let mut a = [0.0; 9];
        let mut b = [0.0; 3];
        for k in 0..ncol {
            if w[k] <= 0.0 {
                continue;
            }
            let model = if linear { 0.0 } else { amp * prof[k] + bkg };
            let col = [prof[k], 1.0, amp * dprof[k]];
            for i in 0..np {
                b[i] += w[k] * col[i] * (d[k] - model);
                for j in 0..np {
                    a[i * np + j] += w[k] * col[i] * col[j];
                }
            }
        }
        let (step, var) = solve_spd(&a[..np * np], &b[..np])?;
        var_a = var[0];
        if linear {
            amp = step[0];
            bkg = step[1];
            if amp <= 0.0 {
                return None;
            }
            continue;
        }
        amp += step[0];
        bkg += step[1];
        var_x = var[2];
        let s = step[2].clamp(-0.5, 0.5);
        xc += s;
        if !xc.is_finite() || (xc - p.x).abs() > MAX_SHIFT {
            return None;
        }
        if s.abs() < STEP_TOL {
            break;
        }
    }
    let snr = amp / var_a.sqrt();
    Some(ProfileFit {
        x: xc,
        x_err: var_x.sqrt(),
        amp,
        snr,
    })
}
