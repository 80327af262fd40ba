//! `spx-extract`: spectro-perfectionism extraction of a preprocessed image with a
//! Gauss-Hermite PSF into a DESI frame (reference/extraction.md §4 and §6).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Parser;
use serde::{Deserialize, Serialize};

use super::CommonOpts;
use crate::comm::Comm;
use crate::extract::{self, Decorrelation, ExtractParams};
use crate::io::fibermap::Fibermap;
use crate::io::fits::{FitsReader, FitsWriter, Provenance};
use crate::io::frame::{Frame, BUNIT_FRAME};
use crate::io::header::HeaderValue;
use crate::maskbits::{ccdmask, specmask};
use crate::psf::GaussHermitePsf;

/// Extract spectra from a preprocessed CCD image (spectro-perfectionism, as specter's ex2d
/// with desispec's production settings).
#[derive(Parser, Serialize, Deserialize, Debug, Clone)]
#[command(name = "spx-extract", version)]
pub struct ExtractOpts {
    /// Input preprocessed image (IMAGE/IVAR/MASK, electrons)
    #[arg(short, long, value_name = "PREPROC")]
    pub input: PathBuf,
    /// Gauss-Hermite PSF (PSFVER 3)
    #[arg(short, long, value_name = "PSF")]
    pub psf: PathBuf,
    /// Output frame file (flux in electrons/Angstrom)
    #[arg(short, long, value_name = "FRAME")]
    pub output: PathBuf,
    /// Wavelength grid WMIN,WMAX,DW in Angstrom (both ends included); default: the DESI
    /// production grid of the camera (b 3600,5800,0.8; r 5760,7620,0.8; z 7520,9824,0.8),
    /// or the range all fibers cover in 0.8 A steps for other PSFs
    #[arg(short, long, value_name = "WMIN,WMAX,DW")]
    pub wavelength: Option<String>,
    /// First fiber to extract (0-based index into the PSF)
    #[arg(short, long, default_value_t = 0)]
    pub specmin: usize,
    /// Number of fibers to extract (default: all from SPECMIN)
    #[arg(short, long)]
    pub nspec: Option<usize>,
    /// FIBERMAP to copy into the frame (default: the preproc's FIBERMAP HDU, else a minimal one)
    #[arg(long, value_name = "FILE")]
    pub fibermap: Option<PathBuf>,
    /// Fibers per bundle (bundles are extracted independently)
    #[arg(long, default_value_t = 25)]
    pub bundlesize: usize,
    /// Sub-bundles per bundle
    #[arg(long, default_value_t = 5)]
    pub nsubbundles: usize,
    /// Core wavelength bins per patch
    #[arg(long, default_value_t = 50)]
    pub nwavestep: usize,
    /// Extra CCD rows per patch, as a fraction of the spot height
    #[arg(long, default_value_t = 0.8)]
    pub pixpad_frac: f64,
    /// Extra wavelength padding per patch, as a fraction of the spot height
    #[arg(long, default_value_t = 0.2)]
    pub wavepad_frac: f64,
    /// Fractional PSF model error for CHI2PIX (default: the PSF's PSFERR, else 0.01)
    #[arg(long)]
    pub psferr: Option<f64>,
    /// Regularisation added to every flux bin (electrons^-1 per bin)
    #[arg(short, long, default_value_t = 0.0)]
    pub regularize: f64,
    /// Also write the model image (electrons per pixel) to this file
    #[arg(short, long, value_name = "MODEL")]
    pub model: Option<PathBuf>,
    /// Full Bolton-Schlegel decorrelation (R mixes fibers; specter's ndecorr)
    #[arg(long, alias = "full-decorrelation")]
    pub decorrelate_fibers: bool,
    /// Barycentric correction factor: the extraction grid is WMIN/F..WMAX/F step DW/F, the
    /// uncorrected grid is written (HELIOCOR keyword)
    #[arg(long, value_name = "F")]
    pub heliocor: Option<f64>,
    /// Quick boxcar extraction (7 columns around the trace, desispec qproc style) instead of
    /// spectro-perfectionism; Gaussian resolution from the PSF, no CHI2PIX
    #[arg(long)]
    pub boxcar: bool,
    #[command(flatten)]
    #[serde(default)]
    pub common: CommonOpts,
}

