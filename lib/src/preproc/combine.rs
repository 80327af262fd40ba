//! Nightly calibration images from several exposures, as desispec's ccdcalib does:
//! the bias from raw ZERO exposures (`compute_bias_file`: per-amp overscan subtracted over the
//! whole amp block, then per pixel a 4σ-clipped mean around the median, ADU, raw shape) and
//! the dark from preprocessed DARK exposures (`compute_dark_file`: images divided by their
//! exposure time, masked median, 4σ clip, mean weighted by exptime², electrons/second, image
//! shape). Pixels are independent and combined in file order, so the result does not depend
//! on the thread count.

use ndarray::Array2;
use rayon::prelude::*;

use super::overscan::calc_overscan;
use crate::io::raw::{RawCamera, Section};
use crate::stats::median_in_place;

/// Clip at 4 × 1.4826 × median |x − median| (desispec ccdcalib).
const CLIP_NSIG: f64 = 4.0;

/// Subtracts each amp's clipped overscan level (from BIASSEC) from the bounding box of its
/// BIASSEC, DATASEC, PRESEC and ORSEC (desispec `subtract_peramp_overscan`). Returns the raw
/// image minus overscan, ADU, raw shape.
pub fn subtract_peramp_overscan(cam: &RawCamera) -> Array2<f32> {
    let mut img = cam.image.mapv(f64::from);
    for a in &cam.amps {
        let b = a.biassec;
        let vals: Vec<f64> = (b.y0..b.y1)
            .flat_map(|y| (b.x0..b.x1).map(move |x| (y, x)))
            .map(|(y, x)| img[[y, x]])
            .collect();
        let (level, _) = calc_overscan(&vals);
        let mut bx: Section = b;
        for s in [Some(a.datasec), a.presec, a.orsec].into_iter().flatten() {
            bx.y0 = bx.y0.min(s.y0);
            bx.y1 = bx.y1.max(s.y1);
            bx.x0 = bx.x0.min(s.x0);
            bx.x1 = bx.x1.max(s.x1);
        }
        for y in bx.y0..bx.y1 {
            for x in bx.x0..bx.x1 {
                img[[y, x]] -= level;
            }
        }
    }
    img.mapv(|v| v as f32)
}

/// Per-pixel combination of `frames` (all the same shape) by `f(values, scratch)`, rows in
/// parallel.
fn per_pixel(frames: &[Array2<f32>], f: impl Fn(&[f64], usize) -> f64 + Sync) -> Array2<f32> {
    let (ny, nx) = frames[0].dim();
    let mut out = Array2::<f32>::zeros((ny, nx));
    out.as_slice_mut()
        .expect("contiguous")
        .par_chunks_mut(nx)
        .enumerate()
        .for_each(|(y, row)| {
            let mut v = vec![0.0; frames.len()];
            for (x, o) in row.iter_mut().enumerate() {
                for (k, fr) in frames.iter().enumerate() {
                    v[k] = f64::from(fr[[y, x]]);
                }
                *o = f(&v, y * nx + x) as f32;
            }
        });
    out
}

/// 4σ-clipped mean around the median of `v` with weights `w`; falls back to the median when
/// the clip keeps nothing (all deviations equal: desispec would return NaN there).
fn clipped_mean(v: &[f64], w: &[f64], median: f64) -> f64 {
    let mut ares: Vec<f64> = v.iter().map(|x| (x - median).abs()).collect();
    let cut = CLIP_NSIG * 1.4826 * median_in_place(&mut ares);
    let (mut s, mut sw) = (0.0, 0.0);
    for (x, wk) in v.iter().zip(w) {
        if (x - median).abs() < cut {
            s += wk * x;
            sw += wk;
        }
    }
    if sw > 0.0 {
        s / sw
    } else {
        median
    }
}

/// Master bias (ADU, raw shape) from overscan-subtracted raw zeros
/// ([`subtract_peramp_overscan`]).
pub fn combine_bias(frames: &[Array2<f32>]) -> Array2<f32> {
    let w = vec![1.0; frames.len()];
    per_pixel(frames, |v, _| {
        let mut m = v.to_vec();
        let med = median_in_place(&mut m);
        clipped_mean(v, &w, med)
    })
}

/// One preprocessed dark: image (electrons), mask (ccdmask), exposure time (seconds).
pub struct DarkFrame {
    pub image: Array2<f32>,
    pub mask: Array2<u32>,
    pub exptime: f64,
}

/// Dark current (electrons/second, image shape): median of the unmasked rates (all rates
/// where every frame is masked), then the exptime²-weighted mean of the rates within 4σ of it.
pub fn combine_dark(frames: &[DarkFrame]) -> Array2<f32> {
    let rates: Vec<Array2<f32>> = frames
        .iter()
        .map(|f| f.image.mapv(|v| (f64::from(v) / f.exptime) as f32))
        .collect();
    let w: Vec<f64> = frames.iter().map(|f| f.exptime * f.exptime).collect();
    let nx = frames[0].image.dim().1;
    per_pixel(&rates, |v, i| {
        let (y, x) = (i / nx, i % nx);
        let mut good: Vec<f64> = v
            .iter()
            .zip(frames)
            .filter(|(_, f)| f.mask[[y, x]] == 0)
            .map(|(&r, _)| r)
            .collect();
        if good.is_empty() {
            good = v.to_vec();
        }
        let med = median_in_place(&mut good);
        clipped_mean(v, &w, med)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipped_mean_rejects_an_outlier_and_weights() {
        let v = [10.0, 11.0, 9.0, 10.5, 500.0];
        let w = [1.0; 5];
        let m = clipped_mean(&v, &w, 10.5);
        assert!((m - 10.125).abs() < 1e-12, "{m}");
        // identical values: nothing passes the strict cut, the median is returned
        assert_eq!(clipped_mean(&[3.0, 3.0, 3.0], &[1.0; 3], 3.0), 3.0);
    }

    #[test]
    fn dark_rate_ignores_a_masked_cosmic_and_weights_by_exptime() {
        let mk = |v: f32, t: f64, m: u32| DarkFrame {
            image: Array2::from_elem((2, 3), v),
            mask: Array2::from_elem((2, 3), m),
            exptime: t,
        };
        let frames = vec![
            mk(100.0, 100.0, 0),
            mk(210.0, 200.0, 0),
            mk(5000.0, 100.0, 16),
            mk(95.0, 100.0, 0),
        ];
        let d = combine_dark(&frames);
        // rates 1.0, 1.05, 50 (masked, and clipped), 0.95; weights 1e4, 4e4, 1e4
        let want = (1.0 * 1e4 + 1.05 * 4e4 + 0.95 * 1e4) / 6e4;
        assert!((f64::from(d[[1, 2]]) - want).abs() < 1e-6);
    }
}
