//! Broad-band AB photometry in nanomaggies (DESI's FLUX_G/R/Z: mag = 22.5 − 2.5 log10 f)
//! through simple filter curves: flat-topped bands with cosine edges approximating DECam
//! g (4000–5500 Å), r (5650–7100 Å) and z (8450–10000 Å).

use super::Sed;

/// Speed of light, Å/s.
const C_ANGSTROM_S: f64 = 2.997_924_58e18;
/// AB zero point, erg/s/cm²/Hz (3631 Jy).
const AB_ZERO: f64 = 3631e-23;

/// A photometric band.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Band {
    G,
    R,
    Z,
}

impl Band {
    /// (blue edge, red edge, edge half-width), Å.
    fn edges(self) -> (f64, f64, f64) {
        match self {
            Band::G => (4000.0, 5500.0, 100.0),
            Band::R => (5650.0, 7100.0, 100.0),
            Band::Z => (8450.0, 10000.0, 150.0),
        }
    }

    /// Filter transmission at `wave` (Å), 0..1.
    pub fn transmission(self, wave: f64) -> f64 {
        let (lo, hi, w) = self.edges();
        let ramp = |d: f64| {
            if d <= -w {
                0.0
            } else if d >= w {
                1.0
            } else {
                0.5 * (1.0 + (std::f64::consts::FRAC_PI_2 * d / w).sin())
            }
        };
        ramp(wave - lo) * ramp(hi - wave)
    }

    /// Wavelength range with non-zero transmission, Å.
    pub fn range(self) -> (f64, f64) {
        let (lo, hi, w) = self.edges();
        (lo - w, hi + w)
    }

    /// AB flux in nanomaggies of `sed` (density in 1e-17 erg/s/cm²/Å; unresolved lines
    /// included): f_ν = ∫f_λ T λ dλ / ∫ T c/λ dλ.
    pub fn nanomaggies(self, sed: &dyn Sed) -> f64 {
        let (a, b) = self.range();
        let n = ((b - a) / 0.5) as usize;
        let h = (b - a) / n as f64;
        let (mut num, mut den) = (0.0, 0.0);
        for k in 0..n {
            let w = a + (k as f64 + 0.5) * h;
            let t = self.transmission(w);
            num += sed.density(w) * 1e-17 * t * w * h;
            den += t * C_ANGSTROM_S / w * h;
        }
        for (w, f) in sed.lines(a, b) {
            num += f * 1e-17 * self.transmission(w) * w;
        }
        num / den / AB_ZERO * 1e9
    }
}

/// AB magnitude of a flux in nanomaggies.
pub fn ab_mag_from_nmgy(f: f64) -> f64 {
    22.5 - 2.5 * f.max(1e-30).log10()
}

/// Flux in nanomaggies of an AB magnitude.
pub fn nmgy_from_ab_mag(m: f64) -> f64 {
    10f64.powf(-0.4 * (m - 22.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FlatFnu(f64);
    impl Sed for FlatFnu {
        fn density(&self, wave: f64) -> f64 {
            // f_nu = AB zero point × 10^(-0.4 m) → f_λ = f_ν c/λ², in 1e-17 units
            AB_ZERO * 10f64.powf(-0.4 * self.0) * C_ANGSTROM_S / (wave * wave) / 1e-17
        }
    }

    #[test]
    fn flat_fnu_source_has_its_magnitude_in_every_band() {
        for b in [Band::G, Band::R, Band::Z] {
            let m = ab_mag_from_nmgy(b.nanomaggies(&FlatFnu(20.0)));
            assert!((m - 20.0).abs() < 1e-6, "{b:?} {m}");
        }
    }
}
