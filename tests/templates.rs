//! spx-templates: the shipped default template set is readable by spx and redrock, is built
//! from spectra held out from the simulator's draws, and fits simulated targets.

#[path = "common/mod.rs"]
mod common;

use std::path::PathBuf;

use spx::io::templates::load_templates;
use spx::redshift::fitz::eval_at;
use spx::redshift::target::{grids, prepare_targets};
use spx::redshift::truthspec::{simulate, TruthSpecOptions};
use spx::redshift::{fit, prepare, FitOptions};
use spx::speclib::targets::{draw_targets, Kind};
use spx::templates::build::{lattices, training_params, Params};
use spx::templates::{CLASSES, LIST_FILE};

/// The committed default set (lib/templates).
fn shipped_dir() -> PathBuf {
    common::workspace_root().join("lib/templates")
}

#[test]
fn binary_writes_a_set_that_spx_and_redrock_read() {
    let dir = tempfile::tempdir().unwrap();
    common::bin("spx-templates")
        .args([
            "-o",
            dir.path().to_str().unwrap(),
            "--nspec",
            "24",
            "--seed",
            "5",
        ])
        .assert()
        .success();
    assert!(dir.path().join(LIST_FILE).is_file());
    let ts = load_templates(dir.path()).unwrap();
    assert_eq!(ts.len(), CLASSES.len());
    for (t, c) in ts.iter().zip(CLASSES) {
        assert_eq!(t.spectype, c.spectype);
        assert_eq!(t.subtype, c.subtype);
        assert_eq!(t.nbasis, c.nbasis);
        assert_eq!(t.igm, c.igm);
        // rest range as designed, to the 1e-4 dex sampling
        assert!((t.wave[0] / c.rest_lo - 1.0).abs() < 1e-9);
        assert!(t.wave[t.nwave() - 1] >= c.rest_hi);
    }
    // too few spectra for the basis: refused, nothing written
    let empty = tempfile::tempdir().unwrap();
    common::bin("spx-templates")
        .args(["-o", empty.path().to_str().unwrap(), "--nspec", "3"])
        .assert()
        .failure();
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
}

#[test]
fn redrock_reads_the_shipped_set() {
    let Some(py) = spx::testsupport::python() else {
        return;
    };
    let dir = shipped_dir();
    let script = format!(
        r##"
import glob, os
import redrock.templates as T
files = [l.split()[0] for l in open(os.path.join({d:?}, "templates-default.txt")) if l.strip() and not l.startswith("#")]
for f in files:
    t = T.Template(os.path.join({d:?}, f))
    print(t.full_type, t.nbasis, len(t.wave), len(t.redshifts), t.igm_model)
"##,
        d = dir.to_str().unwrap()
    );
    let out = std::process::Command::new(py)
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let ours = load_templates(&dir).unwrap();
    // redrock logs "INFO: ..." lines on stdout too
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("INFO")).collect();
    assert_eq!(lines.len(), ours.len(), "{text}");
    for (l, t) in lines.iter().zip(&ours) {
        let want = format!(
            "{} {} {} {} {}",
            t.full_type(),
            t.nbasis,
            t.nwave(),
            t.redshifts.len(),
            t.igm.as_str()
        );
        assert_eq!(*l, want);
    }
}

