//! Frame files (`frame-`, `sframe-`, `fframe-`, `cframe-{camera}-{expid:08}.fits`), as desispec's
//! `write_frame` lays them out (reference/extraction.md §6, calibration.md §5.2):
//! FLUX (primary, f32), IVAR (f32), MASK (u32), WAVELENGTH (f64), RESOLUTION (f32
//! `[nspec, ndiag, nwave]`), FIBERMAP, CHI2PIX (f32), SCORES. In memory everything is f64.

use std::path::Path;

use ndarray::{Array1, Array2, Array3};

use super::fibermap::Fibermap;
use super::fits::{require_finite, FitsReader, FitsWriter, Provenance};
use super::header::{Header, HeaderValue};
use super::table::Table;
use super::{FitsError, Result};
use crate::resolution::Resolution;

/// Flux unit of an extracted frame.
pub const BUNIT_FRAME: &str = "electron/Angstrom";
/// Flux unit of a calibrated frame (cframe), spectra and coadds.
pub const BUNIT_CALIBRATED: &str = "10**-17 erg/(s cm2 Angstrom)";

/// One camera's spectra of one exposure.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Wavelength grid `[nwave]`, Angstrom (vacuum).
    pub wave: Array1<f64>,
    /// Flux `[nspec, nwave]`: electrons/Angstrom in a frame, 1e-17 erg/s/cm²/Å in a cframe.
    pub flux: Array2<f64>,
    /// Inverse variance of `flux` `[nspec, nwave]`; 0 means no information.
    pub ivar: Array2<f64>,
    /// specmask bits `[nspec, nwave]` (see [`crate::maskbits::specmask`]).
    pub mask: Array2<u32>,
    /// Resolution matrices `[nspec, ndiag, nwave]` in DESI band storage ([`Resolution`]).
    pub resolution: Array3<f64>,
    /// One row per spectrum.
    pub fibermap: Fibermap,
    /// Extraction χ² per pixel `[nspec, nwave]`, if any.
    pub chi2pix: Option<Array2<f64>>,
    /// Per-fiber scores table, if any.
    pub scores: Option<Table>,
    /// Header of the FLUX HDU (CAMERA, EXPID, NIGHT, EXPTIME, BUNIT, …).
    pub header: Header,
}

impl Frame {
    /// Number of spectra.
    pub fn nspec(&self) -> usize {
        self.flux.nrows()
    }

    /// Number of wavelengths.
    pub fn nwave(&self) -> usize {
        self.wave.len()
    }

    /// The resolution matrix of spectrum `i`.
    pub fn resolution_of(&self, i: usize) -> Resolution {
        // ndiag is odd for any Frame that passed `check`.
        Resolution::from_band(self.resolution.index_axis(ndarray::Axis(0), i).to_owned())
            .unwrap_or_else(|_| {
                Resolution::identity(1, self.nwave()).unwrap_or_else(|_| unreachable!())
            })
    }

    /// CAMERA keyword, lower case (e.g. "b0").
    pub fn camera(&self) -> Option<String> {
        self.header
            .get_str("CAMERA")
            .map(|c| c.trim().to_lowercase())
    }

    /// EXPID keyword.
    pub fn expid(&self) -> Option<i64> {
        self.header.get_i64("EXPID")
    }

