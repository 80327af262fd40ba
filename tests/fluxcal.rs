//! spx-stdstars and spx-fluxcal end to end on synthetic exposures built here from the
//! spectral library (the simulator's star model): frame = flat·(sky + R·(C ⊙ truth)) + noise
//! for three cameras, with known truth Teff and flux. Checks: fitted Teff, calibrated flux of
//! non-standard targets against truth, masked ranges, thread independence, the no-standard
//! error, and desispec 0.70's readers on our stdstars, fluxcalib and cframe files.

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, Array3};
use spx::io::fiberflat::FiberFlat;
use spx::io::fibermap::Fibermap;
use spx::io::fits::{Column, ColumnData, Provenance};
use spx::io::frame::Frame;
use spx::io::header::{Header, HeaderValue};
use spx::io::sky::SkyModel;
use spx::io::stdstars::StdStarModels;
use spx::io::table::Table;
use spx::resolution::Resolution;
use spx::speclib::photometry::Band;
use spx::speclib::star::{Star, StarParams};
use spx::speclib::Sed;
use spx::stdstars::grid::{dust_transmission, Tabulated};

const NFIB: usize = 20;
const EBV: f64 = 0.03;
/// Masked range (ivar 0, garbage flux) in fiber 1 (a target) and fiber 0 (a standard), r camera.
const MASKED: (f64, f64) = (6500.0, 6540.0);