#[test]
fn training_spectra_are_held_out_from_the_simulator() {
    // Every training parameter lies on its lattice ...
    for (ci, c) in CLASSES.iter().enumerate() {
        for p in training_params(ci, 200, 1) {
            match p {
                Params::Galaxy(g) => {
                    assert_eq!(g.z, 0.0);
                    assert!(lattices::GAL_YOUNG.contains(g.young));
                    assert!(lattices::GAL_D4000.contains(g.d4000));
                    assert!(lattices::GAL_SIGMA_V.contains(g.sigma_v));
                    assert!(lattices::GAL_OII_RATIO.contains(g.oii_ratio));
                    assert!(lattices::GAL_OII_HB.contains(g.oii_hbeta));
                    assert!(lattices::GAL_SIGMA_LINE.contains(g.sigma_line));
                    assert!(lattices::GAL_LOG_OIII_HB.contains(g.oiii_hbeta.log10()));
                }
                Params::Qso(q) => {
                    assert_eq!(q.z, 0.0);
                    assert!(lattices::QSO_ALPHA.contains(q.alpha));
                    assert!(lattices::QSO_FWHM.contains(q.fwhm));
                    assert!(lattices::QSO_EW_SCALE.contains(q.ew_scale));
                }
                Params::Star(s) => {
                    assert_eq!(s.rv, 0.0);
                    assert!(c.teff_lattice().contains(s.teff));
                    assert!(lattices::STAR_LOGG.contains(s.logg));
                    assert!(lattices::STAR_FEH.contains(s.feh));
                }
            }
        }
    }
    // ... and no simulator draw does (the truth table records the stellar parameters; the
    // galaxy and QSO shape parameters are drawn by the same continuous uniform draws).
    let mut nstar = 0;
    for sp in 0..4 {
        for t in draw_targets(11, sp, 200, &[]) {
            if matches!(t.truth.kind, Kind::Star | Kind::Std) {
                nstar += 1;
                let teff_on = CLASSES
                    .iter()
                    .filter(|c| c.spectype == "STAR")
                    .any(|c| c.teff_lattice().contains(t.truth.teff));
                assert!(
                    !teff_on,
                    "simulated Teff {} is a training value",
                    t.truth.teff
                );
                assert!(!lattices::STAR_LOGG.contains(t.truth.logg));
                assert!(!lattices::STAR_FEH.contains(t.truth.feh));
            }
            if t.truth.kind != Kind::Sky && t.truth.kind != Kind::Dead {
                assert!(
                    t.truth.z.abs() > 0.0,
                    "templates are at rest, targets are not"
                );
            }
        }
    }
    assert!(nstar > 50);
}

/// The CI-sized observation: the DESI preset's cameras binned 2× (1.6 Å pixels) to keep the
/// debug-build test fast, Gaussian resolution σ = 1.6 Å, noise density 0.4·√1.6 (0.4 per
/// 1.6 Å pixel: sky-limited, roughly a 1000 s DESI dark exposure).
fn ci_observation(seed: u64, nfibers: usize) -> TruthSpecOptions {
    TruthSpecOptions {
        seed,
        nfibers,
        bin: 2,
        sigma_res: 1.6,
        ndiag: 11,
        noise: 0.4 * 1.6f64.sqrt(),
    }
}

/// Success counts of one fit of simulated targets.
#[derive(Debug, Default)]
pub struct Score {
    /// Targets fitted (sky and dead fibers excluded).
    pub n: usize,
    /// ZWARN = 0.
    pub conf: usize,
    /// ZWARN = 0 and |Δz|/(1+z) < 0.0033.
    pub good: usize,
    /// ZWARN = 0 and |Δz|/(1+z) ≥ 0.0033.
    pub cat: usize,
    /// SPECTYPE differs from the truth's.
    pub wrongtype: usize,
}

