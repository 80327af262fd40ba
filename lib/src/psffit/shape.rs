//! The Gauss-Hermite widths GHSIGX, GHSIGY of one bundle from isolated arc-line spots, by
//! Gauss-Newton with a backtracking line search (reference/extraction.md §2.3 step 4: specex
//! fits the sigmas with the spot fluxes before the higher GH terms).
//!
//! Model: the widths are the input PSF's times a smooth correction,
//! `σ(f, λ) = σ_in(f, λ)·(1 + a0 + a1·L1(u_λ) + a2·s_f)`, with `u_λ` the normalised wavelength
//! and `s_f` the fiber's position across the bundle (−1 … +1): specex's per-bundle 2D
//! polynomial of degree 1 in x_ccd and wavelength, applied as a relative change so that the
//! input's structure along wavelength is kept. Every spot has its own flux, background and
//! centre (x, y) as local parameters; the 6 global parameters are solved through the Schur
//! complement of the 4×4 local blocks.

use super::lines::LineMeas;
use super::measure::{solve_spd, Window};
use crate::io::preproc::PreprocImage;
use crate::psf::{GaussHermitePsf, SpotDerivs, SpotParams};

/// Number of global parameters per width (constant, wavelength slope, slit slope).
const NG1: usize = 3;
/// Global parameters: NG1 for GHSIGX then NG1 for GHSIGY.
const NG: usize = 2 * NG1;
/// Local parameters per spot: flux, background, x, y.
const NL: usize = 4;
/// Stop when χ² improves by less than this (specex's final precision, 0.1).
const CHI2_PRECISION: f64 = 0.1;
const MAX_ITER: usize = 15;
/// Spots needed to fit the slope of the widths across the bundle.
const MIN_SPOTS_SLIT: usize = 100;

/// Result of one bundle's width fit.
#[derive(Debug, Clone)]
pub struct ShapeFit {
    /// Global parameters (see module doc): `[a0x, a1x, a2x, a0y, a1y, a2y]`.
    pub theta: [f64; NG],
    /// χ², pixels with weight, parameters.
    pub chi2: f64,
    pub ndata: usize,
    pub npar: usize,
    /// Number of spots used.
    pub nspots: usize,
}

/// Why a bundle's width fit failed (the bundle keeps its input widths).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShapeError {
    #[error("only {0} usable arc spots (need {1})")]
    TooFewSpots(usize, usize),
    #[error("normal equations not positive definite")]
    Singular,
    #[error("width correction {0:.3} out of range")]
    OutOfRange(f64),
}

/// Model of one spot (and optionally its Jacobian) for given globals and locals.
type EvalFn<'a> =
    dyn FnMut(&Spot, &[f64; NG], &[f64; NL], &mut Vec<f64>, Option<&mut Vec<f64>>) + 'a;

struct Spot {
    /// Input-PSF parameters at the line (sigmas are the input's).
    base: SpotParams<'static>,
    gh: Vec<f64>,
    /// Wavelength basis value L1(u) and slit position s.
    l1: f64,
    s: f64,
    win: Window,
    data: Vec<f64>,
    w: Vec<f64>,
    /// Local parameters: flux, background, x, y.
    loc: [f64; NL],
}

fn factors(theta: &[f64; NG], l1: f64, s: f64) -> (f64, f64) {
    (
        1.0 + theta[0] + theta[1] * l1 + theta[2] * s,
        1.0 + theta[3] + theta[4] * l1 + theta[5] * s,
    )
}

/// Slit position of `fiber` across `fibers` (−1 … +1).
pub fn slit_pos(fibers: &std::ops::Range<usize>, fiber: usize) -> f64 {
    let n = fibers.len();
    if n < 2 {
        return 0.0;
    }
    2.0 * (fiber - fibers.start) as f64 / (n - 1) as f64 - 1.0
}

