//! Quasars from parameters: a power-law continuum f_λ ∝ λ^α, broad emission lines with rest
//! equivalent widths close to the SDSS composite (Vanden Berk et al. 2001), and a seeded
//! Lyα-forest realisation blueward of Lyα whose mean transmission follows
//! τ_eff(z) = 0.0018 (1+z)^3.92 (Faucher-Giguère et al. 2008), plus Lyman-limit absorption.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{GaussSet, Sed, C_KMS};

pub const LYA: f64 = 1215.67;

/// Broad lines: rest vacuum wave (Å), rest EW (Å), FWHM scale (× the QSO's FWHM).
const LINES: &[(f64, f64, f64)] = &[
    (1025.72, 9.0, 1.0),   // Lyβ + O VI
    (1215.67, 70.0, 1.0),  // Lyα
    (1240.14, 15.0, 0.8),  // N V
    (1397.61, 8.0, 1.0),   // Si IV + O IV]
    (1549.06, 30.0, 1.0),  // C IV
    (1908.73, 22.0, 1.0),  // C III]
    (2799.12, 32.0, 1.0),  // Mg II
    (4102.89, 5.0, 0.8),   // Hδ
    (4341.69, 10.0, 0.8),  // Hγ
    (4862.68, 50.0, 1.0),  // Hβ
    (5008.24, 12.0, 0.2),  // [O III] (narrow)
    (6564.61, 200.0, 1.0), // Hα
];

/// Parameters of a quasar.
#[derive(Debug, Clone, PartialEq)]
pub struct QsoParams {
    pub z: f64,
    /// Continuum at observed 1450·(1+z) Å (before forest), 1e-17 erg/s/cm²/Å.
    pub norm: f64,
    /// Power-law index α of f_λ ∝ λ^α (≈ −1.5 for f_ν ∝ ν^−0.5).
    pub alpha: f64,
    /// Broad-line FWHM, km/s.
    pub fwhm: f64,
    /// Scale of the line equivalent widths (Baldwin effect, diversity).
    pub ew_scale: f64,
    /// Seed of the Lyα-forest realisation.
    pub forest_seed: u64,
}

/// A quasar SED (observed frame).
pub struct Qso {
    pub params: QsoParams,
    lines: GaussSet,
    forest: GaussSet,
}

impl Qso {
    pub fn new(params: QsoParams) -> Self {
        let p = &params;
        let sig = p.fwhm / 2.3548 / C_KMS;
        let lines = GaussSet::new(
            LINES
                .iter()
                .map(|&(w, ew, fw)| (w, w * sig * fw, ew * p.ew_scale * Self::power(w, p.alpha)))
                .collect(),
        );
        // Forest absorbers: rest wavelengths of the Lyα-absorbing gas between Lyβ and Lyα,
        // observed at λ_abs; each removes depth·Gaussian(σ = λ b/c), b = 30..60 km/s.
        let mut rng = ChaCha8Rng::seed_from_u64(p.forest_seed);
        let (lo, hi) = (1030.0 * (1.0 + p.z), LYA * (1.0 + p.z));
        let mut abs = Vec::new();
        let mut w = lo;
        loop {
            let zabs = w / LYA - 1.0;
            let tau = 0.0018 * (1.0 + zabs).powf(3.92);
            let decrement = 1.0 - (-tau).exp();
            let sigma = w * rng.random_range(30.0..60.0) / C_KMS;
            let depth: f64 = rng.random_range(0.05..0.95);
            // mean decrement = density · depth · √(2π)σ, with E[depth] = 0.5
            let density = decrement / (0.5 * (2.0 * std::f64::consts::PI).sqrt() * sigma);
            let gap: f64 = -(1.0 - rng.random::<f64>()).ln() / density;
            w += gap;
            if w >= hi {
                break;
            }
            abs.push((
                w,
                sigma,
                depth * (2.0 * std::f64::consts::PI).sqrt() * sigma,
            ));
        }
        Qso {
            params,
            lines,
            forest: GaussSet::new(abs),
        }
    }

    fn power(rest: f64, alpha: f64) -> f64 {
        (rest / 1450.0).powf(alpha)
    }

    /// Transmission of the intervening gas at observed wavelength `wave`.
    pub fn transmission(&self, wave: f64) -> f64 {
        let rest = wave / (1.0 + self.params.z);
        let mut t = if rest < LYA {
            (1.0 - self.forest.eval(wave)).max(0.0)
        } else {
            1.0
        };
        if rest < 912.0 {
            t *= 0.2 * (rest / 912.0).powi(3);
        }
        t
    }
}

impl Sed for Qso {
    fn density(&self, wave: f64) -> f64 {
        let p = &self.params;
        let rest = wave / (1.0 + p.z);
        let f = Self::power(rest, p.alpha) + self.lines.eval(rest);
        p.norm * f * self.transmission(wave)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::speclib::integrate;

    #[test]
    fn forest_mean_transmission_follows_tau_eff() {
        let q = Qso::new(QsoParams {
            z: 2.5,
            norm: 1.0,
            alpha: -1.5,
            fwhm: 4000.0,
            ew_scale: 1.0,
            forest_seed: 7,
        });
        // rest 1070..1170 at z=2.5 → observed 3745..4095; z_abs ≈ 2.08..2.37
        let t = integrate(|w| q.transmission(w), 3745.0, 4095.0, 35000) / 350.0;
        let zm: f64 = 3920.0 / LYA - 1.0;
        let expect = (-0.0018 * (1.0 + zm).powf(3.92)).exp();
        // one realisation of ~200 absorbers: the mean scatters by a few percent
        assert!((t - expect).abs() < 0.04, "{t} vs {expect}");
    }
}
