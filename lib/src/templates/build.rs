//! Drawing the training spectra, PCA, and the template classes of the default set.

use std::path::PathBuf;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::pca::pca;
use super::{Lattice, SEED_DOMAIN};
use crate::io::templates::{default_redshifts, np_arange, IgmModel, Template};
use crate::linalg::LinalgError;
use crate::speclib::galaxy::{Galaxy, GalaxyParams};
use crate::speclib::qso::{Qso, QsoParams};
use crate::speclib::star::{Star, StarParams};
use crate::speclib::Sed;

/// VERSION keyword of the templates spx builds (distinct from every redrock version string).
pub const VERSION: &str = "spx-0.2";

/// Rest-frame sampling of every template: log10-uniform, 1e-4 dex (69 km/s) per pixel; each
/// pixel holds the mean flux density over its width (so narrow lines are not aliased).
pub const DLOG: f64 = 1e-4;

/// Sub-samples per pixel for the pixel mean (midpoint rule in log λ).
const NSUB: usize = 8;

/// Training-parameter lattices (see the module doc of [`crate::templates`]). Ranges contain
/// the simulator's ranges (speclib::targets) and more.
pub mod lattices {
    use super::Lattice;
    /// Galaxy young-population fraction (simulator: ELG 0.7–1, LRG 0–0.1).
    pub const GAL_YOUNG: Lattice = Lattice::new(0.0, 1.0, 20);
    /// Galaxy D4000 (simulator: ELG 1.05–1.3, LRG 1.7–2.1).
    pub const GAL_D4000: Lattice = Lattice::new(1.0, 2.3, 26);
    /// Stellar velocity dispersion, km/s (simulator 60–300).
    pub const GAL_SIGMA_V: Lattice = Lattice::new(40.0, 340.0, 30);
    /// log10 rest equivalent width of [O II] 3726+3729, Å (simulator ELGs ≈ 10–150 Å).
    pub const GAL_LOG_EW_OII: Lattice = Lattice::new(0.5, 2.4, 19);
    /// [O II] 3729/3726 ratio (simulator 0.7–1.5).
    pub const GAL_OII_RATIO: Lattice = Lattice::new(0.6, 1.6, 10);
    /// log10 [O III]/Hβ (simulator −0.5..0.5).
    pub const GAL_LOG_OIII_HB: Lattice = Lattice::new(-0.7, 0.7, 14);
    /// [O II]/Hβ (simulator 1.5–3.5).
    pub const GAL_OII_HB: Lattice = Lattice::new(1.2, 4.0, 14);
    /// Emission-line sigma, km/s (simulator 30–90).
    pub const GAL_SIGMA_LINE: Lattice = Lattice::new(20.0, 110.0, 9);
    /// QSO power-law index (simulator −1.9..−1.1).
    pub const QSO_ALPHA: Lattice = Lattice::new(-2.1, -0.9, 24);
    /// QSO broad-line FWHM, km/s (simulator 2500–7000).
    pub const QSO_FWHM: Lattice = Lattice::new(2000.0, 8000.0, 30);
    /// QSO equivalent-width scale (simulator 0.6–1.4).
    pub const QSO_EW_SCALE: Lattice = Lattice::new(0.4, 1.6, 24);
    /// Stellar log g (simulator 3.5–5).
    pub const STAR_LOGG: Lattice = Lattice::new(3.0, 5.2, 22);
    /// Stellar [Fe/H] (simulator −1.5..0.3).
    pub const STAR_FEH: Lattice = Lattice::new(-2.0, 0.5, 25);
    /// Teff cell width within each stellar subtype's range, K.
    pub const STAR_TEFF_STEP: f64 = 50.0;
}

