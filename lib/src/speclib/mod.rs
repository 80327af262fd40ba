//! The spectral library: physically motivated models of everything that sends light down a
//! fiber, all in vacuum wavelengths (Angstrom), our own code (line lists documented in
//! `data/` and scripts/make-linelists).
//!
//! - [`sky`]: night-sky continuum plus OH/O2/[O I]/Na emission lines.
//! - [`arc`]: arc-lamp lines (Hg, Ar, Cd, Ne, Kr, Xe), [`flat`]: continuum lamp.
//! - [`galaxy`] (ELG, LRG, from parameters), [`qso`] (power law, broad lines, Lyα forest),
//!   [`star`] (function of Teff, log g, [Fe/H]), [`photometry`] (g, r, z nanomaggies).
//! - [`targets`]: seeded draws of a fiber population with truth.
//!
//! Units: astronomical spectra return flux densities in 1e-17 erg/s/cm²/Å (DESI's unit) and
//! line fluxes in 1e-17 erg/s/cm²; lamps return photons/s/Å (and photons/s for lines) at the
//! fiber entrance. The same models will feed redshift templates and the standard-star grid.

pub mod arc;
pub mod flat;
pub mod galaxy;
pub mod photometry;
pub mod qso;
pub mod sky;
pub mod star;
pub mod targets;

/// Planck constant × speed of light, erg·Å: a photon of wavelength λ [Å] carries HC/λ erg.
pub const HC_ERG_ANGSTROM: f64 = 1.986_445_857e-8;
/// Speed of light, km/s.
pub const C_KMS: f64 = 299_792.458;
/// DESI flux unit, erg/s/cm²/Å.
pub const FLUX_UNIT: f64 = 1e-17;

/// A spectral energy distribution: a smooth density plus unresolved lines.
pub trait Sed: Send + Sync {
    /// Smooth density at vacuum wavelength `wave` (Å): 1e-17 erg/s/cm²/Å for astronomical
    /// sources, photons/s/Å for lamps. Resolved lines (galaxy emission lines) are included here.
    fn density(&self, wave: f64) -> f64;
    /// Unresolved lines in `[wmin, wmax]` as `(wave Å, integrated flux)`: 1e-17 erg/s/cm² for
    /// astronomical sources, photons/s for lamps.
    fn lines(&self, _wmin: f64, _wmax: f64) -> Vec<(f64, f64)> {
        Vec::new()
    }
}

/// Photons per second per cm² from an energy flux density: `f [1e-17 erg/s/cm²/Å] · λ/(hc)`
/// gives photons/s/cm²/Å (same factor converts an integrated line flux to photons/s/cm²).
pub fn energy_to_photons(flux_1e17: f64, wave: f64) -> f64 {
    flux_1e17 * FLUX_UNIT * wave / HC_ERG_ANGSTROM
}

/// Gaussian profile of unit integral, evaluated at `x` for centre `mu` and width `sigma`.
pub fn gauss(x: f64, mu: f64, sigma: f64) -> f64 {
    let u = (x - mu) / sigma;
    if u.abs() > 8.0 {
        return 0.0;
    }
    (-0.5 * u * u).exp() / (sigma * (2.0 * std::f64::consts::PI).sqrt())
}

/// Planck B_λ(T) up to a constant (λ in Å, T in K): λ⁻⁵ / (exp(hc/λkT) − 1).
pub fn planck(wave: f64, temp: f64) -> f64 {
    // hc/k in Å·K
    const HC_K: f64 = 1.438_776_877e8;
    let x = HC_K / (wave * temp);
    if x > 700.0 {
        return 0.0;
    }
    (wave / 1e4).powi(-5) / x.exp_m1()
}

/// A line (absorption or emission) in a rest-frame list.
#[derive(Debug, Clone, Copy)]
pub struct RestLine {
    /// Rest vacuum wavelength, Å.
    pub wave: f64,
    /// Strength (meaning depends on the list: flux ratio or equivalent width in Å).
    pub strength: f64,
}

/// Integrates `f` over `[a, b]` with `n` midpoint samples.
pub fn integrate(f: impl Fn(f64) -> f64, a: f64, b: f64, n: usize) -> f64 {
    let h = (b - a) / n as f64;
    (0..n).map(|k| f(a + (k as f64 + 0.5) * h)).sum::<f64>() * h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn photon_conversion_at_5000() {
        // 1e-17 erg/s/cm²/Å at 5000 Å: 1e-17 / (hc/λ = 3.97e-12 erg) = 2.517e-6 photons/s/cm²/Å
        let p = energy_to_photons(1.0, 5000.0);
        assert!((p - 2.5170e-6).abs() < 1e-9, "{p}");
    }

    #[test]
    fn gauss_integrates_to_one() {
        let s = integrate(|x| gauss(x, 5000.0, 1.7), 4980.0, 5020.0, 4000);
        assert!((s - 1.0).abs() < 1e-9);
    }
}

/// A set of Gaussian features (emission or absorption) sorted by centre, summed with a
/// window search so a long list costs O(log n + nearby) per evaluation.
#[derive(Debug, Clone, Default)]
pub struct GaussSet {
    centre: Vec<f64>,
    sigma: Vec<f64>,
    /// Integral of each Gaussian (EW in Å for absorption, flux for emission).
    area: Vec<f64>,
    max_sigma: f64,
}

impl GaussSet {
    /// Builds the set from `(centre Å, sigma Å, area)` triples.
    pub fn new(mut items: Vec<(f64, f64, f64)>) -> Self {
        items.retain(|it| it.1 > 0.0 && it.2 != 0.0);
        items.sort_by(|a, b| a.0.total_cmp(&b.0));
        let max_sigma = items.iter().map(|i| i.1).fold(0.0, f64::max);
        GaussSet {
            centre: items.iter().map(|i| i.0).collect(),
            sigma: items.iter().map(|i| i.1).collect(),
            area: items.iter().map(|i| i.2).collect(),
            max_sigma,
        }
    }

    /// Σ area·N(wave; centre, sigma) over the features within 8 sigma of `wave`.
    pub fn eval(&self, wave: f64) -> f64 {
        if self.centre.is_empty() {
            return 0.0;
        }
        let lo = self
            .centre
            .partition_point(|&c| c < wave - 8.0 * self.max_sigma);
        let mut s = 0.0;
        for k in lo..self.centre.len() {
            let c = self.centre[k];
            if c > wave + 8.0 * self.max_sigma {
                break;
            }
            s += self.area[k] * gauss(wave, c, self.sigma[k]);
        }
        s
    }
}
