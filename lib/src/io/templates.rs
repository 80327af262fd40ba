//! redrock template files (`rrtemplate-<SPECTYPE>-<SUBTYPE>-v<VERSION>.fits`,
//! reference/redshift.md §1.1) and template sets (a list file, a directory, or one file).
//!
//! A template is a set of rest-frame basis spectra `BASIS_VECTORS [nbasis, nwave]` on the
//! grid `CRVAL1 + k·CDELT1` (log10 Angstrom when `LOGLAM` is non-zero), with its own coarse
//! redshift grid (`REDSHIFTS` HDU, or redrock's default grid for its `RRTYPE`).

use std::path::{Path, PathBuf};

use super::fits::{FitsError, FitsReader, Result, PRIMARY};

/// Intergalactic-medium transmission model applied to a template (redrock `RRIGM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgmModel {
    /// No absorption (stars).
    None,
    /// Calura et al. 2012: Lyα…Ly5 effective optical depths.
    Calura12,
    /// Kamble et al. 2020: Lyα only (QSO-HIZ v1.1).
    Kamble20,
    /// Inoue et al. 2014 (not implemented: refused at load time).
    Inoue14,
}

impl IgmModel {
    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "None" | "" => Some(IgmModel::None),
            "Calura12" => Some(IgmModel::Calura12),
            "Kamble20" => Some(IgmModel::Kamble20),
            "Inoue14" => Some(IgmModel::Inoue14),
            _ => None,
        }
    }
}

/// One redrock PCA template.
#[derive(Debug, Clone)]
pub struct Template {
    /// `GALAXY`, `QSO` or `STAR` (RRTYPE, upper-cased).
    pub spectype: String,
    /// RRSUBTYP (`''` for GALAXY).
    pub subtype: String,
    /// VERSION keyword, or `unknown`.
    pub version: String,
    /// The file it was read from.
    pub filename: PathBuf,
    /// `PCA` (RRMETHOD); `NMF` templates are refused at load time.
    pub method: String,
    /// IGM model (RRIGM, or redrock's inference for old files).
    pub igm: IgmModel,
    /// Rest-frame wavelength of each basis sample, Angstrom, ascending. `[nwave]`
    pub wave: Vec<f64>,
    /// Basis flux, interleaved sample-major: `flux[j * nbasis + k]` is basis `k` at `wave[j]`.
    pub flux: Vec<f64>,
    /// Number of basis vectors.
    pub nbasis: usize,
    /// Coarse redshift grid scanned for this template. `[nz]`
    pub redshifts: Vec<f64>,
    /// Whether `redshifts` is redrock's default grid (no REDSHIFTS HDU): only such templates
    /// take `--zscan-<type>` overrides, as in rrdesi.
    pub default_grid: bool,
}

impl Template {
    /// `SPECTYPE` or `SPECTYPE:::SUBTYPE` (redrock's "fulltype").
    pub fn full_type(&self) -> String {
        if self.subtype.is_empty() {
            self.spectype.clone()
        } else {
            format!("{}:::{}", self.spectype, self.subtype)
        }
    }

    /// The key used in details files: fulltype upper-cased with `:::` → `_`.
    pub fn key(&self) -> String {
        self.full_type().to_uppercase().replace(":::", "_")
    }

    /// Number of rest-frame samples.
    pub fn nwave(&self) -> usize {
        self.wave.len()
    }

