//! redrock output files (reference/redshift.md §4.1): `redrock-*.fits` with `REDSHIFTS`,
//! `FIBERMAP` (coadded), `EXP_FIBERMAP` and `TSNR2`, with redrock 0.21's column names and
//! types; and the χ²(z) details file (`Z_<key>`, `ZCHI2_<key> [ntarget, nz]`,
//! `PENALTY_<key>` per template, as ../shared/data/redshift/redrock-30-zscan.fits).

use std::path::Path;

use super::fits::{Column, ColumnData, FitsReader, FitsWriter, Provenance, Result};
use super::spectra::write_with_logicals;
use super::table::Table;

/// One REDSHIFTS row (the best candidate of a target).
#[derive(Debug, Clone)]
pub struct RedshiftRow {
    pub targetid: i64,
    pub z: f64,
    pub zerr: f64,
    pub zwarn: i64,
    pub chi2: f64,
    /// Coefficients, zero-padded by the writer to the widest template.
    pub coeff: Vec<f64>,
    /// `PCA` or `NONE`.
    pub fitmethod: String,
    pub npixels: i64,
    pub spectype: String,
    pub subtype: String,
    pub ncoeff: i64,
    pub deltachi2: f64,
}

/// Template identification written as TEMNAMnn / TEMVERnn / TEMFILnn.
#[derive(Debug, Clone)]
pub struct TemplateInfo {
    pub fulltype: String,
    pub version: String,
    pub filename: String,
}

/// A redrock catalog in memory.
#[derive(Debug, Clone)]
pub struct RedshiftCatalog {
    pub rows: Vec<RedshiftRow>,
    /// Width of COEFF (largest nbasis of the template set).
    pub ncoeff_max: usize,
    pub templates: Vec<TemplateInfo>,
    pub fibermap: Table,
    pub exp_fibermap: Table,
    pub tsnr2: Table,
    /// Input primary-header keywords passed through (SPGRP, TILEID …).
    pub header: Vec<(String, String)>,
}

fn padded(v: impl Iterator<Item = String>, width: usize) -> ColumnData {
    // Pad to redrock's fixed widths (FITMETHOD 4A, SPECTYPE 6A, SUBTYPE 20A); FITS readers
    // strip the trailing blanks.
    ColumnData::Str(
        v.map(|s| {
            let mut s: String = s.chars().take(width).collect();
            while s.len() < width {
                s.push(' ');
            }
            s
        })
        .collect(),
    )
}

impl RedshiftCatalog {
    /// The REDSHIFTS columns with redrock 0.21's names and types
    /// (K, D, D, K, D, nD, 4A, K, 6A, 20A, K, D).
    pub fn redshift_columns(&self) -> Vec<Column> {
        let r = &self.rows;
        let n = self.ncoeff_max.max(1);
        let mut coeff = vec![0.0; r.len() * n];
        for (i, row) in r.iter().enumerate() {
            for (k, c) in row.coeff.iter().take(n).enumerate() {
                coeff[i * n + k] = *c;
            }
        }
        vec![
            Column::new(
                "TARGETID",
                ColumnData::I64(r.iter().map(|x| x.targetid).collect()),
            ),
            Column::new("Z", ColumnData::F64(r.iter().map(|x| x.z).collect())),
            Column::new("ZERR", ColumnData::F64(r.iter().map(|x| x.zerr).collect())),
            Column::new(
                "ZWARN",
                ColumnData::I64(r.iter().map(|x| x.zwarn).collect()),
            ),
            Column::new("CHI2", ColumnData::F64(r.iter().map(|x| x.chi2).collect())),
            Column::new(
                "COEFF",
                ColumnData::F64Vec {
                    data: coeff,
                    repeat: n,
                },
            ),
            Column::new(
                "FITMETHOD",
                padded(r.iter().map(|x| x.fitmethod.clone()), 4),
            ),
            Column::new(
                "NPIXELS",
                ColumnData::I64(r.iter().map(|x| x.npixels).collect()),
            ),
            Column::new("SPECTYPE", padded(r.iter().map(|x| x.spectype.clone()), 6)),
            Column::new("SUBTYPE", padded(r.iter().map(|x| x.subtype.clone()), 20)),
            Column::new(
                "NCOEFF",
                ColumnData::I64(r.iter().map(|x| x.ncoeff).collect()),
            ),
            Column::new(
                "DELTACHI2",
                ColumnData::F64(r.iter().map(|x| x.deltachi2).collect()),
            ),
        ]
    }

