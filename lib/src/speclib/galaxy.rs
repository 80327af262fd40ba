//! Galaxies from parameters: a stellar continuum mixing an old population (cool blackbody with
//! a 4000 Å break) and a young one (blue power law with a small Balmer break), stellar
//! absorption lines broadened by the velocity dispersion, and nebular emission lines with
//! their own fluxes and width. ELGs are young with strong lines; LRGs old, no lines.
//! Rest wavelengths are vacuum (NIST / SDSS line lists).

use super::{gauss, planck, GaussSet, Sed, C_KMS};

/// Stellar absorption features: rest wave (Å), intrinsic sigma (Å), EW for an old
/// population (Å), EW for a young one (Å).
const ABSORPTION: &[(f64, f64, f64, f64)] = &[
    (3934.78, 2.0, 8.0, 1.5), // Ca II K
    (3969.59, 2.0, 6.0, 1.5), // Ca II H (+ Hε)
    (4102.89, 3.0, 1.5, 6.0), // Hδ
    (4305.60, 8.0, 4.0, 0.8), // G band (CH)
    (4341.69, 3.0, 1.5, 5.5), // Hγ
    (4384.77, 3.0, 1.5, 0.3), // Fe I
    (4862.68, 3.0, 1.5, 5.0), // Hβ
    (5176.70, 6.0, 5.0, 0.8), // Mg b
    (5270.36, 3.0, 2.0, 0.4), // Fe
    (5335.13, 3.0, 1.5, 0.3), // Fe
    (5894.60, 3.0, 3.0, 0.5), // Na D
    (6564.61, 3.0, 1.2, 3.0), // Hα
    (8500.36, 2.0, 1.2, 0.3), // Ca II triplet
    (8544.44, 2.0, 3.0, 0.6),
    (8664.52, 2.0, 2.5, 0.5),
];

/// Nebular emission lines: rest vacuum wave (Å) and name.
pub const OII_3726: f64 = 3727.092;
pub const OII_3729: f64 = 3729.875;
pub const NEIII_3869: f64 = 3869.86;
pub const HDELTA: f64 = 4102.89;
pub const HGAMMA: f64 = 4341.69;
pub const HBETA: f64 = 4862.68;
pub const OIII_4959: f64 = 4960.295;
pub const OIII_5007: f64 = 5008.240;
pub const NII_6548: f64 = 6549.86;
pub const HALPHA: f64 = 6564.61;
pub const NII_6583: f64 = 6585.27;
pub const SII_6716: f64 = 6718.29;
pub const SII_6731: f64 = 6732.67;

/// Parameters of a galaxy.
#[derive(Debug, Clone, PartialEq)]
pub struct GalaxyParams {
    /// Redshift.
    pub z: f64,
    /// Continuum flux density at observed wavelength 5500·(1+z) Å, 1e-17 erg/s/cm²/Å.
    pub norm: f64,
    /// Fraction of the rest 5500 Å light from the young population, 0..1.
    pub young: f64,
    /// Strength of the 4000 Å break of the old population (ratio red/blue side, ≥ 1).
    pub d4000: f64,
    /// Stellar velocity dispersion, km/s.
    pub sigma_v: f64,
    /// [O II] 3726+3729 flux, 1e-17 erg/s/cm² (0 for no emission lines).
    pub oii_flux: f64,
    /// [O II] 3729/3726 flux ratio (0.35..1.5, density sensitive).
    pub oii_ratio: f64,
    /// [O III] 5007 / Hβ flux ratio.
    pub oiii_hbeta: f64,
    /// [O II] / Hβ flux ratio.
    pub oii_hbeta: f64,
    /// Emission-line velocity dispersion, km/s.
    pub sigma_line: f64,
}

impl GalaxyParams {
    /// Observed emission-line fluxes (rest wave Å, flux 1e-17 erg/s/cm²), Case B Balmer ratios.
    pub fn emission_lines(&self) -> Vec<(f64, f64)> {
        if self.oii_flux <= 0.0 {
            return Vec::new();
        }
        let hb = self.oii_flux / self.oii_hbeta.max(1e-3);
        let o3 = hb * self.oiii_hbeta;
        let ha = 2.86 * hb;
        let n2 = 0.3 * ha;
        let f3726 = self.oii_flux / (1.0 + self.oii_ratio);
        vec![
            (OII_3726, f3726),
            (OII_3729, self.oii_flux - f3726),
            (NEIII_3869, 0.08 * self.oii_flux),
            (HDELTA, 0.259 * hb),
            (HGAMMA, 0.468 * hb),
            (HBETA, hb),
            (OIII_4959, o3 / 2.98),
            (OIII_5007, o3),
            (NII_6548, n2 / 2.95),
            (HALPHA, ha),
            (NII_6583, n2),
            (SII_6716, 0.12 * ha),
            (SII_6731, 0.09 * ha),
        ]
    }
}

