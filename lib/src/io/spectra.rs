//! DESI spectra and coadd files (`desispec.io.write_spectra` layout, reference/redshift.md
//! §2.1): `FIBERMAP`, optional `EXP_FIBERMAP` (coadds) and `SCORES`, and per camera band
//! `<B>_WAVELENGTH [nwave]`, `<B>_FLUX`/`<B>_IVAR [nspec, nwave]`, optional `<B>_MASK`, and
//! `<B>_RESOLUTION [nspec, ndiag, nwave]` (DIA storage, offsets +ndiag/2 … −ndiag/2, data
//! indexed by column). Band names come from the EXTNAME prefixes of `*_WAVELENGTH` HDUs.

use std::path::Path;

use fitsio::hdu::HduInfo;
use fitsio::tables::ColumnDataType;
use ndarray::{Array2, Array3};

use super::fits::{
    Column, ColumnData, FitsError, FitsReader, FitsWriter, Provenance, Result, PRIMARY,
};

/// A binary table held in memory, column by column (used for FIBERMAP, EXP_FIBERMAP, SCORES).
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub columns: Vec<Column>,
}

impl Table {
    /// The column named `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&ColumnData> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
            .map(|c| &c.data)
    }

    /// Number of rows (0 for a table without columns).
    pub fn nrows(&self) -> usize {
        self.columns.first().map(|c| col_len(&c.data)).unwrap_or(0)
    }

    /// Integer column as i64 (any integer width), if present.
    pub fn i64_col(&self, name: &str) -> Option<Vec<i64>> {
        match self.get(name)? {
            ColumnData::I64(v) => Some(v.clone()),
            ColumnData::I32(v) => Some(v.iter().map(|&x| x as i64).collect()),
            ColumnData::I16(v) => Some(v.iter().map(|&x| x as i64).collect()),
            ColumnData::U8(v) => Some(v.iter().map(|&x| x as i64).collect()),
            _ => None,
        }
    }

    /// Floating column as f64, if present.
    pub fn f64_col(&self, name: &str) -> Option<Vec<f64>> {
        match self.get(name)? {
            ColumnData::F64(v) => Some(v.clone()),
            ColumnData::F32(v) => Some(v.iter().map(|&x| x as f64).collect()),
            _ => None,
        }
    }

    /// String column, if present.
    pub fn str_col(&self, name: &str) -> Option<Vec<String>> {
        match self.get(name)? {
            ColumnData::Str(v) => Some(v.clone()),
            _ => None,
        }
    }

    /// The rows `rows` (in that order) of every column.
    pub fn select(&self, rows: &[usize]) -> Table {
        Table {
            columns: self
                .columns
                .iter()
                .map(|c| Column {
                    name: c.name.clone(),
                    unit: c.unit.clone(),
                    data: select_rows(&c.data, rows),
                })
                .collect(),
        }
    }

    /// Reads every column of table HDU `hdu`. Logical columns come back as U8 (0/1).
    pub fn read(r: &mut FitsReader, hdu: &str) -> Result<Table> {
        let path = r.path().to_path_buf();
        let descs = match r.hdu(hdu)?.info {
            HduInfo::TableInfo {
                column_descriptions,
                ..
            } => column_descriptions,
            _ => return Err(FitsError::hdu(&path, hdu, "is an image, expected a table")),
        };
        let mut columns = Vec::with_capacity(descs.len());
        for (i, d) in descs.iter().enumerate() {
            let name = d.name.as_str();
            let rep = d.data_type.repeat.max(1);
            let data = match d.data_type.typ {
                ColumnDataType::Double if rep > 1 => ColumnData::F64Vec {
                    data: r.col(hdu, name)?,
                    repeat: rep,
                },
                ColumnDataType::Float if rep > 1 => ColumnData::F32Vec {
                    data: r.col(hdu, name)?,
                    repeat: rep,
                },
                _ if rep > 1
                    && !matches!(
                        d.data_type.typ,
                        ColumnDataType::String | ColumnDataType::Text
                    ) =>
                {
                    return Err(FitsError::hdu(
                        &path,
                        hdu,
                        format!("column {name}: vector columns of this type are not supported"),
                    ))
                }
                ColumnDataType::Double => ColumnData::F64(r.col(hdu, name)?),
                ColumnDataType::Float => ColumnData::F32(r.col(hdu, name)?),
                ColumnDataType::LongLong => ColumnData::I64(r.col(hdu, name)?),
                ColumnDataType::Int | ColumnDataType::Long => ColumnData::I32(r.col(hdu, name)?),
                ColumnDataType::Short => ColumnData::I16(r.col(hdu, name)?),
                ColumnDataType::Byte => ColumnData::U8(r.col(hdu, name)?),
                ColumnDataType::Logical => ColumnData::U8(
                    r.col::<bool>(hdu, name)?
                        .into_iter()
                        .map(u8::from)
                        .collect(),
                ),
                ColumnDataType::String | ColumnDataType::Text => ColumnData::Str(
                    r.col::<String>(hdu, name)?
                        .into_iter()
                        .map(|s| s.trim_end().to_string())
                        .collect(),
                ),
                other => {
                    return Err(FitsError::hdu(
                        &path,
                        hdu,
                        format!("column {name}: unsupported type {other:?}"),
                    ))
                }
            };
            let unit = r
                .key_opt::<String>(hdu, &format!("TUNIT{}", i + 1))?
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty());
            columns.push(Column {
                name: name.to_string(),
                data,
                unit,
            });
        }
        Ok(Table { columns })
    }
}

