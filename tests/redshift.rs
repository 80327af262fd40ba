//! spx-redshift against rrdesi (redrock 0.21) on ../shared/data/redshift/spectra-30.fits with
//! the 11 real templates. Tolerances are those of shared/data/README.md, derived there from
//! redrock's own self-agreement (1e-6 input perturbation moved Z by ≤ 3.8e-5 ZERR and CHI2 by
//! ≤ 3.8e-7 relative):
//!   SPECTYPE, SUBTYPE, ZWARN equal; |ΔZ| ≤ max(1e-6·(1+Z), 0.01·ZERR); CHI2 within 1e-5
//!   relative; DELTACHI2 within 1e-4 relative or 0.05 absolute; each ZCHI2 scan within 1e-5 of
//!   min(ZCHI2) of that target (the reference is stored as float32, 6e-8 relative).
//!
//! The default (debug) suite fits 3 targets (one GALAXY, one QSO-HIZ, one STAR); the full 30 run
//! in release through `scripts/bench-redshift` (the `#[ignore]`d test below).

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use spx::io::fits::FitsReader;
use spx::io::redrock::RedshiftCatalog;
use spx::testsupport::shared_file;

struct Shared {
    spectra: PathBuf,
    redrock: PathBuf,
    zscan: PathBuf,
    templates: PathBuf,
}

fn shared() -> Option<Shared> {
    Some(Shared {
        spectra: shared_file("redshift/spectra-30.fits")?,
        redrock: shared_file("redshift/redrock-30.fits")?,
        zscan: shared_file("redshift/redrock-30-zscan.fits")?,
        templates: shared_file("redrock-templates/templates-spx.txt")?,
    })
}

fn run(s: &Shared, out: &Path, details: &Path, ids: Option<&str>, threads: usize) {
    let mut cmd = common::bin("spx-redshift");
    cmd.arg("-i")
        .arg(&s.spectra)
        .arg("-o")
        .arg(out)
        .arg("-t")
        .arg(&s.templates)
        .arg("-d")
        .arg(details)
        .arg("--threads")
        .arg(threads.to_string())
        .arg("-q");
    if let Some(ids) = ids {
        cmd.arg("--targetids").arg(ids);
    }
    cmd.assert().success();
}

/// Asserts the README's conformance rules for every target in `out`.
fn assert_conformant(s: &Shared, out: &Path, details: &Path) {
    let mine = RedshiftCatalog::read_redshifts(out).unwrap();
    let theirs = RedshiftCatalog::read_redshifts(&s.redrock).unwrap();
    assert!(!mine.is_empty());
    for m in &mine {
        let r = theirs
            .iter()
            .find(|r| r.targetid == m.targetid)
            .expect("target in redrock output");
        let id = m.targetid;
        assert_eq!(m.spectype, r.spectype, "{id} SPECTYPE");
        assert_eq!(m.subtype, r.subtype, "{id} SUBTYPE");
        assert_eq!(m.zwarn, r.zwarn, "{id} ZWARN");
        assert_eq!(m.npixels, r.npixels, "{id} NPIXELS");
        assert_eq!(m.ncoeff, r.ncoeff, "{id} NCOEFF");
        let ztol = (1e-6 * (1.0 + r.z)).max(0.01 * r.zerr);
        assert!(
            (m.z - r.z).abs() <= ztol,
            "{id} Z {} vs {} (tol {ztol})",
            m.z,
            r.z
        );
        assert!(
            (m.chi2 - r.chi2).abs() <= 1e-5 * r.chi2,
            "{id} CHI2 {} vs {}",
            m.chi2,
            r.chi2
        );
        let dd = (m.deltachi2 - r.deltachi2).abs();
        assert!(
            dd <= 1e-4 * r.deltachi2.abs() || dd <= 0.05,
            "{id} DELTACHI2 {} vs {}",
            m.deltachi2,
            r.deltachi2
        );
    }
    // χ²(z) scans, row by row (rows follow each file's TARGETID order).
    let mut a = FitsReader::open(details).unwrap();
    let mut b = FitsReader::open(&s.zscan).unwrap();
    let ta = a.image1::<i64>("TARGETID").unwrap();
    let tb = b.image1::<i64>("TARGETID").unwrap();
    let names: Vec<String> = b
        .hdu_names()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with("ZCHI2_"))
        .collect();
    assert_eq!(names.len(), 11);
    for n in &names {
        let za = a.image1::<f64>(&n.replace("ZCHI2_", "Z_")).unwrap();
        let zb = b.image1::<f64>(&n.replace("ZCHI2_", "Z_")).unwrap();
        assert_eq!(za.len(), zb.len(), "{n} grid length");
        for (x, y) in za.iter().zip(zb.iter()) {
            assert!((x - y).abs() <= 1e-12 * (1.0 + y.abs()), "{n} grid");
        }
        let ca = a.image2::<f64>(n).unwrap();
        let cb = b.image2::<f64>(n).unwrap();
        for (ia, t) in ta.iter().enumerate() {
            let ib = tb.iter().position(|x| x == t).unwrap();
            let rb = cb.row(ib);
            let min = rb.iter().cloned().fold(f64::INFINITY, f64::min);
            for (x, y) in ca.row(ia).iter().zip(rb.iter()) {
                assert!((x - y).abs() <= 1e-5 * min, "{n} target {t}: {x} vs {y}");
            }
        }
    }
}

