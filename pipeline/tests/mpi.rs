//! `spx-pipeline run` under `mpirun -np 3` (feature `mpi`): the toy night with in-process
//! built-in stages on 2-rank groups gives the same bytes as the local executor, and a
//! panicking task is contained; the shipped nightly.yaml reduces a simulated `mini` night
//! to the same bytes with the local executor, under `mpirun -np 3` (real stages in-process)
//! and through its Makefile with `make -j2`; spx-extract and spx-redshift give the same
//! bytes on 1 and 3 MPI ranks. Run with
//! `cargo build -p spx-bins --features mpi && cargo test -p spx-pipeline --features mpi --test mpi`
//! (needs OpenMPI's mpirun; the spx-* programs are found beside spx-pipeline, or in
//! SPX_BIN_DIR).
#![cfg(feature = "mpi")]

#[path = "common/mod.rs"]
mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The toy night plus in-process stages: `builtin:concat` on groups of 2 ranks, and an
/// optional stage that panics.
fn yaml(with_panic: bool) -> String {
    let mut y = YAML.to_string();
    y.push_str(
        r#"  - name: coadd
    command: "builtin:concat"
    foreach: {exposure: {flavor: science}, camera: "{cameras}"}
    group_by: [tile, spectrograph]
    inputs: {frames: "{outdir}/{file:frame}", spectra: "{outdir}/{file:spectra}"}
    outputs: {coadd: "{outdir}/{file:coadd}"}
    args: ["{outputs.coadd}", "{inputs.frames}", "{inputs.spectra}"]
    ranks: 2
"#,
    );
    if with_panic {
        y.push_str(
            r#"  - name: boom
    command: "builtin:panic"
    foreach: {exposure: {expid: 3}}
    inputs: {frame: "{outdir}/exposures/{night}/00000003/frame-b0-00000003.fits"}
    outputs: {x: "{outdir}/boom-{expid}.txt"}
  - name: after-boom
    command: "{tool}"
    foreach: {exposure: {expid: 3}}
    inputs: {x: "{outdir}/boom-{expid}.txt"}
    outputs: {y: "{outdir}/after-boom-{expid}.txt"}
    args: ["after-boom-{expid}", "{outputs.y}", "{inputs.x}"]
"#,
        );
    }
    y
}

