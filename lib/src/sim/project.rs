//! Projection of per-fiber electrons through a Gauss-Hermite PSF onto the CCD.
//!
//! Every (fiber, sample) spot is the PSF module's pixel-integrated, normalised stamp times its
//! electrons, so the image holds exactly the projected electrons except what falls off the
//! CCD. Work is split into fixed blocks of fibers (the instrument's bundles); each block
//! renders its own tile (full height, its own columns) in parallel, and the tiles are added
//! into the image in block order, so the result does not depend on the thread count.

use ndarray::Array2;
use rayon::prelude::*;

use super::spectra::Projected;
use crate::psf::GaussHermitePsf;

/// A block's rendered tile: columns `x0 .. x0 + data.ncols()`, all rows.
struct Tile {
    x0: usize,
    data: Array2<f64>,
    spots: usize,
}

/// Result of a projection.
pub struct Projection {
    /// Electrons per pixel, `[ny, nx]` (the PSF's NPIX_Y × NPIX_X).
    pub image: Array2<f64>,
    /// Sum of the electrons of all spots (including parts that fell off the CCD).
    pub total: f64,
    /// Number of spots evaluated.
    pub spots: usize,
}

/// Projects `light` (fibers 0.. of the PSF, in order) with `psf`, `block` fibers per task.
pub fn project(psf: &GaussHermitePsf, light: &Projected, block: usize) -> Projection {
    let (ny, nx) = (psf.npix_y, psf.npix_x);
    let nf = light.electrons.nrows().min(psf.nfiber());
    let block = block.max(1);
    let starts: Vec<usize> = (0..nf).step_by(block).collect();
    let tiles: Vec<Option<Tile>> = starts
        .par_iter()
        .map(|&f0| render_block(psf, light, f0, (f0 + block).min(nf), ny, nx))
        .collect();
    let mut image = Array2::<f64>::zeros((ny, nx));
    let mut spots = 0;
    for t in tiles.into_iter().flatten() {
        let w = t.data.ncols();
        let mut dst = image.slice_mut(ndarray::s![.., t.x0..t.x0 + w]);
        dst += &t.data;
        spots += t.spots;
    }
    let total = light
        .electrons
        .rows()
        .into_iter()
        .take(nf)
        .map(|r| r.sum())
        .sum();
    Projection {
        image,
        total,
        spots,
    }
}

fn render_block(
    psf: &GaussHermitePsf,
    light: &Projected,
    f0: usize,
    f1: usize,
    ny: usize,
    nx: usize,
) -> Option<Tile> {
    let nfib = f1 - f0;
    // columns this block can touch: its traces ± the stamp half width (+1 for rounding)
    let (wlo, whi) = (light.waves[0], light.waves[light.waves.len() - 1]);
    let mut xmin = f64::INFINITY;
    let mut xmax = f64::NEG_INFINITY;
    for f in f0..f1 {
        for k in 0..=16 {
            let w = wlo + (whi - wlo) * k as f64 / 16.0;
            let x = psf.x(f, w);
            xmin = xmin.min(x);
            xmax = xmax.max(x);
        }
    }
    let pad = psf.hsizex as f64 + 2.0;
    let x0 = (xmin - pad).floor().max(0.0) as usize;
    let x1 = ((xmax + pad).ceil().max(0.0) as usize).min(nx);
    if x1 <= x0 {
        return None;
    }
    let tw = x1 - x0;
    let mut data = Array2::<f64>::zeros((ny, tw));
    let batch = psf.spot_params(f0, nfib, &light.waves);
    let mut ev = psf.evaluator();
    let mut buf = vec![0.0; ev.max_len()];
    let mut spots = 0;
    let tile = data.as_slice_mut()?;
    for fi in 0..nfib {
        let row = light.electrons.row(f0 + fi);
        for (k, &e) in row.iter().enumerate() {
            if e == 0.0 {
                continue;
            }
            let p = batch.get(fi, k);
            // skip spots entirely off the CCD before evaluating them
            let (hx, hy) = (psf.hsizex as f64 + 1.0, psf.hsizey as f64 + 1.0);
            if p.y < -hy || p.y > ny as f64 + hy || p.x < -hx || p.x > nx as f64 + hx {
                continue;
            }
            let st = ev.eval(&p, &mut buf);
            spots += 1;
            let Some((c, dx, dy)) = st.clip(x0 as i64, x1 as i64, 0, ny as i64) else {
                continue;
            };
            for r in 0..c.ny {
                let src = &buf[(r + dy) * st.nx + dx..(r + dy) * st.nx + dx + c.nx];
                let off = (c.y0 as usize + r) * tw + (c.x0 as usize - x0);
                for (d, s) in tile[off..off + c.nx].iter_mut().zip(src) {
                    *d += e * s;
                }
            }
        }
    }
    Some(Tile { x0, data, spots })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instrument::Instrument;
    use crate::sim::psfmodel::{nominal_psf, perturbed, Perturbation};
    use crate::sim::spectra::{projected, sample_grid, Conversion, FiberLight};
    use crate::speclib::arc::ArcSpectrum;
    use crate::speclib::flat::FlatLamp;

    #[test]
    fn photon_bookkeeping() {
        // Each spot is a stamp normalised to 1, so the image sum equals the electrons of the
        // spots whose stamps lie wholly on the CCD plus a part of the others. Bounds: spots
        // centred ≥ hsize+1 px inside count fully (lower bound); all spots (upper bound).
        let inst = Instrument::preset("mini").unwrap();
        let (cam, sp) = inst.camera("z0").unwrap();
        let psf = perturbed(
            &nominal_psf(&inst, cam, sp).unwrap(),
            &Perturbation::draw(20260102, 4, 5, "z0"),
        )
        .unwrap();
        let flat = FlatLamp {
            temperature: 3000.0,
            rate: 1000.0,
        };
        let arc = ArcSpectrum {
            lines: inst.arc_lines(0.0, 1e5),
        };
        let lights: Vec<FiberLight> = (0..inst.nspec)
            .map(|i| FiberLight {
                object: None,
                sky: None,
                lamp: Some(if i % 2 == 0 { &flat } else { &arc }),
                throughput: 1.0,
            })
            .collect();
        let conv = Conversion {
            area_cm2: inst.telescope.area_cm2,
            exptime: 60.0,
        };
        let (lo, hi) = (cam.psf.ccd_wave_min - 30.0, cam.psf.ccd_wave_max + 30.0);
        let light = projected(&lights, cam, conv, &sample_grid(lo, hi, 0.6), lo, hi);
        let proj = project(&psf, &light, inst.bundle_size);
        let sum = proj.image.sum();
        let (ny, nx) = (psf.npix_y as f64, psf.npix_x as f64);
        let (hx, hy) = (psf.hsizex as f64 + 1.0, psf.hsizey as f64 + 1.0);
        let mut inside = 0.0;
        for f in 0..inst.nspec {
            for (k, &w) in light.waves.iter().enumerate() {
                let (x, y) = (psf.x(f, w), psf.y(f, w));
                if y >= hy && y <= ny - 1.0 - hy && x >= hx && x <= nx - 1.0 - hx {
                    inside += light.electrons[[f, k]];
                }
            }
        }
        assert!(sum >= inside * (1.0 - 1e-12), "{sum} < {inside}");
        assert!(sum <= proj.total * (1.0 + 1e-12), "{sum} > {}", proj.total);
        // the partial stamps are a thin band at both ends: a few percent of the total
        assert!(inside > 0.9 * proj.total, "{inside} vs {}", proj.total);
    }
}
