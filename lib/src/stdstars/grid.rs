//! The stellar model grid: normalised spectra over (Teff, log g, [Fe/H]), either built from
//! the simulator's parametric star ([`crate::speclib::star`]) or read from a file in
//! desispec's stdstar-templates layout (HDU0 flux [nmodel, nwave], HDU1 table TEFF/LOGG/FEH,
//! HDU2 wavelength, or WCS keywords CRVAL1/CDELT1/CRPIX1 with LOGLAM on HDU0).

use std::path::Path;

use ndarray::Array2;
use rayon::prelude::*;

use crate::io::fits::FitsReader;
use crate::io::FitsError;
use crate::speclib::star::{Star, StarParams};
use crate::speclib::Sed;

/// Built-in grid: Teff 5000–7500 K every 250 K (the F/G standards and their neighbours;
/// line strengths vary smoothly enough in Teff for trilinear interpolation at this step).
pub const BUILTIN_TEFF: (f64, f64, f64) = (5000.0, 7500.0, 250.0);
/// Built-in grid: log g 3.5–4.75 (cgs) every 0.25 dex.
pub const BUILTIN_LOGG: (f64, f64, f64) = (3.5, 4.75, 0.25);
/// Built-in grid: [Fe/H] −2.0–0.4 every 0.2 dex. Metal lines scale as 10^[Fe/H]·Teff⁻³, so
/// an interpolation error in [Fe/H] turns into a Teff error: at 0.5 dex the mid-cell line
/// strengths are 17% off (measured: up to 96 K of Teff on noise-free stars between nodes), at
/// 0.2 dex under 3% (≤ 18 K).
pub const BUILTIN_FEH: (f64, f64, f64) = (-2.0, 0.4, 0.2);
/// Built-in grid wavelength range and step, Angstrom (fine enough for the 0.6 Å weak lines).
pub const BUILTIN_WAVE: (f64, f64, f64) = (3500.0, 10000.0, 0.5);

/// A grid of rest-frame stellar models.
#[derive(Debug, Clone)]
pub struct StarGrid {
    /// Rest vacuum wavelength [nwave], Angstrom, increasing.
    pub wave: Vec<f64>,
    /// Model flux density [nmodel, nwave], arbitrary scale (1e-17 erg/s/cm²/Å per unit).
    pub flux: Array2<f64>,
    /// Effective temperature per model, K.
    pub teff: Vec<f64>,
    /// Surface gravity per model, log10(cm s⁻²).
    pub logg: Vec<f64>,
    /// Metallicity per model, dex.
    pub feh: Vec<f64>,
}

impl StarGrid {
    /// Number of models.
    pub fn len(&self) -> usize {
        self.teff.len()
    }

    /// True when the grid has no model.
    pub fn is_empty(&self) -> bool {
        self.teff.is_empty()
    }

    /// The built-in grid from the simulator's star model (rv 0, norm 1: unit density at
    /// 5500 Å before absorption), over [`BUILTIN_TEFF`] × [`BUILTIN_LOGG`] × [`BUILTIN_FEH`].
    pub fn builtin() -> StarGrid {
        let (w0, w1, dw) = BUILTIN_WAVE;
        let nw = ((w1 - w0) / dw).round() as usize + 1;
        let wave: Vec<f64> = (0..nw).map(|i| w0 + dw * i as f64).collect();
        let axis = |(a, b, d): (f64, f64, f64)| -> Vec<f64> {
            let n = ((b - a) / d).round() as usize + 1;
            // rounded to 1e-6 so that nodes are exact decimal values (−0.4, not −0.39999…)
            (0..n)
                .map(|i| ((a + d * i as f64) * 1e6).round() / 1e6)
                .collect()
        };
        let mut params = Vec::new();
        for &teff in &axis(BUILTIN_TEFF) {
            for &logg in &axis(BUILTIN_LOGG) {
                for &feh in &axis(BUILTIN_FEH) {
                    params.push((teff, logg, feh));
                }
            }
        }
        let rows: Vec<Vec<f64>> = params
            .par_iter()
            .map(|&(teff, logg, feh)| {
                let s = Star::new(StarParams {
                    teff,
                    logg,
                    feh,
                    rv: 0.0,
                    norm: 1.0,
                });
                wave.iter().map(|&w| s.density(w)).collect()
            })
            .collect();
        let mut flux = Array2::zeros((params.len(), nw));
        for (i, r) in rows.iter().enumerate() {
            flux.row_mut(i).iter_mut().zip(r).for_each(|(a, &b)| *a = b);
        }
        StarGrid {
            wave,
            flux,
            teff: params.iter().map(|p| p.0).collect(),
            logg: params.iter().map(|p| p.1).collect(),
            feh: params.iter().map(|p| p.2).collect(),
        }
    }

