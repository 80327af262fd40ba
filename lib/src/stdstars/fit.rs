//! Fit of one standard star: its spectra from every camera (and exposure) against the model
//! grid, each segment multiplied by its own smooth polynomial (so the fit needs no flux
//! calibration), models redshifted and convolved with the segment's resolution matrix.

// Numerical kernels index several parallel arrays by pixel: index loops read clearer here.
#![allow(clippy::needless_range_loop)]

use crate::resolution::Resolution;
use crate::speclib::photometry::Band;
use crate::stats::interp;

use super::grid::{dust_transmission, StarGrid, Tabulated};

/// One spectrum segment (one camera of one exposure) of a star, flat-fielded and
/// sky-subtracted.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Camera name (b0, r0…).
    pub camera: String,
    /// Wavelength [nwave], Angstrom.
    pub wave: Vec<f64>,
    /// Flux [nwave], electrons/Angstrom.
    pub flux: Vec<f64>,
    /// Inverse variance [nwave]; 0 marks masked pixels.
    pub ivar: Vec<f64>,
    /// Resolution matrix of this fiber.
    pub res: Resolution,
}

/// Fit options.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// Degree of the per-segment multiplicative Legendre polynomial.
    pub npoly: usize,
    /// Radial-velocity search half-range, in redshift (0.002 ≈ 600 km/s).
    pub zmax: f64,
    /// Final redshift step (2e-5 ≈ 6 km/s, as desispec's z_res); a parabola refines it.
    pub zstep: f64,
    /// Templates must have |model g−r − observed g−r| below this (mag), as desispec's
    /// delta_color; all templates are used when none qualifies.
    pub delta_color: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            npoly: 6,
            zmax: 0.002,
            zstep: 2e-5,
            delta_color: 0.1,
        }
    }
}

/// The result for one star.
#[derive(Debug, Clone)]
pub struct StarFit {
    /// Teff (K), log g, [Fe/H] of the interpolated best model.
    pub teff: f64,
    pub logg: f64,
    pub feh: f64,
    /// Redshift from the radial velocity.
    pub z: f64,
    /// χ² per degree of freedom of the best grid model.
    pub chi2dof: f64,
    /// Coefficients of the output model on the grid templates [nmodel].
    pub coeff: Vec<f64>,
    /// Normalised, reddened, redshifted model on the grid wavelengths, 1e-17 erg/s/cm²/Å.
    pub model: Vec<f64>,
    /// Observed g−r of the star and of the model (mag).
    pub data_gr: f64,
    pub model_gr: f64,
    /// Observed-frame r, z magnitudes of the model (the r one equals the catalogue's).
    pub model_r: f64,
}

/// Solves the small symmetric system `a x = b` (n×n, row-major) by Gaussian elimination
/// with partial pivoting; a singular system gives zeros for its free unknowns.
fn solve_small(a: &mut [f64], b: &mut [f64], n: usize) -> Vec<f64> {
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i * n + c].abs().total_cmp(&a[j * n + c].abs()))
            .unwrap_or(c);
        if a[p * n + c].abs() < 1e-300 {
            continue;
        }
        if p != c {
            for k in 0..n {
                a.swap(p * n + k, c * n + k);
            }
            b.swap(p, c);
        }
        for i in c + 1..n {
            let f = a[i * n + c] / a[c * n + c];
            for k in c..n {
                a[i * n + k] -= f * a[c * n + k];
            }
            b[i] -= f * b[c];
        }
    }
    let mut x = vec![0.0; n];
    for c in (0..n).rev() {
        if a[c * n + c].abs() < 1e-300 {
            continue;
        }
        let s: f64 = (c + 1..n).map(|k| a[c * n + k] * x[k]).sum();
        x[c] = (b[c] - s) / a[c * n + c];
    }
    x
}

/// Legendre polynomials P_0..P_{n-1} at x ∈ [−1, 1].
fn legendre(x: f64, out: &mut [f64]) {
    for k in 0..out.len() {
        out[k] = match k {
            0 => 1.0,
            1 => x,
            _ => ((2 * k - 1) as f64 * x * out[k - 1] - (k - 1) as f64 * out[k - 2]) / k as f64,
        };
    }
}