/// Fits the simulated targets of `obs` with `templates` (the spx-redshift path: spectra →
/// prepare_targets with the sky mask → fit) and counts successes; prints every catastrophic.
pub fn score(
    templates: Vec<spx::io::templates::Template>,
    obs: &TruthSpecOptions,
) -> Result<Score, String> {
    let t0 = std::time::Instant::now();
    let (spectra, truths) = simulate(obs);
    eprintln!("simulated in {:.1} s", t0.elapsed().as_secs_f64());
    let g = grids(&spectra);
    let prepared = prepare(templates, &g).map_err(|e| e.to_string())?;
    let ids: Vec<i64> = truths.iter().map(|t| t.targetid).collect();
    let mut sc = Score {
        n: truths.len(),
        ..Score::default()
    };
    // the same counts per simulated kind (ELG, LRG, QSO, STAR, STD), reported at the end
    let mut per: std::collections::BTreeMap<String, Score> = Default::default();
    for (chunk, tchunk) in ids.chunks(256).zip(truths.chunks(256)) {
        let targets = prepare_targets(&spectra, chunk, true);
        let res = fit(&prepared, &g, &targets, &FitOptions::default());
        for (k, (truth, ranked)) in tchunk.iter().zip(&res.ranked).enumerate() {
            let best = &ranked[0].cand;
            let (kind, ztrue) = (truth.kind, truth.z);
            let dz = (best.z - ztrue).abs() / (1.0 + ztrue);
            let pk = per.entry(format!("{kind:?}")).or_default();
            pk.n += 1;
            if best.spectype != kind.spectype() {
                sc.wrongtype += 1;
                pk.wrongtype += 1;
            }
            if best.zwarn != 0 {
                continue;
            }
            sc.conf += 1;
            pk.conf += 1;
            if dz < 0.0033 {
                sc.good += 1;
                pk.good += 1;
            } else {
                sc.cat += 1;
                pk.cat += 1;
                let second = ranked.get(1).map(|r| &r.cand);
                // Diagnosis: χ² of the true type at the truth (best of a ±300 km/s, 61-point
                // grid). Below the fitted χ², the search missed the truth; above it, the
                // templates model the truth worse than the wrong answer.
                let tg = &targets[k];
                let zz: Vec<f64> = (0..61)
                    .map(|i| ztrue + (i as f64 - 30.0) * 10.0 / 299_792.458 * (1.0 + ztrue))
                    .collect();
                let chi2_true = prepared
                    .iter()
                    .filter(|p| p.t.spectype == kind.spectype())
                    .filter_map(|p| eval_at(p, &g, tg, &zz))
                    .flat_map(|(c, _)| c)
                    .fold(f64::INFINITY, f64::min);
                eprintln!(
                    "catastrophic: {:?} {} z_true {ztrue:.4} fit {} {} z {:.4} χ² {:.1} Δχ² {:.1}; \
                     next {} z {:.4}; χ² at truth {:.1} ({:+.1})",
                    kind,
                    truth.targetid,
                    best.spectype,
                    best.subtype,
                    best.z,
                    best.chi2,
                    ranked[0].deltachi2,
                    second.map(|c| c.spectype.as_str()).unwrap_or("-"),
                    second.map(|c| c.z).unwrap_or(f64::NAN),
                    chi2_true,
                    chi2_true - best.chi2,
                );
            }
        }
    }
    eprintln!("fitted in {:.1} s", t0.elapsed().as_secs_f64());
    for (k, p) in &per {
        report(&format!("  {k}:"), p);
    }
    Ok(sc)
}

