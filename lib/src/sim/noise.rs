//! From an image of electrons to raw ADU: dark current and Poisson noise on the illuminated
//! pixels, cosmic-ray charge, then per amplifier `ADU = e/gain + bias + N(0, rn/gain)` on
//! every pixel it reads (data, prescan, overscans), as desisim's pixsim does
//! (reference/calibration.md §6.1). Rounding to integers and clipping to 0..65535 happen when
//! the raw file is written.
//!
//! Determinism: the raw image is cut into fixed blocks of rows, each with its own generator
//! seeded from (seed, camera, block index), processed in parallel and written to disjoint
//! rows, so the bytes do not depend on the thread count.

use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Poisson};
use rayon::prelude::*;

use super::layout::Layout;
use crate::instrument::Ccd;

/// Rows per noise block (fixed: part of the seeding scheme).
const BLOCK_ROWS: usize = 32;

/// What to add on top of the signal.
#[derive(Debug, Clone, Copy)]
pub struct NoiseOptions {
    /// Mean dark charge per pixel, electrons.
    pub dark_electrons: f64,
    /// Poisson and read noise on (false: the noiseless expectation, for truth and tests).
    pub noise: bool,
    /// Seed of this camera's noise stream.
    pub seed: u64,
}

/// Digitises `signal` (electrons, `[ny, nx]` preprocessed shape) plus `cosmics` (electrons,
/// same shape, deposited after Poisson sampling) into a raw image `[raw_ny, raw_nx]` in ADU.
pub fn digitize(
    signal: &Array2<f64>,
    cosmics: Option<&Array2<f32>>,
    ccd: &Ccd,
    layout: &Layout,
    opts: NoiseOptions,
) -> Array2<f32> {
    let (ny, nx) = signal.dim();
    debug_assert_eq!((ny, nx), (ccd.ny, ccd.nx));
    let raw_nx = layout.raw_nx;
    let mut raw = Array2::<f32>::zeros((layout.raw_ny, raw_nx));
    let slice = raw
        .as_slice_mut()
        .expect("freshly allocated arrays are contiguous");
    // amp of each raw column for the bottom and the top half
    let amp_of = |y: usize, x: usize| -> usize {
        layout
            .blocks
            .iter()
            .position(|b| b.contains(y, x))
            .unwrap_or(0)
    };
    slice
        .par_chunks_mut(BLOCK_ROWS * raw_nx)
        .enumerate()
        .for_each(|(block, rows)| {
            let mut rng = ChaCha8Rng::seed_from_u64(
                opts.seed
                    ^ 0x6e6f_6973_6500_0000
                    ^ (block as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            );
            let std = Normal::new(0.0, 1.0).expect("unit normal");
            for (r, row) in rows.chunks_mut(raw_nx).enumerate() {
                let y = block * BLOCK_ROWS + r;
                for (x, out) in row.iter_mut().enumerate() {
                    let k = amp_of(y, x);
                    let a = &layout.amps[k];
                    let amp = &ccd.amps[k];
                    let mut e = 0.0;
                    if a.datasec.contains(y, x) {
                        let iy = y - a.datasec.y0 + a.ccdsec.y0;
                        let ix = x - a.datasec.x0 + a.ccdsec.x0;
                        let mean = signal[[iy, ix]].max(0.0) + opts.dark_electrons;
                        e = if opts.noise && mean > 0.0 {
                            Poisson::new(mean)
                                .map(|p| p.sample(&mut rng))
                                .unwrap_or(mean)
                        } else {
                            mean
                        };
                        if let Some(c) = cosmics {
                            e += f64::from(c[[iy, ix]]);
                        }
                    }
                    let rn = if opts.noise {
                        amp.read_noise * std.sample(&mut rng)
                    } else {
                        0.0
                    };
                    *out = ((e + rn) / amp.gain + amp.bias) as f32;
                }
            }
        });
    raw
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instrument::Instrument;

    #[test]
    fn noiseless_digitisation_inverts_exactly_and_noise_has_the_right_rms() {
        let inst = Instrument::preset("mini").unwrap();
        let (cam, _) = inst.camera("b0").unwrap();
        let layout = Layout::new(&cam.ccd);
        let mut sig = Array2::<f64>::zeros((cam.ccd.ny, cam.ccd.nx));
        sig[[10, 20]] = 1000.0;
        let opts = NoiseOptions {
            dark_electrons: 0.0,
            noise: false,
            seed: 1,
        };
        let raw = digitize(&sig, None, &cam.ccd, &layout, opts);
        let a = &layout.amps[0];
        let v = raw[[10 + a.datasec.y0, 20 + a.datasec.x0]] as f64;
        assert!(((v - cam.ccd.amps[0].bias) * cam.ccd.amps[0].gain - 1000.0).abs() < 1e-2);
        // overscan rms with noise = rn/gain (ADU); 16×600 pixels → 1% precision, 5σ ⇒ 5%
        let noisy = digitize(
            &sig,
            None,
            &cam.ccd,
            &layout,
            NoiseOptions {
                noise: true,
                ..opts
            },
        );
        let b = a.biassec;
        let vals: Vec<f64> = (b.y0..b.y1)
            .flat_map(|y| (b.x0..b.x1).map(move |x| (y, x)))
            .map(|(y, x)| noisy[[y, x]] as f64)
            .collect();
        let n = vals.len() as f64;
        let m = vals.iter().sum::<f64>() / n;
        let s = (vals.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n).sqrt();
        let want = cam.ccd.amps[0].read_noise / cam.ccd.amps[0].gain;
        assert!(
            (s / want - 1.0).abs() < 5.0 / (2.0 * n).sqrt(),
            "{s} vs {want}"
        );
        assert!((m - cam.ccd.amps[0].bias).abs() < 5.0 * want / n.sqrt());
    }
}
