//! `spx-pipeline run` under MPI (feature `mpi`, `mpirun -np N spx-pipeline run …`).
//!
//! Rank 0 expands the plan and broadcasts it, then coordinates: it hands each ready task to
//! a group of idle workers (ranks 1…N-1) as large as the stage's `ranks` (capped at the
//! workers there are), so a slow task never stalls the rest (dynamic assignment, not a
//! fixed split). The group's members form their own communicator
//! (`MPI_Comm_create_group`, collective over the group only, so the other workers carry
//! on), and run the task in-process through the stage's `run(opts, &comm)` when it is
//! registered ([`crate::registry`]), or as a program started by the group's first rank.
//! A panic in a task is caught; the group agrees on success (a logical-AND all-reduce)
//! before its leader reports, so one bad task neither hangs nor kills the others. Retries,
//! skips and the journal are the local executor's ([`crate::local::Scheduler`]).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mpi::traits::*;
use spx::comm::Comm;
use spx::mpi_comm::{world, MpiComm};

use crate::local::Scheduler;
use crate::plan::Plan;
use crate::registry;
use crate::task::{self, Finished};

const TAG_ASSIGN: i32 = 11;
const TAG_RESULT: i32 = 12;

/// Exit code recorded for a task that panicked.
pub const EXIT_PANIC: i32 = 101;

/// Runs the plan over MPI when this process is part of a world of two or more ranks;
/// `Ok(None)` otherwise (the caller runs the local executor).
pub fn run_if_mpi(load: &dyn Fn() -> anyhow::Result<Plan>) -> anyhow::Result<Option<ExitCode>> {
    let Some(w) = world() else { return Ok(None) };
    if w.size() < 2 {
        drop(w);
        spx::mpi_comm::finalize();
        return Ok(None);
    }
    let r = run_world(load, &w);
    // Every rank finalises (after its communicators are gone), or mpirun calls it abnormal.
    drop(w);
    spx::mpi_comm::finalize();
    r.map(Some)
}

