//! Redshift fitting with redrock's algorithm (reference/redshift.md §2): for every template,
//! a χ²(z) scan on its coarse grid, up to `nminima` minima refined on a 15-point fine grid with
//! a parabola, then all templates' candidates ranked per target (ZWARN, DELTACHI2).
//!
//! Speed comes from the layout, not from approximations: the coarse scan walks
//! (template, block of [`scan::LANES`] redshifts) work items in parallel; each item rebins the
//! template once per camera grid (shared by all targets of the batch, held in cache while
//! every target streams over it) and fits all targets of the batch against it. Results land
//! in fixed slots and are combined in a fixed order, so they do not depend on threads.

pub mod fitz;
pub mod igm;
pub mod rebin;
pub mod scan;
pub mod target;
pub mod truthspec;
pub mod zfind;
pub mod zwarn;

use rayon::prelude::*;

use crate::io::templates::Template;

use self::rebin::covers;
use self::scan::{build_block, fit_block, Prepared, LANES};
use self::target::{Grid, Target};
use self::zfind::Ranked;

/// Errors of the fitter (bad template/data combinations).
#[derive(Debug, thiserror::Error)]
pub enum RedshiftError {
    /// A template cannot be rebinned onto a camera grid over its whole redshift grid.
    #[error("{file}: template {fulltype} does not cover camera {band} ({lo:.1}–{hi:.1} Å) over its redshift grid {zmin:.4}–{zmax:.4}")]
    Coverage {
        file: String,
        fulltype: String,
        band: String,
        lo: f64,
        hi: f64,
        zmin: f64,
        zmax: f64,
    },
    /// A template has more basis vectors than the kernels support.
    #[error("{file}: template {fulltype} has {nb} basis vectors; at most {max} are supported")]
    TooManyBasis {
        file: String,
        fulltype: String,
        nb: usize,
        max: usize,
    },
}

/// Fit settings (redrock defaults).
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// Minima refined per template and kept per SPECTYPE (rrdesi `--nminima`, 3).
    pub nminima: usize,
    /// Fine-grid points per minimum (rrdesi `--zminfit-npoints`, 15).
    pub npoints: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            nminima: 3,
            npoints: 15,
        }
    }
}

/// The coarse scan of one template over a batch of targets.
#[derive(Debug, Clone)]
pub struct TemplateScan {
    /// Details-file key (`GALAXY`, `QSO_HIZ`, `STAR_K` …).
    pub key: String,
    /// The template's coarse grid. `[nz]`
    pub redshifts: Vec<f64>,
    /// χ² without penalty, `[ntarget * nz]` row-major.
    pub zchi2: Vec<f64>,
    /// [O II] penalty, `[ntarget * nz]` (zeros for non-GALAXY templates).
    pub penalty: Vec<f64>,
}

/// Everything the fit produces for a batch of targets.
#[derive(Debug, Clone)]
pub struct FitOutput {
    pub scans: Vec<TemplateScan>,
    /// Per target (input order): ranked candidates, best first.
    pub ranked: Vec<Vec<Ranked>>,
}

/// Checks that every template covers every grid over its redshift range, and prepares them.
pub fn prepare(templates: Vec<Template>, grids: &[Grid]) -> Result<Vec<Prepared>, RedshiftError> {
    let mut out = Vec::with_capacity(templates.len());
    for t in templates {
        if t.nbasis > scan::MAX_NB {
            return Err(RedshiftError::TooManyBasis {
                file: t.filename.display().to_string(),
                fulltype: t.full_type(),
                nb: t.nbasis,
                max: scan::MAX_NB,
            });
        }
        let zmin = t.redshifts[0];
        let zmax = t.redshifts[t.redshifts.len() - 1];
        for g in grids {
            if !covers(&t.wave, zmin, zmax, &g.edges) {
                return Err(RedshiftError::Coverage {
                    file: t.filename.display().to_string(),
                    fulltype: t.full_type(),
                    band: g.band.clone(),
                    lo: g.edges[0],
                    hi: g.edges[g.edges.len() - 1],
                    zmin,
                    zmax,
                });
            }
        }
        out.push(Prepared::new(t));
    }
    Ok(out)
}