    /// Reads one template file.
    pub fn read(path: &Path) -> Result<Self> {
        let mut r = FitsReader::open(path)?;
        // BASIS_VECTORS is the primary HDU (EXTNAME set there); accept an unnamed primary too.
        let hdu = if r.has_hdu("BASIS_VECTORS") {
            "BASIS_VECTORS"
        } else {
            PRIMARY
        };
        let basis = r.image2::<f64>(hdu)?;
        let (nbasis, nwave) = basis.dim();
        if nbasis == 0 || nwave < 2 {
            return Err(FitsError::hdu(path, hdu, "empty basis"));
        }
        if basis.iter().any(|v| !v.is_finite()) {
            return Err(FitsError::hdu(
                path,
                hdu,
                "basis vectors contain NaN or Inf",
            ));
        }
        let crval: f64 = r.key(hdu, "CRVAL1")?;
        let cdelt: f64 = r.key(hdu, "CDELT1")?;
        // LOGLAM may be a logical (T/F) or an integer; read it as a string and interpret.
        let loglam = match r.key_opt::<String>(hdu, "LOGLAM") {
            Ok(Some(s)) => {
                let s = s.trim().to_ascii_uppercase();
                !(s.is_empty() || s == "F" || s == "0" || s == "FALSE")
            }
            _ => r.key_opt::<i64>(hdu, "LOGLAM").ok().flatten().unwrap_or(0) != 0,
        };
        // redrock: wave = CRVAL1 + CDELT1*arange(n), then 10**wave for log grids.
        let mut wave: Vec<f64> = (0..nwave).map(|k| crval + cdelt * k as f64).collect();
        if loglam {
            for w in wave.iter_mut() {
                *w = 10f64.powf(*w);
            }
        }
        if wave.windows(2).any(|w| w[1] <= w[0]) {
            return Err(FitsError::hdu(
                path,
                hdu,
                "wavelength grid is not increasing",
            ));
        }
        let spectype = r
            .key_opt::<String>(hdu, "RRTYPE")?
            .ok_or_else(|| FitsError::hdu(path, hdu, "keyword RRTYPE is missing"))?
            .trim()
            .to_uppercase();
        let subtype = r
            .key_opt::<String>(hdu, "RRSUBTYP")?
            .unwrap_or_default()
            .trim()
            .to_uppercase();
        let version = r
            .key_opt::<String>(hdu, "VERSION")?
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let method = r
            .key_opt::<String>(hdu, "RRMETHOD")?
            .map(|s| s.trim().to_uppercase())
            .unwrap_or_else(|| "PCA".into());
        if method != "PCA" {
            return Err(FitsError::hdu(
                path,
                hdu,
                format!("RRMETHOD {method} is not supported (only PCA)"),
            ));
        }
        let igm = match r.key_opt::<String>(hdu, "RRIGM")? {
            Some(s) => IgmModel::parse(&s)
                .ok_or_else(|| FitsError::hdu(path, hdu, format!("unknown RRIGM {}", s.trim())))?,
            // redrock's inference for pre-2024 templates without RRIGM (templates.py).
            None => match (spectype.as_str(), version.as_str()) {
                ("STAR", _) => IgmModel::None,
                ("GALAXY", "2.6") => IgmModel::Calura12,
                ("QSO", "0.1" | "1.0") => IgmModel::Calura12,
                ("QSO", "1.1") => IgmModel::Kamble20,
                _ => {
                    return Err(FitsError::hdu(
                        path,
                        hdu,
                        "missing keyword RRIGM specifying the IGM model",
                    ))
                }
            },
        };
        if igm == IgmModel::Inoue14 {
            return Err(FitsError::hdu(
                path,
                hdu,
                "IGM model Inoue14 is not supported",
            ));
        }
        let default_grid = !r.has_hdu("REDSHIFTS");
        let redshifts = if !default_grid {
            r.image1::<f64>("REDSHIFTS")?.to_vec()
        } else {
            default_redshifts(&spectype).ok_or_else(|| {
                FitsError::hdu(
                    path,
                    hdu,
                    format!("no REDSHIFTS HDU and no default grid for RRTYPE {spectype}"),
                )
            })?
        };
        if redshifts.len() < 3 || redshifts.windows(2).any(|w| w[1] <= w[0]) {
            return Err(FitsError::hdu(
                path,
                "REDSHIFTS",
                "redshift grid must have ≥ 3 increasing values",
            ));
        }
        let mut flux = vec![0.0; nbasis * nwave];
        for k in 0..nbasis {
            for j in 0..nwave {
                flux[j * nbasis + k] = basis[[k, j]];
            }
        }
        Ok(Template {
            spectype,
            subtype,
            version,
            filename: path.to_path_buf(),
            method,
            igm,
            wave,
            flux,
            nbasis,
            redshifts,
            default_grid,
        })
    }
}

/// numpy's `arange(start, stop, step)` for float64: length `ceil((stop-start)/step)`, values
/// `start + i·((start+step)−start)` (numpy's DOUBLE_fill), so grids match redrock bit for bit.
pub fn np_arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let n = ((stop - start) / step).ceil();
    if n.is_nan() || n <= 0.0 {
        return Vec::new();
    }
    let n = n as usize;
    let delta = (start + step) - start;
    (0..n)
        .map(|i| match i {
            0 => start,
            1 => start + step,
            _ => start + i as f64 * delta,
        })
        .collect()
}

