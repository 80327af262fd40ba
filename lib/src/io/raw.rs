//! DESI raw exposure files (reference/calibration.md §1.1): an empty primary HDU, an empty
//! `SPEC` HDU with the exposure keywords, one integer image HDU per camera named upper-case (`B0`, `R3`, …) with
//! its amplifiers (prescan, data, column overscan BIASSEC, row overscan ORSEC), and optionally
//! a FIBERMAP table. Section keywords are IRAF style (1-indexed, inclusive, `[x1:x2,y1:y2]`);
//! [`Section`] converts to zero-based half-open ranges. Sizes are never hard-coded: readers
//! derive everything from the section keywords.

use std::path::Path;

use ndarray::Array2;

use super::fibermap::Fibermap;
use super::fits::{FitsReader, FitsWriter, Provenance, PRIMARY};
use super::header::{Header, HeaderValue};
use super::{FitsError, Result};

/// A rectangular CCD section, zero-based half-open: rows `y0..y1`, columns `x0..x1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    pub y0: usize,
    pub y1: usize,
    pub x0: usize,
    pub x1: usize,
}

impl Section {
    /// Parses an IRAF section `[x1:x2,y1:y2]` (1-indexed, inclusive; spaces allowed).
    pub fn parse(s: &str) -> Option<Section> {
        let t: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let t = t.strip_prefix('[')?.strip_suffix(']')?;
        let (xs, ys) = t.split_once(',')?;
        let range = |r: &str| -> Option<(usize, usize)> {
            let (a, b) = r.split_once(':')?;
            let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
            (a >= 1 && b >= a).then(|| (a - 1, b))
        };
        let (x0, x1) = range(xs)?;
        let (y0, y1) = range(ys)?;
        Some(Section { y0, y1, x0, x1 })
    }

    /// IRAF string `[x1:x2,y1:y2]`.
    pub fn to_iraf(&self) -> String {
        format!("[{}:{},{}:{}]", self.x0 + 1, self.x1, self.y0 + 1, self.y1)
    }

    pub fn nrows(&self) -> usize {
        self.y1 - self.y0
    }
    pub fn ncols(&self) -> usize {
        self.x1 - self.x0
    }
    /// Whether (row, col) is inside.
    pub fn contains(&self, y: usize, x: usize) -> bool {
        y >= self.y0 && y < self.y1 && x >= self.x0 && x < self.x1
    }
}

/// One amplifier's readout description.
#[derive(Debug, Clone, PartialEq)]
pub struct AmpInfo {
    /// A, B, C, D.
    pub name: String,
    /// Gain, electrons/ADU (GAINx), if present.
    pub gain: Option<f64>,
    /// Expected read noise, electrons (RDNOISEx), if present.
    pub read_noise: Option<f64>,
    /// Saturation, ADU (SATURLEVx), if present.
    pub saturation: Option<f64>,
    /// Raw-image section of the illuminated pixels (DATASECx).
    pub datasec: Section,
    /// Where DATASEC lands in the preprocessed image (CCDSECx).
    pub ccdsec: Section,
    /// Column overscan (BIASSECx).
    pub biassec: Section,
    /// Row overscan (ORSECx), if any.
    pub orsec: Option<Section>,
    /// Prescan (PRESECx), if any.
    pub presec: Option<Section>,
}

/// One camera HDU of a raw file.
#[derive(Debug, Clone, PartialEq)]
pub struct RawCamera {
    /// Lower-case camera name, e.g. "b0".
    pub camera: String,
    /// Raw pixels, ADU, numpy order `[rows, cols]` (integers stored as f32, exact below 2^24).
    pub image: Array2<f32>,
    /// Amplifiers, in the order of their letters.
    pub amps: Vec<AmpInfo>,
    /// All other keywords of the camera HDU (NIGHT, EXPID, FLAVOR, EXPTIME, …).
    pub header: Header,
}

/// A raw exposure: primary keywords, cameras, optional fibermap.
#[derive(Debug, Clone)]
pub struct RawExposure {
    pub night: i64,
    pub expid: i64,
    /// zero, dark, arc, flat, science.
    pub flavor: String,
    /// Seconds.
    pub exptime: f64,
    /// Extra exposure keywords (written to the SPEC HDU).
    pub primary: Header,
    pub cameras: Vec<RawCamera>,
    pub fibermap: Option<Fibermap>,
}

/// Amp letters DESI uses (old files use 1-4; [`RawCamera::read`] accepts both).
const AMP_NAMES: &[&str] = &["A", "B", "C", "D", "1", "2", "3", "4"];
/// Keywords written by [`RawCamera`] itself (not kept in `header`).
fn is_amp_key(k: &str) -> bool {
    [
        "GAIN", "RDNOISE", "SATURLEV", "DATASEC", "CCDSEC", "BIASSEC", "ORSEC", "PRESEC",
    ]
    .iter()
    .any(|p| k.strip_prefix(p).is_some_and(|s| AMP_NAMES.contains(&s)))
}

