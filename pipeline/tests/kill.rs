//! Kill test: `kill -9` the runner (and its running tasks: the whole process group, as a
//! batch system does) at several points, rerun: the night completes, no output is torn, and
//! no task that had finished is run again.

#[path = "common/mod.rs"]
mod common;
use common::*;
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::time::Duration;

#[test]
fn kill_9_then_resume() {
    let d = setup();
    let count = d.path().join("count");
    std::fs::create_dir(&count).unwrap();
    // 43 tasks of 0.15 s on 2 cores ≈ 3.5 s; kill at a few points mid-run.
    for (round, ms) in [400u64, 900, 250, 1300].into_iter().enumerate() {
        let mut c = cmd(d.path(), &["run", "night.yaml", "--cores", "2"]);
        c.env("DELAY", "0.15")
            .env("COUNT_DIR", &count)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0);
        let child = c.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        let pgid = child.id() as i32;
        // SAFETY: signals our own process group.
        let r = unsafe { libc::kill(-pgid, libc::SIGKILL) };
        assert_eq!(r, 0, "round {round}: kill failed");
        let mut child = child;
        let _ = child.wait();
    }
    // Every file present after the kills is complete (atomic writes).
    let partial = tree(&d.path().join("out"));
    for (p, bytes) in &partial {
        let text = String::from_utf8_lossy(bytes);
        if p.extension().is_some_and(|e| e == "tmp") {
            continue;
        }
        assert!(
            text.trim_end()
                .lines()
                .last()
                .unwrap_or("")
                .starts_with("end "),
            "{p:?} torn"
        );
    }
    let finished_before: Vec<String> = journal(d.path())
        .iter()
        .filter(|e| e["event"] == "end" && e["status"] == "ok")
        .map(|e| e["task"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !finished_before.is_empty(),
        "no task finished before the kills"
    );
    let njournal = journal(d.path()).len();
    let o = cmd(d.path(), &["run", "night.yaml"])
        .env("COUNT_DIR", &count)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // Nothing that had finished started again (and the kills did leave work to do).
    let after = &journal(d.path())[njournal..];
    assert!(
        after.iter().any(|e| e["event"] == "start"),
        "nothing left after the kills"
    );
    for e in after.iter().filter(|e| e["event"] == "start") {
        let t = e["task"].as_str().unwrap();
        assert!(!finished_before.iter().any(|f| f == t), "{t} was redone");
    }
    // The result equals an uninterrupted run.
    let o = run(d.path(), &["run", "night.yaml", "--var", "outdir=clean"]);
    assert!(o.status.success());
    let mut resumed = tree(&d.path().join("out"));
    resumed.retain(|p, _| p.extension().is_none_or(|e| e != "tmp"));
    assert_eq!(resumed, tree(&d.path().join("clean")));
    // Every task ran at most once per round plus the final run.
    let runs: HashMap<String, usize> = std::fs::read_dir(&count)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let n = std::fs::read_to_string(e.path()).unwrap().lines().count();
            (e.file_name().to_string_lossy().into_owned(), n)
        })
        .collect();
    assert!(runs.values().all(|&n| n <= 5), "{runs:?}");
}
