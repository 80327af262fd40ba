//! `spx-pipeline run` under `mpirun -np 3` (feature `mpi`): the toy night with in-process
//! built-in stages on 2-rank groups gives the same bytes as the local executor, and a
//! panicking task is contained. Run with
//! `cargo test -p spx-pipeline --features mpi --test mpi` (needs OpenMPI's mpirun).
#![cfg(feature = "mpi")]

#[path = "common/mod.rs"]
mod common;
use common::*;
use std::path::Path;

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

#[test]
fn nightly_yaml_under_mpirun_equals_the_local_run() {
    let d = tempfile::tempdir().unwrap();
    raw_night(&d.path().join("raw"), 20250101);
    let path = fake_bin(d.path());
    let y = nightly();
    let args = |out: &str| {
        vec![
            "run".to_string(),
            y.clone(),
            "--var".into(),
            "rawdir=raw".into(),
            "--var".into(),
            "night=20250101".into(),
            "--var".into(),
            format!("outdir={out}"),
        ]
    };
    let a = args("redux");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = cmd(d.path(), &a).env("PATH", &path).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let local = tree(&d.path().join("redux"));
    // The stand-ins write their command line, which names the outdir: rerun the same
    // outdir under MPI after moving the local result away.
    std::fs::rename(d.path().join("redux"), d.path().join("local")).unwrap();
    let o = std::process::Command::new("mpirun")
        .current_dir(d.path())
        .env("PATH", &path)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .args(["-np", "3", bin()])
        .args(&a[..])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(local, tree(&d.path().join("redux")));
}
