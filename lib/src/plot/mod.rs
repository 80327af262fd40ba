//! What `spx-plot` draws, computed without any drawing library: the best-fit redshift model
//! of a target rebuilt from its template coefficients, ivar-weighted smoothing, the spectral
//! lines to label, sky-subtraction pulls of sky fibers, and the χ²(z) scans of a details
//! file. The rendering (plotters, PNG) lives in the `spx-plot` crate (plot/), so that the
//! library and the other binaries never compile a plotting stack.

pub mod details;
pub mod lines;
pub mod model;
pub mod skyres;
pub mod smooth;
