//! Turning a spectra file into fit-ready targets exactly as redrock's DESI reader conditions
//! them (reference/redshift.md §2.1; redrock `external/desi.py`, `targets.py`): NaN/Inf → 0,
//! masked and 5σ-negative pixels → ivar 0, ivar-weighted coadd of the spectra of one target per
//! band (resolution diagonals weighted by ivar, so columns with ivar 0 drop out of R), ivar 0
//! where an R row sums to < 0.99, then the sky-line mask.

// Index loops mirror the formulas (and redrock's code) over several parallel arrays.
#![allow(clippy::needless_range_loop)]

use crate::io::spectra::Spectra;

use super::rebin::centers2edges;

/// redrock `min_resolution_integral`.
pub const MIN_RESOLUTION_INTEGRAL: f64 = 0.99;
/// redrock `--negflux-nsig` default.
pub const NEGFLUX_NSIG: f64 = 5.0;
/// Observed-frame sky lines masked by rrdesi unless `--no-skymask`, Angstrom.
pub const SKY_MASK: [(f64, f64); 2] = [(5572.0, 5582.0), (9792.0, 9795.0)];

/// One camera's wavelength grid, shared by all targets.
#[derive(Debug, Clone)]
pub struct Grid {
    /// Band name (`b`, `r`, `z`).
    pub band: String,
    /// Pixel centres, Angstrom. `[npix]`
    pub wave: Vec<f64>,
    /// Pixel edges, Angstrom. `[npix+1]`
    pub edges: Vec<f64>,
    /// Number of resolution diagonals (odd).
    pub ndiag: usize,
}

/// One target's data in one camera.
#[derive(Debug, Clone)]
pub struct CameraData {
    /// Resolution rows: `rrow[i*ndiag + d] = R[i, i + ndiag/2 − d]` (0 outside the matrix).
    pub rrow: Vec<f64>,
    /// Weight (ivar) per pixel after all masks. `[npix]`
    pub ivar: Vec<f64>,
    /// Flux per pixel. `[npix]`
    pub flux: Vec<f64>,
}

/// A target ready for the χ² scan.
#[derive(Debug, Clone)]
pub struct Target {
    pub targetid: i64,
    /// One entry per grid, in grid order.
    pub cams: Vec<CameraData>,
    /// Σ w f² over all cameras.
    pub fwf: f64,
    /// Σ w over all cameras (0 → HUGE_CHI2 everywhere).
    pub wsum: f64,
    /// Pixels with ivar > 0 over all cameras (redrock NPIXELS).
    pub npixels: usize,
}

/// Wavelength grids of the spectra's bands.
pub fn grids(spectra: &Spectra) -> Vec<Grid> {
    spectra
        .bands
        .iter()
        .map(|b| Grid {
            band: b.name.clone(),
            wave: b.wave.clone(),
            edges: centers2edges(&b.wave),
            ndiag: b.resolution.dim().1,
        })
        .collect()
}

/// Unique TARGETIDs in first-appearance order (redrock's target order).
pub fn unique_targetids(spectra: &Spectra) -> Vec<i64> {
    let mut seen = std::collections::HashSet::new();
    spectra
        .targetids()
        .into_iter()
        .filter(|t| seen.insert(*t))
        .collect()
}

/// Conditions and coadds the spectra of each of `targetids` (all rows with that TARGETID).
pub fn prepare_targets(spectra: &Spectra, targetids: &[i64], skymask: bool) -> Vec<Target> {
    let ids = spectra.targetids();
    targetids
        .iter()
        .map(|&tid| {
            let rows: Vec<usize> = (0..ids.len()).filter(|&i| ids[i] == tid).collect();
            let cams: Vec<CameraData> = spectra
                .bands
                .iter()
                .map(|b| coadd_band(b, &rows, skymask))
                .collect();
            let mut fwf = 0.0;
            let mut wsum = 0.0;
            let mut npixels = 0;
            for c in &cams {
                for (w, f) in c.ivar.iter().zip(&c.flux) {
                    fwf += w * f * f;
                    wsum += w;
                    npixels += usize::from(*w > 0.0);
                }
            }
            Target {
                targetid: tid,
                cams,
                fwf,
                wsum,
                npixels,
            }
        })
        .collect()
}

fn coadd_band(b: &crate::io::spectra::Band, rows: &[usize], skymask: bool) -> CameraData {
    let nw = b.wave.len();
    let nd = b.resolution.dim().1;
    let half = (nd / 2) as isize;
    let mut wsum = vec![0.0f64; nw];
    let mut wflux = vec![0.0f64; nw];
    let mut uflux = vec![0.0f64; nw];
    let mut rdiag = vec![0.0f64; nd * nw];
    for &s in rows {
        for j in 0..nw {
            let mut f = b.flux[[s, j]] as f64;
            let mut iv = b.ivar[[s, j]] as f64;
            if !f.is_finite() {
                f = 0.0;
                iv = 0.0;
            }
            if !iv.is_finite() {
                iv = 0.0;
            }
            if f * iv.sqrt() < -NEGFLUX_NSIG {
                iv = 0.0;
            }
            if let Some(m) = &b.mask {
                if m[[s, j]] != 0 {
                    iv = 0.0;
                }
            }
            uflux[j] += f;
            wsum[j] += iv;
            wflux[j] += iv * f;
            for d in 0..nd {
                rdiag[d * nw + j] += b.resolution[[s, d, j]] as f64 * iv;
            }
        }
    }
    let nspec = rows.len().max(1) as f64;
    let mut flux = vec![0.0; nw];
    for j in 0..nw {
        let bad = if wsum[j] == 0.0 { 1.0 } else { 0.0 };
        flux[j] = if bad > 0.0 {
            uflux[j] / nspec
        } else {
            wflux[j] / (wsum[j] + bad)
        };
        for d in 0..nd {
            rdiag[d * nw + j] /= wsum[j] + bad;
        }
    }
    let mut ivar = wsum;
    let mut rrow = vec![0.0; nw * nd];
    for i in 0..nw {
        let mut rowsum = 0.0;
        for d in 0..nd {
            let col = i as isize + half - d as isize;
            if col >= 0 && (col as usize) < nw {
                let v = rdiag[d * nw + col as usize];
                rrow[i * nd + d] = v;
                rowsum += v;
            }
        }
        if rowsum < MIN_RESOLUTION_INTEGRAL {
            ivar[i] = 0.0;
        }
        if skymask
            && SKY_MASK
                .iter()
                .any(|&(lo, hi)| b.wave[i] >= lo && b.wave[i] <= hi)
        {
            ivar[i] = 0.0;
        }
    }
    CameraData { rrow, ivar, flux }
}
