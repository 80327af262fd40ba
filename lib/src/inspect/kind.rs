//! Which DESI/spx file kind a FITS file is, decided from its HDU names, shapes, table columns
//! and header keywords (reference/calibration.md §5, extraction.md §1.1 and §6, redshift.md
//! §1.1), never from the file name: files get renamed, and a name says nothing about whether
//! the content follows the data model.

use serde::Serialize;

use super::structure::HduSummary;

/// The file kinds spx-inspect knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// Raw exposure: one CCD image HDU per camera (`B0`…`Z9`).
    Raw,
    /// Preprocessed CCD image: IMAGE, IVAR (MASK, READNOISE).
    Preproc,
    /// PSF (XTRACE/YTRACE + PSF table, or a PSFTYPE keyword).
    Psf,
    /// Extracted frame, electrons/Angstrom.
    Frame,
    /// Flat-fielded frame (FIBERFLT set, no sky).
    Fframe,
    /// Flat-fielded and sky-subtracted frame.
    Sframe,
    /// Flux-calibrated frame.
    Cframe,
    Fiberflat,
    Sky,
    Fluxcalib,
    Stdstars,
    /// Per-exposure spectra grouped by tile or healpix (`B_FLUX`, … one row per exposure).
    Spectra,
    /// Coadded spectra (one row per target; EXP_FIBERMAP).
    Coadd,
    /// Redshift catalog (REDSHIFTS + FIBERMAP).
    Redrock,
    /// redrock χ²(z) scans (`ZCHI2_<TYPE>` images, as in shared/data/redshift).
    Zscan,
    /// redrock template (BASIS_VECTORS).
    Templates,
    /// A bare FIBERMAP table.
    Fibermap,
    /// spx-sim's truth file (`WAVE_<cam>`, `PHOT_<cam>`, … HDUs; io::simtruth).
    Simtruth,
    /// A readable FITS file of no known kind.
    Unknown,
}

impl FileKind {
    /// The lower-case name printed by spx-inspect (`unknown` prints as "unknown FITS").
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Raw => "raw",
            FileKind::Preproc => "preproc",
            FileKind::Psf => "psf",
            FileKind::Frame => "frame",
            FileKind::Fframe => "fframe",
            FileKind::Sframe => "sframe",
            FileKind::Cframe => "cframe",
            FileKind::Fiberflat => "fiberflat",
            FileKind::Sky => "sky",
            FileKind::Fluxcalib => "fluxcalib",
            FileKind::Stdstars => "stdstars",
            FileKind::Spectra => "spectra",
            FileKind::Coadd => "coadd",
            FileKind::Redrock => "redrock",
            FileKind::Zscan => "zscan",
            FileKind::Templates => "templates",
            FileKind::Fibermap => "fibermap",
            FileKind::Simtruth => "simtruth",
            FileKind::Unknown => "unknown",
        }
    }

    /// Whether the kind is one of the frame flavours (frame, fframe, sframe, cframe).
    pub fn is_frame(self) -> bool {
        matches!(
            self,
            FileKind::Frame | FileKind::Fframe | FileKind::Sframe | FileKind::Cframe
        )
    }

    /// HDUs the DESI data model has for this kind; those absent are reported as missing.
    pub fn expected_hdus(self) -> &'static [&'static str] {
        match self {
            FileKind::Preproc => &["IMAGE", "IVAR", "MASK"],
            FileKind::Psf => &["XTRACE", "YTRACE", "PSF"],
            FileKind::Frame | FileKind::Fframe | FileKind::Sframe | FileKind::Cframe => &[
                "FLUX",
                "IVAR",
                "MASK",
                "WAVELENGTH",
                "RESOLUTION",
                "FIBERMAP",
            ],
            FileKind::Fiberflat => &["FIBERFLAT", "IVAR", "MASK", "WAVELENGTH"],
            FileKind::Sky => &["SKY", "IVAR", "MASK", "WAVELENGTH"],
            FileKind::Fluxcalib => &["FLUXCALIB", "IVAR", "MASK", "WAVELENGTH"],
            FileKind::Stdstars => &["FLUX", "WAVELENGTH", "FIBERS", "METADATA"],
            FileKind::Spectra | FileKind::Coadd => &["FIBERMAP"],
            FileKind::Redrock => &["REDSHIFTS", "FIBERMAP"],
            FileKind::Zscan => &["TARGETID"],
            FileKind::Templates => &["BASIS_VECTORS"],
            FileKind::Fibermap => &["FIBERMAP"],
            FileKind::Raw | FileKind::Simtruth | FileKind::Unknown => &[],
        }
    }
}

