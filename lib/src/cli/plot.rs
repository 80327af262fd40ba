//! `spx-plot`: PNG figures of spx outputs. The options live here (so `commands()` and the
//! man pages see them); the drawing is in the `spx-plot` crate (plot/), which alone depends
//! on plotters.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::CommonOpts;

/// Options of spx-plot.
#[derive(clap::Parser, Serialize, Deserialize, Debug, Clone)]
#[command(
    name = "spx-plot",
    version,
    about = "Write PNG figures of spx outputs: a spectrum with its redshift fit, a CCD cut-out \
with PSF traces, sky residuals, redshift vs truth, a χ²(z) scan. Wavelengths in Angstrom.",
    long_about = None
)]
pub struct PlotOpts {
    #[command(subcommand)]
    pub plot: Plot,
}

impl PlotOpts {
    /// The common options of the chosen subcommand.
    pub fn common(&self) -> &CommonOpts {
        &self.out().common
    }

    /// The output PNG.
    pub fn outfile(&self) -> &PathBuf {
        &self.out().outfile
    }

    fn out(&self) -> &OutOpts {
        match &self.plot {
            Plot::Spectrum(o) => &o.out,
            Plot::Ccd(o) => &o.out,
            Plot::Skyres(o) => &o.out,
            Plot::Zscatter(o) => &o.out,
            Plot::Chi2(o) => &o.out,
        }
    }
}

/// The figures.
#[derive(clap::Subcommand, Serialize, Deserialize, Debug, Clone)]
pub enum Plot {
    /// One target's spectrum (b, r, z joined; flux in the file's unit, 1e-17 erg/s/cm²/Å for
    /// DESI coadds) with its best-fit redshift model and the main lines at the fitted z
    Spectrum(SpectrumOpts),
    /// A preprocessed CCD image cut-out (electrons) with the PSF traces and fiber numbers
    Ccd(CcdOpts),
    /// Sky-subtraction residuals (flux − sky)/σ of the sky fibers of a frame, and their mean
    Skyres(SkyresOpts),
    /// Fitted vs true redshift and Δz/(1+z) of simulated targets, coloured by true type
    Zscatter(ZscatterOpts),
    /// χ²(z) of one target per template (spx-redshift --details output)
    Chi2(Chi2Opts),
}

/// Output file, size and the common options, shared by every figure.
#[derive(clap::Args, Serialize, Deserialize, Debug, Clone)]
pub struct OutOpts {
    /// Output PNG (written atomically)
    #[arg(short = 'o', long = "outfile", value_name = "PNG")]
    pub outfile: PathBuf,
    /// Image size in pixels, WIDTHxHEIGHT (default per figure: 1400x600, ccd 1000x1000,
    /// zscatter 900x1000, chi2 1200x800)
    #[arg(long, value_name = "WxH")]
    pub size: Option<String>,
    #[command(flatten)]
    #[serde(default)]
    pub common: CommonOpts,
}

#[derive(clap::Args, Serialize, Deserialize, Debug, Clone)]
pub struct SpectrumOpts {
    /// Spectra or coadd file (desispec format)
    #[arg(short = 'i', long = "infile", value_name = "COADD")]
    pub infile: PathBuf,
    /// Redrock catalog with the fit (spx-redshift output)
    #[arg(long, value_name = "REDROCK")]
    pub redrock: PathBuf,
    /// TARGETID to draw
    #[arg(long, value_name = "ID", required_unless_present = "spectype")]
    pub targetid: Option<i64>,
    /// Instead of --targetid: the confident (ZWARN 0) target of this SPECTYPE with the
    /// largest DELTACHI2 (GALAXY, QSO, STAR)
    #[arg(long, value_name = "TYPE", conflicts_with = "targetid")]
    pub spectype: Option<String>,
    /// Templates the fit used (default: spx's own set, as spx-redshift)
    #[arg(short = 't', long, env = "RR_TEMPLATE_DIR", value_name = "DIR_OR_LIST")]
    pub templates: Option<PathBuf>,
    /// Ivar-weighted boxcar smoothing over N pixels (1: none)
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub smooth: usize,
    #[command(flatten)]
    pub out: OutOpts,
}

