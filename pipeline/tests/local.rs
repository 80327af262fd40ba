//! The local executor on a toy night of shell stages: complete run, resume, failure
//! isolation, retries, status, and the journal.

#[path = "common/mod.rs"]
mod common;
use common::*;

// preproc 4×3, psfnight 3, extract 3×3, sky 3×3, stdstars 3×2, group 2 tiles×2 sp
const NTASKS: usize = 12 + 3 + 9 + 9 + 6 + 4;

#[test]
fn runs_the_night_then_skips_everything_on_rerun() {
    let d = setup();
    let o = run(d.path(), &["run", "night.yaml", "--cores", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = d.path().join("out");
    // The fan-in got its members: spectra of tile 100 / spectrograph 0 hold b0 and r0 frames
    // of exposures 2 and 3, plus the two stdstars files.
    let spectra = std::fs::read_to_string(
        out.join("tiles/cumulative/100/20201214/spectra-0-100-thru20201214.fits"),
    )
    .unwrap();
    for needle in [
        "extract-2-b0",
        "extract-2-r0",
        "extract-3-b0",
        "extract-3-r0",
        "stdstars-2-0",
        "stdstars-3-0",
        "psfnight-r0",
        "preproc-1-r0",
    ] {
        assert!(spectra.contains(needle), "{needle} missing from {spectra}");
    }
    assert!(
        !spectra.contains("-b1"),
        "spectrograph 1 leaked into sp 0: {spectra}"
    );
    let j = journal(d.path());
    let ends: Vec<_> = j.iter().filter(|e| e["event"] == "end").collect();
    assert_eq!(ends.len(), NTASKS);
    for e in &ends {
        assert_eq!(e["status"], "ok");
        assert_eq!(e["exit_code"], 0);
        assert!(e["duration_s"].as_f64().unwrap() >= 0.0);
        // A shell and cat: more than 100 kB and less than 1 GB of peak memory.
        let rss = e["max_rss_kb"].as_i64().unwrap();
        assert!(rss > 100 && rss < 1_000_000, "max_rss_kb {rss}");
    }
    // Rerun: nothing to do.
    let o = run(d.path(), &["run", "night.yaml"]);
    assert!(o.status.success());
    assert!(
        stderr(&o).contains(&format!("{NTASKS} up to date, 0 ran ok")),
        "{}",
        stderr(&o)
    );
    assert_eq!(journal(d.path()).len(), j.len());
    // Touching an input remakes exactly what depends on it (make semantics).
    std::thread::sleep(std::time::Duration::from_millis(20));
    let pre = out.join("preproc/20201214/00000004/preproc-b1-00000004.fits");
    let t = std::fs::File::options().append(true).open(&pre).unwrap();
    t.set_modified(std::time::SystemTime::now()).unwrap();
    let o = run(d.path(), &["run", "night.yaml"]);
    assert!(o.status.success());
    // extract-4-b1, sky-4-b1, stdstars-4-1, group-200-1
    assert!(stderr(&o).contains("4 ran ok"), "{}", stderr(&o));
}

#[test]
fn a_failed_task_skips_its_dependents_only() {
    let d = setup();
    let o = cmd(d.path(), &["run", "night.yaml"])
        .env("FAIL", "extract-3-r0")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("failed: extract-3-r0"), "{err}");
    // retries: 1 → two attempts.
    let j = journal(d.path());
    let tries = j
        .iter()
        .filter(|e| e["task"] == "extract-3-r0" && e["event"] == "end")
        .count();
    assert_eq!(tries, 2);
    let skipped: Vec<&str> = j
        .iter()
        .filter(|e| e["event"] == "skip")
        .map(|e| e["task"].as_str().unwrap())
        .collect();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    for s in ["stdstars-3-0", "group-100-0", "sky-3-r0"] {
        assert!(skipped.contains(&s), "{s} not skipped: {skipped:?}");
    }
    // Unrelated work finished: the other tile of the same spectrograph, the other spectrograph.
    let out = d.path().join("out/tiles/cumulative");
    assert!(out
        .join("200/20201214/spectra-0-200-thru20201214.fits")
        .exists());
    assert!(out
        .join("100/20201214/spectra-1-100-thru20201214.fits")
        .exists());
    assert!(!out
        .join("100/20201214/spectra-0-100-thru20201214.fits")
        .exists());
    // Status names the failure and its log.
    let o = run(d.path(), &["status", "night.yaml"]);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("failed: extract-3-r0 (exit 7), log out/logs/extract/extract-3-r0.log"),
        "{s}"
    );
    let log = std::fs::read_to_string(d.path().join("out/logs/extract/extract-3-r0.log")).unwrap();
    assert!(log.contains("fails on purpose"));
    // Fixed: the rerun does only the failed task and its dependents.
    let o = run(d.path(), &["run", "night.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("4 ran ok"), "{}", stderr(&o));
}

#[test]
fn a_flaky_task_succeeds_on_retry() {
    let d = setup();
    let flaky = d.path().join("flaky");
    std::fs::create_dir(&flaky).unwrap();
    // Every extract task fails once (exit 5), then succeeds: retries: 1 absorbs it. Other
    // stages have no retries, so mark their first attempts as already flaked.
    let o = run(d.path(), &["plan", "night.yaml"]);
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let name = line.trim().trim_start_matches("[todo] ");
        let name = name.split_whitespace().next().unwrap_or("");
        if !name.starts_with("extract-") && !line.starts_with("stage") {
            std::fs::write(flaky.join(name), "").unwrap();
        }
    }
    let o = cmd(d.path(), &["run", "night.yaml"])
        .env("FLAKY_DIR", &flaky)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let retries = journal(d.path())
        .iter()
        .filter(|e| e["status"] == "retry")
        .count();
    assert_eq!(retries, 9);
}

#[test]
fn a_task_that_exits_zero_without_its_output_fails() {
    let d = setup();
    let yaml = "stages:\n  - name: liar\n    command: 'true'\n    outputs: {o: never.txt}\n";
    std::fs::write(d.path().join("liar.yaml"), yaml).unwrap();
    let o = run(d.path(), &["run", "liar.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("did not write never.txt"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_missing_program_fails_cleanly() {
    let d = setup();
    let yaml =
        "stages:\n  - name: ghost\n    command: spx-no-such-binary\n    outputs: {o: x.txt}\n";
    std::fs::write(d.path().join("g.yaml"), yaml).unwrap();
    let o = run(d.path(), &["run", "g.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot start spx-no-such-binary"),
        "{}",
        stderr(&o)
    );
}
