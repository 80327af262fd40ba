//! spx: the core library of a DESI-style fiber-spectrograph reduction toolkit.
//!
//! Every algorithm and every file format lives here; the `spx-*` binaries are thin wrappers
//! around [`cli`]. Units: wavelengths in Angstrom (vacuum), extracted flux in
//! electrons/Angstrom, pixel coordinates pixel-centred (reference/extraction.md §0).

pub mod cli;
pub mod comm;
pub mod io;
pub mod logging;
#[cfg(feature = "mpi")]
pub mod mpi_comm;
pub mod progress;
#[doc(hidden)]
pub mod testsupport;

pub use comm::{Comm, SingleComm};
