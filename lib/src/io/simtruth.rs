//! The simulator's truth file: what went into a simulated raw exposure, for scoring every
//! later stage. All spectra are BEFORE resolution (not convolved with the PSF's line-spread
//! function) and sampled as bin integrals/averages on the camera's extraction grid.
//!
//! | HDU | content |
//! |---|---|
//! | PRIMARY | NIGHT, EXPID, FLAVOR, EXPTIME, SEED, TILEID, INSTRUME, CAMERAS |
//! | FIBERMAP | the exposure's fibermap (as in the raw file) |
//! | TRUTH | per fiber: TARGETID, FIBER, OBJTYPE, SPECTYPE, SUBTYPE, Z, TEFF, LOGG, FEH, OIIFLUX, FLUX_G/R/Z (nanomaggies of the spectrum entering the fiber), FIBERTHRU |
//! | WAVE_xx | extraction grid of camera xx, Angstrom `[nwave]` |
//! | PHOT_xx | object electrons per bin (= detected photons, after throughput) `[nspec, nwave]` |
//! | SKYPHOT_xx | sky (science) or lamp (arc, flat) electrons per bin `[nspec, nwave]` |
//! | FLUX_xx | object flux density entering the fiber, 1e-17 erg/s/cm²/Å, bin average |
//! | SKYFLUX_xx | sky flux density entering the fiber, 1e-17 erg/s/cm²/Å |
//! | CALIB_xx | electrons/Å per 1e-17 erg/s/cm²/Å (true calibration incl. fiber throughput) |
//! | IMAGE_xx | noiseless signal image, electrons `[ny, nx]` (preprocessed geometry; no dark, no cosmics) |
//! | COSMIC_xx | cosmic-ray charge, electrons `[ny, nx]` (when simulated) |
//!
//! The extraction returns electrons/Å convolved with the resolution: compare it with
//! R·(PHOT+SKYPHOT)/Δλ. Header keys per camera HDU: DARKELEC (mean dark electrons per pixel),
//! NPHOT (total electrons projected onto the CCD, lines included, before clipping by the CCD).

use std::path::Path;

use ndarray::{Array1, Array2};

use super::fibermap::Fibermap;
use super::fits::{FitsReader, FitsWriter, Provenance, PRIMARY};
use super::table::Table;
use super::{FitsError, Result};

/// Truth of one camera.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraTruth {
    /// Lower-case camera name.
    pub camera: String,
    /// Extraction grid, Angstrom `[nwave]`.
    pub wave: Array1<f64>,
    /// `[nspec, nwave]` arrays, see the module table.
    pub phot: Array2<f32>,
    pub skyphot: Array2<f32>,
    pub flux: Array2<f32>,
    pub skyflux: Array2<f32>,
    pub calib: Array2<f32>,
    /// Noiseless signal image, electrons `[ny, nx]`.
    pub image: Option<Array2<f32>>,
    /// Cosmic-ray charge, electrons `[ny, nx]`.
    pub cosmics: Option<Array2<f32>>,
    /// Mean dark charge per pixel, electrons.
    pub dark_electrons: f64,
    /// Electrons projected (sum over all spots before clipping to the CCD).
    pub nphot: f64,
}

/// A whole truth file.
#[derive(Debug, Clone)]
pub struct SimTruth {
    pub night: i64,
    pub expid: i64,
    pub flavor: String,
    pub exptime: f64,
    pub seed: i64,
    pub tileid: i64,
    /// Instrument name (preset or YAML name).
    pub instrument: String,
    pub fibermap: Option<Fibermap>,
    /// Per-fiber truth table (see module doc).
    pub truth: Option<Table>,
    pub cameras: Vec<CameraTruth>,
}

fn to_vec(a: &Array2<f32>) -> Vec<f32> {
    a.iter().copied().collect()
}

