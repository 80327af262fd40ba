//! One simulated exposure: targets and fiber throughputs, per camera the true PSF, the light
//! of every fiber, the projection, cosmic rays and the readout, plus the truth.

use std::fmt;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::cosmics::cosmic_image;
use super::fibermap::{fibermap, truth_table, PetalTargets};
use super::layout::Layout;
use super::noise::{digitize, NoiseOptions};
use super::project::project;
use super::psfmodel::{nominal_psf, perturbed, Perturbation};
use super::spectra::{
    binned, extended_grid, fiber_throughputs, projected, sample_grid, Conversion, FiberLight,
};
use crate::instrument::Instrument;
use crate::io::header::{Header, HeaderValue};
use crate::io::raw::{RawCamera, RawExposure};
use crate::io::simtruth::{CameraTruth, SimTruth};
use crate::psf::GaussHermitePsf;
use crate::speclib::arc::ArcSpectrum;
use crate::speclib::flat::FlatLamp;
use crate::speclib::sky::Sky;
use crate::speclib::targets::{draw_targets, Kind, Target, TargetSpec};
use crate::speclib::Sed;

/// Exposure kinds (FLAVOR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    Zero,
    Dark,
    Arc,
    Flat,
    Science,
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::Zero => "zero",
            Flavor::Dark => "dark",
            Flavor::Arc => "arc",
            Flavor::Flat => "flat",
            Flavor::Science => "science",
        })
    }
}

impl Flavor {
    /// Default exposure time, seconds.
    pub fn default_exptime(self) -> f64 {
        match self {
            Flavor::Zero => 0.0,
            Flavor::Dark => 300.0,
            Flavor::Arc => 5.0,
            Flavor::Flat => 120.0,
            Flavor::Science => 900.0,
        }
    }
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct ExposureSpec {
    pub flavor: Flavor,
    pub night: i64,
    pub expid: i64,
    /// Seed of the noise, cosmics and flexure.
    pub seed: u64,
    /// Seconds.
    pub exptime: f64,
    /// Tile id; also the seed of the targets, so exposures of a tile see the same objects.
    pub tileid: i64,
    /// Fibers per spectrograph to illuminate (≤ nspec; the rest get no light).
    pub nspec: usize,
    pub targets: Vec<TargetSpec>,
    pub cosmics: bool,
    /// Poisson and read noise (off: the noiseless expectation).
    pub noise: bool,
    /// Keep the noiseless image and cosmic image in the truth.
    pub truth_images: bool,
    /// Sky brightness relative to dark sky.
    pub sky_level: f64,
    /// Project the smooth light as a fine comb and unresolved lines at their exact
    /// wavelengths (arcs always do). Otherwise the truth bins are projected as spots at the
    /// extraction grid wavelengths, so the image is exactly true PSF × PHOT (sim::spectra).
    pub exact_lines: bool,
}

/// Everything one exposure produces.
pub struct Simulated {
    pub raw: RawExposure,
    pub truth: SimTruth,
    /// True PSF per camera, in the order of the cameras.
    pub psfs: Vec<(String, GaussHermitePsf)>,
    /// Spots evaluated per camera.
    pub spots: Vec<usize>,
}

/// Errors of a simulation.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Instrument(#[from] crate::instrument::InstrumentError),
    #[error("PSF of camera {camera}: {msg}")]
    Psf { camera: String, msg: String },
    #[error("{0}")]
    Invalid(String),
}