/// Header values the classifier looks at (from any HDU; first occurrence wins).
#[derive(Debug, Default, Clone)]
pub struct KindKeys {
    pub psftype: Option<String>,
    pub rrtype: Option<String>,
    /// BUNIT of the FLUX HDU.
    pub flux_bunit: Option<String>,
    /// Any of FIBERFLT / IN_FFLAT (flat applied).
    pub flat_applied: bool,
    /// Any of IN_SKY / SKYSUB (sky subtracted).
    pub sky_subtracted: bool,
    /// Any of IN_CALIB / FLUXCALIB (calibrated).
    pub calibrated: bool,
}

/// Camera image HDU names of a raw exposure: a band letter and a spectrograph digit.
pub fn is_camera_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 2 && matches!(b[0].to_ascii_uppercase(), b'B' | b'R' | b'Z') && b[1].is_ascii_digit()
}

/// Band prefixes of a spectra/coadd file: `X` for every `X_FLUX` image (B, R, Z, BRZ…).
pub fn spectra_bands(hdus: &[HduSummary]) -> Vec<String> {
    hdus.iter()
        .filter(|h| h.is_image_nd(2))
        .filter_map(|h| h.name.strip_suffix("_FLUX"))
        .filter(|b| !b.is_empty())
        .map(str::to_string)
        .collect()
}

/// Decides the kind. The rules go from the most specific marker to the least: a HDU name that
/// only one kind uses decides alone; shared names (FLUX, IVAR, WAVELENGTH) need the
/// combination that the DESI writers produce.
pub fn classify(hdus: &[HduSummary], keys: &KindKeys) -> FileKind {
    let find = |n: &str| hdus.iter().find(|h| h.name.eq_ignore_ascii_case(n));
    let has = |n: &str| find(n).is_some();
    let image_nd = |n: &str, d: usize| find(n).is_some_and(|h| h.is_image_nd(d));
    let table = |n: &str| find(n).is_some_and(|h| h.is_table());

    if table("REDSHIFTS") && find("REDSHIFTS").is_some_and(|h| h.has_column("Z")) {
        return FileKind::Redrock;
    }
    if has("BASIS_VECTORS") || keys.rrtype.is_some() && image_nd("PRIMARY", 2) {
        return FileKind::Templates;
    }
    if keys.psftype.is_some() || (has("XTRACE") && has("YTRACE")) {
        return FileKind::Psf;
    }
    if !spectra_bands(hdus).is_empty() {
        let coadd =
            has("EXP_FIBERMAP") || find("FIBERMAP").is_some_and(|h| h.has_column("COADD_NUMEXP"));
        return if coadd {
            FileKind::Coadd
        } else {
            FileKind::Spectra
        };
    }
    if hdus
        .iter()
        .any(|h| h.name.starts_with("ZCHI2_") && h.is_image_nd(2))
    {
        return FileKind::Zscan;
    }
    if image_nd("FIBERFLAT", 2) {
        return FileKind::Fiberflat;
    }
    if image_nd("FLUXCALIB", 2) {
        return FileKind::Fluxcalib;
    }
    if image_nd("SKY", 2) && has("WAVELENGTH") {
        return FileKind::Sky;
    }
    if image_nd("FLUX", 2) && has("FIBERS") && has("WAVELENGTH") {
        return FileKind::Stdstars;
    }
    if image_nd("FLUX", 2) && has("IVAR") && has("WAVELENGTH") && image_nd("RESOLUTION", 3) {
        let bunit = keys
            .flux_bunit
            .as_deref()
            .unwrap_or("")
            .to_ascii_lowercase();
        return if keys.calibrated || bunit.contains("erg") {
            FileKind::Cframe
        } else if keys.sky_subtracted {
            FileKind::Sframe
        } else if keys.flat_applied {
            FileKind::Fframe
        } else {
            FileKind::Frame
        };
    }
    let truth_camera = |h: &HduSummary| {
        h.name
            .strip_prefix("PHOT_")
            .is_some_and(|c| is_camera_name(c) && has(&format!("WAVE_{c}")))
    };
    if hdus.iter().any(truth_camera) {
        return FileKind::Simtruth;
    }
    if image_nd("IMAGE", 2) && has("IVAR") {
        return FileKind::Preproc;
    }
    if hdus
        .iter()
        .any(|h| is_camera_name(&h.name) && h.is_image_nd(2))
    {
        return FileKind::Raw;
    }
    if table("FIBERMAP")
        && hdus
            .iter()
            .all(|h| h.is_table() || h.shape().is_some_and(|s| s.is_empty()))
    {
        return FileKind::Fibermap;
    }
    FileKind::Unknown
}