impl RawCamera {
    /// Shape of the preprocessed image `[rows, cols]`: max CCDSEC stops (calibration.md §1.3).
    pub fn image_shape(&self) -> (usize, usize) {
        let ny = self.amps.iter().map(|a| a.ccdsec.y1).max().unwrap_or(0);
        let nx = self.amps.iter().map(|a| a.ccdsec.x1).max().unwrap_or(0);
        (ny, nx)
    }

    fn read(r: &mut FitsReader, hdu: &str) -> Result<RawCamera> {
        let path = r.path().to_path_buf();
        let image = r.image2::<f32>(hdu)?;
        let mut header = Header::read(r, hdu)?;
        let camera = header
            .get_str("CAMERA")
            .map(|s| s.trim().to_ascii_lowercase())
            .unwrap_or_else(|| hdu.to_ascii_lowercase());
        let sec = |h: &Header, k: &str| -> Result<Option<Section>> {
            match h.get_str(k) {
                None => Ok(None),
                Some(s) => Section::parse(&s)
                    .map(Some)
                    .ok_or_else(|| FitsError::hdu(&path, hdu, format!("bad section {k} = '{s}'"))),
            }
        };
        let mut amps = Vec::new();
        for name in AMP_NAMES {
            let Some(biassec) = sec(&header, &format!("BIASSEC{name}"))? else {
                continue;
            };
            let need = |k: &str| -> Result<Section> {
                sec(&header, &format!("{k}{name}"))?.ok_or_else(|| {
                    FitsError::hdu(&path, hdu, format!("keyword {k}{name} is missing"))
                })
            };
            let ccdsec = need("CCDSEC")?;
            let datasec = need("DATASEC")?;
            if datasec.nrows() != ccdsec.nrows() || datasec.ncols() != ccdsec.ncols() {
                return Err(FitsError::hdu(
                    &path,
                    hdu,
                    format!("DATASEC{name} and CCDSEC{name} differ in size"),
                ));
            }
            let (ny, nx) = image.dim();
            for (k, s) in [
                ("DATASEC", Some(datasec)),
                ("BIASSEC", Some(biassec)),
                ("ORSEC", sec(&header, &format!("ORSEC{name}"))?),
            ] {
                if let Some(s) = s {
                    if s.y1 > ny || s.x1 > nx {
                        return Err(FitsError::hdu(
                            &path,
                            hdu,
                            format!("{k}{name} {} outside the {nx}x{ny} image", s.to_iraf()),
                        ));
                    }
                }
            }
            amps.push(AmpInfo {
                name: name.to_string(),
                gain: header.get_f64(&format!("GAIN{name}")),
                read_noise: header.get_f64(&format!("RDNOISE{name}")),
                saturation: header.get_f64(&format!("SATURLEV{name}")),
                datasec,
                ccdsec,
                biassec,
                orsec: sec(&header, &format!("ORSEC{name}"))?,
                presec: sec(&header, &format!("PRESEC{name}"))?,
            });
        }
        if amps.is_empty() {
            return Err(FitsError::hdu(
                &path,
                hdu,
                "no BIASSECx keyword: no amplifiers",
            ));
        }
        let keep: Vec<String> = header
            .cards()
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| is_amp_key(k))
            .collect();
        for k in keep {
            header.remove(&k);
        }
        Ok(RawCamera {
            camera,
            image,
            amps,
            header,
        })
    }

    fn write(&self, w: &mut FitsWriter) -> Result<()> {
        let (ny, nx) = self.image.dim();
        // Raw CCD counts are unsigned 16-bit (BITPIX 16, BZERO 32768) as in DESI raw data.
        let data: Vec<u16> = self
            .image
            .iter()
            .map(|&v| v.round().clamp(0.0, 65535.0) as u16)
            .collect();
        w.image(&self.camera.to_ascii_uppercase(), &[ny, nx], &data)?;
        w.key("CAMERA", self.camera.as_str())?;
        self.header.write(w)?;
        for a in &self.amps {
            let n = &a.name;
            if let Some(g) = a.gain {
                w.key(&format!("GAIN{n}"), g)?;
            }
            if let Some(rn) = a.read_noise {
                w.key(&format!("RDNOISE{n}"), rn)?;
            }
            if let Some(s) = a.saturation {
                w.key(&format!("SATURLEV{n}"), s)?;
            }
            w.key(&format!("DATASEC{n}"), a.datasec.to_iraf())?;
            w.key(&format!("CCDSEC{n}"), a.ccdsec.to_iraf())?;
            w.key(&format!("BIASSEC{n}"), a.biassec.to_iraf())?;
            if let Some(s) = a.orsec {
                w.key(&format!("ORSEC{n}"), s.to_iraf())?;
            }
            if let Some(s) = a.presec {
                w.key(&format!("PRESEC{n}"), s.to_iraf())?;
            }
        }
        Ok(())
    }
}

