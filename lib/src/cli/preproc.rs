//! `spx-preproc`: raw CCD exposure → preprocessed image (desispec `desi_preproc`;
//! reference/calibration.md §1), and `--combine zero|dark` for the nightly bias and dark
//! (desispec ccdcalib `compute_bias_file` / `compute_dark_file`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::CommonOpts;
use crate::comm::Comm;
use crate::io::fibermap::Fibermap;
use crate::io::fits::{FitsReader, Provenance};
use crate::io::header::Header;
use crate::io::raw::{RawCamera, RawExposure};
use crate::preproc::combine::{combine_bias, combine_dark, subtract_peramp_overscan, DarkFrame};
use crate::preproc::cosmics::CosmicParams;
use crate::preproc::{calib, preprocess, CalibImages, Dark, PreprocOptions};

/// What `--combine` makes.
#[derive(clap::ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CombineKind {
    /// Master bias (ADU, raw shape) from raw ZERO exposures
    Zero,
    /// Dark current (electrons/s, image shape) from raw or preprocessed DARK exposures
    Dark,
}

/// Raw exposure → preproc image (IMAGE e⁻, IVAR e⁻², MASK ccdmask, READNOISE e⁻), desispec's
/// steps and order; --combine zero|dark makes the nightly bias (ADU) or dark (e⁻/s).
#[derive(clap::Parser, Serialize, Deserialize, Debug, Clone)]
#[command(version)]
pub struct PreprocOpts {
    /// Raw exposure (desi-EXPID.fits[.fz]); with --combine: the exposures to combine
    #[arg(short, long = "input", value_name = "FILE", num_args = 1.., required = true)]
    pub input: Vec<PathBuf>,
    /// Camera to process, e.g. b0 (needed for raw inputs)
    #[arg(long, value_name = "CAM")]
    #[serde(default)]
    pub camera: Option<String>,
    /// Output preproc file (preproc-CAM-EXPID.fits), or the bias/dark with --combine
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Master bias (ADU, raw shape), subtracted before the overscan
    #[arg(long, value_name = "FILE")]
    #[serde(default)]
    pub bias: Option<PathBuf>,
    /// Dark current (electrons/s, image shape; or ADU/s in the raw shape), scaled by EXPTIME
    #[arg(long, value_name = "FILE")]
    #[serde(default)]
    pub dark: Option<PathBuf>,
    /// Pixel flat (image shape, dimensionless)
    #[arg(long, value_name = "FILE")]
    #[serde(default)]
    pub pixflat: Option<PathBuf>,
    /// Bad-pixel mask (ccdmask bits, image shape), OR-ed into MASK
    #[arg(long, value_name = "FILE")]
    #[serde(default)]
    pub mask: Option<PathBuf>,
    /// Do not mask cosmic rays
    #[arg(long)]
    #[serde(default)]
    pub no_cosmics: bool,
    /// Cosmic rays: desispec 0.70's exact algorithm (no 2×2-binned search, no column-residual search, no spx growth rule)
    #[arg(long)]
    #[serde(default)]
    pub cosmics_desispec: bool,
    /// Amplifiers to flag BADAMP, e.g. "AC"
    #[arg(long, value_name = "AMPS")]
    #[serde(default)]
    pub badamps: Option<String>,
    /// Combine exposures: zero = raw ZEROs → bias; dark = raw (with --bias) or preproc DARKs
    #[arg(long, value_enum, value_name = "KIND")]
    #[serde(default)]
    pub combine: Option<CombineKind>,
    #[command(flatten)]
    #[serde(default)]
    pub common: CommonOpts,
}

/// Runs `spx-preproc`.
pub fn run(opts: &PreprocOpts, _comm: &dyn Comm) -> anyhow::Result<()> {
    match opts.combine {
        None => run_single(opts),
        Some(CombineKind::Zero) => run_combine_zero(opts),
        Some(CombineKind::Dark) => run_combine_dark(opts),
    }
}

