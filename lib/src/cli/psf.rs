//! `spx-psf`: PSF fitting from arcs and flats, per-exposure trace shifts, nightly average
//! (reference/extraction.md §2–3).
//!
//! Modes:
//! * `spx-psf --arc ARC [--flat FLAT] [--input-psf PSF] -o PSF`: traces x(λ) from the flat
//!   (or from the arc lines without one), the wavelength solution y(λ) and GHSIGX/GHSIGY per
//!   bundle from the arc.
//! * `spx-psf --traces-only --flat FLAT [--input-psf PSF] -o PSF`: x(λ) only, λ(y) and the
//!   shape from the input PSF.
//! * `spx-psf --shift -i PREPROC --input-psf PSF -o PSF`: trace shifts of one exposure.
//! * `spx-psf --average PSF... -o PSFNIGHT`: nightly average, bundle by bundle.
//!
//! The starting PSF is `--input-psf`, else the instrument's nominal PSF of the camera; the
//! nominal PSF and the arc line list come from the instrument:
//! `--instrument` (a preset name or a YAML file), else the INSTRUME keyword of the image
//! header when it names a preset; the camera from `--camera`, else the CAMERA keyword.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::CommonOpts;
use crate::comm::Comm;
use crate::instrument::Instrument;
use crate::io::fits::Provenance;
use crate::io::header::HeaderValue;
use crate::io::preproc::PreprocImage;
use crate::psf::GaussHermitePsf;
use crate::psffit::lines::{arc_reflines, sky_reflines, RefLine};
use crate::psffit::shift::ShiftOptions;
use crate::psffit::{fit_psf_on, PsfFitOptions};

/// Fit a PSF (traces, wavelength solution, widths; pixels, Angstrom) from arc and flat
/// exposures, shift a PSF to one exposure, or average a night's PSFs. STATUS per fiber: 0 fit,
/// -1 not fit, 1 width fit failed, 2 too few arc spots, 3 traces interpolated from neighbours.
#[derive(clap::Parser, Serialize, Deserialize, Debug, Clone)]
#[command(version)]
pub struct PsfOpts {
    /// Preprocessed arc exposure (preproc-CAM-EXPID.fits), electrons
    #[arg(long, value_name = "PREPROC_ARC")]
    #[serde(default)]
    pub arc: Option<PathBuf>,
    /// Preprocessed continuum (flat) exposure for the x traces, electrons
    #[arg(long, value_name = "PREPROC_FLAT")]
    #[serde(default)]
    pub flat: Option<PathBuf>,
    /// Starting PSF (default: the instrument's nominal PSF of the camera)
    #[arg(long, value_name = "PSF")]
    #[serde(default)]
    pub input_psf: Option<PathBuf>,
    /// Output PSF file
    #[arg(short, long, value_name = "PSF_OUT")]
    pub outfile: PathBuf,
    /// Only fit the x traces from --flat
    #[arg(long, requires = "flat", conflicts_with_all = ["arc", "shift", "average"])]
    #[serde(default)]
    pub traces_only: bool,
    /// Measure the trace shifts of the exposure -i against --input-psf
    #[arg(long, requires_all = ["infile", "input_psf"], conflicts_with_all = ["arc", "flat", "average"])]
    #[serde(default)]
    pub shift: bool,
    /// Exposure for --shift (preproc), electrons
    #[arg(short, long, value_name = "PREPROC")]
    #[serde(default)]
    pub infile: Option<PathBuf>,
    /// Average these PSFs bundle by bundle (desispec mean_psf)
    #[arg(long, value_name = "PSF", num_args = 1.., conflicts_with_all = ["arc", "flat", "shift"])]
    #[serde(default)]
    pub average: Vec<PathBuf>,
    /// Instrument: preset name (desi, mini) or YAML file (default: image header INSTRUME)
    #[arg(long, value_name = "NAME|YAML")]
    #[serde(default)]
    pub instrument: Option<String>,
    /// Camera, e.g. r0 (default: image header CAMERA)
    #[arg(long)]
    #[serde(default)]
    pub camera: Option<String>,
    /// Lines for --shift y offsets: sky, arc or none (default: arc when OBSTYPE is ARC, else sky)
    #[arg(long, value_name = "sky|arc|none")]
    #[serde(default)]
    pub lines: Option<String>,
    /// Degrees of the --shift polynomials: dx in x, dx in y, dy in x, dy in y
    #[arg(long, value_name = "XX,XY,YX,YY", value_delimiter = ',', default_values_t = [2, 0, 2, 0])]
    #[serde(default = "default_degrees")]
    pub degrees: Vec<usize>,
    /// Keep the input GHSIGX/GHSIGY and GH terms (fit traces and wavelength solution only)
    #[arg(long)]
    #[serde(default)]
    pub no_width_fit: bool,
    /// Keep the input GH-1-1, GH-4-0, GH-0-4 (fit the widths only)
    #[arg(long)]
    #[serde(default)]
    pub no_gh_fit: bool,
    /// Fibers per bundle (default: the instrument's, else 25)
    #[arg(long)]
    #[serde(default)]
    pub bundle_size: Option<usize>,
    #[command(flatten)]
    #[serde(default)]
    pub common: CommonOpts,
}