    /// Reads a grid in desispec's stdstar-templates layout (`read_stdstar_templates`).
    pub fn read(path: &Path) -> Result<StarGrid, FitsError> {
        let mut r = FitsReader::open(path)?;
        let names = r.hdu_names()?;
        let bad = |hdu: &str, msg: String| FitsError::hdu(path, hdu, msg);
        if names.len() < 2 {
            return Err(bad(
                "PRIMARY",
                "expected flux and parameter-table HDUs".into(),
            ));
        }
        let h0 = names[0].clone();
        let flux: Array2<f64> = r.image2(&h0)?;
        let (nm, nw) = flux.dim();
        let wave: Vec<f64> = if names.len() >= 3 {
            r.image1::<f64>(&names[2])?.to_vec()
        } else {
            let crval: f64 = r.key(&h0, "CRVAL1")?;
            let cdelt: f64 = r.key(&h0, "CDELT1")?;
            let crpix: f64 = r.key_opt(&h0, "CRPIX1")?.unwrap_or(1.0);
            let loglam: i64 = r.key_opt(&h0, "LOGLAM")?.unwrap_or(0);
            (0..nw)
                .map(|i| {
                    let x = crval + cdelt * (i as f64 + 1.0 - crpix);
                    if loglam == 1 {
                        10f64.powf(x)
                    } else {
                        x
                    }
                })
                .collect()
        };
        let h1 = names[1].clone();
        let teff: Vec<f64> = r.col(&h1, "TEFF")?;
        let logg: Vec<f64> = r.col(&h1, "LOGG")?;
        let feh: Vec<f64> = r.col(&h1, "FEH")?;
        if wave.len() != nw || teff.len() != nm || logg.len() != nm || feh.len() != nm {
            return Err(bad(
                &h1,
                format!(
                    "{nm} models of {nw} pixels but {} wavelengths and {} parameter rows",
                    wave.len(),
                    teff.len()
                ),
            ));
        }
        if wave.windows(2).any(|w| w[1] <= w[0]) || flux.iter().any(|v| !v.is_finite()) {
            return Err(bad(
                &h0,
                "wavelengths not increasing or non-finite model flux".into(),
            ));
        }
        Ok(StarGrid {
            wave,
            flux,
            teff,
            logg,
            feh,
        })
    }
}

/// A tabulated spectrum as an [`Sed`] (linear interpolation, 0 outside the table).
pub struct Tabulated<'a> {
    /// Wavelength, Angstrom, increasing.
    pub wave: &'a [f64],
    /// Flux density, 1e-17 erg/s/cm²/Å.
    pub flux: &'a [f64],
}

impl Sed for Tabulated<'_> {
    fn density(&self, wave: f64) -> f64 {
        let n = self.wave.len();
        if n == 0 || wave < self.wave[0] || wave > self.wave[n - 1] {
            return 0.0;
        }
        crate::stats::interp(wave, self.wave, self.flux)
    }
}

/// Milky-Way extinction A(λ)/E(B−V) of Cardelli, Clayton & Mathis (1989) with R_V = 3.1
/// (optical 1.1–3.3 µm⁻¹ and infrared 0.3–1.1 µm⁻¹ branches), `wave` in Angstrom.
pub fn ccm_a_over_ebv(wave: f64) -> f64 {
    let rv = 3.1;
    let x = 1e4 / wave;
    let (a, b) = if x < 1.1 {
        let p = x.powf(1.61);
        (0.574 * p, -0.527 * p)
    } else {
        let y = x - 1.82;
        let a = 1.0 + 0.17699 * y - 0.50447 * y.powi(2) - 0.02427 * y.powi(3)
            + 0.72085 * y.powi(4)
            + 0.01979 * y.powi(5)
            - 0.77530 * y.powi(6)
            + 0.32999 * y.powi(7);
        let b = 1.41338 * y + 2.28305 * y.powi(2) + 1.07233 * y.powi(3)
            - 5.38434 * y.powi(4)
            - 0.62251 * y.powi(5)
            + 5.30260 * y.powi(6)
            - 2.09002 * y.powi(7);
        (a, b)
    };
    a * rv + b
}

/// Dust transmission 10^(−0.4·A(λ)) for colour excess `ebv` (mag), `wave` in Angstrom.
pub fn dust_transmission(wave: f64, ebv: f64) -> f64 {
    if ebv == 0.0 {
        return 1.0;
    }
    10f64.powf(-0.4 * ebv * ccm_a_over_ebv(wave))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ccm_is_about_3_1_at_v_and_falls_to_the_red() {
        assert!((ccm_a_over_ebv(5495.0) - 3.1).abs() < 0.05);
        assert!(ccm_a_over_ebv(9000.0) < ccm_a_over_ebv(6000.0));
        assert!(ccm_a_over_ebv(4000.0) > ccm_a_over_ebv(6000.0));
    }
}

#[cfg(test)]
mod read_tests {
    use super::*;
    use crate::io::fits::{Column, ColumnData, FitsWriter, Provenance};
    use crate::io::table::Table;

    #[test]
    fn reads_desispec_template_layout_and_refuses_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stdstar_templates.fits");
        let (nm, nw) = (2, 5);
        let flux: Vec<f64> = (0..nm * nw).map(|i| 1.0 + i as f64).collect();
        let mut w = FitsWriter::create_with_primary_image(
            &p,
            &Provenance::default(),
            "PRIMARY",
            &[nm, nw],
            &flux,
        )
        .unwrap();
        Table::new(vec![
            Column::new("TEMPLATEID", ColumnData::I32(vec![0, 1])),
            Column::new("TEFF", ColumnData::F32(vec![6000.0, 6500.0])),
            Column::new("LOGG", ColumnData::F32(vec![4.0, 4.0])),
            Column::new("FEH", ColumnData::F32(vec![-1.0, -1.0])),
        ])
        .unwrap()
        .write(&mut w, "METADATA")
        .unwrap();
        let wave: Vec<f64> = (0..nw).map(|i| 4000.0 + 2.0 * i as f64).collect();
        w.image("WAVELENGTH", &[nw], &wave).unwrap();
        w.commit().unwrap();
        let g = StarGrid::read(&p).unwrap();
        assert_eq!(g.wave, wave);
        assert_eq!(g.teff, vec![6000.0, 6500.0]);
        assert_eq!(g.flux[[1, 4]], 10.0);
    }
}
