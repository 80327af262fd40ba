//! Makefile and Slurm generators on the toy night: `make -j2` gives the same files as the
//! local executor, hostile paths stay paths, the sbatch scripts carry the arrays and
//! dependencies, and the array elements (`spx-pipeline task`) run the frozen plan.

#[path = "common/mod.rs"]
mod common;
use common::*;
use std::path::Path;

/// A path with a command substitution and quotes in it: must stay a literal path.
const HOSTILE: &str = "o$(touch${IFS}PWNED)'q\"`id`";

#[test]
fn make_j2_equals_the_local_run_even_with_a_hostile_outdir() {
    let d = setup();
    let o = run(d.path(), &["run", "night.yaml", "--var", "outdir=out"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let var = format!("outdir={HOSTILE}");
    let o = run(
        d.path(),
        &["makefile", "night.yaml", "--var", &var, "-o", "Makefile"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mk = std::fs::read_to_string(d.path().join("Makefile")).unwrap();
    assert!(
        mk.contains("SPX_THREADS=2 OPENBLAS_NUM_THREADS=1 ./tool.sh extract-2-b0"),
        "{mk}"
    );
    let o = std::process::Command::new("make")
        .args(["-j2", "-s"])
        .current_dir(d.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "make: {}", stderr(&o));
    assert!(!d.path().join("PWNED").exists(), "a path was executed");
    let local = tree(&d.path().join("out"));
    let made = tree(&d.path().join(HOSTILE));
    assert_eq!(local.len(), 12 + 3 + 9 + 9 + 6 + 4);
    assert_eq!(local, made);
    // Up to date: make has nothing to do.
    let o = std::process::Command::new("make")
        .args(["-q"])
        .current_dir(d.path())
        .status()
        .unwrap();
    assert!(o.success());
}

#[test]
fn makefile_refuses_a_path_with_a_space() {
    let d = setup();
    let o = run(
        d.path(),
        &["makefile", "night.yaml", "--var", "outdir=my out"],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.starts_with("spx-pipeline: error: makefile: cannot represent path \"my out/preproc/"),
        "{e}"
    );
}

#[test]
fn slurm_scripts_have_arrays_and_dependencies() {
    let d = setup();
    let o = run(
        d.path(),
        &[
            "slurm",
            "night.yaml",
            "-o",
            "sl",
            "--sbatch=--partition=debug",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let sl = d.path().join("sl");
    let read = |f: &str| std::fs::read_to_string(sl.join(f)).unwrap();
    let ex = read("extract.sbatch");
    for line in [
        "#SBATCH --array=0-8%2",
        "#SBATCH --ntasks=1",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --kill-on-invalid-dep=yes",
        "#SBATCH --partition=debug",
    ] {
        assert!(ex.lines().any(|l| l == line), "{line} missing in\n{ex}");
    }
    assert!(
        ex.contains(" task ") && ex.ends_with(" extract \"$SLURM_ARRAY_TASK_ID\"\n"),
        "{ex}"
    );
    assert!(read("preproc.sbatch").contains("#SBATCH --array=0-11\n"));
    let sub = read("submit.sh");
    // sky is element-wise on extract; everything else fans in or re-indexes.
    assert!(
        sub.contains("j_sky=$(sbatch --parsable --dependency=\"aftercorr:$j_extract\""),
        "{sub}"
    );
    assert!(
        sub.contains("--dependency=\"afterany:$j_preproc,afterany:$j_psfnight\""),
        "{sub}"
    );
    assert!(
        sub.contains(
            "j_group=$(sbatch --parsable --dependency=\"afterany:$j_extract,afterany:$j_stdstars\""
        ),
        "{sub}"
    );
    let order: Vec<&str> = sub
        .lines()
        .filter_map(|l| {
            l.strip_prefix("j_")
                .and_then(|l| l.split_once("=$("))
                .map(|x| x.0)
        })
        .collect();
    assert_eq!(
        order,
        ["preproc", "psfnight", "extract", "sky", "stdstars", "group"]
    );
}

/// A stand-in for sbatch that runs each array element at once, in order (dependencies hold
/// because stages are submitted in order); it records its arguments.
const FAKE_SBATCH: &str = r#"#!/bin/sh
script=""; out=""; dir=""
for a in "$@"; do
  case "$a" in
    --output=*) out="${a#--output=}";;
    --chdir=*) dir="${a#--chdir=}";;
    --*) ;;
    *) script="$a";;
  esac
done
echo "$@" >> "$SBATCH_LOG"
range=$(sed -n 's/^#SBATCH --array=0-\([0-9]*\).*/\1/p' "$script")
cd "$dir"
for i in $(seq 0 "$range"); do
  SLURM_ARRAY_TASK_ID=$i SLURM_CPUS_PER_TASK=1 bash "$script" > /dev/null 2>&1
done
echo "1$$;cluster"
"#;

#[test]
fn frozen_plan_runs_through_array_elements_and_isolates_a_failure() {
    use std::os::unix::fs::PermissionsExt;
    let d = setup();
    let fake = d.path().join("bin");
    std::fs::create_dir(&fake).unwrap();
    std::fs::write(fake.join("sbatch"), FAKE_SBATCH).unwrap();
    std::fs::set_permissions(fake.join("sbatch"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap());
    let o = cmd(d.path(), &["slurm", "night.yaml", "-o", "sl", "--submit"])
        .env("PATH", &path)
        .env("SBATCH_LOG", d.path().join("sbatch.log"))
        .env("FAIL", "extract-3-r0")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = d.path().join("out");
    let j = journal(d.path());
    let skipped: Vec<&str> = j
        .iter()
        .filter(|e| e["event"] == "skip")
        .map(|e| e["task"].as_str().unwrap())
        .collect();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert!(out
        .join("tiles/cumulative/200/20201214/spectra-0-200-thru20201214.fits")
        .exists());
    assert!(!out
        .join("tiles/cumulative/100/20201214/spectra-0-100-thru20201214.fits")
        .exists());
    // An element of a failed upstream exits 3 and says why.
    let o = run(d.path(), &["task", "sl/plan.json", "sky", "4"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("skipped: upstream failed"));
    // The repaired rerun completes; the same files as a local run.
    let o = cmd(d.path(), &["slurm", "night.yaml", "-o", "sl", "--submit"])
        .env("PATH", &path)
        .env("SBATCH_LOG", d.path().join("sbatch.log"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(d.path(), &["run", "night.yaml", "--var", "outdir=local"]);
    assert!(o.status.success());
    assert_eq!(tree(&out), tree(&d.path().join("local")));
    assert!(Path::new(&d.path().join("sbatch.log")).exists());
}
