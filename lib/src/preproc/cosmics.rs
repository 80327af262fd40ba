//! Cosmic-ray rejection on a preprocessed CCD image, as desispec's `reject_cosmic_rays`
//! (SDSS `reject_cr_psf` heritage; reference/calibration.md §1.4): a pixel is a cosmic ray
//! when it stands above its neighbours on at least 2 of 4 axes (sharp) and is too sharp for
//! the PSF on at least one axis; rejected pixels grow to their 8-neighbours with looser cuts,
//! then the mask is dilated by 3×3 and repaired by binary closings with 11-pixel line
//! elements (desispec joincosmics `RepairMask(11, 11)`).
//!
//! Determinism: every pass decides each pixel from inputs fixed for that pass, so running the
//! rows in parallel gives the same mask for any thread count.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

/// Neighbour-to-peak ratios of the mean PSF along the horizontal, vertical and two diagonal
/// axes, per band (desispec cosmics.py; ITL r CCDs have their own set).
pub fn psf_gradients(band: char, ccdtype: Option<&str>) -> Option<[f64; 4]> {
    match band.to_ascii_lowercase() {
        'b' => Some([0.758221, 0.771945, 0.570183, 0.592199]),
        'r' if ccdtype.is_some_and(|t| t.contains("ITL")) => Some([0.62, 0.64, 0.44, 0.46]),
        'r' => Some([0.819245, 0.847529, 0.617514, 0.656629]),
        'z' => Some([0.829552, 0.862828, 0.633424, 0.664144]),
        _ => None,
    }
}

/// Parameters of the rejection (production values in [`Default`]: nsig 6, cfudge 3,
/// c2fudge 0.5, up to 100 growth iterations, dilation on).
#[derive(Debug, Clone, Copy)]
pub struct CosmicParams {
    /// Sigmas above the neighbours (first pass; the growth passes use 3).
    pub nsig: f64,
    /// Sigmas of inconsistency with the PSF (first pass; the growth passes use 0).
    pub cfudge: f64,
    /// Fudge factor on the PSF gradients.
    pub c2fudge: f64,
    /// Maximum growth iterations.
    pub niter: usize,
    /// 3×3 dilation and 11×11 line closings of the final mask.
    pub dilate: bool,
    /// In the growth passes, ignore neighbours that are cosmic pixels already found (spx);
    /// `false` is desispec's rule, which replaces them by the central value.
    pub ignore_found: bool,
    /// Also look for cosmic rays in the 2×2-binned image (spx): tracks whose charge is split
    /// between two rows or columns are as wide as the PSF core and fail the single-pixel
    /// sharpness test, but are sharp once binned.
    pub binned: bool,
    /// Also search the image minus its running median along the columns (spx; see
    /// `residual_along_columns`): tracks crossing bright traces.
    pub residual: bool,
}

impl Default for CosmicParams {
    fn default() -> Self {
        CosmicParams {
            nsig: 6.0,
            cfudge: 3.0,
            c2fudge: 0.5,
            niter: 100,
            dilate: true,
            ignore_found: true,
            binned: true,
            residual: true,
        }
    }
}

/// Axis offsets (row, column): horizontal, vertical, and the two diagonals.
const AXES: [(isize, isize); 4] = [(0, 1), (1, 0), (1, 1), (1, -1)];

/// Where a [`Tester`] reads pixel values and inverse variances (0 = no information), by
/// flat row-major index.
struct Pixels<'a> {
    pix: &'a [f32],
    tivar: &'a [f32],
}

struct Tester<'a> {
    px: Pixels<'a>,
    /// cosmic pixels found so far, when they are to be ignored as neighbours
    found: Option<&'a [bool]>,
    nx: usize,
    grad: [f64; 4],
    c2fudge: f64,
}

