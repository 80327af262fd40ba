//! The population behind the fibers of one spectrograph: seeded draws of ELGs, LRGs, QSOs,
//! Milky-Way stars, F-type standard stars, sky fibers and dead fibers, each with its truth
//! (type, redshift, physical parameters, g/r/z photometry of the spectrum entering the fiber).
//!
//! Draws depend only on (seed, spectrograph, fiber), never on the order of evaluation.
//! A user can pin targets per fiber with a YAML list ([`TargetSpec`]).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::galaxy::{Galaxy, GalaxyParams};
use super::photometry::{nmgy_from_ab_mag, Band};
use super::qso::{Qso, QsoParams};
use super::star::{Star, StarParams};
use super::Sed;

/// Kind of object behind a fiber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Elg,
    Lrg,
    Qso,
    Star,
    /// F-type standard star (DESI_TARGET STD_FAINT).
    Std,
    Sky,
    /// Broken fiber: no light (FIBERSTATUS BROKENFIBER).
    Dead,
}

/// DESI_TARGET bits (desitarget sv/main masks).
pub mod desi_target {
    pub const LRG: i64 = 1 << 0;
    pub const ELG: i64 = 1 << 1;
    pub const QSO: i64 = 1 << 2;
    pub const SKY: i64 = 1 << 32;
    pub const STD_FAINT: i64 = 1 << 33;
    pub const STD_WD: i64 = 1 << 34;
    pub const STD_BRIGHT: i64 = 1 << 35;
    pub const MWS_ANY: i64 = 1 << 62;
}
/// MWS_TARGET bits.
pub mod mws_target {
    pub const MWS_BROAD: i64 = 1 << 0;
    pub const GAIA_STD_FAINT: i64 = 1 << 33;
}

impl Kind {
    /// FIBERMAP OBJTYPE.
    pub fn objtype(self) -> &'static str {
        match self {
            Kind::Sky => "SKY",
            Kind::Dead => "BAD",
            _ => "TGT",
        }
    }
    /// Redrock-style SPECTYPE of the truth.
    pub fn spectype(self) -> &'static str {
        match self {
            Kind::Elg | Kind::Lrg => "GALAXY",
            Kind::Qso => "QSO",
            Kind::Star | Kind::Std => "STAR",
            Kind::Sky | Kind::Dead => "",
        }
    }
    /// (DESI_TARGET, MWS_TARGET).
    pub fn target_bits(self) -> (i64, i64) {
        use desi_target as d;
        match self {
            Kind::Elg => (d::ELG, 0),
            Kind::Lrg => (d::LRG, 0),
            Kind::Qso => (d::QSO, 0),
            Kind::Star => (d::MWS_ANY, mws_target::MWS_BROAD),
            Kind::Std => (d::STD_FAINT | d::MWS_ANY, mws_target::GAIA_STD_FAINT),
            Kind::Sky => (d::SKY, 0),
            Kind::Dead => (0, 0),
        }
    }
}

/// A user's pinned target (all but `fiber` and `kind` optional; missing values are drawn).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// Fiber index within the spectrograph (0..nspec).
    pub fiber: usize,
    pub kind: Option<Kind>,
    /// Redshift (galaxies, QSOs).
    pub z: Option<f64>,
    /// AB magnitude in r (z band for LRGs) of the light entering the fiber.
    pub mag: Option<f64>,
    /// [O II] flux, 1e-17 erg/s/cm² (ELG).
    pub oii_flux: Option<f64>,
    pub teff: Option<f64>,
    pub logg: Option<f64>,
    pub feh: Option<f64>,
}

/// Truth of one fiber's target.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    pub kind: Kind,
    pub targetid: i64,
    /// Redshift (stars: radial velocity / c).
    pub z: f64,
    pub teff: f64,
    pub logg: f64,
    pub feh: f64,
    /// [O II] 3726+3729 flux, 1e-17 erg/s/cm².
    pub oii_flux: f64,
    /// Synthetic AB fluxes of the spectrum entering the fiber, nanomaggies.
    pub flux_g: f64,
    pub flux_r: f64,
    pub flux_z: f64,
    /// Sky position, degrees.
    pub ra: f64,
    pub dec: f64,
    /// Relative throughput of this fiber (1 nominal, 0 dead).
    pub fiber_throughput: f64,
}

/// One fiber's target: truth and spectrum (None for sky and dead fibers).
pub struct Target {
    pub truth: Truth,
    pub sed: Option<Box<dyn Sed>>,
}

/// Tile centre used for the drawn sky positions, degrees.
pub const TILE_RA: f64 = 150.0;
pub const TILE_DEC: f64 = 2.0;

