//! The exposures of a night, from the raw files' headers or from an exposure table.
//! Each exposure is a map of lower-case fields: `night`, `expid`, `flavor` (lower case),
//! and when known `exptime` (seconds) and `tile`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use spx::io::fits::FitsReader;

use crate::schema::{scalar_text, Scalar};
use crate::Error;

/// One exposure's fields.
pub type Exposure = BTreeMap<String, String>;

fn err(file: &Path, msg: impl Into<String>) -> Error {
    Error::Exposures {
        file: file.display().to_string(),
        msg: msg.into(),
    }
}

/// Normalises a row: lower-case keys, `tileid` → `tile`, `obstype` → `flavor` when no flavor,
/// flavor lower case; requires night, expid (integers) and flavor.
fn normalise(file: &Path, row: BTreeMap<String, String>) -> Result<Exposure, Error> {
    let mut e: Exposure = BTreeMap::new();
    for (k, v) in row {
        let k = k.trim().to_ascii_lowercase();
        let k = match k.as_str() {
            "tileid" => "tile".to_string(),
            _ => k,
        };
        // An empty cell is an absent field (an arc has no tile).
        if !v.trim().is_empty() {
            e.insert(k, v.trim().to_string());
        }
    }
    if !e.contains_key("flavor") {
        if let Some(o) = e.remove("obstype") {
            e.insert("flavor".into(), o);
        }
    }
    for key in ["night", "expid", "flavor"] {
        if e.get(key).is_none_or(|v| v.is_empty()) {
            return Err(err(file, format!("exposure {e:?}: missing {key}")));
        }
    }
    for key in ["night", "expid"] {
        let v = &e[key];
        let n: u64 = v
            .parse()
            .map_err(|_| err(file, format!("{key} {v:?} is not an integer")))?;
        e.insert(key.into(), n.to_string());
    }
    if let Some(f) = e.get_mut("flavor") {
        *f = f.to_ascii_lowercase();
    }
    Ok(e)
}

fn sort(mut v: Vec<Exposure>) -> Vec<Exposure> {
    v.sort_by_key(|e| e["expid"].parse::<u64>().unwrap_or(u64::MAX));
    v
}

/// Exposures given inline in the YAML.
pub fn from_list(rows: &[BTreeMap<String, Scalar>]) -> Result<Vec<Exposure>, Error> {
    let p = Path::new("<exposures list>");
    let v = rows
        .iter()
        .map(|r| normalise(p, r.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect()))
        .collect::<Result<_, _>>()?;
    Ok(sort(v))
}

/// Reads an exposure table: CSV (header row) or YAML (`.yaml`/`.yml`, a list of maps).
pub fn from_table(path: &Path) -> Result<Vec<Exposure>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| err(path, e.to_string()))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let rows: Vec<BTreeMap<String, String>> = if ext == "yaml" || ext == "yml" {
        let v: Vec<BTreeMap<String, serde_norway::Value>> =
            serde_norway::from_str(&text).map_err(|e| err(path, e.to_string()))?;
        v.into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|(k, v)| (k, scalar_text(&v).unwrap_or_default()))
                    .collect()
            })
            .collect()
    } else {
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let header: Vec<String> = lines
            .next()
            .ok_or_else(|| err(path, "empty table"))?
            .split(',')
            .map(|s| s.trim().to_string())
            .collect();
        lines
            .enumerate()
            .map(|(i, l)| {
                let cells: Vec<&str> = l.split(',').collect();
                if cells.len() != header.len() {
                    return Err(err(
                        path,
                        format!(
                            "row {}: {} cells, header has {}",
                            i + 1,
                            cells.len(),
                            header.len()
                        ),
                    ));
                }
                Ok(header
                    .iter()
                    .cloned()
                    .zip(cells.iter().map(|c| c.trim().to_string()))
                    .collect())
            })
            .collect::<Result<_, _>>()?
    };
    let v = rows
        .into_iter()
        .map(|r| normalise(path, r))
        .collect::<Result<_, _>>()?;
    Ok(sort(v))
}

/// Raw files under `dir`: `desi-*.fits` / `desi-*.fits.fz` in `dir` and its subfolders (one
/// level, DESI's `{night}/{expid:08d}/` layout).
fn raw_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let is_raw = |p: &Path| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
            n.starts_with("desi-") && (n.ends_with(".fits") || n.ends_with(".fits.fz"))
        })
    };
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| err(dir, e.to_string()))?;
    for entry in entries {
        let p = entry.map_err(|e| err(dir, e.to_string()))?.path();
        if p.is_dir() {
            for sub in std::fs::read_dir(&p).map_err(|e| err(&p, e.to_string()))? {
                let q = sub.map_err(|e| err(&p, e.to_string()))?.path();
                if is_raw(&q) {
                    out.push(q);
                }
            }
        } else if is_raw(&p) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// A header keyword as text from the first HDU (in order) that has it.
fn header_text(r: &mut FitsReader, hdus: &[String], key: &str) -> Option<String> {
    for h in hdus {
        if let Ok(Some(v)) = r.key_opt::<i64>(h, key) {
            return Some(v.to_string());
        }
        if let Ok(Some(v)) = r.key_opt::<String>(h, key) {
            return Some(v);
        }
        if let Ok(Some(v)) = r.key_opt::<f64>(h, key) {
            return Some(v.to_string());
        }
    }
    None
}

/// Reads the exposures of the raw files under `dir` from their headers (primary HDU first,
/// then `SPEC`, then the camera HDUs, as desispec's raw reader merges them).
pub fn from_raw_dir(dir: &Path) -> Result<Vec<Exposure>, Error> {
    let mut out = Vec::new();
    for f in raw_files(dir)? {
        let mut r = FitsReader::open(&f).map_err(|e| err(&f, e.to_string()))?;
        let mut hdus = vec!["PRIMARY".to_string()];
        let names = r.hdu_names().map_err(|e| err(&f, e.to_string()))?;
        if names.iter().any(|n| n == "SPEC") {
            hdus.push("SPEC".into());
        }
        hdus.extend(names.into_iter().filter(|n| n != "PRIMARY" && n != "SPEC"));
        let mut row = BTreeMap::new();
        for key in ["NIGHT", "EXPID", "FLAVOR", "OBSTYPE", "EXPTIME", "TILEID"] {
            if let Some(v) = header_text(&mut r, &hdus, key) {
                row.insert(key.to_string(), v);
            }
        }
        out.push(normalise(&f, row)?);
    }
    Ok(sort(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_yaml_tables() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("e.csv");
        std::fs::write(
            &csv,
            "NIGHT,EXPID,FLAVOR,TILEID\n20201214,12,Science,80605\n20201214,3,arc,\n",
        )
        .unwrap();
        let v = from_table(&csv).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["expid"], "3");
        assert_eq!(v[1]["flavor"], "science");
        assert_eq!(v[1]["tile"], "80605");
        assert!(!v[0].contains_key("tile"));
        let yaml = dir.path().join("e.yaml");
        std::fs::write(&yaml, "- {night: 20201214, expid: 7, obstype: FLAT}\n").unwrap();
        assert_eq!(from_table(&yaml).unwrap()[0]["flavor"], "flat");
        std::fs::write(&csv, "NIGHT,EXPID\n1,2\n").unwrap();
        assert!(from_table(&csv)
            .unwrap_err()
            .to_string()
            .contains("missing flavor"));
    }
}