fn cosmic_params(opts: &PreprocOpts) -> Option<CosmicParams> {
    (!opts.no_cosmics).then_some(CosmicParams {
        ignore_found: !opts.cosmics_desispec,
        binned: !opts.cosmics_desispec,
        residual: !opts.cosmics_desispec,
        ..CosmicParams::default()
    })
}

/// Reads `camera` from the raw file `path`: the camera and the exposure keywords.
/// Also returns the FIBERMAP rows of the camera's spectrograph, when the raw file has one.
fn read_raw_camera(
    path: &Path,
    camera: &str,
) -> anyhow::Result<(RawCamera, Header, f64, Option<Fibermap>)> {
    let exp = RawExposure::read(path)?;
    let Some(cam) = exp.camera(camera) else {
        let have: Vec<String> = exp.cameras.iter().map(|c| c.camera.clone()).collect();
        bail!(
            "{}: no camera HDU {} (the file has {})",
            path.display(),
            camera.to_ascii_uppercase(),
            if have.is_empty() {
                "none".to_string()
            } else {
                have.join(", ")
            }
        );
    };
    let mut primary = exp.primary.clone();
    primary.set("NIGHT", exp.night.into());
    primary.set("EXPID", exp.expid.into());
    primary.set("FLAVOR", exp.flavor.as_str().into());
    primary.set("EXPTIME", exp.exptime.into());
    let spectrograph = camera[1..].parse::<i32>().unwrap_or(0);
    let fibermap = exp.fibermap.as_ref().map(|fm| {
        let rows: Vec<usize> = fm
            .fibers()
            .iter()
            .enumerate()
            .filter(|(_, &f)| f / 500 == spectrograph)
            .map(|(i, _)| i)
            .collect();
        fm.select(&rows)
    });
    Ok((cam.clone(), primary, exp.exptime, fibermap))
}

fn require_camera(opts: &PreprocOpts) -> anyhow::Result<String> {
    let cam = opts
        .camera
        .as_deref()
        .context("--camera is required for raw inputs (e.g. --camera b0)")?
        .trim()
        .to_ascii_lowercase();
    let ok = cam.len() == 2
        && matches!(cam.as_bytes()[0], b'b' | b'r' | b'z')
        && cam.as_bytes()[1].is_ascii_digit();
    if !ok {
        bail!("--camera {cam}: not a camera name (b0…z9)");
    }
    Ok(cam)
}

/// Loads the calibration images named in `opts` for `cam`.
fn load_calib(
    opts: &PreprocOpts,
    cam: &RawCamera,
) -> anyhow::Result<(CalibImages, Vec<(String, String)>)> {
    let mut c = CalibImages::default();
    let mut names = Vec::new();
    let fname = |p: &Path| {
        p.file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default()
    };
    if let Some(p) = &opts.bias {
        c.bias = Some(calib::read_image(p, &["BIAS"])?.0);
        names.push(("CCD_CALIB_BIAS".to_string(), fname(p)));
    }
    if let Some(p) = &opts.dark {
        let d = calib::read_image(p, &["DARK"])?.0;
        c.dark = Some(if d.dim() == cam.image.dim() {
            Dark::Untrimmed(d)
        } else {
            Dark::Trimmed(d)
        });
        names.push(("CCD_CALIB_DARK".to_string(), fname(p)));
    }
    if let Some(p) = &opts.pixflat {
        c.pixflat = Some(calib::read_image(p, &["PIXFLAT"])?.0);
        names.push(("CCD_CALIB_PIXFLAT".to_string(), fname(p)));
    }
    if let Some(p) = &opts.mask {
        c.mask = Some(calib::read_mask(p)?);
        names.push(("CCD_CALIB_MASK".to_string(), fname(p)));
    }
    Ok((c, names))
}

/// Names the calibration file behind a shape error.
fn calib_context(
    opts: &PreprocOpts,
    e: crate::preproc::PreprocError,
    input: &Path,
) -> anyhow::Error {
    use crate::preproc::PreprocError::Shape;
    let file = match &e {
        Shape { what: "bias", .. } => opts.bias.as_deref(),
        Shape { what: "dark", .. } => opts.dark.as_deref(),
        Shape {
            what: "pixflat", ..
        } => opts.pixflat.as_deref(),
        Shape { what: "mask", .. } => opts.mask.as_deref(),
        _ => None,
    };
    anyhow::anyhow!("{}: {e}", file.unwrap_or(input).display())
}