/// One GALAXY, one QSO (HIZ) and one STAR (K) target: every assertion of the README.
#[test]
fn three_targets_match_redrock() {
    let Some(s) = shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (out, det) = (dir.path().join("rr.fits"), dir.path().join("d.fits"));
    run(
        &s,
        &out,
        &det,
        Some("39627000000000002,39627000000000016,39627000000000003"),
        2,
    );
    assert_conformant(&s, &out, &det);
}

/// Results must not depend on the thread count: 1 and 2 threads give identical data.
#[test]
fn one_and_two_threads_give_identical_results() {
    let Some(s) = shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ids = Some("39627000000000011");
    let p = |n: &str| dir.path().join(n);
    run(&s, &p("a.fits"), &p("da.fits"), ids, 1);
    run(&s, &p("b.fits"), &p("db.fits"), ids, 2);
    let a = RedshiftCatalog::read_redshifts(&p("a.fits")).unwrap();
    let b = RedshiftCatalog::read_redshifts(&p("b.fits")).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.z.to_bits(), y.z.to_bits());
        assert_eq!(x.chi2.to_bits(), y.chi2.to_bits());
        assert_eq!(x.deltachi2.to_bits(), y.deltachi2.to_bits());
        assert_eq!(x.coeff, y.coeff);
    }
    let mut da = FitsReader::open(p("da.fits")).unwrap();
    let mut db = FitsReader::open(p("db.fits")).unwrap();
    for n in da
        .hdu_names()
        .unwrap()
        .iter()
        .filter(|n| n.starts_with("ZCHI2_"))
    {
        assert_eq!(
            da.image2::<f32>(n).unwrap(),
            db.image2::<f32>(n).unwrap(),
            "{n}"
        );
    }
}

/// The output has redrock's HDUs and REDSHIFTS/FIBERMAP/TSNR2 column names and types.
#[test]
fn output_layout_matches_redrock() {
    let Some(s) = shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (out, det) = (dir.path().join("rr.fits"), dir.path().join("d.fits"));
    run(&s, &out, &det, Some("39627000000000013"), 2);
    let mut a = FitsReader::open(&out).unwrap();
    let mut b = FitsReader::open(&s.redrock).unwrap();
    assert_eq!(a.hdu_names().unwrap(), b.hdu_names().unwrap());
    for h in ["REDSHIFTS", "FIBERMAP", "EXP_FIBERMAP", "TSNR2"] {
        assert_eq!(
            a.column_names(h).unwrap(),
            b.column_names(h).unwrap(),
            "{h}"
        );
    }
    for h in ["REDSHIFTS", "FIBERMAP", "EXP_FIBERMAP", "TSNR2"] {
        let n = a.column_names(h).unwrap().len();
        for i in 1..=n {
            let k = format!("TFORM{i}");
            let fa: String = a.key(h, &k).unwrap();
            let fb: String = b.key(h, &k).unwrap();
            // "1K" and "K" are the same FITS type
            assert_eq!(
                fa.trim_start_matches('1'),
                fb.trim_start_matches('1'),
                "{h} {k}"
            );
        }
    }
}

fn expect_error(args: &[&str], out: &Path, needle: &str) {
    let o = common::bin("spx-redshift")
        .args(args)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(needle), "stderr {err:?} should name {needle}");
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
    assert!(!out.exists(), "no partial output");
}

