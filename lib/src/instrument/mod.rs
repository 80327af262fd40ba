//! The instrument: cameras (wavelength ranges, CCD and amplifier layout, gain, read noise,
//! dark current, throughput, nominal PSF), fibers and bundles, telescope and lamps.
//!
//! Loaded from YAML ([`Instrument::from_yaml_file`]) or from a preset shipped in the repo
//! ([`Instrument::preset`]: `desi` full size, `mini` for tests and demos). The YAML crate is
//! `serde_norway` (maintained fork of the deprecated serde_yaml, same API).
//!
//! Conventions: wavelengths in Angstrom (vacuum), CCD coordinates in pixels, pixel-centred
//! (reference/extraction.md §0): x = column = cross-dispersion, y = row = wavelength.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::speclib::arc::{self, ArcLine};

/// Errors loading an instrument description.
#[derive(Debug, thiserror::Error)]
pub enum InstrumentError {
    #[error("{path}: cannot read ({source})")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: invalid instrument YAML: {msg}")]
    Yaml { path: String, msg: String },
    #[error("{path}: {msg}")]
    Invalid { path: String, msg: String },
    #[error("unknown preset '{0}' (known: desi, mini)")]
    UnknownPreset(String),
    #[error(
        "unknown camera '{cam}' for instrument {inst} (bands {bands}, spectrographs 0..{nsp})"
    )]
    UnknownCamera {
        cam: String,
        inst: String,
        bands: String,
        nsp: usize,
    },
}

/// A whole instrument: one spectrograph design replicated `nspectrographs` times.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Instrument {
    /// Preset or user name, e.g. "desi".
    pub name: String,
    /// Number of spectrographs (petals); camera names carry the index (b0 … z9).
    pub nspectrographs: usize,
    /// Fibers per spectrograph (DESI: 500).
    pub nspec: usize,
    /// Fibers per bundle (DESI: 25).
    pub bundle_size: usize,
    /// Trace spacing of neighbouring fibers inside a bundle, pixels.
    pub fiber_pitch: f64,
    /// Trace spacing between the last fiber of a bundle and the first of the next, pixels.
    pub bundle_gap: f64,
    /// Telescope and fiber optics.
    pub telescope: Telescope,
    /// Calibration lamps.
    pub lamps: Lamps,
    /// Cosmic-ray hit rate, hits per cm² of CCD per second (15 µm pixels).
    pub cosmic_rate: f64,
    /// The cameras of one spectrograph, usually b, r, z.
    pub cameras: Vec<Camera>,
}

/// Telescope collecting area and fiber size.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Telescope {
    /// Effective collecting area, cm² (DESI: π(D²−d²)/4 − supports ≈ 8.678e4 cm²,
    /// reference/calibration.md §6.1).
    pub area_cm2: f64,
    /// Fiber diameter on the sky, arcsec (DESI: 107 µm ≈ 1.52″).
    pub fiber_diameter_arcsec: f64,
}

/// Calibration lamps.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Lamps {
    /// Arc lamps on during an arc exposure, with their scale: detected photons per second per
    /// unit of NIST relative intensity before camera throughput. Ions: HgI, ArI, CdI, NeI, KrI, XeI.
    pub arc: Vec<ArcLamp>,
    /// Continuum (quartz) lamp colour temperature, Kelvin.
    pub flat_temperature: f64,
    /// Continuum lamp photon rate per fiber at 6000 Å, photons/s/Å before camera throughput.
    pub flat_rate: f64,
}

/// One arc lamp.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ArcLamp {
    /// Ion as in the line list, e.g. "NeI".
    pub ion: String,
    /// Photons/s per unit NIST relative intensity (before throughput).
    pub scale: f64,
}

/// One camera (one band of one spectrograph).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Camera {
    /// Band letter: b, r or z.
    pub band: String,
    /// Extraction grid start, Angstrom (grid points wave_min, wave_min+dwave, … ≤ wave_max).
    pub wave_min: f64,
    /// Extraction grid end (included), Angstrom.
    pub wave_max: f64,
    /// Extraction grid step, Angstrom (DESI 0.8).
    pub dwave: f64,
    /// CCD and amplifiers.
    pub ccd: Ccd,
    /// Dark current, electrons/pixel/hour.
    pub dark_current: f64,
    /// Total throughput (atmosphere, telescope, fiber, spectrograph, CCD QE) as
    /// `[wavelength Å, fraction]` nodes, linearly interpolated, 0 outside.
    pub throughput: Vec<[f64; 2]>,
    /// Nominal PSF.
    pub psf: NominalPsf,
}