#[derive(clap::Args, Serialize, Deserialize, Debug, Clone)]
pub struct CcdOpts {
    /// Preprocessed image (spx-preproc output)
    #[arg(short = 'i', long = "infile", value_name = "PREPROC")]
    pub infile: PathBuf,
    /// PSF whose traces are drawn (spx-psf output)
    #[arg(short = 'p', long, value_name = "PSF")]
    pub psf: PathBuf,
    /// Rows (y pixels) a:b, end excluded (default: the whole image, at most 600 rows around
    /// the centre)
    #[arg(long, value_name = "A:B")]
    pub rows: Option<String>,
    /// Columns (x pixels) c:d, end excluded (default as --rows)
    #[arg(long, value_name = "C:D")]
    pub cols: Option<String>,
    #[command(flatten)]
    pub out: OutOpts,
}

#[derive(clap::Args, Serialize, Deserialize, Debug, Clone)]
pub struct SkyresOpts {
    /// Frame (spx-extract output, electrons/Å)
    #[arg(long, value_name = "FRAME")]
    pub frame: PathBuf,
    /// Sky model of that frame (spx-sky output)
    #[arg(long, value_name = "SKY")]
    pub sky: PathBuf,
    /// Fiber flat the sky model was computed with (applied to the frame first)
    #[arg(long, value_name = "FIBERFLAT")]
    pub fiberflat: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutOpts,
}

#[derive(clap::Args, Serialize, Deserialize, Debug, Clone)]
pub struct ZscatterOpts {
    /// Redrock catalogs (spx-redshift output)
    #[arg(long, num_args = 1.., required = true, value_name = "REDROCK")]
    pub redrock: Vec<PathBuf>,
    /// Simulation truth files (spx-sim --truth) with the true type and redshift
    #[arg(long, num_args = 1.., required = true, value_name = "TRUTH")]
    pub truth: Vec<PathBuf>,
    #[command(flatten)]
    pub out: OutOpts,
}

#[derive(clap::Args, Serialize, Deserialize, Debug, Clone)]
pub struct Chi2Opts {
    /// Details file (spx-redshift --details output)
    #[arg(long, value_name = "DETAILS")]
    pub details: PathBuf,
    /// TARGETID to draw
    #[arg(long, value_name = "ID")]
    pub targetid: i64,
    #[command(flatten)]
    pub out: OutOpts,
}

/// Parses `a:b` (end excluded) into a half-open range.
pub fn parse_range(s: &str, what: &str) -> anyhow::Result<std::ops::Range<usize>> {
    let bad = || anyhow::anyhow!("{what} '{s}': expected A:B with integers 0 ≤ A < B");
    let (a, b) = s.split_once(':').ok_or_else(bad)?;
    let a: usize = a.trim().parse().map_err(|_| bad())?;
    let b: usize = b.trim().parse().map_err(|_| bad())?;
    if a >= b {
        return Err(bad());
    }
    Ok(a..b)
}

/// Parses `--size WxH` (each 200–8000 pixels), or returns `default`.
pub fn parse_size(s: Option<&str>, default: (u32, u32)) -> anyhow::Result<(u32, u32)> {
    let Some(s) = s else { return Ok(default) };
    let bad = || anyhow::anyhow!("--size '{s}': expected WIDTHxHEIGHT, each 200 to 8000 pixels");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let w: u32 = w.trim().parse().map_err(|_| bad())?;
    let h: u32 = h.trim().parse().map_err(|_| bad())?;
    if !(200..=8000).contains(&w) || !(200..=8000).contains(&h) {
        return Err(bad());
    }
    Ok((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_sizes() {
        assert_eq!(parse_range("10:20", "--rows").unwrap(), 10..20);
        assert!(parse_range("20:10", "--rows").is_err());
        assert!(parse_range("a:b", "--rows").is_err());
        assert_eq!(parse_size(Some("800x600"), (1, 1)).unwrap(), (800, 600));
        assert_eq!(parse_size(None, (3, 4)).unwrap(), (3, 4));
        assert!(parse_size(Some("10x10"), (1, 1)).is_err());
    }
}