impl Tester<'_> {
    /// desispec `_reject_cosmic_rays_ala_sdss_single_numba` for one interior pixel `i`.
    fn is_cosmic(&self, i: usize, nsig: f64, cfudge: f64) -> bool {
        self.is_cosmic_step(i, 1, nsig, cfudge)
    }

    /// [`Tester::is_cosmic`] with neighbours `step` pixels away along each axis.
    fn is_cosmic_step(&self, i: usize, step: isize, nsig: f64, cfudge: f64) -> bool {
        let iv = f64::from(self.px.tivar[i]);
        if iv <= 0.0 {
            return false;
        }
        let val = f64::from(self.px.pix[i]);
        let err = 1.0 / iv.sqrt();
        let mut first = 0;
        let mut second = false;
        for (a, &(d0, d1)) in AXES.iter().enumerate() {
            let (mut nval, mut nside) = (0.0, 0);
            // the neighbours used on this axis (usize::MAX: skipped)
            let mut used = [usize::MAX; 2];
            for (u, s) in used.iter_mut().zip([-1isize, 1]) {
                let j = (i as isize + s * step * (d0 * self.nx as isize + d1)) as usize;
                if self.found.is_some_and(|f| f[j]) {
                    // A 2-pixel-wide track (charge split between two rows) has its twin next
                    // to it: desispec's substitution of the central value makes the twin
                    // look smooth on that axis, so the growth stops. Judge the axis on the
                    // other side alone.
                    continue;
                }
                nside += 1;
                *u = j;
                // a masked neighbour is replaced by the central pixel
                nval += if self.px.tivar[j] > 0.0 {
                    f64::from(self.px.pix[j])
                } else {
                    val
                };
            }
            if nside == 0 {
                continue;
            }
            let k = nside as f64;
            nval /= k;
            if val > nval + nsig * err {
                first += 1;
            }
            if !second {
                let lhs = (val - cfudge * err) * self.c2fudge * self.grad[a];
                // `lhs > nval + cfudge·nerr` cannot hold when `lhs ≤ nval` and cfudge ≥ 0:
                // the neighbours' variance (two divisions) is only needed otherwise
                if lhs > nval || cfudge.is_nan() || cfudge < 0.0 {
                    let mut nvar = 0.0;
                    for &j in used.iter().filter(|&&j| j != usize::MAX) {
                        let t = f64::from(self.px.tivar[j]);
                        nvar += if t > 0.0 { 1.0 / t } else { err * err };
                    }
                    let nerr = nvar.sqrt() / k;
                    second = lhs > nval + cfudge * nerr;
                }
            }
            // Stop once the answer is settled (this runs on every bright pixel of the camera):
            // both tests passed, or too few axes are left to reach 2 sharp ones.
            if first >= 2 && second {
                return true;
            }
            if first + (AXES.len() - 1 - a) < 2 {
                return false;
            }
        }
        false
    }
}

/// Cosmic-ray mask of `pix` (electrons, `[ny, nx]`) with inverse variance `ivar`
/// (electrons⁻²); pixels with a non-zero `mask` are treated as having no information.
/// `grad` from [`psf_gradients`]. Returns `true` where a cosmic ray was found.
pub fn reject_cosmic_rays(
    pix: ArrayView2<f32>,
    ivar: ArrayView2<f32>,
    mask: ArrayView2<u32>,
    grad: [f64; 4],
    p: &CosmicParams,
) -> Array2<bool> {
    let (ny, nx) = pix.dim();
    if ny < 3 || nx < 3 {
        return Array2::from_elem((ny, nx), false);
    }
    let t0 = std::time::Instant::now();
    // a camera image is 4k × 4k: borrow it rather than copy when it is in row-major order
    let pix_owned: Vec<f32>;
    let pix_v: &[f32] = match pix.as_slice() {
        Some(s) => s,
        None => {
            pix_owned = pix.iter().copied().collect();
            &pix_owned
        }
    };
    let mut tivar: Vec<f32> = ivar
        .iter()
        .zip(mask.iter())
        .map(|(&v, &m)| if m == 0 && v > 0.0 { v } else { 0.0 })
        .collect();
    // the residual is taken before `find` zeroes the ivar of the cosmic pixels it finds
    let residual = p
        .residual
        .then(|| residual_along_columns(pix_v, &tivar, ny, nx));
    log::debug!("cosmics: setup {:.3} s", t0.elapsed().as_secs_f64());
    let (mut rejected_list, seen) = find(pix_v, &mut tivar, ny, nx, grad, p);
    drop(tivar);
    if let Some((res, mut res_ivar)) = residual {
        let more: Vec<usize> = find(&res, &mut res_ivar, ny, nx, grad, p)
            .0
            .into_iter()
            .filter(|&i| !seen[i])
            .collect();
        log::debug!("cosmics: residual image {} more pixels", more.len());
        rejected_list.extend(more);
    }

    let t1 = std::time::Instant::now();
    let mut bits = BitImage::new(ny, nx);
    if p.dilate {
        for &i in &rejected_list {
            let (y, x) = (i / nx, i % nx);
            for yy in y - 1..=y + 1 {
                for xx in x - 1..=x + 1 {
                    bits.set(yy, xx);
                }
            }
        }
        bits = close_lines(&bits);
    } else {
        for &i in &rejected_list {
            bits.set(i / nx, i % nx);
        }
    }
    let out = bits.to_array();
    log::debug!(
        "cosmics: dilation and closing {:.3} s",
        t1.elapsed().as_secs_f64()
    );
    out
}