/// Bad input: a missing HDU, NaN flux, an empty or unknown target list.
#[test]
fn bad_input_gives_one_line_errors_and_no_output() {
    let Some(s) = shared() else { return };
    let Some(py) = spx::testsupport::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rr.fits");
    let t = s.templates.to_str().unwrap();
    // a spectra file without R_RESOLUTION, and one with a NaN in B_FLUX (made with astropy)
    let nores = dir.path().join("nores.fits");
    let nan = dir.path().join("nan.fits");
    let script = format!(
        "from astropy.io import fits\nimport numpy as np\n\
         h=fits.open('{src}')\ndel h['R_RESOLUTION']\nh.writeto('{a}')\n\
         h=fits.open('{src}')\nh['B_FLUX'].data[3,100]=np.nan\nh.writeto('{b}')\n",
        src = s.spectra.display(),
        a = nores.display(),
        b = nan.display()
    );
    let st = std::process::Command::new(py)
        .arg("-c")
        .arg(script)
        .status()
        .unwrap();
    assert!(st.success());
    expect_error(
        &["-i", nores.to_str().unwrap(), "-t", t],
        &out,
        "R_RESOLUTION",
    );
    expect_error(&["-i", nan.to_str().unwrap(), "-t", t], &out, "B_FLUX");
    let sp = s.spectra.to_str().unwrap();
    expect_error(
        &["-i", sp, "-t", t, "--targetids", "42"],
        &out,
        "TARGETID 42",
    );
    expect_error(
        &["-i", sp, "-t", t, "--targetids", ""],
        &out,
        "spectra-30.fits",
    );
    expect_error(
        &["-i", "/nonexistent.fits", "-t", t],
        &out,
        "/nonexistent.fits",
    );
}

/// All 30 targets (release build; scripts/bench-redshift runs it with timing).
#[test]
#[ignore = "release build: run by scripts/bench-redshift"]
fn all_30_targets_match_redrock() {
    let Some(s) = shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (out, det) = (dir.path().join("rr.fits"), dir.path().join("d.fits"));
    run(&s, &out, &det, None, 2);
    assert_conformant(&s, &out, &det);
}