fn preprocess_file(
    opts: &PreprocOpts,
    path: &Path,
    camera: &str,
    calib_opts: &PreprocOpts,
) -> anyhow::Result<crate::io::preproc::PreprocImage> {
    let (cam, primary, exptime, fibermap) = read_raw_camera(path, camera)?;
    let (calib, calib_names) = load_calib(calib_opts, &cam)?;
    let popts = PreprocOptions {
        cosmics: cosmic_params(opts),
        badamps: opts
            .badamps
            .as_deref()
            .unwrap_or("")
            .trim()
            .to_ascii_uppercase(),
        exptime,
        calib_names,
    };
    let (mut img, _) = preprocess(&cam, &primary, &calib, &popts)
        .map_err(|e| calib_context(calib_opts, e, path))?;
    img.fibermap = fibermap;
    Ok(img)
}

fn run_single(opts: &PreprocOpts) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    if opts.input.len() != 1 {
        bail!(
            "give one raw exposure with -i (got {}); several inputs need --combine",
            opts.input.len()
        );
    }
    let camera = require_camera(opts)?;
    let input = &opts.input[0];
    let img = preprocess_file(opts, input, &camera, opts)?;
    let mut inputs: Vec<&Path> = vec![input.as_path()];
    for p in [&opts.bias, &opts.dark, &opts.pixflat, &opts.mask]
        .into_iter()
        .flatten()
    {
        inputs.push(p.as_path());
    }
    crate::io::preproc::write(
        &opts.output,
        &img,
        &Provenance::current("spx-preproc", &inputs),
    )?;
    log::info!(
        "wrote {} ({}x{}) in {:.2} s",
        opts.output.display(),
        img.shape().1,
        img.shape().0,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Keywords copied from the first input into a combined bias/dark (desispec ccdcalib's list,
/// restricted to those an spx raw file can carry).
fn combined_header(h: &Header, cam: &str) -> Header {
    let mut out = Header::default();
    out.set("CAMERA", cam.into());
    for (k, v) in h.cards() {
        let keep = [
            "TELESCOP", "INSTRUME", "SPECGRPH", "SPECID", "DETECTOR", "CCDNAME", "CCDTEMP",
            "CCDTYPE", "NIGHT",
        ]
        .contains(&k.as_str())
            || ["PRESEC", "DATASEC", "BIASSEC", "ORSEC", "CCDSEC", "GAIN"]
                .iter()
                .any(|p| {
                    k.strip_prefix(p)
                        .is_some_and(|s| s.len() == 1 && "ABCD1234".contains(s))
                });
        if keep {
            out.set(k, v.clone());
        }
    }
    out
}

fn is_preproc_file(path: &Path) -> anyhow::Result<bool> {
    let mut r = FitsReader::open(path)?;
    Ok(r.hdu_names()?.iter().any(|n| n == "IMAGE"))
}

fn run_combine_zero(opts: &PreprocOpts) -> anyhow::Result<()> {
    let camera = require_camera(opts)?;
    let mut frames = Vec::new();
    let mut header = None;
    for p in &opts.input {
        if is_preproc_file(p)? {
            bail!(
                "{}: a preprocessed image cannot make a bias (the bias must keep the raw \
                 shape and ADU, overscan included): give the raw ZERO exposures",
                p.display()
            );
        }
        let (cam, _, _, _) = read_raw_camera(p, &camera)?;
        if let Some(f) = cam.header.get_str("FLAVOR") {
            if !f.trim().eq_ignore_ascii_case("zero") {
                log::warn!("{}: FLAVOR {f} is not ZERO", p.display());
            }
        }
        if let Some(first) = frames.first() {
            let first: &ndarray::Array2<f32> = first;
            if first.dim() != cam.image.dim() {
                bail!(
                    "{}: raw shape {:?} differs from the first input's {:?}",
                    p.display(),
                    cam.image.dim(),
                    first.dim()
                );
            }
        }
        frames.push(subtract_peramp_overscan(&cam));
        if header.is_none() {
            let mut h = cam.header.clone();
            for a in &cam.amps {
                for (k, s) in [
                    ("DATASEC", Some(a.datasec)),
                    ("CCDSEC", Some(a.ccdsec)),
                    ("BIASSEC", Some(a.biassec)),
                    ("ORSEC", a.orsec),
                    ("PRESEC", a.presec),
                ] {
                    if let Some(s) = s {
                        h.set(&format!("{k}{}", a.name), s.to_iraf().into());
                    }
                }
            }
            header = Some(combined_header(&h, &camera));
        }
    }
    let bias = combine_bias(&frames);
    let mut h = header.unwrap_or_default();
    h.set("NCOMBINE", (frames.len() as i64).into());
    let inputs: Vec<&Path> = opts.input.iter().map(|p| p.as_path()).collect();
    calib::write_image(
        &opts.output,
        "BIAS",
        "adu",
        &bias,
        &h,
        &Provenance::current("spx-preproc", &inputs),
    )?;
    log::info!(
        "wrote bias {} from {} zeros",
        opts.output.display(),
        frames.len()
    );
    Ok(())
}

fn run_combine_dark(opts: &PreprocOpts) -> anyhow::Result<()> {
    let mut frames: Vec<DarkFrame> = Vec::new();
    let mut header = None;
    // calibration for raw inputs: only the bias (desispec compute_dark_file: no dark,
    // pixflat or mask)
    let calib_opts = PreprocOpts {
        dark: None,
        pixflat: None,
        mask: None,
        ..opts.clone()
    };
    for p in &opts.input {
        let img = if is_preproc_file(p)? {
            crate::io::preproc::read(p)?
        } else {
            let camera = require_camera(opts)?;
            preprocess_file(opts, p, &camera, &calib_opts)?
        };
        let exptime = img
            .header
            .get_f64("EXPTIME")
            .filter(|t| *t > 0.0)
            .with_context(|| {
                format!(
                    "{}: EXPTIME missing or not positive: not a dark",
                    p.display()
                )
            })?;
        if let Some(f) = img.header.get_str("FLAVOR") {
            if !f.trim().eq_ignore_ascii_case("dark") {
                log::warn!("{}: FLAVOR {f} is not DARK", p.display());
            }
        }
        let cam = img
            .header
            .get_str("CAMERA")
            .unwrap_or_default()
            .to_ascii_lowercase();
        if let Some(want) = &opts.camera {
            if !cam.is_empty() && !cam.eq_ignore_ascii_case(want.trim()) {
                bail!("{}: camera {cam} is not --camera {want}", p.display());
            }
        }
        if let Some(f) = frames.first() {
            if f.image.dim() != img.image.dim() {
                bail!(
                    "{}: image shape {:?} differs from the first input's {:?}",
                    p.display(),
                    img.image.dim(),
                    f.image.dim()
                );
            }
        }
        if header.is_none() {
            let mut h = combined_header(&img.header, &cam);
            h.remove("NIGHT");
            header = Some(h);
        }
        frames.push(DarkFrame {
            image: img.image,
            mask: img.mask,
            exptime,
        });
    }
    let dark = combine_dark(&frames);
    let mut h = header.unwrap_or_default();
    for (i, p) in opts.input.iter().enumerate() {
        let name = p
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        h.set(&format!("INPUT{i:03}"), name.into());
    }
    let inputs: Vec<&Path> = opts.input.iter().map(|p| p.as_path()).collect();
    calib::write_image(
        &opts.output,
        "DARK",
        "electron/s",
        &dark,
        &h,
        &Provenance::current("spx-preproc", &inputs),
    )?;
    log::info!(
        "wrote dark {} from {} exposures",
        opts.output.display(),
        frames.len()
    );
    Ok(())
}