/// Rows either side of a pixel whose median models its background in
/// [`residual_along_columns`] (on each side): far enough (≥ 3 rows) that a line's own core
/// stays out.
const RESIDUAL_ROWS: std::ops::RangeInclusive<usize> = 3..=6;

/// The image minus its background along the columns, and that residual's inverse variance:
/// the background of pixel (y, x) is the mean of the medians of the unmasked pixels of
/// column x in rows y−6 … y−3 and in rows y+3 … y+6. Traces run along the columns and change
/// slowly there, so a cosmic-ray track crossing a bright trace (a flat, a science continuum)
/// stands alone in the residual, where the neighbour-ratio test sees it against no
/// background. Near lines (arc, sky) and blends the two medians disagree, and a background
/// from them digs pits beside bright lines that make the lines look sharp (measured: 1–20%
/// of the arc pixels flagged), so the residual is only defined where the medians agree
/// within 2.7σ (3σ of their difference, each median of 4 having ≈ π/8 of a pixel's
/// variance) and the pixel is not 5σ below the background; elsewhere its ivar is 0 and only
/// the search on the image itself applies. The background adds ≈ π/16 of a pixel's variance.
fn residual_along_columns(
    pix: &[f32],
    tivar: &[f32],
    ny: usize,
    nx: usize,
) -> (Vec<f32>, Vec<f32>) {
    // Median of 3 or 4 samples without sorting (this runs on every pixel of the camera).
    fn median(v: &[f32]) -> f32 {
        match *v {
            [a, b, c] => a.min(b).max(a.max(b).min(c)),
            [a, b, c, d] => {
                let (lo, hi) = (a.min(b).min(c.min(d)), a.max(b).max(c.max(d)));
                0.5 * (a + b + c + d - lo - hi)
            }
            _ => f32::NAN,
        }
    }
    let mut res = vec![0f32; ny * nx];
    let mut riv = vec![0f32; ny * nx];
    res.par_chunks_mut(nx)
        .zip(riv.par_chunks_mut(nx))
        .enumerate()
        .for_each(|(y, (rrow, vrow))| {
            // (pixel row, ivar row) of the rows above and below, nearest first
            let row = |yy: usize| (&pix[yy * nx..(yy + 1) * nx], &tivar[yy * nx..(yy + 1) * nx]);
            let sides = [
                RESIDUAL_ROWS
                    .filter_map(|d| y.checked_sub(d))
                    .map(row)
                    .collect::<Vec<_>>(),
                RESIDUAL_ROWS
                    .map(|d| y + d)
                    .filter(|&v| v < ny)
                    .map(row)
                    .collect::<Vec<_>>(),
            ];
            if sides.iter().any(|rows| rows.len() < 3) {
                return;
            }
            for x in 0..nx {
                let i = y * nx + x;
                if tivar[i] <= 0.0 {
                    continue;
                }
                let mut meds = [0f32; 2];
                let mut ok = true;
                for (m, rows) in meds.iter_mut().zip(&sides) {
                    let mut side = [0f32; 4];
                    let mut n = 0;
                    for (p, t) in rows {
                        if t[x] > 0.0 {
                            side[n] = p[x];
                            n += 1;
                        }
                    }
                    if n < 3 {
                        ok = false;
                        break;
                    }
                    *m = median(&side[..n]);
                }
                let sigma = 1.0 / tivar[i].sqrt();
                if !ok || (meds[0] - meds[1]).abs() > 2.7 * sigma {
                    continue;
                }
                let r = pix[i] - 0.5 * (meds[0] + meds[1]);
                if r < -5.0 * sigma {
                    continue;
                }
                rrow[x] = r;
                vrow[x] = tivar[i] / (1.0 + std::f32::consts::PI / 16.0);
            }
        });
    (res, riv)
}

