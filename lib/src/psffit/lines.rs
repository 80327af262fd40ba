//! Emission-line spots (arc lamps, sky lines): which lines of a reference list to fit along
//! each trace, how blends are grouped, and the measured offsets of each group from the
//! positions predicted by the input PSF.
//!
//! Blends: lines whose predicted rows are closer than a stamp are fitted together (one flux
//! each, one common offset); a pair closer than [`MIN_SEP`] pixels cannot be separated, so the
//! weaker is dropped when its expected strength is below [`BLEND_FRAC`] of the stronger and
//! the whole group is dropped otherwise. Saturated lines (masked core pixels) and missing or
//! weak lines (S/N below the threshold) give no measurement.

use rayon::prelude::*;

use super::measure::{fit_spot_group, SpotFit};
use super::PsfFitOptions;
use crate::io::preproc::PreprocImage;
use crate::psf::GaussHermitePsf;

/// A line of a reference list: vacuum wavelength (Angstrom) and expected relative strength.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefLine {
    pub wave: f64,
    pub strength: f64,
}

/// Two lines closer than this (pixels along y) are one unresolved spot.
pub const MIN_SEP: f64 = 2.0;
/// A weaker line below this fraction of its unresolved neighbour is ignored; above, the pair
/// is useless for positions (its centroid depends on the unknown flux ratio).
pub const BLEND_FRAC: f64 = 0.01;

/// One measured line group of one fiber.
#[derive(Debug, Clone)]
pub struct LineMeas {
    /// 0-based PSF fiber index.
    pub fiber: usize,
    /// Wavelengths of the lines of the group (Angstrom) and their fitted fluxes (electrons).
    pub waves: Vec<f64>,
    pub fluxes: Vec<f64>,
    /// Strength-weighted mean wavelength of the group, Angstrom: where the offset applies.
    pub wave: f64,
    /// The fit (common offsets and errors).
    pub fit: SpotFit,
    /// S/N of the brightest line of the group.
    pub snr: f64,
}

/// Groups the lines that fall on `fiber`'s part of the CCD into blend groups (indices into
/// `lines`, sorted by wavelength), following the rules of the module doc.
pub fn groups_for_fiber(psf: &GaussHermitePsf, fiber: usize, lines: &[RefLine]) -> Vec<Vec<usize>> {
    let (wlo, whi) = psf.fiber_wrange(fiber);
    let ymax = psf.npix_y as f64;
    let hy = psf.hsizey as f64;
    // Keep a margin of half a stamp from the CCD ends: a clipped spot measures badly.
    let mut cand: Vec<(usize, f64)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.wave > wlo && l.wave < whi && l.strength > 0.0)
        .map(|(i, l)| (i, psf.y(fiber, l.wave)))
        .filter(|(_, y)| *y > hy && *y < ymax - 1.0 - hy)
        .collect();
    cand.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut groups: Vec<Vec<(usize, f64)>> = Vec::new();
    for c in cand {
        match groups.last_mut() {
            Some(g) if c.1 - g[g.len() - 1].1 < 2.0 * hy + 1.0 => g.push(c),
            _ => groups.push(vec![c]),
        }
    }
    let mut out = Vec::new();
    'group: for g in groups {
        // Resolve pairs closer than MIN_SEP.
        let mut keep: Vec<(usize, f64)> = Vec::with_capacity(g.len());
        for c in g {
            if let Some(last) = keep.last().copied() {
                if c.1 - last.1 < MIN_SEP {
                    let (sa, sb) = (lines[last.0].strength, lines[c.0].strength);
                    let (strong, weak) = if sa >= sb { (sa, sb) } else { (sb, sa) };
                    if weak > BLEND_FRAC * strong {
                        continue 'group;
                    }
                    if sb > sa {
                        keep.pop();
                        keep.push(c);
                    }
                    continue;
                }
            }
            keep.push(c);
        }
        out.push(keep.into_iter().map(|c| c.0).collect());
    }
    out
}

