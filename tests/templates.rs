//! spx-templates: the shipped default template set is readable by spx and redrock, is built
//! from spectra held out from the simulator's draws, and fits simulated targets.

#[path = "common/mod.rs"]
mod common;

use std::path::PathBuf;

use spx::io::templates::load_templates;
use spx::redshift::rebin::centers2edges;
use spx::redshift::target::{CameraData, Grid, Target};
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

/// Observed grid of the fit test: one camera 3600–9824 Å in 1.6 Å pixels (DESI's 0.8 Å
/// binned 2×, to keep the debug-build test fast), Gaussian resolution σ = 1 pixel.
const PIX: f64 = 1.6;
const SIGMA_PIX: f64 = 1.0;
const NDIAG: usize = 11;
/// Noise per pixel, 1e-17 erg/s/cm²/Å: sky-limited, roughly a 1000 s DESI dark exposure
/// binned to 1.6 Å.
const NOISE: f64 = 0.4;

fn simulate(n_fibers: usize, seed: u64) -> (Grid, Vec<(Target, Kind, f64)>) {
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};
    let nw = ((9824.0 - 3600.0) / PIX) as usize + 1;
    let wave: Vec<f64> = (0..nw).map(|i| 3600.0 + i as f64 * PIX).collect();
    let grid = Grid {
        band: "brz".into(),
        edges: centers2edges(&wave),
        wave: wave.clone(),
        ndiag: NDIAG,
    };
    let half = (NDIAG / 2) as isize;
    let kern: Vec<f64> = {
        let k: Vec<f64> = (0..NDIAG)
            .map(|d| {
                let x = (d as isize - half) as f64 / SIGMA_PIX;
                (-0.5 * x * x).exp()
            })
            .collect();
        let s: f64 = k.iter().sum();
        k.into_iter().map(|v| v / s).collect()
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0, NOISE).unwrap();
    let mut out = Vec::new();
    for t in draw_targets(seed, 0, n_fibers, &[]) {
        let Some(sed) = t.sed else { continue };
        // pixel means of the SED (8 midpoint samples), then R, then noise
        let truef: Vec<f64> = wave
            .iter()
            .map(|&w| {
                (0..8)
                    .map(|s| sed.density(w + PIX * ((s as f64 + 0.5) / 8.0 - 0.5)))
                    .sum::<f64>()
                    / 8.0
            })
            .collect();
        let mut rrow = vec![0.0; nw * NDIAG];
        let mut flux = vec![0.0; nw];
        for i in 0..nw {
            for d in 0..NDIAG {
                // rrow[i*ndiag + d] = R[i, i + half − d]
                let col = i as isize + half - d as isize;
                if col >= 0 && (col as usize) < nw {
                    rrow[i * NDIAG + d] = kern[d];
                    flux[i] += kern[d] * truef[col as usize];
                }
            }
            flux[i] += normal.sample(&mut rng);
        }
        let ivar = vec![1.0 / (NOISE * NOISE); nw];
        // edge rows lose part of their kernel (row sum < 0.99): masked as redrock does
        let mut ivar = ivar;
        for i in 0..nw {
            let s: f64 = rrow[i * NDIAG..(i + 1) * NDIAG].iter().sum();
            if s < 0.99 {
                ivar[i] = 0.0;
            }
        }
        let fwf = flux.iter().zip(&ivar).map(|(f, w)| w * f * f).sum();
        let wsum = ivar.iter().sum();
        let npixels = ivar.iter().filter(|&&w| w > 0.0).count();
        out.push((
            Target {
                targetid: t.truth.targetid,
                cams: vec![CameraData { rrow, ivar, flux }],
                fwf,
                wsum,
                npixels,
            },
            t.truth.kind,
            t.truth.z,
        ));
    }
    (grid, out)
}

/// Fits simulated targets with `templates`; returns (n, confident, good, catastrophic, wrong type).
pub fn score(
    templates: Vec<spx::io::templates::Template>,
    n_fibers: usize,
    seed: u64,
) -> Result<(usize, usize, usize, usize, usize), String> {
    let t0 = std::time::Instant::now();
    let (grid, sims) = simulate(n_fibers, seed);
    eprintln!("simulated in {:.1} s", t0.elapsed().as_secs_f64());
    let grids = vec![grid];
    let prepared = prepare(templates, &grids).map_err(|e| e.to_string())?;
    let targets: Vec<Target> = sims.iter().map(|s| s.0.clone()).collect();
    let res = fit(&prepared, &grids, &targets, &FitOptions::default());
    eprintln!("fitted in {:.1} s", t0.elapsed().as_secs_f64());
    let (mut conf, mut good, mut cat, mut wrongtype) = (0, 0, 0, 0);
    for ((_, kind, ztrue), ranked) in sims.iter().zip(&res.ranked) {
        let best = &ranked[0].cand;
        let dz = (best.z - ztrue).abs() / (1.0 + ztrue);
        if best.spectype != kind.spectype() {
            wrongtype += 1;
        }
        if best.zwarn != 0 {
            eprintln!(
                "ZWARN {}: {:?} z_true {ztrue:.4} fit {} z {:.4} Δχ² {:.1}",
                best.zwarn, kind, best.spectype, best.z, ranked[0].deltachi2
            );
        }
        if best.zwarn == 0 {
            conf += 1;
            if dz < 0.0033 {
                good += 1;
            } else {
                cat += 1;
                eprintln!(
                    "catastrophic: {:?} z_true {ztrue:.4} fit {} z {:.4} Δχ² {:.1}",
                    kind, best.spectype, best.z, ranked[0].deltachi2
                );
            }
        }
    }
    Ok((sims.len(), conf, good, cat, wrongtype))
}

