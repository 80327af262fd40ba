//! Per-fiber scores of a frame, as desispec 0.70's `specscore.compute_frame_scores`: sums and
//! medians over a fixed top-hat wavelength range per camera arm (b 4000–5800, r 5800–7600,
//! z 7600–9800 Å, half open). desispec's extraction calls it with `suffix="RAW"` and its
//! default `flux_per_angstrom=False`, so a frame's SCORES holds `SUM_RAW_COUNT_R`,
//! `MEDIAN_RAW_COUNT_R` and `MEDIAN_RAW_SNR_R` even though FLUX is per Angstrom.

use ndarray::ArrayView2;

use crate::io::fits::{Column, ColumnData};
use crate::io::table::Table;
use crate::stats::median;

/// desispec's `tophat_wave`, Angstrom.
const TOPHAT: [(char, f64, f64); 3] = [
    ('b', 4000.0, 5800.0),
    ('r', 5800.0, 7600.0),
    ('z', 7600.0, 9800.0),
];

/// `numpy.gradient` of a 1-d array (one-sided at the ends).
fn gradient(x: &[f64]) -> Vec<f64> {
    let n = x.len();
    (0..n)
        .map(|i| match (i, n) {
            (_, 0 | 1) => 0.0,
            (0, _) => x[1] - x[0],
            (i, n) if i == n - 1 => x[n - 1] - x[n - 2],
            (i, _) => 0.5 * (x[i + 1] - x[i - 1]),
        })
        .collect()
}

/// Scores of `flux`/`ivar` (`[nspec, nwave]`) on `wave` (Angstrom) with keys
/// `{SUM,MEDIAN}_{suffix}_COUNT_{BAND}` and `MEDIAN_{suffix}_SNR_{BAND}` when
/// `flux_per_angstrom` is false, `{INTEG,MEDIAN}_{suffix}_FLUX_{BAND}` and the SNR when true.
/// The arm is the one whose top hat holds the mean wavelength (desispec's auto-detection).
/// Returns `None` when the grid misses the arm's top hat (desispec raises; spx writes no
/// SCORES, e.g. for the `mini` preset's short ranges).
pub fn frame_scores(
    wave: &[f64],
    flux: ArrayView2<f64>,
    ivar: ArrayView2<f64>,
    suffix: &str,
    flux_per_angstrom: bool,
) -> Option<Table> {
    if wave.is_empty() {
        return None;
    }
    let mean = wave.iter().sum::<f64>() / wave.len() as f64;
    let (band, lo, hi) = if mean <= TOPHAT[0].2 {
        TOPHAT[0]
    } else if mean >= TOPHAT[2].1 {
        TOPHAT[2]
    } else {
        TOPHAT[1]
    };
    let idx: Vec<usize> = (0..wave.len())
        .filter(|&i| wave[i] >= lo && wave[i] < hi)
        .collect();
    if idx.is_empty() {
        return None;
    }
    let dw = gradient(wave);
    let b = band.to_ascii_uppercase();
    let mut first = Vec::new();
    let mut med = Vec::new();
    let mut snr = Vec::new();
    for (f, iv) in flux.rows().into_iter().zip(ivar.rows()) {
        if flux_per_angstrom {
            first.push(idx.iter().map(|&i| f[i] * dw[i]).sum::<f64>());
            med.push(median(idx.iter().map(|&i| f[i])));
        } else {
            first.push(idx.iter().map(|&i| f[i]).sum::<f64>());
            med.push(median(idx.iter().map(|&i| f[i] / dw[i])));
        }
        snr.push(median(
            idx.iter()
                .map(|&i| iv[i].max(0.0).sqrt() * f[i] / dw[i].sqrt()),
        ));
    }
    let (k1, k2) = if flux_per_angstrom {
        (
            format!("INTEG_{suffix}_FLUX_{b}"),
            format!("MEDIAN_{suffix}_FLUX_{b}"),
        )
    } else {
        (
            format!("SUM_{suffix}_COUNT_{b}"),
            format!("MEDIAN_{suffix}_COUNT_{b}"),
        )
    };
    // three columns of nspec rows each: Table::new cannot refuse them
    Table::new(vec![
        Column::new(&k1, ColumnData::F64(first)),
        Column::new(&k2, ColumnData::F64(med)),
        Column::new(&format!("MEDIAN_{suffix}_SNR_{b}"), ColumnData::F64(snr)),
    ])
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_scores_of_an_r_frame() {
        // r grid 5760..7620 step 0.8: the top hat keeps 5800 ≤ λ < 7600, i.e. 2250 bins
        let wave: Vec<f64> = (0..2326).map(|k| 5760.0 + 0.8 * k as f64).collect();
        let n = wave.len();
        let flux =
            ndarray::Array2::from_shape_fn((2, n), |(f, i)| (f + 1) as f64 * (1 + i % 2) as f64);
        let ivar = ndarray::Array2::from_elem((2, n), 4.0);
        let t = frame_scores(&wave, flux.view(), ivar.view(), "RAW", false).unwrap();
        let sum = t.f64s("SUM_RAW_COUNT_R").unwrap();
        // 1125 bins of 1 and 1125 of 2 (times the fiber's factor)
        assert!((sum[0] - 3375.0).abs() < 1e-9 && (sum[1] - 6750.0).abs() < 1e-9);
        // median of {1,2}/0.8 with equal counts: (1.25 + 2.5)/2
        let med = t.f64s("MEDIAN_RAW_COUNT_R").unwrap();
        assert!((med[0] - 1.875).abs() < 1e-12);
        let snr = t.f64s("MEDIAN_RAW_SNR_R").unwrap();
        assert!((snr[1] - 2.0 * 3.0 / 0.8f64.sqrt()).abs() < 1e-12);
        // a grid beyond its arm's top hat (z: 7600–9800) gives no scores
        let short: Vec<f64> = (0..10).map(|k| 9800.0 + k as f64).collect();
        let f = ndarray::Array2::zeros((1, 10));
        assert!(frame_scores(&short, f.view(), f.view(), "RAW", false).is_none());
    }
}
