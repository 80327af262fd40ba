//! Running one task as a child process: output folders, log file, thread count, exit code
//! and peak memory (wait4). Shared by the local executor and by `spx-pipeline task` (what
//! each Slurm array element runs against the frozen plan).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::journal::{now, Event, Journal};
use crate::plan::Plan;
use crate::Error;

/// Exit code of `spx-pipeline task` when a dependency is not done (it failed or was skipped).
pub const EXIT_UPSTREAM_FAILED: u8 = 3;

/// A started attempt of a task.
pub struct Running {
    /// Task id.
    pub id: usize,
    /// Attempt number (1-based).
    pub attempt: u32,
    /// Child process id.
    pub pid: i32,
    /// When it started.
    pub started: Instant,
    // Kept so the handle is not dropped while the process runs (dropping does not wait).
    _child: std::process::Child,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// Exit code (128+signal when killed by a signal).
    pub exit_code: i32,
    /// Peak resident memory, kilobytes.
    pub max_rss_kb: i64,
}

/// Starts attempt `attempt` of task `id` with `cores` threads (`SPX_THREADS`); stdout and
/// stderr go to the task's log. Output folders are created first: stages write atomically
/// into the folder of their output.
pub fn spawn(plan: &Plan, id: usize, cores: usize, attempt: u32) -> Result<Running, String> {
    let t = &plan.tasks[id];
    prepare(plan, id)?;
    let log = Path::new(&t.log);
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let _ = writeln!(
        f,
        "== spx-pipeline: {} attempt {attempt}: {}",
        t.name,
        crate::shell::join(&t.argv)
    );
    let f2 = f
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let argv = crate::registry::process_argv(&t.argv);
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .env("SPX_THREADS", cores.to_string())
        // Parallelism comes from rayon/MPI; OpenBLAS's own threads would oversubscribe.
        .env("OPENBLAS_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(f)
        .stderr(f2)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", t.argv[0]))?;
    Ok(Running {
        id,
        attempt,
        pid: child.id() as i32,
        started: Instant::now(),
        _child: child,
    })
}

/// Creates the folders of a task's outputs and log: stages write atomically into the
/// folder of their output, which must exist.
pub fn prepare(plan: &Plan, id: usize) -> Result<(), String> {
    let t = &plan.tasks[id];
    let dirs = t
        .outputs
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(t.log.as_str()))
        .filter_map(|p| Path::new(p).parent())
        .filter(|d| !d.as_os_str().is_empty());
    for d in dirs {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    Ok(())
}

/// Reaps `pid` if it has ended (or waits for it when `block`), with its peak memory.
pub fn reap(pid: i32, block: bool) -> Option<Finished> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child `pid`.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let flags = if block { 0 } else { libc::WNOHANG };
        // SAFETY: valid pointers to locals; waits only for our own child.
        let r = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
        if r == pid {
            let exit_code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status)
            } else {
                -1
            };
            return Some(Finished {
                exit_code,
                max_rss_kb: ru.ru_maxrss,
            });
        }
        if r == 0 {
            return None;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // Not our child any more (already reaped): report as unknown failure.
            return Some(Finished {
                exit_code: -1,
                max_rss_kb: 0,
            });
        }
    }
}

/// After exit code 0: every output must exist, else the task failed.
pub fn check_outputs(plan: &Plan, id: usize) -> Result<(), String> {
    match plan.tasks[id]
        .outputs
        .iter()
        .find(|o| !Path::new(o).exists())
    {
        Some(o) => Err(format!("exited 0 but did not write {o}")),
        None => Ok(()),
    }
}

/// The journal's `start` line for an attempt.
pub fn start_event(plan: &Plan, id: usize, attempt: u32) -> Event {
    let t = &plan.tasks[id];
    Event {
        time: now(),
        event: "start".into(),
        task: t.name.clone(),
        stage: plan.stages[t.stage].name.clone(),
        attempt: Some(attempt),
        log: Some(t.log.clone()),
        ..Default::default()
    }
}

