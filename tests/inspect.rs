//! spx-inspect on every file of ../shared/data, on spx-written frames, and on bad input.

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, Array3, Axis};
use serde_json::Value;
use spx::io::fibermap::Fibermap;
use spx::io::fits::{Column, ColumnData, FitsWriter, Provenance};
use spx::io::frame::Frame;
use spx::io::header::Header;
use spx::io::table::Table;
use spx::resolution::Resolution;
use spx::testsupport::{shared_data_dir, shared_file};

/// The kind every FITS file in ../shared/data must be given. Auxiliary fixtures (truth
/// tables, specter's spot reference) follow no DESI data model and must be "unknown";
/// `sky-ref-f64.fits` (SKY in f64 without IVAR/MASK) is a sky with missing HDUs, and the
/// `ex2d-f64-*` files are frames without MASK/FIBERMAP (spx's Frame reader accepts both).
const SHARED_KINDS: &[(&str, &str)] = &[
    ("extract/ex2d-f64-noiseless.fits", "frame"),
    ("extract/ex2d-f64-noisy.fits", "frame"),
    ("extract/frame-noiseless.fits", "frame"),
    ("extract/frame-noisy.fits", "frame"),
    ("extract/preproc-noiseless.fits", "preproc"),
    ("extract/preproc-noisy.fits", "preproc"),
    ("extract/truth.fits", "unknown"),
    ("psf/psf-r0-00051060.fits", "psf"),
    ("psf/psf-r0-00067784.fits", "psf"),
    ("psf/spots-reference.fits", "unknown"),
    (
        "redrock-templates/rrtemplate-GALAXY-None-v0.1.fits",
        "templates",
    ),
    (
        "redrock-templates/rrtemplate-QSO-HIZ-v1.1.fits",
        "templates",
    ),
    (
        "redrock-templates/rrtemplate-QSO-LOZ-v1.1.fits",
        "templates",
    ),
    ("redrock-templates/rrtemplate-STAR-A-v0.1.fits", "templates"),
    ("redrock-templates/rrtemplate-STAR-B-v0.1.fits", "templates"),
    (
        "redrock-templates/rrtemplate-STAR-CV-v0.1.fits",
        "templates",
    ),
    ("redrock-templates/rrtemplate-STAR-F-v0.1.fits", "templates"),
    ("redrock-templates/rrtemplate-STAR-G-v0.1.fits", "templates"),
    ("redrock-templates/rrtemplate-STAR-K-v0.1.fits", "templates"),
    ("redrock-templates/rrtemplate-STAR-M-v0.1.fits", "templates"),
    (
        "redrock-templates/rrtemplate-STAR-WD-v0.1.fits",
        "templates",
    ),
    ("redshift/redrock-30-zscan.fits", "zscan"),
    ("redshift/redrock-30.fits", "redrock"),
    ("redshift/spectra-30.fits", "spectra"),
    ("redshift/truth-30.fits", "unknown"),
    ("sky/frame-sky-input.fits", "frame"),
    ("sky/sky-ref-f64.fits", "sky"),
    ("sky/sky-ref.fits", "sky"),
    ("sky/truth.fits", "unknown"),
];

/// Runs `spx-inspect --json ARGS…` and returns one JSON report per file.
fn inspect_json(args: &[&Path]) -> Vec<Value> {
    let out = common::bin("spx-inspect")
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "spx-inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn all_fits_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            all_fits_under(&p, out);
        } else if p.extension().is_some_and(|x| x == "fits") {
            out.push(p);
        }
    }
}

fn stat<'a>(r: &'a Value, name: &str) -> &'a Value {
    &r["stats"][name]
}