fn col_len(d: &ColumnData) -> usize {
    match d {
        ColumnData::F64(v) => v.len(),
        ColumnData::F32(v) => v.len(),
        ColumnData::I64(v) => v.len(),
        ColumnData::I32(v) => v.len(),
        ColumnData::I16(v) => v.len(),
        ColumnData::U8(v) => v.len(),
        ColumnData::Str(v) => v.len(),
        ColumnData::F64Vec { data, repeat } => data.len() / (*repeat).max(1),
        ColumnData::F32Vec { data, repeat } => data.len() / (*repeat).max(1),
    }
}

fn pick<T: Clone>(v: &[T], rows: &[usize]) -> Vec<T> {
    rows.iter().map(|&r| v[r].clone()).collect()
}

fn pick_vec<T: Clone>(v: &[T], repeat: usize, rows: &[usize]) -> Vec<T> {
    rows.iter()
        .flat_map(|&r| v[r * repeat..(r + 1) * repeat].iter().cloned())
        .collect()
}

/// Rows `rows` of one column.
pub fn select_rows(d: &ColumnData, rows: &[usize]) -> ColumnData {
    match d {
        ColumnData::F64(v) => ColumnData::F64(pick(v, rows)),
        ColumnData::F32(v) => ColumnData::F32(pick(v, rows)),
        ColumnData::I64(v) => ColumnData::I64(pick(v, rows)),
        ColumnData::I32(v) => ColumnData::I32(pick(v, rows)),
        ColumnData::I16(v) => ColumnData::I16(pick(v, rows)),
        ColumnData::U8(v) => ColumnData::U8(pick(v, rows)),
        ColumnData::Str(v) => ColumnData::Str(pick(v, rows)),
        ColumnData::F64Vec { data, repeat } => ColumnData::F64Vec {
            data: pick_vec(data, *repeat, rows),
            repeat: *repeat,
        },
        ColumnData::F32Vec { data, repeat } => ColumnData::F32Vec {
            data: pick_vec(data, *repeat, rows),
            repeat: *repeat,
        },
    }
}

