//! spx-sky end to end: conformance with desispec 0.70 `compute_sky` on ../shared/data/sky,
//! thread independence, bad input, and desispec's reader on our file.

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2};
use spx::io::fits::{Column, ColumnData, FitsReader, Provenance};
use spx::io::frame::Frame;
use spx::testsupport::{python, shared_file};

fn img2(path: &Path, hdu: &str) -> Array2<f64> {
    FitsReader::open(path).unwrap().image2::<f64>(hdu).unwrap()
}

fn img1(path: &Path, hdu: &str) -> Array1<f64> {
    FitsReader::open(path).unwrap().image1::<f64>(hdu).unwrap()
}

fn run_sky(input: &Path, out: &Path, extra: &[&str], threads: &str) {
    common::bin("spx-sky")
        .env("SPX_THREADS", threads)
        .arg("-i")
        .arg(input)
        .arg("-o")
        .arg(out)
        .args(extra)
        .arg("-q")
        .assert()
        .success();
}

fn max_abs(a: &Array2<f64>) -> f64 {
    a.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

/// Standard deviation of the sky-fiber pulls `(flux − sky)·√combine_ivar(ivar, sky_ivar)`,
/// i.e. of the sky-subtracted sky fibers in units of their propagated noise.
fn sky_fiber_pull_sigma(frame: &Frame, sky: &Array2<f64>, sky_ivar: &Array2<f64>) -> f64 {
    let mut pulls = Vec::new();
    for f in frame.fibermap.sky_rows() {
        for j in 0..frame.nwave() {
            let iv = spx::sky::combine_ivar(frame.ivar[[f, j]], sky_ivar[[f, j]]);
            if iv > 0.0 {
                pulls.push((frame.flux[[f, j]] - sky[[f, j]]) * iv.sqrt());
            }
        }
    }
    let n = pulls.len() as f64;
    let mean = pulls.iter().sum::<f64>() / n;
    (pulls.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / n).sqrt()
}

#[test]
fn matches_desispec_compute_sky() {
    let (Some(input), Some(ref64), Some(ref32), Some(truth)) = (
        shared_file("sky/frame-sky-input.fits"),
        shared_file("sky/sky-ref-f64.fits"),
        shared_file("sky/sky-ref.fits"),
        shared_file("sky/truth.fits"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out64 = dir.path().join("sky64.fits");
    let out32 = dir.path().join("sky-r0-00000001.fits");
    run_sky(&input, &out64, &["--f64"], "2");
    run_sky(&input, &out32, &[], "2");

    // Tolerances from ../shared/data/README.md (sky/): desispec's sky responds linearly to a
    // 1e-12 relative perturbation of its inputs (≤1.6e-12 change) and no clipping decision
    // flips at 1e-7, so a same-algorithm f64 solve agrees far below 1e-8·max|SKY|.
    let sky = img2(&out64, "SKY");
    let want = img2(&ref64, "SKY");
    let smax = max_abs(&want);
    let dmax = max_abs(&(&sky - &want));
    eprintln!(
        "max |SKY_spx − SKY_desispec| / max|SKY| = {:.2e}",
        dmax / smax
    );
    assert!(dmax <= 1e-8 * smax, "{dmax} > 1e-8 * {smax}");

    // float32 file against desispec's float32 file: one f32 rounding each (≤ 6e-8 relative)
    // plus the f64 floor above.
    let sky32 = img2(&out32, "SKY");
    let want32 = img2(&ref32, "SKY");
    for (a, b) in sky32.iter().zip(want32.iter()) {
        assert!(
            (a - b).abs() <= 1.2e-7 * b.abs() + 1e-8 * smax,
            "{a} vs {b}"
        );
    }

    // IVAR and STATIVAR within 1e-6 relative (f32 storage is 6e-8; the covariance comes from
    // a banded selected inverse instead of a dense Cholesky inverse).
    for hdu in ["IVAR", "STATIVAR"] {
        let a = img2(&out64, hdu);
        let b = img2(&ref32, hdu);
        for (x, y) in a.iter().zip(b.iter()) {
            assert!((x - y).abs() <= 1e-6 * y.abs(), "{hdu}: {x} vs {y}");
        }
    }
    let t = img1(&out32, "THRPUTCORR");
    let tr = img1(&ref32, "THRPUTCORR");
    for (x, y) in t.iter().zip(tr.iter()) {
        assert!((x - y).abs() <= 1e-6, "THRPUTCORR {x} vs {y}");
    }
    let m = FitsReader::open(&out32)
        .unwrap()
        .image2::<u32>("MASK")
        .unwrap();
    let mr = FitsReader::open(&ref32)
        .unwrap()
        .image2::<u32>("MASK")
        .unwrap();
    assert_eq!(m, mr);
    let ids = FitsReader::open(&out32)
        .unwrap()
        .image1::<i64>("SKYTARGETID")
        .unwrap();
    let idr = FitsReader::open(&ref32)
        .unwrap()
        .image1::<i64>("SKYTARGETID")
        .unwrap();
    assert_eq!(ids, idr);

    // Sky-fiber pulls: the same as desispec's (the models agree to 1e-8), and below 1 because
    // each of the 12 sky fibers helped make the model (σ² ≈ 1 − 1/12 from the frame noise,
    // lower still with the sky variance added).
    let frame = Frame::read(&input).unwrap();
    let sigma = sky_fiber_pull_sigma(&frame, &sky, &img2(&out64, "IVAR"));
    let sigma_ref = sky_fiber_pull_sigma(&frame, &want32, &img2(&ref32, "IVAR"));
    eprintln!("sky-fiber pull sigma: spx {sigma:.4}, desispec {sigma_ref:.4}");
    assert!((sigma - sigma_ref).abs() < 1e-4);
    assert!((0.85..0.98).contains(&sigma), "{sigma}");

    // model − truth (R_f · true sky) in units of the per-pixel noise, as measured for desispec
    // in the README (rms 0.26, max 1.05): the same model must give the same figures.
    let skyconv = img2(&truth, "SKYCONV");
    let mut sum2 = 0.0;
    let mut n = 0.0;
    for ((s, t), iv) in sky.iter().zip(skyconv.iter()).zip(frame.ivar.iter()) {
        sum2 += (s - t).powi(2) * iv;
        n += 1.0;
    }
    let rms = (sum2 / n).sqrt();
    eprintln!("(sky − SKYCONV)/σ rms {rms:.3}");
    assert!((rms - 0.26).abs() < 0.01, "{rms}");
}

#[test]
fn same_result_for_one_and_two_threads() {
    let Some(input) = shared_file("sky/frame-sky-input.fits") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.fits"), dir.path().join("b.fits"));
    run_sky(&input, &a, &["--f64"], "1");
    run_sky(&input, &b, &["--f64"], "2");
    for hdu in ["SKY", "IVAR", "STATIVAR"] {
        assert_eq!(img2(&a, hdu), img2(&b, hdu), "{hdu}");
    }
    assert_eq!(img1(&a, "THRPUTCORR"), img1(&b, "THRPUTCORR"));
}

/// The shared frame with its fibermap or arrays modified, written to `dir`.
fn modified_frame(dir: &Path, name: &str, edit: impl FnOnce(&mut Frame)) -> Option<PathBuf> {
    let input = shared_file("sky/frame-sky-input.fits")?;
    let mut f = Frame::read(input).unwrap();
    edit(&mut f);
    let p = dir.join(name);
    f.write(&p, &Provenance::default()).unwrap();
    Some(p)
}

#[test]
fn no_sky_fibers_is_a_clear_error_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let Some(p) = modified_frame(dir.path(), "frame-nosky.fits", |f| {
        let n = f.nspec();
        f.fibermap
            .table_mut()
            .set(Column::new(
                "OBJTYPE",
                ColumnData::Str(vec!["TGT".into(); n]),
            ))
            .unwrap();
    }) else {
        return;
    };
    let out = dir.path().join("sky.fits");
    let assert = common::bin("spx-sky")
        .arg("-i")
        .arg(&p)
        .arg("-o")
        .arg(&out)
        .assert()
        .failure()
        .code(1);
    let err = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(
        err.contains("frame-nosky.fits") && err.contains("no valid sky fibers"),
        "{err}"
    );
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn dead_sky_fibers_zero_ivar_and_masked_ranges_flow_through() {
    let dir = tempfile::tempdir().unwrap();
    let mut sky_rows = Vec::new();
    let Some(p) = modified_frame(dir.path(), "frame-holes.fits", |f| {
        sky_rows = f.fibermap.sky_rows();
        // a wavelength range masked in every sky fiber
        for &s in &sky_rows {
            for j in 1000..1010 {
                f.mask[[s, j]] = spx::maskbits::specmask::COSMIC;
            }
        }
        // a dead sky fiber and a zero-ivar stretch in another
        f.ivar.row_mut(sky_rows[0]).fill(0.0);
        for j in 200..260 {
            f.ivar[[sky_rows[1], j]] = 0.0;
        }
    }) else {
        return;
    };
    let out = dir.path().join("sky.fits");
    run_sky(&p, &out, &[], "2");
    let sky = img2(&out, "SKY");
    let ivar = img2(&out, "IVAR");
    assert!(sky.iter().chain(ivar.iter()).all(|v| v.is_finite()));
    // unconstrained wavelengths (and the resolution band around them) carry sky 0, ivar 0
    for j in 1000..1010 {
        assert!(ivar.column(j).iter().all(|&v| v == 0.0));
        assert!(sky.column(j).iter().all(|&v| v == 0.0));
    }
    let mask = FitsReader::open(&out)
        .unwrap()
        .image2::<u32>("MASK")
        .unwrap();
    assert!(mask[[0, 1005]] != 0 && mask[[0, 500]] == 0);
    // elsewhere the model is good and the dead fiber was left out of SKYTARGETID
    assert!(ivar[[0, 500]] > 0.0);
    let ids = FitsReader::open(&out)
        .unwrap()
        .image1::<i64>("SKYTARGETID")
        .unwrap();
    assert_eq!(ids.len(), sky_rows.len() - 1);
}

#[test]
fn non_finite_input_is_refused_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let Some(input) = shared_file("sky/frame-sky-input.fits") else {
        return;
    };
    // write a frame with a NaN through cfitsio directly (spx's writer refuses NaN)
    let p = dir.path().join("frame-nan.fits");
    std::fs::copy(&input, &p).unwrap();
    {
        let mut f = fitsio::FitsFile::edit(&p).unwrap();
        let hdu = f.hdu(0).unwrap();
        hdu.write_region(&mut f, &[&(3..4), &(5..6)], &[f32::NAN])
            .unwrap();
    }
    let out = dir.path().join("sky.fits");
    let assert = common::bin("spx-sky")
        .arg("-i")
        .arg(&p)
        .arg("-o")
        .arg(&out)
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(err.contains("frame-nan.fits"), "{err}");
    assert!(!out.exists());
}

#[test]
fn desispec_reads_our_sky_file() {
    let (Some(input), Some(py)) = (shared_file("sky/frame-sky-input.fits"), python()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sky-r0-00000001.fits");
    run_sky(&input, &out, &[], "2");
    let script = r#"
import sys, numpy as np, fitsio
from desispec.io import read_sky
s = read_sky(sys.argv[1])
flux = fitsio.read(sys.argv[1], 'SKY').astype('f8')
assert s.flux.shape == (60, 2326), s.flux.shape
assert np.array_equal(s.flux, flux)
assert s.stat_ivar is not None and s.throughput_corrections.shape == (60,)
assert s.throughput_corrections_model.shape == (60,)
assert np.all(s.ivar >= 0) and s.mask.dtype.kind == 'u'
print("ok", s.wave[0], s.header['CAMERA'], s.header['IN_FRAME'])
"#;
    let o = std::process::Command::new(py)
        .arg("-c")
        .arg(script)
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && stdout.lines().any(|l| l.starts_with("ok 5760")),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// spx's `subtract_sky` and `apply_fiberflat` against desispec's on the same inputs: the shared
/// r-camera frame, desispec's own sky model (THRPUTCORR applied to the sky lines) and a
/// synthetic fiber flat with structure and noise in flat and ivar.
#[test]
fn subtract_sky_and_apply_fiberflat_match_desispec() {
    let (Some(input), Some(skyref), Some(py)) = (
        shared_file("sky/frame-sky-input.fits"),
        shared_file("sky/sky-ref.fits"),
        python(),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut frame = Frame::read(&input).unwrap();
    let (ns, nw) = (frame.nspec(), frame.nwave());
    let flat = Array2::from_shape_fn((ns, nw), |(f, j)| {
        if f == 5 && j == 100 {
            0.0 // a zero flat pixel
        } else {
            0.9 + 0.2 * ((f * 37 + j * 11) % 97) as f64 / 97.0
        }
    });
    let ffivar = Array2::from_shape_fn((ns, nw), |(f, j)| {
        if f == 6 && j < 50 {
            0.0
        } else {
            1e4 * (1.0 + ((f + j) % 7) as f64)
        }
    });
    let ff = spx::io::fiberflat::FiberFlat {
        wave: frame.wave.clone(),
        fiberflat: flat,
        ivar: ffivar,
        mask: Array2::zeros((ns, nw)),
        meanspec: Array1::ones(nw),
        chi2pdf: None,
        fibermap: None,
        header: Default::default(),
    };
    let ffpath = dir.path().join("fiberflat.fits");
    ff.write(&ffpath, &Provenance::default()).unwrap();
    // spx: read the flat back (f32 on disk, as desispec will see it), apply, subtract
    let ff = spx::io::fiberflat::FiberFlat::read(&ffpath).unwrap();
    spx::fiberflat::apply_fiberflat(&mut frame, &ff).unwrap();
    let sky = spx::io::sky::SkyModel::read(&skyref).unwrap();
    spx::sky::subtract_sky(&mut frame, &sky, false).unwrap();
    let script = r#"
import sys, numpy as np, fitsio
from desispec.io import read_frame, read_sky, read_fiberflat
from desispec.fiberflat import apply_fiberflat
from desispec.sky import subtract_sky
fr = read_frame(sys.argv[1])
apply_fiberflat(fr, read_fiberflat(sys.argv[2]))
subtract_sky(fr, read_sky(sys.argv[3]))
fitsio.write(sys.argv[4], fr.flux, extname='FLUX', clobber=True)
fitsio.write(sys.argv[4], fr.ivar, extname='IVAR')
fitsio.write(sys.argv[4], fr.mask.astype('i8'), extname='MASK')
"#;
    let out = dir.path().join("desi.fits");
    let o = std::process::Command::new(py)
        .arg("-c")
        .arg(script)
        .arg(&input)
        .arg(&ffpath)
        .arg(&skyref)
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let flux = img2(&out, "FLUX");
    let ivar = img2(&out, "IVAR");
    let mask = FitsReader::open(&out)
        .unwrap()
        .image2::<i64>("MASK")
        .unwrap();
    // same f64 arithmetic on the same f32 inputs: agreement to rounding (1e-12 relative of
    // the largest flux; ivar relative)
    let fmax = max_abs(&flux);
    for ((a, b), (c, d)) in frame
        .flux
        .iter()
        .zip(flux.iter())
        .zip(frame.ivar.iter().zip(ivar.iter()))
    {
        assert!((a - b).abs() <= 1e-12 * fmax, "flux {a} vs {b}");
        assert!((c - d).abs() <= 1e-12 * d.abs(), "ivar {c} vs {d}");
    }
    for (a, &b) in frame.mask.iter().zip(mask.iter()) {
        assert_eq!(i64::from(*a), b);
    }
    assert_eq!(frame.ivar[[5, 100]], 0.0);
}
