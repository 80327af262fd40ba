//! Nominal and "true" Gauss-Hermite PSFs of a camera.
//!
//! The nominal PSF comes from the instrument's [`NominalPsf`]: fibers at their slit positions
//! (bundles of `bundle_size` with wider gaps), y(λ) nearly linear over the CCD with a small
//! bow, field curvature (edge fibers shifted in y), trace curvature (edge fibers bend in x
//! towards both ends of the range), GHSIGX/GHSIGY varying linearly in wavelength and growing a
//! little towards the CCD edges, constant higher Gauss-Hermite terms.
//!
//! The true PSF of an exposure differs like real nights do: a night-to-night offset of the
//! traces (up to ~1 px in x and y, plus a small rotation and stretch) and widths scaled by a few
//! percent, seeded by the night; then a per-exposure flexure of 0.1–0.3 px in x and y seeded by
//! the exposure.

use ndarray::{Array2, Array3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::instrument::{Camera, Instrument, NominalPsf};
use crate::psf::{legendre::TraceSet, GaussHermitePsf, PsfError};

/// Samples used to fit the trace Legendre series.
const TRACE_SAMPLES: usize = 64;
const TAILS: [(&str, f64); 5] = [
    ("TAILAMP", 0.0),
    ("TAILCORE", 1.0),
    ("TAILXSCA", 1.0),
    ("TAILYSCA", 1.0),
    ("TAILINDE", 2.0),
];

/// Position of fiber `i` across the slit, −1 (first) .. +1 (last).
fn slit(inst: &Instrument, i: usize, nx: usize) -> f64 {
    let x = inst.fiber_x(i, nx);
    let c = 0.5 * (nx as f64 - 1.0);
    (x - c) / (0.5 * inst.trace_span()).max(1.0)
}

/// The nominal PSF of camera `cam` of spectrograph `sp` (FIBERMIN = sp·nspec).
pub fn nominal_psf(
    inst: &Instrument,
    cam: &Camera,
    sp: usize,
) -> Result<GaussHermitePsf, PsfError> {
    let p: &NominalPsf = &cam.psf;
    let (nx, ny) = (cam.ccd.nx, cam.ccd.ny);
    let (wmin, wmax) = (p.ccd_wave_min, p.ccd_wave_max);
    let nf = inst.nspec;
    let waves: Vec<f64> = (0..TRACE_SAMPLES)
        .map(|k| wmin + (wmax - wmin) * k as f64 / (TRACE_SAMPLES - 1) as f64)
        .collect();
    let mut xs = Array2::<f64>::zeros((nf, TRACE_SAMPLES));
    let mut ys = Array2::<f64>::zeros((nf, TRACE_SAMPLES));
    for f in 0..nf {
        let s = slit(inst, f, nx);
        let x0 = inst.fiber_x(f, nx);
        for (k, &w) in waves.iter().enumerate() {
            let t = (w - wmin) / (wmax - wmin);
            let u = 2.0 * t - 1.0;
            xs[[f, k]] = x0 + p.x_bow * s * u * u;
            ys[[f, k]] = (ny as f64 - 1.0) * t + p.y_bow * (1.0 - u * u) + p.y_smile * s * s;
        }
    }
    let xtrace =
        TraceSet::fit(&waves, &xs, p.trace_deg, wmin, wmax).map_err(PsfError::Inconsistent)?;
    let ytrace =
        TraceSet::fit(&waves, &ys, p.trace_deg, wmin, wmax).map_err(PsfError::Inconsistent)?;

    let ncoef = p.legdeg + 1;
    let mut names = vec!["GHSIGX".to_string(), "GHSIGY".to_string()];
    for j in 0..=p.ghdeg {
        for i in 0..=p.ghdeg {
            names.push(format!("GH-{i}-{j}"));
        }
    }
    names.extend(TAILS.iter().map(|t| t.0.to_string()));
    names.push("BUNDLE".into());
    names.push("STATUS".into());
    let mut coeff = Array3::<f64>::zeros((names.len(), nf, ncoef));
    for f in 0..nf {
        let s = slit(inst, f, nx);
        // edges of the field are a little blurrier (3% at the outermost fibers)
        let edge = 1.0 + 0.03 * s * s;
        for (row, sig) in [(0, p.sigma_x), (1, p.sigma_y)] {
            coeff[[row, f, 0]] = 0.5 * (sig[0] + sig[1]) * edge;
            if ncoef > 1 {
                coeff[[row, f, 1]] = 0.5 * (sig[1] - sig[0]) * edge;
            }
        }
        for (r, name) in names.iter().enumerate() {
            if name == "GH-0-0" {
                coeff[[r, f, 0]] = 1.0;
            }
        }
        for g in &p.gh {
            let name = format!("GH-{}-{}", g[0] as usize, g[1] as usize);
            if let Some(r) = names.iter().position(|n| *n == name) {
                coeff[[r, f, 0]] = g[2];
            }
        }
        for (t, v) in TAILS {
            if let Some(r) = names.iter().position(|n| n == t) {
                coeff[[r, f, 0]] = v;
            }
        }
        let nb = names.len();
        coeff[[nb - 2, f, 0]] = (f / inst.bundle_size) as f64;
    }
    let mut psf = GaussHermitePsf::new(
        xtrace,
        ytrace,
        names,
        coeff,
        (wmin, wmax),
        (p.hsizex, p.hsizey),
        (p.ghdeg, p.ghdeg),
        (nx, ny),
        sp * inst.nspec,
        0.01,
    )?;
    psf.legdegx = vec![0; psf.param_names.len()];
    psf.legdegw = vec![p.legdeg as i32; psf.param_names.len()];
    Ok(psf)
}

/// How a true PSF departs from the nominal one (pixels and fractions).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Perturbation {
    /// Night offset of all traces, pixels.
    pub dx: f64,
    pub dy: f64,
    /// Night rotation: extra x shift at the far ends of the wavelength range, pixels.
    pub dx_tilt: f64,
    /// Night stretch of y(λ): extra y shift at the ends of the range, pixels.
    pub dy_stretch: f64,
    /// Width scale factors.
    pub sigx_scale: f64,
    pub sigy_scale: f64,
    /// Per-exposure flexure, pixels.
    pub flex_dx: f64,
    pub flex_dy: f64,
}

