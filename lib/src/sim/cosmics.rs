//! Cosmic rays: straight tracks through the 250 µm thick CCD. Hits arrive as a Poisson
//! process (instrument `cosmic_rate`, hits/cm²/s, 15 µm pixels); each has a uniform position
//! and azimuth and an incidence angle giving a projected length of thickness·tan θ; a
//! minimum-ionising particle frees ≈ 80 electrons per µm of path in silicon, spread along the
//! projected track with a little charge diffusion.

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson};

/// Pixel size, cm.
const PIXEL_CM: f64 = 15e-4;
/// CCD thickness, pixels (250 µm / 15 µm).
const THICKNESS_PX: f64 = 250.0 / 15.0;
/// Electrons per µm of path.
const E_PER_UM: f64 = 80.0;

/// Cosmic-ray charge image, electrons, `[ny, nx]`, for an exposure of `exptime` seconds.
pub fn cosmic_image(ny: usize, nx: usize, rate: f64, exptime: f64, seed: u64) -> Array2<f32> {
    let mut img = Array2::<f32>::zeros((ny, nx));
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x636f_736d_6963);
    let mean = rate * (ny * nx) as f64 * PIXEL_CM * PIXEL_CM * exptime;
    if mean <= 0.0 {
        return img;
    }
    let n = Poisson::new(mean)
        .map(|p| p.sample(&mut rng))
        .unwrap_or(0.0) as usize;
    for _ in 0..n {
        let x0 = rng.random_range(0.0..nx as f64);
        let y0 = rng.random_range(0.0..ny as f64);
        let phi = rng.random_range(0.0..std::f64::consts::TAU);
        // isotropic flux through a plane: cos θ uniform in (0.15, 1]
        let cos_t: f64 = rng.random_range(0.15..1.0);
        let tan_t = (1.0 - cos_t * cos_t).sqrt() / cos_t;
        let len = THICKNESS_PX * tan_t;
        let charge = E_PER_UM * 250.0 / cos_t;
        let steps = (len / 0.1).ceil().max(1.0) as usize;
        let q = charge / steps as f64;
        for s in 0..steps {
            let t = (s as f64 + 0.5) / steps as f64 * len;
            let (x, y) = (x0 + t * phi.cos(), y0 + t * phi.sin());
            // bilinear split between the four pixels around (x, y)
            let (fx, fy) = (x.floor(), y.floor());
            let (dx, dy) = (x - fx, y - fy);
            for (ox, wx) in [(0i64, 1.0 - dx), (1, dx)] {
                for (oy, wy) in [(0i64, 1.0 - dy), (1, dy)] {
                    let (ix, iy) = (fx as i64 + ox, fy as i64 + oy);
                    if ix >= 0 && iy >= 0 && (ix as usize) < nx && (iy as usize) < ny {
                        img[[iy as usize, ix as usize]] += (q * wx * wy) as f32;
                    }
                }
            }
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_count_follows_the_rate() {
        // 1000×1000 px = 2.25 cm²; 0.05 /cm²/s × 1000 s → 112 hits, each ≥ 20000 e
        let img = cosmic_image(1000, 1000, 0.05, 1000.0, 5);
        let total: f64 = img.iter().map(|&v| v as f64).sum();
        let per_hit = E_PER_UM * 250.0;
        let nhits = total / per_hit;
        assert!(nhits > 112.0 * 0.7 && nhits < 112.0 * 3.0, "{nhits}");
        assert_eq!(cosmic_image(10, 10, 0.05, 0.0, 5).sum(), 0.0);
    }
}
