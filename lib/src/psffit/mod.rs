//! PSF fitting from calibration exposures (reference/extraction.md §2–3): trace positions
//! x(λ) from a continuum (flat) exposure, the wavelength solution y(λ) from arc lines, the
//! Gauss-Hermite widths GHSIGX/GHSIGY and the GH-1-1, GH-4-0, GH-0-4 terms per bundle
//! ([`shape`]), per-exposure trace shifts of any exposure
//! ([`shift`]) and the nightly average of several PSFs ([`average`]).
//!
//! Strategy (as specex, but with the position and shape steps separated): every measurement is
//! a small fit of the PSF's own spot model to the pixels ([`measure`]), so the result is exact
//! for a PSF of the Gauss-Hermite family and unbiased by pixelisation. Traces are the input
//! PSF's plus a Legendre correction in wavelength per fiber ([`traces`]); fibers without
//! measurements (dead fibers) take the correction interpolated from their neighbours. Bundle
//! shapes are fitted in parallel (rayon) and independently, and over MPI ranks with
//! [`fit_psf_on`] ([`exchange`]): a bundle that fails keeps the input
//! parameters, is flagged in the STATUS row, and does not fail the camera.
//!
//! STATUS codes (coefficient 0 of the STATUS row, per fiber): 0 fitted; -1 not fitted (no arc
//! given, or width fit off); 1 shape (width/GH) fit failed numerically; 2 too few usable arc spots in the
//! bundle; 3 fiber without trace measurements (traces interpolated from its neighbours).

pub mod average;
pub mod exchange;
pub mod lines;
pub mod measure;
pub mod shape;
pub mod shift;
pub mod traces;

use ndarray::{Array2, Array3};
use rayon::prelude::*;

use crate::io::header::HeaderValue;
use crate::io::preproc::PreprocImage;
use crate::psf::{linspace, GaussHermitePsf, PsfError, TraceSet};
use lines::{LineMeas, RefLine};

/// Status code of a fitted fiber.
pub const STATUS_OK: f64 = 0.0;
/// Not fitted (kept from the input).
pub const STATUS_SKIPPED: f64 = -1.0;
/// Width fit failed numerically.
pub const STATUS_FIT_FAILED: f64 = 1.0;
/// Too few usable arc spots in the bundle.
pub const STATUS_TOO_FEW_SPOTS: f64 = 2.0;
/// No trace measurement for this fiber: traces interpolated from its neighbours.
pub const STATUS_NO_TRACE: f64 = 3.0;

/// Tuning of the PSF fit. Defaults are the values the tests and benchmarks use.
#[derive(Debug, Clone)]
pub struct PsfFitOptions {
    /// Fit windows reach this many columns either side of a trace (less than half the fiber
    /// pitch, so neighbours stay out).
    pub halfx: usize,
    /// Rows per band of a continuum profile measurement.
    pub band_rows: usize,
    /// Minimum S/N of a band's profile amplitude to use its centre.
    pub min_snr_profile: f64,
    /// Minimum number of bands for a fiber's x trace.
    pub min_bands: usize,
    /// Minimum S/N of a line group's brightest line to use its position.
    pub min_snr_line: f64,
    /// Reject line fits with χ²/ndf above this (cosmic rays, bad pixels).
    pub max_rchi2_spot: f64,
    /// Minimum number of line groups for a fiber's y trace.
    pub min_lines: usize,
    /// Maximum Legendre degree of the y(λ) correction (the x correction from a flat may use
    /// the full trace degree).
    pub max_ydeg: usize,
    /// Fit GHSIGX/GHSIGY.
    pub fit_widths: bool,
    /// Also fit the GH terms of [`shape::GH_FIT`] (after the widths; needs `fit_widths`).
    pub fit_gh: bool,
    /// Legendre degree in wavelength of the per-bundle GH corrections.
    pub gh_deg: usize,
    /// Minimum S/N of a spot used in the width fit.
    pub min_snr_shape: f64,
    /// Minimum number of spots per bundle for the width fit.
    pub min_spots: usize,
    /// Fibers per bundle.
    pub bundle_size: usize,
}

impl Default for PsfFitOptions {
    fn default() -> Self {
        PsfFitOptions {
            halfx: 3,
            band_rows: 16,
            min_snr_profile: 20.0,
            min_bands: 8,
            min_snr_line: 15.0,
            max_rchi2_spot: 20.0,
            min_lines: 3,
            max_ydeg: 3,
            fit_widths: true,
            fit_gh: true,
            gh_deg: 2,
            min_snr_shape: 10.0,
            min_spots: 8,
            bundle_size: 25,
        }
    }
}

