//! Reading the χ²(z) scans that `spx-redshift --details` writes (`io::redrock::write_details`:
//! TARGETID, then per template Z_<key>, ZCHI2_<key>, PENALTY_<key>).

use std::path::Path;

use crate::io::fits::FitsReader;
use crate::io::FitsError;

/// The scan of one target against one template.
#[derive(Debug, Clone)]
pub struct TargetScan {
    /// Details key (`GALAXY`, `QSO_HIZ`, `STAR_K` …).
    pub key: String,
    /// Redshift grid. `[nz]`
    pub z: Vec<f64>,
    /// χ² + penalty at each redshift (what redrock minimises). `[nz]`
    pub chi2: Vec<f64>,
}

/// The scans of `targetid` in the details file `path`, in the file's template order.
pub fn read_target_scans(path: &Path, targetid: i64) -> Result<Vec<TargetScan>, FitsError> {
    let mut r = FitsReader::open(path)?;
    let ids: Vec<i64> = r.image1::<i64>("TARGETID")?.to_vec();
    let Some(it) = ids.iter().position(|&t| t == targetid) else {
        return Err(FitsError::hdu(
            path,
            "TARGETID",
            format!("TARGETID {targetid} is not in this details file"),
        ));
    };
    let names = r.hdu_names()?;
    let mut out = Vec::new();
    for name in names.iter().filter_map(|n| n.strip_prefix("Z_")) {
        let z = r.image1::<f64>(&format!("Z_{name}"))?.to_vec();
        let chi = r.image2::<f64>(&format!("ZCHI2_{name}"))?;
        let pen = if r.has_hdu(&format!("PENALTY_{name}")) {
            Some(r.image2::<f64>(&format!("PENALTY_{name}"))?)
        } else {
            None
        };
        if chi.dim() != (ids.len(), z.len()) {
            return Err(FitsError::hdu(
                path,
                &format!("ZCHI2_{name}"),
                format!(
                    "shape {:?}, expected [{}, {}] (targets × redshifts)",
                    chi.dim(),
                    ids.len(),
                    z.len()
                ),
            ));
        }
        let chi2 = (0..z.len())
            .map(|j| {
                chi[[it, j]]
                    + pen
                        .as_ref()
                        .filter(|p| p.dim() == chi.dim())
                        .map_or(0.0, |p| p[[it, j]])
            })
            .collect();
        out.push(TargetScan {
            key: name.to_string(),
            z,
            chi2,
        });
    }
    if out.is_empty() {
        return Err(FitsError::hdu(
            path,
            "Z_*",
            "no χ² scans (Z_<template> HDUs)",
        ));
    }
    Ok(out)
}
