//! Fiber-flat files (`fiberflat-{camera}-{expid:08}.fits`, `fiberflatnight-{camera}-{night}.fits`)
//! as desispec's `write_fiberflat` lays them out (reference/calibration.md §2.4): FIBERFLAT
//! (primary, f32 `[nspec, nwave]`, dimensionless, header CHI2PDF), IVAR (f32), MASK (u32
//! specmask), MEANSPEC (f32 `[nwave]`, deconvolved lamp spectrum in electrons/Angstrom),
//! WAVELENGTH (f32, Angstrom), FIBERMAP (optional). In memory everything is f64.

use std::path::Path;

use ndarray::{Array1, Array2};

use super::fibermap::Fibermap;
use super::fits::{require_finite, FitsReader, FitsWriter, Provenance};
use super::header::{Header, HeaderValue};
use super::{FitsError, Result};

/// The fiber flat of one camera: `flux_flatfielded = flux / fiberflat`.
#[derive(Debug, Clone)]
pub struct FiberFlat {
    /// Wavelength grid `[nwave]`, Angstrom.
    pub wave: Array1<f64>,
    /// Flat `[nspec, nwave]`, dimensionless (per-wavelength median over good fibers is 1).
    pub fiberflat: Array2<f64>,
    /// Inverse variance of the flat `[nspec, nwave]`.
    pub ivar: Array2<f64>,
    /// specmask bits `[nspec, nwave]`.
    pub mask: Array2<u32>,
    /// Deconvolved mean lamp spectrum `[nwave]`, electrons/Angstrom.
    pub meanspec: Array1<f64>,
    /// Reduced χ² of the fit of the mean spectrum.
    pub chi2pdf: Option<f64>,
    /// Fibermap of the flat exposure, if any.
    pub fibermap: Option<Fibermap>,
    /// Header of the FIBERFLAT HDU.
    pub header: Header,
}

impl FiberFlat {
    /// Number of spectra.
    pub fn nspec(&self) -> usize {
        self.fiberflat.nrows()
    }

    /// Number of wavelengths.
    pub fn nwave(&self) -> usize {
        self.wave.len()
    }

    /// Checks shapes and finiteness; `path` names the file in errors.
    pub fn check(&self, path: &Path) -> Result<()> {
        let (ns, nw) = (self.nspec(), self.nwave());
        for (hdu, d) in [
            ("FIBERFLAT", self.fiberflat.dim()),
            ("IVAR", self.ivar.dim()),
            ("MASK", self.mask.dim()),
        ] {
            if d != (ns, nw) {
                return Err(FitsError::hdu(
                    path,
                    hdu,
                    format!("shape {d:?}, expected {:?}", (ns, nw)),
                ));
            }
        }
        if self.meanspec.len() != nw {
            return Err(FitsError::hdu(
                path,
                "MEANSPEC",
                format!("{} values for {nw} wavelengths", self.meanspec.len()),
            ));
        }
        if let Some(fm) = &self.fibermap {
            if fm.len() != ns {
                return Err(FitsError::hdu(
                    path,
                    "FIBERMAP",
                    format!("{} rows for {ns} spectra", fm.len()),
                ));
            }
        }
        require_finite(path, "WAVELENGTH", self.wave.iter())?;
        require_finite(path, "FIBERFLAT", self.fiberflat.iter())?;
        require_finite(path, "IVAR", self.ivar.iter())?;
        require_finite(path, "MEANSPEC", self.meanspec.iter())?;
        if self.ivar.iter().any(|&v| v < 0.0) {
            return Err(FitsError::hdu(path, "IVAR", "negative inverse variance"));
        }
        Ok(())
    }

