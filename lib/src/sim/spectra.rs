//! The light of every fiber of one camera, in electrons, in two forms:
//!
//! - [`binned`]: integrated over bins of the extraction grid (extended beyond the camera's
//!   range with the same step and phase), unresolved lines shared between their two
//!   neighbouring grid points. This is the truth file's PHOT/SKYPHOT, and what science and flat
//!   exposures project (one spot per grid wavelength), so their image is exactly the true PSF ×
//!   the truth: extraction tests against truth then measure the extraction, not the
//!   discretisation of the spectrum on the 0.8 Å grid (an unresolved line between two grid
//!   points is not representable by spots at grid wavelengths; extracted against binned truth
//!   it leaves pulls of several σ).
//! - [`projected`]: a comb of spots ≤ 1 pixel apart for the smooth light plus every line at its
//!   exact wavelength. Arcs use it, since a PSF fit needs the lines' true positions and
//!   shapes (a line shared between grid points 1.6 px apart looks up to 0.8 px² wider).
//!
//! Conversion (module doc of [`crate::sim`]): electrons/Å = f_λ[1e-17 erg/s/cm²/Å] · 1e-17 ·
//! A · t · λ/(hc) · T_cam(λ) · T_fiber for sky and targets, and L[photons/s/Å] · t · T_cam(λ) ·
//! T_fiber for lamps.

use ndarray::Array2;
use rayon::prelude::*;

use crate::instrument::{Camera, Instrument};
use crate::speclib::{Sed, FLUX_UNIT, HC_ERG_ANGSTROM};

/// What one fiber sees.
pub struct FiberLight<'a> {
    /// Astronomical object, 1e-17 erg/s/cm²/Å (None: sky fiber, dead fiber, calibration).
    pub object: Option<&'a dyn Sed>,
    /// Sky entering the fiber, 1e-17 erg/s/cm²/Å.
    pub sky: Option<&'a dyn Sed>,
    /// Lamp, photons/s/Å.
    pub lamp: Option<&'a dyn Sed>,
    /// Relative fiber throughput (0 for a broken fiber).
    pub throughput: f64,
}

/// Exposure-wide conversion factors.
#[derive(Debug, Clone, Copy)]
pub struct Conversion {
    /// Effective area, cm².
    pub area_cm2: f64,
    /// Exposure time, s.
    pub exptime: f64,
}

impl Conversion {
    /// Electrons/Å per unit flux density (1e-17 erg/s/cm²/Å) at `wave` through `cam`, for a
    /// fiber of relative throughput 1.
    pub fn flux_to_electrons(&self, cam: &Camera, wave: f64) -> f64 {
        FLUX_UNIT * self.area_cm2 * self.exptime * wave / HC_ERG_ANGSTROM * cam.throughput_at(wave)
    }
    /// Electrons/Å per photon/s/Å of lamp light at `wave`.
    pub fn lamp_to_electrons(&self, cam: &Camera, wave: f64) -> f64 {
        self.exptime * cam.throughput_at(wave)
    }
}

/// Per-fiber light of one camera, ready to project: `electrons[fiber][k]` for the smooth
/// samples `waves[k]` (k < nsample) followed by the unresolved lines `waves[nsample + l]`.
#[derive(Debug, Clone)]
pub struct Projected {
    /// Sample and line wavelengths, Å.
    pub waves: Vec<f64>,
    /// Number of smooth samples (the rest are lines).
    pub nsample: usize,
    /// Electrons per sample / per line, `[nspec, waves.len()]`.
    pub electrons: Array2<f64>,
}

/// Truth on the extraction grid, before resolution: `[nspec, nwave]`.
#[derive(Debug, Clone)]
pub struct GridTruth {
    /// Grid wavelengths (bin centres), Å.
    pub wave: Vec<f64>,
    /// Object electrons per bin (after throughput).
    pub phot: Array2<f64>,
    /// Sky (or lamp) electrons per bin.
    pub skyphot: Array2<f64>,
    /// Object flux density averaged over the bin, 1e-17 erg/s/cm²/Å (before throughput).
    pub flux: Array2<f64>,
    /// Sky flux density entering the fiber, 1e-17 erg/s/cm²/Å.
    pub skyflux: Array2<f64>,
    /// Electrons/Å per 1e-17 erg/s/cm²/Å for this fiber (throughput, fiber throughput, area,
    /// exposure time), averaged over the bin: the true flux-calibration vector.
    pub calib: Array2<f64>,
}

