//! `spx-stdstars`: fit the standard stars of one petal (desispec `desi_fit_stdstars`,
//! reference/calibration.md §4.1; simplifications listed in [`crate::stdstars`]).

use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::CommonOpts;
use crate::comm::Comm;
use crate::io::fiberflat::FiberFlat;
use crate::io::fits::{Column, ColumnData, Provenance};
use crate::io::frame::Frame;
use crate::io::header::{Header, HeaderValue};
use crate::io::sky::SkyModel;
use crate::io::stdstars::StdStarModels;
use crate::io::table::Table;
use crate::stdstars::{fit_stdstars, model_array, FitOptions, Prepared, SelectOptions, StarGrid};

/// Fit standard stars (b+r+z of every exposure together) against a stellar model grid and
/// write their models normalised to the r-band photometry (stdstars-SP-EXPID.fits).
///
/// Frames, fiber flats and skies are matched by their CAMERA (and, for skies, EXPID)
/// headers, not by their order on the command line.
#[derive(clap::Parser, Serialize, Deserialize, Debug, Clone)]
#[command(version)]
pub struct StdStarsOpts {
    /// Frames (frame-CAM-EXPID.fits) of one petal, electrons/Angstrom
    #[arg(long, value_name = "FRAME", num_args = 1.., required = true)]
    pub frames: Vec<PathBuf>,
    /// Fiber flats, one per camera
    #[arg(long, value_name = "FIBERFLAT", num_args = 1.., required = true)]
    pub fiberflats: Vec<PathBuf>,
    /// Sky models, one per frame
    #[arg(long, value_name = "SKY", num_args = 1.., required = true)]
    pub skies: Vec<PathBuf>,
    /// Output (stdstars-SP-EXPID.fits)
    #[arg(short, long, value_name = "STDSTARS")]
    pub outfile: PathBuf,
    /// External model grid in desispec's stdstar-templates layout (default: the built-in grid
    /// from spx's star model, Teff 5000–7500 K / 250 K, log g 3.5–4.75 / 0.25, [Fe/H]
    /// −2–0.4 / 0.2)
    #[arg(long, value_name = "FILE")]
    #[serde(default)]
    pub starmodels: Option<PathBuf>,
    /// Template pre-selection: max |model − star| g−r colour, mag
    #[arg(long, default_value_t = 0.1)]
    #[serde(default = "default_delta_color")]
    pub delta_color: f64,
    /// Minimum blue S/N per sqrt(Angstrom)
    #[arg(long, default_value_t = 4.0)]
    #[serde(default = "default_min_snr")]
    pub min_blue_snr: f64,
    /// Maximum number of stars fit
    #[arg(long, default_value_t = 30)]
    #[serde(default = "default_max_stars")]
    pub max_stars: usize,
    #[command(flatten)]
    #[serde(default)]
    pub common: CommonOpts,
}

fn default_delta_color() -> f64 {
    0.1
}
fn default_min_snr() -> f64 {
    4.0
}
fn default_max_stars() -> usize {
    30
}