/// Draws the kinds of `nspec` fibers: 16% sky (≥ 4; DESI puts 80 of a petal's 500 fibers on
/// blank sky), ≈2% standards (≥ 2), ≈1% dead (≥ 1),
/// the rest ELG 45%, LRG 20%, QSO 15%, stars 20%; fibers shuffled.
pub fn draw_kinds(nspec: usize, rng: &mut ChaCha8Rng) -> Vec<Kind> {
    let nsky = ((nspec as f64 * 0.16).round() as usize).max(4).min(nspec);
    let nstd = ((nspec as f64 * 0.02).round() as usize)
        .max(2)
        .min(nspec - nsky);
    let ndead = ((nspec as f64 * 0.01).round() as usize)
        .max(1)
        .min(nspec - nsky - nstd);
    let mut kinds = vec![Kind::Sky; nsky];
    kinds.extend(std::iter::repeat_n(Kind::Std, nstd));
    kinds.extend(std::iter::repeat_n(Kind::Dead, ndead));
    while kinds.len() < nspec {
        let u: f64 = rng.random();
        kinds.push(if u < 0.45 {
            Kind::Elg
        } else if u < 0.65 {
            Kind::Lrg
        } else if u < 0.80 {
            Kind::Qso
        } else {
            Kind::Star
        });
    }
    // Fisher-Yates with our seeded generator
    for i in (1..kinds.len()).rev() {
        let j = rng.random_range(0..=i);
        kinds.swap(i, j);
    }
    kinds
}

/// Scales `norm` so that `band` of the SED built by `make(norm)` equals `mag` (AB).
fn normalise<S: Sed>(make: impl Fn(f64) -> S, band: Band, mag: f64) -> (f64, S) {
    let unit = make(1.0);
    let f = band.nanomaggies(&unit);
    let norm = if f > 0.0 {
        nmgy_from_ab_mag(mag) / f
    } else {
        0.0
    };
    (norm, make(norm))
}

