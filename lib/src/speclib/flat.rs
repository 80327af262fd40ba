//! Continuum (quartz) flat-field lamp: a blackbody of colour temperature T, in photons/s/Å
//! at the fiber entrance, normalised to `rate` at 6000 Å.

use super::{planck, Sed};

/// The flat lamp.
pub struct FlatLamp {
    /// Colour temperature, K.
    pub temperature: f64,
    /// Photons/s/Å at 6000 Å.
    pub rate: f64,
}

impl Sed for FlatLamp {
    fn density(&self, wave: f64) -> f64 {
        // photon density ∝ λ·B_λ
        let norm = 6000.0 * planck(6000.0, self.temperature);
        self.rate * wave * planck(wave, self.temperature) / norm
    }
}