/// Exposure keywords written to the primary and to every camera HDU.
fn exposure_keys(e: &RawExposure) -> Header {
    let mut h = Header::default();
    h.set("NIGHT", HeaderValue::Int(e.night));
    h.set("EXPID", HeaderValue::Int(e.expid));
    h.set("FLAVOR", HeaderValue::Str(e.flavor.clone()));
    h.set("OBSTYPE", HeaderValue::Str(e.flavor.to_ascii_uppercase()));
    h.set("EXPTIME", HeaderValue::Float(e.exptime));
    h
}

impl RawExposure {
    /// The camera named `cam` (case-insensitive).
    pub fn camera(&self, cam: &str) -> Option<&RawCamera> {
        self.cameras
            .iter()
            .find(|c| c.camera.eq_ignore_ascii_case(cam))
    }

    /// Reads a raw file: every HDU whose EXTNAME is a camera name (b0…z9) is a camera.
    pub fn read(path: &Path) -> Result<RawExposure> {
        let mut r = FitsReader::open(path)?;
        let names = r.hdu_names()?;
        // exposure keywords: the SPEC HDU when present (DESI), else the primary
        let glob = if names.iter().any(|n| n == "SPEC") {
            "SPEC"
        } else {
            PRIMARY
        };
        let mut primary = Header::read(&mut r, glob)?;
        let mut cameras = Vec::new();
        for n in &names {
            let lower = n.to_ascii_lowercase();
            let is_cam = lower.len() == 2
                && matches!(lower.as_bytes()[0], b'b' | b'r' | b'z')
                && lower.as_bytes()[1].is_ascii_digit();
            if is_cam {
                cameras.push(RawCamera::read(&mut r, n)?);
            }
        }
        let first = |k: &str| {
            primary
                .get(k)
                .cloned()
                .or_else(|| cameras.iter().find_map(|c| c.header.get(k).cloned()))
        };
        let get_i = |k: &str| -> Result<i64> {
            let h = Header::default();
            let mut h = h;
            if let Some(v) = first(k) {
                h.set(k, v);
            }
            h.get_i64(k)
                .ok_or_else(|| FitsError::hdu(path, PRIMARY, format!("keyword {k} is missing")))
        };
        let night = get_i("NIGHT")?;
        let expid = get_i("EXPID")?;
        for c in &cameras {
            if let Some(n) = c.header.get_i64("NIGHT") {
                if n != night {
                    return Err(FitsError::hdu(
                        path,
                        &c.camera.to_ascii_uppercase(),
                        format!("NIGHT {n} differs from the primary NIGHT {night}"),
                    ));
                }
            }
        }
        let flavor = first("FLAVOR")
            .map(|v| match v {
                HeaderValue::Str(s) => s.trim().to_ascii_lowercase(),
                _ => String::new(),
            })
            .unwrap_or_default();
        let exptime = match first("EXPTIME") {
            Some(HeaderValue::Float(f)) => f,
            Some(HeaderValue::Int(i)) => i as f64,
            _ => 0.0,
        };
        for (k, _) in exposure_keys(&RawExposure {
            night,
            expid,
            flavor: flavor.clone(),
            exptime,
            primary: Header::default(),
            cameras: Vec::new(),
            fibermap: None,
        })
        .cards()
        {
            primary.remove(k);
        }
        let fibermap = if names.iter().any(|n| n == "FIBERMAP") {
            Some(Fibermap::read(&mut r, "FIBERMAP")?)
        } else {
            None
        };
        Ok(RawExposure {
            night,
            expid,
            flavor,
            exptime,
            primary,
            cameras,
            fibermap,
        })
    }

    /// Writes the exposure atomically.
    pub fn write(&self, path: &Path, prov: &Provenance) -> Result<()> {
        let mut w = FitsWriter::create(path, prov)?;
        let keys = exposure_keys(self);
        // DESI layout: HDU 0 empty (no EXPTIME, so desispec's read_raw_primary_header moves
        // on), the exposure keywords in an empty image HDU "SPEC", then the cameras.
        w.image::<f32>("SPEC", &[0], &[])?;
        keys.write(&mut w)?;
        self.primary.write(&mut w)?;
        for c in &self.cameras {
            c.write(&mut w)?;
            keys.write(&mut w)?;
        }
        if let Some(fm) = &self.fibermap {
            fm.write(&mut w, "FIBERMAP")?;
        }
        w.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iraf_sections() {
        let s = Section::parse("[2129:2192, 2:2065]").unwrap();
        assert_eq!(
            s,
            Section {
                y0: 1,
                y1: 2065,
                x0: 2128,
                x1: 2192
            }
        );
        assert_eq!(Section::parse(&s.to_iraf()), Some(s));
        assert!(Section::parse("[0:5,1:2]").is_none());
        assert!(Section::parse("2:5,1:2").is_none());
    }
}