/// Deterministic normal deviates (splitmix64 + Box–Muller).
struct Noise(u64);
impl Noise {
    fn u(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (a, b) = (self.u().max(1e-300), self.u());
        (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
    }
}

struct Truth {
    /// per fiber: (is standard, Teff)
    fibers: Vec<(bool, f64)>,
    /// per camera: convolved true flux [NFIB, nwave] (1e-17 erg/s/cm²/Å) and wavelengths
    convolved: Vec<(String, Array1<f64>, Array2<f64>)>,
}

fn star_params(f: usize) -> (bool, StarParams, f64) {
    // every third fiber is a standard (F star); the others span cooler and hotter stars
    let std = f.is_multiple_of(3);
    let x = (f as f64 * 0.618_034).fract();
    let (teff, rmag) = if std {
        (5900.0 + 1000.0 * x, 17.0 + 0.4 * x)
    } else {
        (4600.0 + 4000.0 * x, 18.0)
    };
    let p = StarParams {
        teff,
        logg: if std { 4.1 + 0.3 * x } else { 4.5 },
        feh: -1.3 + 0.8 * x,
        rv: -150.0 + 300.0 * x,
        norm: 1.0,
    };
    (std, p, rmag)
}

/// Truth spectrum (1e-17 erg/s/cm²/Å, reddened) of fiber `f` on `wave`, and FLUX_G/R.
fn truth_spectrum(f: usize, wave: &[f64]) -> (Vec<f64>, f64, f64) {
    let (_, p, rmag) = star_params(f);
    let star = Star::new(p);
    let fine: Vec<f64> = (0..13001).map(|i| 3500.0 + 0.5 * i as f64).collect();
    let red: Vec<f64> = fine
        .iter()
        .map(|&w| star.density(w) * dust_transmission(w, EBV))
        .collect();
    let t = Tabulated {
        wave: &fine,
        flux: &red,
    };
    let scale = 10f64.powf(-0.4 * (rmag - 22.5)) / Band::R.nanomaggies(&t);
    let g = Band::G.nanomaggies(&t) * scale;
    let spec = wave
        .iter()
        .map(|&w| star.density(w) * dust_transmission(w, EBV) * scale)
        .collect();
    (spec, g, 10f64.powf(-0.4 * (rmag - 22.5)))
}

/// Calibration truth: electrons/Å per 1e-17 erg/s/cm²/Å, smooth, different per camera.
fn calib_true(cam: char, w: f64) -> f64 {
    let (c, s) = match cam {
        'b' => (5000.0, 900.0),
        'r' => (6600.0, 1200.0),
        _ => (8400.0, 1300.0),
    };
    4.0 + 14.0 * (-0.5 * ((w - c) / s).powi(2)).exp()
}

fn sky_true(w: f64) -> f64 {
    let lines = [
        5577.3, 6300.3, 6863.9, 7340.9, 7913.7, 8344.6, 8827.1, 9375.9,
    ];
    60.0 + lines
        .iter()
        .map(|&l| 800.0 * (-0.5 * ((w - l) / 0.9).powi(2)).exp())
        .sum::<f64>()
}

fn fibermap(with_std: bool, g: &[f64], r: &[f64]) -> Fibermap {
    let n = NFIB;
    let dt: Vec<i64> = (0..n)
        .map(|f| {
            if with_std && star_params(f).0 {
                1 << 33
            } else {
                0
            }
        })
        .collect();
    let status: Vec<i32> = (0..n).map(|f| if f == 4 { 1 << 2 } else { 0 }).collect();
    let t = Table::new(vec![
        Column::new(
            "TARGETID",
            ColumnData::I64((0..n as i64).map(|i| 1000 + i).collect()),
        ),
        Column::new("PETAL_LOC", ColumnData::I16(vec![0; n])),
        Column::new("FIBER", ColumnData::I32((0..n as i32).collect())),
        Column::new("FIBERSTATUS", ColumnData::I32(status)),
        Column::new("OBJTYPE", ColumnData::Str(vec!["TGT".into(); n])),
        Column::new("DESI_TARGET", ColumnData::I64(dt)),
        Column::new("MWS_TARGET", ColumnData::I64(vec![0; n])),
        Column::new(
            "FLUX_G",
            ColumnData::F32(g.iter().map(|&v| v as f32).collect()),
        ),
        Column::new(
            "FLUX_R",
            ColumnData::F32(r.iter().map(|&v| v as f32).collect()),
        ),
        Column::new("FLUX_Z", ColumnData::F32(vec![0.0; n])),
        Column::new("EBV", ColumnData::F32(vec![EBV as f32; n])),
        Column::new("PHOTSYS", ColumnData::Str(vec!["S".into(); n])),
    ])
    .unwrap();
    Fibermap::from_table(t).unwrap()
}

/// Writes frame, fiberflat and sky files of b0, r0, z0 for exposure `expid` into `dir`.
fn make_exposure(dir: &Path, expid: i64, with_std: bool) -> Truth {
    let mut noise = Noise(expid as u64 * 7919);
    let mut truth = Truth {
        fibers: (0..NFIB)
            .map(|f| (star_params(f).0, star_params(f).1.teff))
            .collect(),
        convolved: Vec::new(),
    };
    for (cam, w0, w1) in [
        ('b', 3600.0, 5800.0),
        ('r', 5760.0, 7620.0),
        ('z', 7520.0, 9824.0),
    ] {
        let nw = ((w1 - w0) / 0.8) as usize + 1;
        let wave: Vec<f64> = (0..nw).map(|j| w0 + 0.8 * j as f64).collect();
        let sigma: Vec<f64> = (0..nw).map(|j| 1.0 + 0.3 * j as f64 / nw as f64).collect();
        let res = Resolution::from_gaussian_sigma(&sigma, 11).unwrap();
        let mut flux = Array2::zeros((NFIB, nw));
        let mut ivar = Array2::zeros((NFIB, nw));
        let mask = Array2::zeros((NFIB, nw));
        let mut conv = Array2::zeros((NFIB, nw));
        let mut skyflux = Array2::zeros((NFIB, nw));
        let (mut gs, mut rs) = (vec![0.0; NFIB], vec![0.0; NFIB]);
        let flat: Vec<f64> = (0..NFIB).map(|f| 1.0 + 0.04 * (f as f64).sin()).collect();
        for f in 0..NFIB {
            let (spec, g, r) = truth_spectrum(f, &wave);
            gs[f] = g;
            rs[f] = r;
            let rt = res.apply(&spec).unwrap();
            let signal: Vec<f64> = wave
                .iter()
                .map(|&w| calib_true(cam, w))
                .zip(&spec)
                .map(|(c, s)| c * s)
                .collect();
            let rsig = res.apply(&signal).unwrap();
            let sky = res
                .apply(&wave.iter().map(|&w| sky_true(w)).collect::<Vec<_>>())
                .unwrap();
            for j in 0..nw {
                conv[[f, j]] = rt[j];
                skyflux[[f, j]] = sky[j];
                // electrons/Å; Poisson + read noise on 0.8 Å pixels
                let model = flat[f] * (sky[j] + rsig[j]);
                let var = model.max(0.0) / 0.8 + 10.0;
                flux[[f, j]] = model + var.sqrt() * noise.normal();
                ivar[[f, j]] = 1.0 / var;
                let masked =
                    cam == 'r' && (f == 0 || f == 1) && wave[j] > MASKED.0 && wave[j] < MASKED.1;
                if masked || f == 4 {
                    flux[[f, j]] = if f == 4 { 0.0 } else { 1e6 };
                    ivar[[f, j]] = 0.0;
                }
            }
        }
        let mut header = Header::default();
        let camera = format!("{cam}0");
        header.set("CAMERA", HeaderValue::from(camera.as_str()));
        header.set("EXPID", HeaderValue::from(expid));
        header.set("NIGHT", HeaderValue::from(20260101i64));
        header.set("SPECGRPH", HeaderValue::from(0i64));
        header.set("EXPTIME", HeaderValue::from(1000.0));
        let mut resolution = Array3::zeros((NFIB, 11, nw));
        for f in 0..NFIB {
            resolution
                .index_axis_mut(ndarray::Axis(0), f)
                .assign(&res.band());
        }
        let frame = Frame {
            wave: Array1::from(wave.clone()),
            flux,
            ivar,
            mask,
            resolution,
            fibermap: fibermap(with_std, &gs, &rs),
            chi2pix: None,
            scores: None,
            header: header.clone(),
        };
        frame
            .write(
                dir.join(format!("frame-{camera}-{expid:08}.fits")),
                &Provenance::default(),
            )
            .unwrap();
        let ff = FiberFlat {
            wave: Array1::from(wave.clone()),
            fiberflat: Array2::from_shape_fn((NFIB, nw), |(f, _)| flat[f]),
            ivar: Array2::from_elem((NFIB, nw), 1e8),
            mask: Array2::zeros((NFIB, nw)),
            meanspec: Array1::ones(nw),
            chi2pdf: None,
            fibermap: None,
            header: header.clone(),
        };
        ff.write(
            dir.join(format!("fiberflat-{camera}.fits")),
            &Provenance::default(),
        )
        .unwrap();
        let sky = SkyModel {
            wave: Array1::from(wave.clone()),
            flux: skyflux,
            ivar: Array2::from_elem((NFIB, nw), 1e8),
            mask: Array2::zeros((NFIB, nw)),
            stat_ivar: None,
            throughput_corrections: None,
            throughput_corrections_model: None,
            skytargetid: None,
            header: header.clone(),
        };
        sky.write(
            dir.join(format!("sky-{camera}-{expid:08}.fits")),
            &Provenance::default(),
        )
        .unwrap();
        truth.convolved.push((camera, Array1::from(wave), conv));
    }
    truth
}

fn paths(dir: &Path, kind: &str, expid: i64) -> Vec<PathBuf> {
    // deliberately not in b, r, z order: inputs are matched by their headers
    ["z0", "b0", "r0"]
        .iter()
        .map(|c| match kind {
            "fiberflat" => dir.join(format!("fiberflat-{c}.fits")),
            _ => dir.join(format!("{kind}-{c}-{expid:08}.fits")),
        })
        .collect()
}

fn run_stdstars(dir: &Path, out: &Path, threads: &str) -> assert_cmd::assert::Assert {
    let mut flats = paths(dir, "fiberflat", 1);
    flats.reverse();
    common::bin("spx-stdstars")
        .env("SPX_THREADS", threads)
        .arg("--frames")
        .args(paths(dir, "frame", 1))
        .arg("--fiberflats")
        .args(flats)
        .arg("--skies")
        .args(paths(dir, "sky", 1).iter().rev())
        .arg("-o")
        .arg(out)
        .arg("-q")
        .assert()
}

#[test]
fn stdstars_and_fluxcal_recover_truth() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let truth = make_exposure(d, 1, true);
    let std1 = d.join("stdstars-0-00000001.fits");
    let t0 = std::time::Instant::now();
    run_stdstars(d, &std1, "2").success();
    eprintln!(
        "spx-stdstars (2 threads, debug build): {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    let m = StdStarModels::read(&std1).unwrap();
    let teff = m.metadata.f64s("TEFF").unwrap();
    // fiber 4 is a broken fiber (FIBERSTATUS BROKENFIBER): no standard there
    let want: Vec<i32> = (0..NFIB as i32).filter(|f| f % 3 == 0).collect();
    assert_eq!(m.fibers, want);
    for (k, &f) in m.fibers.iter().enumerate() {
        let t = truth.fibers[f as usize].1;
        eprintln!("fiber {f}: Teff fit {:.0} truth {t:.0}", teff[k]);
    }
    for (k, &f) in m.fibers.iter().enumerate() {
        let t = truth.fibers[f as usize].1;
        // the issue's requirement: standard-star Teff within 150 K
        assert!(
            (teff[k] - t).abs() < 150.0,
            "fiber {f}: Teff {} vs {t}",
            teff[k]
        );
    }
    // thread independence
    let std2 = d.join("stdstars-1thread.fits");
    run_stdstars(d, &std2, "1").success();
    let m2 = StdStarModels::read(&std2).unwrap();
    assert_eq!(m.flux, m2.flux);

    let mut all = Vec::new();
    for (cam, wave, conv) in &truth.convolved {
        let fc = d.join(format!("fluxcalib-{cam}-00000001.fits"));
        let cf = d.join(format!("cframe-{cam}-00000001.fits"));
        let frame = d.join(format!("frame-{cam}-00000001.fits"));
        let ff = d.join(format!("fiberflat-{cam}.fits"));
        let sky = d.join(format!("sky-{cam}-00000001.fits"));
        common::bin("spx-fluxcal")
            .args([
                "-i".as_ref(),
                frame.as_os_str(),
                "--fiberflat".as_ref(),
                ff.as_os_str(),
            ])
            .args([
                "--sky".as_ref(),
                sky.as_os_str(),
                "--stdstars".as_ref(),
                std1.as_os_str(),
            ])
            .arg("-o")
            .arg(&fc)
            .arg("--cframe")
            .arg(&cf)
            .arg("-q")
            .assert()
            .success();
        let cf2 = d.join(format!("cframe-apply-{cam}.fits"));
        common::bin("spx-fluxcal")
            .args(["--apply".as_ref(), "-i".as_ref(), frame.as_os_str()])
            .args([
                "--fiberflat".as_ref(),
                ff.as_os_str(),
                "--sky".as_ref(),
                sky.as_os_str(),
            ])
            .arg("--calib")
            .arg(&fc)
            .arg("--cframe")
            .arg(&cf2)
            .arg("-q")
            .assert()
            .success();
        let c = Frame::read(&cf).unwrap();
        let c2 = Frame::read(&cf2).unwrap();
        assert_eq!(c.flux, c2.flux, "{cam}: --apply differs");
        assert_eq!(
            c.header.get_str("BUNIT").as_deref(),
            Some("10**-17 erg/(s cm2 Angstrom)")
        );
        assert_eq!(c.resolution, Frame::read(&frame).unwrap().resolution);
        // masked ranges and the dead fiber flow through as ivar 0
        for j in 0..c.nwave() {
            if cam == "r0" && wave[j] > MASKED.0 + 1.0 && wave[j] < MASKED.1 - 1.0 {
                assert_eq!(c.ivar[[1, j]], 0.0);
            }
            assert_eq!(c.ivar[[4, j]], 0.0);
        }
        // broadband: 100 Å bins of calibrated vs true convolved flux, good pixels only
        for f in (0..NFIB).filter(|&f| !f.is_multiple_of(3) && f != 4) {
            let mut j = 0;
            while j + 125 <= c.nwave() {
                let bin = j..j + 125;
                let good: Vec<usize> = bin.filter(|&k| c.ivar[[f, k]] > 0.0).collect();
                j += 125;
                if good.len() < 100 {
                    continue;
                }
                let s: f64 = good.iter().map(|&k| c.flux[[f, k]]).sum();
                let t: f64 = good.iter().map(|&k| conv[[f, k]]).sum();
                all.push(s / t - 1.0);
            }
        }
    }
    check_desispec_readers(
        &std1,
        &d.join("fluxcalib-r0-00000001.fits"),
        &d.join("cframe-r0-00000001.fits"),
    );
    let rms = (all.iter().map(|v| v * v).sum::<f64>() / all.len() as f64).sqrt();
    // Noise floor: an r=18 target gives ~60–150 e/Å above a 60 e/Å sky, S/N ≈ 1.5–3 per
    // 0.8 Å pixel, so ≈ 1–3% per 125-pixel bin in the faint band edges; the calibration
    // from 7 standards at S/N ≈ 10–20 adds < 0.5%. The requirement is 2% rms broadband.
    eprintln!(
        "broadband rms (cframe/truth − 1) over {} bins: {rms:.4}",
        all.len()
    );
    assert!(rms < 0.02, "broadband rms {rms}");
}

#[test]
fn no_standard_star_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_exposure(d, 2, false);
    let out = d.join("stdstars-0-00000002.fits");
    let mut flats = paths(d, "fiberflat", 2);
    flats.sort();
    let a = common::bin("spx-stdstars")
        .arg("--frames")
        .args(paths(d, "frame", 2))
        .arg("--fiberflats")
        .args(flats)
        .arg("--skies")
        .args(paths(d, "sky", 2))
        .arg("-o")
        .arg(&out)
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("no standard star"), "{err}");
    assert!(err.contains("frame-z0-00000002.fits"), "{err}");
    assert!(!out.exists());
    let names: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("stdstars")),
        "{names:?}"
    );
}