    fn header_keys(&self, w: &mut FitsWriter) -> Result<()> {
        w.key("LONGSTRN", "OGIP 1.0")?;
        w.key("RRVER", format!("spx {}", env!("CARGO_PKG_VERSION")))?;
        for (i, t) in self.templates.iter().enumerate() {
            w.key(&format!("TEMNAM{i:02}"), t.fulltype.as_str())?;
            w.key(&format!("TEMVER{i:02}"), t.version.as_str())?;
            w.key(&format!("TEMFIL{i:02}"), t.filename.as_str())?;
        }
        for (k, v) in &self.header {
            match v.trim().parse::<i64>() {
                Ok(x) => w.key(k, x)?,
                Err(_) => w.key(k, v.as_str())?,
            }
        }
        Ok(())
    }

    /// Writes the catalog atomically (PRIMARY, REDSHIFTS, FIBERMAP, EXP_FIBERMAP, TSNR2).
    pub fn write(&self, path: &Path, prov: &Provenance) -> Result<()> {
        let mut w = FitsWriter::create(path, prov)?;
        self.header_keys(&mut w)?;
        w.table("REDSHIFTS", &self.redshift_columns())?;
        self.header_keys(&mut w)?;
        self.fibermap.write(&mut w, "FIBERMAP")?;
        write_with_logicals(&mut w, "EXP_FIBERMAP", &self.exp_fibermap)?;
        self.tsnr2.write(&mut w, "TSNR2")?;
        w.commit()?;
        Ok(())
    }

    /// Reads the REDSHIFTS rows of a redrock (or spx) catalog.
    pub fn read_redshifts(path: &Path) -> Result<Vec<RedshiftRow>> {
        let mut r = FitsReader::open(path)?;
        let h = "REDSHIFTS";
        let tid: Vec<i64> = r.col(h, "TARGETID")?;
        let n = tid.len();
        let coeff: Vec<f64> = r.col(h, "COEFF")?;
        let nc = coeff.len().checked_div(n).unwrap_or(0);
        let z: Vec<f64> = r.col(h, "Z")?;
        let zerr: Vec<f64> = r.col(h, "ZERR")?;
        let zwarn: Vec<i64> = r.col(h, "ZWARN")?;
        let chi2: Vec<f64> = r.col(h, "CHI2")?;
        let fm: Vec<String> = r.col(h, "FITMETHOD")?;
        let npix: Vec<i64> = r.col(h, "NPIXELS")?;
        let st: Vec<String> = r.col(h, "SPECTYPE")?;
        let sub: Vec<String> = r.col(h, "SUBTYPE")?;
        let ncoeff: Vec<i64> = r.col(h, "NCOEFF")?;
        let d: Vec<f64> = r.col(h, "DELTACHI2")?;
        Ok((0..n)
            .map(|i| RedshiftRow {
                targetid: tid[i],
                z: z[i],
                zerr: zerr[i],
                zwarn: zwarn[i],
                chi2: chi2[i],
                coeff: coeff[i * nc..(i + 1) * nc].to_vec(),
                fitmethod: fm[i].trim().to_string(),
                npixels: npix[i],
                spectype: st[i].trim().to_string(),
                subtype: sub[i].trim().to_string(),
                ncoeff: ncoeff[i],
                deltachi2: d[i],
            })
            .collect())
    }
}

/// The χ²(z) scans of one template for all targets.
#[derive(Debug, Clone)]
pub struct ScanDetails {
    /// Details key (`GALAXY`, `QSO_HIZ` …).
    pub key: String,
    pub redshifts: Vec<f64>,
    /// `[ntarget * nz]`, χ² without penalty.
    pub zchi2: Vec<f64>,
    /// `[ntarget * nz]`.
    pub penalty: Vec<f64>,
}

/// Writes the details file: `TARGETID [ntarget]` then per template `Z_<key>` (f8),
/// `ZCHI2_<key>` and `PENALTY_<key>` (`[ntarget, nz]`, f4 as redrock stores them).
pub fn write_details(
    path: &Path,
    prov: &Provenance,
    targetids: &[i64],
    scans: &[ScanDetails],
) -> Result<()> {
    let mut w = FitsWriter::create(path, prov)?;
    let nt = targetids.len();
    w.image("TARGETID", &[nt], targetids)?;
    for s in scans {
        let nz = s.redshifts.len();
        w.image(&format!("Z_{}", s.key), &[nz], &s.redshifts)?;
        let f: Vec<f32> = s.zchi2.iter().map(|&v| v as f32).collect();
        w.image(&format!("ZCHI2_{}", s.key), &[nt, nz], &f)?;
        let p: Vec<f32> = s.penalty.iter().map(|&v| v as f32).collect();
        w.image(&format!("PENALTY_{}", s.key), &[nt, nz], &p)?;
    }
    w.commit()?;
    Ok(())
}
