//! Stars as a function of effective temperature, surface gravity and metallicity: a
//! blackbody continuum with a temperature-dependent Balmer jump and blue line blanketing,
//! hydrogen Balmer lines whose strength peaks near 9500 K and whose pressure-broadened wings
//! widen with log g, the strong metal lines (Ca II H&K, G band, Mg b, Na D, Ca triplet) and a
//! fixed forest of weak metal lines, all scaling with 10^[Fe/H] and growing in cooler stars.
//! F-type stars (Teff 5800–7000 K, log g 4–4.5) are the flux-calibration standards.

use std::sync::OnceLock;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{gauss, planck, GaussSet, Sed};

/// Balmer series: rest vacuum wave (Å), strength relative to Hβ.
const BALMER: &[(f64, f64)] = &[
    (6564.61, 0.8),
    (4862.68, 1.0),
    (4341.69, 0.95),
    (4102.89, 0.9),
    (3971.20, 0.8),
    (3890.16, 0.7),
    (3836.48, 0.6),
    (3798.98, 0.5),
];

/// Strong metal lines: rest vacuum wave, intrinsic sigma (Å), solar (5800 K, [Fe/H]=0) EW (Å).
const METALS: &[(f64, f64, f64)] = &[
    (3934.78, 3.0, 18.0), // Ca II K
    (3969.59, 3.0, 14.0), // Ca II H
    (4227.92, 1.0, 1.5),  // Ca I
    (4305.60, 8.0, 6.0),  // G band
    (4384.77, 1.5, 1.2),  // Fe I
    (5168.76, 1.0, 1.0),  // Mg b
    (5174.13, 1.0, 1.3),
    (5185.05, 1.0, 1.5),
    (5271.0, 2.0, 1.5),  // Fe
    (5891.58, 0.8, 0.9), // Na D2
    (5897.56, 0.8, 0.7), // Na D1
    (8500.36, 1.5, 1.2), // Ca II triplet
    (8544.44, 1.5, 3.0),
    (8664.52, 1.5, 2.5),
];

/// Stellar parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct StarParams {
    /// Effective temperature, K.
    pub teff: f64,
    /// Surface gravity, log10(g / cm s⁻²).
    pub logg: f64,
    /// Metallicity [Fe/H], dex.
    pub feh: f64,
    /// Radial velocity, km/s.
    pub rv: f64,
    /// Continuum scale (set by the caller from a magnitude).
    pub norm: f64,
}

/// A star SED.
pub struct Star {
    pub params: StarParams,
    metals: GaussSet,
    hbeta_ew: f64,
    gamma: f64,
    jump: f64,
    blanket: f64,
}

/// The weak-line forest: fixed wavelengths and relative strengths (seeded once), so every
/// star shares the same line list as real stars do.
fn weak_lines() -> &'static [(f64, f64)] {
    static L: OnceLock<Vec<(f64, f64)>> = OnceLock::new();
    L.get_or_init(|| {
        let mut rng = ChaCha8Rng::seed_from_u64(0x5354_4152);
        (0..600)
            .map(|_| {
                let w: f64 = rng.random_range(3500.0..10000.0);
                // more and stronger lines in the blue, as in real spectra
                let s: f64 = rng.random_range(0.02..0.4) * (4500.0 / w).powi(2);
                (w, s)
            })
            .collect()
    })
}

impl Star {
    pub fn new(params: StarParams) -> Self {
        let p = &params;
        let metal = 10f64.powf(p.feh) * (5800.0 / p.teff).powi(3);
        let doppler = 1.0 + p.rv / super::C_KMS;
        let mut items: Vec<(f64, f64, f64)> = METALS
            .iter()
            .map(|&(w, s, ew)| {
                let giant = if w > 8400.0 {
                    1.0 + 0.2 * (4.0 - p.logg)
                } else {
                    1.0
                };
                (w * doppler, s, ew * metal * giant)
            })
            .collect();
        items.extend(
            weak_lines()
                .iter()
                .map(|&(w, s)| (w * doppler, 0.6, s * metal)),
        );
        let metals = GaussSet::new(items);
        let t = p.teff;
        let width = if t < 9500.0 { 3000.0 } else { 8000.0 };
        let hbeta_ew = 14.0 * (-((t - 9500.0) / width).powi(2)).exp();
        let gamma = (0.08 * hbeta_ew + 0.3) * 10f64.powf(0.2 * (p.logg - 4.0));
        let jump = 0.5 * (-((t - 9500.0) / 3500.0).powi(2)).exp();
        let blanket = 0.15 * 10f64.powf(p.feh) * (5500.0 / t).powi(3);
        Star {
            params,
            metals,
            hbeta_ew,
            gamma,
            jump,
            blanket,
        }
    }

    fn balmer_absorption(&self, wave: f64) -> f64 {
        let doppler = 1.0 + self.params.rv / super::C_KMS;
        let g = self.gamma;
        BALMER
            .iter()
            .map(|&(w0, rel)| {
                let c = w0 * doppler;
                let d = wave - c;
                if d.abs() > 400.0 {
                    return 0.0;
                }
                let lorentz = g / std::f64::consts::PI / (d * d + g * g);
                self.hbeta_ew * rel * (0.5 * gauss(wave, c, 1.2) + 0.5 * lorentz)
            })
            .sum()
    }
}

impl Sed for Star {
    fn density(&self, wave: f64) -> f64 {
        let p = &self.params;
        let mut c = planck(wave, p.teff) / planck(5500.0, p.teff);
        if wave < 3646.0 {
            c *= 1.0 - self.jump;
        }
        c *= (-self.blanket * (4000.0 / wave).powi(3)).exp();
        let absorb = (1.0 - self.metals.eval(wave) - self.balmer_absorption(wave)).max(0.02);
        p.norm * c * absorb
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::speclib::integrate;

    fn ew(s: &Star, centre: f64, half: f64) -> f64 {
        let cont = 0.5 * (s.density(centre - half - 20.0) + s.density(centre + half + 20.0));
        integrate(
            |w| 1.0 - s.density(w) / cont,
            centre - half,
            centre + half,
            4000,
        )
    }

    #[test]
    fn balmer_lines_peak_in_a_stars_and_metals_grow_in_cool_stars() {
        let mk = |teff| {
            Star::new(StarParams {
                teff,
                logg: 4.0,
                feh: 0.0,
                rv: 0.0,
                norm: 1.0,
            })
        };
        let (a, f, k) = (mk(9500.0), mk(6500.0), mk(4500.0));
        let hb = |s: &Star| s.hbeta_ew;
        assert!(
            hb(&a) > hb(&f) && hb(&f) > hb(&k),
            "{} {} {}",
            hb(&a),
            hb(&f),
            hb(&k)
        );
        let mgb = |s: &Star| ew(s, 5176.0, 15.0);
        assert!(mgb(&k) > mgb(&f) && mgb(&f) > mgb(&a));
    }
}
