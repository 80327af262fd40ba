//! Sky model files (`sky-{camera}-{expid:08}.fits`) as desispec's `write_sky` lays them out
//! (reference/calibration.md §3.9): SKY (primary, f32 `[nspec, nwave]`, flat-fielded
//! electrons/Angstrom), IVAR (f32, with the sky-line error inflation), MASK (u32 specmask),
//! WAVELENGTH (f32, Angstrom), STATIVAR (f32, statistical ivar), THRPUTCORR (f32 `[nspec]`),
//! THRPUTCORR_MOD (f32 `[nspec]`), SKYTARGETID (i64 `[nsky]`). In memory everything is f64.

use std::path::Path;

use ndarray::{Array1, Array2};

use super::fits::{require_finite, FitsReader, FitsWriter, Provenance};
use super::header::Header;
use super::{FitsError, Result};

/// A sky model for every fiber of one camera frame.
#[derive(Debug, Clone)]
pub struct SkyModel {
    /// Wavelength grid `[nwave]`, Angstrom.
    pub wave: Array1<f64>,
    /// Sky `[nspec, nwave]`, flat-fielded electrons/Angstrom (THRPUTCORR not applied).
    pub flux: Array2<f64>,
    /// Inverse variance of the sky `[nspec, nwave]`, including the sky-line error term.
    pub ivar: Array2<f64>,
    /// specmask bits `[nspec, nwave]` (non-zero where the model is unusable).
    pub mask: Array2<u32>,
    /// Statistical-only inverse variance `[nspec, nwave]`.
    pub stat_ivar: Option<Array2<f64>>,
    /// Empirical per-fiber sky-line throughput correction `[nspec]` (dimensionless).
    pub throughput_corrections: Option<Array1<f64>>,
    /// Throughput model already folded into `flux` `[nspec]` (dimensionless).
    pub throughput_corrections_model: Option<Array1<f64>>,
    /// TARGETIDs of the sky fibers used for the model.
    pub skytargetid: Option<Vec<i64>>,
    /// Header of the SKY HDU (the frame's header plus IN_FRAME, FIBERFLT).
    pub header: Header,
}

impl SkyModel {
    /// Number of spectra.
    pub fn nspec(&self) -> usize {
        self.flux.nrows()
    }

    /// Number of wavelengths.
    pub fn nwave(&self) -> usize {
        self.wave.len()
    }

    /// Checks shapes and finiteness; `path` names the file in errors.
    pub fn check(&self, path: &Path) -> Result<()> {
        let (ns, nw) = (self.nspec(), self.nwave());
        let shape = |hdu: &str, d: (usize, usize)| {
            if d != (ns, nw) {
                Err(FitsError::hdu(
                    path,
                    hdu,
                    format!("shape {d:?}, expected {:?}", (ns, nw)),
                ))
            } else {
                Ok(())
            }
        };
        shape("SKY", self.flux.dim())?;
        shape("IVAR", self.ivar.dim())?;
        shape("MASK", self.mask.dim())?;
        if let Some(s) = &self.stat_ivar {
            shape("STATIVAR", s.dim())?;
        }
        for (name, v) in [
            ("THRPUTCORR", &self.throughput_corrections),
            ("THRPUTCORR_MOD", &self.throughput_corrections_model),
        ] {
            if let Some(v) = v {
                if v.len() != ns {
                    return Err(FitsError::hdu(
                        path,
                        name,
                        format!("{} values for {ns} spectra", v.len()),
                    ));
                }
                require_finite(path, name, v.iter())?;
            }
        }
        require_finite(path, "WAVELENGTH", self.wave.iter())?;
        require_finite(path, "SKY", self.flux.iter())?;
        require_finite(path, "IVAR", self.ivar.iter())?;
        if self.ivar.iter().any(|&v| v < 0.0) {
            return Err(FitsError::hdu(path, "IVAR", "negative inverse variance"));
        }
        Ok(())
    }