/// Builds the target of fiber `fiber` of spectrograph `sp` with kind `kind`, drawing any
/// parameter `spec` leaves open from a generator seeded by (seed, sp, fiber).
pub fn make_target(seed: u64, sp: usize, fiber: usize, kind: Kind, spec: &TargetSpec) -> Target {
    let mut rng = ChaCha8Rng::seed_from_u64(
        seed ^ 0x7461_7267_6574_0000 ^ ((sp as u64) << 20) ^ fiber as u64,
    );
    // the simulator replaces this with the night's fiber throughput
    let fiber_throughput = if kind == Kind::Dead { 0.0 } else { 1.0 };
    let ra = TILE_RA + rng.random_range(-1.5..1.5) / TILE_DEC.to_radians().cos();
    let dec = TILE_DEC + rng.random_range(-1.5..1.5);
    let targetid = match kind {
        Kind::Dead => -((sp * 10000 + fiber) as i64) - 1,
        _ => {
            39_600_000_000_000_000
                + (seed % 1000) as i64 * 1_000_000_000
                + (sp * 10000 + fiber) as i64
        }
    };
    let mut truth = Truth {
        kind,
        targetid,
        z: 0.0,
        teff: 0.0,
        logg: 0.0,
        feh: 0.0,
        oii_flux: 0.0,
        flux_g: 0.0,
        flux_r: 0.0,
        flux_z: 0.0,
        ra,
        dec,
        fiber_throughput,
    };
    let mut u = |a: f64, b: f64| rng.random_range(a..b);
    let sed: Option<Box<dyn Sed>> = match kind {
        Kind::Sky | Kind::Dead => None,
        Kind::Elg | Kind::Lrg => {
            let elg = kind == Kind::Elg;
            let base = GalaxyParams {
                z: spec
                    .z
                    .unwrap_or_else(|| if elg { u(0.6, 1.6) } else { u(0.4, 1.0) }),
                norm: 1.0,
                young: if elg { u(0.7, 1.0) } else { u(0.0, 0.1) },
                d4000: if elg { u(1.05, 1.3) } else { u(1.7, 2.1) },
                sigma_v: if elg { u(60.0, 120.0) } else { u(150.0, 300.0) },
                oii_flux: 0.0,
                oii_ratio: u(0.7, 1.5),
                oiii_hbeta: 10f64.powf(u(-0.5, 0.5)),
                oii_hbeta: u(1.5, 3.5),
                sigma_line: u(30.0, 90.0),
            };
            let oii = if elg {
                spec.oii_flux.unwrap_or_else(|| 10f64.powf(u(0.7, 1.5)))
            } else {
                0.0
            };
            let (band, mag) = if elg {
                (Band::R, spec.mag.unwrap_or_else(|| u(22.0, 23.5)))
            } else {
                (Band::Z, spec.mag.unwrap_or_else(|| u(19.5, 21.0)))
            };
            // normalise the continuum alone, then add the lines
            let (norm, _) = normalise(
                |n| {
                    Galaxy::new(GalaxyParams {
                        norm: n,
                        ..base.clone()
                    })
                },
                band,
                mag,
            );
            truth.z = base.z;
            truth.oii_flux = oii;
            Some(Box::new(Galaxy::new(GalaxyParams {
                norm,
                oii_flux: oii,
                ..base
            })))
        }
        Kind::Qso => {
            let base = QsoParams {
                z: spec.z.unwrap_or_else(|| u(0.5, 3.5)),
                norm: 1.0,
                alpha: -1.5 + u(-0.4, 0.4),
                fwhm: u(2500.0, 7000.0),
                ew_scale: u(0.6, 1.4),
                forest_seed: (u(0.0, 1.0) * 1e15) as u64,
            };
            let mag = spec.mag.unwrap_or_else(|| u(20.5, 22.5));
            let (_, q) = normalise(
                |n| {
                    Qso::new(QsoParams {
                        norm: n,
                        ..base.clone()
                    })
                },
                Band::R,
                mag,
            );
            truth.z = base.z;
            Some(Box::new(q))
        }
        Kind::Star | Kind::Std => {
            let std = kind == Kind::Std;
            let base = StarParams {
                teff: spec.teff.unwrap_or_else(|| {
                    if std {
                        u(5900.0, 6800.0)
                    } else {
                        u(4000.0, 8000.0)
                    }
                }),
                logg: spec
                    .logg
                    .unwrap_or_else(|| if std { u(4.0, 4.5) } else { u(3.5, 5.0) }),
                feh: spec
                    .feh
                    .unwrap_or_else(|| if std { u(-1.0, 0.0) } else { u(-1.5, 0.3) }),
                rv: u(-80.0, 80.0),
                norm: 1.0,
            };
            let mag = spec
                .mag
                .unwrap_or_else(|| if std { u(16.5, 18.5) } else { u(16.0, 19.0) });
            let (_, s) = normalise(
                |n| {
                    Star::new(StarParams {
                        norm: n,
                        ..base.clone()
                    })
                },
                Band::R,
                mag,
            );
            truth.z = base.rv / super::C_KMS;
            truth.teff = base.teff;
            truth.logg = base.logg;
            truth.feh = base.feh;
            Some(Box::new(s))
        }
    };
    if let Some(s) = &sed {
        truth.flux_g = Band::G.nanomaggies(s.as_ref());
        truth.flux_r = Band::R.nanomaggies(s.as_ref());
        truth.flux_z = Band::Z.nanomaggies(s.as_ref());
    }
    Target { truth, sed }
}

/// The targets of the `nspec` fibers of spectrograph `sp`: drawn from `seed`, overridden by
/// `specs` (fiber indices within the spectrograph).
pub fn draw_targets(seed: u64, sp: usize, nspec: usize, specs: &[TargetSpec]) -> Vec<Target> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6b69_6e64 ^ ((sp as u64) << 32));
    let kinds = draw_kinds(nspec, &mut rng);
    (0..nspec)
        .map(|i| {
            let spec = specs.iter().find(|s| s.fiber == i);
            let kind = spec.and_then(|s| s.kind).unwrap_or(kinds[i]);
            make_target(seed, sp, i, kind, spec.unwrap_or(&TargetSpec::default()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::speclib::photometry::ab_mag_from_nmgy;

    #[test]
    fn draws_are_seeded_and_normalised() {
        let a = draw_targets(3, 0, 40, &[]);
        let b = draw_targets(3, 0, 40, &[]);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.truth, y.truth);
        }
        assert!(a.iter().filter(|t| t.truth.kind == Kind::Sky).count() >= 2);
        assert!(a.iter().filter(|t| t.truth.kind == Kind::Std).count() >= 2);
        assert!(a.iter().filter(|t| t.truth.kind == Kind::Dead).count() >= 1);
        let pinned = TargetSpec {
            fiber: 5,
            kind: Some(Kind::Std),
            mag: Some(17.0),
            ..Default::default()
        };
        let c = draw_targets(3, 0, 40, &[pinned]);
        assert_eq!(c[5].truth.kind, Kind::Std);
        assert!((ab_mag_from_nmgy(c[5].truth.flux_r) - 17.0).abs() < 1e-9);
        assert!((5900.0..6800.0).contains(&c[5].truth.teff));
    }
}
