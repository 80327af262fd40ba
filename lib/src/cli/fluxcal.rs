//! `spx-fluxcal`: the flux calibration of one camera from the standard-star models
//! (desispec `desi_compute_fluxcalibration`), and the cframe (`desi_process_exposure`'s
//! calibration step); reference/calibration.md §4.2–4.3.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::CommonOpts;
use crate::comm::Comm;
use crate::fluxcal::{apply_calibration, compute_calibration, FluxCalOptions};
use crate::io::fiberflat::FiberFlat;
use crate::io::fits::Provenance;
use crate::io::fluxcalib::FluxCalib;
use crate::io::frame::Frame;
use crate::io::sky::SkyModel;
use crate::io::stdstars::StdStarModels;

/// Compute a flux calibration (FLUXCALIB, electrons/Å per 1e-17 erg/s/cm²/Å) from standard
/// stars, and/or write the calibrated frame (cframe, 1e-17 erg/s/cm²/Å).
///
/// The frame is flat-fielded and sky-subtracted first. With --apply an existing FLUXCALIB
/// (--calib) is applied instead of computing one.
#[derive(clap::Parser, Serialize, Deserialize, Debug, Clone)]
#[command(version)]
pub struct FluxCalOpts {
    /// Input frame (frame-CAM-EXPID.fits), electrons/Angstrom
    #[arg(short, long, value_name = "FRAME")]
    pub infile: PathBuf,
    /// Fiber flat of this camera
    #[arg(long, value_name = "FIBERFLAT")]
    pub fiberflat: PathBuf,
    /// Sky model of this frame
    #[arg(long, value_name = "SKY")]
    pub sky: PathBuf,
    /// Standard-star models (stdstars-SP-EXPID.fits); needed unless --apply
    #[arg(long, value_name = "STDSTARS")]
    #[serde(default)]
    pub stdstars: Option<PathBuf>,
    /// Output calibration (fluxcalib-CAM-EXPID.fits); needed unless --apply
    #[arg(short, long, value_name = "FLUXCALIB")]
    #[serde(default)]
    pub outfile: Option<PathBuf>,
    /// Also write (or, with --apply, only write) the calibrated frame
    #[arg(long, value_name = "CFRAME")]
    #[serde(default)]
    pub cframe: Option<PathBuf>,
    /// Apply an existing calibration (--calib) instead of computing one
    #[arg(long)]
    #[serde(default)]
    pub apply: bool,
    /// Existing calibration for --apply
    #[arg(long, value_name = "FLUXCALIB")]
    #[serde(default)]
    pub calib: Option<PathBuf>,
    /// Outlier rejection threshold, sigma (on residuals with 20% flux error added)
    #[arg(long, default_value_t = 10.0)]
    #[serde(default = "default_nsig")]
    pub nsig_clipping: f64,
    #[command(flatten)]
    #[serde(default)]
    pub common: CommonOpts,
}

fn default_nsig() -> f64 {
    10.0
}

/// Reads a frame, applies its fiber flat and subtracts its sky (errors name the files).
pub fn prepare_frame(frame: &Path, fiberflat: &Path, sky: &Path) -> anyhow::Result<Frame> {
    let mut f = Frame::read(frame)?;
    let ff = FiberFlat::read(fiberflat)?;
    let sk = SkyModel::read(sky)?;
    crate::fiberflat::apply_fiberflat(&mut f, &ff)
        .with_context(|| format!("{} with {}", frame.display(), fiberflat.display()))?;
    crate::sky::subtract_sky(&mut f, &sk, false)
        .with_context(|| format!("{} with {}", frame.display(), sky.display()))?;
    Ok(f)
}

/// Runs `spx-fluxcal`.
pub fn run(opts: &FluxCalOpts, _comm: &dyn Comm) -> anyhow::Result<()> {
    let mut inputs = vec![
        opts.infile.as_path(),
        opts.fiberflat.as_path(),
        opts.sky.as_path(),
    ];
    let calib = if opts.apply {
        let Some(c) = &opts.calib else {
            bail!("--apply needs --calib FLUXCALIB");
        };
        if opts.cframe.is_none() {
            bail!("--apply needs --cframe CFRAME");
        }
        inputs.push(c);
        None
    } else {
        let (Some(s), Some(_)) = (&opts.stdstars, &opts.outfile) else {
            bail!("computing a calibration needs --stdstars STDSTARS and -o FLUXCALIB (or use --apply)");
        };
        inputs.push(s);
        Some(s)
    };
    let mut frame = prepare_frame(&opts.infile, &opts.fiberflat, &opts.sky)?;
    let fc = match calib {
        Some(stdpath) => {
            let models = StdStarModels::read(stdpath)?;
            let fopts = FluxCalOptions {
                nsig_clipping: opts.nsig_clipping,
                ..Default::default()
            };
            compute_calibration(&frame, &models, &fopts).with_context(|| {
                format!(
                    "night {} expid {} camera {} ({} with {}; nothing written)",
                    frame.header.get_i64("NIGHT").unwrap_or(0),
                    frame.expid().unwrap_or(0),
                    frame.camera().unwrap_or_default(),
                    opts.infile.display(),
                    stdpath.display()
                )
            })?
        }
        None => FluxCalib::read(opts.calib.as_deref().unwrap_or(Path::new("")))?,
    };
    let prov = Provenance::current("spx-fluxcal", &inputs);
    // everything is computed before anything is written
    let cframe = match &opts.cframe {
        Some(_) => {
            apply_calibration(&mut frame, &fc)
                .with_context(|| opts.infile.display().to_string())?;
            Some(frame)
        }
        None => None,
    };
    if let (false, Some(out)) = (opts.apply, &opts.outfile) {
        fc.write(out, &prov)?;
        log::info!("wrote {}", out.display());
    }
    if let (Some(cf), Some(p)) = (cframe, &opts.cframe) {
        cf.write(p, &prov)?;
        log::info!("wrote {}", p.display());
    }
    Ok(())
}