/// Sub-samples per extraction bin for the truth integrals.
const TRUTH_SUBSAMPLES: usize = 8;

/// Density (electrons/Å) of the smooth light and the line electrons of one fiber.
struct FiberDensity<'a> {
    light: &'a FiberLight<'a>,
    cam: &'a Camera,
    conv: Conversion,
}

impl FiberDensity<'_> {
    /// (object e/Å, sky+lamp e/Å, object flux, sky flux, calib).
    fn at(&self, w: f64) -> [f64; 5] {
        let t = self.light.throughput;
        let f2e = self.conv.flux_to_electrons(self.cam, w) * t;
        let obj = self.light.object.map_or(0.0, |s| s.density(w));
        let sky = self.light.sky.map_or(0.0, |s| s.density(w));
        let lamp = self.light.lamp.map_or(0.0, |s| s.density(w))
            * self.conv.lamp_to_electrons(self.cam, w)
            * t;
        [obj * f2e, sky * f2e + lamp, obj, sky, f2e]
    }

    /// Unresolved lines in [a, b] as (wave, object e, sky+lamp e, object flux, sky flux).
    fn lines(&self, a: f64, b: f64) -> Vec<(f64, [f64; 4])> {
        let t = self.light.throughput;
        let mut v = Vec::new();
        let flux_src = [(self.light.object, 0usize), (self.light.sky, 1usize)];
        for (src, slot) in flux_src {
            if let Some(s) = src {
                for (w, f) in s.lines(a, b) {
                    let e = f * self.conv.flux_to_electrons(self.cam, w) * t;
                    let mut q = [0.0; 4];
                    q[slot] = e;
                    q[slot + 2] = f;
                    v.push((w, q));
                }
            }
        }
        if let Some(s) = self.light.lamp {
            for (w, r) in s.lines(a, b) {
                let mut q = [0.0; 4];
                q[1] = r * self.conv.lamp_to_electrons(self.cam, w) * t;
                v.push((w, q));
            }
        }
        v
    }
}

/// The projection samples: uniform in wavelength over `[wmin, wmax]` with a step `step` (Å),
/// chosen by the caller as ≤ 1 pixel of the smallest dispersion.
pub fn sample_grid(wmin: f64, wmax: f64, step: f64) -> Vec<f64> {
    let n = ((wmax - wmin) / step).ceil().max(1.0) as usize;
    let h = (wmax - wmin) / n as f64;
    (0..n).map(|k| wmin + (k as f64 + 0.5) * h).collect()
}

/// Light of every fiber for the projection over `[wmin, wmax]` sampled at `samples`
/// (uniform, step = samples[1]−samples[0]).
pub fn projected(
    lights: &[FiberLight],
    cam: &Camera,
    conv: Conversion,
    samples: &[f64],
    wmin: f64,
    wmax: f64,
) -> Projected {
    let step = if samples.len() > 1 {
        samples[1] - samples[0]
    } else {
        wmax - wmin
    };
    // Lines are the same list for every fiber (sky, arc): take the wavelengths from the first
    // fiber that has any light; amplitudes per fiber.
    let mut line_waves: Vec<f64> = Vec::new();
    for l in lights {
        let d = FiberDensity {
            light: l,
            cam,
            conv,
        };
        for (w, _) in d.lines(wmin, wmax) {
            line_waves.push(w);
        }
    }
    line_waves.sort_by(f64::total_cmp);
    line_waves.dedup();
    let ns = samples.len();
    let mut waves = samples.to_vec();
    waves.extend_from_slice(&line_waves);
    let rows: Vec<Vec<f64>> = lights
        .par_iter()
        .map(|l| {
            let d = FiberDensity {
                light: l,
                cam,
                conv,
            };
            let mut row = vec![0.0; waves.len()];
            if l.throughput > 0.0 {
                for (k, &w) in samples.iter().enumerate() {
                    let v = d.at(w);
                    row[k] = (v[0] + v[1]) * step;
                }
                for (w, q) in d.lines(wmin, wmax) {
                    let k = line_waves.partition_point(|&x| x < w);
                    row[ns + k] += q[0] + q[1];
                }
            }
            row
        })
        .collect();
    let mut electrons = Array2::<f64>::zeros((lights.len(), waves.len()));
    for (i, r) in rows.into_iter().enumerate() {
        electrons.row_mut(i).assign(&ndarray::Array1::from(r));
    }
    Projected {
        waves,
        nsample: ns,
        electrons,
    }
}