/// CCD geometry of the preprocessed image and of the raw readout (reference/calibration.md §0).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Ccd {
    /// Preprocessed image columns (x, cross-dispersion). Even: split between left/right amps.
    pub nx: usize,
    /// Preprocessed image rows (y, wavelength). Even: split between bottom/top amps.
    pub ny: usize,
    /// Prescan columns at the outer side of each amp.
    pub prescan: usize,
    /// Column overscan (BIASSEC) width per amp, at the inner side.
    pub overscan_cols: usize,
    /// Row overscan (ORSEC) rows per amp, between the halves.
    pub overscan_rows: usize,
    /// Extra rows between the bottom and top ORSEC blocks (DESI LBNL CCDs: 2).
    pub row_gap: usize,
    /// Saturation level, ADU (SATURLEV).
    pub saturation: f64,
    /// Amplifiers in the order A (bottom left), B (bottom right), C (top left), D (top right).
    pub amps: Vec<Amp>,
}

/// One amplifier's electronics.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Amp {
    /// Name: A, B, C, D.
    pub name: String,
    /// Gain, electrons/ADU.
    pub gain: f64,
    /// Read noise, electrons rms.
    pub read_noise: f64,
    /// Bias level, ADU.
    pub bias: f64,
}

/// The nominal (design) PSF of a camera: trace geometry and Gauss-Hermite parameters.
/// [`crate::sim::psfmodel`] turns this into a PSFVER 3 Gauss-Hermite PSF.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NominalPsf {
    /// Wavelength at the bottom (y = 0) of the central trace, Angstrom.
    pub ccd_wave_min: f64,
    /// Wavelength at the top (y = ny−1) of the central trace, Angstrom.
    pub ccd_wave_max: f64,
    /// Departure of y(λ) from linear at mid range, pixels (camera distortion).
    pub y_bow: f64,
    /// Field curvature: extra y at the outermost fibers, pixels.
    pub y_smile: f64,
    /// Trace curvature: x of the outermost fibers bends outward by this at both ends of the
    /// wavelength range, pixels.
    pub x_bow: f64,
    /// GHSIGX at the blue and red end, pixels.
    pub sigma_x: [f64; 2],
    /// GHSIGY at the blue and red end, pixels.
    pub sigma_y: [f64; 2],
    /// Extra Gauss-Hermite coefficients `[i, j, value]` (GH-0-0 is 1).
    pub gh: Vec<[f64; 3]>,
    /// Gauss-Hermite degrees in x and y.
    pub ghdeg: usize,
    /// Stamp half sizes, pixels.
    pub hsizex: usize,
    pub hsizey: usize,
    /// Legendre degree of the PSF parameters in wavelength.
    pub legdeg: usize,
    /// Legendre degree of the traces x(λ), y(λ).
    pub trace_deg: usize,
}

const DESI_YAML: &str = include_str!("presets/desi.yaml");
const MINI_YAML: &str = include_str!("presets/mini.yaml");

impl Instrument {
    /// The preset `name`: `desi` or `mini`.
    pub fn preset(name: &str) -> Result<Instrument, InstrumentError> {
        let text = match name {
            "desi" => DESI_YAML,
            "mini" => MINI_YAML,
            _ => return Err(InstrumentError::UnknownPreset(name.to_string())),
        };
        Self::from_yaml_str(text, &format!("preset {name}"))
    }

    /// Parses and validates an instrument YAML; `origin` names it in errors.
    pub fn from_yaml_str(text: &str, origin: &str) -> Result<Instrument, InstrumentError> {
        let inst: Instrument = serde_norway::from_str(text).map_err(|e| InstrumentError::Yaml {
            path: origin.to_string(),
            msg: e.to_string(),
        })?;
        inst.validate().map_err(|msg| InstrumentError::Invalid {
            path: origin.to_string(),
            msg,
        })?;
        Ok(inst)
    }