/// One template class of the default set.
#[derive(Debug, Clone, Copy)]
pub struct Class {
    pub spectype: &'static str,
    /// RRSUBTYP (`""` → `None` in the file name).
    pub subtype: &'static str,
    pub nbasis: usize,
    /// Rest-frame range, Å: wide enough for the redshift grid over 3600–9824 Å observed
    /// (with half-pixel and resolution margins).
    pub rest_lo: f64,
    pub rest_hi: f64,
    pub igm: IgmModel,
    /// Own coarse grid `(zmin, zmax, dlog10(1+z))` written as a REDSHIFTS HDU; `None` → the
    /// default grid of the type.
    pub zgrid: Option<(f64, f64, f64)>,
    /// Teff range of a STAR subtype, K.
    pub teff: (f64, f64),
    /// GALAXY classes: whether the training spectra have nebular emission lines.
    pub emission_lines: bool,
}

/// The default set: two GALAXY subtypes (z −0.005..1.7, default grid: rest 3550/2.7 …
/// 9900/0.995 Å), QSO (z 0.05..4.5: rest 3550/5.5 … 9900/1.05 Å) and four STAR subtypes
/// (z ±0.002: rest 3540 … 9920 Å).
///
/// Why GALAXY is split into EMLINE (6 vectors) and PASSIVE (4): every basis vector is a free
/// coefficient at every trial redshift, and the best of ~1500 trials fitting noise with k free
/// coefficients beats the truth's χ² by more as k grows. With one 10-vector basis a lone
/// [O II] doublet of modest S/N was taken for Hδ, Hγ or [O III] (galaxies of the tuning
/// sample, seed 23: 7 catastrophic among 487 confident; 3 with 7 vectors, 2 with 6). Six mixed
/// vectors fit old populations worse (χ² over the noiseless truth's up to +69 for LRGs); a
/// separate line-free basis fits them with four (≤ 0, as ten mixed vectors did). Split:
/// 2 catastrophic among 507.
pub const CLASSES: &[Class] = &[
    Class {
        spectype: "GALAXY",
        subtype: "EMLINE",
        nbasis: 6,
        rest_lo: 1250.0,
        rest_hi: 10100.0,
        igm: IgmModel::Calura12,
        zgrid: None,
        teff: (0.0, 0.0),
        emission_lines: true,
    },
    Class {
        spectype: "QSO",
        subtype: "",
        nbasis: 4,
        rest_lo: 600.0,
        rest_hi: 10100.0,
        igm: IgmModel::Calura12,
        zgrid: Some((0.05, 4.5, 5e-4)),
        teff: (0.0, 0.0),
        emission_lines: false,
    },
    Class {
        spectype: "STAR",
        subtype: "A",
        nbasis: 5,
        rest_lo: 3450.0,
        rest_hi: 10100.0,
        igm: IgmModel::None,
        zgrid: None,
        teff: (7500.0, 11000.0),
        emission_lines: false,
    },
    Class {
        spectype: "STAR",
        subtype: "F",
        nbasis: 5,
        rest_lo: 3450.0,
        rest_hi: 10100.0,
        igm: IgmModel::None,
        zgrid: None,
        teff: (6000.0, 7500.0),
        emission_lines: false,
    },
    Class {
        spectype: "STAR",
        subtype: "G",
        nbasis: 5,
        rest_lo: 3450.0,
        rest_hi: 10100.0,
        igm: IgmModel::None,
        zgrid: None,
        teff: (5200.0, 6000.0),
        emission_lines: false,
    },
    Class {
        spectype: "STAR",
        subtype: "K",
        nbasis: 5,
        rest_lo: 3450.0,
        rest_hi: 10100.0,
        igm: IgmModel::None,
        zgrid: None,
        teff: (3700.0, 5200.0),
        emission_lines: false,
    },
    // Last so that the training draws of the classes above keep their seeds.
    Class {
        spectype: "GALAXY",
        subtype: "PASSIVE",
        nbasis: 4,
        rest_lo: 1250.0,
        rest_hi: 10100.0,
        igm: IgmModel::Calura12,
        zgrid: None,
        teff: (0.0, 0.0),
        emission_lines: false,
    },
];

