//! ZWARN bits (redrock `zwarning.py`, reference/redshift.md §2.7).

pub const SKY: i64 = 1 << 0;
pub const LITTLE_COVERAGE: i64 = 1 << 1;
pub const SMALL_DELTA_CHI2: i64 = 1 << 2;
pub const NEGATIVE_MODEL: i64 = 1 << 3;
pub const MANY_OUTLIERS: i64 = 1 << 4;
pub const Z_FITLIMIT: i64 = 1 << 5;
pub const NEGATIVE_EMISSION: i64 = 1 << 6;
pub const UNPLUGGED: i64 = 1 << 7;
pub const BAD_TARGET: i64 = 1 << 8;
pub const NODATA: i64 = 1 << 9;
pub const BAD_MINFIT: i64 = 1 << 10;
pub const POORDATA: i64 = 1 << 11;

/// Bits that make a candidate a bad fit (sorted last, excluded from DELTACHI2).
pub const BADFIT: i64 =
    NEGATIVE_MODEL | MANY_OUTLIERS | Z_FITLIMIT | NEGATIVE_EMISSION | BAD_MINFIT;

// The DESI fibermask bits rrdesi reads (FIBERSTATUS) are `crate::maskbits::fibermask`.
