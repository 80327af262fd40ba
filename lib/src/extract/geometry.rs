//! Patch geometry of specter's `ex2d` (reference/extraction.md §4.3): sub-bundles, the pixel
//! box of a set of fibers over a wavelength range (`PSF.xyrange`), and the padded
//! wavelength grid of each patch. These reproduce specter's integer and floating-point
//! choices exactly, because they decide which pixels and flux bins a patch solves for.

use crate::psf::{GaussHermitePsf, SpotEvaluator, Stamp};

/// `numpy.arange(start, stop, step)` for floats, value by value as numpy fills it: length
/// `ceil((stop - start)/step)`, element 0 = start, 1 = start + step, then
/// `start + i·delta` with `delta = (start + step) - start`.
pub fn np_arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil();
    if len.is_nan() || len <= 0.0 {
        return Vec::new();
    }
    let len = len as usize;
    let mut v = Vec::with_capacity(len);
    v.push(start);
    if len > 1 {
        let second = start + step;
        v.push(second);
        let delta = second - start;
        for i in 2..len {
            v.push(start + i as f64 * delta);
        }
    }
    v
}

/// `numpy.gradient` of a 1-D array (unit spacing): centred differences inside, one-sided at
/// the ends.
pub fn np_gradient(x: &[f64]) -> Vec<f64> {
    let n = x.len();
    match n {
        0 => Vec::new(),
        1 => vec![0.0],
        _ => {
            let mut g = vec![0.0; n];
            g[0] = x[1] - x[0];
            g[n - 1] = x[n - 1] - x[n - 2];
            for i in 1..n - 1 {
                g[i] = (x[i + 1] - x[i - 1]) / 2.0;
            }
            g
        }
    }
}

/// specter's `split_bundle(bundlesize, n)`: (core fibers, extraction fibers) per sub-bundle,
/// as indices within the bundle. Cores partition the bundle with sizes differing by at most
/// one (smaller ones moved towards the middle); each extraction set adds the neighbouring
/// fiber on each side unless at the bundle edge.
pub fn split_bundle(bundlesize: usize, n: usize) -> Vec<(Vec<usize>, Vec<usize>)> {
    let n = n.clamp(1, bundlesize.max(1));
    // numpy.array_split: the first (len % n) parts get one more element.
    let (q, r) = (bundlesize / n, bundlesize % n);
    let mut sizes: Vec<usize> = (0..n).map(|i| q + usize::from(i < r)).collect();
    // One bubble pass moving larger parts to the right (specter's loop).
    for i in 0..n.saturating_sub(1) {
        if sizes[i] > sizes[i + 1] {
            sizes.swap(i, i + 1);
        }
    }
    let mut out = Vec::with_capacity(n);
    let mut imin = 0;
    for s in sizes {
        let core: Vec<usize> = (imin..imin + s).collect();
        imin += s;
        let mut ext = Vec::with_capacity(s + 2);
        if let Some(&first) = core.first() {
            if first > 0 {
                ext.push(first - 1);
            }
        }
        ext.extend(&core);
        if let Some(&last) = core.last() {
            if last + 1 < bundlesize {
                ext.push(last + 1);
            }
        }
        out.push((core, ext));
    }
    out
}

/// Helpers evaluating specter's `xypix` boxes (clipped to the CCD) without keeping pixels.
pub struct SpotBoxes<'a> {
    pub psf: &'a GaussHermitePsf,
    ev: SpotEvaluator,
    buf: Vec<f64>,
    /// λ(y) at every CCD row per fiber, computed once (xyrange samples it for every patch).
    rows: Vec<Option<Vec<f64>>>,
}

impl<'a> SpotBoxes<'a> {
    pub fn new(psf: &'a GaussHermitePsf) -> Self {
        let ev = psf.evaluator();
        let buf = vec![0.0; ev.max_len()];
        SpotBoxes {
            psf,
            ev,
            buf,
            rows: vec![None; psf.nfiber()],
        }
    }

    /// `psf.xypix(fiber, wave)` slices as specter returns them (start, stop for x and y):
    /// off the CCD in wavelength gives x (0,0) and y (0,0) below / (npix_y, npix_y) above.
    pub fn xypix_box(&mut self, fiber: usize, wave: f64) -> ((i64, i64), (i64, i64)) {
        let (wlo, whi) = self.psf.fiber_wrange(fiber);
        let ny = self.psf.npix_y as i64;
        if wave < wlo {
            return ((0, 0), (0, 0));
        }
        if wave > whi {
            return ((0, 0), (ny, ny));
        }
        match self.psf.xypix(&mut self.ev, fiber, wave, &mut self.buf) {
            Some(Stamp { x0, y0, nx, ny }) => ((x0, x0 + nx as i64), (y0, y0 + ny as i64)),
            None => ((0, 0), (0, 0)),
        }
    }

    /// Shape (ny, nx) of `psf.pix(fiber, wave)`.
    pub fn pix_shape(&mut self, fiber: usize, wave: f64) -> (usize, usize) {
        let ((x0, x1), (y0, y1)) = self.xypix_box(fiber, wave);
        ((y1 - y0).max(0) as usize, (x1 - x0).max(0) as usize)
    }

