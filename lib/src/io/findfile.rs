//! DESI directory layout and file names (reference/calibration.md §5.1, desispec
//! `io/meta.py::findfile`), so that every binary and the pipeline name files one way.
//!
//! Paths of reduction products are relative to the production directory
//! (`$DESI_SPECTRO_REDUX/$SPECPROD`, the pipeline's `outdir`); raw exposures are relative to
//! the raw data directory (`$DESI_SPECTRO_DATA`, the pipeline's `rawdir`). spx writes
//! uncompressed FITS (DESI's `DESI_COMPRESSION=NONE` naming: `.fits`); [`existing`] also finds
//! DESI's compressed variants (`.fits.gz`, `.fits.fz`) so readers accept both.

use std::fmt;
use std::path::{Path, PathBuf};

/// Every file kind the pipeline produces or reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    /// Raw exposure `{night}/{expid:08d}/desi-{expid:08d}.fits` (relative to the raw dir).
    Raw,
    /// Preprocessed image of one camera.
    Preproc,
    /// Per-exposure PSF (fit from an arc, or trace-shifted for a science exposure).
    Psf,
    /// Nightly PSF of one camera (average of the night's arc PSFs).
    PsfNight,
    /// Nightly fiber flat of one camera.
    FiberflatNight,
    /// Nightly bias of one camera (from the zero exposures).
    BiasNight,
    /// Nightly dark of one camera (from the dark exposures).
    DarkNight,
    /// Extracted frame of one camera.
    Frame,
    /// Fiber flat of one flat exposure and camera.
    Fiberflat,
    /// Sky model of one science exposure and camera.
    Sky,
    /// Standard-star fits of one exposure and spectrograph (b+r+z together).
    Stdstars,
    /// Flux calibration vector of one exposure and camera.
    Fluxcalib,
    /// Calibrated frame of one exposure and camera.
    Cframe,
    /// Spectra of one tile and spectrograph, cumulative through `night`.
    Spectra,
    /// Coadded spectra of one tile and spectrograph, cumulative through `night`.
    Coadd,
    /// Redshift catalog of one tile and spectrograph, cumulative through `night`.
    Redrock,
}

/// What identifies one file; each kind needs a subset of the fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileId {
    /// Night as YYYYMMDD.
    pub night: Option<u32>,
    /// Exposure id (written zero-padded to 8 digits).
    pub expid: Option<u32>,
    /// Camera `b0`…`z9`.
    pub camera: Option<String>,
    /// Spectrograph 0–9 (taken from the camera when not given).
    pub spectrograph: Option<u32>,
    /// Tile id (not padded).
    pub tile: Option<u64>,
}

/// Why a file name cannot be formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FindFileError {
    /// A field the kind needs was not given.
    #[error("file kind {kind}: needs {field}")]
    Missing {
        /// File kind.
        kind: FileKind,
        /// Missing field name (`night`, `expid`, `camera`, `spectrograph`, `tile`).
        field: &'static str,
    },
    /// A camera name that is not `[brz][0-9]`.
    #[error("camera {0:?}: expected b0..z9")]
    BadCamera(String),
    /// An unknown kind name.
    #[error("unknown file kind {0:?} (known: {known})", known = FileKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", "))]
    UnknownKind(String),
}

impl FileKind {
    /// Every kind, in data-flow order.
    pub const ALL: [FileKind; 16] = [
        FileKind::Raw,
        FileKind::Preproc,
        FileKind::Psf,
        FileKind::PsfNight,
        FileKind::FiberflatNight,
        FileKind::BiasNight,
        FileKind::DarkNight,
        FileKind::Frame,
        FileKind::Fiberflat,
        FileKind::Sky,
        FileKind::Stdstars,
        FileKind::Fluxcalib,
        FileKind::Cframe,
        FileKind::Spectra,
        FileKind::Coadd,
        FileKind::Redrock,
    ];

