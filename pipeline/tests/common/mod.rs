//! A toy night of shell stages for the executor tests: every stage runs `tool.sh`, which
//! concatenates its inputs into its output atomically (temp file + rename, as spx stages
//! write), so the tests need no spx stage binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const TOOL: &str = r#"#!/bin/sh
# tool.sh NAME OUT [IN...]: OUT = "NAME" + inputs, written atomically.
# $FAIL (exported by the test): a task NAME that fails; $DELAY: seconds to sleep first;
# $COUNT_DIR: one line appended per run of NAME (to count reruns).
name=$1; out=$2; shift 2
[ -n "$COUNT_DIR" ] && echo run >> "$COUNT_DIR/$name"
[ -n "$DELAY" ] && sleep "$DELAY"
case " $FAIL " in *" $name "*) echo "tool: $name fails on purpose" >&2; exit 7;; esac
if [ -n "$FLAKY_DIR" ] && [ ! -e "$FLAKY_DIR/$name" ]; then
  touch "$FLAKY_DIR/$name"; echo "tool: $name flakes once" >&2; exit 5
fi
{ echo "$name"; for f in "$@"; do cat "$f"; done; echo "end $name"; } > "$out.tmp" && mv "$out.tmp" "$out"
"#;

/// The toy night: 1 arc + 3 science exposures on 2 tiles, cameras b0,r0,b1.
pub const YAML: &str = r#"
variables:
  outdir: out
  night: 20201214
  cameras: b0,r0,b1
  tool: ./tool.sh
exposures:
  list:
    - {NIGHT: 20201214, EXPID: 1, FLAVOR: arc}
    - {NIGHT: 20201214, EXPID: 2, FLAVOR: science, TILEID: 100}
    - {NIGHT: 20201214, EXPID: 3, FLAVOR: science, TILEID: 100}
    - {NIGHT: 20201214, EXPID: 4, FLAVOR: science, TILEID: 200}
stages:
  - name: preproc
    command: "{tool}"
    foreach: {exposure: all, camera: "{cameras}"}
    outputs: {image: "{outdir}/{file:preproc}"}
    args: ["preproc-{expid}-{camera}", "{outputs.image}"]
  - name: psfnight
    command: "{tool}"
    foreach: {exposure: {flavor: arc}, camera: "{cameras}"}
    group_by: [camera]
    inputs: {arcs: "{outdir}/{file:preproc}"}
    outputs: {psf: "{outdir}/{file:psfnight}"}
    args: ["psfnight-{camera}", "{outputs.psf}", "{inputs.arcs}"]
  - name: extract
    command: "{tool}"
    foreach: {exposure: {flavor: science}, camera: "{cameras}"}
    inputs: {image: "{outdir}/{file:preproc}", psf: "{outdir}/{file:psfnight}"}
    outputs: {frame: "{outdir}/{file:frame}"}
    args: ["extract-{expid}-{camera}", "{outputs.frame}", "{inputs.image}", "{inputs.psf}"]
    threads: 2
    retries: 1
    max_parallel: 2
  - name: sky
    command: "{tool}"
    foreach: {exposure: {flavor: science}, camera: "{cameras}"}
    inputs: {frame: "{outdir}/{file:frame}"}
    outputs: {sky: "{outdir}/{file:sky}"}
    args: ["sky-{expid}-{camera}", "{outputs.sky}", "{inputs.frame}"]
  - name: stdstars
    command: "{tool}"
    foreach: {exposure: {flavor: science}, camera: "{cameras}"}
    group_by: [expid, spectrograph]
    inputs: {frames: "{outdir}/{file:frame}"}
    outputs: {stars: "{outdir}/{file:stdstars}"}
    args: ["stdstars-{expid}-{spectrograph}", "{outputs.stars}", "{inputs.frames}"]
  - name: group
    command: "{tool}"
    foreach: {exposure: {flavor: science}, camera: "{cameras}"}
    group_by: [tile, spectrograph]
    inputs: {frames: "{outdir}/{file:frame}", stars: "{outdir}/{file:stdstars}"}
    outputs: {spectra: "{outdir}/{file:spectra}"}
    args: ["group-{tile}-{spectrograph}", "{outputs.spectra}", "{inputs.frames}", "{inputs.stars}"]