/// The extraction grid of `cam` (wave_min + k·dwave) extended with the same step and phase to
/// cover `[wmin, wmax]`: returns the grid and the index of `cam`'s first grid point in it, so
/// `grid[k0 .. k0 + cam.wave_grid().len()]` equals `cam.wave_grid()` bit for bit.
pub fn extended_grid(cam: &Camera, wmin: f64, wmax: f64) -> (Vec<f64>, usize) {
    let dw = cam.dwave;
    let n_cam = cam.wave_grid().len() as i64;
    let klo = ((wmin - cam.wave_min) / dw).floor().min(0.0) as i64;
    let khi = (((wmax - cam.wave_min) / dw).ceil() as i64).max(n_cam - 1);
    let grid = (klo..=khi).map(|k| cam.wave_min + k as f64 * dw).collect();
    (grid, (-klo) as usize)
}

/// Light of every fiber binned on the uniform grid `wave` (step `dw`, bins of width dw centred
/// on the grid points), before resolution. The smooth density is integrated over each bin;
/// an unresolved line between grid points `w_k` and `w_k+1` is shared between them with the
/// linear-interpolation weights `1 − u` and `u` (u = (λ − w_k)/dw), which keeps its electrons
/// and its centroid. This is the representation the extraction solves for (a flux per grid
/// wavelength), so projecting these bins as spots at the grid wavelengths gives an image that is
/// exactly PSF × truth.
pub fn binned(
    lights: &[FiberLight],
    cam: &Camera,
    conv: Conversion,
    wave: &[f64],
    dw: f64,
) -> GridTruth {
    let nw = wave.len();
    let rows: Vec<[Vec<f64>; 5]> = lights
        .par_iter()
        .map(|l| {
            let d = FiberDensity {
                light: l,
                cam,
                conv,
            };
            let mut out: [Vec<f64>; 5] = std::array::from_fn(|_| vec![0.0; nw]);
            if nw == 0 {
                return out;
            }
            for (i, &w) in wave.iter().enumerate() {
                let mut acc = [0.0; 5];
                for s in 0..TRUTH_SUBSAMPLES {
                    let x = w - 0.5 * dw + (s as f64 + 0.5) * dw / TRUTH_SUBSAMPLES as f64;
                    let v = d.at(x);
                    for (a, b) in acc.iter_mut().zip(v) {
                        *a += b / TRUTH_SUBSAMPLES as f64;
                    }
                }
                // electrons per bin = mean density × width; fluxes and calib stay bin averages
                out[0][i] = acc[0] * dw;
                out[1][i] = acc[1] * dw;
                out[2][i] = acc[2];
                out[3][i] = acc[3];
                out[4][i] = acc[4];
            }
            let (lo, hi) = (wave[0], wave[nw - 1]);
            for (w, q) in d.lines(lo, hi) {
                let u = ((w - lo) / dw).clamp(0.0, (nw - 1) as f64);
                let k = (u.floor() as usize).min(nw.saturating_sub(2));
                let frac = u - k as f64;
                for (i, wt) in [(k, 1.0 - frac), (k + 1, frac)] {
                    if i >= nw || wt == 0.0 {
                        continue;
                    }
                    out[0][i] += wt * q[0];
                    out[1][i] += wt * q[1];
                    out[2][i] += wt * q[2] / dw;
                    out[3][i] += wt * q[3] / dw;
                }
            }
            out
        })
        .collect();
    let mut t: [Array2<f64>; 5] = std::array::from_fn(|_| Array2::zeros((lights.len(), nw)));
    for (f, r) in rows.into_iter().enumerate() {
        for (k, v) in r.into_iter().enumerate() {
            t[k].row_mut(f).assign(&ndarray::Array1::from(v));
        }
    }
    let [phot, skyphot, flux, skyflux, calib] = t;
    GridTruth {
        wave: wave.to_vec(),
        phot,
        skyphot,
        flux,
        skyflux,
        calib,
    }
}