/// One camera band of a spectra file.
#[derive(Debug, Clone)]
pub struct Band {
    /// Lower-case band name (`b`, `r`, `z`), from the EXTNAME prefix.
    pub name: String,
    /// Wavelength of each pixel, Angstrom. `[nwave]`
    pub wave: Vec<f64>,
    /// Flux `[nspec, nwave]` (units as in the file, 1e-17 erg/s/cm²/Å for DESI spectra).
    pub flux: Array2<f32>,
    /// Inverse variance of `flux`. `[nspec, nwave]`
    pub ivar: Array2<f32>,
    /// Pixel mask (0 = good), if the file has one. `[nspec, nwave]`
    pub mask: Option<Array2<i32>>,
    /// Resolution matrix diagonals `[nspec, ndiag, nwave]`; diagonal `d` has offset
    /// `ndiag/2 − d`, and `R[i, i+o] = resolution[s, d, i+o]` (DIA storage by column).
    pub resolution: Array3<f32>,
}

/// A DESI spectra (or coadd) file in memory.
#[derive(Debug, Clone)]
pub struct Spectra {
    /// Camera bands in file order.
    pub bands: Vec<Band>,
    /// One row per spectrum (`[nspec]`), in the order of the flux rows.
    pub fibermap: Table,
    /// Per-exposure fibermap (coadd files only).
    pub exp_fibermap: Option<Table>,
    /// SCORES table (TSNR2 etc.), if present.
    pub scores: Option<Table>,
    /// Primary-header keywords passed through by redrock (SPGRP, TILEID, NIGHT …).
    pub header: Vec<(String, String)>,
}

/// Primary-header keywords redrock copies from the spectra file into its output.
pub const PASSTHROUGH_KEYS: [&str; 13] = [
    "SPGRP", "SPGRPVAL", "TILEID", "SPECTRO", "PETAL", "NIGHT", "EXPID", "HPXPIXEL", "HPXNSIDE",
    "HPXNEST", "SURVEY", "PROGRAM", "FAPRGRM",
];

impl Spectra {
    /// Number of spectra (rows).
    pub fn nspec(&self) -> usize {
        self.fibermap.nrows()
    }

    /// TARGETID of each spectrum.
    pub fn targetids(&self) -> Vec<i64> {
        self.fibermap.i64_col("TARGETID").unwrap_or_default()
    }

    /// Reads a spectra or coadd file. Missing required HDUs, inconsistent shapes and NaN in
    /// wavelengths or resolution are errors naming the file and HDU; NaN flux/ivar values are
    /// data problems the caller decides on (redrock zeroes their weight).
    pub fn read(path: &Path) -> Result<Spectra> {
        let mut r = FitsReader::open(path)?;
        let names = r.hdu_names()?;
        let fibermap = Table::read(&mut r, "FIBERMAP")?;
        let nspec = fibermap.nrows();
        if fibermap.i64_col("TARGETID").is_none() {
            return Err(FitsError::hdu(
                path,
                "FIBERMAP",
                "column TARGETID is missing",
            ));
        }
        let exp_fibermap = if names.iter().any(|n| n == "EXP_FIBERMAP") {
            Some(Table::read(&mut r, "EXP_FIBERMAP")?)
        } else {
            None
        };
        let scores = if names.iter().any(|n| n == "SCORES") {
            Some(Table::read(&mut r, "SCORES")?)
        } else {
            None
        };
        let mut bands = Vec::new();
        for n in &names {
            let Some(b) = n.strip_suffix("_WAVELENGTH") else {
                continue;
            };
            let wave = r.image1::<f64>(n)?.to_vec();
            if wave.iter().any(|v| !v.is_finite()) || wave.windows(2).any(|w| w[1] <= w[0]) {
                return Err(FitsError::hdu(
                    path,
                    n,
                    "wavelengths must be finite and increasing",
                ));
            }
            let nw = wave.len();
            let flux = r.image2::<f32>(&format!("{b}_FLUX"))?;
            let ivar = r.image2::<f32>(&format!("{b}_IVAR"))?;
            let mask_name = format!("{b}_MASK");
            let mask = if names.iter().any(|x| *x == mask_name) {
                Some(r.image2::<i32>(&mask_name)?)
            } else {
                None
            };
            let res_name = format!("{b}_RESOLUTION");
            let resolution = r.image3::<f32>(&res_name)?;
            for (what, dim) in [
                (format!("{b}_FLUX"), flux.dim()),
                (format!("{b}_IVAR"), ivar.dim()),
            ] {
                if dim != (nspec, nw) {
                    return Err(FitsError::hdu(
                        path,
                        &what,
                        format!("shape {dim:?}, expected ({nspec}, {nw}) from FIBERMAP and {n}"),
                    ));
                }
            }
            if let Some(m) = &mask {
                if m.dim() != (nspec, nw) {
                    return Err(FitsError::hdu(
                        path,
                        &mask_name,
                        "shape does not match FLUX",
                    ));
                }
            }
            let (rs, nd, rw) = resolution.dim();
            if rs != nspec || rw != nw || nd % 2 == 0 {
                return Err(FitsError::hdu(
                    path,
                    &res_name,
                    format!("shape ({rs}, {nd}, {rw}); expected ({nspec}, odd ndiag, {nw})"),
                ));
            }
            if resolution.iter().any(|v| !v.is_finite()) {
                return Err(FitsError::hdu(path, &res_name, "contains NaN or Inf"));
            }
            bands.push(Band {
                name: b.to_ascii_lowercase(),
                wave,
                flux,
                ivar,
                mask,
                resolution,
            });
        }
        if bands.is_empty() {
            return Err(FitsError::file(
                path,
                "no <BAND>_WAVELENGTH HDU: not a spectra file",
            ));
        }
        let mut header = Vec::new();
        for k in PASSTHROUGH_KEYS {
            if let Ok(Some(v)) = r.key_opt::<String>(PRIMARY, k) {
                header.push((k.to_string(), v));
            }
        }
        Ok(Spectra {
            bands,
            fibermap,
            exp_fibermap,
            scores,
            header,
        })
    }

