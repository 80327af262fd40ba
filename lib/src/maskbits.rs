//! DESI mask bits (desispec maskbits.py; reference/calibration.md §1.6 and §5.6).

/// Per-spectral-pixel bits (`specmask`) of frame, sky, fiberflat, cframe, spectra MASK HDUs.
pub mod specmask {
    pub const SOMEBADPIX: u32 = 1 << 0;
    pub const ALLBADPIX: u32 = 1 << 1;
    pub const COSMIC: u32 = 1 << 2;
    pub const LOWFLAT: u32 = 1 << 3;
    pub const BADFIBERFLAT: u32 = 1 << 4;
    pub const BRIGHTSKY: u32 = 1 << 5;
    pub const BADSKY: u32 = 1 << 6;
    pub const BAD2DFIT: u32 = 1 << 7;
    pub const NODATA: u32 = 1 << 8;
    pub const BADFIBER: u32 = 1 << 9;
    pub const BADCOLUMN: u32 = 1 << 10;
    pub const SATURATED: u32 = 1 << 11;
    pub const CONTAMINATED: u32 = 1 << 12;
}

/// Per-fiber bits (`FIBERSTATUS` column of the FIBERMAP).
pub mod fibermask {
    pub const UNASSIGNED: i32 = 1 << 0;
    pub const STUCKPOSITIONER: i32 = 1 << 1;
    pub const BROKENFIBER: i32 = 1 << 2;
    pub const RESTRICTED: i32 = 1 << 3;
    pub const MISSINGPOSITION: i32 = 1 << 8;
    pub const BADPOSITION: i32 = 1 << 9;
    pub const POORPOSITION: i32 = 1 << 10;
    pub const LOWTRANSMISSION: i32 = 1 << 12;
    pub const NEARCHARGETRAP: i32 = 1 << 13;
    pub const VARIABLETHRU: i32 = 1 << 14;
    pub const LOWEFFTIME: i32 = 1 << 15;
    pub const BADFIBER: i32 = 1 << 16;
    pub const BADTRACE: i32 = 1 << 17;
    pub const BADFLAT: i32 = 1 << 18;
    pub const BADARC: i32 = 1 << 19;
    /// More than 10 % of the fiber's pixels are on bad columns.
    pub const MANYBADCOL: i32 = 1 << 20;
    pub const MANYREJECTED: i32 = 1 << 21;
    pub const BADAMPB: i32 = 1 << 22;
    pub const BADAMPR: i32 = 1 << 23;
    pub const BADAMPZ: i32 = 1 << 24;
    pub const BADPETALPOS: i32 = 1 << 25;
    pub const BADPETALSKY: i32 = 1 << 26;
    pub const BADPETALSTDSTAR: i32 = 1 << 27;
    pub const BADPETALFLUXCAL: i32 = 1 << 28;
    pub const BADPETALSNR: i32 = 1 << 29;
    pub const BADREADNOISE: i32 = 1 << 30;

    /// Bits fatal for sky, flux calibration and coadds, before the camera's BADAMP bit.
    pub const ALL_FATAL: i32 = BROKENFIBER
        | MISSINGPOSITION
        | BADPOSITION
        | BADFIBER
        | BADTRACE
        | BADARC
        | BADFLAT
        | MANYBADCOL
        | MANYREJECTED;
    /// Bits fatal for the fiber flat.
    pub const FLAT_FATAL: i32 =
        BROKENFIBER | BADFIBER | BADTRACE | BADARC | MANYBADCOL | MANYREJECTED;

    /// The BADAMP bit of a camera band ('b', 'r' or 'z'); 0 for anything else.
    pub fn badamp(band: char) -> i32 {
        match band.to_ascii_lowercase() {
            'b' => BADAMPB,
            'r' => BADAMPR,
            'z' => BADAMPZ,
            _ => 0,
        }
    }

    /// Fatal bits for sky/fluxcal/coadd in a camera of band `band`.
    pub fn fatal_for(band: char) -> i32 {
        ALL_FATAL | badamp(band)
    }
}

/// Per-CCD-pixel bits (`ccdmask`) of preproc MASK HDUs.
pub mod ccdmask {
    pub const BAD: i32 = 1 << 0;
    pub const HOT: i32 = 1 << 1;
    pub const DEAD: i32 = 1 << 2;
    pub const SATURATED: i32 = 1 << 3;
    pub const COSMIC: i32 = 1 << 4;
    pub const PIXFLATZERO: i32 = 1 << 5;
    pub const PIXFLATLOW: i32 = 1 << 6;
    pub const HIGHVAR: i32 = 1 << 7;
    pub const BADREADNOISE: i32 = 1 << 8;
    pub const BADAMP: i32 = 1 << 9;

    /// Pixels the extraction ignores (desispec `extractmaskval`); BADREADNOISE is not in it.
    pub const EXTRACT_IGNORE: i32 =
        BAD | HOT | DEAD | SATURATED | COSMIC | PIXFLATZERO | PIXFLATLOW | HIGHVAR | BADAMP;
}