    /// specter's `PSF.xyrange((specmin, specmax), (wavemin, wavemax))`: pixel box
    /// `(xmin, xmax, ymin, ymax)` (stops exclusive) covering those fibers' spots over that
    /// wavelength range, including specter's quirks (the x extremes sample the traces at
    /// every CCD row and take the stamp at the extreme sample).
    pub fn xyrange(
        &mut self,
        specmin: usize,
        specmax: usize,
        wavemin: f64,
        wavemax: f64,
    ) -> (i64, i64, i64, i64) {
        let psf = self.psf;
        let (wmin, wmax) = psf.wrange_any();
        let wavemin = if wavemin < wmin { wmin } else { wavemin };
        let wavemax = if wavemax > wmax { wmax } else { wavemax };
        // The fibers specmin..specmax only: the stored specter snapshot slices [specmin:specmax+1],
        // but specter's own outputs (../shared/data/extract) match the half-open range.
        let last = specmax.min(psf.nfiber());
        let argmin = |w: f64| {
            let mut best = specmin;
            let mut bv = f64::INFINITY;
            for f in specmin..last {
                let y = psf.y(f, w);
                if y < bv {
                    bv = y;
                    best = f;
                }
            }
            best
        };
        let argmax = |w: f64| {
            let mut best = specmin;
            let mut bv = f64::NEG_INFINITY;
            for f in specmin..last {
                let y = psf.y(f, w);
                if y > bv {
                    bv = y;
                    best = f;
                }
            }
            best
        };
        let fy0 = argmin(wavemin);
        let fy1 = argmax(wavemax);
        let ymin = self.xypix_box(fy0, wavemin).1 .0;
        let ymax = self.xypix_box(fy1, wavemax).1 .1;

        let npix_y = psf.npix_y as f64;
        let xmin = {
            let w = self.row_waves(specmin, wavemin, wavemax);
            let mut best: Option<(f64, f64)> = None; // (x, w) at min x among on-CCD samples
            for &wi in &w {
                let (x, y) = (psf.x(specmin, wi), psf.y(specmin, wi));
                if 0.0 <= y - 0.5 && y < npix_y - 0.5 && best.is_none_or(|(bx, _)| x < bx) {
                    best = Some((x, wi));
                }
            }
            match best {
                Some((x, _)) if x < 0.0 => 0,
                Some((_, wx)) => self.xypix_box(specmin, wx).0 .0,
                None => 0,
            }
        };
        let xmax = {
            let f = specmax - 1;
            let w = self.row_waves(f, wavemin, wavemax);
            let mut best: Option<(f64, f64)> = None;
            for &wi in &w {
                let (x, y) = (psf.x(f, wi), psf.y(f, wi));
                if -0.5 <= y && y < npix_y - 0.5 && best.is_none_or(|(bx, _)| x > bx) {
                    best = Some((x, wi));
                }
            }
            match best {
                Some((x, _)) if x > psf.npix_x as f64 => psf.npix_x as i64,
                Some((_, wx)) => self.xypix_box(f, wx).0 .1,
                None => psf.npix_x as i64,
            }
        };
        (xmin, xmax, ymin, ymax)
    }

    /// specter's sample `w = psf.wavelength(fiber)` (every CCD row) trimmed to
    /// `[wavemin, wavemax]` as xyrange does, with wavemin and wavemax appended.
    fn row_waves(&mut self, fiber: usize, wavemin: f64, wavemax: f64) -> Vec<f64> {
        let psf = self.psf;
        let all = self.rows[fiber].get_or_insert_with(|| {
            (0..psf.npix_y)
                .map(|y| psf.wavelength(fiber, y as f64))
                .collect()
        });
        let mut w = all.clone();
        if w.first().is_some_and(|&w0| w0 < wavemin) {
            w.retain(|&x| wavemin <= x);
        }
        if w.last().is_some_and(|&wl| wavemax < wl) {
            w.retain(|&x| x <= wavemax);
        }
        w.push(wavemin);
        w.push(wavemax);
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_bundle_matches_specter_docstring() {
        let s = split_bundle(10, 3);
        let cores: Vec<Vec<usize>> = s.iter().map(|c| c.0.clone()).collect();
        let exts: Vec<Vec<usize>> = s.iter().map(|c| c.1.clone()).collect();
        assert_eq!(cores, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7, 8, 9]]);
        assert_eq!(
            exts,
            vec![vec![0, 1, 2, 3], vec![2, 3, 4, 5, 6], vec![5, 6, 7, 8, 9]]
        );
        let s = split_bundle(25, 5);
        assert!(s.iter().all(|c| c.0.len() == 5));
        assert_eq!(s[2].1, vec![9, 10, 11, 12, 13, 14, 15]);
    }

    #[test]
    fn arange_and_gradient_follow_numpy() {
        let w = np_arange(6500.0, 6749.6 + 0.4, 0.8);
        assert_eq!(w.len(), 313);
        assert_eq!(w[0], 6500.0);
        assert!((w[312] - 6749.6).abs() < 1e-9);
        let g = np_gradient(&[1.0, 2.0, 4.0, 7.0]);
        assert_eq!(g, vec![1.0, 1.5, 2.5, 3.0]);
    }
}