/// desispec 0.70's readers open our stdstars, fluxcalib and cframe files and see what we
/// wrote (f4 data compared as f32, FLUXCALIB as f8).
fn check_desispec_readers(std: &Path, fc: &Path, cf: &Path) {
    let Some(py) = spx::testsupport::python() else {
        return;
    };
    let script = r#"
import sys, json
from desispec.io import read_stdstar_models, read_flux_calibration, read_frame
flux, wave, fibers, meta = read_stdstar_models(sys.argv[1])
fc = read_flux_calibration(sys.argv[2])
fr = read_frame(sys.argv[3])
print(json.dumps(dict(
    std_shape=list(flux.shape), std_v=float(flux[1, 1000]), wave0=float(wave[0]),
    fibers=[int(f) for f in fibers], teff=[float(t) for t in meta['TEFF']],
    fc_shape=list(fc.calib.shape), fc_v=float(fc.calib[2, 500]), fc_ivar=float(fc.ivar[2, 500]),
    fc_wave=float(fc.wave[10]),
    fr_shape=list(fr.flux.shape), fr_v=float(fr.flux[2, 500]), fr_ivar=float(fr.ivar[2, 500]),
    fr_res=float(fr.resolution_data[2, 5, 500]), fr_mask=int(fr.mask[1].max()),
    fr_unit=str(fr.meta.get('BUNIT', '')))))
"#;
    let out = std::process::Command::new(py)
        .arg("-c")
        .arg(script)
        .args([std, fc, cf])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let m = StdStarModels::read(std).unwrap();
    let f = |k: &str| v[k].as_f64().unwrap();
    assert_eq!(v["std_shape"], serde_json::json!([m.nstar(), m.wave.len()]));
    assert_eq!(f("std_v"), m.flux[[1, 1000]] as f32 as f64);
    assert_eq!(f("wave0"), m.wave[0] as f32 as f64);
    assert_eq!(v["fibers"], serde_json::json!(m.fibers));
    let teff = m.metadata.f64s("TEFF").unwrap();
    assert_eq!(v["teff"], serde_json::json!(teff));
    let c = spx::io::fluxcalib::FluxCalib::read(fc).unwrap();
    assert_eq!(
        v["fc_shape"],
        serde_json::json!([c.calib.nrows(), c.calib.ncols()])
    );
    assert_eq!(f("fc_v"), c.calib[[2, 500]]);
    assert_eq!(f("fc_ivar"), c.ivar[[2, 500]] as f32 as f64);
    assert_eq!(f("fc_wave"), c.wave[10] as f32 as f64);
    let fr = Frame::read(cf).unwrap();
    assert_eq!(v["fr_shape"], serde_json::json!([fr.nspec(), fr.nwave()]));
    assert_eq!(f("fr_v"), fr.flux[[2, 500]] as f32 as f64);
    assert_eq!(f("fr_ivar"), fr.ivar[[2, 500]] as f32 as f64);
    assert_eq!(f("fr_res"), fr.resolution[[2, 5, 500]] as f32 as f64);
    assert_eq!(
        v["fr_mask"].as_u64().unwrap(),
        fr.mask.row(1).iter().copied().max().unwrap() as u64
    );
    assert_eq!(v["fr_unit"], "10**-17 erg/(s cm2 Angstrom)");
}

