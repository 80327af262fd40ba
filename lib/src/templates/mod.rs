//! The default redshift template set of spx: rest-frame spectra drawn from the project's own
//! spectral library ([`crate::speclib`]), normalised, reduced by PCA to a few basis vectors per
//! class, and written in redrock's template format (reference/redshift.md §1.1) so that
//! `spx-redshift` and redrock 0.21 both read them.
//!
//! ## Held out from the simulator
//! The simulator ([`crate::speclib::targets`]) draws every target parameter as a continuous
//! uniform variate from a ChaCha8 stream seeded by `(seed, spectrograph, fiber)`. The training
//! spectra here are disjoint from those draws in two ways:
//! 1. every physical parameter of a training spectrum lies on a fixed **lattice**: the centre
//!    `lo + (i + ½)·(hi − lo)/n` of one of `n` equal cells of a documented range ([`Lattice`]).
//!    A continuous draw hits one of these finitely many values with probability zero, and
//!    `held_out` in the tests checks that no simulator truth does;
//! 2. the lattice cells are chosen by a separate ChaCha8 stream seeded with `seed ^`
//!    [`SEED_DOMAIN`], a key the simulator never uses, and templates are built at rest
//!    (z = 0, radial velocity 0) while simulated targets are redshifted.
//!
//! Training ranges cover (and exceed) the simulator's, including intermediate galaxies the
//! simulator never draws (young fractions between its LRG and ELG ranges), so the basis is not
//! tuned to the test population.

pub mod build;
pub mod pca;

pub use build::{
    build_class, build_set, default_template_dir, Built, Class, TemplateSet, CLASSES, LIST_FILE,
    VERSION,
};

/// XOR-ed into the user's seed for the training draws (ASCII "SPXTMPL"), so training and
/// simulator streams never coincide for the same user seed.
pub const SEED_DOMAIN: u64 = 0x0053_5058_544d_504c;

/// A one-dimensional parameter lattice: the centres of `n` equal cells spanning `[lo, hi]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lattice {
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
}

impl Lattice {
    pub const fn new(lo: f64, hi: f64, n: usize) -> Self {
        Lattice { lo, hi, n }
    }

    /// Value of cell `i` (clamped to the last cell).
    pub fn value(&self, i: usize) -> f64 {
        let i = i.min(self.n.saturating_sub(1));
        self.lo + (i as f64 + 0.5) * (self.hi - self.lo) / self.n as f64
    }

    /// A cell centre chosen uniformly by `rng`.
    pub fn draw(&self, rng: &mut impl rand::Rng) -> f64 {
        self.value(rng.random_range(0..self.n))
    }

    /// Whether `x` is (to 1e-9 of the cell width) one of the lattice values.
    pub fn contains(&self, x: f64) -> bool {
        let w = (self.hi - self.lo) / self.n as f64;
        let u = (x - self.lo) / w - 0.5;
        let i = u.round();
        i >= 0.0 && i < self.n as f64 && (u - i).abs() < 1e-9
    }
}