/// Cosmic-ray pixels of `pix_v` (`[ny·nx]`, row-major) with inverse variance `tivar` (0 =
/// no information): the first pass, the binned search and the growth, before dilation.
/// Returns them in the order found, and as a `[ny·nx]` map; the growth zeroes `tivar` at
/// them.
fn find(
    pix_v: &[f32],
    tivar: &mut [f32],
    ny: usize,
    nx: usize,
    grad: [f64; 4],
    p: &CosmicParams,
) -> (Vec<usize>, Vec<bool>) {
    let t0 = std::time::Instant::now();
    let interior = |i: usize| {
        let (y, x) = (i / nx, i % nx);
        y >= 1 && y + 1 < ny && x >= 1 && x + 1 < nx
    };

    // first pass on pixels with S/N > nsig
    let mut rejected_list: Vec<usize> = {
        let t = Tester {
            px: Pixels { pix: pix_v, tivar },
            found: None,
            nx,
            grad,
            c2fudge: p.c2fudge,
        };
        (1..ny - 1)
            .into_par_iter()
            .flat_map_iter(|y| {
                let t = &t;
                (1..nx - 1).filter_map(move |x| {
                    let i = y * nx + x;
                    let sn = f64::from(t.px.pix[i]) * f64::from(t.px.tivar[i]).sqrt();
                    (sn > p.nsig && t.is_cosmic(i, p.nsig, p.cfudge)).then_some(i)
                })
            })
            .collect()
    };
    let mut rejected = vec![false; ny * nx];
    for &i in &rejected_list {
        rejected[i] = true;
    }
    log::debug!(
        "cosmics: first pass {} pixels ({:.3} s)",
        rejected_list.len(),
        t0.elapsed().as_secs_f64()
    );
    if p.binned {
        let t1 = std::time::Instant::now();
        let mut extra = 0;
        for i in binned_seeds(pix_v, tivar, ny, nx, p) {
            if !rejected[i] {
                rejected[i] = true;
                rejected_list.push(i);
                extra += 1;
            }
        }
        log::debug!(
            "cosmics: binned pass {extra} more pixels ({:.3} s)",
            t1.elapsed().as_secs_f64()
        );
    }

    // growth: 8-neighbours of rejected pixels, with the rejected pixels masked
    let offsets: [isize; 8] = {
        let w = nx as isize;
        [-w - 1, -w, -w + 1, -1, 1, w - 1, w, w + 1]
    };
    let mut is_neighbor = vec![false; ny * nx];
    // pixels whose ivar is already zeroed (a prefix of `rejected_list`)
    let mut zeroed = 0;
    for it in 0..p.niter {
        let mut neighbors = Vec::new();
        for &i in &rejected_list {
            for o in offsets {
                let j = (i as isize + o) as usize;
                if !rejected[j] && !is_neighbor[j] {
                    is_neighbor[j] = true;
                    neighbors.push(j);
                }
            }
        }
        for &j in &neighbors {
            is_neighbor[j] = false;
        }
        for &i in &rejected_list[zeroed..] {
            tivar[i] = 0.0;
        }
        zeroed = rejected_list.len();
        let t = Tester {
            px: Pixels { pix: pix_v, tivar },
            found: p.ignore_found.then_some(rejected.as_slice()),
            nx,
            grad,
            c2fudge: p.c2fudge,
        };
        neighbors.sort_unstable();
        let new: Vec<usize> = neighbors
            .par_iter()
            .copied()
            .filter(|&j| interior(j) && t.is_cosmic(j, 3.0, 0.0))
            .collect();
        log::debug!("cosmics: iteration {it}: {} new pixels", new.len());
        if new.is_empty() {
            break;
        }
        for &j in &new {
            rejected[j] = true;
        }
        rejected_list.extend(new);
    }
    log::debug!("cosmics: search {:.3} s", t0.elapsed().as_secs_f64());
    (rejected_list, rejected)
}

/// Core σ (pixels, before pixel integration) of the sharpest PSF the 2×2-binned search must
/// never flag. The band gradients describe DESI's mean PSF (σ ≈ 1.3–1.6 px); a camera whose
/// PSF is sharper (the spx-sim presets: σ 1.0–1.2 px) has neighbouring blocks two pixels away
/// at half or less of what those gradients predict, so the binned test built from them flagged
/// lamp lines and flat traces by the thousand (r/z flats: 5–50% of the pixels). A 0.9 px
/// template is sharper than any PSF we meet: a PSF spot or trace keeps ≥ 0.2 of its block in
/// the next block, while a track split between two rows or columns leaves ≈ 0 there.
const BINNED_TEMPLATE_SIGMA: f64 = 0.9;

