//! spx-sim end to end: the five exposure kinds on the `mini` instrument, file round trips,
//! thread-count independence, and desispec's preproc on our raw files.

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::time::Instant;

use spx::io::raw::RawExposure;
use spx::io::simtruth::SimTruth;

fn sim(dir: &Path, args: &[&str]) -> assert_cmd::assert::Assert {
    common::bin("spx-sim")
        .current_dir(dir)
        .args(args)
        .arg("-q")
        .assert()
}

#[test]
fn truth_and_raw_files_round_trip() {
    let d = tempfile::tempdir().unwrap();
    sim(
        d.path(),
        &[
            "science",
            "--preset",
            "mini",
            "--cameras",
            "b0,z1",
            "--nspec",
            "12",
            "--night",
            "20260105",
            "--expid",
            "7",
            "--seed",
            "3",
            "--cosmics",
            "-o",
            "raw.fits",
            "--truth",
            "truth.fits",
            "--truth-psf",
            "psf-{camera}.fits",
        ],
    )
    .success();
    let p = d.path();
    let t = SimTruth::read(&p.join("truth.fits")).unwrap();
    assert_eq!(
        (t.night, t.expid, t.flavor.as_str()),
        (20260105, 7, "science")
    );
    assert_eq!(t.cameras.len(), 2);
    let fm = t.fibermap.as_ref().unwrap();
    // 12 fibers of spectrograph 0 and 12 of spectrograph 1 (FIBER = 20·sp + i on mini)
    assert_eq!(fm.len(), 24);
    assert_eq!(fm.fibers()[12], 20);
    t.write(&p.join("again.fits"), &Default::default()).unwrap();
    let u = SimTruth::read(&p.join("again.fits")).unwrap();
    assert_eq!(t.cameras, u.cameras);
    assert_eq!(t.truth.as_ref().unwrap().nrows(), 24);
    let z = t.camera("z1").unwrap();
    assert_eq!(z.phot.dim(), (12, z.wave.len()));
    assert!(z.cosmics.as_ref().unwrap().sum() > 0.0);
    // sky fibers: no object photons, sky photons; science fibers: both
    let objtype = fm.objtypes();
    for (i, o) in objtype.iter().take(12).enumerate() {
        let obj: f32 = t.cameras[0].phot.row(i).sum();
        let sky: f32 = t.cameras[0].skyphot.row(i).sum();
        match o.as_str() {
            "SKY" => assert!(obj == 0.0 && sky > 0.0, "fiber {i}"),
            "BAD" => assert!(obj == 0.0 && sky == 0.0, "fiber {i}"),
            _ => assert!(obj > 0.0 && sky > 0.0, "fiber {i}"),
        }
    }
    // PHOT = FLUX × CALIB × Δλ bin by bin for smooth spectra (≤ 1% from the bin averaging)
    let (flux, calib, phot) = (&z.flux, &z.calib, &z.phot);
    let dw = z.wave[1] - z.wave[0];
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for ((f, c), ph) in flux.iter().zip(calib).zip(phot) {
        num += (*f as f64) * (*c as f64) * dw;
        den += *ph as f64;
    }
    assert!((num / den - 1.0).abs() < 0.01, "{num} vs {den}");

    let raw = RawExposure::read(&p.join("raw.fits")).unwrap();
    assert_eq!(raw.cameras.len(), 2);
    assert_eq!((raw.night, raw.expid, raw.exptime), (20260105, 7, 900.0));
    let c = raw.camera("z1").unwrap();
    assert_eq!(c.amps.len(), 4);
    assert_eq!(c.image_shape(), z.image.as_ref().unwrap().dim());
    raw.write(&p.join("raw2.fits"), &Default::default())
        .unwrap();
    let again = RawExposure::read(&p.join("raw2.fits")).unwrap();
    assert_eq!(raw.cameras, again.cameras);
    // the truth PSFs are real PSF files
    let psf = spx::io::psf::read(p.join("psf-z1.fits")).unwrap();
    assert_eq!(psf.fibermin, 20);
}