/// Bytes of one rebinned block of template `p` (what each worker thread holds at a time).
pub fn block_bytes(p: &Prepared, grids: &[Grid]) -> usize {
    grids
        .iter()
        .map(|g| (g.wave.len() + 2 * (g.ndiag / 2)) * p.t.nbasis * LANES * 8)
        .sum()
}

/// Bytes the fully rebinned template set would take (redrock keeps all of it in memory;
/// spx keeps one block per thread), for the log.
pub fn full_cache_bytes(templates: &[Prepared], grids: &[Grid]) -> usize {
    let npix: usize = grids.iter().map(|g| g.wave.len()).sum();
    templates
        .iter()
        .map(|p| p.t.redshifts.len() * npix * p.t.nbasis * 8)
        .sum()
}

/// Coarse scan of every template over `targets`.
pub fn scan_all(templates: &[Prepared], grids: &[Grid], targets: &[Target]) -> Vec<TemplateScan> {
    // Work items: (template, first z index). Fixed list, results collected in order.
    let items: Vec<(usize, usize)> = templates
        .iter()
        .enumerate()
        .flat_map(|(ti, p)| {
            (0..p.t.redshifts.len())
                .step_by(LANES)
                .map(move |z0| (ti, z0))
        })
        .collect();
    let nt = targets.len();
    let results: Vec<Vec<(f64, f64)>> = items
        .par_iter()
        .map(|&(ti, z0)| {
            let p = &templates[ti];
            let zs = &p.t.redshifts[z0..(z0 + LANES).min(p.t.redshifts.len())];
            let mut out = vec![(scan::HUGE_CHI2, 0.0); nt * zs.len()];
            // Coverage was checked for the whole grid in `prepare`.
            let Some(blk) = build_block(p, grids, zs) else {
                return out;
            };
            for (it, tg) in targets.iter().enumerate() {
                let fit = fit_block(&blk, grids, tg);
                for l in 0..zs.len() {
                    let pen = p
                        .oii
                        .as_ref()
                        .map(|o| o.penalty(&fit.coeff[l][..p.t.nbasis]))
                        .unwrap_or(0.0);
                    out[it * zs.len() + l] = (fit.chi2[l], pen);
                }
            }
            out
        })
        .collect();
    let mut scans: Vec<TemplateScan> = templates
        .iter()
        .map(|p| TemplateScan {
            key: p.t.key(),
            redshifts: p.t.redshifts.clone(),
            zchi2: vec![0.0; nt * p.t.redshifts.len()],
            penalty: vec![0.0; nt * p.t.redshifts.len()],
        })
        .collect();
    for (&(ti, z0), res) in items.iter().zip(results) {
        let nz = scans[ti].redshifts.len();
        let nl = res.len() / nt.max(1);
        for it in 0..nt {
            for l in 0..nl {
                let (c, pn) = res[it * nl + l];
                scans[ti].zchi2[it * nz + z0 + l] = c;
                scans[ti].penalty[it * nz + z0 + l] = pn;
            }
        }
    }
    scans
}

/// Full fit of a batch of targets: coarse scan, refinement, ranking.
pub fn fit(
    templates: &[Prepared],
    grids: &[Grid],
    targets: &[Target],
    opts: &FitOptions,
) -> FitOutput {
    let t0 = std::time::Instant::now();
    let scans = scan_all(templates, grids, targets);
    log::debug!(
        "coarse scan of {} targets: {:.2} s",
        targets.len(),
        t0.elapsed().as_secs_f64()
    );
    let t0 = std::time::Instant::now();
    let ranked: Vec<Vec<Ranked>> = targets
        .par_iter()
        .enumerate()
        .map(|(it, tg)| {
            let mut all = Vec::new();
            for (p, s) in templates.iter().zip(&scans) {
                let nz = s.redshifts.len();
                let zeff: Vec<f64> = (0..nz)
                    .map(|i| s.zchi2[it * nz + i] + s.penalty[it * nz + i])
                    .collect();
                all.extend(fitz::fitz(&zeff, p, grids, tg, opts.nminima, opts.npoints));
            }
            zfind::rank(all, opts.nminima)
        })
        .collect();
    log::debug!(
        "refinement of {} targets: {:.2} s",
        targets.len(),
        t0.elapsed().as_secs_f64()
    );
    FitOutput { scans, ranked }
}
