//! A binary table held column by column, for tables that must pass through a stage with all
//! their columns (FIBERMAP, SCORES, EXP_FIBERMAP, TSNR2, METADATA): read every column with its
//! type and unit, select rows and columns, add columns, write back. The one table type of the
//! crate: frames, fibermaps, spectra, coadds and redrock catalogs all hold their tables as
//! [`Table`].

use fitsio::hdu::HduInfo;
use fitsio::tables::ColumnDataType;

use super::fits::{Column, ColumnData, FitsReader, FitsWriter};
use super::{FitsError, Result};

/// Columns of a table, all with the same number of rows.
#[derive(Debug, Clone, Default)]
pub struct Table {
    columns: Vec<Column>,
}

impl Table {
    /// A table from columns; they must all have the same length.
    pub fn new(columns: Vec<Column>) -> std::result::Result<Self, String> {
        let t = Table { columns };
        if let Some(first) = t.columns.first() {
            let n = first.data.len();
            if let Some(c) = t.columns.iter().find(|c| c.data.len() != n) {
                return Err(format!(
                    "column {} has {} rows, expected {n}",
                    c.name,
                    c.data.len()
                ));
            }
        }
        Ok(t)
    }

    /// Reads every column of table HDU `hdu`. Logical columns are read as 0/1 bytes; vector
    /// columns of integers as float vectors; zero-width columns are skipped. Text values lose
    /// their trailing blanks (insignificant in FITS), units their surrounding blanks.
    pub fn read(r: &mut FitsReader, hdu: &str) -> Result<Table> {
        let descs = match r.hdu(hdu)?.info {
            HduInfo::TableInfo {
                column_descriptions,
                ..
            } => column_descriptions,
            _ => {
                return Err(FitsError::hdu(
                    r.path(),
                    hdu,
                    "is an image, expected a table",
                ))
            }
        };
        let mut columns = Vec::with_capacity(descs.len());
        for (i, d) in descs.iter().enumerate() {
            let name = d.name.as_str();
            let repeat = d.data_type.repeat;
            use ColumnDataType as T;
            let data = match (d.data_type.typ, repeat) {
                (T::String | T::Text, _) => ColumnData::Str(
                    r.col::<String>(hdu, name)?
                        .into_iter()
                        .map(|s| s.trim_end().to_string())
                        .collect(),
                ),
                (T::Double, 1) => ColumnData::F64(r.col(hdu, name)?),
                (T::Float, 1) => ColumnData::F32(r.col(hdu, name)?),
                (T::LongLong, 1) => ColumnData::I64(r.col(hdu, name)?),
                (T::Int | T::Long, 1) => ColumnData::I32(r.col(hdu, name)?),
                (T::Short, 1) => ColumnData::I16(r.col(hdu, name)?),
                (T::Byte, 1) => ColumnData::U8(r.col(hdu, name)?),
                (T::Logical, 1) => ColumnData::U8(
                    r.col::<bool>(hdu, name)?
                        .into_iter()
                        .map(u8::from)
                        .collect(),
                ),
                (T::UnsignedLong, 1) => ColumnData::I64(
                    r.col::<u32>(hdu, name)?
                        .into_iter()
                        .map(i64::from)
                        .collect(),
                ),
                (T::UnsignedShort, 1) => ColumnData::I32(
                    r.col::<u16>(hdu, name)?
                        .into_iter()
                        .map(i32::from)
                        .collect(),
                ),
                (T::Float, _) => ColumnData::F32Vec {
                    data: r.col(hdu, name)?,
                    repeat,
                },
                (_, 0) => continue,
                (_, _) => ColumnData::F64Vec {
                    data: r.col(hdu, name)?,
                    repeat,
                },
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

    /// Appends this table to `w` as HDU `extname`.
    pub fn write(&self, w: &mut FitsWriter, extname: &str) -> Result<()> {
        w.table(extname, &self.columns)
    }

    /// Number of rows.
    pub fn nrows(&self) -> usize {
        self.columns.first().map(|c| c.data.len()).unwrap_or(0)
    }

    /// The columns in order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The columns in order, by value.
    pub fn into_columns(self) -> Vec<Column> {
        self.columns
    }

    /// The column named `name` (case-insensitive).
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// Whether the column exists.
    pub fn has(&self, name: &str) -> bool {
        self.column(name).is_some()
    }

    /// A numeric scalar column as i64 (floats are truncated); `None` if absent or text.
    pub fn i64s(&self, name: &str) -> Option<Vec<i64>> {
        Some(match &self.column(name)?.data {
            ColumnData::I64(v) => v.clone(),
            ColumnData::I32(v) => v.iter().map(|&x| x.into()).collect(),
            ColumnData::I16(v) => v.iter().map(|&x| x.into()).collect(),
            ColumnData::U8(v) => v.iter().map(|&x| x.into()).collect(),
            ColumnData::F64(v) => v.iter().map(|&x| x as i64).collect(),
            ColumnData::F32(v) => v.iter().map(|&x| x as i64).collect(),
            _ => return None,
        })
    }

    /// A numeric scalar column as f64; `None` if absent or text.
    pub fn f64s(&self, name: &str) -> Option<Vec<f64>> {
        Some(match &self.column(name)?.data {
            ColumnData::F64(v) => v.clone(),
            ColumnData::F32(v) => v.iter().map(|&x| x.into()).collect(),
            ColumnData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            ColumnData::I32(v) => v.iter().map(|&x| x.into()).collect(),
            ColumnData::I16(v) => v.iter().map(|&x| x.into()).collect(),
            ColumnData::U8(v) => v.iter().map(|&x| x.into()).collect(),
            _ => return None,
        })
    }

    /// A text column, trimmed; `None` if absent or numeric.
    pub fn strs(&self, name: &str) -> Option<Vec<String>> {
        match &self.column(name)?.data {
            ColumnData::Str(v) => Some(v.iter().map(|s| s.trim().to_string()).collect()),
            _ => None,
        }
    }

    /// Adds a column, or replaces the one with the same name (keeping its position).
    pub fn set(&mut self, column: Column) -> std::result::Result<(), String> {
        if !self.columns.is_empty() && column.data.len() != self.nrows() {
            return Err(format!(
                "column {} has {} rows, table has {}",
                column.name,
                column.data.len(),
                self.nrows()
            ));
        }
        match self
            .columns
            .iter_mut()
            .find(|c| c.name.eq_ignore_ascii_case(&column.name))
        {
            Some(c) => *c = column,
            None => self.columns.push(column),
        }
        Ok(())
    }

    /// A new table with the columns for which `keep` is true (same rows, same order).
    pub fn filter_columns(&self, keep: impl Fn(&Column) -> bool) -> Table {
        Table {
            columns: self.columns.iter().filter(|c| keep(c)).cloned().collect(),
        }
    }

    /// A new table with rows `rows` (in that order; indices may repeat).
    pub fn select(&self, rows: &[usize]) -> Table {
        Table {
            columns: self
                .columns
                .iter()
                .map(|c| Column {
                    name: c.name.clone(),
                    data: c.data.select(rows),
                    unit: c.unit.clone(),
                })
                .collect(),
        }
    }

    /// Rows of `self` followed by rows of `other`; columns are matched by name and those
    /// missing from either side are dropped.
    pub fn concat(&self, other: &Table) -> Table {
        Table {
            columns: self
                .columns
                .iter()
                .filter_map(|c| {
                    let o = other.column(&c.name)?;
                    Some(Column {
                        name: c.name.clone(),
                        data: c.data.concat(&o.data)?,
                        unit: c.unit.clone(),
                    })
                })
                .collect(),
        }
    }
}

impl ColumnData {
    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this is a scalar integer column (any width).
    pub fn is_integer(&self) -> bool {
        matches!(
            self,
            ColumnData::I64(_) | ColumnData::I32(_) | ColumnData::I16(_) | ColumnData::U8(_)
        )
    }

    /// Rows `rows` of this column.
    pub fn select(&self, rows: &[usize]) -> ColumnData {
        fn pick<T: Clone>(v: &[T], rows: &[usize]) -> Vec<T> {
            rows.iter().map(|&i| v[i].clone()).collect()
        }
        fn pick_vec<T: Copy>(v: &[T], repeat: usize, rows: &[usize]) -> Vec<T> {
            rows.iter()
                .flat_map(|&i| v[i * repeat..(i + 1) * repeat].iter().copied())
                .collect()
        }
        match self {
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

    /// `self` followed by `other`, if both have the same kind (and repeat).
    pub fn concat(&self, other: &ColumnData) -> Option<ColumnData> {
        fn cat<T: Clone>(a: &[T], b: &[T]) -> Vec<T> {
            a.iter().chain(b).cloned().collect()
        }
        Some(match (self, other) {
            (ColumnData::F64(a), ColumnData::F64(b)) => ColumnData::F64(cat(a, b)),
            (ColumnData::F32(a), ColumnData::F32(b)) => ColumnData::F32(cat(a, b)),
            (ColumnData::I64(a), ColumnData::I64(b)) => ColumnData::I64(cat(a, b)),
            (ColumnData::I32(a), ColumnData::I32(b)) => ColumnData::I32(cat(a, b)),
            (ColumnData::I16(a), ColumnData::I16(b)) => ColumnData::I16(cat(a, b)),
            (ColumnData::U8(a), ColumnData::U8(b)) => ColumnData::U8(cat(a, b)),
            (ColumnData::Str(a), ColumnData::Str(b)) => ColumnData::Str(cat(a, b)),
            (
                ColumnData::F64Vec { data: a, repeat: r },
                ColumnData::F64Vec { data: b, repeat: s },
            ) if r == s => ColumnData::F64Vec {
                data: cat(a, b),
                repeat: *r,
            },
            (
                ColumnData::F32Vec { data: a, repeat: r },
                ColumnData::F32Vec { data: b, repeat: s },
            ) if r == s => ColumnData::F32Vec {
                data: cat(a, b),
                repeat: *r,
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::fits::Provenance;

    #[test]
    fn table_round_trip_select_concat() {
        let t = Table::new(vec![
            Column::new("TARGETID", ColumnData::I64(vec![10, 11, 12])),
            Column::new(
                "OBJTYPE",
                ColumnData::Str(vec!["TGT".into(), "SKY".into(), "TGT".into()]),
            ),
            Column::new("FLUX_G", ColumnData::F32(vec![1.0, 2.0, 3.0])).with_unit("nanomaggy"),
            Column::new(
                "COEFF",
                ColumnData::F64Vec {
                    data: (0..6).map(f64::from).collect(),
                    repeat: 2,
                },
            ),
        ])
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.fits");
        let mut w = FitsWriter::create(&path, &Provenance::default()).unwrap();
        t.write(&mut w, "FIBERMAP").unwrap();
        w.commit().unwrap();
        let mut r = FitsReader::open(&path).unwrap();
        let back = Table::read(&mut r, "FIBERMAP").unwrap();
        assert_eq!(back.nrows(), 3);
        assert_eq!(back.i64s("TARGETID").unwrap(), vec![10, 11, 12]);
        assert_eq!(back.strs("OBJTYPE").unwrap()[1], "SKY");
        assert_eq!(
            back.column("FLUX_G").unwrap().unit.as_deref(),
            Some("nanomaggy")
        );
        let sel = back.select(&[2, 0]);
        assert_eq!(sel.i64s("TARGETID").unwrap(), vec![12, 10]);
        assert_eq!(sel.f64s("COEFF"), None);
        match &sel.column("COEFF").unwrap().data {
            ColumnData::F64Vec { data, .. } => assert_eq!(data, &vec![4.0, 5.0, 0.0, 1.0]),
            other => panic!("{other:?}"),
        }
        assert_eq!(back.concat(&sel).nrows(), 5);
    }
}