/// A galaxy SED (observed frame).
pub struct Galaxy {
    pub params: GalaxyParams,
    absorption: GaussSet,
    emission: GaussSet,
    old_norm: f64,
}

/// Smooth step from 0 (λ ≪ at) to 1 (λ ≫ at) of width `w`.
fn step(wave: f64, at: f64, w: f64) -> f64 {
    1.0 / (1.0 + (-(wave - at) / w).exp())
}

impl Galaxy {
    pub fn new(params: GalaxyParams) -> Self {
        let p = &params;
        let y = p.young.clamp(0.0, 1.0);
        let absorption = GaussSet::new(
            ABSORPTION
                .iter()
                .map(|&(w, s, ew_old, ew_young)| {
                    let sv = w * p.sigma_v / C_KMS;
                    (
                        (w),
                        (s * s + sv * sv).sqrt(),
                        (1.0 - y) * ew_old + y * ew_young,
                    )
                })
                .collect(),
        );
        let emission = GaussSet::new(
            p.emission_lines()
                .into_iter()
                .map(|(w, f)| {
                    let wo = w * (1.0 + p.z);
                    (wo, wo * p.sigma_line / C_KMS, f)
                })
                .collect(),
        );
        let old_norm = 1.0 / Self::old_shape(5500.0, p.d4000);
        Galaxy {
            params,
            absorption,
            emission,
            old_norm,
        }
    }

    fn old_shape(rest: f64, d4000: f64) -> f64 {
        let b = 1.0 / d4000.max(1.0);
        planck(rest, 4800.0) * (b + (1.0 - b) * step(rest, 3980.0, 25.0))
    }

    fn young_shape(rest: f64) -> f64 {
        let balmer = 0.85 + 0.15 * step(rest, 3650.0, 20.0);
        (rest / 5500.0).powf(-1.9) * balmer
    }

    /// Continuum (with absorption lines) at observed wavelength `wave`, 1e-17 erg/s/cm²/Å.
    pub fn continuum(&self, wave: f64) -> f64 {
        let p = &self.params;
        let rest = wave / (1.0 + p.z);
        let y = p.young.clamp(0.0, 1.0);
        let c = (1.0 - y) * self.old_norm * Self::old_shape(rest, p.d4000)
            + y * Self::young_shape(rest);
        let absorb = (1.0 - self.absorption.eval(rest)).max(0.05);
        p.norm * c * absorb
    }
}

impl Sed for Galaxy {
    fn density(&self, wave: f64) -> f64 {
        self.continuum(wave) + self.emission.eval(wave)
    }
}

/// Helper for tests and templates: the rest-frame Gaussian of a line at `wave`.
pub fn line_profile(wave: f64, centre: f64, sigma: f64) -> f64 {
    gauss(wave, centre, sigma)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::speclib::integrate;

    fn elg() -> GalaxyParams {
        GalaxyParams {
            z: 1.0,
            norm: 0.2,
            young: 0.9,
            d4000: 1.2,
            sigma_v: 80.0,
            oii_flux: 20.0,
            oii_ratio: 1.3,
            oiii_hbeta: 1.0,
            oii_hbeta: 2.5,
            sigma_line: 60.0,
        }
    }

    #[test]
    fn oii_doublet_flux_is_conserved() {
        let g = Galaxy::new(elg());
        let c = OII_3726 * 2.0;
        let line = integrate(|w| g.density(w) - g.continuum(w), c - 30.0, c + 36.0, 20000);
        assert!((line - 20.0).abs() < 0.05, "{line}");
    }

    #[test]
    fn lrg_has_a_4000_break() {
        let g = Galaxy::new(GalaxyParams {
            young: 0.0,
            d4000: 1.9,
            oii_flux: 0.0,
            z: 0.0,
            ..elg()
        });
        let red = integrate(|w| g.density(w), 4050.0, 4250.0, 400) / 200.0;
        let blue = integrate(|w| g.density(w), 3750.0, 3950.0, 400) / 200.0;
        assert!(red / blue > 1.6, "D4000 {}", red / blue);
    }
}