/// Truth on the extraction grid of `cam` (bins of width dwave centred on the grid points);
/// see [`binned`] for the treatment of unresolved lines.
pub fn grid_truth(lights: &[FiberLight], cam: &Camera, conv: Conversion) -> GridTruth {
    binned(lights, cam, conv, &cam.wave_grid(), cam.dwave)
}

impl GridTruth {
    /// Grid points `k0 .. k0 + n`.
    pub fn slice(&self, k0: usize, n: usize) -> GridTruth {
        let s = |a: &Array2<f64>| a.slice(ndarray::s![.., k0..k0 + n]).to_owned();
        GridTruth {
            wave: self.wave[k0..k0 + n].to_vec(),
            phot: s(&self.phot),
            skyphot: s(&self.skyphot),
            flux: s(&self.flux),
            skyflux: s(&self.skyflux),
            calib: s(&self.calib),
        }
    }

    /// The bins as spots at the grid wavelengths (object + sky/lamp electrons), ready to
    /// project.
    pub fn to_projected(&self) -> Projected {
        Projected {
            waves: self.wave.clone(),
            nsample: self.wave.len(),
            electrons: &self.phot + &self.skyphot,
        }
    }
}

/// Relative fiber throughputs of spectrograph `sp` on `night`: 1 ± 3% (fixed for a night, so
/// flats measure what science exposures see), 0 for broken fibers.
pub fn fiber_throughputs(inst: &Instrument, night: i64, sp: usize, dead: &[bool]) -> Vec<f64> {
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
        (night as u64).wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x7468_7275 ^ sp as u64,
    );
    let n = Normal::new(1.0, 0.03).expect("valid normal");
    (0..inst.nspec)
        .map(|i| {
            let v = n.sample(&mut rng);
            if dead.get(i).copied().unwrap_or(false) {
                0.0
            } else {
                v
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::speclib::flat::FlatLamp;
    use crate::speclib::sky::Sky;

    #[test]
    fn samples_and_truth_bins_hold_the_same_electrons() {
        let inst = Instrument::preset("mini").unwrap();
        let (cam, _) = inst.camera("r0").unwrap();
        let sky = Sky {
            area_arcsec2: inst.fiber_area_arcsec2(),
            level: 1.0,
        };
        let flat = FlatLamp {
            temperature: 3000.0,
            rate: 1000.0,
        };
        let lights = vec![
            FiberLight {
                object: None,
                sky: Some(&sky),
                lamp: None,
                throughput: 1.0,
            },
            FiberLight {
                object: None,
                sky: None,
                lamp: Some(&flat),
                throughput: 0.9,
            },
        ];
        let conv = Conversion {
            area_cm2: inst.telescope.area_cm2,
            exptime: 900.0,
        };
        let g = grid_truth(&lights, cam, conv);
        // The truth shares an unresolved line between its two neighbouring grid points, so a
        // sky line within one step of the range's ends leaves part of its electrons outside:
        // compare over grid bins [i0, i1] whose boundaries are at least a step from any line.
        let step = g.wave[1] - g.wave[0];
        let clear = |w: f64| sky.lines(w - step, w + step).is_empty();
        let nw = g.wave.len();
        let i0 = (0..nw).find(|&i| clear(g.wave[i] - 0.5 * step)).unwrap();
        let i1 = (0..nw)
            .rev()
            .find(|&i| clear(g.wave[i] + 0.5 * step))
            .unwrap();
        let (lo, hi) = (g.wave[i0] - 0.5 * step, g.wave[i1] + 0.5 * step);
        let p = projected(&lights, cam, conv, &sample_grid(lo, hi, 0.5), lo, hi);
        for f in 0..2 {
            let a: f64 = g.phot.row(f).slice(ndarray::s![i0..=i1]).sum()
                + g.skyphot.row(f).slice(ndarray::s![i0..=i1]).sum();
            let b: f64 = p.electrons.row(f).sum();
            // same integrals by two midpoint rules; smooth densities → 1e-4 relative
            assert!((a / b - 1.0).abs() < 1e-4, "fiber {f}: {a} vs {b}");
        }
        // the sky's [O I] 6302 line is there with thousands of electrons
        assert!(g.skyphot.row(0).iter().cloned().fold(0.0, f64::max) > 1000.0);
    }
}
