//! Candidate minima of a χ²(z) scan and their refinement (redrock `fitz.py`,
//! reference/redshift.md §2.5–2.6).

// Index loops mirror the formulas (and redrock's code) over several parallel arrays.
#![allow(clippy::needless_range_loop)]

use super::scan::{build_block, fit_block, Prepared, HUGE_CHI2, LANES};
use super::target::{Grid, Target};
use super::zwarn;

/// Speed of light, km/s (scipy.constants).
pub const C_KMS: f64 = 299_792.458;
/// Velocity exclusion between candidates, km/s (redrock constants.py).
pub const MAX_VELO_DIFF: f64 = 1000.0;
/// Velocity exclusion for STAR templates, km/s.
pub const MAX_VELO_DIFF_STAR: f64 = 100.0;

/// One refined candidate of one template.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub z: f64,
    pub zerr: f64,
    pub zwarn: i64,
    /// Parabola minimum of χ² (+ [O II] penalty).
    pub chi2: f64,
    /// Coefficients at `z` (nbasis values).
    pub coeff: Vec<f64>,
    /// The fine grid and its χ² (15 points each).
    pub zz: Vec<f64>,
    pub zzchi2: Vec<f64>,
    pub spectype: String,
    pub subtype: String,
    pub ncoeff: usize,
    pub max_velo_diff: f64,
    pub npixels: usize,
}

/// Velocity difference c (z − zref)/(1 + zref), km/s.
pub fn get_dv(z: f64, zref: f64) -> f64 {
    C_KMS * (z - zref) / (1.0 + zref)
}

/// Indices of local minima (ends included, ties count), sorted by value (stable).
pub fn find_minima(x: &[f64]) -> Vec<usize> {
    let n = x.len();
    let mut ii: Vec<usize> = (0..n)
        .filter(|&i| (i == 0 || x[i] <= x[i - 1]) && (i + 1 == n || x[i] <= x[i + 1]))
        .collect();
    ii.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    ii
}

/// Parabola through three points (redrock `minfit`): (x0, xerr, y0, zwarn).
pub fn minfit(x: &[f64], y: &[f64]) -> (f64, f64, f64, i64) {
    if x.len() < 3 {
        return (-1.0, -1.0, -1.0, zwarn::BAD_MINFIT);
    }
    // Exact interpolating parabola in coordinates centred on the middle point (better
    // conditioned than numpy's polyfit on raw z; same parabola to rounding).
    let (h0, h1) = (x[1] - x[0], x[2] - x[1]);
    let s0 = (y[1] - y[0]) / h0;
    let s1 = (y[2] - y[1]) / h1;
    let a = (s1 - s0) / (x[2] - x[0]);
    if a == 0.0 || !a.is_finite() {
        return (-1.0, -1.0, -1.0, zwarn::BAD_MINFIT);
    }
    let b = s0 + a * h0;
    let u = -b / (2.0 * a);
    let x0 = x[1] + u;
    let y0 = y[1] - b * b / (4.0 * a);
    let mut zw = 0;
    let (xmin, xmax) = (x[0].min(x[2]), x[0].max(x[2]));
    if x0 <= xmin || xmax <= x0 {
        zw |= zwarn::BAD_MINFIT;
    }
    if y0 <= 0.0 {
        zw |= zwarn::BAD_MINFIT;
    }
    let xerr = if a > 0.0 {
        1.0 / a.sqrt()
    } else {
        zw |= zwarn::BAD_MINFIT;
        1.0 / (-a).sqrt()
    };
    (x0, xerr, y0, zw)
}

/// χ² (+ penalty) and coefficients of one target at arbitrary redshifts.
pub fn eval_at(
    p: &Prepared,
    grids: &[Grid],
    tg: &Target,
    zs: &[f64],
) -> Option<(Vec<f64>, Vec<Vec<f64>>)> {
    let mut chi2 = Vec::with_capacity(zs.len());
    let mut coeff = Vec::with_capacity(zs.len());
    for chunk in zs.chunks(LANES) {
        let blk = build_block(p, grids, chunk)?;
        let fit = fit_block(&blk, grids, tg);
        for l in 0..chunk.len() {
            let a = fit.coeff[l][..p.t.nbasis].to_vec();
            let pen = p.oii.as_ref().map(|o| o.penalty(&a)).unwrap_or(0.0);
            chi2.push(fit.chi2[l] + pen);
            coeff.push(a);
        }
    }
    Some((chi2, coeff))
}

/// numpy `linspace(a, b, n)`: `i·step + a`, last point exactly `b`.
pub fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    let step = (b - a) / (n - 1) as f64;
    let mut v: Vec<f64> = (0..n).map(|i| i as f64 * step + a).collect();
    if n > 1 {
        v[n - 1] = b;
    }
    v
}