fn run_world(load: &dyn Fn() -> anyhow::Result<Plan>, w: &MpiComm) -> anyhow::Result<ExitCode> {
    // OpenBLAS single-threaded (parallelism comes from ranks and rayon); each in-process
    // task then runs in a rayon pool of its stage's `threads` (run_in_group).
    spx::cli::init_threads(Some(1));
    let mut buf = Vec::new();
    let mut load_err = None;
    if w.rank() == 0 {
        match load().and_then(|p| Ok(serde_json::to_vec(&p)?)) {
            Ok(b) => buf = b,
            Err(e) => load_err = Some(e),
        }
    }
    // Every rank runs the same plan: rank 0's (an empty buffer means it failed).
    w.broadcast_bytes(0, &mut buf);
    if buf.is_empty() {
        return match load_err {
            Some(e) => Err(e),
            None => Ok(ExitCode::from(1)),
        };
    }
    let plan: Plan = serde_json::from_slice(&buf)?;
    if w.rank() == 0 {
        coordinate(&plan, w)
    } else {
        work(&plan, w)?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Waits for a message with `tag` (from `from`, or anyone), sleeping between probes so a
/// waiting rank does not spin a core that a task needs.
fn receive(w: &MpiComm, from: Option<i32>, tag: i32) -> Vec<i64> {
    loop {
        let st = match from {
            Some(r) => w.raw().process_at_rank(r).immediate_probe_with_tag(tag),
            None => w.raw().any_process().immediate_probe_with_tag(tag),
        };
        if let Some(st) = st {
            let (msg, _) = w
                .raw()
                .process_at_rank(st.source_rank())
                .receive_vec_with_tag::<i64>(tag);
            return msg;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn coordinate(plan: &Plan, w: &MpiComm) -> anyhow::Result<ExitCode> {
    let workers = w.size() - 1;
    let mut idle: Vec<i32> = (1..w.size() as i32).collect();
    let mut sched = Scheduler::new(plan)?;
    let mut running: std::collections::HashMap<usize, (u32, Instant, Vec<i32>)> =
        Default::default();
    let group = |st: usize| plan.stages[st].ranks.clamp(1, workers);
    loop {
        while let Some((id, attempt)) = sched.take(|st| group(st) <= idle.len())? {
            let members: Vec<i32> = idle.drain(..group(plan.tasks[id].stage)).collect();
            let mut msg = vec![id as i64, i64::from(attempt), members.len() as i64];
            msg.extend(members.iter().map(|&m| i64::from(m)));
            for &m in &members {
                w.raw()
                    .process_at_rank(m)
                    .send_with_tag(&msg[..], TAG_ASSIGN);
            }
            running.insert(id, (attempt, Instant::now(), members));
        }
        if running.is_empty() {
            break;
        }
        let msg = receive(w, None, TAG_RESULT);
        let id = msg[0] as usize;
        let Some((attempt, started, members)) = running.remove(&id) else {
            anyhow::bail!("rank 0: result for task {id} that is not running");
        };
        idle.extend(members);
        idle.sort_unstable();
        let f = Finished {
            exit_code: msg[1] as i32,
            max_rss_kb: msg[2],
        };
        let why = (f.exit_code == EXIT_PANIC).then(|| "panicked".to_string());
        sched.finish_with(id, attempt, started, &f, why)?;
    }
    for r in 1..w.size() as i32 {
        w.raw()
            .process_at_rank(r)
            .send_with_tag(&[-1i64][..], TAG_ASSIGN);
    }
    let sum = &sched.summary;
    eprintln!(
        "spx-pipeline: {} up to date, {} ran ok, {} failed, {} skipped (upstream failed) on {} MPI ranks; journal {}",
        sum.up_to_date,
        sum.ok,
        sum.failed.len(),
        sum.skipped,
        w.size(),
        plan.journal_path().display()
    );
    if sum.success() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("spx-pipeline: failed: {}", sum.failed.join(" "));
        Ok(ExitCode::from(1))
    }
}

fn work(plan: &Plan, w: &MpiComm) -> anyhow::Result<()> {
    loop {
        let msg = receive(w, Some(0), TAG_ASSIGN);
        if msg[0] < 0 {
            return Ok(());
        }
        let id = msg[0] as usize;
        let attempt = msg[1] as u32;
        let n = msg[2] as usize;
        let members: Vec<i32> = msg[3..3 + n].iter().map(|&m| m as i32).collect();
        let Some(group) = w.subgroup(&members) else {
            anyhow::bail!("rank {}: could not form the group of task {id}", w.rank());
        };
        let (code, rss) = run_in_group(plan, id, attempt, &group);
        if group.rank() == 0 {
            w.raw()
                .process_at_rank(0)
                .send_with_tag(&[id as i64, i64::from(code), rss][..], TAG_RESULT);
        }
    }
}

/// Peak resident memory of this process so far, kilobytes.
fn own_max_rss_kb() -> i64 {
    // SAFETY: getrusage fills a plain struct for this process.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a local.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss
}

/// Runs task `id` on `group`; returns (exit code, peak memory kB), the same on every rank.
fn run_in_group(plan: &Plan, id: usize, attempt: u32, group: &MpiComm) -> (i32, i64) {
    let t = &plan.tasks[id];
    let mut code = 0;
    let mut rss = 0;
    if let Err(m) = task::prepare(plan, id) {
        log::error!("{}: {m}", t.name);
        code = 1;
    }
    if code == 0 {
        match registry::in_process(&t.argv[0]) {
            Some(f) => {
                // The stage's `threads` per rank, as the local executor gives a process.
                let threads = plan.stages[t.stage].threads.max(1);
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
                let call = || match &pool {
                    Ok(p) => p.install(|| f(&t.argv, group)),
                    Err(e) => Err(anyhow::anyhow!("cannot start {threads} threads: {e}")),
                };
                match catch_unwind(AssertUnwindSafe(call)) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        log::error!("{} (rank {} of its group): {e:#}", t.name, group.rank());
                        code = 1;
                    }
                    Err(p) => {
                        let what = p
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        log::error!("{}: panicked: {what}", t.name);
                        code = EXIT_PANIC;
                    }
                }
                rss = own_max_rss_kb();
            }
            None if group.rank() == 0 => {
                let cores = plan.cores(t.stage);
                match task::spawn(plan, id, cores, attempt) {
                    Ok(r) => {
                        let f = task::reap(r.pid, true).unwrap_or(Finished {
                            exit_code: -1,
                            max_rss_kb: 0,
                        });
                        code = f.exit_code;
                        rss = f.max_rss_kb;
                    }
                    Err(m) => {
                        log::error!("{}: {m}", t.name);
                        code = 127;
                    }
                }
            }
            None => {}
        }
    }
    // The group agrees before its leader reports or anyone takes the next task.
    if !group.all_ok(code == 0) && code == 0 {
        code = 1;
    }
    // In-process stages log to the ranks' stderr (mpirun's output); the task log records
    // how each attempt ended, so `status` points somewhere real.
    if group.rank() == 0 {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&t.log)
        {
            let _ = writeln!(
                f,
                "== spx-pipeline: {} attempt {attempt} on {} MPI ranks: exit {code}",
                t.name,
                group.size()
            );
        }
    }
    (code, rss)
}