/// χ² of one model (rest-frame `tmpl` on `gwave`) at redshift `z` against all segments,
/// each with its own best polynomial; returns (χ², number of pixels used).
pub fn chi2_model(
    gwave: &[f64],
    tmpl: &[f64],
    z: f64,
    segs: &[Segment],
    npoly: usize,
) -> (f64, usize) {
    let np = npoly + 1;
    let (mut chi2, mut ndata) = (0.0, 0usize);
    let mut basis = vec![0.0; np];
    for s in segs {
        let n = s.wave.len();
        let m0: Vec<f64> = s
            .wave
            .iter()
            .map(|&w| interp(w / (1.0 + z), gwave, tmpl))
            .collect();
        let mut m = vec![0.0; n];
        if s.res.apply_into(&m0, &mut m).is_err() {
            m = m0;
        }
        let (w0, w1) = (s.wave[0], s.wave[n - 1]);
        let mut a = vec![0.0; np * np];
        let mut b = vec![0.0; np];
        let mut dd = 0.0;
        for j in 0..n {
            let w = s.ivar[j];
            if w <= 0.0 {
                continue;
            }
            ndata += 1;
            let x = 2.0 * (s.wave[j] - w0) / (w1 - w0) - 1.0;
            legendre(x, &mut basis);
            for k in 0..np {
                basis[k] *= m[j];
            }
            for k in 0..np {
                b[k] += w * basis[k] * s.flux[j];
                for l in 0..=k {
                    a[k * np + l] += w * basis[k] * basis[l];
                }
            }
            dd += w * s.flux[j] * s.flux[j];
        }
        for k in 0..np {
            for l in k + 1..np {
                a[k * np + l] = a[l * np + k];
            }
        }
        let mut bb = b.clone();
        let p = solve_small(&mut a, &mut bb, np);
        let fit: f64 = p.iter().zip(&b).map(|(x, y)| x * y).sum();
        chi2 += (dd - fit).max(0.0);
    }
    (chi2, ndata)
}

/// Vertex of the parabola through (−1, c0), (0, c1), (1, c2), clamped to [−1, 1].
fn parabola_vertex(c0: f64, c1: f64, c2: f64) -> f64 {
    let den = c0 - 2.0 * c1 + c2;
    if den <= 0.0 {
        return 0.0;
    }
    (0.5 * (c0 - c2) / den).clamp(-1.0, 1.0)
}

/// A grid row seen redshifted by `z` and reddened by `ebv`, evaluated on demand (the band
/// integrals touch only ~3000 wavelengths each, far fewer than the grid has).
struct Observed<'a> {
    wave: &'a [f64],
    flux: &'a [f64],
    z: f64,
    ebv: f64,
}

impl crate::speclib::Sed for Observed<'_> {
    fn density(&self, w: f64) -> f64 {
        let rest = w / (1.0 + self.z);
        let n = self.wave.len();
        if n == 0 || rest < self.wave[0] || rest > self.wave[n - 1] {
            return 0.0;
        }
        interp(rest, self.wave, self.flux) * dust_transmission(w, self.ebv)
    }
}

/// Model g−r colour (AB mag) and r flux (nanomaggies) of a grid row, redshifted and reddened.
fn model_colour(grid: &StarGrid, row: &[f64], z: f64, ebv: f64) -> (f64, f64) {
    let t = Observed {
        wave: &grid.wave,
        flux: row,
        z,
        ebv,
    };
    let g = Band::G.nanomaggies(&t);
    let r = Band::R.nanomaggies(&t);
    (-2.5 * (g / r).log10(), r)
}

/// Photometry of a star: catalogue fluxes in nanomaggies and the colour excess.
#[derive(Debug, Clone, Copy)]
pub struct Photometry {
    pub flux_g: f64,
    pub flux_r: f64,
    pub ebv: f64,
}