/// The journal's `end` line of an attempt, and whether it succeeded.
pub fn end_event(
    plan: &Plan,
    id: usize,
    attempt: u32,
    started: Instant,
    f: &Finished,
    last_try: bool,
) -> (Event, bool) {
    let t = &plan.tasks[id];
    let mut message = None;
    let ok = f.exit_code == 0
        && match check_outputs(plan, id) {
            Ok(()) => true,
            Err(m) => {
                message = Some(m);
                false
            }
        };
    let status = if ok {
        "ok"
    } else if last_try {
        "failed"
    } else {
        "retry"
    };
    (
        Event {
            time: now(),
            event: "end".into(),
            task: t.name.clone(),
            stage: plan.stages[t.stage].name.clone(),
            attempt: Some(attempt),
            exit_code: Some(f.exit_code),
            duration_s: Some(started.elapsed().as_secs_f64()),
            max_rss_kb: Some(f.max_rss_kb),
            status: Some(status.into()),
            log: Some(t.log.clone()),
            message,
        },
        ok,
    )
}

/// A `skip` line.
pub fn skip_event(plan: &Plan, id: usize, why: &str) -> Event {
    let t = &plan.tasks[id];
    Event {
        time: now(),
        event: "skip".into(),
        task: t.name.clone(),
        stage: plan.stages[t.stage].name.clone(),
        status: Some(why.into()),
        log: Some(t.log.clone()),
        ..Default::default()
    }
}

/// Outcome of [`run_one`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Already up to date.
    UpToDate,
    /// Ran and succeeded.
    Ok,
    /// A dependency is not done.
    UpstreamFailed,
    /// Failed after all retries (last exit code).
    Failed(i32),
}

/// Runs one task of a frozen plan with its retries (Slurm array elements, `make` fallback):
/// skipped when a dependency's files are not done, nothing to do when it is up to date.
pub fn run_one(plan: &Plan, id: usize, cores: usize) -> Result<Outcome, Error> {
    let t = &plan.tasks[id];
    let mut journal = Journal::open(&plan.journal_path())?;
    if let Some(&d) = t.deps.iter().find(|&&d| !plan.files_done(d)) {
        let why = format!("skipped: upstream failed ({})", plan.tasks[d].name);
        journal.write(&skip_event(plan, id, &why))?;
        log::warn!("{}: {why}", t.name);
        return Ok(Outcome::UpstreamFailed);
    }
    if plan.files_done(id) {
        log::info!("{}: up to date", t.name);
        return Ok(Outcome::UpToDate);
    }
    let tries = plan.stages[t.stage].retries + 1;
    let mut last = -1;
    for attempt in 1..=tries {
        journal.write(&start_event(plan, id, attempt))?;
        let r = match spawn(plan, id, cores, attempt) {
            Ok(r) => r,
            Err(m) => {
                let mut ev = skip_event(plan, id, "failed");
                ev.event = "end".into();
                ev.exit_code = Some(127);
                ev.attempt = Some(attempt);
                ev.message = Some(m.clone());
                journal.write(&ev)?;
                log::error!("{}: {m}", t.name);
                last = 127;
                continue;
            }
        };
        let f = reap(r.pid, true).unwrap_or(Finished {
            exit_code: -1,
            max_rss_kb: 0,
        });
        let (ev, ok) = end_event(plan, id, attempt, r.started, &f, attempt == tries);
        journal.write(&ev)?;
        if ok {
            return Ok(Outcome::Ok);
        }
        last = f.exit_code;
        log::warn!(
            "{}: attempt {attempt} failed (exit {}{}), log {}",
            t.name,
            f.exit_code,
            ev.message.map(|m| format!(", {m}")).unwrap_or_default(),
            t.log
        );
    }
    Ok(Outcome::Failed(if last == 0 { 1 } else { last }))
}
