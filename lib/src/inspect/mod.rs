//! What is in any spx or DESI FITS file: its kind (decided from HDU names and header keywords,
//! [`kind::classify`]), its HDUs with shapes and columns, the header values people look for
//! (CAMERA, EXPID, NIGHT, …) and quick statistics suited to the kind ([`stats::compute`]).
//! Generic FITS access only, so it works on files the typed readers refuse.

pub mod kind;
pub mod stats;
pub mod structure;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::io::fits::FitsReader;
use crate::io::Result;
pub use kind::FileKind;
use kind::KindKeys;
pub use stats::{Stat, Stats};
use structure::{Card, HduData, HduSummary, Raw};

/// Header keywords shown as "key values" (first HDU that has each wins).
pub const KEY_VALUES: &[&str] = &[
    "CAMERA", "EXPID", "NIGHT", "TILEID", "SPECGRPH", "FLAVOR", "OBSTYPE", "PROGRAM", "EXPTIME",
    "MJD-OBS", "PSFTYPE", "PSFVER", "SPGRP", "SPGRPVAL", "RRTYPE", "RRSUBTYP", "VERSION",
    "FIBERFLT", "IN_SKY", "IN_CALIB", "SPXPROG", "SPXVER",
];

/// Everything spx-inspect reports about one file.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub path: PathBuf,
    pub kind: FileKind,
    /// HDUs the data model has for this kind but the file lacks.
    pub missing_hdus: Vec<String>,
    /// Values of [`KEY_VALUES`] found in the file.
    pub keys: Vec<Card>,
    pub hdus: Vec<HduSummary>,
    pub stats: Stats,
    /// Every header card of every HDU (only with `all_cards`), by HDU index.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cards: Vec<Vec<Card>>,
}

/// What to read besides the structure.
#[derive(Debug, Clone, Copy, Default)]
pub struct InspectOptions {
    /// Skip the statistics (which read the data).
    pub no_stats: bool,
    /// Collect every header card.
    pub all_cards: bool,
}

/// Inspects `path`. A missing, non-FITS or truncated file is an error naming it.
pub fn inspect(path: &Path, opts: InspectOptions) -> Result<Report> {
    let mut r = FitsReader::open(path)?;
    let mut raw = Raw::new(&mut r);
    let hdus = raw.summaries()?;
    let mut keys: Vec<Card> = Vec::new();
    let mut flux_bunit = None;
    let mut cards = Vec::new();
    for h in &hdus {
        for (k, v) in raw.keys(h.index, KEY_VALUES)? {
            if !keys.iter().any(|(kk, _)| *kk == k) {
                keys.push((k, v));
            }
        }
        if h.name == "FLUX" {
            flux_bunit = h.bunit.clone();
        }
        if opts.all_cards {
            cards.push(raw.cards(h.index)?);
        }
    }
    let key = |k: &str| keys.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone());
    let kk = KindKeys {
        psftype: key("PSFTYPE"),
        rrtype: key("RRTYPE"),
        flux_bunit,
        flat_applied: key("FIBERFLT").is_some(),
        sky_subtracted: key("IN_SKY").is_some(),
        calibrated: key("IN_CALIB").is_some(),
    };
    let kind = kind::classify(&hdus, &kk);
    let missing_hdus = kind
        .expected_hdus()
        .iter()
        .filter(|n| !hdus.iter().any(|h| h.name.eq_ignore_ascii_case(n)))
        .map(|n| n.to_string())
        .collect();
    let stats = if opts.no_stats {
        Stats::default()
    } else {
        stats::compute(&mut r, kind, &hdus)?
    };
    Ok(Report {
        path: path.to_path_buf(),
        kind,
        missing_hdus,
        keys,
        hdus,
        stats,
        cards,
    })
}

/// A number for people: integers as such, otherwise 6 significant digits.
pub fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        return format!("{}", x as i64);
    }
    let a = x.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        return format!("{x:.5e}");
    }
    // Decimals so that about 6 significant digits remain (at least 1 for |x| ≥ 1e5).
    let digits = 6usize
        .saturating_sub(a.log10().floor().max(0.0) as usize + 1)
        .max(1);
    let s = format!("{x:.digits$}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn fmt_value(v: &Value) -> String {
    match v {
        Value::Null => "n/a".into(),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), fmt_num),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Array(a) => a.iter().map(fmt_value).collect::<Vec<_>>().join(", "),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k} {}", fmt_value(v)))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

impl Report {
    /// Human-readable text. `long` lists every column and every header card.
    pub fn to_text(&self, long: bool) -> String {
        let mut s = String::new();
        let kind = match self.kind {
            FileKind::Unknown => "unknown FITS".to_string(),
            k => k.name().to_string(),
        };
        let _ = write!(s, "{}: {kind}", self.path.display());
        if !self.missing_hdus.is_empty() {
            let _ = write!(s, " (missing HDU {})", self.missing_hdus.join(", "));
        }
        s.push('\n');
        if !self.keys.is_empty() {
            let kv: Vec<String> = self.keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(s, "  keys: {}", kv.join(" "));
        }
        let width = self
            .hdus
            .iter()
            .map(|h| h.name.len())
            .max()
            .unwrap_or(0)
            .max(4);
        for h in &self.hdus {
            let name = if h.name.is_empty() {
                "-"
            } else {
                h.name.as_str()
            };
            let _ = write!(s, "  {:>2} {name:<width$} ", h.index);
            match &h.data {
                HduData::Image {
                    shape,
                    dtype,
                    compression,
                } => {
                    if shape.is_empty() {
                        s.push_str("header only");
                    } else {
                        let _ = write!(s, "image {dtype} {shape:?}");
                    }
                    if let Some(c) = compression {
                        let _ = write!(s, " compressed {c}");
                    }
                }
                HduData::Table {
                    nrows,
                    columns,
                    ascii,
                } => {
                    let what = if *ascii { "ascii table" } else { "table" };
                    let _ = write!(s, "{what} {nrows} rows × {} columns", columns.len());
                    const SHOWN: usize = 8;
                    let names: Vec<String> = columns
                        .iter()
                        .take(if long { usize::MAX } else { SHOWN })
                        .map(|(n, f)| if long { format!("{n}({f})") } else { n.clone() })
                        .collect();
                    if !names.is_empty() {
                        let _ = write!(s, ": {}", names.join(" "));
                        if !long && columns.len() > SHOWN {
                            let _ = write!(s, " … (+{})", columns.len() - SHOWN);
                        }
                    }
                }
            }
            if let Some(b) = &h.bunit {
                let _ = write!(s, "  BUNIT={b}");
            }
            s.push('\n');
            if long {
                if let Some(cards) = self.cards.get(h.index) {
                    for (k, v) in cards {
                        let _ = writeln!(s, "       {k:<8} = {v}");
                    }
                }
            }
        }
        if !self.stats.0.is_empty() {
            s.push_str("  stats:\n");
            for (k, v) in &self.stats.0 {
                let v = match v {
                    Stat::Spread { min, median, max } => format!(
                        "min {}, median {}, max {}",
                        fmt_num(*min),
                        fmt_num(*median),
                        fmt_num(*max)
                    ),
                    Stat::Value(v) => fmt_value(v),
                };
                let _ = writeln!(s, "    {k}: {v}");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_people() {
        assert_eq!(fmt_num(6460.0), "6460");
        assert_eq!(fmt_num(0.8), "0.8");
        assert_eq!(fmt_num(0.123456789), "0.12346");
        assert_eq!(fmt_num(1234.56789), "1234.57");
        assert_eq!(fmt_num(1.5e-7), "1.50000e-7");
    }
}
