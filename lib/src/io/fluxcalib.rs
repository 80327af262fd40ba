//! The fluxcalib file (`fluxcalib-{CAM}-{EXPID}.fits`, desispec `write_flux_calibration`,
//! reference/calibration.md §4.4): FLUXCALIB f8 [nspec, nwave] (primary, BUNIT
//! '10**+17 cm2 count s / erg': electrons/Å per 1e-17 erg/s/cm²/Å), IVAR f4, MASK u4,
//! WAVELENGTH f4 (Å), FIBERCORR (FLAT_TO_PSF_FLUX, PSF_TO_FIBER_FLUX), STDSTAR_FIBERMAP,
//! DECONVOLVED_CALIB f8 [nwave].

use std::path::Path;

use ndarray::Array2;

use super::fibermap::Fibermap;
use super::fits::{Column, ColumnData, FitsReader, FitsWriter, Provenance};
use super::header::Header;
use super::table::Table;
use super::{FitsError, Result};

/// DESI's unit string of the calibration vector.
pub const BUNIT_FLUXCALIB: &str = "10**+17 cm2 count s / erg";

/// A flux calibration of one camera.
#[derive(Debug, Clone)]
pub struct FluxCalib {
    /// Wavelength [nwave], Angstrom.
    pub wave: Vec<f64>,
    /// Calibration [nspec, nwave]: electrons/Å per 1e-17 erg/s/cm²/Å (frame = calib · flux).
    pub calib: Array2<f64>,
    /// Inverse variance of `calib` [nspec, nwave].
    pub ivar: Array2<f64>,
    /// Mask [nspec, nwave] (specmask bits; non-zero where no star constrains the calibration).
    pub mask: Array2<u32>,
    /// Point-source correction per fiber (1: fiber acceptance is not modelled).
    pub flat_to_psf: Vec<f64>,
    /// Deconvolved calibration [nwave].
    pub deconvolved: Option<Vec<f64>>,
    /// FIBERMAP rows of the stars used.
    pub stdstar_fibermap: Option<Fibermap>,
    pub header: Header,
}

impl FluxCalib {
    fn check(&self, path: &Path) -> Result<()> {
        let (ns, nw) = self.calib.dim();
        if self.ivar.dim() != (ns, nw)
            || self.mask.dim() != (ns, nw)
            || self.wave.len() != nw
            || self.flat_to_psf.len() != ns
        {
            return Err(FitsError::hdu(
                path,
                "FLUXCALIB",
                format!("calibration is {ns}x{nw}; IVAR, MASK, WAVELENGTH or FIBERCORR disagree"),
            ));
        }
        if self
            .calib
            .iter()
            .chain(self.ivar.iter())
            .any(|v| !v.is_finite())
        {
            return Err(FitsError::hdu(
                path,
                "FLUXCALIB",
                "non-finite calibration or ivar",
            ));
        }
        Ok(())
    }

    /// Writes the file atomically.
    pub fn write(&self, path: impl AsRef<Path>, prov: &Provenance) -> Result<()> {
        let path = path.as_ref();
        self.check(path)?;
        let (ns, nw) = self.calib.dim();
        let c: Vec<f64> = self.calib.iter().copied().collect();
        let mut w = FitsWriter::create_with_primary_image(path, prov, "FLUXCALIB", &[ns, nw], &c)?;
        self.header.write(&mut w)?;
        w.key("BUNIT", BUNIT_FLUXCALIB)?;
        let iv: Vec<f32> = self.ivar.iter().map(|&v| v as f32).collect();
        w.image("IVAR", &[ns, nw], &iv)?;
        let m: Vec<u32> = self.mask.iter().copied().collect();
        w.image("MASK", &[ns, nw], &m)?;
        let wv: Vec<f32> = self.wave.iter().map(|&v| v as f32).collect();
        w.image("WAVELENGTH", &[nw], &wv)?;
        w.key("BUNIT", "Angstrom")?;
        let corr = Table::new(vec![
            Column::new(
                "FLAT_TO_PSF_FLUX",
                ColumnData::F32(self.flat_to_psf.iter().map(|&v| v as f32).collect()),
            ),
            Column::new("PSF_TO_FIBER_FLUX", ColumnData::F32(vec![1.0; ns])),
        ])
        .map_err(|e| FitsError::hdu(path, "FIBERCORR", e))?;
        corr.write(&mut w, "FIBERCORR")?;
        if let Some(fm) = &self.stdstar_fibermap {
            fm.write(&mut w, "STDSTAR_FIBERMAP")?;
        }
        if let Some(d) = &self.deconvolved {
            w.image("DECONVOLVED_CALIB", &[nw], d)?;
        }
        w.commit()?;
        Ok(())
    }

    /// Reads a fluxcalib file (ours or desispec's).
    pub fn read(path: impl AsRef<Path>) -> Result<FluxCalib> {
        let path = path.as_ref();
        let mut r = FitsReader::open(path)?;
        let calib: Array2<f64> = r.image2("FLUXCALIB")?;
        let ivar: Array2<f64> = r.image2("IVAR")?;
        let mask: Array2<u32> = r.image2("MASK")?;
        let wave = r.image1::<f64>("WAVELENGTH")?.to_vec();
        let ns = calib.nrows();
        let flat_to_psf = if r.has_hdu("FIBERCORR") {
            r.col_opt::<f64>("FIBERCORR", "FLAT_TO_PSF_FLUX")?
                .unwrap_or_else(|| vec![1.0; ns])
        } else {
            vec![1.0; ns]
        };
        let deconvolved = if r.has_hdu("DECONVOLVED_CALIB") {
            Some(r.image1::<f64>("DECONVOLVED_CALIB")?.to_vec())
        } else {
            None
        };
        let stdstar_fibermap = if r.has_hdu("STDSTAR_FIBERMAP") {
            Some(Fibermap::read(&mut r, "STDSTAR_FIBERMAP")?)
        } else {
            None
        };
        let header = Header::read(&mut r, "FLUXCALIB")?;
        let fc = FluxCalib {
            wave,
            calib,
            ivar,
            mask,
            flat_to_psf,
            deconvolved,
            stdstar_fibermap,
            header,
        };
        fc.check(path)?;
        Ok(fc)
    }
}
