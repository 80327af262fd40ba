//! Combining the candidates of all templates of one target (redrock `zfind.py`,
//! reference/redshift.md §2.7): coverage flags, sort by (bad fit, χ²), at most `nminima` per
//! SPECTYPE, DELTACHI2 and SMALL_DELTA_CHI2.

// Index loops mirror the formulas (and redrock's code) over several parallel arrays.
#![allow(clippy::needless_range_loop)]

use super::fitz::{get_dv, Candidate};
use super::zwarn;

/// redrock `min_deltachi2`.
pub const MIN_DELTACHI2: f64 = 9.0;

/// A candidate with its rank-dependent DELTACHI2.
#[derive(Debug, Clone)]
pub struct Ranked {
    pub cand: Candidate,
    pub deltachi2: f64,
}

fn badfit(c: &Candidate) -> bool {
    c.zwarn & zwarn::BADFIT != 0
}

fn sort_fits(v: &mut [Candidate]) {
    // lexsort((chi2, badfit)): stable, bad fits last, then by χ².
    v.sort_by(|a, b| badfit(a).cmp(&badfit(b)).then(a.chi2.total_cmp(&b.chi2)));
}

/// Ranks the candidates of all templates (in template order) of one target.
pub fn rank(mut all: Vec<Candidate>, nminima: usize) -> Vec<Ranked> {
    for c in all.iter_mut() {
        if c.npixels == 0 {
            c.zwarn |= zwarn::NODATA;
        }
        if c.npixels < 10 * c.ncoeff {
            c.zwarn |= zwarn::LITTLE_COVERAGE;
        }
    }
    let l = all.len();
    sort_fits(&mut all);
    let mut types: Vec<String> = all.iter().map(|c| c.spectype.clone()).collect();
    types.sort();
    types.dedup();
    let mut keep = Vec::new();
    for t in &types {
        keep.extend(
            all.iter()
                .enumerate()
                .filter(|(_, c)| &c.spectype == t)
                .map(|(i, _)| i)
                .take(nminima),
        );
    }
    if keep.len() < l {
        all = keep.into_iter().map(|i| all[i].clone()).collect();
        sort_fits(&mut all);
    }
    let chi2: Vec<f64> = all.iter().map(|c| c.chi2).collect();
    let z: Vec<f64> = all.iter().map(|c| c.z).collect();
    let zw: Vec<i64> = all.iter().map(|c| c.zwarn).collect();
    let lim: Vec<f64> = all.iter().map(|c| c.max_velo_diff).collect();
    let (dchi2, flag) = calc_deltachi2(&chi2, &z, &zw, &lim);
    all.into_iter()
        .zip(dchi2.into_iter().zip(flag))
        .map(|(mut c, (d, f))| {
            if f {
                c.zwarn |= zwarn::SMALL_DELTA_CHI2;
            }
            Ranked {
                cand: c,
                deltachi2: d,
            }
        })
        .collect()
}

/// redrock `calc_deltachi2`: χ² gap to the next good candidate farther than the pair's
/// velocity limit, and whether another good candidate is within Δχ² < 9.
pub fn calc_deltachi2(
    chi2: &[f64],
    z: &[f64],
    zwarn: &[i64],
    dvlimit: &[f64],
) -> (Vec<f64>, Vec<bool>) {
    let n = chi2.len();
    let ok: Vec<bool> = zwarn.iter().map(|w| w & zwarn::BADFIT == 0).collect();
    let mut d = vec![0.0; n];
    for i in 0..n.saturating_sub(1) {
        let mut best: Option<f64> = None;
        for j in i + 1..n {
            let dv = get_dv(z[j], z[i]).abs();
            if dv > dvlimit[i].min(dvlimit[j]) && ok[j] {
                let v = chi2[j] - chi2[i];
                best = Some(best.map_or(v, |b: f64| b.min(v)));
            }
        }
        if let Some(b) = best {
            d[i] = b;
        }
    }
    let mut flag = vec![false; n];
    for i in 0..n {
        flag[i] = (0..n).any(|j| {
            j != i
                && ok[j]
                && (chi2[j] - chi2[i]).abs() < MIN_DELTACHI2
                && get_dv(z[j], z[i]).abs() >= dvlimit[i].min(dvlimit[j])
        });
    }
    (d, flag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltachi2_vectors_from_redrock_tests() {
        // redrock test_zfind.test_calc_deltachi2
        let lim = [1000.0; 4];
        let (d, f) = calc_deltachi2(
            &[1.0, 2.0, 20.0, 40.0],
            &[3.0, 3.1, 3.2, 3.3],
            &[0; 4],
            &lim,
        );
        assert_eq!(d, vec![1.0, 18.0, 20.0, 0.0]);
        assert_eq!(f, vec![true, true, false, false]);
        let (d, f) = calc_deltachi2(
            &[1.0, 2.0, 20.0, 40.0],
            &[3.0, 3.0001, 4.0, 4.0001],
            &[0; 4],
            &lim,
        );
        assert_eq!(d, vec![19.0, 18.0, 0.0, 0.0]);
        assert_eq!(f, vec![false; 4]);
        let (d, f) = calc_deltachi2(
            &[1.0, 2.0, 20.0, 40.0],
            &[3.0, 3.1, 3.2, 3.3],
            &[0, 32, 0, 0],
            &lim,
        );
        assert_eq!(d, vec![19.0, 18.0, 20.0, 0.0]);
        assert_eq!(f, vec![false, true, false, false]);
    }
}