impl Perturbation {
    /// Night part seeded by (night, camera), exposure part by (seed, expid, camera).
    pub fn draw(night: i64, seed: u64, expid: i64, camera: &str) -> Perturbation {
        let h = camera.bytes().fold(0xcbf2_9ce4_8422_2325u64, |a, b| {
            (a ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        let mut n = ChaCha8Rng::seed_from_u64((night as u64).wrapping_mul(0x9e37_79b9) ^ h);
        let mut e = ChaCha8Rng::seed_from_u64(
            seed ^ (expid as u64).wrapping_mul(0x85eb_ca6b) ^ h.rotate_left(17),
        );
        let flex = |r: &mut ChaCha8Rng| {
            let m: f64 = r.random_range(0.1..0.3);
            if r.random::<bool>() {
                m
            } else {
                -m
            }
        };
        Perturbation {
            dx: n.random_range(-1.0..1.0),
            dy: n.random_range(-1.0..1.0),
            dx_tilt: n.random_range(-0.3..0.3),
            dy_stretch: n.random_range(-0.3..0.3),
            sigx_scale: 1.0 + n.random_range(-0.04..0.04),
            sigy_scale: 1.0 + n.random_range(-0.04..0.04),
            flex_dx: flex(&mut e),
            flex_dy: flex(&mut e),
        }
    }
}

/// `nominal` with the perturbation applied to the trace and width coefficients.
pub fn perturbed(nominal: &GaussHermitePsf, p: &Perturbation) -> Result<GaussHermitePsf, PsfError> {
    let mut xc = nominal.xtrace.coeff.clone();
    let mut yc = nominal.ytrace.coeff.clone();
    for f in 0..xc.nrows() {
        xc[[f, 0]] += p.dx + p.flex_dx;
        yc[[f, 0]] += p.dy + p.flex_dy;
        if xc.ncols() > 1 {
            xc[[f, 1]] += p.dx_tilt;
            yc[[f, 1]] += p.dy_stretch;
        }
    }
    let mut coeff = nominal.param_coeff.clone();
    for (r, name) in nominal.param_names.iter().enumerate() {
        let scale = match name.as_str() {
            "GHSIGX" => p.sigx_scale,
            "GHSIGY" => p.sigy_scale,
            _ => continue,
        };
        coeff
            .index_axis_mut(ndarray::Axis(0), r)
            .mapv_inplace(|v| v * scale);
    }
    let mut psf = GaussHermitePsf::new(
        TraceSet::new(xc, nominal.xtrace.wmin, nominal.xtrace.wmax),
        TraceSet::new(yc, nominal.ytrace.wmin, nominal.ytrace.wmax),
        nominal.param_names.clone(),
        coeff,
        (nominal.param_wmin, nominal.param_wmax),
        (nominal.hsizex, nominal.hsizey),
        (nominal.ghdegx, nominal.ghdegy),
        (nominal.npix_x, nominal.npix_y),
        nominal.fibermin,
        nominal.psferr,
    )?;
    psf.legdegx = nominal.legdegx.clone();
    psf.legdegw = nominal.legdegw.clone();
    psf.extra_keys = nominal.extra_keys.clone();
    Ok(psf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nominal_desi_psf_has_desi_scales() {
        let inst = Instrument::preset("desi").unwrap();
        let (cam, _) = inst.camera("r0").unwrap();
        let psf = nominal_psf(&inst, cam, 0).unwrap();
        let w = 6700.0;
        // pitch 7.3 px in a bundle, 19.8 px across a gap (reference/extraction.md §0)
        let d = psf.x(1, w) - psf.x(0, w);
        assert!((d - 7.3).abs() < 0.05, "{d}");
        let g = psf.x(25, w) - psf.x(24, w);
        assert!((g - 19.8).abs() < 0.05, "{g}");
        // dispersion ≈ 0.5 Å/px
        let disp = 1.0 / (psf.y(250, w + 0.5) - psf.y(250, w - 0.5));
        assert!((0.45..0.6).contains(&disp), "{disp}");
        assert!((psf.xsigma(250, w) - 1.04).abs() < 0.05);
        // the whole extraction grid is on the CCD for every fiber
        for f in [0, 250, 499] {
            let (lo, hi) = psf.fiber_wrange(f);
            assert!(lo < cam.wave_min && hi > cam.wave_max, "{f}: {lo} {hi}");
        }
    }

    #[test]
    fn perturbation_moves_traces_by_the_drawn_amounts() {
        let inst = Instrument::preset("mini").unwrap();
        let (cam, _) = inst.camera("b0").unwrap();
        let nom = nominal_psf(&inst, cam, 0).unwrap();
        let p = Perturbation::draw(20260101, 1, 10, "b0");
        assert!(p.dx.abs() <= 1.0 && (0.1..=0.3).contains(&p.flex_dx.abs()));
        let t = perturbed(&nom, &p).unwrap();
        let wmid = 0.5 * (nom.xtrace.wmin + nom.xtrace.wmax);
        let dx = t.x(3, wmid) - nom.x(3, wmid);
        assert!((dx - (p.dx + p.flex_dx)).abs() < 1e-9);
        // same night, other exposure: same night part, different flexure
        let q = Perturbation::draw(20260101, 1, 11, "b0");
        assert_eq!(p.dx, q.dx);
        assert_ne!(p.flex_dx, q.flex_dx);
    }
}