/// One-sided upper confidence limit (Clopper–Pearson, level `1 − alpha`) of a binomial rate
/// after `k` events in `n` trials: the p at which P(X ≤ k | n, p) = alpha.
fn binomial_upper(k: usize, n: usize, alpha: f64) -> f64 {
    let cdf = |p: f64| -> f64 {
        // P(X ≤ k) summed in log space (n up to a few thousand).
        let (lp, lq) = (p.ln(), (1.0 - p).ln());
        let mut lc = 0.0; // ln C(n, 0)
        let mut total = 0.0;
        for i in 0..=k {
            if i > 0 {
                lc += ((n - i + 1) as f64).ln() - (i as f64).ln();
            }
            total += (lc + i as f64 * lp + (n - i) as f64 * lq).exp();
        }
        total
    };
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if cdf(mid) > alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Prints a score with binomial uncertainties: rate ± √(p(1−p)/n) and the one-sided 95%
/// Clopper–Pearson upper limit of the catastrophic rate.
fn report(label: &str, s: &Score) {
    let c = s.conf.max(1) as f64;
    let pc = s.cat as f64 / c;
    let pf = (s.conf - s.good) as f64 / c;
    eprintln!(
        "{label} {} targets: ZWARN=0 {} ({:.1}%), good {} ({:.2}% ± {:.2}%), catastrophic {} \
         ({:.2}% ± {:.2}%, 95% upper limit {:.2}%), wrong type {}",
        s.n,
        s.conf,
        100.0 * s.conf as f64 / s.n.max(1) as f64,
        s.good,
        100.0 * (1.0 - pf),
        100.0 * (pf * (1.0 - pf) / c).sqrt(),
        s.cat,
        100.0 * pc,
        100.0 * (pc * (1.0 - pc) / c).sqrt(),
        100.0 * binomial_upper(s.cat, s.conf, 0.05),
        s.wrongtype
    );
}

#[test]
fn binomial_upper_limit_matches_known_values() {
    // 0 events in n: (1 − p)^n = α → p = 1 − α^(1/n) (the "rule of three" for α = 0.05).
    let p = binomial_upper(0, 1000, 0.05);
    assert!((p - (1.0 - 0.05f64.powf(1e-3))).abs() < 1e-9);
    // 5 in 1000: the Clopper–Pearson one-sided 95% limit is
    // scipy.stats.beta.ppf(0.95, 6, 995) = 0.0104841.
    let p = binomial_upper(5, 1000, 0.05);
    assert!((p - 0.0104841).abs() < 1e-6, "{p}");
}

#[test]
fn shipped_templates_recover_simulated_redshifts() {
    let templates = load_templates(&shipped_dir()).unwrap();
    // 48 fibers: 42 targets after sky and dead fibers (seed 11 of the simulator's draws,
    // held out from the training lattices above).
    let Score {
        n, conf, good, cat, ..
    } = score(templates, &ci_observation(11, 48)).unwrap();
    report(
        "CI",
        &Score {
            n,
            conf,
            good,
            cat,
            ..Score::default()
        },
    );
    // Issue target: ≥ 99% good and ≤ 0.5% catastrophic among ZWARN = 0. With ~35 confident
    // targets, a true 1% failure rate gives ≥ 2 failures with probability 5% (binomial), so
    // two failures would be strong evidence against the target: allow at most one. At this
    // noise ~20% of ELGs/LRGs have DELTACHI2 < 9 (measured on the one-camera version of this
    // test: 33 of 42 confident, all good); require ≥ 60% confident so that a fitter flagging
    // everything cannot pass.
    assert!(conf * 10 >= n * 6, "only {conf}/{n} with ZWARN = 0");
    assert!(cat <= 1, "{cat} catastrophic among {conf}");
    assert!(good + 1 >= conf);
}

/// Seed of the sample the fitter and templates were diagnosed and adjusted on.
const TUNING_SEED: u64 = 23;
/// Seed of the held-out sample the figures are quoted on (never used for adjustments).
const HELD_OUT_SEED: u64 = 37;

/// Benchmark-sized measurement on the DESI grid (0.8 Å, σ = 0.8 Å; release build):
/// `cargo test --release -p spx-bins --test templates -- --ignored --nocapture`.
/// `SPX_TEMPLATES_NFIBERS` (default 1500: ≈ 1330 targets, ≈ 1100 with ZWARN = 0, enough to
/// resolve 0.5% to ±0.2%) and `SPX_TEMPLATES_SEED` (default the held-out seed 37; 23 is the
/// tuning sample).
#[test]
#[ignore = "benchmark-sized measurement, run in release"]
fn full_size_success_rate() {
    let env = |k: &str| std::env::var(k).ok().and_then(|s| s.parse::<u64>().ok());
    let nf = env("SPX_TEMPLATES_NFIBERS").unwrap_or(1500) as usize;
    let seed = env("SPX_TEMPLATES_SEED").unwrap_or(HELD_OUT_SEED);
    let label = if seed == TUNING_SEED {
        "TUNING"
    } else {
        "HELD-OUT"
    };
    let obs = TruthSpecOptions::desi(seed, nf);
    let templates = load_templates(&shipped_dir()).unwrap();
    let sc = score(templates, &obs).unwrap();
    report(&format!("{label} seed {seed} default templates:"), &sc);
    // The same spectra with redrock's real templates, for comparison (reported, not asserted:
    // their GALAXY basis is an early one).
    if std::env::var_os("SPX_TEMPLATES_SKIP_REAL").is_none() {
        if let Some(list) = spx::testsupport::shared_file("redrock-templates/templates-spx.txt") {
            let real = load_templates(&list).unwrap();
            match score(real, &obs) {
                Err(e) => eprintln!("redrock templates not fitted: {e}"),
                Ok(r) => report(&format!("{label} seed {seed} redrock templates:"), &r),
            }
        }
    }
    // Issue target: failure rate ≤ 1% and catastrophic rate ≤ 0.5% among confident. A sample
    // of `conf` at exactly those rates has counts with mean μ = rate·conf and σ ≈ √μ; allow
    // μ + 3√μ (exceeded with probability < 1% at the target rates), so the test fails only on
    // strong evidence against the target. Measured figures: see README.
    let bound = |rate: f64| {
        let mu = rate * sc.conf as f64;
        mu + 3.0 * mu.sqrt()
    };
    assert!(
        ((sc.conf - sc.good) as f64) <= bound(0.01),
        "{} failures",
        sc.conf - sc.good
    );
    assert!((sc.cat as f64) <= bound(0.005), "{} catastrophic", sc.cat);
}