    /// The kind's name as in DESI's findfile (`frame`, `psfnight`, …).
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Raw => "raw",
            FileKind::Preproc => "preproc",
            FileKind::Psf => "psf",
            FileKind::PsfNight => "psfnight",
            FileKind::FiberflatNight => "fiberflatnight",
            FileKind::BiasNight => "biasnight",
            FileKind::DarkNight => "darknight",
            FileKind::Frame => "frame",
            FileKind::Fiberflat => "fiberflat",
            FileKind::Sky => "sky",
            FileKind::Stdstars => "stdstars",
            FileKind::Fluxcalib => "fluxcalib",
            FileKind::Cframe => "cframe",
            FileKind::Spectra => "spectra",
            FileKind::Coadd => "coadd",
            FileKind::Redrock => "redrock",
        }
    }

    /// Parses a kind name (as [`FileKind::name`] writes it).
    pub fn from_name(name: &str) -> Result<FileKind, FindFileError> {
        FileKind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| FindFileError::UnknownKind(name.to_string()))
    }

    /// Whether the path is relative to the raw data directory (else the production directory).
    pub fn is_raw(self) -> bool {
        self == FileKind::Raw
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for FileKind {
    type Err = FindFileError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FileKind::from_name(s)
    }
}

/// Checks a camera name `[brz][0-9]` and returns its spectrograph number.
pub fn camera_spectrograph(camera: &str) -> Result<u32, FindFileError> {
    let b = camera.as_bytes();
    if b.len() == 2 && matches!(b[0], b'b' | b'r' | b'z') && b[1].is_ascii_digit() {
        Ok(u32::from(b[1] - b'0'))
    } else {
        Err(FindFileError::BadCamera(camera.to_string()))
    }
}

impl FileId {
    fn night(&self, kind: FileKind) -> Result<u32, FindFileError> {
        self.night.ok_or(FindFileError::Missing {
            kind,
            field: "night",
        })
    }
    fn expid(&self, kind: FileKind) -> Result<u32, FindFileError> {
        self.expid.ok_or(FindFileError::Missing {
            kind,
            field: "expid",
        })
    }
    fn camera(&self, kind: FileKind) -> Result<&str, FindFileError> {
        let cam = self.camera.as_deref().ok_or(FindFileError::Missing {
            kind,
            field: "camera",
        })?;
        camera_spectrograph(cam)?;
        Ok(cam)
    }
    fn spectrograph(&self, kind: FileKind) -> Result<u32, FindFileError> {
        match (self.spectrograph, self.camera.as_deref()) {
            (Some(sp), _) => Ok(sp),
            (None, Some(cam)) => camera_spectrograph(cam),
            (None, None) => Err(FindFileError::Missing {
                kind,
                field: "spectrograph",
            }),
        }
    }
    fn tile(&self, kind: FileKind) -> Result<u64, FindFileError> {
        self.tile.ok_or(FindFileError::Missing {
            kind,
            field: "tile",
        })
    }
}

/// The path of a file of `kind`, relative to the raw directory ([`FileKind::Raw`]) or the
/// production directory (every other kind), as DESI's findfile names it.
pub fn relpath(kind: FileKind, id: &FileId) -> Result<PathBuf, FindFileError> {
    use FileKind as K;
    let p = match kind {
        K::Raw => {
            let (n, e) = (id.night(kind)?, id.expid(kind)?);
            format!("{n}/{e:08}/desi-{e:08}.fits")
        }
        K::Preproc => {
            let (n, e, c) = (id.night(kind)?, id.expid(kind)?, id.camera(kind)?);
            format!("preproc/{n}/{e:08}/preproc-{c}-{e:08}.fits")
        }
        K::Psf | K::Frame | K::Fiberflat | K::Sky | K::Fluxcalib | K::Cframe => {
            let (n, e, c) = (id.night(kind)?, id.expid(kind)?, id.camera(kind)?);
            format!("exposures/{n}/{e:08}/{}-{c}-{e:08}.fits", kind.name())
        }
        K::Stdstars => {
            let (n, e, sp) = (id.night(kind)?, id.expid(kind)?, id.spectrograph(kind)?);
            format!("exposures/{n}/{e:08}/stdstars-{sp}-{e:08}.fits")
        }
        K::PsfNight | K::FiberflatNight | K::BiasNight | K::DarkNight => {
            let (n, c) = (id.night(kind)?, id.camera(kind)?);
            format!("calibnight/{n}/{}-{c}-{n}.fits", kind.name())
        }
        K::Spectra | K::Coadd | K::Redrock => {
            let (n, t, sp) = (id.night(kind)?, id.tile(kind)?, id.spectrograph(kind)?);
            format!(
                "tiles/cumulative/{t}/{n}/{}-{sp}-{t}-thru{n}.fits",
                kind.name()
            )
        }
    };
    Ok(PathBuf::from(p))
}