fn default_degrees() -> Vec<usize> {
    vec![2, 0, 2, 0]
}

fn base(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The instrument from `--instrument` or the header's INSTRUME, if any.
fn instrument(opts: &PsfOpts, img: Option<&PreprocImage>) -> anyhow::Result<Option<Instrument>> {
    if let Some(name) = &opts.instrument {
        let p = Path::new(name);
        let inst = if p.exists() {
            Instrument::from_yaml_file(p)?
        } else {
            Instrument::preset(name)?
        };
        return Ok(Some(inst));
    }
    let hdr = img.and_then(|i| i.header.get_str("INSTRUME"));
    Ok(hdr.and_then(|n| Instrument::preset(&n.trim().to_ascii_lowercase()).ok()))
}

fn camera_name(opts: &PsfOpts, img: Option<&PreprocImage>) -> Option<String> {
    opts.camera
        .clone()
        .or_else(|| img.and_then(|i| i.header.get_str("CAMERA")))
        .map(|c| c.trim().to_ascii_lowercase())
}

fn read_img(p: &Path) -> anyhow::Result<PreprocImage> {
    Ok(crate::io::preproc::read(p)?)
}

fn read_psf(p: &Path) -> anyhow::Result<GaussHermitePsf> {
    Ok(crate::io::psf::read(p)?)
}

/// Runs `spx-psf`.
/// Under MPI the arc fit spreads its bundle shape fits over the ranks of `comm` and rank 0
/// writes the PSF; `--average`, `--shift` and `--traces-only` run on rank 0 alone.
pub fn run(opts: &PsfOpts, comm: &dyn Comm) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    let fits_an_arc = opts.average.is_empty() && !opts.shift && opts.arc.is_some();
    if !fits_an_arc && comm.size() > 1 {
        return crate::cli::on_root(opts, comm, run);
    }
    if !opts.average.is_empty() {
        let psfs = opts
            .average
            .iter()
            .map(|p| read_psf(p))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let out = crate::psffit::average::mean_psf(&psfs).context("averaging PSFs")?;
        let inputs: Vec<&Path> = opts.average.iter().map(|p| p.as_path()).collect();
        crate::io::psf::write(
            &opts.outfile,
            &out,
            &Provenance::current("spx-psf", &inputs),
        )?;
        log::info!(
            "wrote {} from {} PSFs in {:.2} s",
            opts.outfile.display(),
            psfs.len(),
            t0.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    if opts.shift {
        return run_shift(opts, t0);
    }
    if opts.arc.is_none() && opts.flat.is_none() {
        bail!("nothing to do: give --arc (and --flat), --traces-only --flat, --shift -i, or --average");
    }
    let prepared = prepare(opts);
    // All ranks agree before the fit exchanges bundle results, so one rank's bad input cannot
    // hang the others.
    if !comm.all_ok(prepared.is_ok()) {
        return match prepared {
            Err(e) => Err(e),
            Ok(_) => bail!("another rank failed to read the input"),
        };
    }
    let Prepared {
        arc,
        flat,
        cam,
        input,
        fopts,
        lines,
    } = prepared?;
    let img0 = arc.as_ref().or(flat.as_ref());
    let (mut psf, report) = fit_psf_on(arc.as_ref(), flat.as_ref(), &input, &lines, &fopts, comm)
        .with_context(|| match (&opts.arc, &opts.flat) {
        (Some(a), _) => a.display().to_string(),
        (None, Some(f)) => f.display().to_string(),
        _ => String::new(),
    })?;
    if !comm.is_root() {
        return Ok(());
    }
    let mut inputs: Vec<&Path> = Vec::new();
    for p in [&opts.arc, &opts.flat, &opts.input_psf]
        .into_iter()
        .flatten()
    {
        inputs.push(p.as_path());
    }
    if let Some(p) = &opts.input_psf {
        psf.extra_keys.set("IN_PSF", HeaderValue::Str(base(p)));
    }
    if let Some(p) = &opts.arc {
        psf.extra_keys.set("IN_IMAGE", HeaderValue::Str(base(p)));
    }
    if let Some(p) = &opts.flat {
        psf.extra_keys.set("IN_FLAT", HeaderValue::Str(base(p)));
    }
    if let Some(c) = &cam {
        psf.extra_keys.set("CAMERA", HeaderValue::Str(c.clone()));
    }
    if let Some(e) = img0.and_then(|i| i.header.get_i64("EXPID")) {
        psf.extra_keys.set("ARCEXP", HeaderValue::Int(e));
    }
    crate::io::psf::write(
        &opts.outfile,
        &psf,
        &Provenance::current("spx-psf", &inputs),
    )?;
    let bad = report.bundles.iter().filter(|b| b.status > 0.0).count();
    log::info!(
        "wrote {} ({} line groups, {} of {} bundles failed and kept the input) in {:.2} s",
        opts.outfile.display(),
        report.nlines,
        bad,
        report.bundles.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What the arc fit reads and derives before fitting.
struct Prepared {
    arc: Option<PreprocImage>,
    flat: Option<PreprocImage>,
    cam: Option<String>,
    input: GaussHermitePsf,
    fopts: PsfFitOptions,
    lines: Vec<RefLine>,
}

/// Reads the arc/flat and the input PSF, and picks the options and the arc line list.
fn prepare(opts: &PsfOpts) -> anyhow::Result<Prepared> {
    let arc = opts.arc.as_deref().map(read_img).transpose()?;
    let flat = if opts.traces_only || opts.flat.is_some() {
        opts.flat.as_deref().map(read_img).transpose()?
    } else {
        None
    };
    let img0 = arc.as_ref().or(flat.as_ref());
    let inst = instrument(opts, img0)?;
    let cam = camera_name(opts, img0);
    let input = match &opts.input_psf {
        Some(p) => read_psf(p)?,
        None => nominal_psf(inst.as_ref(), cam.as_deref())?,
    };
    let mut fopts = PsfFitOptions {
        fit_widths: !opts.no_width_fit,
        fit_gh: !opts.no_width_fit && !opts.no_gh_fit,
        ..Default::default()
    };
    fopts.bundle_size = opts
        .bundle_size
        .or(inst.as_ref().map(|i| i.bundle_size))
        .unwrap_or(25);
    let lines: Vec<RefLine> = if arc.is_some() {
        let inst = inst.as_ref().context(
            "the arc line list comes from the instrument: give --instrument (or an INSTRUME header key naming a preset)",
        )?;
        let (w0, w1) = input.wrange_any();
        let l = arc_reflines(inst, w0, w1);
        if l.is_empty() {
            bail!(
                "instrument {} has no arc lines in {w0:.1}–{w1:.1} Å",
                inst.name
            );
        }
        l
    } else {
        vec![]
    };
    Ok(Prepared {
        arc,
        flat,
        cam,
        input,
        fopts,
        lines,
    })
}

fn run_shift(opts: &PsfOpts, t0: std::time::Instant) -> anyhow::Result<()> {
    let (Some(inp), Some(psfp)) = (&opts.infile, &opts.input_psf) else {
        bail!("--shift needs -i PREPROC and --input-psf PSF");
    };
    let img = read_img(inp)?;
    let psf = read_psf(psfp)?;
    let obstype = img
        .header
        .get_str("OBSTYPE")
        .map(|s| s.trim().to_ascii_uppercase())
        .unwrap_or_default();
    let (w0, w1) = psf.wrange_any();
    let which = opts.lines.clone().unwrap_or_else(|| {
        if obstype == "ARC" {
            "arc".into()
        } else {
            "sky".into()
        }
    });
    let lines = match which.as_str() {
        "sky" => sky_reflines(w0, w1),
        "none" => vec![],
        "arc" => {
            let inst = instrument(opts, Some(&img))?.context(
                "--lines arc needs --instrument (or an INSTRUME header key naming a preset)",
            )?;
            arc_reflines(&inst, w0, w1)
        }
        other => bail!("--lines must be sky, arc or none (got '{other}')"),
    };
    // Arcs have no continuum; flats no lines (desi_proc: --continuum for flats).
    if opts.degrees.len() != 4 {
        bail!(
            "--degrees needs 4 values XX,XY,YX,YY (got {:?})",
            opts.degrees
        );
    }
    let deg = |i: usize| opts.degrees[i];
    let sopts = ShiftOptions {
        degxx: deg(0),
        degxy: deg(1),
        degyx: deg(2),
        degyy: deg(3),
        continuum: obstype != "ARC",
        ..Default::default()
    };
    let (mut out, rep) = crate::psffit::shift::trace_shifts(&img, &psf, &lines, &sopts)
        .with_context(|| format!("{} with {}", inp.display(), psfp.display()))?;
    out.extra_keys.set("IN_PSF", HeaderValue::Str(base(psfp)));
    out.extra_keys.set("IN_IMAGE", HeaderValue::Str(base(inp)));
    crate::io::psf::write(
        &opts.outfile,
        &out,
        &Provenance::current("spx-psf", &[inp.as_path(), psfp.as_path()]),
    )?;
    log::info!(
        "wrote {}: dx mean {:+.3} [{:+.3}, {:+.3}] px, dy mean {:+.3} [{:+.3}, {:+.3}] px in {:.2} s",
        opts.outfile.display(),
        rep.dx_stats[0],
        rep.dx_stats[1],
        rep.dx_stats[2],
        rep.dy_stats[0],
        rep.dy_stats[1],
        rep.dy_stats[2],
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The instrument's nominal PSF for the camera (the design PSF the simulator perturbs).
fn nominal_psf(inst: Option<&Instrument>, cam: Option<&str>) -> anyhow::Result<GaussHermitePsf> {
    let inst = inst.context(
        "no --input-psf: the nominal PSF needs --instrument (or INSTRUME in the header)",
    )?;
    let cam =
        cam.context("no --input-psf: the nominal PSF needs --camera (or CAMERA in the header)")?;
    let (c, sp) = inst.camera(cam)?;
    log::info!("starting from the nominal PSF of {} {cam}", inst.name);
    Ok(crate::sim::psfmodel::nominal_psf(inst, c, sp)?)
}