/// Runs `spx-stdstars`.
pub fn run(opts: &StdStarsOpts, _comm: &dyn Comm) -> anyhow::Result<()> {
    let flats: Vec<(String, PathBuf, FiberFlat)> = opts
        .fiberflats
        .iter()
        .map(|p| {
            let f = FiberFlat::read(p)?;
            let cam = f.header.get_str("CAMERA").map(|c| c.to_lowercase());
            let Some(cam) = cam else {
                bail!("{}: no CAMERA keyword", p.display());
            };
            Ok((cam, p.clone(), f))
        })
        .collect::<anyhow::Result<_>>()?;
    let skies: Vec<(String, i64, PathBuf)> = opts
        .skies
        .iter()
        .map(|p| {
            let s = SkyModel::read(p)?;
            let cam = s.header.get_str("CAMERA").map(|c| c.to_lowercase());
            let (Some(cam), Some(e)) = (cam, s.header.get_i64("EXPID")) else {
                bail!("{}: no CAMERA or EXPID keyword", p.display());
            };
            Ok((cam, e, p.clone()))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut inputs = Vec::new();
    let mut in_night = Vec::new();
    for fp in &opts.frames {
        let mut frame = Frame::read(fp)?;
        let (Some(cam), Some(expid)) = (frame.camera(), frame.expid()) else {
            bail!("{}: no CAMERA or EXPID keyword", fp.display());
        };
        let Some((_, ffp, ff)) = flats.iter().find(|f| f.0 == cam) else {
            bail!("{}: no fiber flat for camera {cam}", fp.display());
        };
        let Some((_, _, skp)) = skies.iter().find(|s| s.0 == cam && s.1 == expid) else {
            bail!("{}: no sky for camera {cam} exposure {expid}", fp.display());
        };
        crate::fiberflat::apply_fiberflat(&mut frame, ff)
            .with_context(|| format!("{} with {}", fp.display(), ffp.display()))?;
        let sky = SkyModel::read(skp)?;
        crate::sky::subtract_sky(&mut frame, &sky, false)
            .with_context(|| format!("{} with {}", fp.display(), skp.display()))?;
        in_night.push(frame.header.get_i64("NIGHT").unwrap_or(0));
        inputs.push(Prepared {
            expid,
            camera: cam,
            frame,
        });
    }
    let grid = match &opts.starmodels {
        Some(p) => StarGrid::read(p)?,
        None => StarGrid::builtin(),
    };
    log::info!(
        "{} stellar models, {} input frames",
        grid.len(),
        inputs.len()
    );
    let sel = SelectOptions {
        min_blue_snr: opts.min_blue_snr,
        max_stars: opts.max_stars,
    };
    let fopts = FitOptions {
        delta_color: opts.delta_color,
        ..Default::default()
    };
    let names: Vec<String> = opts
        .frames
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let res = fit_stdstars(&inputs, &grid, &sel, &fopts).with_context(|| {
        format!(
            "{} ({}; nothing written)",
            exposure_label(&inputs, &in_night),
            names.join(", ")
        )
    })?;
    let fits = &res.fits;
    let f64c = |name: &str, v: Vec<f64>| Column::new(name, ColumnData::F64(v));
    let get = |g: &dyn Fn(&crate::stdstars::StarFit) -> f64| fits.iter().map(g).collect::<Vec<_>>();
    let metadata = Table::new(vec![
        Column::new("TARGETID", ColumnData::I64(res.fibermap.targetids())),
        Column::new("FIBER", ColumnData::I32(res.fibers.clone())),
        f64c("LOGG", get(&|f| f.logg)),
        f64c("TEFF", get(&|f| f.teff)),
        f64c("FEH", get(&|f| f.feh)),
        f64c("CHI2DOF", get(&|f| f.chi2dof)),
        f64c("REDSHIFT", get(&|f| f.z)),
        f64c("DATA_G-R", get(&|f| f.data_gr)),
        f64c("MODEL_G-R", get(&|f| f.model_gr)),
        f64c("BLUE_SNR", res.snr.iter().map(|s| s[0]).collect()),
        f64c("RED_SNR", res.snr.iter().map(|s| s[1]).collect()),
        f64c("NIR_SNR", res.snr.iter().map(|s| s[2]).collect()),
    ])
    .map_err(anyhow::Error::msg)?;
    let input_frames = Table::new(vec![
        Column::new(
            "NIGHT",
            ColumnData::I32(in_night.iter().map(|&n| n as i32).collect()),
        ),
        Column::new(
            "EXPID",
            ColumnData::I32(inputs.iter().map(|p| p.expid as i32).collect()),
        ),
        Column::new(
            "CAMERA",
            ColumnData::Str(inputs.iter().map(|p| p.camera.clone()).collect()),
        ),
    ])
    .map_err(anyhow::Error::msg)?;
    let mut coeff = ndarray::Array2::zeros((fits.len(), grid.len()));
    for (i, f) in fits.iter().enumerate() {
        for (k, &c) in f.coeff.iter().enumerate() {
            coeff[[i, k]] = c;
        }
    }
    let mut header = Header::default();
    let h0 = &inputs[0].frame.header;
    for k in ["NIGHT", "EXPID", "SPECGRPH", "TILEID"] {
        if let Some(v) = h0.get(k) {
            header.set(k, v.clone());
        }
    }
    header.set("NSTARS", HeaderValue::from(fits.len() as i64));
    let models = StdStarModels {
        wave: grid.wave.clone(),
        flux: model_array(fits, grid.wave.len()),
        fibers: res.fibers.clone(),
        metadata,
        coeff: Some(coeff),
        fibermap: Some(res.fibermap.clone()),
        input_frames: Some(input_frames),
        header,
    };
    let mut inpaths: Vec<&std::path::Path> = opts.frames.iter().map(|p| p.as_path()).collect();
    inpaths.extend(opts.fiberflats.iter().map(|p| p.as_path()));
    inpaths.extend(opts.skies.iter().map(|p| p.as_path()));
    models.write(
        &opts.outfile,
        &Provenance::current("spx-stdstars", &inpaths),
    )?;
    for f in fits {
        log::info!(
            "Teff {:.0} logg {:.1} [Fe/H] {:.1} z {:.6} chi2/dof {:.2}",
            f.teff,
            f.logg,
            f.feh,
            f.z,
            f.chi2dof
        );
    }
    log::info!("wrote {} ({} stars)", opts.outfile.display(), fits.len());
    Ok(())
}

/// "night 20261127 expid 2 cameras b0,r0,z0" (one entry per distinct exposure): names the
/// exposures in an error, so that a pipeline journal or log line says which one failed.
fn exposure_label(inputs: &[Prepared], nights: &[i64]) -> String {
    let mut exps: Vec<(i64, i64)> = inputs
        .iter()
        .zip(nights)
        .map(|(p, &n)| (n, p.expid))
        .collect();
    exps.sort();
    exps.dedup();
    exps.iter()
        .map(|&(n, e)| {
            let mut cams: Vec<&str> = inputs
                .iter()
                .zip(nights)
                .filter(|(p, &pn)| p.expid == e && pn == n)
                .map(|(p, _)| p.camera.as_str())
                .collect();
            cams.sort();
            format!("night {n} expid {e} cameras {}", cams.join(","))
        })
        .collect::<Vec<_>>()
        .join("; ")
}
