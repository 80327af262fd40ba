//! Night-sky spectrum per fiber (dark time, zenith): a smooth continuum (zodiacal light,
//! airglow pseudo-continuum) plus emission lines at their vacuum wavelengths: [O I] 5578.9,
//! 6302.0, 6365.5, Na D, the OH Meinel bands (red and near-IR forest) and the O2 atmospheric
//! band near 8650–8700 Å. Line positions and relative strengths are the peaks of a measured
//! high-resolution sky spectrum (desispec data/spec-sky.dat; `data/sky_lines.txt`,
//! scripts/make-linelists). Absolute scale: [O I] 5578.9 ≈ 250 Rayleigh ≈ 170e-17
//! erg/s/cm²/arcsec² (1 R at 5577 Å = 0.667e-17 erg/s/cm²/arcsec²); the continuum gives dark-sky
//! g ≈ 22.0, r ≈ 21.1 mag/arcsec² with the lines (KPNO dark sky).

use std::sync::OnceLock;

use super::{RestLine, Sed};

/// [O I] 5578.9 surface brightness, 1e-17 erg/s/cm²/arcsec².
pub const OI5577_SB: f64 = 170.0;

/// Continuum surface brightness nodes `[Å, 1e-17 erg/s/cm²/Å/arcsec²]`.
const CONTINUUM: &[[f64; 2]] = &[
    [3400.0, 0.35],
    [3600.0, 0.45],
    [4000.0, 0.62],
    [4500.0, 0.70],
    [5500.0, 0.70],
    [6500.0, 0.62],
    [8000.0, 0.58],
    [9500.0, 0.60],
    [10500.0, 0.60],
];

const DATA: &str = include_str!("data/sky_lines.txt");

/// Sky emission lines: wave (Å, vacuum) and strength relative to [O I] 5578.9.
pub fn lines() -> &'static [RestLine] {
    static LINES: OnceLock<Vec<RestLine>> = OnceLock::new();
    LINES.get_or_init(|| {
        DATA.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                Some(RestLine {
                    wave: it.next()?.parse().ok()?,
                    strength: it.next()?.parse().ok()?,
                })
            })
            .collect()
    })
}

/// The sky entering one fiber of solid angle `area_arcsec2`, scaled by `level` (1 = dark sky).
pub struct Sky {
    /// Fiber solid angle, arcsec².
    pub area_arcsec2: f64,
    /// Brightness relative to the dark-sky model.
    pub level: f64,
}

impl Sed for Sky {
    /// 1e-17 erg/s/cm²/Å entering the fiber.
    fn density(&self, wave: f64) -> f64 {
        crate::instrument::interp_nodes(CONTINUUM, wave) * self.area_arcsec2 * self.level
    }
    /// Lines, 1e-17 erg/s/cm² entering the fiber.
    fn lines(&self, wmin: f64, wmax: f64) -> Vec<(f64, f64)> {
        lines()
            .iter()
            .filter(|l| l.wave >= wmin && l.wave <= wmax)
            .map(|l| {
                (
                    l.wave,
                    l.strength * OI5577_SB * self.area_arcsec2 * self.level,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::speclib::photometry::{ab_mag_from_nmgy, Band};

    #[test]
    fn sky_lines_at_known_wavelengths() {
        // [O I] 5578.89, 6302.05 vacuum
        for w in [5578.9, 6302.0] {
            assert!(lines().iter().any(|l| (l.wave - w).abs() < 0.2), "{w}");
        }
        assert!(lines().len() > 200);
    }

    #[test]
    fn dark_sky_magnitudes() {
        // 1 arcsec² of dark sky: r ≈ 21.1, g ≈ 22.0 mag/arcsec² (within 0.4 mag).
        let sky = Sky {
            area_arcsec2: 1.0,
            level: 1.0,
        };
        let r = ab_mag_from_nmgy(Band::R.nanomaggies(&sky));
        let g = ab_mag_from_nmgy(Band::G.nanomaggies(&sky));
        assert!((r - 21.1).abs() < 0.4, "r = {r}");
        assert!((g - 22.0).abs() < 0.4, "g = {g}");
    }
}