/// `root/relpath(kind, id)`: `root` is the raw directory for [`FileKind::Raw`], the
/// production directory otherwise.
pub fn findfile(kind: FileKind, id: &FileId, root: &Path) -> Result<PathBuf, FindFileError> {
    Ok(root.join(relpath(kind, id)?))
}

/// The file at `path` or, when it is absent, its DESI-compressed variant (`.fits.gz`, or
/// `.fits.fz` for raw data), if one exists.
pub fn existing(path: &Path) -> Option<PathBuf> {
    if path.exists() {
        return Some(path.to_path_buf());
    }
    let s = path.to_str()?;
    let stem = s.strip_suffix(".fits")?;
    [".fits.gz", ".fits.fz"]
        .iter()
        .map(|ext| PathBuf::from(format!("{stem}{ext}")))
        .find(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> FileId {
        FileId {
            night: Some(20201214),
            expid: Some(67890),
            camera: Some("r3".into()),
            spectrograph: None,
            tile: Some(80605),
        }
    }

    #[test]
    fn names_follow_desi_layout() {
        let cases = [
            (FileKind::Raw, "20201214/00067890/desi-00067890.fits"),
            (
                FileKind::Preproc,
                "preproc/20201214/00067890/preproc-r3-00067890.fits",
            ),
            (
                FileKind::Psf,
                "exposures/20201214/00067890/psf-r3-00067890.fits",
            ),
            (
                FileKind::PsfNight,
                "calibnight/20201214/psfnight-r3-20201214.fits",
            ),
            (
                FileKind::FiberflatNight,
                "calibnight/20201214/fiberflatnight-r3-20201214.fits",
            ),
            (
                FileKind::BiasNight,
                "calibnight/20201214/biasnight-r3-20201214.fits",
            ),
            (
                FileKind::DarkNight,
                "calibnight/20201214/darknight-r3-20201214.fits",
            ),
            (
                FileKind::Frame,
                "exposures/20201214/00067890/frame-r3-00067890.fits",
            ),
            (
                FileKind::Fiberflat,
                "exposures/20201214/00067890/fiberflat-r3-00067890.fits",
            ),
            (
                FileKind::Sky,
                "exposures/20201214/00067890/sky-r3-00067890.fits",
            ),
            (
                FileKind::Stdstars,
                "exposures/20201214/00067890/stdstars-3-00067890.fits",
            ),
            (
                FileKind::Fluxcalib,
                "exposures/20201214/00067890/fluxcalib-r3-00067890.fits",
            ),
            (
                FileKind::Cframe,
                "exposures/20201214/00067890/cframe-r3-00067890.fits",
            ),
            (
                FileKind::Spectra,
                "tiles/cumulative/80605/20201214/spectra-3-80605-thru20201214.fits",
            ),
            (
                FileKind::Coadd,
                "tiles/cumulative/80605/20201214/coadd-3-80605-thru20201214.fits",
            ),
            (
                FileKind::Redrock,
                "tiles/cumulative/80605/20201214/redrock-3-80605-thru20201214.fits",
            ),
        ];
        assert_eq!(cases.len(), FileKind::ALL.len());
        for (kind, want) in cases {
            assert_eq!(relpath(kind, &id()).unwrap(), PathBuf::from(want), "{kind}");
            assert_eq!(FileKind::from_name(kind.name()).unwrap(), kind);
        }
    }

    #[test]
    fn missing_fields_and_bad_cameras_are_errors() {
        let mut i = id();
        i.camera = None;
        assert_eq!(
            relpath(FileKind::Frame, &i).unwrap_err().to_string(),
            "file kind frame: needs camera"
        );
        // The spectrograph alone names stdstars and tile files.
        i.spectrograph = Some(7);
        assert!(relpath(FileKind::Stdstars, &i)
            .unwrap()
            .ends_with("stdstars-7-00067890.fits"));
        i.camera = Some("x1".into());
        assert!(matches!(
            relpath(FileKind::Sky, &i),
            Err(FindFileError::BadCamera(_))
        ));
        assert!(FileKind::from_name("framez").is_err());
    }

    #[test]
    fn existing_finds_compressed_variants() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("frame-b0-00000001.fits");
        assert_eq!(existing(&plain), None);
        let gz = dir.path().join("frame-b0-00000001.fits.gz");
        std::fs::write(&gz, b"").unwrap();
        assert_eq!(existing(&plain), Some(gz));
        std::fs::write(&plain, b"").unwrap();
        assert_eq!(existing(&plain), Some(plain.clone()));
    }
}