/// redrock's default coarse grid for templates without a REDSHIFTS HDU (templates.py):
/// GALAXY log-uniform in 1+z from 0.995 to 2.7 (step 3e-4 dex), QSO 1.05 to 7.0 (5e-4 dex),
/// STAR linear −0.002 to 0.00201 (step 4e-5).
pub fn default_redshifts(spectype: &str) -> Option<Vec<f64>> {
    let log_grid = |lo: f64, hi: f64, step: f64| -> Vec<f64> {
        np_arange(lo.log10(), hi.log10(), step)
            .into_iter()
            .map(|x| 10f64.powf(x) - 1.0)
            .collect()
    };
    match spectype {
        "GALAXY" => Some(log_grid(1.0 - 0.005, 1.0 + 1.7, 3e-4)),
        "QSO" => Some(log_grid(1.0 + 0.05, 1.0 + 6.0, 5e-4)),
        "STAR" => Some(np_arange(-0.002, 0.00201, 4e-5)),
        _ => None,
    }
}

/// A redshift grid from rrdesi's `--zscan-<type> zmin,zmax,dz` syntax: log-uniform in 1+z
/// for GALAXY and QSO (dz in dex), linear for STAR.
pub fn zscan_grid(spectype: &str, spec: &str) -> std::result::Result<Vec<f64>, String> {
    let v: Vec<f64> = spec
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("bad zscan '{spec}': {e}"))?;
    let [zmin, zmax, dz] = v[..] else {
        return Err(format!("bad zscan '{spec}': expected zmin,zmax,dz"));
    };
    if !(zmax > zmin && dz > 0.0 && zmin > -1.0) {
        return Err(format!(
            "bad zscan '{spec}': need -1 < zmin < zmax and dz > 0"
        ));
    }
    let g: Vec<f64> = if spectype == "STAR" {
        np_arange(zmin, zmax, dz)
    } else {
        np_arange((1.0 + zmin).log10(), (1.0 + zmax).log10(), dz)
            .into_iter()
            .map(|x| 10f64.powf(x) - 1.0)
            .collect()
    };
    if g.len() < 3 {
        return Err(format!("zscan '{spec}' gives fewer than 3 redshifts"));
    }
    Ok(g)
}

/// Resolves a template set as redrock's `find_templates` does: a `.txt` list file (one name
/// per line, `#` comments, names relative to the list's folder), a directory (its
/// `templates-default.txt` if present, else every `rrtemplate-*.fits` sorted), or one file.
pub fn find_templates(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.exists() {
        return Err(FitsError::file(path, "no such template file or directory"));
    }
    let (list, dir) = if path.is_dir() {
        (path.join("templates-default.txt"), path.to_path_buf())
    } else if path.extension().is_some_and(|e| e == "txt") {
        (
            path.to_path_buf(),
            path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        )
    } else {
        return Ok(vec![path.to_path_buf()]);
    };
    if list.exists() {
        let text = std::fs::read_to_string(&list)
            .map_err(|e| FitsError::file(&list, format!("cannot read ({e})")))?;
        let mut files = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.len() < 2 || line.starts_with('#') {
                continue;
            }
            let name = line.split_whitespace().next().unwrap_or(line);
            let p = if name.starts_with('/') {
                PathBuf::from(name)
            } else {
                dir.join(name)
            };
            if !p.exists() {
                return Err(FitsError::file(
                    &list,
                    format!("template {} named here does not exist", p.display()),
                ));
            }
            files.push(p);
        }
        if files.is_empty() {
            return Err(FitsError::file(&list, "lists no template files"));
        }
        Ok(files)
    } else {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| FitsError::file(&dir, format!("cannot list ({e})")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("rrtemplate-") && n.ends_with(".fits"))
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(FitsError::file(&dir, "holds no rrtemplate-*.fits files"));
        }
        Ok(files)
    }
}

/// Reads every template of a set (see [`find_templates`]), in list order.
pub fn load_templates(path: &Path) -> Result<Vec<Template>> {
    find_templates(path)?
        .iter()
        .map(|p| Template::read(p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_grids_have_redrocks_lengths() {
        // reference/redshift.md §1.1 and the details file: GALAXY 1446, STAR 101 points.
        assert_eq!(default_redshifts("GALAXY").unwrap().len(), 1446);
        assert_eq!(default_redshifts("STAR").unwrap().len(), 101);
        let q = default_redshifts("QSO").unwrap();
        assert!((q[0] - 0.05).abs() < 1e-12);
    }

    #[test]
    fn arange_matches_numpy_semantics() {
        let a = np_arange(0.0, 1.0, 0.25);
        assert_eq!(a, vec![0.0, 0.25, 0.5, 0.75]);
        assert!(np_arange(1.0, 0.0, 0.1).is_empty());
    }
}