/// Fits every line group of the fibers `fibers` on `img` from the positions predicted by
/// `psf`, keeping the groups whose brightest line has S/N ≥ `opts.min_snr_line`, a position
/// error below 0.2 px, a reasonable χ² and no masked pixel in its 3×3 core (saturation).
/// Fibers in parallel, results in fiber order.
pub fn measure_lines(
    img: &PreprocImage,
    psf: &GaussHermitePsf,
    fibers: std::ops::Range<usize>,
    lines: &[RefLine],
    opts: &PsfFitOptions,
    fit_x: bool,
) -> Vec<LineMeas> {
    let per: Vec<Vec<LineMeas>> = fibers
        .into_par_iter()
        .map_init(
            || psf.evaluator(),
            |ev, f| {
                let mut out = Vec::new();
                for g in groups_for_fiber(psf, f, lines) {
                    let waves: Vec<f64> = g.iter().map(|&i| lines[i].wave).collect();
                    let batch = psf.spot_params(f, 1, &waves);
                    let params: Vec<_> = (0..waves.len()).map(|k| batch.get(0, k)).collect();
                    let Some(fit) = fit_spot_group(img, ev, &params, opts.halfx, psf.hsizey, fit_x)
                    else {
                        continue;
                    };
                    let snr = fit
                        .flux
                        .iter()
                        .zip(&fit.flux_err)
                        .map(|(a, e)| a / e)
                        .fold(f64::NEG_INFINITY, f64::max);
                    if snr.is_nan() || snr < opts.min_snr_line || fit.dy_err > 0.2 {
                        continue;
                    }
                    // Brightest line: its core must be unmasked (saturated lines are masked).
                    let kb = (0..waves.len())
                        .max_by(|&a, &b| fit.flux[a].total_cmp(&fit.flux[b]))
                        .unwrap_or(0);
                    if core_masked(img, params[kb].x + fit.dx, params[kb].y + fit.dy) {
                        continue;
                    }
                    let wsum: f64 = g.iter().map(|&i| lines[i].strength).sum();
                    let wave = g
                        .iter()
                        .map(|&i| lines[i].wave * lines[i].strength)
                        .sum::<f64>()
                        / wsum;
                    out.push(LineMeas {
                        fiber: f,
                        fluxes: fit.flux.clone(),
                        waves,
                        wave,
                        fit,
                        snr,
                    });
                }
                out
            },
        )
        .collect();
    // χ² cut against cosmic rays and bad pixels, relative to the typical group: bright lines
    // fitted with the input widths (a few % off) have χ²/ndf well above 1 before the width
    // fit, and an absolute cut would reject exactly the lines that constrain it.
    let all: Vec<LineMeas> = per.into_iter().flatten().collect();
    let rchi = |m: &LineMeas| m.fit.chi2 / (m.fit.ndata as f64 - m.fit.npar as f64).max(1.0);
    let med = crate::stats::median(all.iter().map(rchi));
    let cut = opts.max_rchi2_spot.max(4.0 * med);
    all.into_iter().filter(|m| rchi(m) <= cut).collect()
}

/// Whether any pixel of the 3×3 box around (x, y) is masked or has no weight.
pub fn core_masked(img: &PreprocImage, x: f64, y: f64) -> bool {
    let (ny, nx) = img.shape();
    let (cx, cy) = (x.round() as i64, y.round() as i64);
    for yy in cy - 1..=cy + 1 {
        for xx in cx - 1..=cx + 1 {
            if xx < 0 || yy < 0 || xx >= nx as i64 || yy >= ny as i64 {
                return true;
            }
            let (xu, yu) = (xx as usize, yy as usize);
            if img.mask[[yu, xu]] != 0 || img.ivar[[yu, xu]] <= 0.0 {
                return true;
            }
        }
    }
    false
}

/// The arc lines of the instrument's lamps in `[wmin, wmax]` (Angstrom), strength = expected
/// photon rate.
pub fn arc_reflines(inst: &crate::instrument::Instrument, wmin: f64, wmax: f64) -> Vec<RefLine> {
    inst.arc_lines(wmin, wmax)
        .into_iter()
        .map(|l| RefLine {
            wave: l.wave,
            strength: l.rate,
        })
        .collect()
}

/// The night-sky emission lines in `[wmin, wmax]` (Angstrom), strength relative to [O I] 5578.9.
pub fn sky_reflines(wmin: f64, wmax: f64) -> Vec<RefLine> {
    crate::speclib::sky::lines()
        .iter()
        .filter(|l| l.wave >= wmin && l.wave <= wmax)
        .map(|l| RefLine {
            wave: l.wave,
            strength: l.strength,
        })
        .collect()
}