fn cam_hash(cam: &str) -> u64 {
    cam.bytes().fold(0xcbf2_9ce4_8422_2325u64, |a, b| {
        (a ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Simulates `spec` for `cameras` (e.g. ["b0", "r0"]). `psf_for(camera)` may return a PSF to
/// use as-is instead of the perturbed nominal one.
pub fn simulate(
    inst: &Instrument,
    cameras: &[String],
    spec: &ExposureSpec,
    psf_for: &dyn Fn(&str) -> Option<GaussHermitePsf>,
) -> Result<Simulated, SimError> {
    if spec.nspec == 0 || spec.nspec > inst.nspec {
        return Err(SimError::Invalid(format!(
            "--nspec must be 1..{} for instrument {}",
            inst.nspec, inst.name
        )));
    }
    if spec.exptime < 0.0 || !spec.exptime.is_finite() {
        return Err(SimError::Invalid("exposure time must be >= 0".into()));
    }
    // spectrographs in use, their targets and fiber throughputs
    let mut sps: Vec<usize> = Vec::new();
    for c in cameras {
        let (_, sp) = inst.camera(c)?;
        if !sps.contains(&sp) {
            sps.push(sp);
        }
    }
    sps.sort_unstable();
    let mut petals: Vec<(usize, Vec<Target>)> = Vec::new();
    for &sp in &sps {
        let mut t = draw_targets(spec.tileid as u64, sp, spec.nspec, &spec.targets);
        let dead: Vec<bool> = t.iter().map(|x| x.truth.kind == Kind::Dead).collect();
        let thru = fiber_throughputs(inst, spec.night, sp, &dead);
        for (x, th) in t.iter_mut().zip(thru) {
            x.truth.fiber_throughput = th;
        }
        petals.push((sp, t));
    }
    let petal_refs: Vec<PetalTargets> = petals
        .iter()
        .map(|(sp, t)| PetalTargets {
            sp: *sp,
            nspec: inst.nspec,
            targets: t,
        })
        .collect();
    let fm = fibermap(&petal_refs, spec.tileid);
    let table = truth_table(&petal_refs);

    let sky = Sky {
        area_arcsec2: inst.fiber_area_arcsec2(),
        level: spec.sky_level,
    };
    let flat = FlatLamp {
        temperature: inst.lamps.flat_temperature,
        rate: inst.lamps.flat_rate,
    };
    let conv = Conversion {
        area_cm2: inst.telescope.area_cm2,
        exptime: spec.exptime,
    };

    let mut raw_cams = Vec::new();
    let mut truth_cams = Vec::new();
    let mut psfs = Vec::new();
    let mut spots = Vec::new();
    for cname in cameras {
        let cname = cname.to_ascii_lowercase();
        let (cam, sp) = inst.camera(&cname)?;
        let targets = &petals
            .iter()
            .find(|p| p.0 == sp)
            .ok_or_else(|| SimError::Invalid("internal: spectrograph lost".into()))?
            .1;
        let psf_err = |e: crate::psf::PsfError| SimError::Psf {
            camera: cname.clone(),
            msg: e.to_string(),
        };
        let psf = match psf_for(&cname) {
            Some(p) => p,
            None => {
                let nom = nominal_psf(inst, cam, sp).map_err(psf_err)?;
                let pert = Perturbation::draw(spec.night, spec.seed, spec.expid, &cname);
                perturbed(&nom, &pert).map_err(psf_err)?
            }
        };
        if psf.npix_x != cam.ccd.nx || psf.npix_y != cam.ccd.ny {
            return Err(SimError::Invalid(format!(
                "camera {cname}: PSF is for a {}x{} CCD, the instrument's is {}x{}",
                psf.npix_x, psf.npix_y, cam.ccd.nx, cam.ccd.ny
            )));
        }
        if psf.nfiber() < spec.nspec {
            return Err(SimError::Invalid(format!(
                "camera {cname}: PSF has {} fibers, {} requested",
                psf.nfiber(),
                spec.nspec
            )));
        }
        let arc = ArcSpectrum {
            lines: inst.arc_lines(0.0, f64::INFINITY),
        };
        let lights: Vec<FiberLight> = targets
            .iter()
            .map(|t| {
                let none = FiberLight {
                    object: None,
                    sky: None,
                    lamp: None,
                    throughput: t.truth.fiber_throughput,
                };
                match spec.flavor {
                    Flavor::Zero | Flavor::Dark => none,
                    Flavor::Arc => FiberLight {
                        lamp: Some(&arc as &dyn Sed),
                        ..none
                    },
                    Flavor::Flat => FiberLight {
                        lamp: Some(&flat as &dyn Sed),
                        ..none
                    },
                    Flavor::Science => FiberLight {
                        object: t.sed.as_deref(),
                        sky: Some(&sky as &dyn Sed),
                        ..none
                    },
                }
            })
            .collect();
        // wavelengths that reach the CCD, with a margin of a spot height (the smallest
        // dispersion, Å/px, sets both the margin and the fine comb's step)
        let (wlo, whi) = psf.wrange_any();
        let margin = 2.0 * (psf.hsizey as f64 + 1.0);
        let mut min_disp = f64::INFINITY;
        for f in [0, spec.nspec / 2, spec.nspec - 1] {
            for k in 0..=32 {
                let w = wlo + (whi - wlo) * k as f64 / 32.0;
                let d = 1.0 / (psf.y(f, w + 0.5) - psf.y(f, w - 0.5)).abs().max(1e-6);
                min_disp = min_disp.min(d);
            }
        }
        let (a, b) = (wlo - margin * min_disp, whi + margin * min_disp);
        let t0 = std::time::Instant::now();
        // truth bins on the extraction grid extended over [a, b]; the truth file keeps the
        // camera's own grid
        let (ext, k0) = extended_grid(cam, a, b);
        let bins = binned(&lights, cam, conv, &ext, cam.dwave);
        let grid = bins.slice(k0, cam.wave_grid().len());
        let light = if spec.exact_lines || spec.flavor == Flavor::Arc {
            projected(&lights, cam, conv, &sample_grid(a, b, min_disp), a, b)
        } else {
            bins.to_projected()
        };
        drop(bins);
        let t1 = std::time::Instant::now();
        let proj = project(&psf, &light, inst.bundle_size);
        let t2 = std::time::Instant::now();

        let (ny, nx) = (cam.ccd.ny, cam.ccd.nx);
        let cam_seed =
            spec.seed ^ cam_hash(&cname) ^ (spec.expid as u64).wrapping_mul(0xff51_afd7_ed55_8ccd);
        let cosmics = (spec.cosmics && spec.exptime > 0.0)
            .then(|| cosmic_image(ny, nx, inst.cosmic_rate, spec.exptime, cam_seed));
        let dark_electrons = if spec.flavor == Flavor::Zero {
            0.0
        } else {
            cam.dark_per_second() * spec.exptime
        };
        let layout = Layout::new(&cam.ccd);
        let image = digitize(
            &proj.image,
            cosmics.as_ref(),
            &cam.ccd,
            &layout,
            NoiseOptions {
                dark_electrons,
                noise: spec.noise,
                seed: cam_seed,
            },
        );
        log::debug!(
            "{cname}: spectra and truth {:.2} s, projection {:.2} s ({} spots), readout {:.2} s",
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            proj.spots,
            t2.elapsed().as_secs_f64()
        );
        let mut header = Header::default();
        header.set("DETECTOR", HeaderValue::Str("SIM".into()));
        header.set(
            "CCDNAME",
            HeaderValue::Str(format!("SIM-{}", cname.to_ascii_uppercase())),
        );
        header.set("SPECID", HeaderValue::Int(sp as i64));
        header.set("PETAL_LOC", HeaderValue::Int(sp as i64));
        header.set("INSTRUME", HeaderValue::Str(inst.name.clone()));
        header.set("DARKCUR", HeaderValue::Float(cam.dark_current));
        raw_cams.push(RawCamera {
            camera: cname.clone(),
            image,
            amps: layout.amps.clone(),
            header,
        });
        let f32s = |a: &Array2<f64>| a.mapv(|v| v as f32);
        truth_cams.push(CameraTruth {
            camera: cname.clone(),
            wave: ndarray::Array1::from(grid.wave.clone()),
            phot: f32s(&grid.phot),
            skyphot: f32s(&grid.skyphot),
            flux: f32s(&grid.flux),
            skyflux: f32s(&grid.skyflux),
            calib: f32s(&grid.calib),
            image: spec.truth_images.then(|| f32s(&proj.image)),
            cosmics: if spec.truth_images { cosmics } else { None },
            dark_electrons,
            nphot: proj.total,
        });
        spots.push(proj.spots);
        psfs.push((cname, psf));
    }
    let mut primary = Header::default();
    primary.set("TILEID", HeaderValue::Int(spec.tileid));
    primary.set("INSTRUME", HeaderValue::Str(inst.name.clone()));
    primary.set("DETECTOR", HeaderValue::Str("SIM".into()));
    let raw = RawExposure {
        night: spec.night,
        expid: spec.expid,
        flavor: spec.flavor.to_string(),
        exptime: spec.exptime,
        primary,
        cameras: raw_cams,
        fibermap: Some(fm.clone()),
    };
    let truth = SimTruth {
        night: spec.night,
        expid: spec.expid,
        flavor: spec.flavor.to_string(),
        exptime: spec.exptime,
        seed: spec.seed as i64,
        tileid: spec.tileid,
        instrument: inst.name.clone(),
        fibermap: Some(fm),
        truth: Some(table),
        cameras: truth_cams,
    };
    Ok(Simulated {
        raw,
        truth,
        psfs,
        spots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(flavor: Flavor) -> ExposureSpec {
        ExposureSpec {
            flavor,
            night: 20260101,
            expid: 3,
            seed: 11,
            exptime: flavor.default_exptime(),
            tileid: 1000,
            nspec: 20,
            targets: Vec::new(),
            cosmics: false,
            noise: false,
            truth_images: true,
            sky_level: 1.0,
            exact_lines: false,
        }
    }

    #[test]
    fn raw_holds_the_projected_electrons() {
        // Noiseless: (raw − bias)·gain over the data sections = projected image + dark; the
        // image never holds more than the projected electrons (tight bounds: project.rs).
        let inst = Instrument::preset("mini").unwrap();
        for flavor in [Flavor::Flat, Flavor::Science, Flavor::Arc] {
            let sim = simulate(&inst, &["r0".into()], &spec(flavor), &|_| None).unwrap();
            let t = &sim.truth.cameras[0];
            let img = t.image.as_ref().unwrap();
            let sum_img: f64 = img.iter().map(|&v| v as f64).sum();
            let raw = &sim.raw.cameras[0];
            let (cam, _) = inst.camera("r0").unwrap();
            let mut sum_raw = 0.0;
            for (a, amp) in raw.amps.iter().zip(&cam.ccd.amps) {
                let d = a.datasec;
                for y in d.y0..d.y1 {
                    for x in d.x0..d.x1 {
                        sum_raw +=
                            (raw.image[[y, x]] as f64 - amp.bias) * amp.gain - t.dark_electrons;
                    }
                }
            }
            // f32 storage: 6e-8 relative per pixel, random signs → ≪ 1e-5 of the total
            assert!(
                (sum_raw / sum_img - 1.0).abs() < 1e-5,
                "{flavor}: raw {sum_raw} image {sum_img}"
            );
            let total = t.nphot;
            assert!(
                sum_img <= total * (1.0 + 1e-9),
                "{flavor}: {sum_img} > {total}"
            );
            assert!(sum_img > 0.9 * total);
        }
    }

    #[test]
    fn image_is_the_truth_psf_file_times_the_truth_bins() {
        // The extraction models an image as Σ spots at the grid wavelengths × flux per bin, so
        // a science or flat image must be exactly (the --truth-psf file) × (PHOT + SKYPHOT)
        // projected at the grid wavelengths. Compared on the rows that only grid light can
        // reach (a spot height inside the grid's first and last rows, for every fiber); the
        // light beyond the grid fills the others. Tolerance: the image and the truth are
        // stored as f32 (6e-8 relative per spot); 1e-6 of the local value + 1e-6 e⁻ is far
        // below the error of projecting sky lines at their exact wavelengths instead
        // (tens of % on the line pixels), which this test was written to catch.
        let inst = Instrument::preset("mini").unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (flavor, cam) in [
            (Flavor::Science, "r0"),
            (Flavor::Science, "z0"),
            (Flavor::Flat, "b0"),
        ] {
            let sim = simulate(&inst, &[cam.into()], &spec(flavor), &|_| None).unwrap();
            let path = dir.path().join(format!("psf-{cam}.fits"));
            let prov = crate::io::fits::Provenance::current("test", &[]);
            crate::io::psf::write(&path, &sim.psfs[0].1, &prov).unwrap();
            let psf = crate::io::psf::read(&path).unwrap();
            let t = &sim.truth.cameras[0];
            let img = t.image.as_ref().unwrap();
            let light = crate::sim::spectra::Projected {
                waves: t.wave.to_vec(),
                nsample: t.wave.len(),
                electrons: (&t.phot + &t.skyphot).mapv(f64::from),
            };
            let model = project(&psf, &light, inst.bundle_size).image;
            let (w0, w1) = (t.wave[0], t.wave[t.wave.len() - 1]);
            let pad = psf.hsizey as f64 + 2.0;
            let nf = spec(flavor).nspec;
            // rows every fiber's grid covers, whichever way y runs with wavelength
            let lo = (0..nf)
                .map(|f| psf.y(f, w0).min(psf.y(f, w1)))
                .fold(f64::MIN, f64::max);
            let hi = (0..nf)
                .map(|f| psf.y(f, w0).max(psf.y(f, w1)))
                .fold(f64::MAX, f64::min);
            let (r0, r1) = (
                (lo + pad).ceil().max(0.0) as usize,
                (hi - pad).floor().max(0.0) as usize,
            );
            assert!(r1 > r0 + 50, "{flavor} {cam}: too few rows {r0}..{r1}");
            let mut worst = 0.0f64;
            let mut signal = 0.0;
            for y in r0..r1 {
                for x in 0..img.ncols() {
                    let (a, b) = (img[[y, x]] as f64, model[[y, x]]);
                    signal += a;
                    worst = worst.max((a - b).abs() / (1e-6 * a.abs() + 1e-6));
                }
            }
            assert!(signal > 1e4, "{flavor} {cam}: no light on rows {r0}..{r1}");
            assert!(
                worst <= 1.0,
                "{flavor} {cam}: image − PSF×truth up to {worst:.3e} of tolerance"
            );
        }
    }

    #[test]
    fn same_seed_same_output_for_any_thread_count() {
        let inst = Instrument::preset("mini").unwrap();
        let mut s = spec(Flavor::Science);
        s.noise = true;
        s.cosmics = true;
        let run = |n: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
                .install(|| simulate(&inst, &["b0".into(), "z0".into()], &s, &|_| None).unwrap())
        };
        let (a, b) = (run(1), run(3));
        for (x, y) in a.raw.cameras.iter().zip(&b.raw.cameras) {
            assert_eq!(x, y);
        }
        assert_eq!(a.truth.cameras, b.truth.cameras);
        // and a different seed changes the noise
        s.seed += 1;
        let c = simulate(&inst, &["b0".into()], &s, &|_| None).unwrap();
        assert_ne!(a.raw.cameras[0].image, c.raw.cameras[0].image);
    }
}