/// Fits one star: radial velocity with a reference template (nearest Teff 6000 K, log g 4,
/// [Fe/H] −1.5, as desispec), then χ² of every colour-compatible template at that redshift,
/// a parabolic refinement in Teff around the best node (linear interpolation between the
/// two bracketing templates), and normalisation of the reddened model to the catalogue r flux.
pub fn fit_star(grid: &StarGrid, segs: &[Segment], phot: Photometry, opts: &FitOptions) -> StarFit {
    let nm = grid.len();
    let row = |i: usize| grid.flux.row(i).to_vec();
    // reference template for the redshift
    let iref = (0..nm)
        .min_by(|&a, &b| {
            let d = |i: usize| {
                ((grid.teff[i] - 6000.0) / 1000.0).powi(2)
                    + (grid.logg[i] - 4.0).powi(2)
                    + (grid.feh[i] + 1.5).powi(2)
            };
            d(a).total_cmp(&d(b))
        })
        .unwrap_or(0);
    let tref = row(iref);
    let scan = |zc: f64, step: f64, n: i64| -> f64 {
        let zs: Vec<f64> = (-n..=n).map(|k| zc + step * k as f64).collect();
        let c: Vec<f64> = zs
            .iter()
            .map(|&z| chi2_model(&grid.wave, &tref, z, segs, opts.npoly).0)
            .collect();
        let k = (0..c.len())
            .min_by(|&a, &b| c[a].total_cmp(&c[b]))
            .unwrap_or(0);
        if k == 0 || k + 1 == c.len() {
            return zs[k];
        }
        zs[k] + step * parabola_vertex(c[k - 1], c[k], c[k + 1])
    };
    // coarse then fine: the coarse step (5 fine steps, 30 km/s) is below a line width
    let coarse = 5.0 * opts.zstep;
    let nc = (opts.zmax / coarse).ceil() as i64;
    let z1 = scan(0.0, coarse, nc);
    let z = scan(z1, opts.zstep, 6);

    let data_gr = -2.5 * (phot.flux_g / phot.flux_r).log10();
    let colours: Vec<f64> = (0..nm)
        .map(|i| {
            model_colour(
                grid,
                grid.flux.row(i).as_slice().unwrap_or(&[]),
                z,
                phot.ebv,
            )
            .0
        })
        .collect();
    let mut cand: Vec<usize> = (0..nm)
        .filter(|&i| (colours[i] - data_gr).abs() < opts.delta_color)
        .collect();
    if cand.is_empty() {
        log::warn!(
            "no template within {} mag of g−r = {data_gr:.3}: using all",
            opts.delta_color
        );
        cand = (0..nm).collect();
    }
    let chi: Vec<(f64, usize)> = (0..nm)
        .map(|i| {
            if cand.contains(&i) {
                chi2_model(&grid.wave, &row(i), z, segs, opts.npoly)
            } else {
                (f64::INFINITY, 0)
            }
        })
        .collect();
    let best = cand
        .iter()
        .copied()
        .min_by(|&a, &b| chi[a].0.total_cmp(&chi[b].0))
        .unwrap_or(0);
    // continuous refinement: trilinear interpolation between grid nodes, coordinate-wise
    // parabolic steps in Teff, log g, [Fe/H] (two passes, the second with half steps)
    let axes = Axes::new(grid);
    let mut x = [grid.teff[best], grid.logg[best], grid.feh[best]];
    let eval = |x: &[f64; 3]| -> f64 {
        let (_, t) = axes.interpolate(grid, x);
        chi2_model(&grid.wave, &t, z, segs, opts.npoly).0
    };
    let mut cbest = chi[best].0;
    for pass in 0..2 {
        for a in 0..3 {
            let h = axes.step[a] / (1 << pass) as f64;
            if h <= 0.0 {
                continue;
            }
            let mut lo = x;
            lo[a] = (x[a] - h).max(axes.min[a]);
            let mut hi = x;
            hi[a] = (x[a] + h).min(axes.max[a]);
            if lo[a] == x[a] || hi[a] == x[a] {
                continue;
            }
            let (cl, ch) = (eval(&lo), eval(&hi));
            let v = parabola_vertex(cl, cbest, ch);
            let mut t = x;
            t[a] = x[a] + v * h;
            let ct = eval(&t);
            for (p, c) in [(t, ct), (lo, cl), (hi, ch)] {
                if c < cbest {
                    cbest = c;
                    x = p;
                }
            }
        }
    }
    let (coeff, _) = axes.interpolate(grid, &x);
    let teff = x[0];
    let rest: Vec<f64> = (0..grid.wave.len())
        .map(|j| {
            coeff
                .iter()
                .enumerate()
                .filter(|(_, &c)| c != 0.0)
                .map(|(i, &c)| c * grid.flux[[i, j]])
                .sum()
        })
        .collect();
    // observed-frame model on the grid wavelengths: f(λ/(1+z)), reddened
    let model_obs: Vec<f64> = grid
        .wave
        .iter()
        .map(|&w| interp(w / (1.0 + z), &grid.wave, &rest) * dust_transmission(w, phot.ebv))
        .collect();
    let t = Tabulated {
        wave: &grid.wave,
        flux: &model_obs,
    };
    let (g, r) = (Band::G.nanomaggies(&t), Band::R.nanomaggies(&t));
    let scale = if r > 0.0 { phot.flux_r / r } else { 0.0 };
    let (c2, nd) = (cbest, chi[best].1);
    let ndof = nd.saturating_sub(segs.len() * (opts.npoly + 1) + 1).max(1);
    StarFit {
        teff,
        logg: x[1],
        feh: x[2],
        z,
        chi2dof: c2 / ndof as f64,
        coeff,
        model: model_obs.iter().map(|v| v * scale).collect(),
        data_gr,
        model_gr: -2.5 * (g / r).log10(),
        model_r: 22.5 - 2.5 * (r * scale).max(1e-30).log10(),
    }
}

