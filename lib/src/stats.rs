//! Small robust statistics with numpy's exact conventions, so that rejection decisions made
//! on them agree with desispec's.

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
}