    /// Reads a user instrument YAML file.
    pub fn from_yaml_file(path: &Path) -> Result<Instrument, InstrumentError> {
        let text = std::fs::read_to_string(path).map_err(|source| InstrumentError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml_str(&text, &path.display().to_string())
    }

    /// YAML text of this instrument (round-trips through [`Instrument::from_yaml_str`]).
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).unwrap_or_default()
    }

    fn validate(&self) -> Result<(), String> {
        if self.nspec == 0 || self.bundle_size == 0 || !self.nspec.is_multiple_of(self.bundle_size)
        {
            return Err(format!(
                "nspec ({}) must be a positive multiple of bundle_size ({})",
                self.nspec, self.bundle_size
            ));
        }
        if self.nspectrographs == 0 || self.nspectrographs > 10 {
            return Err("nspectrographs must be 1..10".into());
        }
        if self.cameras.is_empty() {
            return Err("no cameras".into());
        }
        for c in &self.cameras {
            let b = &c.band;
            if c.dwave.is_nan() || c.dwave <= 0.0 || c.wave_max <= c.wave_min {
                return Err(format!("camera {b}: bad wavelength grid"));
            }
            let ccd = &c.ccd;
            if ccd.nx % 2 != 0 || ccd.ny % 2 != 0 || ccd.nx < 4 || ccd.ny < 4 {
                return Err(format!("camera {b}: nx and ny must be even and >= 4"));
            }
            let names: Vec<&str> = ccd.amps.iter().map(|a| a.name.as_str()).collect();
            if names != ["A", "B", "C", "D"] {
                return Err(format!("camera {b}: amps must be A, B, C, D in that order"));
            }
            if ccd
                .amps
                .iter()
                .any(|a| !(a.gain > 0.0 && a.read_noise >= 0.0))
            {
                return Err(format!("camera {b}: gain must be > 0, read noise >= 0"));
            }
            if ccd.overscan_cols < 5 {
                return Err(format!("camera {b}: overscan_cols must be >= 5"));
            }
            let p = &c.psf;
            if p.ccd_wave_max <= p.ccd_wave_min
                || p.ccd_wave_min > c.wave_min
                || p.ccd_wave_max < c.wave_max
            {
                return Err(format!(
                    "camera {b}: psf ccd_wave_min..max must cover the extraction grid"
                ));
            }
            if p.sigma_x.iter().chain(&p.sigma_y).any(|s| *s <= 0.0) {
                return Err(format!("camera {b}: PSF sigmas must be > 0"));
            }
            if c.throughput.len() < 2 || c.throughput.windows(2).any(|w| w[1][0] <= w[0][0]) {
                return Err(format!(
                    "camera {b}: throughput needs >= 2 nodes with increasing wavelength"
                ));
            }
            let width = self.trace_span();
            if width + 2.0 * p.hsizex as f64 > ccd.nx as f64 {
                return Err(format!(
                    "camera {b}: {} fibers span {width:.1} px, more than the CCD width {}",
                    self.nspec, ccd.nx
                ));
            }
        }
        for l in &self.lamps.arc {
            if !arc::IONS.contains(&l.ion.as_str()) {
                return Err(format!(
                    "arc lamp ion {} unknown (known: {:?})",
                    l.ion,
                    arc::IONS
                ));
            }
        }
        Ok(())
    }

    /// Number of bundles per spectrograph.
    pub fn nbundles(&self) -> usize {
        self.nspec / self.bundle_size
    }

    /// Distance from the first to the last trace, pixels.
    pub fn trace_span(&self) -> f64 {
        let nb = self.nbundles();
        (self.nspec - nb) as f64 * self.fiber_pitch + (nb - 1) as f64 * self.bundle_gap
    }

    /// Nominal x of fiber `i` (0-based within the spectrograph) at the reference wavelength,
    /// centred on a CCD `nx` wide, pixels.
    pub fn fiber_x(&self, i: usize, nx: usize) -> f64 {
        let b = i / self.bundle_size;
        let k = i - b;
        let x = k as f64 * self.fiber_pitch + b as f64 * self.bundle_gap;
        x + 0.5 * (nx as f64 - 1.0 - self.trace_span())
    }

    /// Fiber solid angle, arcsec².
    pub fn fiber_area_arcsec2(&self) -> f64 {
        std::f64::consts::PI * 0.25 * self.telescope.fiber_diameter_arcsec.powi(2)
    }

    /// The camera named like "b0", with its spectrograph index.
    pub fn camera(&self, name: &str) -> Result<(&Camera, usize), InstrumentError> {
        let err = || InstrumentError::UnknownCamera {
            cam: name.to_string(),
            inst: self.name.clone(),
            bands: self
                .cameras
                .iter()
                .map(|c| c.band.as_str())
                .collect::<Vec<_>>()
                .join(","),
            nsp: self.nspectrographs,
        };
        let name = name.to_ascii_lowercase();
        let (band, sp) = name.split_at(name.len().min(1));
        let sp: usize = sp.parse().map_err(|_| err())?;
        if sp >= self.nspectrographs {
            return Err(err());
        }
        let cam = self
            .cameras
            .iter()
            .find(|c| c.band == band)
            .ok_or_else(err)?;
        Ok((cam, sp))
    }

    /// Arc lines of the lamps in this instrument that fall in `[wmin, wmax]`, with their
    /// photon rate (photons/s per fiber before throughput).
    pub fn arc_lines(&self, wmin: f64, wmax: f64) -> Vec<ArcLine> {
        arc::lines()
            .iter()
            .filter(|l| l.wave >= wmin && l.wave <= wmax)
            .filter_map(|l| {
                self.lamps
                    .arc
                    .iter()
                    .find(|a| a.ion == l.ion)
                    .map(|a| ArcLine {
                        rate: l.rate * a.scale,
                        ..l.clone()
                    })
            })
            .collect()
    }
}

