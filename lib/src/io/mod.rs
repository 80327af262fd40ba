//! File formats, one module per file kind, following the DESI data model
//! (reference/calibration.md §5, reference/extraction.md §1.1 and §6). HDUs are read by
//! EXTNAME, never by position. Every writer goes through [`fits::FitsWriter`] (atomic,
//! provenance keywords).

pub mod error;
pub mod fiberflat;
pub mod fibermap;
pub mod findfile;
pub mod fits;
pub mod fluxcalib;
pub mod frame;
pub mod header;
pub mod preproc;
pub mod psf;
pub mod raw;
pub mod redrock;
pub mod simtruth;
pub mod sky;
pub mod spectra;
pub mod stdstars;
pub mod table;
pub mod templates;

pub use error::{FitsError, Result};