fn data_of(path: &Path) -> Vec<(String, Vec<f64>)> {
    let mut f = fitsio::FitsFile::open(path).unwrap();
    let mut out = Vec::new();
    let n = f.iter().count();
    for i in 0..n {
        let h = f.hdu(i).unwrap();
        if let fitsio::hdu::HduInfo::ImageInfo { shape, .. } = &h.info {
            if !shape.is_empty() && shape.iter().product::<usize>() > 0 {
                let v: Vec<f64> = h.read_image(&mut f).unwrap();
                out.push((format!("{i}"), v));
            }
        }
    }
    out
}

#[test]
fn same_seed_same_bytes_for_1_and_2_threads() {
    let d = tempfile::tempdir().unwrap();
    for n in ["1", "2"] {
        common::bin("spx-sim")
            .current_dir(d.path())
            .env("SPX_THREADS", n)
            .args([
                "science",
                "--preset",
                "mini",
                "--cameras",
                "r0",
                "--seed",
                "9",
                "--cosmics",
                "-o",
                &format!("raw{n}.fits"),
                "--truth",
                &format!("truth{n}.fits"),
                "-q",
            ])
            .assert()
            .success();
    }
    let p = d.path();
    assert_eq!(data_of(&p.join("raw1.fits")), data_of(&p.join("raw2.fits")));
    assert_eq!(
        data_of(&p.join("truth1.fits")),
        data_of(&p.join("truth2.fits"))
    );
}

#[test]
fn whole_mini_night_in_seconds() {
    // 3 arcs, 3 flats, 2 science exposures, 3 cameras each (timing is printed, not asserted)
    let d = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let mut expid = 0;
    for (kind, n) in [("arc", 3), ("flat", 3), ("science", 2)] {
        for _ in 0..n {
            expid += 1;
            let e = expid.to_string();
            sim(
                d.path(),
                &[
                    kind,
                    "--preset",
                    "mini",
                    "--expid",
                    &e,
                    "--seed",
                    &e,
                    "--cosmics",
                    "-o",
                    &format!("raw-{e}.fits"),
                    "--truth",
                    &format!("truth-{e}.fits"),
                ],
            )
            .success();
        }
    }
    eprintln!(
        "mini night (8 exposures × 3 cameras, debug build): {:.2} s",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn zero_and_dark_have_no_light() {
    let d = tempfile::tempdir().unwrap();
    for kind in ["zero", "dark"] {
        sim(
            d.path(),
            &[
                kind,
                "--cameras",
                "b0",
                "-o",
                &format!("{kind}.fits"),
                "--truth",
                &format!("t-{kind}.fits"),
            ],
        )
        .success();
        let t = SimTruth::read(&d.path().join(format!("t-{kind}.fits"))).unwrap();
        let c = &t.cameras[0];
        assert_eq!(c.image.as_ref().unwrap().sum(), 0.0);
        let raw = RawExposure::read(&d.path().join(format!("{kind}.fits"))).unwrap();
        assert_eq!(raw.flavor, kind);
        if kind == "zero" {
            assert_eq!((raw.exptime, c.dark_electrons), (0.0, 0.0));
        } else {
            assert!(c.dark_electrons > 0.0);
        }
    }
}

#[test]
fn usage_errors_are_clear() {
    let d = tempfile::tempdir().unwrap();
    let out = sim(
        d.path(),
        &[
            "science", "--preset", "huge", "-o", "r.fits", "--truth", "t.fits",
        ],
    )
    .failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("unknown preset 'huge'"), "{err}");
    let out = sim(
        d.path(),
        &[
            "arc",
            "--cameras",
            "b0,r0",
            "--truth-psf",
            "p.fits",
            "-o",
            "r.fits",
            "--truth",
            "t.fits",
        ],
    )
    .failure();
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("{camera}"));
    let out = sim(
        d.path(),
        &[
            "arc",
            "--cameras",
            "q0",
            "-o",
            "r.fits",
            "--truth",
            "t.fits",
        ],
    )
    .failure();
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("q0"));
    std::fs::write(
        d.path().join("targets.yaml"),
        "- {fiber: 3, kind: unicorn}\n",
    )
    .unwrap();
    let out = sim(
        d.path(),
        &[
            "science",
            "--targets",
            "targets.yaml",
            "-o",
            "r.fits",
            "--truth",
            "t.fits",
        ],
    )
    .failure();
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("targets.yaml"));
    // nothing half-written
    assert!(!d.path().join("r.fits").exists());
}

