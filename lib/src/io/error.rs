//! Errors of the file-format layer. Every variant names the file, and where it applies the
//! HDU (or column) and what is wrong, so a binary can print it as one line.

use std::path::{Path, PathBuf};

/// A problem with a FITS (or YAML/text) input or output file.
#[derive(Debug, thiserror::Error)]
pub enum FitsError {
    /// The file cannot be opened, created, renamed, or is not a valid FITS file.
    #[error("{}: {msg}", path.display())]
    File { path: PathBuf, msg: String },
    /// A required HDU is absent.
    #[error("{}: HDU {hdu} is missing", path.display())]
    MissingHdu { path: PathBuf, hdu: String },
    /// An HDU (or a column or keyword in it) is present but unusable.
    #[error("{}[{hdu}]: {msg}", path.display())]
    Hdu {
        path: PathBuf,
        hdu: String,
        msg: String,
    },
}

impl FitsError {
    pub fn file(path: &Path, msg: impl Into<String>) -> Self {
        FitsError::File {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
    pub fn hdu(path: &Path, hdu: &str, msg: impl Into<String>) -> Self {
        FitsError::Hdu {
            path: path.to_path_buf(),
            hdu: hdu.to_string(),
            msg: msg.into(),
        }
    }
    pub fn missing(path: &Path, hdu: &str) -> Self {
        FitsError::MissingHdu {
            path: path.to_path_buf(),
            hdu: hdu.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, FitsError>;