    /// Reads a sky file (spx or desispec).
    pub fn read(path: impl AsRef<Path>) -> Result<SkyModel> {
        let path = path.as_ref();
        let mut r = FitsReader::open(path)?;
        let header = Header::read(&mut r, "SKY")?;
        let flux = r.image2::<f64>("SKY")?;
        let ivar = r.image2::<f64>("IVAR")?;
        let mask = r.image2::<u32>("MASK")?;
        let wave = r.image1::<f64>("WAVELENGTH")?;
        let stat_ivar = if r.has_hdu("STATIVAR") {
            Some(r.image2::<f64>("STATIVAR")?)
        } else {
            None
        };
        let mut vec1 = |name: &str| -> Result<Option<Array1<f64>>> {
            if r.has_hdu(name) {
                Ok(Some(r.image1::<f64>(name)?))
            } else {
                Ok(None)
            }
        };
        let throughput_corrections = vec1("THRPUTCORR")?;
        let throughput_corrections_model = vec1("THRPUTCORR_MOD")?;
        let skytargetid = if r.has_hdu("SKYTARGETID") {
            Some(r.image1::<i64>("SKYTARGETID")?.to_vec())
        } else {
            None
        };
        let sky = SkyModel {
            wave,
            flux,
            ivar,
            mask,
            stat_ivar,
            throughput_corrections,
            throughput_corrections_model,
            skytargetid,
            header,
        };
        sky.check(path)?;
        Ok(sky)
    }

    /// Writes the sky file atomically in desispec's layout (f32 on disk, WAVELENGTH f32).
    pub fn write(&self, path: impl AsRef<Path>, prov: &Provenance) -> Result<()> {
        self.write_as(path, prov, false)
    }

    /// Writes the sky file with SKY, IVAR and STATIVAR in float64 when `double` (for
    /// conformance checks below f32 rounding; desispec's reader accepts both).
    pub fn write_as(&self, path: impl AsRef<Path>, prov: &Provenance, double: bool) -> Result<()> {
        let path = path.as_ref();
        self.check(path)?;
        let (ns, nw) = (self.nspec(), self.nwave());
        let f32s = |it: &mut dyn Iterator<Item = &f64>| it.map(|&v| v as f32).collect::<Vec<_>>();
        let f64s = |a: &Array2<f64>| a.iter().copied().collect::<Vec<f64>>();
        let mut w = if double {
            FitsWriter::create_with_primary_image(path, prov, "SKY", &[ns, nw], &f64s(&self.flux))?
        } else {
            FitsWriter::create_with_primary_image(
                path,
                prov,
                "SKY",
                &[ns, nw],
                &f32s(&mut self.flux.iter()),
            )?
        };
        self.header.write(&mut w)?;
        if double {
            w.image("IVAR", &[ns, nw], &f64s(&self.ivar))?;
        } else {
            w.image("IVAR", &[ns, nw], &f32s(&mut self.ivar.iter()))?;
        }
        let mask: Vec<u32> = self.mask.iter().copied().collect();
        w.image("MASK", &[ns, nw], &mask)?;
        w.image("WAVELENGTH", &[nw], &f32s(&mut self.wave.iter()))?;
        w.key("BUNIT", "Angstrom")?;
        match &self.stat_ivar {
            Some(s) if double => w.image("STATIVAR", &[ns, nw], &f64s(s))?,
            Some(s) => w.image("STATIVAR", &[ns, nw], &f32s(&mut s.iter()))?,
            None => {}
        }
        if let Some(t) = &self.throughput_corrections {
            w.image("THRPUTCORR", &[ns], &f32s(&mut t.iter()))?;
        }
        if let Some(t) = &self.throughput_corrections_model {
            w.image("THRPUTCORR_MOD", &[ns], &f32s(&mut t.iter()))?;
        }
        if let Some(t) = &self.skytargetid {
            w.image("SKYTARGETID", &[t.len()], t)?;
        }
        w.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsupport::shared_file;

    #[test]
    fn reads_desispec_sky_and_round_trips() {
        let Some(p) = shared_file("sky/sky-ref.fits") else {
            return;
        };
        let s = SkyModel::read(&p).unwrap();
        assert_eq!((s.nspec(), s.nwave()), (60, 2326));
        assert_eq!(s.skytargetid.as_ref().map(|t| t.len()), Some(12));
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sky-r0-00000001.fits");
        s.write(&out, &Provenance::default()).unwrap();
        let t = SkyModel::read(&out).unwrap();
        assert_eq!(t.flux, s.flux); // f32 values survive f32 → f64 → f32 exactly
        assert_eq!(t.ivar, s.ivar);
        assert_eq!(t.mask, s.mask);
        assert_eq!(t.stat_ivar, s.stat_ivar);
        assert_eq!(t.throughput_corrections, s.throughput_corrections);
        assert_eq!(t.skytargetid, s.skytargetid);
        assert_eq!(t.header.get_str("DEPNAM07").as_deref(), Some("desispec"));
    }
}