/// Refines up to `nminima` minima of `zchi2` (χ² + penalty on the template's grid).
#[allow(clippy::too_many_arguments)]
pub fn fitz(
    zchi2: &[f64],
    p: &Prepared,
    grids: &[Grid],
    tg: &Target,
    nminima: usize,
    npoints: usize,
) -> Vec<Candidate> {
    let t = &p.t;
    let redshifts = &t.redshifts;
    let nz = redshifts.len();
    let max_velo_diff = if t.spectype == "STAR" {
        MAX_VELO_DIFF_STAR
    } else {
        MAX_VELO_DIFF
    };
    let mut results: Vec<Candidate> = Vec::new();
    for imin in find_minima(zchi2) {
        if results.len() == nminima {
            break;
        }
        if results
            .iter()
            .any(|r| get_dv(redshifts[imin], r.z).abs() < max_velo_diff)
        {
            continue;
        }
        let ilo = imin.saturating_sub(1);
        let ihi = (imin + 1).min(nz - 1);
        let zz = linspace(redshifts[ilo], redshifts[ihi], npoints);
        let (zzchi2, _) =
            eval_at(p, grids, tg, &zz).unwrap_or_else(|| (vec![HUGE_CHI2; zz.len()], vec![]));
        let amin = argmin(&zzchi2);
        let i = amin.clamp(1, zz.len() - 2);
        let (zmin, sigma, mut chi2min, mut zw) = minfit(&zz[i - 1..i + 2], &zzchi2[i - 1..i + 2]);
        let coeff = match eval_at(p, grids, tg, &[zmin]) {
            Some((_, c)) => c[0].clone(),
            None => {
                // redrock: the refit raises for z outside the template's coverage; beyond the
                // grid it flags Z_FITLIMIT | BAD_MINFIT with zero coefficients.
                zw |= zwarn::Z_FITLIMIT | zwarn::BAD_MINFIT;
                vec![0.0; t.nbasis]
            }
        };
        let mut zbest = zmin;
        if zbest < zz[0] || zbest > zz[zz.len() - 1] {
            zw |= zwarn::BAD_MINFIT;
            zbest = zz[amin];
            chi2min = zzchi2[amin];
        }
        if zbest < redshifts[1] || zbest > redshifts[nz - 2] {
            zw |= zwarn::Z_FITLIMIT;
        }
        if zmin < redshifts[1] || zmin > redshifts[nz - 2] {
            zw |= zwarn::Z_FITLIMIT;
        }
        if results
            .iter()
            .any(|r| get_dv(zbest, r.z).abs() < max_velo_diff)
        {
            continue;
        }
        results.push(Candidate {
            z: zbest,
            zerr: sigma,
            zwarn: zw,
            chi2: chi2min,
            coeff,
            zz,
            zzchi2,
            spectype: t.spectype.clone(),
            subtype: t.subtype.clone(),
            ncoeff: t.nbasis,
            max_velo_diff,
            npixels: tg.npixels,
        });
    }
    results.sort_by(|a, b| a.chi2.total_cmp(&b.chi2));
    results
}

fn argmin(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x < v[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minima_include_edges_and_ties() {
        // redrock docstring: find_minima([1,1,1,2,2,2]) -> [0,1,2,4,5] (as a set)
        let mut m = find_minima(&[1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
        m.sort();
        assert_eq!(m, vec![0, 1, 2, 4, 5]);
        assert_eq!(find_minima(&[3.0, 1.0, 2.0, 0.5, 4.0]), vec![3, 1]);
    }

    #[test]
    fn minfit_recovers_parabola() {
        let f = |x: f64| 7.0 + ((x - 1.2345) / 0.01).powi(2);
        let x = [1.23, 1.235, 1.24];
        let y = x.map(f);
        let (x0, xerr, y0, zw) = minfit(&x, &y);
        assert_eq!(zw, 0);
        assert!((x0 - 1.2345).abs() < 1e-12);
        assert!((xerr - 0.01).abs() < 1e-10);
        assert!((y0 - 7.0).abs() < 1e-8);
        // a maximum is flagged
        let (_, _, _, zw) = minfit(&x, &y.map(|v| -v));
        assert_ne!(zw & zwarn::BAD_MINFIT, 0);
    }

    #[test]
    fn linspace_like_numpy() {
        let v = linspace(0.1, 0.3, 3);
        assert_eq!(v[2], 0.3);
        assert!((v[1] - 0.2).abs() < 1e-16);
    }
}
