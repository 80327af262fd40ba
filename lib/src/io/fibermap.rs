//! FIBERMAP tables (reference/calibration.md §5.5): one row per fiber of a frame (or per
//! spectrum of a spectra file). All columns pass through; the ones stages use have accessors.

use super::fits::{Column, ColumnData, FitsReader, FitsWriter};
use super::table::Table;
use super::{FitsError, Result};
use std::path::Path;

/// Column names used by the stages.
pub mod col {
    pub const TARGETID: &str = "TARGETID";
    pub const FIBER: &str = "FIBER";
    pub const PETAL_LOC: &str = "PETAL_LOC";
    pub const OBJTYPE: &str = "OBJTYPE";
    pub const FIBERSTATUS: &str = "FIBERSTATUS";
    pub const TARGET_RA: &str = "TARGET_RA";
    pub const TARGET_DEC: &str = "TARGET_DEC";
    pub const DESI_TARGET: &str = "DESI_TARGET";
    pub const MWS_TARGET: &str = "MWS_TARGET";
    pub const EBV: &str = "EBV";
    pub const PHOTSYS: &str = "PHOTSYS";
    pub const FLUX_G: &str = "FLUX_G";
    pub const FLUX_R: &str = "FLUX_R";
    pub const FLUX_Z: &str = "FLUX_Z";
}

/// A FIBERMAP table. Invariant: it has a FIBER column.
#[derive(Debug, Clone)]
pub struct Fibermap {
    table: Table,
}

impl Fibermap {
    /// Wraps a table that has a FIBER column.
    pub fn from_table(table: Table) -> std::result::Result<Self, String> {
        if table.i64s(col::FIBER).is_none() {
            return Err("FIBERMAP has no numeric FIBER column".into());
        }
        Ok(Fibermap { table })
    }

    /// The smallest valid fibermap: FIBER, TARGETID (-1, unknown), OBJTYPE "TGT",
    /// FIBERSTATUS 0 and PETAL_LOC = fiber / 500. Used when a frame has none.
    pub fn minimal(fibers: &[i32]) -> Self {
        let n = fibers.len();
        let table = Table::new(vec![
            Column::new(col::TARGETID, ColumnData::I64(vec![-1; n])),
            Column::new(
                col::PETAL_LOC,
                ColumnData::I16(fibers.iter().map(|f| (f / 500) as i16).collect()),
            ),
            Column::new(col::FIBER, ColumnData::I32(fibers.to_vec())),
            Column::new(col::FIBERSTATUS, ColumnData::I32(vec![0; n])),
            Column::new(col::OBJTYPE, ColumnData::Str(vec!["TGT".into(); n])),
        ])
        .unwrap_or_default();
        Fibermap { table }
    }

    /// Reads table HDU `hdu` (usually "FIBERMAP") of `r`.
    pub fn read(r: &mut FitsReader, hdu: &str) -> Result<Self> {
        let table = Table::read(r, hdu)?;
        Fibermap::from_table(table).map_err(|e| FitsError::hdu(r.path(), hdu, e))
    }

    /// Reads the FIBERMAP HDU of a file.
    pub fn read_file(path: &Path) -> Result<Self> {
        let mut r = FitsReader::open(path)?;
        Self::read(&mut r, "FIBERMAP")
    }

    /// Appends as HDU `extname`.
    pub fn write(&self, w: &mut FitsWriter, extname: &str) -> Result<()> {
        self.table.write(w, extname)
    }

    /// The underlying table.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Mutable access, e.g. to add columns (FIBER must stay).
    pub fn table_mut(&mut self) -> &mut Table {
        &mut self.table
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.table.nrows()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// FIBER per row (0–4999).
    pub fn fibers(&self) -> Vec<i32> {
        self.table
            .i64s(col::FIBER)
            .unwrap_or_default()
            .into_iter()
            .map(|v| v as i32)
            .collect()
    }

    /// TARGETID per row (-1 when the column is absent).
    pub fn targetids(&self) -> Vec<i64> {
        self.table
            .i64s(col::TARGETID)
            .unwrap_or_else(|| vec![-1; self.len()])
    }

    /// OBJTYPE per row ("TGT", "SKY", "NON", "BAD"; "TGT" when absent).
    pub fn objtypes(&self) -> Vec<String> {
        self.table
            .strs(col::OBJTYPE)
            .unwrap_or_else(|| vec!["TGT".into(); self.len()])
    }

    /// FIBERSTATUS per row (0 when absent).
    pub fn fiberstatus(&self) -> Vec<i32> {
        self.table
            .i64s(col::FIBERSTATUS)
            .map(|v| v.into_iter().map(|x| x as i32).collect())
            .unwrap_or_else(|| vec![0; self.len()])
    }

    /// Rows whose OBJTYPE is SKY.
    pub fn sky_rows(&self) -> Vec<usize> {
        self.objtypes()
            .iter()
            .enumerate()
            .filter(|(_, t)| *t == "SKY")
            .map(|(i, _)| i)
            .collect()
    }

    /// A fibermap of rows `rows`.
    pub fn select(&self, rows: &[usize]) -> Fibermap {
        Fibermap {
            table: self.table.select(rows),
        }
    }
}