#[test]
fn pinned_targets_and_nominal_psf() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("targets.yaml"),
        "- {fiber: 0, kind: std, mag: 17.0, teff: 6300}\n- {fiber: 1, kind: elg, z: 1.2, oii_flux: 30}\n",
    )
    .unwrap();
    sim(
        d.path(),
        &[
            "science",
            "--cameras",
            "r0",
            "--targets",
            "targets.yaml",
            "-o",
            "r.fits",
            "--truth",
            "t.fits",
        ],
    )
    .success();
    let t = SimTruth::read(&d.path().join("t.fits")).unwrap();
    let tt = t.truth.unwrap();
    assert_eq!(tt.f64s("TEFF").unwrap()[0], 6300.0);
    assert!((tt.f64s("Z").unwrap()[1] - 1.2).abs() < 1e-12);
    sim(
        d.path(),
        &[
            "nominal-psf",
            "--preset",
            "desi",
            "--camera",
            "z3",
            "-o",
            "nominal.fits",
        ],
    )
    .success();
    let psf = spx::io::psf::read(d.path().join("nominal.fits")).unwrap();
    assert_eq!(
        (psf.nfiber(), psf.fibermin, psf.npix_x, psf.npix_y),
        (500, 1500, 4114, 4128)
    );
}

#[test]
fn desispec_preproc_matches_truth_within_noise() {
    let Some(py) = spx::testsupport::python() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let script = common::workspace_root().join("tests/python/sim_desispec_preproc.py");
    for (kind, cam) in [("flat", "r0"), ("science", "b0")] {
        sim(
            d.path(),
            &[
                kind,
                "--preset",
                "mini",
                "--cameras",
                cam,
                "--seed",
                "5",
                "-o",
                "raw.fits",
                "--truth",
                "truth.fits",
            ],
        )
        .success();
        let out = std::process::Command::new(&py)
            .arg(&script)
            .args(["raw.fits", "truth.fits", cam])
            .current_dir(d.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().last().unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        eprintln!("{kind} {cam}: {line}");
        let f = |k: &str| v[k].as_f64().unwrap();
        let inst = spx::instrument::Instrument::preset("mini").unwrap();
        let ccd = &inst.camera(cam).unwrap().0.ccd;
        assert_eq!(v["shape"], serde_json::json!([ccd.ny, ccd.nx]));
        // Pulls with the true variance (expectation + preproc's read-noise map²). The mean
        // moves with each amp's overscan level estimate, 1/√(16·600) ≈ 0.01 σ for
        // read-noise-limited pixels, averaged over 4 amps → 0.005; 5σ = 0.025.
        assert!(f("pull_true_mean").abs() < 0.025, "{line}");
        // 240000 pixels: std of the std 0.0015; the amp offsets add < 1e-4 in variance.
        assert!((f("pull_true_std") - 1.0).abs() < 0.015, "{line}");
        // Gain: over the bright pixels (> 1000 e), Σ(pix − expect)/√Σexpect is a unit normal
        // (Poisson), so a gain error ε shows as ε·√Σexpect (flat: ε ≈ 1.5e-4 is 5σ).
        assert!(f("bright_chi").abs() < 5.0, "{line}");
        // Read noise measured by desispec on our overscan within 5% of the instrument's
        // (quantisation adds gain²/12 ≈ 0.2 e², ~1.5%; 9600 overscan pixels give 0.7% rms).
        let inst = spx::instrument::Instrument::preset("mini").unwrap();
        let (c, _) = inst.camera(cam).unwrap();
        for (amp, a) in ["A", "B", "C", "D"].iter().zip(&c.ccd.amps) {
            let rn = v["readnoise"][amp].as_f64().unwrap();
            assert!(
                (rn / a.read_noise - 1.0).abs() < 0.05,
                "amp {amp}: {rn} vs {}",
                a.read_noise
            );
        }
    }
}
