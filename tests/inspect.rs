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
    // Cut inside the last HDU's header (FIBERMAP: one 2880-byte header block, one data
    // block): cfitsio then just sees one HDU fewer.
    let last_header_cut = dir.path().join("last-header-cut.fits");
    std::fs::write(&last_header_cut, &bytes[..bytes.len() - 2880 - 1000]).unwrap();
    let missing = dir.path().join("missing.fits");
    let mut bad_files = vec![
        &truncated,
        &header_cut,
        &last_header_cut,
        &text,
        &empty,
        &missing,
    ];
    // A gzip-compressed file (DESI's default) cut short: cfitsio inflates what is there
    // without complaint; the gzip trailer gives it away.
    let gz = dir.path().join("frame.fits.gz");
    let gz_cut = dir.path().join("frame-cut.fits.gz");
    // gzip is an essential package on Debian (scripts/setup's target).
    let o = common::run_ok(
        std::process::Command::new("gzip").arg("-c").arg(&good),
        "gzip",
    );
    std::fs::write(&gz, &o.stdout).unwrap();
    std::fs::write(&gz_cut, &o.stdout[..o.stdout.len() * 2 / 3]).unwrap();
    bad_files.push(&gz_cut);
    let r = inspect_json(&[&gz]);
    assert_eq!(r[0]["kind"], "frame", "a whole .fits.gz is fine");
    for bad in bad_files {
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

/// Minimal files of the kinds absent from ../shared/data, laid out as the DESI data model
/// says (reference/calibration.md §1.5, §2.4, §3.9, §4.4, §5), under names that do not give
/// the kind away.
#[test]
fn synthetic_files_of_every_kind() {
    let dir = tempfile::tempdir().unwrap();
    let prov = Provenance::default();
    let (ns, nw) = (3usize, 10usize);
    let f4 = |n: usize, v: f32| vec![v; n];
    let wave: Vec<f64> = (0..nw).map(|j| 5000.0 + j as f64).collect();
    let fibermap = || {
        Table::new(vec![
            Column::new("TARGETID", ColumnData::I64(vec![7, 8, 7])),
            Column::new("FIBER", ColumnData::I32(vec![0, 1, 2])),
            Column::new(
                "OBJTYPE",
                ColumnData::Str(vec!["TGT".into(), "SKY".into(), "TGT".into()]),
            ),
        ])
        .unwrap()
    };
    let mut files: Vec<(PathBuf, &str)> = Vec::new();
    let mut new = |name: &str, kind: &'static str| {
        let p = dir.path().join(name);
        files.push((p.clone(), kind));
        p
    };

    // raw: one integer image per camera, plus the SPEC header HDU.
    let mut w = FitsWriter::create(new("a.fits", "raw"), &prov).unwrap();
    w.image("SPEC", &[0], &[0u8; 0]).unwrap();
    w.image("B0", &[4, 6], &[1000i32; 24]).unwrap();
    w.image("R0", &[4, 6], &[2000i32; 24]).unwrap();
    w.commit().unwrap();

    // preproc with a READNOISE image (median 2.5).
    let p = new("b.fits", "preproc");
    let mut w =
        FitsWriter::create_with_primary_image(&p, &prov, "IMAGE", &[4, 5], &f4(20, 3.0)).unwrap();
    w.key("CAMERA", "b0").unwrap();
    w.image("IVAR", &[4, 5], &f4(20, 1.0)).unwrap();
    w.image("MASK", &[4, 5], &[0i16; 20]).unwrap();
    w.image("READNOISE", &[4, 5], &f4(20, 2.5)).unwrap();
    w.commit().unwrap();

    for (name, main, kind) in [
        ("c.fits", "FIBERFLAT", "fiberflat"),
        ("d.fits", "SKY", "sky"),
        ("e.fits", "FLUXCALIB", "fluxcalib"),
    ] {
        let p = new(name, kind);
        let mut w =
            FitsWriter::create_with_primary_image(&p, &prov, main, &[ns, nw], &f4(ns * nw, 2.0))
                .unwrap();
        w.image("IVAR", &[ns, nw], &f4(ns * nw, 1.0)).unwrap();
        w.image("MASK", &[ns, nw], &vec![0u32; ns * nw]).unwrap();
        w.image("WAVELENGTH", &[nw], &wave).unwrap();
        w.commit().unwrap();
    }

    // stdstars: FLUX, WAVELENGTH, FIBERS, METADATA.
    let p = new("f.fits", "stdstars");
    let mut w =
        FitsWriter::create_with_primary_image(&p, &prov, "FLUX", &[2, nw], &f4(2 * nw, 1.0))
            .unwrap();
    w.image("WAVELENGTH", &[nw], &wave).unwrap();
    w.image("FIBERS", &[2], &[3i32, 17]).unwrap();
    w.table(
        "METADATA",
        &[Column::new("LOGG", ColumnData::F64(vec![4.0, 4.5]))],
    )
    .unwrap();
    w.commit().unwrap();

    // spectra and coadd: band HDUs; the coadd has EXP_FIBERMAP.
    for (name, kind, coadd) in [("g.fits", "spectra", false), ("h.fits", "coadd", true)] {
        let p = new(name, kind);
        let mut w = FitsWriter::create(&p, &prov).unwrap();
        fibermap().write(&mut w, "FIBERMAP").unwrap();
        if coadd {
            fibermap().write(&mut w, "EXP_FIBERMAP").unwrap();
        }
        for b in ["B", "R"] {
            w.image(&format!("{b}_WAVELENGTH"), &[nw], &wave).unwrap();
            w.image(&format!("{b}_FLUX"), &[ns, nw], &f4(ns * nw, 4.0))
                .unwrap();
            w.image(&format!("{b}_IVAR"), &[ns, nw], &f4(ns * nw, 0.25))
                .unwrap();
        }
        w.commit().unwrap();
    }

    // A bare fibermap file.
    let p = new("i.fits", "fibermap");
    let mut w = FitsWriter::create(&p, &prov).unwrap();
    fibermap().write(&mut w, "FIBERMAP").unwrap();
    w.commit().unwrap();

    // Frame flavours from their provenance keywords.
    for (name, key, kind) in [
        ("j.fits", "FIBERFLT", "fframe"),
        ("k.fits", "IN_SKY", "sframe"),
    ] {
        let p = new(name, kind);
        let mut f = known_frame(None);
        f.header
            .set("FIBERFLT", "fiberflat-z3-00000077.fits".into());
        if key == "IN_SKY" {
            f.header.set("IN_SKY", "sky-z3-00000077.fits".into());
        }
        f.write(&p, &prov).unwrap();
    }

    // A PSF of a type spx does not evaluate is still a PSF.
    let p = new("l.fits", "psf");
    let mut w =
        FitsWriter::create_with_primary_image(&p, &prov, "XTRACE", &[2, 3], &[0.0f64; 6]).unwrap();
    w.key("PSFTYPE", "SPOTGRID").unwrap();
    w.image("YTRACE", &[2, 3], &[0.0f64; 6]).unwrap();
    w.commit().unwrap();

    let paths: Vec<&Path> = files.iter().map(|(p, _)| p.as_path()).collect();
    let reports = inspect_json(&paths);
    for ((p, kind), r) in files.iter().zip(&reports) {
        assert_eq!(r["kind"], *kind, "{}", p.display());
    }
    let s = |i: usize, k: &str| reports[i]["stats"][k].clone();
    assert_eq!(s(0, "cameras"), serde_json::json!(["b0", "r0"]));
    assert_eq!(s(0, "r0_median_adu"), 2000.0);
    assert_eq!(s(1, "read_noise"), 2.5);
    assert_eq!(s(2, "median_fiberflat"), 2.0);
    assert_eq!(s(3, "median_sky"), 2.0);
    assert_eq!(s(5, "nstars"), 2);
    assert_eq!(s(5, "fibers"), serde_json::json!([3, 17]));
    assert_eq!(s(6, "bands"), serde_json::json!(["b", "r"]));
    assert_eq!(s(6, "targets"), 2, "TARGETID 7 appears twice");
    // S/N = 4·√0.25 = 2 everywhere.
    assert_eq!(
        s(7, "r_median_snr_per_fiber"),
        serde_json::json!({"min": 2.0, "median": 2.0, "max": 2.0})
    );
    assert_eq!(s(8, "objtypes"), serde_json::json!({"SKY": 1, "TGT": 2}));
    let keys: Vec<(String, String)> = serde_json::from_value(reports[11]["keys"].clone()).unwrap();
    assert!(keys.contains(&("PSFTYPE".into(), "SPOTGRID".into())));
}

