//! `spx-inspect FILE…`: what is in any spx or DESI FITS file (see [`crate::inspect`]).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::CommonOpts;
use crate::comm::Comm;
use crate::inspect::{inspect, InspectOptions};

/// What is in a FITS file: its kind, HDUs, key header values and quick statistics.
///
/// The kind (raw, preproc, psf, frame, fframe, sframe, cframe, fiberflat, sky, fluxcalib,
/// stdstars, spectra, coadd, redrock, zscan, templates, fibermap, simtruth, or unknown FITS)
/// comes from the HDU names, shapes and header keywords, not from the file name. HDUs
/// expected for the kind but absent are named. Image shapes are in numpy order
/// [NAXIS2, NAXIS1].
///
/// Statistics: wavelengths in Angstrom; flux in the file's BUNIT (electron/Angstrom for a
/// frame); S/N = flux·sqrt(ivar) per pixel; per-fiber medians over pixels with ivar > 0,
/// summarised as min / median / max over fibers. Exit status 1 if any file is missing,
/// not FITS or truncated (one error line each; the other files are still reported).
#[derive(clap::Parser, Serialize, Deserialize, Debug, Clone)]
#[command(name = "spx-inspect", version, verbatim_doc_comment)]
pub struct InspectOpts {
    /// FITS files to inspect (any spx or DESI file)
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// One JSON object per file and line instead of text
    #[arg(long)]
    #[serde(default)]
    pub json: bool,
    /// List every table column (with its TFORM) and every header card
    #[arg(short, long)]
    #[serde(default)]
    pub long: bool,
    /// Only the structure: skip the statistics (which read all the data)
    #[arg(long)]
    #[serde(default)]
    pub no_stats: bool,
    #[command(flatten)]
    #[serde(default)]
    pub common: CommonOpts,
}

/// Inspects every file in order and prints to stdout. A file that cannot be inspected (missing,
/// not FITS, truncated) gets one error line on stderr; the others are still printed, and the
/// run fails (exit 1) at the end, like `ls` or `cat` with a bad argument.
pub fn run(opts: &InspectOpts, _comm: &dyn Comm) -> anyhow::Result<()> {
    let iopts = InspectOptions {
        no_stats: opts.no_stats,
        all_cards: opts.long,
    };
    let mut errors = Vec::new();
    let stdout = std::io::stdout();
    for f in &opts.files {
        match inspect(f, iopts) {
            Ok(report) => {
                let text = if opts.json {
                    let mut j = serde_json::to_string(&report).context("cannot encode JSON")?;
                    j.push('\n');
                    j
                } else {
                    report.to_text(opts.long)
                };
                let mut out = stdout.lock();
                // A closed pipe (`spx-inspect … | head`) ends the run quietly.
                if out
                    .write_all(text.as_bytes())
                    .and_then(|_| out.flush())
                    .is_err()
                {
                    return Ok(());
                }
            }
            Err(e) => errors.push(e),
        }
    }
    // The last error is returned (and printed by cli::main); earlier ones are printed here in
    // the same one-line format, so each bad file gets exactly one line.
    let last = errors.pop();
    for e in errors {
        eprintln!("spx-inspect: error: {e}");
    }
    match last {
        None => Ok(()),
        Some(e) => Err(e.into()),
    }
}