    /// Writes the file in desispec's layout (FIBERMAP, [EXP_FIBERMAP], per band WAVELENGTH,
    /// FLUX, IVAR, MASK, RESOLUTION, then SCORES), atomically.
    pub fn write(&self, path: &Path, prov: &Provenance) -> Result<()> {
        let mut w = FitsWriter::create(path, prov)?;
        for (k, v) in &self.header {
            match v.parse::<i64>() {
                Ok(i) => w.key(k, i)?,
                Err(_) => w.key(k, v.as_str())?,
            }
        }
        w.table("FIBERMAP", &self.fibermap.columns)?;
        if let Some(t) = &self.exp_fibermap {
            w.table("EXP_FIBERMAP", &t.columns)?;
        }
        for b in &self.bands {
            let up = b.name.to_ascii_uppercase();
            let nw = b.wave.len();
            let ns = b.flux.nrows();
            w.image(&format!("{up}_WAVELENGTH"), &[nw], &b.wave)?;
            w.key("BUNIT", "Angstrom")?;
            w.image(
                &format!("{up}_FLUX"),
                &[ns, nw],
                &b.flux.iter().copied().collect::<Vec<_>>(),
            )?;
            w.key("BUNIT", "10**-17 erg/(s cm2 Angstrom)")?;
            w.image(
                &format!("{up}_IVAR"),
                &[ns, nw],
                &b.ivar.iter().copied().collect::<Vec<_>>(),
            )?;
            w.key("BUNIT", "10**+34 (s2 cm4 Angstrom2) / erg2")?;
            if let Some(m) = &b.mask {
                w.image(
                    &format!("{up}_MASK"),
                    &[ns, nw],
                    &m.iter().copied().collect::<Vec<_>>(),
                )?;
            }
            let (a, d, c) = b.resolution.dim();
            w.image(
                &format!("{up}_RESOLUTION"),
                &[a, d, c],
                &b.resolution.iter().copied().collect::<Vec<_>>(),
            )?;
        }
        if let Some(t) = &self.scores {
            w.table("SCORES", &t.columns)?;
        }
        w.commit()?;
        Ok(())
    }
}