/// desispec's production extraction grids (scripts/proc.py), Angstrom.
fn production_grid(camera: &str) -> Option<(f64, f64, f64)> {
    match camera.chars().next()?.to_ascii_lowercase() {
        'b' => Some((3600.0, 5800.0, 0.8)),
        'r' => Some((5760.0, 7620.0, 0.8)),
        'z' => Some((7520.0, 9824.0, 0.8)),
        _ => None,
    }
}

fn parse_grid(s: &str) -> anyhow::Result<(f64, f64, f64)> {
    let v: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--wavelength '{s}': expected WMIN,WMAX,DW in Angstrom"))?;
    if v.len() != 3 || v.iter().any(|x| !x.is_finite()) || v[2] <= 0.0 || v[1] <= v[0] {
        bail!("--wavelength '{s}': expected WMIN,WMAX,DW with WMIN < WMAX and DW > 0");
    }
    Ok((v[0], v[1], v[2]))
}

/// `np.arange(wmin, wmax + dw/2, dw)`, the grid desispec builds from `-w`.
pub fn grid(wmin: f64, wmax: f64, dw: f64) -> Vec<f64> {
    extract::geometry::np_arange(wmin, wmax + dw / 2.0, dw)
}

pub fn run(opts: &ExtractOpts, comm: &dyn Comm) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    let psf = crate::io::psf::read(&opts.psf)?;
    let img = crate::io::preproc::read(&opts.input)?;
    if img.shape() != (psf.npix_y, psf.npix_x) {
        bail!(
            "{}[IMAGE]: shape {:?} does not match the PSF's CCD {}x{} (NPIX_Y x NPIX_X in {})",
            opts.input.display(),
            img.shape(),
            psf.npix_y,
            psf.npix_x,
            opts.psf.display()
        );
    }
    let nspec = opts
        .nspec
        .unwrap_or(psf.nfiber().saturating_sub(opts.specmin));
    if nspec == 0 || opts.specmin + nspec > psf.nfiber() {
        bail!(
            "fibers {}..{} requested but {} has {} fibers",
            opts.specmin,
            opts.specmin + nspec,
            opts.psf.display(),
            psf.nfiber()
        );
    }
    let camera = img
        .header
        .get_str("CAMERA")
        .or_else(|| psf.extra_keys.get_str("CAMERA"))
        .unwrap_or_default();
    let (wmin, wmax, dw) = match &opts.wavelength {
        Some(s) => parse_grid(s)?,
        None => default_grid(&psf, &camera, opts.specmin, nspec),
    };
    let h = opts.heliocor.unwrap_or(1.0);
    if !h.is_finite() || h <= 0.0 {
        bail!("--heliocor must be a positive factor");
    }
    let out_wave = grid(wmin, wmax, dw);
    let ex_wave = if opts.heliocor.is_some() {
        grid(wmin / h, wmax / h, dw / h)
    } else {
        out_wave.clone()
    };
    if ex_wave.len() != out_wave.len() {
        bail!(
            "--heliocor {h} changes the number of wavelength bins; choose WMIN,WMAX,DW on the grid"
        );
    }

    // Pixels the extraction ignores get ivar 0 (desispec extractmaskval).
    let ivar = ndarray::Zip::from(&img.ivar)
        .and(&img.mask)
        .map_collect(|&v, &m| {
            if (m as i32) & ccdmask::EXTRACT_IGNORE != 0 {
                0.0f32
            } else {
                v
            }
        });

    let mut p = ExtractParams::new(
        opts.specmin,
        nspec,
        ex_wave,
        opts.psferr.unwrap_or(psf.psferr),
    );
    p.bundlesize = opts.bundlesize;
    p.nsubbundles = opts.nsubbundles;
    p.nwavestep = opts.nwavestep;
    p.pixpad_frac = opts.pixpad_frac;
    p.wavepad_frac = opts.wavepad_frac;
    p.regularize = opts.regularize;
    p.want_model = opts.model.is_some();
    if opts.decorrelate_fibers {
        p.decorrelation = Decorrelation::Full;
    }
    log::info!(
        "extracting fibers {}..{} on {} wavelengths {:.2}..{:.2} A ({} threads, {} ranks)",
        opts.specmin,
        opts.specmin + nspec,
        p.wave.len(),
        p.wave[0],
        p.wave[p.wave.len() - 1],
        rayon::current_num_threads(),
        comm.size()
    );
    let ex = if opts.boxcar {
        if !comm.is_root() {
            return Ok(());
        }
        let ndiag = extract::resolution_ndiag(&psf, dw / h);
        let (flux, fivar, resolution) = extract::boxcar::boxcar(
            &psf,
            img.image.view(),
            ivar.view(),
            opts.specmin,
            nspec,
            &p.wave,
            ndiag,
        );
        let dim = flux.dim();
        // No pixel-level fit: CHI2PIX 0; bins without information count as fully masked.
        let pmf = fivar.mapv(|v: f64| if v > 0.0 { 0.0 } else { 1.0 });
        Some(extract::Extraction {
            flux,
            ivar: fivar,
            resolution,
            chi2pix: ndarray::Array2::zeros(dim),
            pixmask_fraction: pmf,
            model: None,
        })
    } else {
        extract::ex2d_comm(&psf, img.image.view(), ivar.view(), &p, comm).with_context(|| {
            format!(
                "extracting {} with {}",
                opts.input.display(),
                opts.psf.display()
            )
        })?
    };
    let Some(mut ex) = ex else { return Ok(()) };
    log::info!("extraction done in {:.1} s", t0.elapsed().as_secs_f64());

    // Never NaN: a non-finite result becomes flux 0, ivar 0 with BAD2DFIT.
    let mut mask = ndarray::Array2::<u32>::zeros(ex.flux.dim());
    for ((i, j), m) in mask.indexed_iter_mut() {
        let pmf = ex.pixmask_fraction[[i, j]];
        if pmf > 0.5 {
            *m |= specmask::SOMEBADPIX;
        }
        if pmf == 1.0 {
            *m |= specmask::ALLBADPIX;
        }
        if ex.chi2pix[[i, j]] > 100.0 {
            *m |= specmask::BAD2DFIT;
        }
        if !ex.flux[[i, j]].is_finite()
            || !ex.ivar[[i, j]].is_finite()
            || !ex.chi2pix[[i, j]].is_finite()
        {
            ex.flux[[i, j]] = 0.0;
            ex.ivar[[i, j]] = 0.0;
            ex.chi2pix[[i, j]] = 0.0;
            *m |= specmask::BAD2DFIT;
        }
    }
    ex.resolution
        .mapv_inplace(|v| if v.is_finite() { v } else { 0.0 });

    let fibermap = fibermap_for(opts, &psf, nspec)?;
    let mut header = img.header.clone();
    header.set("NSPEC", HeaderValue::Int(nspec as i64));
    header.set("WAVEMIN", HeaderValue::Float(wmin));
    header.set("WAVEMAX", HeaderValue::Float(wmax));
    header.set("WAVESTEP", HeaderValue::Float(dw));
    header.set(
        "SPXEXTR",
        HeaderValue::Str(format!("spx {}", env!("CARGO_PKG_VERSION"))),
    );
    header.set("IN_PSF", HeaderValue::Str(opts.psf.display().to_string()));
    header.set("IN_IMG", HeaderValue::Str(opts.input.display().to_string()));
    if let Some(orig) = psf.extra_keys.get_str("IN_PSF") {
        header.set("ORIG_PSF", HeaderValue::Str(orig));
    }
    header.set(
        "FIBERMIN",
        HeaderValue::Int((psf.fibermin + opts.specmin) as i64),
    );
    header.set("BUNIT", HeaderValue::Str(BUNIT_FRAME.into()));
    if let Some(hc) = opts.heliocor {
        header.set("HELIOCOR", HeaderValue::Float(hc));
    }
    // desispec's extraction appends the RAW scores (flux_per_angstrom=False, as it does)
    let scores =
        extract::scores::frame_scores(&out_wave, ex.flux.view(), ex.ivar.view(), "RAW", false);
    let frame = Frame {
        wave: ndarray::Array1::from(out_wave),
        flux: ex.flux,
        ivar: ex.ivar,
        mask,
        resolution: ex.resolution,
        fibermap,
        chi2pix: Some(ex.chi2pix),
        scores,
        header,
    };
    let prov = Provenance::current("spx-extract", &[opts.input.as_path(), opts.psf.as_path()]);
    if let (Some(path), Some(model)) = (&opts.model, &ex.model) {
        write_model(path, model, &prov)?;
    }
    frame.write(&opts.output, &prov)?;
    log::info!(
        "wrote {} in {:.1} s",
        opts.output.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The default grid: the camera's production grid when the PSF covers it (within 5 A, as
/// desispec checks), else ceil(wmin_all)..floor(wmax_all) of the fibers in 0.8 A steps.
fn default_grid(
    psf: &GaussHermitePsf,
    camera: &str,
    specmin: usize,
    nspec: usize,
) -> (f64, f64, f64) {
    let (mut lo, mut hi) = (f64::NEG_INFINITY, f64::INFINITY);
    for f in specmin..specmin + nspec {
        let (a, b) = psf.fiber_wrange(f);
        lo = lo.max(a);
        hi = hi.min(b);
    }
    match production_grid(camera) {
        Some((a, b, d)) if a >= lo - 5.0 && b <= hi + 5.0 => (a, b, d),
        _ => (lo.ceil(), hi.floor(), 0.8),
    }
}

fn fibermap_for(
    opts: &ExtractOpts,
    psf: &GaussHermitePsf,
    nspec: usize,
) -> anyhow::Result<Fibermap> {
    let first = (psf.fibermin + opts.specmin) as i64;
    let wanted: Vec<i64> = (first..first + nspec as i64).collect();
    let full = if let Some(path) = &opts.fibermap {
        Some(Fibermap::read_file(path)?)
    } else {
        let mut r = FitsReader::open(&opts.input)?;
        if r.has_hdu("FIBERMAP") {
            Some(Fibermap::read(&mut r, "FIBERMAP")?)
        } else {
            None
        }
    };
    let Some(full) = full else {
        return Ok(Fibermap::minimal(
            &wanted.iter().map(|&f| f as i32).collect::<Vec<_>>(),
        ));
    };
    let fibers = full.fibers();
    let rows: Vec<usize> = wanted
        .iter()
        .map(|f| {
            fibers
                .iter()
                .position(|&x| i64::from(x) == *f || i64::from(x) % 500 == *f % 500)
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{}[FIBERMAP]: does not list all fibers {}..{}",
                opts.fibermap.as_deref().unwrap_or(&opts.input).display(),
                first,
                first + nspec as i64
            )
        })?;
    Ok(full.select(&rows))
}

fn write_model(path: &Path, model: &ndarray::Array2<f64>, prov: &Provenance) -> anyhow::Result<()> {
    let data: Vec<f32> = model.iter().map(|&v| v as f32).collect();
    let (ny, nx) = model.dim();
    let mut w = FitsWriter::create_with_primary_image(path, prov, "MODEL", &[ny, nx], &data)?;
    w.key("BUNIT", "electron")?;
    w.commit()?;
    Ok(())
}