impl Class {
    /// `rrtemplate-<TYPE>-<SUBTYPE or None>-v<VERSION>.fits`.
    pub fn filename(&self) -> String {
        let sub = if self.subtype.is_empty() {
            "None"
        } else {
            self.subtype
        };
        format!("rrtemplate-{}-{}-v{}.fits", self.spectype, sub, VERSION)
    }

    /// log10 of the first pixel centre and the number of pixels.
    pub fn log_grid(&self) -> (f64, usize) {
        let lo = self.rest_lo.log10();
        let n = ((self.rest_hi.log10() - lo) / DLOG).ceil() as usize + 1;
        (lo, n)
    }

    /// Teff lattice of a STAR subtype.
    pub fn teff_lattice(&self) -> Lattice {
        let (a, b) = self.teff;
        Lattice::new(
            a,
            b,
            ((b - a) / lattices::STAR_TEFF_STEP).round().max(1.0) as usize,
        )
    }
}

/// Training parameters of one spectrum.
#[derive(Debug, Clone, PartialEq)]
pub enum Params {
    Galaxy(GalaxyParams),
    Qso(QsoParams),
    Star(StarParams),
}

impl Params {
    fn sed(&self) -> Box<dyn Sed> {
        match self {
            Params::Galaxy(p) => Box::new(Galaxy::new(p.clone())),
            Params::Qso(p) => Box::new(Qso::new(p.clone())),
            Params::Star(p) => Box::new(Star::new(p.clone())),
        }
    }
}

/// The training parameters of `class`: `n` lattice draws from a stream seeded by
/// `seed ^ SEED_DOMAIN` and the class index.
pub fn training_params(class_index: usize, n: usize, seed: u64) -> Vec<Params> {
    use lattices::*;
    let class = &CLASSES[class_index];
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SEED_DOMAIN ^ ((class_index as u64) << 40));
    (0..n)
        .map(|i| match class.spectype {
            "GALAXY" => {
                let mut p = GalaxyParams {
                    z: 0.0,
                    norm: 1.0,
                    young: GAL_YOUNG.draw(&mut rng),
                    d4000: GAL_D4000.draw(&mut rng),
                    sigma_v: GAL_SIGMA_V.draw(&mut rng),
                    oii_flux: 0.0,
                    oii_ratio: GAL_OII_RATIO.draw(&mut rng),
                    oiii_hbeta: 10f64.powf(GAL_LOG_OIII_HB.draw(&mut rng)),
                    oii_hbeta: GAL_OII_HB.draw(&mut rng),
                    sigma_line: GAL_SIGMA_LINE.draw(&mut rng),
                };
                let ew = 10f64.powf(GAL_LOG_EW_OII.draw(&mut rng));
                if class.emission_lines {
                    let cont = Galaxy::new(p.clone()).continuum(3728.5);
                    p.oii_flux = ew * cont;
                }
                Params::Galaxy(p)
            }
            "QSO" => Params::Qso(QsoParams {
                z: 0.0,
                norm: 1.0,
                alpha: QSO_ALPHA.draw(&mut rng),
                fwhm: QSO_FWHM.draw(&mut rng),
                ew_scale: QSO_EW_SCALE.draw(&mut rng),
                // at z = 0 the forest optical depth is ≈ 0.002: the IGM model of the fitter
                // (RRIGM) supplies the absorption instead
                forest_seed: i as u64,
            }),
            _ => Params::Star(StarParams {
                teff: class.teff_lattice().draw(&mut rng),
                logg: STAR_LOGG.draw(&mut rng),
                feh: STAR_FEH.draw(&mut rng),
                rv: 0.0,
                norm: 1.0,
            }),
        })
        .collect()
}