/// Per-bundle summary written to the PSF header (`BnnRCHI2`, `BnnNDATA`, `BnnNPAR`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BundleReport {
    pub rchi2: f64,
    pub ndata: usize,
    pub npar: usize,
    /// Bundle status (see the module doc).
    pub status: f64,
    /// Width factors at the bundle centre and mid-range (GHSIGX, GHSIGY: fitted / input).
    pub width_factors: (f64, f64),
    /// GH-i-j corrections added to every fiber of the bundle, with their 1σ errors.
    pub gh: Vec<shape::GhCorrection>,
}

/// Summary of a PSF fit.
#[derive(Debug, Clone, Default)]
pub struct FitReport {
    pub bundles: Vec<BundleReport>,
    /// Per fiber: STATUS written.
    pub fiber_status: Vec<f64>,
    /// Line groups used for y(λ), and fibers whose traces were measured.
    pub nlines: usize,
    pub measured_x: Vec<bool>,
    pub measured_y: Vec<bool>,
}

/// Errors of the PSF fit that fail the whole camera (bad inputs only; a bundle's failure does
/// not).
#[derive(Debug, thiserror::Error)]
pub enum PsfFitError {
    #[error("image is {img_ny}×{img_nx} pixels but the PSF describes a {psf_ny}×{psf_nx} CCD")]
    Shape {
        img_ny: usize,
        img_nx: usize,
        psf_ny: usize,
        psf_nx: usize,
    },
    #[error(transparent)]
    Psf(#[from] PsfError),
    #[error("{0}")]
    Input(String),
}

/// Checks that `img` matches the CCD of `psf`.
pub fn check_shape(img: &PreprocImage, psf: &GaussHermitePsf) -> Result<(), PsfFitError> {
    let (ny, nx) = img.shape();
    if (ny, nx) != (psf.npix_y, psf.npix_x) {
        return Err(PsfFitError::Shape {
            img_ny: ny,
            img_nx: nx,
            psf_ny: psf.npix_y,
            psf_nx: psf.npix_x,
        });
    }
    Ok(())
}

/// `psf` with new trace sets (same table); refits the inverse.
pub fn with_traces(
    psf: &GaussHermitePsf,
    xtrace: TraceSet,
    ytrace: TraceSet,
) -> Result<GaussHermitePsf, PsfError> {
    with_parts(
        psf,
        xtrace,
        ytrace,
        psf.param_names.clone(),
        psf.param_coeff.clone(),
    )
}

/// `psf` with new traces and table, keeping sizes, degrees, domain and header keys.
pub fn with_parts(
    psf: &GaussHermitePsf,
    xtrace: TraceSet,
    ytrace: TraceSet,
    names: Vec<String>,
    coeff: Array3<f64>,
) -> Result<GaussHermitePsf, PsfError> {
    let nold = psf.param_names.len();
    let mut out = GaussHermitePsf::new(
        xtrace,
        ytrace,
        names,
        coeff,
        (psf.param_wmin, psf.param_wmax),
        (psf.hsizex, psf.hsizey),
        (psf.ghdegx, psf.ghdegy),
        (psf.npix_x, psf.npix_y),
        psf.fibermin,
        psf.psferr,
    )?;
    let n = out.param_names.len();
    let pad = |v: &Vec<i32>| {
        let mut v = if v.len() == nold {
            v.clone()
        } else {
            vec![0; nold]
        };
        v.resize(n, 0);
        v
    };
    out.legdegx = pad(&psf.legdegx);
    out.legdegw = pad(&psf.legdegw);
    out.extra_keys = psf.extra_keys.clone();
    Ok(out)
}

/// New traces from line measurements. The offsets are fitted per bundle as a smooth 2D
/// polynomial in CCD (x, y) — degree 1 across the bundle, up to `opts.max_ydeg` along the
/// wavelength — so that every fiber borrows the lines of its neighbours (a faint arc gives
/// ~10 lines per fiber) and dead fibers get their bundle's correction. x: the same per bundle
/// without a flat; with one (`x_offset_only`), one camera-wide offset (the flat gave the shape,
/// the arc only a different flexure: desi_proc shifts with degree 0 to the arc). Returns the
/// PSF with corrected traces and which fibers had line measurements.
pub fn traces_from_lines(
    psf: &GaussHermitePsf,
    meas: &[LineMeas],
    opts: &PsfFitOptions,
    x_offset_only: bool,
) -> Result<(GaussHermitePsf, Vec<bool>), PsfFitError> {
    use shift::{Sample, Shift2d};
    let nf = psf.nfiber();
    let bsize = opts.bundle_size.clamp(1, nf.max(1));
    let nb = nf.div_ceil(bsize);
    let (npx, npy) = (psf.npix_x, psf.npix_y);
    let mut sx: Vec<Vec<Sample>> = vec![Vec::new(); nb];
    let mut sy: Vec<Vec<Sample>> = vec![Vec::new(); nb];
    let mut measured = vec![false; nf];
    for m in meas {
        let (x, y) = (psf.x(m.fiber, m.wave), psf.y(m.fiber, m.wave));
        let b = m.fiber / bsize;
        measured[m.fiber] = true;
        sy[b].push(Sample {
            x,
            y,
            value: m.fit.dy,
            err: m.fit.dy_err,
        });
        sx[b].push(Sample {
            x,
            y,
            value: m.fit.dx,
            err: m.fit.dx_err,
        });
    }
    let deg = opts.max_ydeg;
    let fy: Vec<Shift2d> = sy
        .iter()
        .map(|s| Shift2d::fit(s, 1, deg, npx, npy))
        .collect();
    let fx: Vec<Shift2d> = if x_offset_only {
        let all: Vec<Sample> = sx.concat();
        vec![Shift2d::fit(&all, 0, 0, npx, npy); nb]
    } else {
        sx.iter()
            .map(|s| Shift2d::fit(s, 1, deg, npx, npy))
            .collect()
    };
    let (out, _, _) = shift::apply_shifts(psf, &|f, x, y| fx[f / bsize].eval(x, y), &|f, x, y| {
        fy[f / bsize].eval(x, y)
    })?;
    Ok((out, measured))
}

/// Index of row `name`, appending a zero row to `names`/`coeff` when absent.
fn ensure_row(names: &mut Vec<String>, coeff: &mut Array3<f64>, name: &str) -> usize {
    if let Some(i) = names.iter().position(|n| n == name) {
        return i;
    }
    let (np, nf, nc) = coeff.dim();
    let mut c = Array3::<f64>::zeros((np + 1, nf, nc));
    c.slice_mut(ndarray::s![..np, .., ..]).assign(coeff);
    *coeff = c;
    names.push(name.to_string());
    np
}

/// Fits a PSF: x traces from `flat` (when given), the wavelength solution (and x traces when
/// there is no flat) and the widths from `arc` (when given), starting from `input`. `lines` is
/// the arc line list (wavelengths and expected strengths). Never fails because of one bundle.
pub fn fit_psf(
    arc: Option<&PreprocImage>,
    flat: Option<&PreprocImage>,
    input: &GaussHermitePsf,
    lines: &[RefLine],
    opts: &PsfFitOptions,
) -> Result<(GaussHermitePsf, FitReport), PsfFitError> {
    fit_psf_on(arc, flat, input, lines, opts, &crate::comm::SingleComm)
}

/// [`fit_psf`] with the per-bundle shape fits spread over the ranks of `comm` (contiguous
/// shares, exchanged so that every rank returns the same PSF and report, bit for bit as one
/// process); trace and line measurements run on every rank. Every rank must call it.
pub fn fit_psf_on(
    arc: Option<&PreprocImage>,
    flat: Option<&PreprocImage>,
    input: &GaussHermitePsf,
    lines: &[RefLine],
    opts: &PsfFitOptions,
    comm: &dyn crate::comm::Comm,
) -> Result<(GaussHermitePsf, FitReport), PsfFitError> {
    for img in arc.iter().chain(flat.iter()) {
        check_shape(img, input)?;
    }
    let nf = input.nfiber();
    let bsize = opts.bundle_size.clamp(1, nf.max(1));
    let nb = nf.div_ceil(bsize);
    let mut report = FitReport {
        bundles: vec![
            BundleReport {
                status: STATUS_SKIPPED,
                ..Default::default()
            };
            nb
        ],
        fiber_status: vec![STATUS_SKIPPED; nf],
        measured_x: vec![false; nf],
        measured_y: vec![false; nf],
        nlines: 0,
    };
    let mut psf = input.clone();
    if let Some(flat) = flat {
        let t = std::time::Instant::now();
        let (xt, measured) = traces::x_traces_from_flat(flat, &psf, opts);
        psf = with_traces(&psf, xt, psf.ytrace.clone())?;
        log::info!(
            "x traces from the flat: {}/{} fibers measured ({:.2} s)",
            measured.iter().filter(|&&m| m).count(),
            nf,
            t.elapsed().as_secs_f64()
        );
        report.measured_x = measured;
    }
    let Some(arc) = arc else {
        finish_status(&mut psf, &mut report, flat.is_some(), false)?;
        return Ok((psf, report));
    };
    // Positions first with the input widths (positions are insensitive to the widths of a
    // symmetric spot), then widths with the refined positions, then positions again.
    let passes = if opts.fit_widths { 2 } else { 1 };
    for pass in 0..passes {
        let t = std::time::Instant::now();
        let meas = lines::measure_lines(arc, &psf, 0..nf, lines, opts, true);
        let (p, measured) = traces_from_lines(&psf, &meas, opts, flat.is_some())?;
        psf = p;
        report.nlines = meas.len();
        report.measured_y = measured.clone();
        if flat.is_none() {
            report.measured_x = measured;
        }
        log::info!(
            "wavelength solution: {} line groups on {}/{} fibers ({:.2} s)",
            meas.len(),
            report.measured_y.iter().filter(|&&m| m).count(),
            nf,
            t.elapsed().as_secs_f64()
        );
        if opts.fit_widths && pass == 0 {
            let t = std::time::Instant::now();
            let meas = lines::measure_lines(arc, &psf, 0..nf, lines, opts, true);
            psf = fit_widths(arc, &psf, &meas, opts, &mut report, comm)?;
            log::info!("widths per bundle ({:.2} s)", t.elapsed().as_secs_f64());
        }
    }
    finish_status(&mut psf, &mut report, true, opts.fit_widths)?;
    Ok((psf, report))
}

/// Per-bundle shape fits (parallel), folded into the GHSIGX/GHSIGY and GH-i-j rows.
fn fit_widths(
    arc: &PreprocImage,
    psf: &GaussHermitePsf,
    meas: &[LineMeas],
    opts: &PsfFitOptions,
    report: &mut FitReport,
    comm: &dyn crate::comm::Comm,
) -> Result<GaussHermitePsf, PsfFitError> {
    let nf = psf.nfiber();
    let bsize = opts.bundle_size.clamp(1, nf.max(1));
    let nb = nf.div_ceil(bsize);
    let shape_opts = shape::ShapeOptions {
        halfx: opts.halfx,
        min_snr: opts.min_snr_shape,
        min_spots: opts.min_spots,
        fit_gh: opts.fit_gh,
        gh_deg: opts.gh_deg,
    };
    let fibers_of = |b: usize| b * bsize..((b + 1) * bsize).min(nf);
    let mine: Vec<exchange::BundleResult> = crate::comm::share(nb, comm.rank(), comm.size())
        .into_par_iter()
        .map(|b| {
            let r = shape::fit_bundle_shape(arc, psf, fibers_of(b), meas, &shape_opts);
            (b, r)
        })
        .collect();
    let results = exchange::all_bundles(comm, mine)?;
    if results.len() != nb {
        return Err(PsfFitError::Input(format!(
            "{} bundle results for {nb} bundles after the exchange between ranks",
            results.len()
        )));
    }
    let mut names = psf.param_names.clone();
    let mut coeff = psf.param_coeff.clone();
    let ix = ensure_row(&mut names, &mut coeff, "GHSIGX");
    let iy = ensure_row(&mut names, &mut coeff, "GHSIGY");
    let ncoef = psf.ncoef();
    let (w0, w1) = (psf.param_wmin, psf.param_wmax);
    // Sample the corrected widths at 4× the coefficient count and refit each fiber's series.
    let waves = linspace(w0, w1, 4 * ncoef.max(2));
    for (b, r) in results {
        let fibers = fibers_of(b);
        match r {
            Ok(fit) => {
                let mut vx = Array2::<f64>::zeros((fibers.len(), waves.len()));
                let mut vy = vx.clone();
                for (k, f) in fibers.clone().enumerate() {
                    for (i, &w) in waves.iter().enumerate() {
                        let base = (psf.xsigma(f, w), psf.ysigma(f, w));
                        let (sx, sy) = shape::corrected(&fit.widths, &fibers, f, w, w0, w1, base);
                        vx[[k, i]] = sx;
                        vy[[k, i]] = sy;
                    }
                }
                let deg = ncoef - 1;
                let fx = TraceSet::fit(&waves, &vx, deg, w0, w1).map_err(PsfFitError::Input)?;
                let fy = TraceSet::fit(&waves, &vy, deg, w0, w1).map_err(PsfFitError::Input)?;
                for (k, f) in fibers.clone().enumerate() {
                    for c in 0..ncoef {
                        coeff[[ix, f, c]] = fx.coeff[[k, c]];
                        coeff[[iy, f, c]] = fy.coeff[[k, c]];
                    }
                }
                // GH corrections are Legendre series in the PSF's own normalised wavelength:
                // they add to the fiber's coefficients directly.
                for g in &fit.gh {
                    let row = ensure_row(&mut names, &mut coeff, &format!("GH-{}-{}", g.i, g.j));
                    for f in fibers.clone() {
                        for (d, b) in g.coeff.iter().enumerate().take(ncoef) {
                            coeff[[row, f, d]] += b;
                        }
                    }
                    log::debug!(
                        "bundle {b}: GH-{}-{} += {:?} ± {:?}",
                        g.i,
                        g.j,
                        g.coeff,
                        g.err
                    );
                }
                let dof = fit.ndata.saturating_sub(fit.npar).max(1);
                report.bundles[b] = BundleReport {
                    rchi2: fit.chi2 / dof as f64,
                    ndata: fit.ndata,
                    npar: fit.npar,
                    status: STATUS_OK,
                    width_factors: (1.0 + fit.widths[0], 1.0 + fit.widths[3]),
                    gh: fit.gh.clone(),
                };
                log::debug!(
                    "bundle {b}: {} spots, rchi2 {:.3}, widths ×({:.4}, {:.4})",
                    fit.nspots,
                    fit.chi2 / dof as f64,
                    1.0 + fit.widths[0],
                    1.0 + fit.widths[3]
                );
            }
            Err(e) => {
                log::warn!(
                    "bundle {b}: shape fit failed ({e}); keeping the input widths and GH terms"
                );
                let status = match e {
                    shape::ShapeError::TooFewSpots(..) => STATUS_TOO_FEW_SPOTS,
                    _ => STATUS_FIT_FAILED,
                };
                report.bundles[b] = BundleReport {
                    status,
                    ..Default::default()
                };
            }
        }
    }
    let x = psf.xtrace.clone();
    let y = psf.ytrace.clone();
    Ok(with_parts(psf, x, y, names, coeff)?)
}

/// Writes STATUS and BUNDLE rows and the per-bundle header keys.
fn finish_status(
    psf: &mut GaussHermitePsf,
    report: &mut FitReport,
    traces_fitted: bool,
    widths_fitted: bool,
) -> Result<(), PsfFitError> {
    let nf = psf.nfiber();
    let nb = report.bundles.len().max(1);
    let bsize = nf.div_ceil(nb);
    for f in 0..nf {
        let b = f / bsize.max(1);
        let bs = report
            .bundles
            .get(b)
            .map(|r| r.status)
            .unwrap_or(STATUS_SKIPPED);
        let mut s = if widths_fitted {
            bs
        } else if traces_fitted {
            STATUS_OK
        } else {
            STATUS_SKIPPED
        };
        if traces_fitted && !(report.measured_x[f] || report.measured_y[f]) {
            s = STATUS_NO_TRACE;
        }
        report.fiber_status[f] = s;
    }
    let mut names = psf.param_names.clone();
    let mut coeff = psf.param_coeff.clone();
    let is = ensure_row(&mut names, &mut coeff, "STATUS");
    let ib = ensure_row(&mut names, &mut coeff, "BUNDLE");
    for f in 0..nf {
        coeff.slice_mut(ndarray::s![is, f, ..]).fill(0.0);
        coeff[[is, f, 0]] = report.fiber_status[f];
        coeff.slice_mut(ndarray::s![ib, f, ..]).fill(0.0);
        coeff[[ib, f, 0]] = (f / bsize.max(1)) as f64;
    }
    let mut out = with_parts(psf, psf.xtrace.clone(), psf.ytrace.clone(), names, coeff)?;
    for (b, r) in report.bundles.iter().enumerate() {
        out.extra_keys
            .set(&format!("B{b:02}RCHI2"), HeaderValue::Float(r.rchi2));
        out.extra_keys
            .set(&format!("B{b:02}NDATA"), HeaderValue::Int(r.ndata as i64));
        out.extra_keys
            .set(&format!("B{b:02}NPAR"), HeaderValue::Int(r.npar as i64));
    }
    *psf = out;
    Ok(())
}