impl Camera {
    /// The extraction wavelength grid, Angstrom: `wave_min + k·dwave` for k = 0…, up to and
    /// including `wave_max` (DESI `arange(wmin, wmax + dw/2, dw)`).
    pub fn wave_grid(&self) -> Vec<f64> {
        let n = ((self.wave_max - self.wave_min) / self.dwave + 0.5).floor() as usize + 1;
        (0..n)
            .map(|k| self.wave_min + k as f64 * self.dwave)
            .collect()
    }

    /// Throughput at `wave` (linear interpolation of the nodes, 0 outside).
    pub fn throughput_at(&self, wave: f64) -> f64 {
        interp_nodes(&self.throughput, wave)
    }

    /// Dark current, electrons/pixel/second.
    pub fn dark_per_second(&self) -> f64 {
        self.dark_current / 3600.0
    }
}

/// Linear interpolation through `[x, y]` nodes sorted by x, 0 outside.
pub fn interp_nodes(nodes: &[[f64; 2]], x: f64) -> f64 {
    let Some(first) = nodes.first() else {
        return 0.0;
    };
    let last = nodes[nodes.len() - 1];
    if x < first[0] || x > last[0] {
        return 0.0;
    }
    let k = nodes
        .partition_point(|n| n[0] <= x)
        .clamp(1, nodes.len() - 1);
    let (a, b) = (nodes[k - 1], nodes[k]);
    let t = (x - a[0]) / (b[0] - a[0]);
    a[1] + t * (b[1] - a[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_load_and_round_trip() {
        for name in ["desi", "mini"] {
            let inst = Instrument::preset(name).unwrap();
            let again = Instrument::from_yaml_str(&inst.to_yaml(), "rt").unwrap();
            assert_eq!(inst, again);
        }
    }

    #[test]
    fn desi_grids_match_production() {
        // reference/calibration.md §0: 2751, 2326, 2881 bins.
        let inst = Instrument::preset("desi").unwrap();
        let n: Vec<usize> = ["b0", "r0", "z0"]
            .iter()
            .map(|c| inst.camera(c).unwrap().0.wave_grid().len())
            .collect();
        assert_eq!(n, vec![2751, 2326, 2881]);
        assert_eq!(inst.nspec, 500);
        assert_eq!(inst.nbundles(), 20);
        let (cam, _) = inst.camera("r0").unwrap();
        assert_eq!((cam.ccd.nx, cam.ccd.ny), (4114, 4128));
    }

    #[test]
    fn fiber_positions_have_bundle_gaps() {
        let inst = Instrument::preset("desi").unwrap();
        let nx = 4114;
        let d_in = inst.fiber_x(1, nx) - inst.fiber_x(0, nx);
        let d_gap = inst.fiber_x(25, nx) - inst.fiber_x(24, nx);
        assert!((d_in - inst.fiber_pitch).abs() < 1e-12);
        assert!((d_gap - inst.bundle_gap).abs() < 1e-12);
        let mid = 0.5 * (inst.fiber_x(0, nx) + inst.fiber_x(499, nx));
        assert!((mid - (nx as f64 - 1.0) / 2.0).abs() < 1e-9);
    }

    #[test]
    fn bad_yaml_names_the_problem() {
        let inst = Instrument::preset("mini").unwrap();
        let mut y = inst.clone();
        y.nspec = 7;
        let e = Instrument::from_yaml_str(&y.to_yaml(), "user.yaml").unwrap_err();
        assert!(e.to_string().contains("user.yaml"), "{e}");
        assert!(Instrument::from_yaml_str("name: [", "x.yaml").is_err());
        assert!(inst.camera("q0").is_err());
        assert!(inst.camera("b12").is_err());
    }
}