#[test]
fn recognises_every_shared_data_file() {
    // Needs one file to decide whether the data is there (skip or, in CI, fail).
    if shared_file("extract/frame-noisy.fits").is_none() {
        return;
    }
    let dir = shared_data_dir().unwrap();
    let mut files = Vec::new();
    all_fits_under(&dir, &mut files);
    files.sort();
    for f in &files {
        let rel = f.strip_prefix(&dir).unwrap().to_string_lossy().into_owned();
        assert!(
            SHARED_KINDS.iter().any(|(r, _)| *r == rel),
            "{rel} is new in shared/data: add its expected kind to SHARED_KINDS"
        );
    }
    let paths: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let reports = inspect_json(&paths);
    assert_eq!(reports.len(), files.len());
    for (f, r) in files.iter().zip(&reports) {
        let rel = f.strip_prefix(&dir).unwrap().to_string_lossy().into_owned();
        let want = SHARED_KINDS.iter().find(|(p, _)| *p == rel).unwrap().1;
        assert_eq!(r["kind"], want, "{rel}");
    }
    let by = |rel: &str| {
        let i = files.iter().position(|f| f.ends_with(rel)).unwrap();
        &reports[i]
    };

    // Statistics against the facts the shared data README states.
    let sky = by("sky/frame-sky-input.fits");
    assert_eq!(stat(sky, "nspec"), 60);
    assert_eq!(stat(sky, "nwave"), 2326);
    assert_eq!(stat(sky, "wave_min"), 5760.0);
    assert_eq!(stat(sky, "sky_fibers"), 12, "12 sky fibers (README)");
    assert_eq!(stat(sky, "masked_fraction"), 0.0);
    assert_eq!(sky["missing_hdus"], serde_json::json!([]));

    let fr = by("extract/frame-noisy.fits");
    assert_eq!(stat(fr, "nspec"), 25);
    assert_eq!(stat(fr, "nwave"), 313);
    // np.arange(6500.0, 6749.6 + 0.4, 0.8) ends at 6749.600000000057.
    assert!((stat(fr, "wave_max").as_f64().unwrap() - 6749.6).abs() < 1e-9);
    assert_eq!(stat(fr, "resolution_ndiag"), 11);
    let keys: Vec<(String, String)> = serde_json::from_value(fr["keys"].clone()).unwrap();
    assert!(keys.contains(&("CAMERA".into(), "r0".into())), "{keys:?}");
    assert_eq!(fr["missing_hdus"], serde_json::json!(["FIBERMAP"]));

    let rr = by("redshift/redrock-30.fits");
    assert_eq!(stat(rr, "ntargets"), 30);
    assert_eq!(
        stat(rr, "spectypes"),
        &serde_json::json!({"GALAXY": 15, "QSO": 8, "STAR": 7})
    );
    assert_eq!(stat(rr, "zwarn_nonzero"), 0, "all ZWARN = 0 (README)");

    let sp = by("redshift/spectra-30.fits");
    assert_eq!(stat(sp, "bands"), &serde_json::json!(["b", "r", "z"]));
    assert_eq!(stat(sp, "targets"), 30);
    assert_eq!(stat(sp, "r_nwave"), 2326);

    let psf = by("psf/psf-r0-00051060.fits");
    assert_eq!(stat(psf, "hsizex"), 8.0);
    assert_eq!(stat(psf, "hsizey"), 5.0);
    assert_eq!(stat(psf, "nfibers"), 500);
    assert_eq!(stat(psf, "wavemin"), 5543.0);
    assert_eq!(stat(psf, "wavemax"), 7826.0, "XTRACE domain (README quirk)");

    let pre = by("extract/preproc-noisy.fits");
    assert_eq!(stat(pre, "shape"), &serde_json::json!([4128, 4114]));
    assert_eq!(stat(pre, "read_noise"), 3.0, "RDNOISE = 3 (README)");
    // IVAR = 0 outside the lit box x[111:305], y[1617:2266] (README): 194·649 pixels lit.
    let lit = 194.0 * 649.0 / (4128.0 * 4114.0);
    let zero = stat(pre, "zero_ivar_fraction").as_f64().unwrap();
    assert!((zero - (1.0 - lit)).abs() < 1e-12, "{zero}");

    let zs = by("redshift/redrock-30-zscan.fits");
    assert_eq!(stat(zs, "templates")["GALAXY"], 1446);
    assert_eq!(stat(zs, "templates")["QSO_LOZ"], 788);
    let hiz = by("redrock-templates/rrtemplate-QSO-HIZ-v1.1.fits");
    assert_eq!(stat(hiz, "redshift_grid"), 1046);
}

/// A frame with known statistics: fiber i has flux 10·(i+1) and ivar 4 (S/N 20·(i+1)); fiber
/// 3 is dead (ivar 0); 10 pixels of fiber 0 carry a mask bit; fibers 1 and 2 are SKY.
fn known_frame(bunit: Option<&str>) -> Frame {
    let (ns, nw) = (4, 50);
    let flux = Array2::from_shape_fn((ns, nw), |(i, _)| 10.0 * (i + 1) as f64);
    let ivar = Array2::from_shape_fn((ns, nw), |(i, _)| if i == 3 { 0.0 } else { 4.0 });
    let mut mask = Array2::zeros((ns, nw));
    for j in 0..10 {
        mask[[0, j]] = spx::maskbits::specmask::COSMIC;
    }
    let mut resolution = Array3::zeros((ns, 5, nw));
    for i in 0..ns {
        let r = Resolution::from_gaussian_sigma(&vec![1.0; nw], 5).unwrap();
        resolution.index_axis_mut(Axis(0), i).assign(&r.band());
    }
    let fm = Table::new(vec![
        Column::new("TARGETID", ColumnData::I64(vec![1, 2, 3, 4])),
        Column::new("FIBER", ColumnData::I32(vec![0, 1, 2, 3])),
        Column::new(
            "OBJTYPE",
            ColumnData::Str(vec!["TGT".into(), "SKY".into(), "SKY".into(), "TGT".into()]),
        ),
    ])
    .unwrap();
    let mut header = Header::default();
    header.set("CAMERA", "z3".into());
    header.set("EXPID", 77i64.into());
    if let Some(b) = bunit {
        header.set("BUNIT", b.into());
        header.set("IN_CALIB", "fluxcalib-z3-00000077.fits".into());
    }
    Frame {
        wave: Array1::from_iter((0..nw).map(|j| 7500.0 + 0.8 * j as f64)),
        flux,
        ivar,
        mask,
        resolution,
        fibermap: Fibermap::from_table(fm).unwrap(),
        chi2pix: None,
        scores: None,
        header,
    }
}