impl SimTruth {
    /// Writes the truth file atomically.
    pub fn write(&self, path: &Path, prov: &Provenance) -> Result<()> {
        let mut w = FitsWriter::create(path, prov)?;
        w.key("NIGHT", self.night)?;
        w.key("EXPID", self.expid)?;
        w.key("FLAVOR", self.flavor.as_str())?;
        w.key("EXPTIME", self.exptime)?;
        w.key("SEED", self.seed)?;
        w.key("TILEID", self.tileid)?;
        w.key("INSTRUME", self.instrument.as_str())?;
        let cams: Vec<&str> = self.cameras.iter().map(|c| c.camera.as_str()).collect();
        w.key("CAMERAS", cams.join(","))?;
        w.key("RESOLVED", false)?;
        if let Some(fm) = &self.fibermap {
            fm.write(&mut w, "FIBERMAP")?;
        }
        if let Some(t) = &self.truth {
            t.write(&mut w, "TRUTH")?;
        }
        for c in &self.cameras {
            let up = c.camera.to_ascii_uppercase();
            let wave: Vec<f64> = c.wave.to_vec();
            w.image(&format!("WAVE_{up}"), &[wave.len()], &wave)?;
            w.key("BUNIT", "Angstrom")?;
            w.key("DARKELEC", c.dark_electrons)?;
            w.key("NPHOT", c.nphot)?;
            let arrays = [
                ("PHOT", &c.phot, "electron"),
                ("SKYPHOT", &c.skyphot, "electron"),
                ("FLUX", &c.flux, "10**-17 erg/(s cm2 Angstrom)"),
                ("SKYFLUX", &c.skyflux, "10**-17 erg/(s cm2 Angstrom)"),
                (
                    "CALIB",
                    &c.calib,
                    "electron/Angstrom / (10**-17 erg/(s cm2 Angstrom))",
                ),
            ];
            for (name, a, unit) in arrays {
                let (n0, n1) = a.dim();
                w.image(&format!("{name}_{up}"), &[n0, n1], &to_vec(a))?;
                w.key("BUNIT", unit)?;
                w.key("RESOLVED", false)?;
            }
            for (name, img) in [("IMAGE", &c.image), ("COSMIC", &c.cosmics)] {
                if let Some(a) = img {
                    let (n0, n1) = a.dim();
                    w.image(&format!("{name}_{up}"), &[n0, n1], &to_vec(a))?;
                    w.key("BUNIT", "electron")?;
                }
            }
        }
        w.commit()?;
        Ok(())
    }

    /// Reads a truth file.
    pub fn read(path: &Path) -> Result<SimTruth> {
        let mut r = FitsReader::open(path)?;
        let names = r.hdu_names()?;
        let cams: String = r.key(PRIMARY, "CAMERAS")?;
        let mut cameras = Vec::new();
        for cam in cams.split(',').filter(|c| !c.is_empty()) {
            let up = cam.to_ascii_uppercase();
            let wname = format!("WAVE_{up}");
            let wave = r.image1::<f64>(&wname)?;
            let dark_electrons: f64 = r.key(&wname, "DARKELEC")?;
            let nphot: f64 = r.key(&wname, "NPHOT")?;
            let mut get = |n: &str| r.image2::<f32>(&format!("{n}_{up}"));
            let (phot, skyphot, flux, skyflux, calib) = (
                get("PHOT")?,
                get("SKYPHOT")?,
                get("FLUX")?,
                get("SKYFLUX")?,
                get("CALIB")?,
            );
            for (n, a) in [("PHOT", &phot), ("SKYPHOT", &skyphot), ("FLUX", &flux)] {
                if a.ncols() != wave.len() {
                    return Err(FitsError::hdu(
                        path,
                        &format!("{n}_{up}"),
                        format!("{} columns for {} wavelengths", a.ncols(), wave.len()),
                    ));
                }
            }
            let mut opt = |n: &str| -> Result<Option<Array2<f32>>> {
                let h = format!("{n}_{up}");
                if names.contains(&h) {
                    Ok(Some(r.image2::<f32>(&h)?))
                } else {
                    Ok(None)
                }
            };
            let image = opt("IMAGE")?;
            let cosmics = opt("COSMIC")?;
            cameras.push(CameraTruth {
                camera: cam.to_string(),
                wave,
                phot,
                skyphot,
                flux,
                skyflux,
                calib,
                image,
                cosmics,
                dark_electrons,
                nphot,
            });
        }
        let fibermap = if names.iter().any(|n| n == "FIBERMAP") {
            Some(Fibermap::read(&mut r, "FIBERMAP")?)
        } else {
            None
        };
        let truth = if names.iter().any(|n| n == "TRUTH") {
            Some(Table::read(&mut r, "TRUTH")?)
        } else {
            None
        };
        Ok(SimTruth {
            night: r.key(PRIMARY, "NIGHT")?,
            expid: r.key(PRIMARY, "EXPID")?,
            flavor: r.key(PRIMARY, "FLAVOR")?,
            exptime: r.key(PRIMARY, "EXPTIME")?,
            seed: r.key(PRIMARY, "SEED")?,
            tileid: r.key(PRIMARY, "TILEID")?,
            instrument: r.key(PRIMARY, "INSTRUME")?,
            fibermap,
            truth,
            cameras,
        })
    }

    /// The truth of camera `cam` (case-insensitive).
    pub fn camera(&self, cam: &str) -> Option<&CameraTruth> {
        self.cameras
            .iter()
            .find(|c| c.camera.eq_ignore_ascii_case(cam))
    }
}