    /// Checks shapes agree and values are finite (ivar ≥ 0); `what` names the file.
    pub fn check(&self, path: &Path) -> Result<()> {
        let (ns, nw) = (self.nspec(), self.nwave());
        let bad = |hdu: &str, msg: String| Err(FitsError::hdu(path, hdu, msg));
        if self.flux.dim() != (ns, nw) || self.wave.len() != nw {
            return bad(
                "FLUX",
                format!(
                    "shape {:?} does not match {nw} wavelengths",
                    self.flux.dim()
                ),
            );
        }
        if self.ivar.dim() != (ns, nw) {
            return bad(
                "IVAR",
                format!("shape {:?}, expected {:?}", self.ivar.dim(), (ns, nw)),
            );
        }
        if self.mask.dim() != (ns, nw) {
            return bad(
                "MASK",
                format!("shape {:?}, expected {:?}", self.mask.dim(), (ns, nw)),
            );
        }
        let (rs, rd, rw) = self.resolution.dim();
        if rs != ns || rw != nw || rd.is_multiple_of(2) {
            return bad(
                "RESOLUTION",
                format!(
                    "shape {:?}, expected [{ns}, odd ndiag, {nw}]",
                    self.resolution.dim()
                ),
            );
        }
        if self.fibermap.len() != ns {
            return bad(
                "FIBERMAP",
                format!("{} rows for {ns} spectra", self.fibermap.len()),
            );
        }
        if let Some(c) = &self.chi2pix {
            if c.dim() != (ns, nw) {
                return bad(
                    "CHI2PIX",
                    format!("shape {:?}, expected {:?}", c.dim(), (ns, nw)),
                );
            }
        }
        require_finite(path, "WAVELENGTH", self.wave.iter())?;
        require_finite(path, "FLUX", self.flux.iter())?;
        require_finite(path, "IVAR", self.ivar.iter())?;
        require_finite(path, "RESOLUTION", self.resolution.iter())?;
        if self.ivar.iter().any(|&v| v < 0.0) {
            return bad("IVAR", "negative inverse variance".into());
        }
        Ok(())
    }

    /// Reads a frame (or cframe) file and checks it.
    pub fn read(path: impl AsRef<Path>) -> Result<Frame> {
        let path = path.as_ref();
        let mut r = FitsReader::open(path)?;
        let header = Header::read(&mut r, "FLUX")?;
        let flux = r.image2::<f64>("FLUX")?;
        let ivar = r.image2::<f64>("IVAR")?;
        let mask = if r.has_hdu("MASK") {
            r.image2::<u32>("MASK")?
        } else {
            Array2::zeros(flux.dim())
        };
        let wave = r.image1::<f64>("WAVELENGTH")?;
        let resolution = r.image3::<f64>("RESOLUTION")?;
        let fibermap = if r.has_hdu("FIBERMAP") {
            Fibermap::read(&mut r, "FIBERMAP")?
        } else {
            let first = header.get_i64("FIBERMIN").unwrap_or(0) as i32;
            Fibermap::minimal(&(first..first + flux.nrows() as i32).collect::<Vec<_>>())
        };
        let chi2pix = if r.has_hdu("CHI2PIX") {
            Some(r.image2::<f64>("CHI2PIX")?)
        } else {
            None
        };
        let scores = if r.has_hdu("SCORES") {
            Some(Table::read(&mut r, "SCORES")?)
        } else {
            None
        };
        let frame = Frame {
            wave,
            flux,
            ivar,
            mask,
            resolution,
            fibermap,
            chi2pix,
            scores,
            header,
        };
        frame.check(path)?;
        Ok(frame)
    }

