//! `spx-sim`: simulated raw exposures with known truth, and nominal PSFs.
//!
//! ```text
//! spx-sim zero|dark|arc|flat|science --preset mini|desi (or --instrument FILE)
//!         [--cameras b0,r0,z0] [--nspec N] --night N --expid N --seed S [--exptime T]
//!         [--targets FILE] [--cosmics] -o RAW --truth TRUTH [--truth-psf PSF] [--psf PSF]
//! spx-sim nominal-psf --preset P --camera C -o PSF
//! ```
//! With several cameras, PSF paths must contain `{camera}` (replaced by e.g. `b0`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::CommonOpts;
use crate::comm::Comm;
use crate::instrument::Instrument;
use crate::io::fits::Provenance;
use crate::sim::exposure::{simulate, ExposureSpec, Flavor};
use crate::sim::psfmodel::nominal_psf;
use crate::speclib::targets::TargetSpec;

/// What `spx-sim` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SimKind {
    // Bias frame: no light, no dark current (EXPTIME 0).
    Zero,
    // Dark frame: dark current (and cosmics with --cosmics), shutter closed.
    Dark,
    // Arc lamps (Hg, Ar, Cd, Ne, Kr, Xe) through every fiber.
    Arc,
    // Continuum (quartz) lamp through every fiber.
    Flat,
    // Sky and targets (ELG, LRG, QSO, stars, standards, sky and dead fibers).
    Science,
    // Write the nominal PSF of the instrument's camera(s) (PSFVER 3).
    NominalPsf,
}

/// Simulate raw exposures with truth (electrons per bin and 1e-17 erg/s/cm2/A, before resolution)
#[derive(clap::Parser, Serialize, Deserialize, Debug, Clone)]
#[command(name = "spx-sim", version)]
pub struct SimOpts {
    /// What to make: zero, dark, arc, flat, science (exposures) or nominal-psf
    #[arg(value_enum, hide_possible_values = true)]
    pub kind: SimKind,
    /// Instrument preset: mini (small, tests) or desi (full size)
    #[arg(long, default_value = "mini", conflicts_with = "instrument")]
    pub preset: String,
    /// Instrument description YAML (instead of a preset)
    #[arg(long, value_name = "FILE")]
    pub instrument: Option<PathBuf>,
    /// Cameras, comma separated (b0,r0,z0 …)
    #[arg(
        long,
        alias = "camera",
        value_delimiter = ',',
        default_value = "b0,r0,z0"
    )]
    pub cameras: Vec<String>,
    /// Fibers per spectrograph to illuminate (default: all)
    #[arg(long)]
    pub nspec: Option<usize>,
    /// Night, YYYYMMDD (seeds the night's trace offsets and fiber throughputs)
    #[arg(long, default_value_t = 20260101)]
    pub night: i64,
    /// Exposure id
    #[arg(long, default_value_t = 1)]
    pub expid: i64,
    /// Seed of the noise, cosmic rays and flexure
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Exposure time, seconds (default: zero 0, dark 300, arc 5, flat 120, science 900)
    #[arg(long)]
    pub exptime: Option<f64>,
    /// Tile id; seeds the targets, so exposures of one tile see the same objects
    #[arg(long, default_value_t = 1000)]
    pub tileid: i64,
    /// YAML list of pinned targets, e.g. [{fiber: 3, kind: std, mag: 17.0}] (kinds elg lrg qso star std sky dead)
    #[arg(long, value_name = "FILE")]
    pub targets: Option<PathBuf>,
    /// Add cosmic rays
    #[arg(long)]
    pub cosmics: bool,
    /// Sky brightness relative to the dark-sky model
    #[arg(long, default_value_t = 1.0)]
    pub sky_level: f64,
    /// Project unresolved lines at their exact wavelengths and the smooth light as a fine comb,
    /// as arcs always do (default: the truth bins as spots at the extraction grid wavelengths,
    /// so the image is exactly true PSF × PHOT; lines between grid points then look a little
    /// wider)
    #[arg(long)]
    pub exact_lines: bool,
    /// Noiseless readout (expectation values; for tests)
    #[arg(long)]
    pub no_noise: bool,
    /// Leave the noiseless and cosmic-ray images out of the truth file (smaller files)
    #[arg(long)]
    pub no_truth_images: bool,
    /// Output raw file (nominal-psf: the PSF file)
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Output truth file (required for exposures)
    #[arg(long, value_name = "FILE")]
    pub truth: Option<PathBuf>,
    /// Also write the exact PSF used (PSFVER 3); `{camera}` in the path is replaced
    #[arg(long, value_name = "FILE")]
    pub truth_psf: Option<PathBuf>,
    /// Use this PSF file (as is) instead of the perturbed nominal PSF; `{camera}` is replaced
    #[arg(long, value_name = "FILE")]
    pub psf: Option<PathBuf>,
    #[command(flatten)]
    #[serde(default)]
    pub common: CommonOpts,
}