/// Standards present but none surviving the cuts (here the blue S/N cut, set above any star):
/// a clear error (exit 1) naming the exposure and the cut, and no stdstars file (nor a
/// temporary one) left behind.
#[test]
fn no_standard_star_surviving_the_cuts_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_exposure(d, 1, true);
    let out = d.join("stdstars-0-00000001.fits");
    let a = common::bin("spx-stdstars")
        .arg("--frames")
        .args(paths(d, "frame", 1))
        .arg("--fiberflats")
        .args(paths(d, "fiberflat", 1))
        .arg("--skies")
        .args(paths(d, "sky", 1))
        .args(["--min-blue-snr", "1e9", "-o"])
        .arg(&out)
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("no standard star survives the cuts"), "{err}");
    assert!(err.contains("blue S/N above"), "{err}");
    // the error names the exposure (what a pipeline journal records for the failed step)
    assert!(
        err.contains("night 20260101 expid 1 cameras b0,r0,z0"),
        "{err}"
    );
    assert!(err.contains("nothing written"), "{err}");
    assert_eq!(a.get_output().status.code(), Some(1));
    let names: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("stdstars")),
        "{names:?}"
    );
}

/// A NaN in an input frame's FLUX: spx-stdstars and spx-fluxcal refuse it with the file and
/// HDU named (exit 1), and write nothing; zero ivar is data (tested above), NaN is not.
#[test]
fn nan_flux_is_refused_by_stdstars_and_fluxcal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_exposure(d, 1, true);
    let good = d.join("stdstars-good.fits");
    run_stdstars(d, &good, "2").success();
    // through cfitsio directly: spx's writer refuses NaN
    let bad = d.join("frame-r0-00000001.fits");
    {
        let mut f = fitsio::FitsFile::edit(&bad).unwrap();
        let hdu = f.hdu(0).unwrap(); // FLUX is the primary HDU of a frame
                                     // cfitsio ranges run (NAXIS1, NAXIS2): wavelength 100 of fiber 3
        hdu.write_region(&mut f, &[&(100..101), &(3..4)], &[f32::NAN])
            .unwrap();
    }
    let out = d.join("stdstars-bad.fits");
    let a = run_stdstars(d, &out, "2").failure().code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("frame-r0-00000001.fits[FLUX]"), "{err}");
    assert!(!out.exists());
    let (fc, cf) = (d.join("fluxcalib-r0.fits"), d.join("cframe-r0.fits"));
    let a = common::bin("spx-fluxcal")
        .arg("-i")
        .arg(&bad)
        .arg("--fiberflat")
        .arg(d.join("fiberflat-r0.fits"))
        .arg("--sky")
        .arg(d.join("sky-r0-00000001.fits"))
        .arg("--stdstars")
        .arg(&good)
        .arg("-o")
        .arg(&fc)
        .arg("--cframe")
        .arg(&cf)
        .assert()
        .failure()
        .code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("frame-r0-00000001.fits[FLUX]"), "{err}");
    assert!(!fc.exists() && !cf.exists());
    let names: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains(".tmp") || n.starts_with("fluxcalib")),
        "{names:?}"
    );
}