/// Spectra files written by spx read back in desispec identically (FIBERMAP, bands, SCORES).
#[test]
fn spx_written_spectra_read_in_desispec() {
    let Some(s) = shared() else { return };
    let Some(py) = spx::testsupport::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("spectra-copy.fits");
    let sp = spx::io::spectra::Spectra::read(&s.spectra).unwrap();
    sp.write(&copy, &spx::io::fits::Provenance::current("test", &[]))
        .unwrap();
    let script = format!(
        "from desispec.io import read_spectra\nimport numpy as np\n\
         a=read_spectra('{a}'); b=read_spectra('{b}')\n\
         assert a.bands==b.bands, (a.bands,b.bands)\n\
         for x in a.bands:\n\
         \x20 for k in ('wave','flux','ivar','mask','resolution_data'):\n\
         \x20   assert np.array_equal(getattr(a,k)[x], getattr(b,k)[x]), (x,k)\n\
         for c in a.fibermap.colnames: assert np.all(a.fibermap[c]==b.fibermap[c]), c\n\
         for c in a.scores.keys(): assert np.all(np.asarray(a.scores[c])==np.asarray(b.scores[c])), c\n\
         print('ok')\n",
        a = s.spectra.display(),
        b = copy.display()
    );
    let o = std::process::Command::new(py)
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "desispec could not read the spx copy: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// rrdesi (redrock 0.21) runs on an spx-written spectra file and gives the same redshifts as
/// on the original (2 targets; slow: rrdesi rebins all templates on their full grids first).
#[test]
#[ignore = "slow (rrdesi start-up): run by scripts/bench-redshift"]
fn rrdesi_runs_on_spx_written_spectra() {
    let Some(s) = shared() else { return };
    let Some(py) = spx::testsupport::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("spectra-copy.fits");
    let out = dir.path().join("rr.fits");
    let sp = spx::io::spectra::Spectra::read(&s.spectra).unwrap();
    sp.write(&copy, &spx::io::fits::Provenance::current("test", &[]))
        .unwrap();
    let rrdesi = py.parent().unwrap().join("rrdesi");
    let ids = "39627000000000013,39627000000000085";
    let st = std::process::Command::new(rrdesi)
        .args(["--mp", "1", "--targetids", ids, "-t"])
        .arg(&s.templates)
        .arg("-i")
        .arg(&copy)
        .arg("-o")
        .arg(&out)
        .env("OMP_NUM_THREADS", "1")
        .status()
        .unwrap();
    assert!(st.success());
    let mine = RedshiftCatalog::read_redshifts(&out).unwrap();
    let theirs = RedshiftCatalog::read_redshifts(&s.redrock).unwrap();
    assert_eq!(mine.len(), 2);
    for m in &mine {
        let r = theirs.iter().find(|r| r.targetid == m.targetid).unwrap();
        // same program, same data: equal up to float noise
        assert_eq!(m.spectype, r.spectype);
        assert!((m.z - r.z).abs() <= 1e-9 * (1.0 + r.z), "{} {}", m.z, r.z);
    }
}

/// A coadd file (desispec `coadd` + `write_spectra`, with EXP_FIBERMAP) is fitted like the
/// spectra file, and its FIBERMAP/EXP_FIBERMAP pass through.
#[test]
fn coadd_input_passes_fibermaps_through() {
    let Some(s) = shared() else { return };
    let Some(py) = spx::testsupport::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let coadd = dir.path().join("coadd.fits");
    let script = format!(
        "from desispec.io import read_spectra, write_spectra\n\
         from desispec.coaddition import coadd\n\
         s=read_spectra('{a}'); coadd(s); write_spectra('{b}', s)\n",
        a = s.spectra.display(),
        b = coadd.display()
    );
    let o = std::process::Command::new(py)
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = dir.path().join("rr.fits");
    let det = dir.path().join("d.fits");
    let s2 = Shared {
        spectra: coadd.clone(),
        redrock: s.redrock.clone(),
        zscan: s.zscan.clone(),
        templates: s.templates.clone(),
    };
    run(&s2, &out, &det, Some("39627000000000013"), 2);
    let mine = RedshiftCatalog::read_redshifts(&out).unwrap();
    let theirs = RedshiftCatalog::read_redshifts(&s.redrock).unwrap();
    let r = theirs
        .iter()
        .find(|r| r.targetid == mine[0].targetid)
        .unwrap();
    // a one-exposure coadd is the same data up to float32 rounding of flux/ivar
    assert_eq!(mine[0].spectype, r.spectype);
    assert!((mine[0].z - r.z).abs() <= 0.01 * r.zerr);
    let mut a = FitsReader::open(&out).unwrap();
    let mut c = FitsReader::open(&coadd).unwrap();
    assert_eq!(
        a.column_names("FIBERMAP").unwrap(),
        c.column_names("FIBERMAP").unwrap()
    );
    assert_eq!(a.nrows("EXP_FIBERMAP").unwrap(), 1);
}

/// A FITS file's bytes with the provenance cards (DATE, CHECKSUM, SPXCMD … and long-string
/// CONTINUE cards) blanked, so two runs can be compared byte for byte.
fn without_provenance(path: &Path) -> Vec<u8> {
    let mut b = std::fs::read(path).unwrap();
    for card in b.chunks_mut(80) {
        let key = String::from_utf8_lossy(&card[..8.min(card.len())])
            .trim()
            .to_string();
        let is_card = card.len() == 80 && (card[8..10] == *b"= " || key == "CONTINUE");
        if is_card && (spx::io::fits::is_provenance_key(&key) || key == "CONTINUE") {
            card.fill(b' ');
        }
    }
    b
}

/// Targets over ranks: 1 rank and 3 ranks (shares of 2, 1 and 1 targets) write the same
/// catalog and details bytes, in target order, and only rank 0 writes.
#[test]
fn one_and_three_ranks_write_identical_files() {
    use clap::Parser;
    let Some(s) = shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let ids = "39627000000000016,39627000000000002,39627000000000011,39627000000000013";
    let opts = |out: &Path, det: &Path| {
        spx::cli::redshift::RedshiftOpts::try_parse_from([
            "spx-redshift".as_ref(),
            "-i".as_ref(),
            s.spectra.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
            "-t".as_ref(),
            s.templates.as_os_str(),
            "-d".as_ref(),
            det.as_os_str(),
            "--targetids".as_ref(),
            std::ffi::OsStr::new(ids),
        ])
        .unwrap()
    };
    let one = opts(&p("one.fits"), &p("d1.fits"));
    spx::cli::redshift::run(&one, &spx::comm::SingleComm).unwrap();
    let three = opts(&p("three.fits"), &p("d3.fits"));
    for r in spx::comm::ThreadComm::run(3, |comm| spx::cli::redshift::run(&three, comm)) {
        r.unwrap();
    }
    let cat = RedshiftCatalog::read_redshifts(&p("three.fits")).unwrap();
    let got: Vec<String> = cat.iter().map(|r| r.targetid.to_string()).collect();
    assert_eq!(got.join(","), ids);
    assert!(
        without_provenance(&p("one.fits")) == without_provenance(&p("three.fits")),
        "catalogs differ"
    );
    assert!(
        without_provenance(&p("d1.fits")) == without_provenance(&p("d3.fits")),
        "details differ"
    );
}

/// Writes the simulated spectra of `obs` (spx::redshift::truthspec: DESI grids, σ = 0.8 Å
/// resolution) to `path`; returns the truth of each row.
fn write_truth_spectra(
    obs: &spx::redshift::truthspec::TruthSpecOptions,
    path: &Path,
) -> Vec<spx::speclib::targets::Truth> {
    let (sp, truths) = spx::redshift::truthspec::simulate(obs);
    sp.write(path, &spx::io::fits::Provenance::current("test", &[]))
        .unwrap();
    truths
}

/// Pulls (z − z_true)/ZERR of the targets with ZWARN = 0 and |Δz|/(1+z) < 0.0033 (the
/// catastrophics are counted by the success-rate tests, not by the error width).
fn pulls(cat: &Path, truths: &[spx::speclib::targets::Truth]) -> Vec<(i64, f64)> {
    let rows = RedshiftCatalog::read_redshifts(cat).unwrap();
    let mut out = Vec::new();
    for r in rows {
        let t = truths.iter().find(|t| t.targetid == r.targetid).unwrap();
        if r.zwarn == 0 && (r.z - t.z).abs() / (1.0 + t.z) < 0.0033 && r.zerr > 0.0 {
            out.push((r.targetid, (r.z - t.z) / r.zerr));
        }
    }
    out
}

/// Robust width of a sample: 1.4826 × median absolute deviation from the median (σ for a
/// Gaussian, insensitive to a few outliers).
fn robust_width(x: &[f64]) -> f64 {
    use spx::stats::median;
    let m = median(x.iter().copied());
    1.4826 * median(x.iter().map(|v| (v - m).abs()))
}

/// Bootstrap standard deviations of the robust widths of the two pull columns of `pairs`
/// and of their ratio (resampling targets, so the correlation of the two fitters' pulls on
/// the same spectra is kept): 2000 resamples from a fixed xorshift stream.
fn bootstrap_widths(pairs: &[(f64, f64)]) -> (f64, f64, f64) {
    let n = pairs.len();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let (mut a, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..2000 {
        let idx: Vec<usize> = (0..n).map(|_| next()).collect();
        let wa = robust_width(&idx.iter().map(|&i| pairs[i].0).collect::<Vec<_>>());
        let wb = robust_width(&idx.iter().map(|&i| pairs[i].1).collect::<Vec<_>>());
        a.push(wa);
        b.push(wb);
        r.push(wa / wb);
    }
    let sd = |v: &[f64]| {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
    };
    (sd(&a), sd(&b), sd(&r))
}

/// ZERR against redrock: the widths of (z − z_true)/ZERR of spx-redshift (the 11 real
/// templates, and spx's default set) and of rrdesi (the real templates) on the same simulated
/// spectra agree within 1.2× (issue 7). ZERR is the parabola curvature error of χ² in both.
/// Slow (rrdesi takes ~6 s per target): run by scripts/bench-redshift;
/// `SPX_PULL_NFIBERS` (default 100 fibers, ≈ 90 targets).
#[test]
#[ignore = "slow (rrdesi): run by scripts/bench-redshift"]
fn zerr_pull_width_matches_redrock() {
    let Some(s) = shared() else { return };
    let Some(py) = spx::testsupport::python() else {
        return;
    };
    let nf = std::env::var("SPX_PULL_NFIBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    // seed 41: not a sample any template or fitter setting was adjusted on
    let obs = spx::redshift::truthspec::TruthSpecOptions::desi(41, nf);
    let truths = write_truth_spectra(&obs, &p("spectra.fits"));
    let rrdesi = py.parent().unwrap().join("rrdesi");
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let st = std::process::Command::new(rrdesi)
        .args(["--mp", &ncpu.to_string(), "-t"])
        .arg(&s.templates)
        .arg("-i")
        .arg(p("spectra.fits"))
        .arg("-o")
        .arg(p("rr.fits"))
        .env("OMP_NUM_THREADS", "1")
        .status()
        .unwrap();
    assert!(st.success(), "rrdesi failed on the simulated spectra");
    common::bin("spx-redshift")
        .arg("-i")
        .arg(p("spectra.fits"))
        .arg("-o")
        .arg(p("spx-real.fits"))
        .arg("-t")
        .arg(&s.templates)
        .arg("-q")
        .assert()
        .success();
    common::bin("spx-redshift")
        .arg("-i")
        .arg(p("spectra.fits"))
        .arg("-o")
        .arg(p("spx-default.fits"))
        .arg("-q")
        .assert()
        .success();
    let theirs = pulls(&p("rr.fits"), &truths);
    let w_rr = robust_width(&theirs.iter().map(|x| x.1).collect::<Vec<_>>());
    eprintln!(
        "rrdesi (real templates): {} of {} targets, pull width {w_rr:.3}",
        theirs.len(),
        truths.len()
    );
    for (label, file) in [
        ("spx-redshift (real templates)", "spx-real.fits"),
        ("spx-redshift (default templates)", "spx-default.fits"),
    ] {
        let mine = pulls(&p(file), &truths);
        let w = robust_width(&mine.iter().map(|x| x.1).collect::<Vec<_>>());
        // on the targets both got right, for a like-for-like ratio
        let both: Vec<(f64, f64)> = mine
            .iter()
            .filter_map(|(id, a)| theirs.iter().find(|t| t.0 == *id).map(|t| (*a, t.1)))
            .collect();
        let wa = robust_width(&both.iter().map(|x| x.0).collect::<Vec<_>>());
        let wb = robust_width(&both.iter().map(|x| x.1).collect::<Vec<_>>());
        let (sa, sb, sr) = bootstrap_widths(&both);
        eprintln!(
            "{label}: {} targets, pull width {w:.3} (ratio to rrdesi {:.3}); on the {} common \
             targets {wa:.3} ± {sa:.3} vs {wb:.3} ± {sb:.3} (ratio {:.3} ± {sr:.3}, bootstrap)",
            mine.len(),
            w / w_rr,
            both.len(),
            wa / wb
        );
        // Issue 7: within 1.2× of redrock's, in either direction.
        assert!(mine.len() >= 20 && both.len() >= 20);
        assert!(
            (1.0 / 1.2..=1.2).contains(&(wa / wb)),
            "{label}: {wa} vs {wb}"
        );
    }
}

/// Benchmark: 500 simulated targets (DESI grids) with the 11 real templates, release build,
/// all threads; prints CPU seconds per target per core, peak RSS and the template cache size.
/// Run by scripts/bench-redshift.
#[test]
#[ignore = "benchmark: run by scripts/bench-redshift"]
fn simulated_500_targets_benchmark() {
    let Some(s) = shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let obs = spx::redshift::truthspec::TruthSpecOptions::desi(43, 600);
    let truths = write_truth_spectra(&obs, &p("spectra.fits"));
    assert!(truths.len() >= 500);
    let ids: Vec<String> = truths[..500]
        .iter()
        .map(|t| t.targetid.to_string())
        .collect();
    let bin = assert_cmd::cargo::cargo_bin("spx-redshift");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let out = std::process::Command::new("/usr/bin/time")
        .arg("-v")
        .arg(bin)
        .arg("-i")
        .arg(p("spectra.fits"))
        .arg("-o")
        .arg(p("rr.fits"))
        .arg("-t")
        .arg(&s.templates)
        .arg("--targetids")
        .arg(ids.join(","))
        .arg("--threads")
        .arg(threads.to_string())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let field = |k: &str| -> f64 {
        err.lines()
            .find_map(|l| l.trim().strip_prefix(k))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    let cpu = field("User time (seconds):") + field("System time (seconds):");
    eprintln!(
        "BENCH 500 simulated targets, 11 real templates, {threads} threads: cpu {cpu:.1} s, \
         {:.3} s/target/core, peak RSS {:.0} MB",
        cpu / 500.0,
        field("Maximum resident set size (kbytes):") / 1024.0
    );
    for l in err
        .lines()
        .filter(|l| l.contains("cache") || l.contains("s/target"))
    {
        eprintln!("{l}");
    }
    let rows = RedshiftCatalog::read_redshifts(&p("rr.fits")).unwrap();
    assert_eq!(rows.len(), 500);
}
