//! spx: the core library of a DESI-style fiber-spectrograph reduction toolkit.
//!
//! Every algorithm and every file format lives here; the `spx-*` binaries are thin wrappers
//! around [`cli`]. Units: wavelengths in Angstrom (vacuum), extracted flux in
//! electrons/Angstrom, pixel coordinates pixel-centred (reference/extraction.md §0).

// Links OpenBLAS (ndarray-linalg → lax → openblas-src) even while no module calls LAPACK yet:
// cli::init_threads calls openblas_set_num_threads, and binaries fail to link without it.
extern crate ndarray_linalg as _;

pub mod banded;
pub mod cli;
pub mod coadd;
pub mod comm;
pub mod extract;
pub mod fiberflat;
pub mod fluxcal;
pub mod inspect;
pub mod instrument;
pub mod io;
pub mod linalg;
pub mod logging;
pub mod maskbits;
#[cfg(feature = "mpi")]
pub mod mpi_comm;
pub mod plot;
pub mod preproc;
pub mod progress;
pub mod psf;
pub mod psffit;
pub mod redshift;
pub mod resolution;
pub mod sim;
pub mod sky;
pub mod speclib;
pub mod stats;
pub mod stdstars;
pub mod templates;
#[doc(hidden)]
pub mod testsupport;

pub use comm::{Comm, SingleComm};