/// The distinct node values of a grid per parameter, for trilinear interpolation.
struct Axes {
    nodes: [Vec<f64>; 3],
    step: [f64; 3],
    min: [f64; 3],
    max: [f64; 3],
    /// template index per (teff, logg, feh) node, if present
    index: std::collections::HashMap<[usize; 3], usize>,
}

impl Axes {
    fn new(grid: &StarGrid) -> Axes {
        let uniq = |v: &[f64]| {
            let mut u = v.to_vec();
            u.sort_by(f64::total_cmp);
            u.dedup();
            u
        };
        let nodes = [uniq(&grid.teff), uniq(&grid.logg), uniq(&grid.feh)];
        let step = nodes.clone().map(|n| {
            if n.len() > 1 {
                (n[n.len() - 1] - n[0]) / (n.len() - 1) as f64
            } else {
                0.0
            }
        });
        let min = nodes.clone().map(|n| n[0]);
        let max = nodes.clone().map(|n| n[n.len() - 1]);
        let pos = |n: &[f64], v: f64| n.iter().position(|&x| x == v).unwrap_or(0);
        let index = (0..grid.len())
            .map(|i| {
                (
                    [
                        pos(&nodes[0], grid.teff[i]),
                        pos(&nodes[1], grid.logg[i]),
                        pos(&nodes[2], grid.feh[i]),
                    ],
                    i,
                )
            })
            .collect();
        Axes {
            nodes,
            step,
            min,
            max,
            index,
        }
    }

    /// Trilinear weights on the grid templates at `x` (Teff, log g, [Fe/H]) and the
    /// interpolated template; missing corners are dropped and the weights renormalised.
    fn interpolate(&self, grid: &StarGrid, x: &[f64; 3]) -> (Vec<f64>, Vec<f64>) {
        let mut lohi = [(0usize, 0usize, 0.0f64); 3];
        for a in 0..3 {
            let n = &self.nodes[a];
            let v = x[a].clamp(n[0], n[n.len() - 1]);
            let k = n.partition_point(|&t| t <= v).clamp(1, n.len().max(2) - 1);
            if n.len() == 1 {
                lohi[a] = (0, 0, 0.0);
            } else {
                let u = (v - n[k - 1]) / (n[k] - n[k - 1]);
                lohi[a] = (k - 1, k, u);
            }
        }
        let mut coeff = vec![0.0; grid.len()];
        let mut wsum = 0.0;
        for corner in 0..8 {
            let mut key = [0usize; 3];
            let mut w = 1.0;
            for a in 0..3 {
                let (l, h, u) = lohi[a];
                if corner >> a & 1 == 1 {
                    key[a] = h;
                    w *= u;
                } else {
                    key[a] = l;
                    w *= 1.0 - u;
                }
            }
            if w == 0.0 {
                continue;
            }
            if let Some(&i) = self.index.get(&key) {
                coeff[i] += w;
                wsum += w;
            }
        }
        if wsum > 0.0 {
            coeff.iter_mut().for_each(|c| *c /= wsum);
        }
        let mut t = vec![0.0; grid.wave.len()];
        for (i, &c) in coeff.iter().enumerate() {
            if c != 0.0 {
                t.iter_mut()
                    .zip(grid.flux.row(i).iter())
                    .for_each(|(a, &b)| *a += c * b);
            }
        }
        (coeff, t)
    }
}
