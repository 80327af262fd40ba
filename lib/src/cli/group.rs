//! `spx-group`: gather the b/r/z cframes of one or more exposures into a DESI spectra file and
//! optionally coadd it (desispec `desi_group_spectra` + `desi_coadd_spectra`);
//! reference/calibration.md §5.3–5.4.

use std::path::PathBuf;

use anyhow::bail;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::CommonOpts;
use crate::coadd::{coadd, group, NamedFrame};
use crate::comm::Comm;
use crate::io::fits::Provenance;
use crate::io::frame::Frame;

/// Group calibrated frames (cframes, 1e-17 erg/s/cm²/Å) into a spectra file with one row per
/// target and exposure (bands B/R/Z, FIBERMAP with NIGHT, EXPID, MJD, TILEID, EXPTIME), and
/// optionally write the per-camera inverse-variance coadd (one row per TARGETID, with
/// EXP_FIBERMAP). Healpix grouping is not supported.
#[derive(clap::Parser, Serialize, Deserialize, Debug, Clone)]
#[command(version)]
pub struct GroupOpts {
    /// Input cframes (cframe-CAM-EXPID.fits), any order; matched by CAMERA and EXPID
    #[arg(long, value_name = "CFRAME", num_args = 1..)]
    #[serde(default)]
    pub cframes: Vec<PathBuf>,
    /// Output spectra file
    #[arg(short, long, value_name = "SPECTRA")]
    pub outfile: PathBuf,
    /// Tile of the group (checked against each cframe's TILEID keyword)
    #[arg(long, value_name = "TILEID")]
    #[serde(default)]
    pub tile: Option<i64>,
    /// Also write the coadd of the spectra
    #[arg(long, value_name = "COADD")]
    #[serde(default)]
    pub coadd: Option<PathBuf>,
    #[command(flatten)]
    #[serde(default)]
    pub common: CommonOpts,
}

/// Runs `spx-group`.
pub fn run(opts: &GroupOpts, _comm: &dyn Comm) -> anyhow::Result<()> {
    if opts.cframes.is_empty() {
        bail!("no cframes given (--cframes CFRAME…)");
    }
    let frames = opts
        .cframes
        .par_iter()
        .map(|p| {
            Ok(NamedFrame {
                name: p.display().to_string(),
                frame: Frame::read(p)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let spectra = group(&frames, opts.tile)?;
    drop(frames);
    // everything is computed before anything is written
    let co = match &opts.coadd {
        Some(_) => Some(coadd(&spectra)?),
        None => None,
    };
    let inputs: Vec<&std::path::Path> = opts.cframes.iter().map(|p| p.as_path()).collect();
    let prov = Provenance::current("spx-group", &inputs);
    spectra.write(&opts.outfile, &prov)?;
    log::info!(
        "wrote {} ({} spectra)",
        opts.outfile.display(),
        spectra.nspec()
    );
    if let (Some(c), Some(p)) = (co, &opts.coadd) {
        c.write(p, &prov)?;
        log::info!("wrote {} ({} targets)", p.display(), c.nspec());
    }
    Ok(())
}
