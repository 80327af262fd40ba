//! The calibration stages against the simulator's truth, through the real chain of binaries:
//! spx-sim (mini preset: a flat and a science exposure with pinned targets) → spx-preproc →
//! spx-extract with the simulator's exact PSF (`--truth-psf`) → spx-fiberflat → spx-sky →
//! spx-stdstars → spx-fluxcal --cframe, as in scripts/demo and pipeline/nightly.yaml.
//!
//! Checked (issue 6, "Must be true"): the fiber flat recovers the simulated throughputs
//! (FIBERTHRU) within 0.5%; the sky model − true convolved sky is no worse than 1.05× desispec's
//! `compute_sky` on the same frame and fiber flat (needs the Python env; skipped without it
//! unless SPX_REQUIRE_SHARED_DATA is set); flux-calibrated non-standard targets match the true
//! flux within 2% rms broadband; the standard stars' fitted Teff within 150 K.
//!
//! Isolating these stages from the extraction: with the exact PSF, the flat's extracted flux
//! matches the truth per fiber to ≤ 1.5e-3 (r, z: 5e-4), but the science frames' band sums are
//! low by 1–5% (median 0.991 b, 0.981 r, 0.947 z; down to 0.86 in z), and at bright sky lines
//! they depart from R·truth by several σ (under study with the simulator; not a calibration
//! effect). So the flat is compared in ratios normalised over fibers, the cframes through the
//! standards measured on the same frames (a common factor cancels), and the sky model against
//! desispec's on the very same frame rather than against an absolute figure.

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2};
use spx::io::fiberflat::FiberFlat;
use spx::io::fits::FitsReader;
use spx::io::frame::Frame;
use spx::io::sky::SkyModel;
use spx::io::stdstars::StdStarModels;
use spx::io::table::Table;
use spx::testsupport::python;

const CAMERAS: [&str; 3] = ["b0", "r0", "z0"];
const FLAT: i64 = 3;
const SCIENCE: i64 = 5;

/// The 20 fibers of a mini petal: 6 sky fibers (the mini default has 4), 4 standards, and
/// targets bright enough that the broadband flux comparison is not noise-limited (σ of a band
/// sum ≲ 0.7%, printed below). Fiber 2, left unpinned, stays the simulator's broken fiber of
/// this tile (dead in the flat too: a pinned target there would be lit in the science
/// exposure only).
const TARGETS: &str = "\
- {fiber: 0, kind: sky}
- {fiber: 4, kind: sky}
- {fiber: 8, kind: sky}
- {fiber: 11, kind: sky}
- {fiber: 15, kind: sky}
- {fiber: 19, kind: sky}
- {fiber: 10, kind: std, mag: 17.0}
- {fiber: 7, kind: std, mag: 17.5}
- {fiber: 13, kind: std, mag: 18.0}
- {fiber: 17, kind: std, mag: 17.2}
- {fiber: 1, kind: qso, mag: 18.5}
- {fiber: 3, kind: lrg, mag: 18.0}
- {fiber: 5, kind: elg, mag: 19.0}
- {fiber: 6, kind: star, mag: 18.0}
- {fiber: 9, kind: qso, mag: 19.0}
- {fiber: 12, kind: star, mag: 17.5}
- {fiber: 14, kind: elg, mag: 19.0}
- {fiber: 16, kind: lrg, mag: 18.5}
- {fiber: 18, kind: star, mag: 19.0}
";

fn run(name: &str, args: &[&str], dir: &Path) {
    common::bin(name)
        .current_dir(dir)
        .env("SPX_THREADS", "2")
        .args(args)
        .arg("-q")
        .assert()
        .success();
}

fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

fn truth_image(truth: &Path, hdu: &str) -> Array2<f64> {
    FitsReader::open(truth).unwrap().image2::<f64>(hdu).unwrap()
}

fn truth_table(truth: &Path) -> Table {
    let mut r = FitsReader::open(truth).unwrap();
    Table::read(&mut r, "TRUTH").unwrap()
}