    /// Writes the frame atomically in desispec's layout (flux, ivar, resolution as f32).
    /// Refuses a frame that fails [`Frame::check`].
    pub fn write(&self, path: impl AsRef<Path>, prov: &Provenance) -> Result<()> {
        let path = path.as_ref();
        self.check(path)?;
        let (ns, nw) = (self.nspec(), self.nwave());
        let f32s = |a: &Array2<f64>| a.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        let mut w = FitsWriter::create_with_primary_image(
            path,
            prov,
            "FLUX",
            &[ns, nw],
            &f32s(&self.flux),
        )?;
        let mut header = self.header.clone();
        if header.get("BUNIT").is_none() {
            header.set("BUNIT", HeaderValue::from(BUNIT_FRAME));
        }
        header.write(&mut w)?;
        w.image("IVAR", &[ns, nw], &f32s(&self.ivar))?;
        w.image(
            "MASK",
            &[ns, nw],
            self.mask.as_standard_layout().as_slice().unwrap_or(&[]),
        )?;
        w.image(
            "WAVELENGTH",
            &[nw],
            self.wave.as_standard_layout().as_slice().unwrap_or(&[]),
        )?;
        w.key("BUNIT", "Angstrom")?;
        let res: Vec<f32> = self.resolution.iter().map(|&v| v as f32).collect();
        let (_, nd, _) = self.resolution.dim();
        w.image("RESOLUTION", &[ns, nd, nw], &res)?;
        self.fibermap.write(&mut w, "FIBERMAP")?;
        if let Some(c) = &self.chi2pix {
            w.image("CHI2PIX", &[ns, nw], &f32s(c))?;
        }
        if let Some(s) = &self.scores {
            s.write(&mut w, "SCORES")?;
        }
        w.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsupport::shared_file;

    fn small_frame() -> Frame {
        let (ns, nw, nd) = (3, 20, 5);
        let wave = Array1::from_iter((0..nw).map(|i| 5760.0 + 0.8 * i as f64));
        let flux = Array2::from_shape_fn((ns, nw), |(i, j)| (i * 100 + j) as f64 * 0.5);
        let ivar = Array2::from_elem((ns, nw), 2.0);
        let mut mask = Array2::zeros((ns, nw));
        mask[[1, 3]] = crate::maskbits::specmask::COSMIC;
        let mut resolution = Array3::zeros((ns, nd, nw));
        for i in 0..ns {
            let r = Resolution::from_gaussian_sigma(&vec![1.0 + 0.1 * i as f64; nw], nd).unwrap();
            resolution
                .index_axis_mut(ndarray::Axis(0), i)
                .assign(&r.band());
        }
        let mut header = Header::default();
        header.set("CAMERA", "r0".into());
        header.set("EXPID", 12i64.into());
        Frame {
            wave,
            flux,
            ivar,
            mask,
            resolution,
            fibermap: Fibermap::minimal(&[0, 1, 2]),
            chi2pix: Some(Array2::from_elem((ns, nw), 1.0)),
            scores: None,
            header,
        }
    }

    #[test]
    fn frame_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frame-r0-00000012.fits");
        let f = small_frame();
        f.write(&path, &Provenance::default()).unwrap();
        let g = Frame::read(&path).unwrap();
        assert_eq!(g.flux, f.flux); // exactly representable in f32
        assert_eq!(g.mask, f.mask);
        assert_eq!(g.wave, f.wave);
        assert_eq!(g.camera().as_deref(), Some("r0"));
        assert_eq!(g.expid(), Some(12));
        assert_eq!(g.header.get_str("BUNIT").as_deref(), Some(BUNIT_FRAME));
        for (a, b) in g.resolution.iter().zip(f.resolution.iter()) {
            assert!((a - b).abs() <= 1e-7 * b.abs().max(1e-30));
        }
        assert_eq!(g.fibermap.fibers(), vec![0, 1, 2]);
    }

    #[test]
    fn bad_frames_are_refused_without_output() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.fits");
        let mut f = small_frame();
        f.flux[[0, 0]] = f64::NAN;
        let e = f
            .write(&path, &Provenance::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.fits[FLUX]") && e.contains("non-finite"),
            "{e}"
        );
        let mut f = small_frame();
        f.ivar = Array2::zeros((2, 20));
        let e = f
            .write(&path, &Provenance::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("[IVAR]") && e.contains("shape"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn reads_desispec_frames() {
        for rel in ["extract/frame-noisy.fits", "sky/frame-sky-input.fits"] {
            let Some(p) = shared_file(rel) else { continue };
            let f = Frame::read(&p).unwrap();
            assert_eq!(f.camera().as_deref(), Some("r0"));
            assert_eq!(f.resolution.dim().1, 11);
            assert!(f.nspec() == 25 || f.nspec() == 60);
        }
        if let Some(p) = shared_file("sky/frame-sky-input.fits") {
            let f = Frame::read(&p).unwrap();
            assert_eq!(f.fibermap.sky_rows().len(), 12);
            assert_eq!(f.nwave(), 2326);
        }
    }
}
