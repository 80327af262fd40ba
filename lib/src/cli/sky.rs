//! `spx-sky`: the sky model of a frame from its sky fibers (desispec `desi_compute_sky` with
//! its defaults; reference/calibration.md §3).

use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::CommonOpts;
use crate::comm::Comm;
use crate::io::fiberflat::FiberFlat;
use crate::io::fits::Provenance;
use crate::io::frame::Frame;
use crate::io::header::HeaderValue;
use crate::sky::{compute_sky, SkyOptions};

/// Compute the sky model (flat-fielded electrons/Angstrom, per fiber) from a frame's sky fibers.
///
/// One deconvolved sky spectrum is fit to the sky fibers through each fiber's resolution
/// matrix, with iterative outlier rejection (pixels and whole fibers), then convolved back
/// with every fiber's resolution. IVAR includes the sky-line error inflation, STATIVAR is the
/// statistical part, THRPUTCORR the per-fiber sky-line throughput correction.
#[derive(clap::Parser, Serialize, Deserialize, Debug, Clone)]
#[command(version)]
pub struct SkyOpts {
    /// Input frame (frame-CAM-EXPID.fits), electrons/Angstrom
    #[arg(short, long, value_name = "FRAME")]
    pub infile: PathBuf,
    /// Fiber flat applied to the frame first (without it the frame is taken as flat-fielded)
    #[arg(long, value_name = "FIBERFLAT")]
    #[serde(default)]
    pub fiberflat: Option<PathBuf>,
    /// Output sky file (sky-CAM-EXPID.fits)
    #[arg(short, long, value_name = "SKY")]
    pub outfile: PathBuf,
    /// Outlier rejection threshold, sigma
    #[arg(long, default_value_t = 4.0)]
    #[serde(default = "default_nsig")]
    pub nsig_clipping: f64,
    /// Maximum number of rejection iterations
    #[arg(long, default_value_t = 100)]
    #[serde(default = "default_max_iter")]
    pub max_iterations: usize,
    /// Minimum number of rejection iterations
    #[arg(long, default_value_t = 5)]
    #[serde(default = "default_min_iter")]
    pub min_iterations: usize,
    /// Do not inflate the sky variance around sky lines
    #[arg(long)]
    #[serde(default)]
    pub no_extra_variance: bool,
    /// Write SKY, IVAR and STATIVAR in float64 instead of desispec's float32
    #[arg(long)]
    #[serde(default)]
    pub f64: bool,
    #[command(flatten)]
    #[serde(default)]
    pub common: CommonOpts,
}

fn default_nsig() -> f64 {
    4.0
}
fn default_max_iter() -> usize {
    100
}
fn default_min_iter() -> usize {
    5
}

/// Runs `spx-sky`.
pub fn run(opts: &SkyOpts, _comm: &dyn Comm) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    let mut frame = Frame::read(&opts.infile)?;
    let mut inputs = vec![opts.infile.as_path()];
    if let Some(ffp) = &opts.fiberflat {
        let ff = FiberFlat::read(ffp)?;
        crate::fiberflat::apply_fiberflat(&mut frame, &ff)
            .with_context(|| format!("{} with {}", opts.infile.display(), ffp.display()))?;
        inputs.push(ffp.as_path());
    }
    let mut sopts = SkyOptions::default();
    sopts.linear.nsig_clipping = opts.nsig_clipping;
    sopts.linear.max_iterations = opts.max_iterations;
    sopts.linear.min_iterations = opts.min_iterations;
    sopts.add_variance = !opts.no_extra_variance;
    let t_read = t0.elapsed().as_secs_f64();
    let mut sky = compute_sky(&frame, &sopts).with_context(|| opts.infile.display().to_string())?;
    let t_compute = t0.elapsed().as_secs_f64() - t_read;
    let base = |p: &PathBuf| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    sky.header
        .set("IN_FRAME", HeaderValue::from(base(&opts.infile)));
    if let Some(ffp) = &opts.fiberflat {
        sky.header.set("FIBERFLT", HeaderValue::from(base(ffp)));
    }
    sky.write_as(
        &opts.outfile,
        &Provenance::current("spx-sky", &inputs),
        opts.f64,
    )?;
    let total = t0.elapsed().as_secs_f64();
    log::info!(
        "wrote {}: read {t_read:.3} s, sky {t_compute:.3} s, write {:.3} s, total {total:.3} s",
        opts.outfile.display(),
        total - t_read - t_compute
    );
    Ok(())
}