/// `--long` lists every column with its TFORM and every header card.
#[test]
fn long_listing_shows_all_columns_and_cards() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frame-z3-00000077.fits");
    known_frame(None)
        .write(&path, &Provenance::default())
        .unwrap();
    let out = common::bin("spx-inspect")
        .args(["--long", "--no-stats"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("TARGETID(1K) FIBER(1J) OBJTYPE(3A)"),
        "{text}"
    );
    assert!(text.contains("EXPID    = 77"), "{text}");
    assert!(!text.contains("stats:"), "{text}");
}

/// Files written by spx's typed writers (and re-written DESI files) get their kind.
#[test]
fn files_written_by_spx_writers_get_their_kind() {
    use spx::io::fiberflat::FiberFlat;
    use spx::io::preproc::PreprocImage;
    use spx::io::raw::{AmpInfo, RawCamera, RawExposure, Section};
    use spx::io::simtruth::{CameraTruth, SimTruth};
    use spx::io::sky::SkyModel;
    let dir = tempfile::tempdir().unwrap();
    let prov = Provenance::default();
    let mut files: Vec<(PathBuf, &str)> = Vec::new();
    let (ns, nw) = (3, 12);
    let wave = Array1::from_iter((0..nw).map(|j| 5760.0 + 0.8 * j as f64));
    let ones = Array2::<f64>::ones((ns, nw));
    let mut header = Header::default();
    header.set("CAMERA", "r1".into());

    let sec = |y0, y1, x0, x1| Section { y0, y1, x0, x1 };
    let raw = RawExposure {
        night: 20250101,
        expid: 12,
        flavor: "science".into(),
        exptime: 900.0,
        primary: Header::default(),
        cameras: vec![RawCamera {
            camera: "r1".into(),
            image: Array2::from_elem((8, 12), 1000.0f32),
            amps: vec![AmpInfo {
                name: "A".into(),
                gain: Some(1.5),
                read_noise: Some(3.0),
                saturation: None,
                datasec: sec(0, 8, 0, 10),
                ccdsec: sec(0, 8, 0, 10),
                biassec: sec(0, 8, 10, 12),
                orsec: None,
                presec: None,
            }],
            header: Header::default(),
        }],
        fibermap: None,
    };
    let p = dir.path().join("1.fits");
    raw.write(&p, &prov).unwrap();
    files.push((p, "raw"));

    let truth = SimTruth {
        night: 20250101,
        expid: 12,
        flavor: "science".into(),
        exptime: 900.0,
        seed: 1,
        tileid: 1000,
        instrument: "mini".into(),
        fibermap: None,
        truth: None,
        cameras: vec![CameraTruth {
            camera: "r1".into(),
            wave: wave.clone(),
            phot: Array2::ones((ns, nw)),
            skyphot: Array2::ones((ns, nw)),
            flux: Array2::ones((ns, nw)),
            skyflux: Array2::ones((ns, nw)),
            calib: Array2::ones((ns, nw)),
            image: None,
            cosmics: None,
            dark_electrons: 0.0,
            nphot: 1.0,
        }],
    };
    let p = dir.path().join("2.fits");
    truth.write(&p, &prov).unwrap();
    files.push((p, "simtruth"));

    let img = PreprocImage {
        image: Array2::from_elem((6, 5), 2.0f32),
        ivar: Array2::from_elem((6, 5), 1.0f32),
        mask: Array2::zeros((6, 5)),
        readnoise: None,
        header: header.clone(),
        fibermap: None,
    };
    let p = dir.path().join("3.fits");
    spx::io::preproc::write(&p, &img, &prov).unwrap();
    files.push((p, "preproc"));

    let sky = SkyModel {
        wave: wave.clone(),
        flux: ones.clone(),
        ivar: ones.clone(),
        mask: Array2::zeros((ns, nw)),
        stat_ivar: None,
        throughput_corrections: None,
        throughput_corrections_model: None,
        skytargetid: None,
        header: header.clone(),
    };
    let p = dir.path().join("4.fits");
    sky.write(&p, &prov).unwrap();
    files.push((p, "sky"));

    let ff = FiberFlat {
        wave: wave.clone(),
        fiberflat: ones.clone(),
        ivar: ones.clone(),
        mask: Array2::zeros((ns, nw)),
        meanspec: Array1::ones(nw),
        chi2pdf: None,
        fibermap: None,
        header,
    };
    let p = dir.path().join("5.fits");
    ff.write(&p, &prov).unwrap();
    files.push((p, "fiberflat"));

    // DESI files read and re-written by spx keep their kind.
    if let Some(src) = shared_file("psf/psf-r0-00051060.fits") {
        let psf = spx::io::psf::read(&src).unwrap();
        let p = dir.path().join("6.fits");
        spx::io::psf::write(&p, &psf, &prov).unwrap();
        files.push((p, "psf"));
    }
    if let Some(src) = shared_file("redshift/spectra-30.fits") {
        let sp = spx::io::spectra::Spectra::read(&src).unwrap();
        let p = dir.path().join("7.fits");
        sp.write(&p, &prov).unwrap();
        files.push((p, "spectra"));
    }

    let paths: Vec<&Path> = files.iter().map(|(p, _)| p.as_path()).collect();
    let reports = inspect_json(&paths);
    for ((p, kind), r) in files.iter().zip(&reports) {
        assert_eq!(r["kind"], *kind, "{}", p.display());
        assert_eq!(r["missing_hdus"], serde_json::json!([]), "{}", p.display());
    }
    assert_eq!(reports[0]["stats"]["cameras"], serde_json::json!(["r1"]));
    assert_eq!(reports[1]["stats"]["cameras"], serde_json::json!(["r1"]));
    assert_eq!(reports[1]["stats"]["r1_nwave"], nw);
}