/// Neighbour-to-peak ratios of the 2×2-binned image of a Gaussian PSF with core σ
/// [`BINNED_TEMPLATE_SIGMA`] pixels, integrated over pixels (σ² + 1/12): the block centred on
/// the peak covers ±1 pixel, the next block along an axis (2 pixels further) covers 1..3, so
/// the ratio is (Φ(3/σ) − Φ(1/σ)) / (Φ(1/σ) − Φ(−1/σ)) per dimension, its square on the
/// diagonals. Horizontal, vertical, diagonal, anti-diagonal as [`AXES`].
fn binned_gradients() -> [f64; 4] {
    let phi = |z: f64| 0.5 * (1.0 + libm::erf(z / std::f64::consts::SQRT_2));
    let sigma = (BINNED_TEMPLATE_SIGMA * BINNED_TEMPLATE_SIGMA + 1.0 / 12.0).sqrt();
    let r = (phi(3.0 / sigma) - phi(1.0 / sigma)) / (phi(1.0 / sigma) - phi(-1.0 / sigma));
    [r, r, r * r, r * r]
}

/// Seed pixels from the desispec test applied to the 2×2-binned image in all four binning
/// phases (block sums S(y, x) = Σ pix[y..y+2, x..x+2], neighbours two pixels away, gradients
/// from [`binned_gradients`]); a block with a masked pixel is not tested. The pixels of a
/// rejected block standing 3σ above the background (a quarter of the faintest of the eight
/// neighbouring blocks) are returned.
fn binned_seeds(pix: &[f32], tivar: &[f32], ny: usize, nx: usize, p: &CosmicParams) -> Vec<usize> {
    if ny < 6 || nx < 6 {
        return Vec::new();
    }
    let (bny, bnx) = (ny - 1, nx - 1);
    let bgrad = binned_gradients();
    // Block rows 2..bny−2 are tested (neighbours two pixels, one block, away), in bands of
    // BINNED_BAND rows: each band computes the sums of its blocks and of 2 block rows either
    // side into a buffer of its own, small enough to stay in cache (whole-image buffers cost
    // as much in page faults as the test itself); a block's sum does not depend on the band.
    let nband = (bny - 4).div_ceil(BINNED_BAND);
    let mut out: Vec<usize> = (0..nband)
        .into_par_iter()
        .flat_map_iter(|band| {
            let y0 = 2 + band * BINNED_BAND;
            let y1 = (y0 + BINNED_BAND).min(bny - 2);
            let r0 = y0 - 2;
            let rows = y1 + 2 - r0;
            let mut s = vec![0f32; rows * bnx];
            let mut siv = vec![0f32; rows * bnx];
            for (k, (srow, vrow)) in s.chunks_mut(bnx).zip(siv.chunks_mut(bnx)).enumerate() {
                block_row(pix, tivar, nx, r0 + k, srow, vrow);
            }
            let t = Tester {
                px: Pixels {
                    pix: &s,
                    tivar: &siv,
                },
                found: None,
                nx: bnx,
                grad: bgrad,
                c2fudge: p.c2fudge,
            };
            let mut seeds = Vec::new();
            for y in y0..y1 {
                for x in 2..bnx - 2 {
                    let i = (y - r0) * bnx + x;
                    let sn = f64::from(s[i]) * f64::from(siv[i]).sqrt();
                    if !(sn > p.nsig && t.is_cosmic_step(i, 2, p.nsig, p.cfudge)) {
                        continue;
                    }
                    let mut bg = f64::INFINITY;
                    for (dy, dx) in [
                        (-2, -2),
                        (-2, 0),
                        (-2, 2),
                        (0, -2),
                        (0, 2),
                        (2, -2),
                        (2, 0),
                        (2, 2),
                    ] {
                        let j = (i as isize + dy * bnx as isize + dx) as usize;
                        if siv[j] > 0.0 {
                            bg = bg.min(f64::from(s[j]) / 4.0);
                        }
                    }
                    if !bg.is_finite() {
                        bg = 0.0;
                    }
                    for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        let q = (y + dy) * nx + x + dx;
                        if (f64::from(pix[q]) - bg) * f64::from(tivar[q]).sqrt() > 3.0 {
                            seeds.push(q);
                        }
                    }
                }
            }
            seeds
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Block rows per band of [`binned_seeds`] (a band's buffers: (64 + 4) × 4k × 8 bytes).
const BINNED_BAND: usize = 64;

/// Sums `srow` of the 2×2 blocks of pixel rows `y`, `y + 1` starting at each column, and
/// their inverse variances `vrow` (0 where a pixel has no information).
fn block_row(pix: &[f32], tivar: &[f32], nx: usize, y: usize, srow: &mut [f32], vrow: &mut [f32]) {
    // pixel variances of the two rows, each computed once instead of once per block
    let var_row = |yy: usize| -> Vec<f64> {
        tivar[yy * nx..(yy + 1) * nx]
            .iter()
            .map(|&t| if t > 0.0 { 1.0 / f64::from(t) } else { 0.0 })
            .collect()
    };
    let (v0, v1) = (var_row(y), var_row(y + 1));
    let (t0, t1) = (
        &tivar[y * nx..(y + 1) * nx],
        &tivar[(y + 1) * nx..(y + 2) * nx],
    );
    let (p0, p1) = (&pix[y * nx..(y + 1) * nx], &pix[(y + 1) * nx..(y + 2) * nx]);
    for x in 0..nx - 1 {
        if t0[x] <= 0.0 || t0[x + 1] <= 0.0 || t1[x] <= 0.0 || t1[x + 1] <= 0.0 {
            srow[x] = 0.0;
            vrow[x] = 0.0;
            continue;
        }
        let sum: f64 = [p0[x], p0[x + 1], p1[x], p1[x + 1]]
            .iter()
            .map(|&v| f64::from(v))
            .sum();
        let var: f64 = [v0[x], v0[x + 1], v1[x], v1[x + 1]].iter().sum();
        srow[x] = sum as f32;
        vrow[x] = (1.0 / var) as f32;
    }
}

/// Offsets (row, column) from the centre of desispec's `LinearSelectionElement(11, 11, angle)`
/// for angles 0, 20, 45, 70, 110, 135, 160 degrees, as that code rasterises them (printed from
/// desispec 0.70.0; the rasterisation truncates, so 20° and 160° are not mirror images).
const LINE_ELEMENTS: [[(isize, isize); 11]; 7] = [
    [
        (0, -5),
        (0, -4),
        (0, -3),
        (0, -2),
        (0, -1),
        (0, 0),
        (0, 1),
        (0, 2),
        (0, 3),
        (0, 4),
        (0, 5),
    ],
    [
        (-2, -5),
        (-2, -4),
        (-2, -3),
        (-1, -2),
        (-1, -1),
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 3),
        (1, 4),
        (1, 5),
    ],
    [
        (-5, -5),
        (-4, -4),
        (-3, -3),
        (-2, -2),
        (-1, -1),
        (0, 0),
        (1, 1),
        (2, 2),
        (3, 3),
        (4, 4),
        (5, 5),
    ],
    [
        (-5, -2),
        (-4, -2),
        (-3, -2),
        (-2, -1),
        (-1, -1),
        (0, 0),
        (1, 0),
        (2, 0),
        (3, 1),
        (4, 1),
        (5, 1),
    ],
    [
        (-5, 2),
        (-4, 2),
        (-3, 2),
        (-2, 1),
        (-1, 1),
        (0, 0),
        (1, 0),
        (2, 0),
        (3, -1),
        (4, -1),
        (5, -1),
    ],
    [
        (-5, 5),
        (-4, 4),
        (-3, 3),
        (-2, 2),
        (-1, 1),
        (0, 0),
        (1, -1),
        (2, -2),
        (3, -3),
        (4, -4),
        (5, -5),
    ],
    [
        (-2, 3),
        (-2, 4),
        (-2, 5),
        (-1, 1),
        (-1, 2),
        (0, -2),
        (0, -1),
        (0, 0),
        (1, -5),
        (1, -4),
        (1, -3),
    ],
];

/// A boolean image as rows of 64-bit words, with one padding word on each side of a row so
/// that shifted reads by up to ±63 columns need no bounds checks.
struct BitImage {
    nx: usize,
    /// words per row including the two padding words
    stride: usize,
    words: Vec<u64>,
}

impl BitImage {
    fn new(ny: usize, nx: usize) -> Self {
        let stride = nx.div_ceil(64) + 2;
        BitImage {
            nx,
            stride,
            words: vec![0; ny * stride],
        }
    }

    fn set(&mut self, y: usize, x: usize) {
        self.words[y * self.stride + 1 + x / 64] |= 1u64 << (x % 64);
    }

    fn from_array(mask: &Array2<bool>) -> Self {
        let (ny, nx) = mask.dim();
        let mut b = BitImage::new(ny, nx);
        for ((y, x), &m) in mask.indexed_iter() {
            if m {
                b.set(y, x);
            }
        }
        b
    }

    fn to_array(&self) -> Array2<bool> {
        let ny = self.words.len() / self.stride;
        Array2::from_shape_fn((ny, self.nx), |(y, x)| {
            self.words[y * self.stride + 1 + x / 64] >> (x % 64) & 1 == 1
        })
    }

    fn row(&self, y: usize) -> &[u64] {
        &self.words[y * self.stride..(y + 1) * self.stride]
    }

    /// Sets every bit outside the image columns (padding words and the tail of the last
    /// word) to `fill`.
    fn fill_outside(&mut self, fill: bool) {
        let (nx, stride) = (self.nx, self.stride);
        let v = if fill { u64::MAX } else { 0 };
        let tail_bits = nx % 64;
        for row in self.words.chunks_mut(stride) {
            row[0] = v;
            row[stride - 1] = v;
            if tail_bits != 0 {
                let last = &mut row[stride - 2];
                let inside = (1u64 << tail_bits) - 1;
                *last = (*last & inside) | (v & !inside);
            }
        }
    }
}

/// Word `w` (0-based, image columns 64w..64w+63) of the row shifted so that bit x holds the
/// row's bit x + k.
#[inline]
fn shifted(row: &[u64], w: usize, k: isize) -> u64 {
    let start = ((w as isize + 1) * 64 + k) as usize;
    let (q, b) = (start / 64, start % 64);
    if b == 0 {
        row[q]
    } else {
        (row[q] >> b) | (row[q + 1] << (64 - b))
    }
}

/// desispec `RepairMask(11, 11).repair`: the OR over the seven line elements of the binary
/// closing (scipy `binary_dilation` then `binary_erosion` with `border_value=True`).
pub fn repair_mask(mask: &Array2<bool>) -> Array2<bool> {
    close_lines(&BitImage::from_array(mask)).to_array()
}

/// [`repair_mask`] on bits.
fn close_lines(src: &BitImage) -> BitImage {
    let nx = src.nx;
    let ny = src.words.len() / src.stride;
    let nw = nx.div_ceil(64);
    let stride = src.stride;
    let mut result = BitImage::new(ny, nx);
    for se in &LINE_ELEMENTS {
        // dilation: dil[y, x] = OR_d src[y − dy, x − dx]
        let mut dil = BitImage::new(ny, nx);
        dil.words
            .par_chunks_mut(stride)
            .enumerate()
            .for_each(|(y, out)| {
                for &(dy, dx) in se {
                    let sy = y as isize - dy;
                    if sy < 0 || sy >= ny as isize {
                        continue;
                    }
                    let r = src.row(sy as usize);
                    for w in 0..nw {
                        out[w + 1] |= shifted(r, w, -dx);
                    }
                }
            });
        // erosion: ero[y, x] = AND_d dil[y + dy, x + dx], outside the image counts as set
        dil.fill_outside(true);
        let dil = &dil;
        result
            .words
            .par_chunks_mut(stride)
            .enumerate()
            .for_each(|(y, out)| {
                let mut acc = vec![u64::MAX; nw];
                for &(dy, dx) in se {
                    let sy = y as isize + dy;
                    if sy < 0 || sy >= ny as isize {
                        continue;
                    }
                    let r = dil.row(sy as usize);
                    for (w, a) in acc.iter_mut().enumerate() {
                        *a &= shifted(r, w, dx);
                    }
                }
                for (w, a) in acc.iter().enumerate() {
                    out[w + 1] |= a;
                }
            });
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(ny: usize, nx: usize, level: f32, rn: f32) -> (Array2<f32>, Array2<f32>, Array2<u32>) {
        let pix = Array2::from_elem((ny, nx), level);
        let ivar = Array2::from_elem((ny, nx), 1.0 / (level.max(0.0) + rn * rn));
        (pix, ivar, Array2::zeros((ny, nx)))
    }

    #[test]
    fn sharp_spike_and_track_are_rejected_psf_spot_and_bad_column_are_not() {
        let g = psf_gradients('r', None).unwrap();
        let p = CosmicParams::default();
        // spike (desispec test_cosmics: a sharp spike is rejected)
        let (mut pix, ivar, mask) = flat(40, 40, 10.0, 3.0);
        pix[[20, 20]] += 500.0;
        let r = reject_cosmic_rays(pix.view(), ivar.view(), mask.view(), g, &p);
        assert!(r[[20, 20]] && r[[19, 19]] && r[[21, 21]]);
        assert!(!r[[5, 5]]);
        // a PSF-like spot (Gaussian σ = 1 px, 2000 e) is not
        let (mut pix, _, mask) = flat(40, 40, 10.0, 3.0);
        for y in 0..40 {
            for x in 0..40 {
                let r2 = ((y as f32 - 20.0).powi(2) + (x as f32 - 20.3).powi(2)) / 2.0;
                pix[[y, x]] += 2000.0 / (2.0 * std::f32::consts::PI) * (-r2).exp();
            }
        }
        let ivar = pix.mapv(|v| 1.0 / (v + 9.0));
        let r = reject_cosmic_rays(pix.view(), ivar.view(), mask.view(), g, &p);
        assert!(r.iter().all(|&b| !b), "PSF spot flagged");
        // a bright one-pixel column is sharp on 3 of 4 axes, so it is a cosmic ray for this
        // algorithm (muon tracks along a column); desispec's test uses a masked bad column,
        // which must not trigger
        let (mut pix, ivar, mask) = flat(40, 40, 10.0, 3.0);
        for y in 0..40 {
            pix[[y, 17]] += 300.0;
        }
        let r = reject_cosmic_rays(pix.view(), ivar.view(), mask.view(), g, &p);
        let n = r.iter().filter(|&&b| b).count();
        assert!(n > 0);
        let mut mask = mask;
        for y in 0..40 {
            mask[[y, 17]] = 1;
        }
        let r = reject_cosmic_rays(pix.view(), ivar.view(), mask.view(), g, &p);
        assert!(r.iter().all(|&b| !b), "masked bad column flagged");
        assert!(psf_gradients('x', None).is_none());
    }

    #[test]
    fn bright_sharp_trace_is_not_a_cosmic_ray_but_a_split_track_is() {
        // A flat-lamp trace of a PSF sharper than the one behind desispec's z gradients (σ 1.0
        // px against ≈ 1.6 px): 26 000 e at its peak, as on spx-sim mini z flats. Both the
        // pixel test and the binned search must leave it alone.
        let g = psf_gradients('z', None).unwrap();
        let p = CosmicParams::default();
        let (ny, nx) = (60, 40);
        let mut pix = Array2::from_elem((ny, nx), 10.0f32);
        for x0 in [12.3f32, 27.0] {
            for y in 0..ny {
                for x in 0..nx {
                    let d = x as f32 - x0;
                    pix[[y, x]] +=
                        65_000.0 / (2.0 * std::f32::consts::PI).sqrt() * (-0.5 * d * d).exp();
                }
            }
        }
        let ivar = pix.mapv(|v| 1.0 / (v + 9.0));
        let mask = Array2::zeros((ny, nx));
        let r = reject_cosmic_rays(pix.view(), ivar.view(), mask.view(), g, &p);
        assert_eq!(r.iter().filter(|&&b| b).count(), 0, "trace flagged");
        // a track whose charge is split evenly between two rows (300 e each): as wide as the
        // PSF core across, so the pixel test misses it; the binned search finds it (its test
        // against the 0.9 px template needs ≳ 150 e per pixel on this 10 e floor)
        let (mut pix, ivar, mask) = flat(40, 40, 10.0, 3.0);
        for x in 10..30 {
            pix[[20, x]] += 300.0;
            pix[[21, x]] += 300.0;
        }
        let r = reject_cosmic_rays(pix.view(), ivar.view(), mask.view(), g, &p);
        assert!(
            (12..28).all(|x| r[[20, x]] && r[[21, x]]),
            "split track missed"
        );
    }

    #[test]
    fn closing_fills_gaps_along_a_track_and_keeps_isolated_pixels() {
        let mut m = Array2::from_elem((30, 70), false);
        // two pieces of a horizontal track with a 4-pixel gap
        for x in 10..20 {
            m[[15, x]] = true;
        }
        for x in 24..34 {
            m[[15, x]] = true;
        }
        m[[3, 65]] = true; // near the edge
        let r = repair_mask(&m);
        for x in 10..34 {
            assert!(r[[15, x]], "gap at {x}");
        }
        assert!(r[[3, 65]]);
        assert!(!r[[15, 8]] && !r[[14, 22]] && !r[[15, 36]]);
        // closing is extensive
        assert!(m.iter().zip(r.iter()).all(|(&a, &b)| !a || b));
        // near the border the erosion sees set pixels outside (scipy border_value=True), so
        // lines run to the edge; desispec 0.70 (scipy fallback) gives exactly, for this mask,
        // 39 pixels with these columns in rows 0..8:
        let want: [&[usize]; 8] = [
            &[62, 68],
            &[63, 67],
            &[64, 66],
            &[65, 66, 67, 68, 69],
            &[66],
            &[67],
            &[68],
            &[69],
        ];
        for (y, cols) in want.iter().enumerate() {
            let got: Vec<usize> = (0..70).filter(|&x| r[[y, x]]).collect();
            assert_eq!(&got, cols, "row {y}");
        }
        assert_eq!(r.iter().filter(|&&b| b).count(), 39);
    }
}
