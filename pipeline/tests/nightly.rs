//! The shipped pipeline/nightly.yaml: exposures read from raw FITS headers, the whole chain
//! wired file to file (stand-in stage programs check every input exists and write every
//! output), bias/dark optional, fan-in by spectrograph and by tile.

#[path = "common/mod.rs"]
mod common;
use common::*;

#[test]
fn nightly_yaml_runs_the_whole_chain() {
    let d = tempfile::tempdir().unwrap();
    let rawdir = d.path().join("raw");
    let night = 20250101;
    raw(&rawdir, night, 1, "zero", None);
    raw(&rawdir, night, 2, "dark", None);
    raw(&rawdir, night, 3, "arc", None);
    raw(&rawdir, night, 4, "arc", None);
    raw(&rawdir, night, 5, "flat", None);
    raw(&rawdir, night, 6, "science", Some(1000));
    raw(&rawdir, night, 7, "science", Some(1000));
    raw(&rawdir, night, 8, "science", Some(2000));
    let path = fake_bin(d.path());
    let vars = [
        "--var",
        "rawdir=raw",
        "--var",
        "outdir=redux",
        "--var",
        "night=20250101",
    ];
    let o = cmd(d.path(), &[&["plan", &nightly()][..], &vars].concat())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let plan = String::from_utf8_lossy(&o.stdout).into_owned();
    // zero 3, bias 3, dark 3, darknight 3, preproc 6×3, psf 2×3, psfnight 3, flat 3+3+3,
    // science 3×3 for traceshift/extract/sky/fluxcal, flat traceshift 3, stdstars 3,
    // group 2, redshift 2.
    let total: usize = plan
        .lines()
        .filter_map(|l| l.strip_prefix("stage "))
        .map(|l| {
            l.split(" (")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse::<usize>()
                .unwrap()
        })
        .sum();
    assert_eq!(
        total,
        3 + 3 + 3 + 3 + 18 + 6 + 3 + 9 + 4 * 9 + 3 + 3 + 2 + 2,
        "{plan}"
    );
    let o = cmd(d.path(), &[&["run", &nightly()][..], &vars].concat())
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let redux = d.path().join("redux");
    let read = |p: &str| std::fs::read_to_string(redux.join(p)).unwrap();
    // Science preproc got the nightly bias and dark.
    let pre = read("preproc/20250101/00000006/preproc-z0-00000006.fits");
    assert!(
        pre.contains("--bias redux/calibnight/20250101/biasnight-z0-20250101.fits"),
        "{pre}"
    );
    assert!(
        pre.contains("--dark redux/calibnight/20250101/darknight-z0-20250101.fits"),
        "{pre}"
    );
    // psfnight averages both arcs.
    let psf = read("calibnight/20250101/psfnight-r0-20250101.fits");
    assert!(
        psf.contains("psf-r0-00000003.fits") && psf.contains("psf-r0-00000004.fits"),
        "{psf}"
    );
    // stdstars: b, r and z of one exposure.
    let st = read("exposures/20250101/00000007/stdstars-0-00000007.fits");
    for c in ["b0", "r0", "z0"] {
        assert!(st.contains(&format!("frame-{c}-00000007.fits")), "{st}");
    }
    // Tile 1000 groups exposures 6 and 7 (3 cameras each), not 8.
    let g = read("tiles/cumulative/1000/20250101/spectra-0-1000-thru20250101.fits");
    assert_eq!(g.matches("cframe-").count(), 6, "{g}");
    assert!(!g.contains("00000008"));
    assert!(redux
        .join("tiles/cumulative/2000/20250101/redrock-0-2000-thru20250101.fits")
        .exists());
    let j = std::fs::read_to_string(redux.join("logs/20250101/journal.jsonl")).unwrap();
    assert_eq!(j.lines().filter(|l| l.contains("\"end\"")).count(), total);

    // The same night through the generated Makefile with make -j2: the same files.
    let d2 = tempfile::tempdir().unwrap();
    for (night, expid, flavor, tile) in [
        (night, 1, "zero", None),
        (night, 2, "dark", None),
        (night, 3, "arc", None),
        (night, 4, "arc", None),
        (night, 5, "flat", None),
        (night, 6, "science", Some(1000)),
        (night, 7, "science", Some(1000)),
        (night, 8, "science", Some(2000)),
    ] {
        raw(&d2.path().join("raw"), night, expid, flavor, tile);
    }
    let o = cmd(
        d2.path(),
        &[&["makefile", &nightly(), "-o", "Makefile"][..], &vars].concat(),
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = std::process::Command::new("make")
        .args(["-j2", "-s"])
        .current_dir(d2.path())
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(o.status.success(), "make: {}", stderr(&o));
    assert_eq!(tree(&redux), tree(&d2.path().join("redux")));
}

#[test]
fn nightly_yaml_without_zeros_or_darks_drops_the_bias() {
    let d = tempfile::tempdir().unwrap();
    let rawdir = d.path().join("raw");
    raw(&rawdir, 20250102, 10, "arc", None);
    raw(&rawdir, 20250102, 11, "flat", None);
    raw(&rawdir, 20250102, 12, "science", Some(5));
    let o = cmd(
        d.path(),
        &[
            "plan",
            &nightly(),
            "--var",
            "rawdir=raw",
            "--var",
            "outdir=r",
            "--var",
            "night=20250102",
            "--json",
            "p.json",
        ],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let p: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("p.json")).unwrap()).unwrap();
    let pre = p["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "preproc-12-b0")
        .unwrap();
    let argv: Vec<&str> = pre["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        argv,
        [
            "spx-preproc",
            "-i",
            "raw/20250102/00000012/desi-00000012.fits",
            "--camera",
            "b0",
            "-o",
            "r/preproc/20250102/00000012/preproc-b0-00000012.fits"
        ]
    );
    // A missing raw file is a one-line error naming it.
    std::fs::remove_file(rawdir.join("20250102/00000011/desi-00000011.fits")).unwrap();
    std::fs::write(rawdir.join("20250102/00000011/desi-00000011.fits"), b"junk").unwrap();
    let o = cmd(
        d.path(),
        &[
            "plan",
            &nightly(),
            "--var",
            "rawdir=raw",
            "--var",
            "night=20250102",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.starts_with("spx-pipeline: error: exposures raw/20250102/00000011/desi-00000011.fits: "),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
}