/// Fits the width corrections of the bundle `fibers` from the isolated line measurements
/// `meas` (single-line groups, S/N ≥ `min_snr`) on `img`, with `psf`'s traces and widths as
/// the starting point.
pub fn fit_bundle_widths(
    img: &PreprocImage,
    psf: &GaussHermitePsf,
    fibers: std::ops::Range<usize>,
    meas: &[LineMeas],
    halfx: usize,
    min_snr: f64,
    min_spots: usize,
) -> Result<ShapeFit, ShapeError> {
    let mut ev = psf.evaluator();
    let (pw0, pw1) = (psf.param_wmin, psf.param_wmax);
    let mut spots: Vec<Spot> = Vec::new();
    for m in meas {
        if m.waves.len() != 1 || m.snr < min_snr || !fibers.contains(&m.fiber) {
            continue;
        }
        let w = m.waves[0];
        let batch = psf.spot_params(m.fiber, 1, &[w]);
        let p = batch.get(0, 0);
        let (x, y) = (p.x + m.fit.dx, p.y + m.fit.dy);
        let Some(win) = Window::around(img, x, halfx, y, y, psf.hsizey) else {
            continue;
        };
        let (data, wt) = win.data(img);
        spots.push(Spot {
            base: SpotParams { gh: &[], ..p },
            gh: p.gh.to_vec(),
            l1: (w - pw0) * 2.0 / (pw1 - pw0) - 1.0,
            s: slit_pos(&fibers, m.fiber),
            win,
            data,
            w: wt,
            loc: [m.fluxes[0], 0.0, x, y],
        });
    }
    if spots.len() < min_spots {
        return Err(ShapeError::TooFewSpots(spots.len(), min_spots));
    }
    // Without spread in wavelength or across the slit the slopes are not constrained: the
    // corresponding parameters are held at zero (diagonal regulariser below).
    let spread = |f: &dyn Fn(&Spot) -> f64| {
        let lo = spots.iter().map(f).fold(f64::INFINITY, f64::min);
        let hi = spots.iter().map(f).fold(f64::NEG_INFINITY, f64::max);
        hi - lo
    };
    let free_l1 = spread(&|s: &Spot| s.l1) > 0.3;
    // The slit slope only with many spots: the input already carries the cross-slit structure
    // and a slope fitted to a few faint spots is mostly noise (±1% on a 5 s mini arc).
    let free_s = spread(&|s: &Spot| s.s) > 0.3 && spots.len() >= MIN_SPOTS_SLIT;
    let mut theta = [0.0; NG];
    let mut spot_buf = vec![0.0; ev.max_len()];
    let mut der = SpotDerivs::default();
    let ndata: usize = spots
        .iter()
        .map(|s| s.w.iter().filter(|&&v| v > 0.0).count())
        .sum();
    let npar = NG + NL * spots.len();

    // Model of one spot into `out` (window layout); with `jac`, the columns
    // [flux, bkg, x, y, θ0..θ5] per pixel.
    let mut eval = |sp: &Spot,
                    th: &[f64; NG],
                    loc: &[f64; NL],
                    out: &mut Vec<f64>,
                    jac: Option<&mut Vec<f64>>| {
        let (fx, fy) = factors(th, sp.l1, sp.s);
        let p = SpotParams {
            x: loc[2],
            y: loc[3],
            sigx: sp.base.sigx * fx,
            sigy: sp.base.sigy * fy,
            gh: &sp.gh,
            tail: sp.base.tail,
        };
        let st = ev.eval_with_derivs(&p, &mut spot_buf, &mut der);
        let npix = sp.win.nx * sp.win.ny;
        out.clear();
        out.resize(npix, loc[1]);
        let ncol = NL + NG;
        let mut jac = jac;
        if let Some(j) = jac.as_deref_mut() {
            j.clear();
            j.resize(npix * ncol, 0.0);
            for i in 0..npix {
                j[i * ncol + 1] = 1.0;
            }
        }
        let Some((clip, dx, dy)) = st.clip(
            sp.win.x0,
            sp.win.x0 + sp.win.nx as i64,
            sp.win.y0,
            sp.win.y0 + sp.win.ny as i64,
        ) else {
            return;
        };
        let ox = (clip.x0 - sp.win.x0) as usize;
        let oy = (clip.y0 - sp.win.y0) as usize;
        let basis = [1.0, sp.l1, sp.s];
        for r in 0..clip.ny {
            for c in 0..clip.nx {
                let k = (r + dy) * st.nx + c + dx;
                let i = (r + oy) * sp.win.nx + c + ox;
                out[i] += loc[0] * spot_buf[k];
                if let Some(j) = jac.as_deref_mut() {
                    let row = &mut j[i * ncol..(i + 1) * ncol];
                    row[0] = spot_buf[k];
                    row[2] = loc[0] * der.dx[k];
                    row[3] = loc[0] * der.dy[k];
                    for (g, b) in basis.iter().enumerate() {
                        row[NL + g] = loc[0] * der.dsigx[k] * sp.base.sigx * b;
                        row[NL + NG1 + g] = loc[0] * der.dsigy[k] * sp.base.sigy * b;
                    }
                }
            }
        }
    };

    let chi2_of = |spots: &[Spot], th: &[f64; NG], locs: &[[f64; NL]], eval: &mut EvalFn| {
        let mut m = Vec::new();
        let mut chi2 = 0.0;
        for (sp, loc) in spots.iter().zip(locs) {
            eval(sp, th, loc, &mut m, None);
            for ((mi, d), w) in m.iter().zip(&sp.data).zip(&sp.w) {
                chi2 += w * (d - mi) * (d - mi);
            }
        }
        chi2
    };

    let mut locs: Vec<[f64; NL]> = spots.iter().map(|s| s.loc).collect();
    let mut chi2 = chi2_of(&spots, &theta, &locs, &mut eval);
    let mut model = Vec::new();
    let mut jac = Vec::new();
    let ncol = NL + NG;
    for _ in 0..MAX_ITER {
        // Normal equations, Schur complement over the local blocks.
        let mut agg = [0.0; NG * NG];
        let mut bg = [0.0; NG];
        let mut blocks: Vec<([f64; NL * NL], [f64; NL * NG], [f64; NL])> =
            Vec::with_capacity(spots.len());
        for (sp, loc) in spots.iter().zip(&locs) {
            eval(sp, &theta, loc, &mut model, Some(&mut jac));
            let mut all = [0.0; NL * NL];
            let mut alg = [0.0; NL * NG];
            let mut bl = [0.0; NL];
            for i in 0..model.len() {
                let w = sp.w[i];
                if w <= 0.0 {
                    continue;
                }
                let r = sp.data[i] - model[i];
                let row = &jac[i * ncol..(i + 1) * ncol];
                for a in 0..NL {
                    bl[a] += w * row[a] * r;
                    for b in 0..NL {
                        all[a * NL + b] += w * row[a] * row[b];
                    }
                    for g in 0..NG {
                        alg[a * NG + g] += w * row[a] * row[NL + g];
                    }
                }
                for g in 0..NG {
                    bg[g] += w * row[NL + g] * r;
                    for h in 0..NG {
                        agg[g * NG + h] += w * row[NL + g] * row[NL + h];
                    }
                }
            }
            blocks.push((all, alg, bl));
        }
        let mut s = agg;
        let mut rhs = bg;
        let mut inv_blocks = Vec::with_capacity(blocks.len());
        for (all, alg, bl) in &blocks {
            // A_ll⁻¹ applied to [A_lg | b_l] column by column.
            let mut x_lg = [0.0; NL * NG];
            for g in 0..NG {
                let col: Vec<f64> = (0..NL).map(|a| alg[a * NG + g]).collect();
                let (sol, _) = solve_spd(all, &col).ok_or(ShapeError::Singular)?;
                for a in 0..NL {
                    x_lg[a * NG + g] = sol[a];
                }
            }
            let (x_b, _) = solve_spd(all, bl).ok_or(ShapeError::Singular)?;
            for g in 0..NG {
                for h in 0..NG {
                    let mut v = 0.0;
                    for a in 0..NL {
                        v += alg[a * NG + g] * x_lg[a * NG + h];
                    }
                    s[g * NG + h] -= v;
                }
                let mut v = 0.0;
                for a in 0..NL {
                    v += alg[a * NG + g] * x_b[a];
                }
                rhs[g] -= v;
            }
            inv_blocks.push((x_lg, x_b));
        }
        // Hold unconstrained slopes at zero.
        for (g, free) in [(1, free_l1), (2, free_s), (4, free_l1), (5, free_s)] {
            if !free {
                for h in 0..NG {
                    s[g * NG + h] = 0.0;
                    s[h * NG + g] = 0.0;
                }
                s[g * NG + g] = 1.0;
                rhs[g] = 0.0;
            }
        }
        let (dg, _) = solve_spd(&s, &rhs).ok_or(ShapeError::Singular)?;
        let dl: Vec<[f64; NL]> = inv_blocks
            .iter()
            .map(|(x_lg, x_b)| {
                let mut d = [0.0; NL];
                for a in 0..NL {
                    d[a] = x_b[a] - (0..NG).map(|g| x_lg[a * NG + g] * dg[g]).sum::<f64>();
                }
                d
            })
            .collect();
        // Backtracking line search along the Gauss-Newton step.
        let mut t = 1.0;
        let mut accepted = None;
        for _ in 0..8 {
            let mut th = theta;
            for g in 0..NG {
                th[g] += t * dg[g];
            }
            let nl: Vec<[f64; NL]> = locs
                .iter()
                .zip(&dl)
                .map(|(l, d)| {
                    let mut n = *l;
                    for a in 0..NL {
                        n[a] += t * d[a];
                    }
                    n
                })
                .collect();
            let c = chi2_of(&spots, &th, &nl, &mut eval);
            if c.is_finite() && c <= chi2 {
                accepted = Some((th, nl, c));
                break;
            }
            t *= 0.5;
        }
        let Some((th, nl, c)) = accepted else {
            break;
        };
        let improved = chi2 - c;
        theta = th;
        locs = nl;
        chi2 = c;
        let (fx, fy) = factors(&theta, 0.0, 0.0);
        if !(0.5..2.0).contains(&fx) || !(0.5..2.0).contains(&fy) {
            return Err(ShapeError::OutOfRange(fx.max(fy)));
        }
        if improved < CHI2_PRECISION {
            break;
        }
    }
    Ok(ShapeFit {
        theta,
        chi2,
        ndata,
        npar,
        nspots: spots.len(),
    })
}

/// The corrected width of `fiber` at `wave` for a bundle fit (`base` is the input width).
pub fn corrected(
    theta: &[f64; NG],
    fibers: &std::ops::Range<usize>,
    fiber: usize,
    wave: f64,
    wmin: f64,
    wmax: f64,
    base: (f64, f64),
) -> (f64, f64) {
    let l1 = (wave - wmin) * 2.0 / (wmax - wmin) - 1.0;
    let (fx, fy) = factors(theta, l1, slit_pos(fibers, fiber));
    (base.0 * fx, base.1 * fy)
}