#[test]
fn spx_written_frames_get_the_right_kind_and_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let frame = dir.path().join("frame-z3-00000077.fits");
    known_frame(None)
        .write(&frame, &Provenance::current("spx-test", &[]))
        .unwrap();
    // A cframe under a name that says nothing: the kind comes from the content.
    let cframe = dir.path().join("whatever.fits");
    known_frame(Some(spx::io::frame::BUNIT_CALIBRATED))
        .write(&cframe, &Provenance::current("spx-test", &[]))
        .unwrap();
    let r = inspect_json(&[&frame, &cframe]);
    assert_eq!(r[0]["kind"], "frame");
    assert_eq!(r[1]["kind"], "cframe");
    let s = &r[0]["stats"];
    assert_eq!(s["nspec"], 4);
    assert_eq!(s["nwave"], 50);
    assert_eq!(s["wave_min"], 7500.0);
    // 7500 + 0.8·j in f64: steps differ from 0.8 by rounding of ~1e-13.
    assert!(
        (s["wave_step"].as_f64().unwrap() - 0.8).abs() < 1e-9,
        "median step"
    );
    assert_eq!(
        s["median_flux_per_fiber"],
        serde_json::json!({"min": 10.0, "median": 20.0, "max": 30.0}),
        "fiber 3 has no data and is left out"
    );
    assert_eq!(
        s["median_snr_per_fiber"],
        serde_json::json!({"min": 20.0, "median": 40.0, "max": 60.0})
    );
    assert_eq!(s["fibers_without_data"], 1);
    assert_eq!(s["zero_ivar_fraction"], 0.25);
    assert_eq!(s["masked_fraction"], 10.0 / 200.0);
    assert_eq!(s["sky_fibers"], 2);
    let keys: Vec<(String, String)> = serde_json::from_value(r[0]["keys"].clone()).unwrap();
    assert!(keys.contains(&("CAMERA".into(), "z3".into())));
    assert!(keys.contains(&("SPXPROG".into(), "spx-test".into())));

    // The text form names the kind on its first line.
    let out = common::bin("spx-inspect").arg(&frame).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .next()
            .unwrap()
            .ends_with("frame-z3-00000077.fits: frame"),
        "{text}"
    );
    assert!(
        text.contains("median_snr_per_fiber: min 20, median 40, max 60"),
        "{text}"
    );
}

/// inspect describes odd files that the typed readers refuse, e.g. NaN in FLUX.
#[test]
fn odd_frames_are_still_described() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nan.fits");
    let (ns, nw) = (2, 8);
    let mut flux = vec![1.0f32; ns * nw];
    flux[3] = f32::NAN;
    let mut w = FitsWriter::create_with_primary_image(
        &path,
        &Provenance::default(),
        "FLUX",
        &[ns, nw],
        &flux,
    )
    .unwrap();
    w.image("IVAR", &[ns, nw], &vec![1.0f32; ns * nw]).unwrap();
    w.image(
        "WAVELENGTH",
        &[nw],
        &(0..nw).map(|j| 5000.0 + j as f64).collect::<Vec<_>>(),
    )
    .unwrap();
    w.image("RESOLUTION", &[ns, 1, nw], &vec![1.0f32; ns * nw])
        .unwrap();
    w.commit().unwrap();
    assert!(Frame::read(&path).is_err(), "the typed reader refuses NaN");
    let r = inspect_json(&[&path]);
    assert_eq!(r[0]["kind"], "frame");
    assert_eq!(r[0]["stats"]["nonfinite_flux"], 1);
    assert_eq!(
        r[0]["missing_hdus"],
        serde_json::json!(["MASK", "FIBERMAP"])
    );
}

/// Missing, truncated, empty and non-FITS files: one error line naming the file, exit 1,
/// nothing on stdout; the good files given alongside are still reported.
#[test]
fn bad_input_is_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("frame-z3-00000077.fits");
    known_frame(None)
        .write(&good, &Provenance::default())
        .unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.fits");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let header_cut = dir.path().join("header-cut.fits");
    std::fs::write(&header_cut, &bytes[..1000]).unwrap();
    let text = dir.path().join("notes.fits");
    std::fs::write(&text, "these are not FITS\n").unwrap();
    let empty = dir.path().join("empty.fits");
    std::fs::write(&empty, "").unwrap();
    let missing = dir.path().join("missing.fits");
    for bad in [&truncated, &header_cut, &text, &empty, &missing] {
        let out = common::bin("spx-inspect").arg(bad).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", bad.display());
        assert!(out.stdout.is_empty(), "{}", bad.display());
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.starts_with("spx-inspect: error: ") && err.contains(&*bad.to_string_lossy()),
            "{err}"
        );
    }
    let out = common::bin("spx-inspect")
        .args([&missing, &good, &truncated])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(
        err.contains("missing.fits") && err.contains("truncated.fits"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("frame-z3-00000077.fits: frame"));
}