/// Rest-frame spectrum of `sed` on the class grid: mean density over each log-λ pixel,
/// divided by its mean over the grid (PCA captures shape, not amplitude). `[nwave]`
pub fn rest_spectrum(sed: &dyn Sed, log_lo: f64, nwave: usize) -> Vec<f64> {
    let mut out: Vec<f64> = (0..nwave)
        .map(|k| {
            let c = log_lo + k as f64 * DLOG;
            (0..NSUB)
                .map(|s| {
                    let l = c + DLOG * ((s as f64 + 0.5) / NSUB as f64 - 0.5);
                    sed.density(10f64.powf(l))
                })
                .sum::<f64>()
                / NSUB as f64
        })
        .collect();
    let mean = out.iter().sum::<f64>() / nwave as f64;
    if mean > 0.0 {
        out.iter_mut().for_each(|v| *v /= mean);
    }
    out
}

/// A built template with its PCA diagnostics.
#[derive(Debug, Clone)]
pub struct Built {
    pub class: Class,
    pub template: Template,
    /// Fraction of Σ‖x‖² captured by each basis vector.
    pub captured: Vec<f64>,
    /// Training spectra.
    pub nspec: usize,
}

/// The whole default set.
pub type TemplateSet = Vec<Built>;

/// Builds one class from `nspec` training spectra.
pub fn build_class(class_index: usize, nspec: usize, seed: u64) -> Result<Built, LinalgError> {
    let class = CLASSES[class_index];
    let params = training_params(class_index, nspec, seed);
    let (log_lo, nwave) = class.log_grid();
    let spectra: Vec<Vec<f64>> = params
        .par_iter()
        .map(|p| rest_spectrum(p.sed().as_ref(), log_lo, nwave))
        .collect();
    let rows: Vec<f64> = spectra.into_iter().flatten().collect();
    let (basis, captured) = pca(&rows, nspec, nwave, class.nbasis)?;
    let nb = class.nbasis;
    let mut flux = vec![0.0; nb * nwave];
    for k in 0..nb {
        for j in 0..nwave {
            flux[j * nb + k] = basis[k * nwave + j];
        }
    }
    let wave: Vec<f64> = (0..nwave)
        .map(|k| 10f64.powf(log_lo + k as f64 * DLOG))
        .collect();
    let (redshifts, default_grid) = match class.zgrid {
        Some((z0, z1, dz)) => (
            np_arange((1.0 + z0).log10(), (1.0 + z1).log10(), dz)
                .into_iter()
                .map(|x| 10f64.powf(x) - 1.0)
                .collect(),
            false,
        ),
        None => (default_redshifts(class.spectype).unwrap_or_default(), true),
    };
    Ok(Built {
        class,
        template: Template {
            spectype: class.spectype.to_string(),
            subtype: class.subtype.to_string(),
            version: VERSION.to_string(),
            filename: PathBuf::from(class.filename()),
            method: "PCA".into(),
            igm: class.igm,
            wave,
            flux,
            nbasis: nb,
            redshifts,
            default_grid,
        },
        captured,
        nspec,
    })
}

/// Builds every class of [`CLASSES`] from `nspec` training spectra each.
pub fn build_set(nspec: usize, seed: u64) -> Result<TemplateSet, LinalgError> {
    (0..CLASSES.len())
        .map(|i| build_class(i, nspec, seed))
        .collect()
}

/// Name of the list file written next to the templates (what redrock and spx read when given
/// the directory).
pub const LIST_FILE: &str = "templates-default.txt";

/// Where the shipped default set lives: `$SPX_TEMPLATE_DIR`, else `<exe>/../share/spx/templates`
/// (an installed layout), else the copy committed in the source tree (`lib/templates`). The
/// first directory holding [`LIST_FILE`] wins; `None` if none does.
pub fn default_template_dir() -> Option<PathBuf> {
    let mut cands: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("SPX_TEMPLATE_DIR") {
        cands.push(PathBuf::from(d));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|p| p.to_path_buf()))
    {
        cands.push(exe_dir.join("../share/spx/templates"));
    }
    cands.push(PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/templates"
    )));
    cands.into_iter().find(|d| d.join(LIST_FILE).is_file())
}