fn mpirun(dir: &Path, np: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new("mpirun")
        .current_dir(dir)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .env_remove("FAIL")
        .args(["-np", np, bin()])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn mpirun_np3_equals_the_local_run() {
    let d = setup();
    std::fs::write(d.path().join("m.yaml"), yaml(false)).unwrap();
    let o = run(d.path(), &["run", "m.yaml", "--var", "outdir=local"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = mpirun(d.path(), "3", &["run", "m.yaml", "--var", "outdir=mpi"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("on 3 MPI ranks"), "{}", stderr(&o));
    let local = tree(&d.path().join("local"));
    assert_eq!(local.len(), 12 + 3 + 9 + 9 + 6 + 4 + 4);
    assert_eq!(local, tree(&d.path().join("mpi")));
    // Resume under MPI: nothing to do.
    let o = mpirun(d.path(), "3", &["run", "m.yaml", "--var", "outdir=mpi"]);
    assert!(
        stderr(&o).contains(" up to date, 0 ran ok"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_panicking_task_is_contained() {
    let d = setup();
    std::fs::write(d.path().join("p.yaml"), yaml(true)).unwrap();
    let o = mpirun(d.path(), "3", &["run", "p.yaml"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("failed: boom-3"), "{e}");
    let j = journal(d.path());
    let boom = j
        .iter()
        .find(|e| e["task"] == "boom-3" && e["event"] == "end")
        .unwrap();
    assert_eq!(boom["exit_code"], 101);
    assert_eq!(boom["message"], "panicked");
    assert!(j
        .iter()
        .any(|e| e["task"] == "after-boom-3" && e["event"] == "skip"));
    // Everything else finished, including the 2-rank in-process groups.
    assert!(d
        .path()
        .join("out/tiles/cumulative/200/20201214/coadd-1-200-thru20201214.fits")
        .exists());
}

/// `mpirun -np NP PROGRAM` in `dir` (root allowed, oversubscription allowed: CI machines
/// have fewer cores than ranks).
fn mpirun_cmd(dir: &Path, np: usize, program: &Path) -> Command {
    let mut c = Command::new("mpirun");
    c.current_dir(dir)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .args(["-np", &np.to_string()])
        .arg(program);
    c
}

/// The folder of the spx-* programs: SPX_BIN_DIR, else beside spx-pipeline (the cargo
/// target folder). They must be built (`cargo build -p spx-bins --features mpi`): this
/// test fails rather than skips, so CI cannot pass without running it.
fn spx_bin_dir() -> PathBuf {
    let dir = std::env::var_os("SPX_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(bin()).parent().unwrap().to_path_buf());
    for p in std::iter::once("sim").chain(NIGHT_STAGES) {
        assert!(
            dir.join(format!("spx-{p}")).is_file(),
            "{}/spx-{p} is missing: run `cargo build -p spx-bins --features mpi` first (or set SPX_BIN_DIR)",
            dir.display()
        );
    }
    dir
}

fn run_ok(c: &mut Command, what: &str) -> std::process::Output {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{what}: {}", stderr(&o));
    o
}

/// One HDU of a FITS file: header cards other than provenance (SPXVER, SPXPROG, SPXCMD,
/// SPXINnn, DATE, CHECKSUM, DATASUM, LONGSTRN and the CONTINUE cards of those), and the
/// data bytes.
type Hdu = (Vec<String>, Vec<u8>);

/// Splits a FITS file into HDUs by its 2880-byte blocks (FITS standard §4, §7.4: the data
/// size is |BITPIX|/8 × GCOUNT × (PCOUNT + NAXIS1 × … × NAXISn)).
fn fits_hdus(path: &Path, b: &[u8]) -> Vec<Hdu> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 2880 <= b.len() {
        let mut cards = Vec::new();
        let mut dropping = false;
        let (mut bitpix, mut naxis, mut pcount, mut gcount) = (0i64, 0usize, 0i64, 1i64);
        let mut dims = Vec::new();
        loop {
            assert!(
                pos + 80 <= b.len(),
                "{}: header without END",
                path.display()
            );
            let card = String::from_utf8_lossy(&b[pos..pos + 80]).into_owned();
            pos += 80;
            let key = card[..8].trim().to_string();
            if key == "END" {
                break;
            }
            let value = || {
                card[10..]
                    .split('/')
                    .next()
                    .unwrap()
                    .trim()
                    .parse::<i64>()
                    .unwrap()
            };
            match key.as_str() {
                "BITPIX" => bitpix = value(),
                "NAXIS" => naxis = value() as usize,
                "PCOUNT" => pcount = value(),
                "GCOUNT" => gcount = value(),
                k if k.starts_with("NAXIS") && k[5..].parse::<usize>().is_ok() => {
                    dims.push(value())
                }
                _ => {}
            }
            let provenance = spx::io::fits::is_provenance_key(&key);
            if provenance || (dropping && key == "CONTINUE") {
                dropping = true;
                continue;
            }
            dropping = false;
            cards.push(card);
        }
        pos = pos.div_ceil(2880) * 2880;
        assert_eq!(dims.len(), naxis, "{}: NAXISn cards", path.display());
        let n: i64 = if naxis == 0 { 0 } else { dims.iter().product() };
        let size = (bitpix.unsigned_abs() as i64 / 8 * gcount * (pcount + n)) as usize;
        assert!(pos + size <= b.len(), "{}: truncated data", path.display());
        out.push((cards, b[pos..pos + size].to_vec()));
        pos = (pos + size).div_ceil(2880) * 2880;
    }
    assert_eq!(pos, b.len(), "{}: trailing bytes", path.display());
    out
}

/// Asserts two FITS files hold the same bytes in every HDU's data and the same header cards
/// but for provenance.
fn assert_same_fits(a: &Path, b: &Path) {
    let (ba, bb) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    let (ha, hb) = (fits_hdus(a, &ba), fits_hdus(b, &bb));
    assert_eq!(
        ha.len(),
        hb.len(),
        "{} vs {}: HDU count",
        a.display(),
        b.display()
    );
    for (i, (x, y)) in ha.iter().zip(&hb).enumerate() {
        assert_eq!(
            x.0,
            y.0,
            "{} vs {}: header of HDU {i}",
            a.display(),
            b.display()
        );
        assert!(
            x.1 == y.1,
            "{} vs {}: data of HDU {i} differ",
            a.display(),
            b.display()
        );
    }
}

/// Asserts two output trees (logs excluded) hold the same files with the same FITS content;
/// returns how many files were compared.
fn assert_same_tree(a: &Path, b: &Path) -> usize {
    let (ta, tb) = (tree(a), tree(b));
    let names =
        |t: &std::collections::BTreeMap<PathBuf, Vec<u8>>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&ta),
        names(&tb),
        "{} vs {}: file lists",
        a.display(),
        b.display()
    );
    for name in ta.keys() {
        assert_same_fits(&a.join(name), &b.join(name));
    }
    ta.len()
}

/// Simulates the demo's `mini` night (scripts/demo): 2 arcs, 2 flats, 2 science exposures of
/// tile 1000, cameras b0 r0 z0, with cosmic rays.
fn simulate_night(dir: &Path, bins: &Path, night: u32) {
    for (kind, expid) in [
        ("arc", 1),
        ("arc", 2),
        ("flat", 3),
        ("flat", 4),
        ("science", 5),
        ("science", 6),
    ] {
        let e = format!("{expid:08}");
        let raw = dir.join(format!("raw/{night}/{e}"));
        std::fs::create_dir_all(&raw).unwrap();
        run_ok(
            Command::new(bins.join("spx-sim"))
                .current_dir(dir)
                .args([
                    kind,
                    "--preset",
                    "mini",
                    "--cosmics",
                    "--no-truth-images",
                    "-q",
                ])
                .args(["--night", &night.to_string(), "--expid", &expid.to_string()])
                .args(["--seed", &expid.to_string(), "--tileid", "1000"])
                .arg("-o")
                .arg(raw.join(format!("desi-{e}.fits")))
                .arg("--truth")
                .arg(dir.join(format!("truth-{e}.fits"))),
            "spx-sim",
        );
    }
}

/// Issue 8's "must be true": the shipped nightly.yaml reduces a whole `mini` night (76
/// tasks, raw → redshifts) to the same bytes with the local executor, under `mpirun -np 3`
/// (real stages in-process on group communicators; extraction on 2-rank groups) and through
/// the generated Makefile with `make -j2`. The night's outputs then feed issue 4's and
/// issue 7's checks: spx-extract and spx-redshift give the same bytes on 1 and 3 ranks.
#[test]
fn mini_night_same_bytes_local_mpirun_make() {
    let bins = spx_bin_dir();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let night = 20260101;
    simulate_night(dir, &bins, night);
    let path = format!("{}:{}", bins.display(), std::env::var("PATH").unwrap());
    // Every run writes outdir `redux` (stages record their input paths in headers), then
    // the result moves aside.
    let args: Vec<String> = [
        nightly(),
        "--var".into(),
        "rawdir=raw".into(),
        "--var".into(),
        format!("night={night}"),
        "--var".into(),
        "outdir=redux".into(),
    ]
    .into();
    let o = run_ok(
        cmd(dir, &["run"]).args(&args).env("PATH", &path),
        "local run",
    );
    assert!(
        stderr(&o).contains(" 76 ran ok, 0 failed"),
        "{}",
        stderr(&o)
    );
    std::fs::rename(dir.join("redux"), dir.join("local")).unwrap();

    let o = run_ok(
        mpirun_cmd(dir, 3, Path::new(bin()))
            .arg("run")
            .args(&args)
            .env("PATH", &path),
        "mpirun -np 3 spx-pipeline run",
    );
    let e = stderr(&o);
    assert!(
        e.contains(" 76 ran ok, 0 failed") && e.contains("on 3 MPI ranks"),
        "{e}"
    );
    // In-process, not started as programs: the task logs say so.
    let log =
        std::fs::read_to_string(dir.join(format!("redux/logs/{night}/extract/extract-5-r0.log")))
            .unwrap_or_default();
    assert!(log.contains("on 2 MPI ranks: exit 0"), "{log}");
    std::fs::rename(dir.join("redux"), dir.join("mpi")).unwrap();

    run_ok(
        cmd(dir, &["makefile"]).args(&args).args(["-o", "Makefile"]),
        "spx-pipeline makefile",
    );
    run_ok(
        Command::new("make")
            .args(["-j2", "-s"])
            .current_dir(dir)
            .env("PATH", &path),
        "make -j2",
    );
    let n = assert_same_tree(&dir.join("local"), &dir.join("mpi"));
    assert_same_tree(&dir.join("local"), &dir.join("redux"));
    // 76 tasks, fluxcal writes 2 files each (6 tasks), group 2 (1 task).
    assert_eq!(n, 76 + 6 + 1, "outputs of the night");

    // Issue 4: spx-extract, bundles spread over 3 ranks (4 bundles of 5 fibers: 2+1+1),
    // gathered on rank 0 — the same bytes as one process.
    let pre = format!("local/preproc/{night}/00000005/preproc-r0-00000005.fits");
    let psf = format!("local/exposures/{night}/00000005/psf-r0-00000005.fits");
    let ex = |c: &mut Command, out: &str| {
        let o = run_ok(
            c.args(["-i", &pre, "-p", &psf, "--bundlesize", "5", "-v", "-o", out]),
            out,
        );
        stderr(&o)
    };
    let e1 = ex(
        Command::new(bins.join("spx-extract")).current_dir(dir),
        "x1.fits",
    );
    assert!(e1.contains("1 ranks)"), "{e1}");
    let e3 = ex(
        &mut mpirun_cmd(dir, 3, &bins.join("spx-extract")),
        "x3.fits",
    );
    assert!(e3.contains("3 ranks)"), "{e3}");
    assert_same_fits(&dir.join("x1.fits"), &dir.join("x3.fits"));

    // Issue 7: spx-redshift on 7 targets of the tile's coadd (3+2+2 over 3 ranks once
    // targets are spread over ranks), 1 and 3 ranks.
    let coadd = format!("local/tiles/cumulative/1000/{night}/coadd-0-1000-thru{night}.fits");
    let ids = spx::io::fits::FitsReader::open(dir.join(&coadd))
        .unwrap()
        .col::<i64>("FIBERMAP", "TARGETID")
        .unwrap();
    assert!(ids.len() >= 7, "{coadd}: {} targets", ids.len());
    let ids = ids[..7]
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let z = |c: &mut Command, out: &str| {
        run_ok(c.args(["-i", &coadd, "--targetids", &ids, "-o", out]), out);
    };
    z(
        Command::new(bins.join("spx-redshift")).current_dir(dir),
        "z1.fits",
    );
    z(
        &mut mpirun_cmd(dir, 3, &bins.join("spx-redshift")),
        "z3.fits",
    );
    assert_same_fits(&dir.join("z1.fits"), &dir.join("z3.fits"));

    // A stage that does not split its work runs on rank 0 alone under a bare mpirun: three
    // ranks print spx-inspect's summary once, and a failure on rank 0 fails the job.
    let inspect = |c: &mut Command| c.args(["--json", &pre]).output().unwrap();
    let i1 = inspect(Command::new(bins.join("spx-inspect")).current_dir(dir));
    let i3 = inspect(&mut mpirun_cmd(dir, 3, &bins.join("spx-inspect")));
    assert!(
        i1.status.success() && i3.status.success(),
        "{}",
        stderr(&i3)
    );
    assert_eq!(
        String::from_utf8_lossy(&i3.stdout),
        String::from_utf8_lossy(&i1.stdout)
    );
    let bad = mpirun_cmd(dir, 3, &bins.join("spx-inspect"))
        .arg("no-such-file.fits")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert_eq!(
        stderr(&bad).matches("no-such-file.fits").count(),
        1,
        "{}",
        stderr(&bad)
    );
}

/// A 2-rank group where one rank has nothing to send: `builtin:concat` of one input. (An
/// empty slice's dangling pointer is OpenMPI's MPI_IN_PLACE; MpiComm::gather_bytes must
/// not pass it to MPI_Gatherv.)
#[test]
fn a_rank_with_nothing_to_gather() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("in.txt"), "one input\n").unwrap();
    std::fs::write(
        d.path().join("g.yaml"),
        r#"
variables: {outdir: out}
exposures:
  list: [{NIGHT: 20201214, EXPID: 1, FLAVOR: arc}]
stages:
  - name: one
    command: "builtin:concat"
    foreach: {exposure: all}
    inputs: {x: in.txt}
    outputs: {y: "{outdir}/one-{expid}.txt"}
    args: ["{outputs.y}", "{inputs.x}"]
    ranks: 2
"#,
    )
    .unwrap();
    let o = mpirun(d.path(), "3", &["run", "g.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(d.path().join("out/one-1.txt")).unwrap(),
        "one input\n"
    );
}
