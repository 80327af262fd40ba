//! Lyman-series IGM transmission applied to redshifted templates (redrock `igm.py`,
//! reference/redshift.md §2.8): for each line ℓ, pixels with rest wavelength below λ_ℓ are
//! multiplied by exp(−A_ℓ (λ/λ_ℓ)^B_ℓ).

// Index loops mirror the formulas (and redrock's code) over several parallel arrays.
#![allow(clippy::needless_range_loop)]

use crate::io::templates::IgmModel;

/// Lyman α rest wavelength, Angstrom (redrock constants.py).
pub const LYA_WAVELENGTH: f64 = 1215.67;

/// (line Angstrom, A, B) of each line of a model, in redrock's order.
fn lines(model: IgmModel) -> Vec<(f64, f64, f64)> {
    match model {
        IgmModel::Calura12 => vec![
            (LYA_WAVELENGTH, 0.0023, 3.64),
            (1025.72, 0.0023 / 5.2615, 3.64),
            (972.537, 0.0023 / 14.356, 3.64),
            (949.7431, 0.0023 / 29.85984, 3.64),
            (937.8035, 0.0023 / 53.36202, 3.64),
        ],
        IgmModel::Kamble20 => vec![(LYA_WAVELENGTH, 0.00554, 3.182)],
        IgmModel::None | IgmModel::Inoue14 => vec![],
    }
}

/// Transmission at observed wavelengths `wave` (Angstrom) for an object at redshift `z`,
/// or `None` when no pixel is absorbed (redrock skips the multiplication then).
pub fn transmission(model: IgmModel, z: f64, wave: &[f64]) -> Option<Vec<f64>> {
    let lines = lines(model);
    let first = *wave.first()?;
    let inv = 1.0 / (1.0 + z);
    if lines.is_empty() || first / (1.0 + z) > LYA_WAVELENGTH {
        return None;
    }
    let mut t = vec![1.0; wave.len()];
    for (line, a, b) in lines {
        for (ti, &l) in t.iter_mut().zip(wave) {
            // redrock: lRest = outer(1/(1+z), lObs); zpix = lObs/line - 1; tau = A (1+zpix)^B
            if inv * l < line {
                let zpix = l / line - 1.0;
                let tau = a * (1.0 + zpix).powf(b);
                *ti *= (-tau).exp();
            }
        }
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transmission_is_bounded_and_only_blueward_of_lya() {
        let wave: Vec<f64> = (0..1000).map(|i| 3600.0 + i as f64 * 5.0).collect();
        assert!(transmission(IgmModel::Kamble20, 1.0, &wave).is_none());
        assert!(transmission(IgmModel::None, 3.0, &wave).is_none());
        let t = transmission(IgmModel::Calura12, 3.0, &wave).unwrap();
        for (ti, &l) in t.iter().zip(&wave) {
            assert!(*ti > 0.0 && *ti <= 1.0);
            if l / 4.0 >= LYA_WAVELENGTH {
                assert_eq!(*ti, 1.0);
            } else {
                assert!(*ti < 1.0);
            }
        }
    }
}