#[test]
fn shipped_templates_recover_simulated_redshifts() {
    let templates = load_templates(&shipped_dir()).unwrap();
    // 48 fibers: 42 targets after sky and dead fibers (seed 11 of the simulator's draws,
    // held out from the training lattices above).
    let (n, conf, good, cat, wrongtype) = score(templates, 48, 11).unwrap();
    eprintln!(
        "{n} targets, {conf} ZWARN=0, {good} good, {cat} catastrophic, {wrongtype} wrong type"
    );
    // Issue target: ≥ 99% good and ≤ 0.5% catastrophic among ZWARN = 0. With ~35 confident
    // targets, a true 1% failure rate gives ≥ 2 failures with probability 5% (binomial), so
    // two failures would be strong evidence against the target: allow at most one. At this
    // noise ~20% of ELGs/LRGs have DELTACHI2 < 9 (measured: 33 of 42 confident, all good);
    // require ≥ 60% confident so that a fitter flagging everything cannot pass.
    assert!(conf * 10 >= n * 6, "only {conf}/{n} with ZWARN = 0");
    assert!(cat <= 1, "{cat} catastrophic among {conf}");
    assert!(good + 1 >= conf);
}

/// Full-size measurement (release build; `SPX_TEMPLATES_NFIBERS`, default 500 fibers):
/// `cargo test --release -p spx-bins --test templates -- --ignored --nocapture`.
#[test]
#[ignore = "full-size measurement, run in release"]
fn full_size_success_rate() {
    let nf: usize = std::env::var("SPX_TEMPLATES_NFIBERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let templates = load_templates(&shipped_dir()).unwrap();
    let (n, conf, good, cat, wrongtype) = score(templates, nf, 23).unwrap();
    eprintln!(
        "FULL {n} targets: ZWARN=0 {conf} ({:.1}%), good {good} ({:.2}% of confident), \
         catastrophic {cat} ({:.2}%), wrong type {wrongtype}",
        100.0 * conf as f64 / n as f64,
        100.0 * good as f64 / conf.max(1) as f64,
        100.0 * cat as f64 / conf.max(1) as f64
    );
    // The same spectra with redrock's real templates, for comparison (reported, not asserted:
    // their GALAXY basis is an early one).
    if let Some(list) = spx::testsupport::shared_file("redrock-templates/templates-spx.txt") {
        let real = load_templates(&list).unwrap();
        match score(real, nf, 23) {
            Err(e) => eprintln!("REDROCK-TEMPLATES not fitted: {e}"),
            Ok((n, conf, good, cat, wrongtype)) => eprintln!(
                "REDROCK-TEMPLATES {n} targets: ZWARN=0 {conf} ({:.1}%), good {good} ({:.2}% of \
             confident), catastrophic {cat} ({:.2}%), wrong type {wrongtype}",
                100.0 * conf as f64 / n as f64,
                100.0 * good as f64 / conf.max(1) as f64,
                100.0 * cat as f64 / conf.max(1) as f64
            ),
        }
    }
    // Issue target: failure rate ≤ 1% and catastrophic rate ≤ 0.5% among confident. A sample
    // of `conf` at exactly those rates has Poisson counts with mean μ = rate·conf; allow
    // μ + 3√μ (exceeded with probability < 1% at the target rates).
    // Measured (500 fibers, seed 23, release, 2026-11-27): 445 targets, 352 confident, 350 good
    // (99.43%), 2 catastrophic (0.57%); redrock's templates on the same spectra: 344
    // confident, 335 good (97.38%), 9 catastrophic (2.62%).
    let bound = |rate: f64| {
        let mu = rate * conf as f64;
        mu + 3.0 * mu.sqrt()
    };
    assert!(
        ((conf - good) as f64) <= bound(0.01),
        "{} failures",
        conf - good
    );
    assert!((cat as f64) <= bound(0.005), "{cat} catastrophic");
}
