//! Small numerics helpers with numpy's and desispec's exact conventions (median, argmax,
//! interp, allclose, combine_ivar), so that decisions made on them agree with desispec's.

/// numpy `median`: the middle value, or the mean of the two middle values for an even count;
/// NaN for an empty slice or when any value is NaN (numpy propagates NaN). Reorders `v`.
pub fn median_in_place(v: &mut [f64]) -> f64 {
    let n = v.len();
    if n == 0 || v.iter().any(|x| x.is_nan()) {
        return f64::NAN;
    }
    let cmp = |a: &f64, b: &f64| a.total_cmp(b);
    let (_, &mut hi, _) = v.select_nth_unstable_by(n / 2, cmp);
    if n % 2 == 1 {
        return hi;
    }
    // the largest of the lower half is the other middle value
    let lo = v[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo + hi) / 2.0
}

/// numpy `median` of an iterator of values (see [`median_in_place`]).
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    median_in_place(&mut v)
}

/// Index of the first maximum (numpy `argmax`; NaN counts as the maximum, as in numpy).
pub fn argmax(v: &[f64]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, &x) in v.iter().enumerate() {
        if x.is_nan() {
            return Some(i);
        }
        match best {
            Some(b) if v[b] >= x => {}
            _ => best = Some(i),
        }
    }
    best
}

/// numpy `interp` (constant extrapolation) for increasing `x`.
pub fn interp(t: f64, x: &[f64], y: &[f64]) -> f64 {
    let n = x.len();
    if n == 0 {
        return 0.0;
    }
    if t <= x[0] {
        return y[0];
    }
    if t >= x[n - 1] {
        return y[n - 1];
    }
    let i = x.partition_point(|&v| v <= t); // x[i-1] <= t < x[i]
    let (x0, x1, y0, y1) = (x[i - 1], x[i], y[i - 1], y[i]);
    y0 + (t - x0) * (y1 - y0) / (x1 - x0)
}

/// desispec `combine_ivar`: `1/(1/a + 1/b)` where both are positive, else 0.
pub fn combine_ivar(a: f64, b: f64) -> f64 {
    if a > 0.0 && b > 0.0 {
        1.0 / (1.0 / a + 1.0 / b)
    } else {
        0.0
    }
}

/// numpy `allclose` with its default tolerances (rtol 1e-5, atol 1e-8).
pub fn allclose(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(&x, &y)| (x - y).abs() <= 1e-8 + 1e-5 * y.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_matches_numpy() {
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median([]).is_nan());
        assert!(median([1.0, f64::NAN, 0.0]).is_nan());
        assert_eq!(argmax(&[1.0, 5.0, 5.0, 2.0]), Some(1));
        assert_eq!(argmax(&[]), None);
    }

    #[test]
    fn interp_allclose_combine_ivar() {
        let (x, y) = ([1.0, 2.0, 4.0], [10.0, 20.0, 0.0]);
        assert_eq!(interp(0.0, &x, &y), 10.0);
        assert_eq!(interp(1.5, &x, &y), 15.0);
        assert_eq!(interp(3.0, &x, &y), 10.0);
        assert_eq!(interp(9.0, &x, &y), 0.0);
        assert!(allclose(&[1.0, 1e4], &[1.0 + 1e-9, 1e4 + 0.05]));
        assert!(!allclose(&[1.0], &[1.001]) && !allclose(&[1.0], &[]));
        assert_eq!(combine_ivar(4.0, 4.0), 2.0);
        assert_eq!(combine_ivar(0.0, 4.0), 0.0);
    }
}