/// `pattern` with `{camera}` replaced; with several cameras the placeholder is required.
fn per_camera(pattern: &Path, camera: &str, ncam: usize, what: &str) -> anyhow::Result<PathBuf> {
    let s = pattern.to_string_lossy();
    if s.contains("{camera}") {
        Ok(PathBuf::from(s.replace("{camera}", camera)))
    } else if ncam == 1 {
        Ok(pattern.to_path_buf())
    } else {
        bail!("{what} {s}: with several cameras the path must contain {{camera}}")
    }
}

/// Runs `spx-sim`.
pub fn run(opts: &SimOpts, _comm: &dyn Comm) -> anyhow::Result<()> {
    let inst = match &opts.instrument {
        Some(p) => Instrument::from_yaml_file(p)?,
        None => Instrument::preset(&opts.preset)?,
    };
    let cameras: Vec<String> = opts
        .cameras
        .iter()
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .collect();
    if cameras.is_empty() {
        bail!("no camera given");
    }
    for c in &cameras {
        inst.camera(c)?;
    }
    let prov = Provenance::current("spx-sim", &[]);
    let flavor = match opts.kind {
        SimKind::NominalPsf => {
            for c in &cameras {
                let (cam, sp) = inst.camera(c)?;
                let mut psf = nominal_psf(&inst, cam, sp).with_context(|| format!("camera {c}"))?;
                psf.extra_keys
                    .set("CAMERA", crate::io::header::HeaderValue::Str(c.clone()));
                let out = per_camera(&opts.output, c, cameras.len(), "output")?;
                crate::io::psf::write(&out, &psf, &prov)?;
                log::info!("wrote nominal PSF of {c} to {}", out.display());
            }
            return Ok(());
        }
        SimKind::Zero => Flavor::Zero,
        SimKind::Dark => Flavor::Dark,
        SimKind::Arc => Flavor::Arc,
        SimKind::Flat => Flavor::Flat,
        SimKind::Science => Flavor::Science,
    };
    let Some(truth_path) = &opts.truth else {
        bail!("--truth FILE is required for {flavor} exposures");
    };
    let targets: Vec<TargetSpec> = match &opts.targets {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("{}: cannot read", p.display()))?;
            serde_norway::from_str(&text)
                .with_context(|| format!("{}: invalid targets YAML", p.display()))?
        }
        None => Vec::new(),
    };
    if let Some(t) = targets.iter().find(|t| t.fiber >= inst.nspec) {
        bail!(
            "{}: fiber {} is beyond the {} fibers of a spectrograph",
            opts.targets.as_deref().unwrap_or(Path::new("")).display(),
            t.fiber,
            inst.nspec
        );
    }
    let exptime = opts.exptime.unwrap_or(flavor.default_exptime());
    let spec = ExposureSpec {
        flavor,
        night: opts.night,
        expid: opts.expid,
        seed: opts.seed,
        exptime: if flavor == Flavor::Zero { 0.0 } else { exptime },
        tileid: opts.tileid,
        nspec: opts.nspec.unwrap_or(inst.nspec),
        targets,
        cosmics: opts.cosmics,
        noise: !opts.no_noise,
        truth_images: !opts.no_truth_images,
        sky_level: opts.sky_level,
        exact_lines: opts.exact_lines,
    };
    // output paths and input PSFs checked before simulating, so a mistake fails early and
    // leaves no output behind
    let truth_psf_paths: Vec<PathBuf> = match &opts.truth_psf {
        Some(p) => cameras
            .iter()
            .map(|c| per_camera(p, c, cameras.len(), "--truth-psf"))
            .collect::<anyhow::Result<_>>()?,
        None => Vec::new(),
    };
    let mut given = Vec::new();
    if let Some(p) = &opts.psf {
        for c in &cameras {
            let path = per_camera(p, c, cameras.len(), "--psf")?;
            given.push((c.clone(), crate::io::psf::read(&path)?));
        }
    }
    let t0 = Instant::now();
    let sim = simulate(&inst, &cameras, &spec, &|c| {
        given.iter().find(|g| g.0 == c).map(|g| g.1.clone())
    })?;
    let secs = t0.elapsed().as_secs_f64();
    let nspots: usize = sim.spots.iter().sum();
    log::info!(
        "{flavor} exposure {} ({} cameras): {nspots} spots in {secs:.2} s ({:.2} µs/spot incl. noise and truth)",
        opts.expid,
        cameras.len(),
        1e6 * secs / nspots.max(1) as f64
    );
    sim.raw.write(&opts.output, &prov)?;
    sim.truth.write(truth_path, &prov)?;
    for ((c, psf), path) in sim.psfs.iter().zip(&truth_psf_paths) {
        let mut psf = psf.clone();
        psf.extra_keys
            .set("CAMERA", crate::io::header::HeaderValue::Str(c.clone()));
        crate::io::psf::write(path, &psf, &prov)?;
    }
    Ok(())
}
