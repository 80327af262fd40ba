//! The stdstars file (`stdstars-{SP}-{EXPID}.fits`, desispec `write_stdstar_models`,
//! reference/calibration.md §4.4): FLUX [nstar, nwave] f4 in 1e-17 erg/s/cm²/Å (primary,
//! EXTNAME FLUX), WAVELENGTH f4 (Å), FIBERS (absolute FIBER), METADATA (1-D columns), COEFF
//! [nstar, ntemplate], FIBERMAP (the stars' rows), INPUT_FRAMES (NIGHT, EXPID, CAMERA).

use std::path::Path;

use ndarray::Array2;

use super::fibermap::Fibermap;
use super::fits::{FitsReader, FitsWriter, Provenance};
use super::header::Header;
use super::table::Table;
use super::{FitsError, Result};

/// DESI's flux unit string.
pub const BUNIT_FLUX: &str = "10**-17 erg/(s cm2 Angstrom)";

/// Standard-star models of one petal.
#[derive(Debug, Clone)]
pub struct StdStarModels {
    /// Observed-frame wavelength [nwave], Angstrom.
    pub wave: Vec<f64>,
    /// Normalised, reddened models [nstar, nwave], 1e-17 erg/s/cm²/Å.
    pub flux: Array2<f64>,
    /// Absolute FIBER per star.
    pub fibers: Vec<i32>,
    /// Per-star metadata (TEFF, LOGG, FEH, CHI2DOF, REDSHIFT, DATA_G-R, MODEL_G-R, …).
    pub metadata: Table,
    /// Template coefficients [nstar, ntemplate].
    pub coeff: Option<Array2<f64>>,
    pub fibermap: Option<Fibermap>,
    /// NIGHT, EXPID, CAMERA of the input frames.
    pub input_frames: Option<Table>,
    pub header: Header,
}

impl StdStarModels {
    /// Number of stars.
    pub fn nstar(&self) -> usize {
        self.fibers.len()
    }

    fn check(&self, path: &Path) -> Result<()> {
        let (ns, nw) = self.flux.dim();
        if nw != self.wave.len() || ns != self.fibers.len() || self.metadata.nrows() != ns {
            return Err(FitsError::hdu(
                path,
                "FLUX",
                format!(
                    "flux is {ns}x{nw} but {} wavelengths, {} fibers, {} metadata rows",
                    self.wave.len(),
                    self.fibers.len(),
                    self.metadata.nrows()
                ),
            ));
        }
        if self.flux.iter().any(|v| !v.is_finite()) {
            return Err(FitsError::hdu(path, "FLUX", "non-finite model flux"));
        }
        Ok(())
    }

    /// Writes the file atomically.
    pub fn write(&self, path: impl AsRef<Path>, prov: &Provenance) -> Result<()> {
        let path = path.as_ref();
        self.check(path)?;
        let (ns, nw) = self.flux.dim();
        let f32s: Vec<f32> = self.flux.iter().map(|&v| v as f32).collect();
        let mut w = FitsWriter::create_with_primary_image(path, prov, "FLUX", &[ns, nw], &f32s)?;
        self.header.write(&mut w)?;
        w.key("BUNIT", BUNIT_FLUX)?;
        let wv: Vec<f32> = self.wave.iter().map(|&v| v as f32).collect();
        w.image("WAVELENGTH", &[nw], &wv)?;
        w.key("BUNIT", "Angstrom")?;
        w.image("FIBERS", &[ns], &self.fibers)?;
        self.metadata.write(&mut w, "METADATA")?;
        if let Some(c) = &self.coeff {
            let d: Vec<f64> = c.iter().copied().collect();
            w.image("COEFF", &[c.nrows(), c.ncols()], &d)?;
        }
        if let Some(fm) = &self.fibermap {
            fm.write(&mut w, "FIBERMAP")?;
        }
        if let Some(t) = &self.input_frames {
            t.write(&mut w, "INPUT_FRAMES")?;
        }
        w.commit()?;
        Ok(())
    }

    /// Reads a stdstars file (ours or desispec's).
    pub fn read(path: impl AsRef<Path>) -> Result<StdStarModels> {
        let path = path.as_ref();
        let mut r = FitsReader::open(path)?;
        let flux: Array2<f64> = r.image2("FLUX")?;
        let wave = r.image1::<f64>("WAVELENGTH")?.to_vec();
        let fibers: Vec<i32> = r.image1::<i32>("FIBERS")?.to_vec();
        let metadata = Table::read(&mut r, "METADATA")?;
        let coeff = if r.has_hdu("COEFF") {
            Some(r.image2::<f64>("COEFF")?)
        } else {
            None
        };
        let fibermap = if r.has_hdu("FIBERMAP") {
            Some(Fibermap::read(&mut r, "FIBERMAP")?)
        } else {
            None
        };
        let input_frames = if r.has_hdu("INPUT_FRAMES") {
            Some(Table::read(&mut r, "INPUT_FRAMES")?)
        } else {
            None
        };
        let header = Header::read(&mut r, "FLUX")?;
        let m = StdStarModels {
            wave,
            flux,
            fibers,
            metadata,
            coeff,
            fibermap,
            input_frames,
            header,
        };
        m.check(path)?;
        Ok(m)
    }
}