    /// Reads a fiber-flat file (spx or desispec).
    pub fn read(path: impl AsRef<Path>) -> Result<FiberFlat> {
        let path = path.as_ref();
        let mut r = FitsReader::open(path)?;
        let header = Header::read(&mut r, "FIBERFLAT")?;
        let fiberflat = r.image2::<f64>("FIBERFLAT")?;
        let ivar = r.image2::<f64>("IVAR")?;
        let mask = if r.has_hdu("MASK") {
            r.image2::<u32>("MASK")?
        } else {
            ivar.mapv(|v| u32::from(v == 0.0))
        };
        let wave = r.image1::<f64>("WAVELENGTH")?;
        let meanspec = if r.has_hdu("MEANSPEC") {
            r.image1::<f64>("MEANSPEC")?
        } else {
            Array1::ones(wave.len())
        };
        let fibermap = if r.has_hdu("FIBERMAP") {
            Some(Fibermap::read(&mut r, "FIBERMAP")?)
        } else {
            None
        };
        let chi2pdf = header.get_f64("CHI2PDF");
        let ff = FiberFlat {
            wave,
            fiberflat,
            ivar,
            mask,
            meanspec,
            chi2pdf,
            fibermap,
            header,
        };
        ff.check(path)?;
        Ok(ff)
    }

    /// Writes the file atomically in desispec's layout.
    pub fn write(&self, path: impl AsRef<Path>, prov: &Provenance) -> Result<()> {
        let path = path.as_ref();
        self.check(path)?;
        let (ns, nw) = (self.nspec(), self.nwave());
        let f32s = |it: &mut dyn Iterator<Item = &f64>| it.map(|&v| v as f32).collect::<Vec<_>>();
        let mut w = FitsWriter::create_with_primary_image(
            path,
            prov,
            "FIBERFLAT",
            &[ns, nw],
            &f32s(&mut self.fiberflat.iter()),
        )?;
        let mut header = self.header.clone();
        header.remove("BUNIT"); // the flat is dimensionless; the frame's unit must not leak
        if let Some(c) = self.chi2pdf {
            header.set("CHI2PDF", HeaderValue::from(c));
        }
        header.write(&mut w)?;
        w.image("IVAR", &[ns, nw], &f32s(&mut self.ivar.iter()))?;
        let mask: Vec<u32> = self.mask.iter().copied().collect();
        w.image("MASK", &[ns, nw], &mask)?;
        w.image("MEANSPEC", &[nw], &f32s(&mut self.meanspec.iter()))?;
        w.image("WAVELENGTH", &[nw], &f32s(&mut self.wave.iter()))?;
        w.key("BUNIT", "Angstrom")?;
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
    fn round_trip_and_bad_shape() {
        let (ns, nw) = (3, 7);
        let ff = FiberFlat {
            wave: Array1::from_iter((0..nw).map(|i| 5000.0 + i as f64)),
            fiberflat: Array2::from_shape_fn((ns, nw), |(i, j)| 1.0 + 0.125 * (i + j) as f64),
            ivar: Array2::from_elem((ns, nw), 4.0),
            mask: Array2::zeros((ns, nw)),
            meanspec: Array1::from_elem(nw, 100.0),
            chi2pdf: Some(1.5),
            fibermap: Some(Fibermap::minimal(&[0, 1, 2])),
            header: Header::default(),
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fiberflat-r0-00000001.fits");
        ff.write(&p, &Provenance::default()).unwrap();
        let g = FiberFlat::read(&p).unwrap();
        assert_eq!(g.fiberflat, ff.fiberflat);
        assert_eq!(g.meanspec, ff.meanspec);
        assert_eq!(g.chi2pdf, Some(1.5));
        assert_eq!(g.fibermap.map(|f| f.fibers()), Some(vec![0, 1, 2]));
        let mut bad = ff.clone();
        bad.meanspec = Array1::ones(2);
        let e = bad.write(p.with_file_name("bad.fits"), &Provenance::default());
        assert!(e.unwrap_err().to_string().contains("MEANSPEC"));
        assert!(!p.with_file_name("bad.fits").exists());
    }
}
