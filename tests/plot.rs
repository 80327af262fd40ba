//! spx-plot drives: each figure is written as a PNG that decodes, has the requested size and
//! is not blank, from the ../shared/data files (real DESI spectra with rrdesi's fit, a
//! synthetic preproc image with the real PSF it was made with, a frame with its sky model)
//! and from synthetic truth tables in spx-sim's layout. The model drawn on a spectrum is
//! checked numerically: its χ² against the data must equal the catalog's CHI2.

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use spx::io::fits::{Column, ColumnData, FitsReader, FitsWriter, Provenance};
use spx::io::redrock::RedshiftCatalog;
use spx::io::spectra::Spectra;
use spx::io::templates::load_templates;
use spx::testsupport::shared_file;

/// GALAXY, QSO (HIZ) and STAR (K) targets of spectra-30 (as tests/redshift.rs).
const GALAXY: i64 = 39627000000000002;
const QSO: i64 = 39627000000000016;
const STAR: i64 = 39627000000000003;

/// Decodes `png`, checks its size, and returns the grey-level variance over all pixels.
/// A blank (single-colour) image has variance 0; a white canvas with only axes and text has
/// a small one, so the callers also check that non-white pixels cover a fair fraction.
fn check_png(png: &Path, size: (u32, u32)) -> (f64, f64) {
    let img = image::open(png)
        .unwrap_or_else(|e| panic!("{}: does not decode as an image: {e}", png.display()))
        .to_rgb8();
    assert_eq!(img.dimensions(), size, "{}", png.display());
    let n = (size.0 * size.1) as f64;
    let (mut s, mut s2, mut nonwhite) = (0.0, 0.0, 0.0);
    for p in img.pixels() {
        let g = (p[0] as f64 + p[1] as f64 + p[2] as f64) / 3.0;
        s += g;
        s2 += g * g;
        if g < 250.0 {
            nonwhite += 1.0;
        }
    }
    let var = s2 / n - (s / n).powi(2);
    assert!(var > 1.0, "{}: blank image (variance {var})", png.display());
    (var, nonwhite / n)
}

fn plot(args: &[&str]) -> assert_cmd::assert::Assert {
    common::bin("spx-plot").args(args).arg("-q").assert()
}