/// `WMIN,WMAX,DW` of the truth's grid of `camera`, so that the flat and the science frames
/// (whose PSFs differ by flexure) are extracted on the truth's wavelengths.
fn wave_arg(truth: &Path, camera: &str) -> String {
    let w: Array1<f64> = FitsReader::open(truth)
        .unwrap()
        .image1(&format!("WAVE_{}", camera.to_uppercase()))
        .unwrap();
    let n = w.len();
    format!(
        "{},{},{}",
        w[0],
        w[n - 1],
        (w[n - 1] - w[0]) / (n - 1) as f64
    )
}

/// Simulates and reduces the two exposures in `d`.
fn simulate_and_reduce(d: &Path) {
    std::fs::write(d.join("targets.yaml"), TARGETS).unwrap();
    for (kind, e) in [("flat", FLAT), ("science", SCIENCE)] {
        let (es, raw, truth, psf) = (
            e.to_string(),
            format!("raw-{e}.fits"),
            format!("truth-{e}.fits"),
            format!("psf-{{camera}}-{e}.fits"),
        );
        let mut args = vec![
            kind,
            "--preset",
            "mini",
            "--expid",
            &es,
            "--seed",
            &es,
            "--no-truth-images",
            "-o",
            &raw,
            "--truth",
            &truth,
            "--truth-psf",
            &psf,
        ];
        if kind == "science" {
            args.extend(["--targets", "targets.yaml"]);
        }
        run("spx-sim", &args, d);
    }
    let truth = path(d, &format!("truth-{SCIENCE}.fits"));
    for cam in CAMERAS {
        let w = wave_arg(&truth, cam);
        for e in [FLAT, SCIENCE] {
            let (raw, pre, psf, frame) = (
                format!("raw-{e}.fits"),
                format!("preproc-{cam}-{e}.fits"),
                format!("psf-{cam}-{e}.fits"),
                format!("frame-{cam}-{e}.fits"),
            );
            // No cosmic-ray search: the simulation has none, and preproc's masking is tested
            // in tests/preproc.rs; here only the calibration chain is under test.
            run(
                "spx-preproc",
                &["-i", &raw, "--camera", cam, "-o", &pre, "--no-cosmics"],
                d,
            );
            run(
                "spx-extract",
                &["-i", &pre, "-p", &psf, "-w", &w, "-o", &frame],
                d,
            );
        }
        let (flat, ff, sci, sky) = (
            format!("frame-{cam}-{FLAT}.fits"),
            format!("fiberflat-{cam}.fits"),
            format!("frame-{cam}-{SCIENCE}.fits"),
            format!("sky-{cam}.fits"),
        );
        run("spx-fiberflat", &["-i", &flat, "-o", &ff], d);
        run("spx-sky", &["-i", &sci, "--fiberflat", &ff, "-o", &sky], d);
    }
    let list = |kind: &str| -> Vec<String> {
        CAMERAS
            .iter()
            .map(|c| match kind {
                "frame" => format!("frame-{c}-{SCIENCE}.fits"),
                _ => format!("{kind}-{c}.fits"),
            })
            .collect()
    };
    let mut args: Vec<String> = vec!["--frames".into()];
    args.extend(list("frame"));
    args.push("--fiberflats".into());
    args.extend(list("fiberflat"));
    args.push("--skies".into());
    args.extend(list("sky"));
    args.extend(["-o".into(), "stdstars.fits".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("spx-stdstars", &args, d);
    for cam in CAMERAS {
        let (sci, ff, sky, fc, cf) = (
            format!("frame-{cam}-{SCIENCE}.fits"),
            format!("fiberflat-{cam}.fits"),
            format!("sky-{cam}.fits"),
            format!("fluxcalib-{cam}.fits"),
            format!("cframe-{cam}.fits"),
        );
        run(
            "spx-fluxcal",
            &[
                "-i",
                &sci,
                "--fiberflat",
                &ff,
                "--sky",
                &sky,
                "--stdstars",
                "stdstars.fits",
                "-o",
                &fc,
                "--cframe",
                &cf,
            ],
            d,
        );
    }
}

/// Fiber flat: per fiber, the median over wavelength of FIBERFLAT over the true FIBERTHRU,
/// normalised by its mean over the live fibers (the flat's overall level is a convention).
fn check_fiberflat(d: &Path) {
    let thru = truth_table(&path(d, &format!("truth-{FLAT}.fits")))
        .f64s("FIBERTHRU")
        .unwrap();
    let live: Vec<usize> = (0..thru.len()).filter(|&f| thru[f] > 0.0).collect();
    for cam in CAMERAS {
        let ff = FiberFlat::read(path(d, &format!("fiberflat-{cam}.fits"))).unwrap();
        let ratio: Vec<f64> = live
            .iter()
            .map(|&f| {
                let mut v = ff.fiberflat.row(f).to_vec();
                v.sort_by(f64::total_cmp);
                v[v.len() / 2] / thru[f]
            })
            .collect();
        let mean = ratio.iter().sum::<f64>() / ratio.len() as f64;
        let worst = ratio
            .iter()
            .map(|r| (r / mean - 1.0).abs())
            .fold(0.0, f64::max);
        eprintln!(
            "{cam}: fiber flat / FIBERTHRU, worst fiber {:.3}%",
            100.0 * worst
        );
        // The issue's requirement. Noise is far below it: the lamp gives ~6e4 electrons per
        // bin and fiber, 0.4% per bin, ≲ 0.02% for a median over ~900 bins; measured ≤ 0.4%.
        assert!(worst <= 0.005, "{cam}: {worst}");
    }
}

/// Standard stars: the four pinned standards survive the cuts, and their Teff is within
/// 150 K of the truth (the issue's requirement). Measured |ΔTeff| ≤ 10 K (−3, +10, −4, −6 K
/// on the full-range mini preset; ≤ 77 K before the simulator put lines on the extraction grid
/// and mini covered DESI's wavelengths). Grid interpolation is ≤ 18 K (noise-free fits between
/// nodes, `stdstars::fit` tests) and photon noise ≈ 21 K rms at 40 per pixel
/// (`teff_scatter_at_snr`).
fn check_stdstars(d: &Path) -> Vec<i32> {
    let m = StdStarModels::read(path(d, "stdstars.fits")).unwrap();
    assert_eq!(m.fibers, vec![7, 10, 13, 17]);
    let truth = truth_table(&path(d, &format!("truth-{SCIENCE}.fits")));
    let (tteff, tlogg, tfeh) = (
        truth.f64s("TEFF").unwrap(),
        truth.f64s("LOGG").unwrap(),
        truth.f64s("FEH").unwrap(),
    );
    let col = |k: &str| m.metadata.f64s(k).unwrap();
    let (teff, logg, feh, snr) = (col("TEFF"), col("LOGG"), col("FEH"), col("BLUE_SNR"));
    for (k, &f) in m.fibers.iter().enumerate() {
        let (t, i) = (tteff[f as usize], f as usize);
        eprintln!(
            "standard fiber {f}: Teff {:.0} K, truth {t:.0} K (Δ {:+.0} K); log g {:.2} ({:.2}), \
             [Fe/H] {:.2} ({:.2}), blue S/N {:.1} per √Å",
            teff[k],
            teff[k] - t,
            logg[k],
            tlogg[i],
            feh[k],
            tfeh[i],
            snr[k]
        );
        assert!(
            (teff[k] - t).abs() <= 150.0,
            "fiber {f}: {} vs {t}",
            teff[k]
        );
    }
    m.fibers
}

/// Flux calibration: for every live non-standard target and camera, the band sum of the
/// cframe flux over the band sum of the true flux (1e-17 erg/s/cm²/Å, before resolution; a
/// band sum does not depend on the resolution away from the ends, so 20 bins are left out at
/// each end). rms of (ratio − 1) within 2% (the issue's requirement); the pinned magnitudes
/// keep the noise of a ratio below 0.7% (asserted, so the check stays meaningful).
fn check_cframes(d: &Path, standards: &[i32]) {
    let truth_path = path(d, &format!("truth-{SCIENCE}.fits"));
    let mut sum2 = 0.0;
    let mut noise2 = 0.0;
    let mut n = 0.0;
    let mut worst: f64 = 0.0;
    for cam in CAMERAS {
        let cf = Frame::read(path(d, &format!("cframe-{cam}.fits"))).unwrap();
        let tflux = truth_image(&truth_path, &format!("FLUX_{}", cam.to_uppercase()));
        let objtype = cf.fibermap.objtypes();
        let status = cf.fibermap.fiberstatus();
        let fibers = cf.fibermap.fibers();
        let nw = cf.nwave();
        for i in 0..cf.nspec() {
            if objtype[i] != "TGT" || status[i] != 0 || standards.contains(&fibers[i]) {
                continue;
            }
            let (mut a, mut b, mut var) = (0.0, 0.0, 0.0);
            for j in 20..nw - 20 {
                let iv = cf.ivar[[i, j]];
                if iv > 0.0 {
                    a += cf.flux[[i, j]];
                    b += tflux[[i, j]];
                    var += 1.0 / iv;
                }
            }
            let (r, s) = (a / b - 1.0, var.sqrt() / b);
            eprintln!(
                "{cam} fiber {}: cframe/truth − 1 = {:+.2}% (noise {:.2}%)",
                fibers[i],
                100.0 * r,
                100.0 * s
            );
            sum2 += r * r;
            noise2 += s * s;
            n += 1.0;
            worst = worst.max(s);
        }
    }
    let (rms, noise) = ((sum2 / n).sqrt(), (noise2 / n).sqrt());
    eprintln!(
        "cframe broadband: rms {:.2}% over {n} (fiber, camera), noise rms {:.2}%",
        100.0 * rms,
        100.0 * noise
    );
    assert_eq!(n, 27.0, "9 targets × 3 cameras");
    assert!(worst < 0.007, "targets too faint for the check: {worst}");
    assert!(rms <= 0.02, "{rms}");
}

/// desispec 0.70 `compute_sky` on our frame after desispec's own `apply_fiberflat` with our
/// fiber flat (all defaults, as in ../shared/data/README.md, sky/), one Python start for all
/// cameras. It also opens the chain's own sky, fluxcalib, cframe and stdstars files with
/// desispec's readers. Arguments: STDSTARS, then per camera FRAME FIBERFLAT OUT SKY FLUXCALIB
/// CFRAME.
const DESISPEC_SKY: &str = r#"
import sys
import numpy as np
from desispec.io import (read_frame, read_fiberflat, write_sky, read_sky,
                         read_flux_calibration, read_stdstar_models)
from desispec.fiberflat import apply_fiberflat
from desispec.sky import compute_sky
flux, wave, fibers, meta = read_stdstar_models(sys.argv[1])
assert list(fibers) == [7, 10, 13, 17], fibers
a = sys.argv[2:]
for k in range(0, len(a), 6):
    frame, fiberflat, out, sky, fluxcalib, cframe = a[k:k + 6]
    fr = read_frame(frame)
    apply_fiberflat(fr, read_fiberflat(fiberflat))
    write_sky(out, compute_sky(fr))
    s, fc, cf = read_sky(sky), read_flux_calibration(fluxcalib), read_frame(cframe)
    assert s.flux.shape == fr.flux.shape and fc.calib.shape == fr.flux.shape
    assert cf.flux.shape == fr.flux.shape and cf.resolution_data.shape[0] == fr.nspec
    assert np.all(np.isfinite(cf.flux)) and np.all(cf.ivar >= 0)
    assert cf.meta['BUNIT'].startswith('10**-17'), cf.meta['BUNIT']
print("ok")
"#;

/// rms over the live fibers' pixels of (model − truth)·σ⁻¹, with truth = R_fiber · (true sky
/// electrons per bin / Δλ) / fiberflat (the sky model is in flat-fielded frame units) and σ
/// the flat-fielded frame noise.
fn sky_error(frame: &Frame, ff: &FiberFlat, truth_sky: &Array2<f64>, model: &Array2<f64>) -> f64 {
    let dw = (frame.wave[frame.nwave() - 1] - frame.wave[0]) / (frame.nwave() - 1) as f64;
    let status = frame.fibermap.fiberstatus();
    let (mut sum2, mut n) = (0.0, 0.0);
    for i in 0..frame.nspec() {
        if status[i] != 0 {
            continue;
        }
        let x: Vec<f64> = truth_sky.row(i).iter().map(|v| v / dw).collect();
        let conv = frame.resolution_of(i).apply(&x).unwrap();
        for j in 0..frame.nwave() {
            let (f, iv) = (ff.fiberflat[[i, j]], frame.ivar[[i, j]]);
            if iv > 0.0 && f > 0.0 {
                let t = conv[j] / f;
                sum2 += (model[[i, j]] - t).powi(2) * iv * f * f;
                n += 1.0;
            }
        }
    }
    (sum2 / n).sqrt()
}

/// Also: desispec's readers open the chain's files (see [`DESISPEC_SKY`]).
fn check_sky_against_desispec(d: &Path) {
    let Some(py) = python() else {
        return;
    };
    let truth_path = path(d, &format!("truth-{SCIENCE}.fits"));
    let files = |cam: &str| {
        (
            path(d, &format!("frame-{cam}-{SCIENCE}.fits")),
            path(d, &format!("fiberflat-{cam}.fits")),
            path(d, &format!("sky-{cam}.fits")),
            path(d, &format!("desisky-{cam}.fits")),
        )
    };
    let mut cmd = std::process::Command::new(&py);
    cmd.arg("-c")
        .arg(DESISPEC_SKY)
        .arg(path(d, "stdstars.fits"));
    for cam in CAMERAS {
        let (fr, ff, ours, theirs) = files(cam);
        cmd.arg(fr).arg(ff).arg(theirs).arg(ours);
        cmd.arg(path(d, &format!("fluxcalib-{cam}.fits")));
        cmd.arg(path(d, &format!("cframe-{cam}.fits")));
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for cam in CAMERAS {
        let (fr, ff, ours, theirs) = files(cam);
        let frame = Frame::read(&fr).unwrap();
        let flat = FiberFlat::read(&ff).unwrap();
        let tsky = truth_image(&truth_path, &format!("SKYPHOT_{}", cam.to_uppercase()));
        let e_spx = sky_error(&frame, &flat, &tsky, &SkyModel::read(&ours).unwrap().flux);
        let e_desi = sky_error(&frame, &flat, &tsky, &SkyModel::read(&theirs).unwrap().flux);
        eprintln!("{cam}: (sky − R·true sky)/σ rms: spx {e_spx:.4}, desispec {e_desi:.4}");
        // The issue's requirement. In r and z both are dominated (≈2.5σ, 3.7σ) by the
        // science extraction's mismatch with the truth at bright sky lines, which is common to
        // both models; in b (continuum) both reach ≈0.34σ ≈ 0.84/√6 sky fibers, as the
        // issue's 0.096σ with 80 sky fibers scales.
        assert!(
            e_spx <= 1.05 * e_desi,
            "{cam}: {e_spx} vs desispec {e_desi}"
        );
    }
}

#[test]
fn calibration_chain_recovers_simulated_truth() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t0 = std::time::Instant::now();
    simulate_and_reduce(d);
    eprintln!(
        "chain (sim, preproc, extract, calibration; debug build): {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    check_fiberflat(d);
    let standards = check_stdstars(d);
    check_cframes(d, &standards);
    check_sky_against_desispec(d);
}
