//! Inverse-variance-weighted boxcar smoothing for display (the DESI paper's spectrum
//! figures): each pixel becomes Σ w f / Σ w over a window of `n` pixels, so masked pixels
//! (ivar 0) do not pull the curve and a window with no data stays a gap.

/// Smooths `values[npix]` with weights `ivar[npix]` over a centred window of `n` pixels
/// (`n ≤ 1`: no smoothing, pixels with ivar 0 become gaps). Returns `None` where the window
/// holds no weight. Running sums make it O(npix) whatever `n`.
pub fn ivar_boxcar(values: &[f64], ivar: &[f64], n: usize) -> Vec<Option<f64>> {
    let npix = values.len().min(ivar.len());
    let half = n.max(1) / 2;
    let mut sw = vec![0.0; npix + 1];
    let mut swf = vec![0.0; npix + 1];
    for i in 0..npix {
        let w = if ivar[i] > 0.0 && values[i].is_finite() {
            ivar[i]
        } else {
            0.0
        };
        sw[i + 1] = sw[i] + w;
        swf[i + 1] = swf[i] + w * if w > 0.0 { values[i] } else { 0.0 };
    }
    (0..npix)
        .map(|i| {
            let lo = i.saturating_sub(half);
            let hi = (i + half + 1).min(npix);
            let w = sw[hi] - sw[lo];
            // Cumulative sums of positive weights: a window without data differs by rounding
            // at most, far below any real ivar.
            (w > 1e-12 * sw[npix]).then(|| (swf[hi] - swf[lo]) / w)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxcar_weights_and_gaps() {
        let v = [1.0, 2.0, 100.0, 4.0, 5.0];
        let w = [1.0, 1.0, 0.0, 1.0, 3.0];
        let s = ivar_boxcar(&v, &w, 3);
        // Pixel 2 has no weight itself: its window mean is (2·1 + 4·1)/2 = 3, the 100 ignored.
        assert!((s[2].unwrap() - 3.0).abs() < 1e-12);
        // Pixel 4: (4·1 + 5·3)/4 = 4.75.
        assert!((s[4].unwrap() - 4.75).abs() < 1e-12);
        let s1 = ivar_boxcar(&v, &w, 1);
        assert_eq!(s1[2], None);
        assert_eq!(s1[0], Some(1.0));
    }
}
