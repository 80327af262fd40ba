//! A target's spectrum per camera with its best-fit redshift model, rebuilt exactly as
//! redrock evaluates it (reference/redshift.md §2): the template basis redshifted to the
//! fitted z, rebinned onto each camera grid (flux-preserving trapezoids), IGM-absorbed for
//! QSOs, convolved with the target's resolution matrix, and summed with the catalog's COEFF.

use std::path::Path;

use thiserror::Error;

use crate::io::redrock::RedshiftRow;
use crate::io::spectra::Spectra;
use crate::io::templates::Template;
use crate::redshift::scan::{build_block, Prepared, LANES};
use crate::redshift::target::{grids, prepare_targets, MIN_RESOLUTION_INTEGRAL};

/// Why a model cannot be rebuilt.
#[derive(Debug, Error)]
pub enum ModelError {
    #[error("{}: TARGETID {targetid} is not in FIBERMAP", path.display())]
    NoTarget {
        path: std::path::PathBuf,
        targetid: i64,
    },
    #[error(
        "no template {fulltype} among the templates given (redrock file fitted with another set?)"
    )]
    NoTemplate { fulltype: String },
    #[error("template {fulltype} does not cover the cameras' wavelengths at z = {z}")]
    NoCoverage { fulltype: String, z: f64 },
    #[error("template {fulltype} has {nbasis} basis vectors but the catalog row has {ncoeff} coefficients")]
    Coeff {
        fulltype: String,
        nbasis: usize,
        ncoeff: usize,
    },
}

/// One camera of one target: the ivar-weighted coadd of its spectra (as redrock conditions
/// them) and the model.
#[derive(Debug, Clone)]
pub struct BandSpectrum {
    /// Band name (`b`, `r`, `z`).
    pub band: String,
    /// Pixel centres, Angstrom. `[npix]`
    pub wave: Vec<f64>,
    /// Flux, in the spectra's unit (1e-17 erg/s/cm²/Angstrom for DESI spectra). `[npix]`
    pub flux: Vec<f64>,
    /// Inverse variance after redrock's masks (0 where masked). `[npix]`
    pub ivar: Vec<f64>,
    /// Best-fit model in the flux unit, `None` when the catalog row has no fit; per pixel
    /// `None` where the coadded resolution row is incomplete (all exposures masked there:
    /// redrock drops those columns, so the model is undefined, not zero). `[npix]`
    pub model: Option<Vec<Option<f64>>>,
}

/// The template of a catalog row (same SPECTYPE and SUBTYPE, blanks ignored).
pub fn template_of<'a>(row: &RedshiftRow, templates: &'a [Template]) -> Option<&'a Template> {
    templates.iter().find(|t| {
        t.spectype.trim() == row.spectype.trim() && t.subtype.trim() == row.subtype.trim()
    })
}

/// Whether a row carries a fit to draw (rrdesi writes FITMETHOD NONE and zero COEFF for
/// targets without data).
pub fn has_fit(row: &RedshiftRow) -> bool {
    row.fitmethod.trim() != "NONE" && row.coeff.iter().any(|&c| c != 0.0)
}

/// The spectrum of `row.targetid` in `spectra` (read from `path`, for messages) per camera,
/// with the model of `row` when it has a fit. `skymask`: apply rrdesi's sky-line mask to ivar
/// (as the fit did; the χ² of data and model then equals the catalog's CHI2).
pub fn target_spectrum(
    spectra: &Spectra,
    path: &Path,
    row: &RedshiftRow,
    templates: &[Template],
    skymask: bool,
) -> Result<Vec<BandSpectrum>, ModelError> {
    if !spectra.targetids().contains(&row.targetid) {
        return Err(ModelError::NoTarget {
            path: path.to_path_buf(),
            targetid: row.targetid,
        });
    }
    let grids = grids(spectra);
    let tg = prepare_targets(spectra, &[row.targetid], skymask).remove(0);
    let models = if has_fit(row) {
        Some(model(row, templates, &grids, &tg)?)
    } else {
        None
    };
    Ok(grids
        .iter()
        .zip(tg.cams)
        .enumerate()
        .map(|(c, (g, cam))| BandSpectrum {
            band: g.band.clone(),
            wave: g.wave.clone(),
            flux: cam.flux,
            ivar: cam.ivar,
            model: models.as_ref().map(|m| m[c].clone()),
        })
        .collect())
}

/// Model per grid: `Σ_k coeff_k (R · T_k(z))`, the same rows of R the fit used.
fn model(
    row: &RedshiftRow,
    templates: &[Template],
    grids: &[crate::redshift::target::Grid],
    tg: &crate::redshift::target::Target,
) -> Result<Vec<Vec<Option<f64>>>, ModelError> {
    let fulltype = if row.subtype.trim().is_empty() {
        row.spectype.trim().to_string()
    } else {
        format!("{}:::{}", row.spectype.trim(), row.subtype.trim())
    };
    let t = template_of(row, templates).ok_or_else(|| ModelError::NoTemplate {
        fulltype: fulltype.clone(),
    })?;
    let nb = t.nbasis;
    // COEFF is padded with zeros to the widest template of the set.
    if row.coeff.len() < nb || row.coeff[nb..].iter().any(|&c| c != 0.0) {
        return Err(ModelError::Coeff {
            fulltype,
            nbasis: nb,
            ncoeff: row.coeff.len(),
        });
    }
    let p = Prepared::new(t.clone());
    let blk = build_block(&p, grids, &[row.z]).ok_or(ModelError::NoCoverage {
        fulltype: fulltype.clone(),
        z: row.z,
    })?;
    let coeff = &row.coeff[..nb];
    Ok(grids
        .iter()
        .enumerate()
        .map(|(c, g)| {
            let nd = g.ndiag;
            let cam = &tg.cams[c];
            let tb = &blk.cams[c];
            // Template at padded row r (lane 0): Σ_k a_k T_k; R row i touches padded rows
            // i + nd − 1 − d (see scan::accumulate).
            let comb = |r: usize| -> f64 {
                (0..nb)
                    .map(|k| coeff[k] * tb[(r * nb + k) * LANES])
                    .sum::<f64>()
            };
            (0..g.wave.len())
                .map(|i| {
                    let base = i + nd - 1;
                    let row = &cam.rrow[i * nd..(i + 1) * nd];
                    let m = (0..nd).map(|d| row[d] * comb(base - d)).sum();
                    (row.iter().sum::<f64>() >= MIN_RESOLUTION_INTEGRAL).then_some(m)
                })
                .collect()
        })
        .collect())
}

/// χ² of data against model over all cameras (Σ ivar (flux − model)² over pixels with
/// ivar > 0), for checks. `None` without a model or where a weighted pixel has none.
pub fn chi2(bands: &[BandSpectrum]) -> Option<f64> {
    let mut s = 0.0;
    for b in bands {
        let m = b.model.as_ref()?;
        for i in (0..b.wave.len()).filter(|&i| b.ivar[i] > 0.0) {
            s += b.ivar[i] * (b.flux[i] - m[i]?).powi(2);
        }
    }
    Some(s)
}