"#;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_spx-pipeline")
}

/// A temp dir with tool.sh and night.yaml.
pub fn setup() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let tool = dir.path().join("tool.sh");
    std::fs::write(&tool, TOOL).unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.path().join("night.yaml"), YAML).unwrap();
    dir
}

pub fn cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(dir).args(args);
    for v in ["FAIL", "DELAY", "COUNT_DIR", "FLAKY_DIR"] {
        c.env_remove(v);
    }
    c
}

pub fn run(dir: &Path, args: &[&str]) -> Output {
    cmd(dir, args).output().unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every regular file under `root` (relative path → bytes), excluding logs.
pub fn tree(root: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, d: &Path, out: &mut std::collections::BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "logs") {
                    continue;
                }
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = Default::default();
    walk(root, root, &mut out);
    out
}

/// The journal lines of a run in `dir` (outdir `out`).
pub fn journal(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("out/logs/journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

// --- The shipped nightly.yaml with stand-in stage programs. ---

use spx::io::fits::{FitsWriter, Provenance};

/// Writes a raw file with the header keys the pipeline reads.
pub fn raw(rawdir: &Path, night: u32, expid: u32, flavor: &str, tile: Option<i64>) {
    let p = rawdir.join(format!("{night}/{expid:08}/desi-{expid:08}.fits"));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let mut w = FitsWriter::create(&p, &Provenance::current("test", &[])).unwrap();
    w.key("NIGHT", night as i64).unwrap();
    w.key("EXPID", expid as i64).unwrap();
    w.key("FLAVOR", flavor).unwrap();
    w.key("EXPTIME", 900.0).unwrap();
    if let Some(t) = tile {
        w.key("TILEID", t).unwrap();
    }
    w.commit().unwrap();
}

/// Stand-in for every spx-* stage: fails on a missing .fits input, writes its outputs
/// (after -o, --cframe, --coadd) atomically with its command line as content.
pub const FAKE: &str = r#"#!/bin/sh
prog=$(basename "$0"); outs=""; prev=""
for a in "$@"; do
  case "$prev" in
    -o|--cframe|--coadd) outs="$outs $a";;
    *) case "$a" in *.fits) [ -e "$a" ] || { echo "$prog: missing input $a" >&2; exit 1; };; esac;;
  esac
  prev=$a
done
[ -n "$outs" ] || { echo "$prog: no output" >&2; exit 1; }
for o in $outs; do echo "$prog $*" > "$o.tmp" && mv "$o.tmp" "$o"; done
"#;

/// The spx programs `pipeline/nightly.yaml` runs (as `spx-<name>`).
pub const NIGHT_STAGES: [&str; 9] = [
    "preproc",
    "psf",
    "extract",
    "fiberflat",
    "sky",
    "stdstars",
    "fluxcal",
    "group",
    "redshift",
];

pub fn fake_bin(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for s in NIGHT_STAGES {
        let p = bin.join(format!("spx-{s}"));
        std::fs::write(&p, FAKE).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap())
}

pub fn nightly() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("nightly.yaml")
        .display()
        .to_string()
}

/// The night of the nightly tests: zero, dark, 2 arcs, flat, 3 science on 2 tiles.
pub fn raw_night(rawdir: &Path, night: u32) {
    for (expid, flavor, tile) in [
        (1, "zero", None),
        (2, "dark", None),
        (3, "arc", None),
        (4, "arc", None),
        (5, "flat", None),
        (6, "science", Some(1000)),
        (7, "science", Some(1000)),
        (8, "science", Some(2000)),
    ] {
        raw(rawdir, night, expid, flavor, tile);
    }
}