/// Runs spx-plot with arguments that must be refused: exit status 1, no output written.
/// Returns the error message.
fn refused(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("refused.png");
    let a = common::bin("spx-plot")
        .args(args)
        .args(["-o", s(&out), "-q"])
        .assert()
        .code(1);
    assert!(!out.exists(), "a refused plot left {}", out.display());
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The model spx-plot draws is redrock's: χ² of the coadded data against it, with the fit's
/// sky mask, equals CHI2 of rrdesi's catalog. Both sums run over the same ~7000 pixels in
/// f64; rrdesi's CHI2 is the minimum of a parabola through the fine grid, and its Z is
/// stored to full precision, so the difference is the parabola's error at the minimum —
/// below 1e-5 relative, the README's CHI2 tolerance for spx-redshift against rrdesi.
#[test]
fn spectrum_model_reproduces_the_catalog_chi2() {
    let (Some(spec), Some(rr), Some(tpl)) = (
        shared_file("redshift/spectra-30.fits"),
        shared_file("redshift/redrock-30.fits"),
        shared_file("redrock-templates/templates-spx.txt"),
    ) else {
        return;
    };
    let spectra = Spectra::read(&spec).unwrap();
    let rows = RedshiftCatalog::read_redshifts(&rr).unwrap();
    let templates = load_templates(&tpl).unwrap();
    for id in [GALAXY, QSO, STAR] {
        let row = rows.iter().find(|r| r.targetid == id).unwrap();
        let bands =
            spx::plot::model::target_spectrum(&spectra, &spec, row, &templates, true).unwrap();
        let chi2 = spx::plot::model::chi2(&bands).unwrap();
        let rel = (chi2 - row.chi2).abs() / row.chi2;
        assert!(
            rel < 1e-5,
            "{id} {}: χ² of the drawn model {chi2} vs CHI2 {} (rel {rel:.2e})",
            row.spectype,
            row.chi2
        );
        // A wrong model (another redshift) must fail the same check: the test can fail.
        let mut off = row.clone();
        off.z += 0.01 * (1.0 + row.z);
        let bad = spx::plot::model::target_spectrum(&spectra, &spec, &off, &templates, true)
            .ok()
            .and_then(|b| spx::plot::model::chi2(&b));
        if let Some(bad) = bad {
            assert!(
                (bad - row.chi2) / row.chi2 > 1e-3,
                "{id}: shifted model fits as well"
            );
        }
    }
}

#[test]
fn spectrum_png_for_each_type() {
    let (Some(spec), Some(rr), Some(tpl)) = (
        shared_file("redshift/spectra-30.fits"),
        shared_file("redshift/redrock-30.fits"),
        shared_file("redrock-templates/templates-spx.txt"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (id, smooth) in [(GALAXY, "5"), (QSO, "1"), (STAR, "3")] {
        let out = dir.path().join(format!("spectrum-{id}.png"));
        plot(&[
            "spectrum",
            "-i",
            s(&spec),
            "--redrock",
            s(&rr),
            "-t",
            s(&tpl),
            "--targetid",
            &id.to_string(),
            "--smooth",
            smooth,
            "-o",
            s(&out),
        ])
        .success();
        let (_, ink) = check_png(&out, (1400, 600));
        // Three spectra, a model and labels: several percent of the canvas is drawn on.
        assert!(
            ink > 0.02,
            "{}: only {ink:.3} of the pixels drawn",
            out.display()
        );
    }
    // Only the PNGs, no temporary files left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
}

#[test]
fn spectrum_errors_name_the_problem_and_write_nothing() {
    let (Some(spec), Some(rr), Some(tpl)) = (
        shared_file("redshift/spectra-30.fits"),
        shared_file("redshift/redrock-30.fits"),
        shared_file("redrock-templates/templates-spx.txt"),
    ) else {
        return;
    };
    let err = refused(&[
        "spectrum",
        "-i",
        s(&spec),
        "--redrock",
        s(&rr),
        "-t",
        s(&tpl),
        "--targetid",
        "42",
    ]);
    assert!(
        err.contains("TARGETID 42") && err.contains("redrock-30.fits"),
        "{err}"
    );
    // Spectra file given as the catalog: a FITS error naming the file and HDU.
    let err = refused(&[
        "spectrum",
        "-i",
        s(&spec),
        "--redrock",
        s(&spec),
        "--targetid",
        &GALAXY.to_string(),
    ]);
    assert!(
        err.contains("spectra-30.fits") && err.contains("REDSHIFTS"),
        "{err}"
    );
}

#[test]
fn ccd_cutout_with_traces() {
    let (Some(pre), Some(psf)) = (
        shared_file("extract/preproc-noisy.fits"),
        shared_file("psf/psf-r0-00051060.fits"),
    ) else {
        return;
    };
    // The image holds bundle 0 (fibers 0–24) in the lit box LITXMIN..LITXMAX, LITYMIN..LITYMAX
    // (keys of the IMAGE HDU).
    let mut r = FitsReader::open(&pre).unwrap();
    let key = |r: &mut FitsReader, k: &str| -> i64 { r.key::<i64>("IMAGE", k).unwrap() };
    let (x0, x1) = (key(&mut r, "LITXMIN"), key(&mut r, "LITXMAX"));
    let y0 = key(&mut r, "LITYMIN");
    let rows = format!("{}:{}", y0, y0 + 150);
    let cols = format!("{}:{}", x0.max(0), x1 + 10);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ccd.png");
    plot(&[
        "ccd",
        "-i",
        s(&pre),
        "-p",
        s(&psf),
        "--rows",
        &rows,
        "--cols",
        &cols,
        "--size",
        "900x700",
        "-o",
        s(&out),
    ])
    .success();
    let (_, ink) = check_png(&out, (900, 700));
    // The image fills the plotting area (most of the canvas).
    assert!(ink > 0.5, "ccd: only {ink:.3} of the pixels drawn");
    // Traces are drawn in cyan (0, 200, 255) over grey: some pixels must be strongly blue.
    let img = image::open(&out).unwrap().to_rgb8();
    let cyan = img
        .pixels()
        .filter(|p| p[2] as i32 - p[0] as i32 > 100)
        .count();
    assert!(cyan > 500, "ccd: {cyan} trace pixels");
    // A range outside the image is refused, naming it.
    let err = refused(&["ccd", "-i", s(&pre), "-p", s(&psf), "--rows", "0:999999"]);
    assert!(err.contains("--rows 0:999999"));
}

#[test]
fn sky_residuals_png() {
    let (Some(frame), Some(sky)) = (
        shared_file("sky/frame-sky-input.fits"),
        shared_file("sky/sky-ref.fits"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("skyres.png");
    plot(&[
        "skyres",
        "--frame",
        s(&frame),
        "--sky",
        s(&sky),
        "-o",
        s(&out),
    ])
    .success();
    let (_, ink) = check_png(&out, (1400, 600));
    assert!(ink > 0.02, "skyres: only {ink:.3} of the pixels drawn");
    // The pulls of desispec's own sky model on its input frame have unit scale: the
    // library's Σ pull²/N is near 1 (sky fibers are what the model was fitted to, so it is
    // somewhat below 1; far from 1 would mean residuals were formed wrongly).
    let f = spx::io::frame::Frame::read(&frame).unwrap();
    let m = spx::io::sky::SkyModel::read(&sky).unwrap();
    let res = spx::plot::skyres::sky_residuals(&f, &m).unwrap();
    assert!(
        res.chi2_per_pixel > 0.5 && res.chi2_per_pixel < 2.0,
        "Σ pull²/N = {}",
        res.chi2_per_pixel
    );
}

/// A truth file in spx-sim's layout (TRUTH: TARGETID, OBJTYPE, SPECTYPE, Z) from truth-30.
fn sim_truth(dir: &Path) -> Option<PathBuf> {
    let t30 = shared_file("redshift/truth-30.fits")?;
    // truth-30's table is an unnamed extension: open it by number with fitsio.
    let mut f = fitsio::FitsFile::open(&t30).unwrap();
    let hdu = f.hdu(1).unwrap();
    let ids: Vec<i64> = hdu.read_col(&mut f, "TARGETID").unwrap();
    let types: Vec<String> = hdu.read_col(&mut f, "TRUESPECTYPE").unwrap();
    let z: Vec<f64> = hdu.read_col(&mut f, "TRUEZ").unwrap();
    let n = ids.len();
    let path = dir.join("truth.fits");
    let mut w = FitsWriter::create(&path, &Provenance::current("tests/plot", &[])).unwrap();
    w.table(
        "TRUTH",
        &[
            Column::new("TARGETID", ColumnData::I64(ids)),
            Column::new("OBJTYPE", ColumnData::Str(vec!["TGT".into(); n])),
            Column::new(
                "SPECTYPE",
                ColumnData::Str(types.iter().map(|t| t.trim().to_string()).collect()),
            ),
            Column::new("Z", ColumnData::F64(z)),
        ],
    )
    .unwrap();
    w.commit().unwrap();
    Some(path)
}

#[test]
fn zscatter_png() {
    let Some(rr) = shared_file("redshift/redrock-30.fits") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(truth) = sim_truth(dir.path()) else {
        return;
    };
    let out = dir.path().join("z.png");
    plot(&[
        "zscatter",
        "--redrock",
        s(&rr),
        "--truth",
        s(&truth),
        "-o",
        s(&out),
    ])
    .success();
    let (_, ink) = check_png(&out, (900, 1000));
    assert!(ink > 0.01, "zscatter: only {ink:.3} of the pixels drawn");
    // Truth without any of the catalog's targets: a clear error.
    let err = refused(&["zscatter", "--redrock", s(&rr), "--truth", s(&rr)]);
    assert!(err.contains("TRUTH"));
}

#[test]
fn chi2_scan_png() {
    let (Some(spec), Some(tpl)) = (
        shared_file("redshift/spectra-30.fits"),
        shared_file("redrock-templates/templates-spx.txt"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (rr, det) = (dir.path().join("rr.fits"), dir.path().join("d.fits"));
    common::bin("spx-redshift")
        .args([
            "-i",
            s(&spec),
            "-o",
            s(&rr),
            "-t",
            s(&tpl),
            "-d",
            s(&det),
            "-q",
        ])
        .args(["--targetids", &GALAXY.to_string()])
        .assert()
        .success();
    let out = dir.path().join("chi2.png");
    plot(&[
        "chi2",
        "--details",
        s(&det),
        "--targetid",
        &GALAXY.to_string(),
        "-o",
        s(&out),
    ])
    .success();
    let (_, ink) = check_png(&out, (1200, 800));
    assert!(ink > 0.02, "chi2: only {ink:.3} of the pixels drawn");
    // The scan's minimum over all templates is the catalog's best fit (same type, z within
    // the coarse grid step, which the fine fit refines).
    let scans = spx::plot::details::read_target_scans(&det, GALAXY).unwrap();
    let row = &RedshiftCatalog::read_redshifts(&rr).unwrap()[0];
    let (key, zmin) = scans
        .iter()
        .flat_map(|s| s.z.iter().zip(&s.chi2).map(move |(&z, &c)| (&s.key, z, c)))
        .min_by(|a, b| a.2.total_cmp(&b.2))
        .map(|(k, z, _)| (k.clone(), z))
        .unwrap();
    assert!(
        key.starts_with(row.spectype.trim()),
        "{key} vs {}",
        row.spectype
    );
    assert!(
        (zmin - row.z).abs() < 0.01 * (1.0 + row.z),
        "{zmin} vs {}",
        row.z
    );
    let err = refused(&["chi2", "--details", s(&det), "--targetid", "7"]);
    assert!(err.contains("TARGETID 7"));
}
