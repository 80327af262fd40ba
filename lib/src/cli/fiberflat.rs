//! `spx-fiberflat`: the fiber flat of a continuum-lamp frame, or the average of several flats
//! (desispec `desi_compute_fiberflat` / `desi_average_fiberflat`; reference/calibration.md §2).

use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::CommonOpts;
use crate::comm::Comm;
use crate::fiberflat::{average_fiberflat, compute_fiberflat, FiberFlatOptions};
use crate::io::fiberflat::FiberFlat;
use crate::io::fits::Provenance;
use crate::io::frame::Frame;
use crate::io::header::HeaderValue;

/// Compute a fiber flat (dimensionless; flat-fielded flux = flux / flat) from a lamp frame.
///
/// The model is data ≈ flat × (R·M) with one deconvolved lamp spectrum M shared by all fibers.
/// With --average, combine fiber flats (weighted mean of two, masked median of more) into the
/// nightly flat instead.
#[derive(clap::Parser, Serialize, Deserialize, Debug, Clone)]
#[command(version)]
pub struct FiberFlatOpts {
    /// Input continuum-lamp frame (frame-CAM-EXPID.fits), electrons/Angstrom
    #[arg(short, long, value_name = "FRAME", required_unless_present = "average")]
    #[serde(default)]
    pub infile: Option<PathBuf>,
    /// Average these fiber flats instead (fiberflatnight)
    #[arg(long, value_name = "FIBERFLAT", num_args = 1.., conflicts_with = "infile")]
    #[serde(default)]
    pub average: Vec<PathBuf>,
    /// Output fiber flat file
    #[arg(short, long, value_name = "FIBERFLAT")]
    pub outfile: PathBuf,
    /// Outlier rejection threshold, sigma
    #[arg(long, default_value_t = 10.0)]
    #[serde(default = "default_nsig")]
    pub nsig: f64,
    /// Convergence accuracy of the smooth flat
    #[arg(long, default_value_t = 5e-4)]
    #[serde(default = "default_acc")]
    pub acc: f64,
    /// Spline knot spacing of the smooth flat, Angstrom
    #[arg(long, default_value_t = 5.0)]
    #[serde(default = "default_res")]
    pub smoothing_resolution: f64,
    #[command(flatten)]
    #[serde(default)]
    pub common: CommonOpts,
}

fn default_nsig() -> f64 {
    10.0
}
fn default_acc() -> f64 {
    5e-4
}
fn default_res() -> f64 {
    5.0
}

/// Runs `spx-fiberflat`.
pub fn run(opts: &FiberFlatOpts, _comm: &dyn Comm) -> anyhow::Result<()> {
    if !opts.average.is_empty() {
        let flats = opts
            .average
            .iter()
            .map(FiberFlat::read)
            .collect::<Result<Vec<_>, _>>()?;
        let avg = average_fiberflat(&flats).with_context(|| {
            format!(
                "averaging {}",
                opts.average
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        let inputs: Vec<&std::path::Path> = opts.average.iter().map(|p| p.as_path()).collect();
        avg.write(
            &opts.outfile,
            &Provenance::current("spx-fiberflat", &inputs),
        )?;
        return Ok(());
    }
    let Some(infile) = &opts.infile else {
        anyhow::bail!("an input frame (-i) or --average FIBERFLAT… is required");
    };
    let frame = Frame::read(infile)?;
    let fopts = FiberFlatOptions {
        nsig_clipping: opts.nsig,
        accuracy: opts.acc,
        smoothing_res: opts.smoothing_resolution,
        ..FiberFlatOptions::default()
    };
    let mut ff = compute_fiberflat(&frame, &fopts);
    let name = infile
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    ff.header.set("IN_FRAME", HeaderValue::from(name));
    ff.write(
        &opts.outfile,
        &Provenance::current("spx-fiberflat", &[infile]),
    )?;
    Ok(())
}
