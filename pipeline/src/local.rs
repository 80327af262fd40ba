//! The local executor: a process pool that runs each task as a child process, giving it
//! ranks×threads of the machine's cores (capped at all of them), at most `max_parallel` per
//! stage, skipping done tasks, retrying failures, and isolating them: a failed task's
//! dependents are skipped, everything else still runs, and the result says what failed.

use std::collections::VecDeque;
use std::time::Duration;

use crate::journal::Journal;
use crate::plan::Plan;
use crate::task::{end_event, reap, skip_event, spawn, start_event, Running};
use crate::Error;

/// Options of the local executor.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Cores to use (default: all of the machine's).
    pub cores: usize,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Tasks already up to date.
    pub up_to_date: usize,
    /// Tasks that ran and succeeded.
    pub ok: usize,
    /// Tasks that failed after their retries (names).
    pub failed: Vec<String>,
    /// Tasks skipped because a dependency failed.
    pub skipped: usize,
}

impl Summary {
    /// Whether everything is done.
    pub fn success(&self) -> bool {
        self.failed.is_empty() && self.skipped == 0
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Ready,
    Running,
    Good,
    Bad,
}

/// Runs the plan on this machine.
pub fn run(plan: &Plan, opts: &LocalOptions) -> Result<Summary, Error> {
    let n = plan.tasks.len();
    let total = opts.cores.max(1);
    let mut journal = Journal::open(&plan.journal_path())?;
    let dependents = plan.dependents();
    let done = plan.done();
    let mut state = vec![State::Waiting; n];
    let mut missing: Vec<usize> = plan.tasks.iter().map(|t| t.deps.len()).collect();
    let mut attempts = vec![0u32; n];
    let mut sum = Summary::default();
    let mut ready: VecDeque<usize> = VecDeque::new();

    // Done tasks count as finished: their dependents may be ready.
    for &id in &plan.order {
        if done[id] {
            state[id] = State::Good;
            sum.up_to_date += 1;
            for &u in &dependents[id] {
                missing[u] -= 1;
            }
        }
    }
    for &id in &plan.order {
        if state[id] == State::Waiting && missing[id] == 0 {
            state[id] = State::Ready;
            ready.push_back(id);
        }
    }
    if sum.up_to_date > 0 {
        log::info!("{} of {n} tasks are up to date", sum.up_to_date);
    }

    let mut running: Vec<Running> = Vec::new();
    let mut free = total;
    let mut per_stage = vec![0usize; plan.stages.len()];
    loop {
        // Start what fits, in readiness order; a task wider than the machine gets all of it.
        let mut i = 0;
        while i < ready.len() {
            let id = ready[i];
            let st = plan.tasks[id].stage;
            let need = plan.cores(st).min(total);
            let cap = plan.stages[st].max_parallel.unwrap_or(usize::MAX);
            if need <= free && per_stage[st] < cap {
                ready.remove(i);
                attempts[id] += 1;
                journal.write(&start_event(plan, id, attempts[id]))?;
                match spawn(plan, id, need, attempts[id]) {
                    Ok(r) => {
                        log::info!("start {} (attempt {})", plan.tasks[id].name, attempts[id]);
                        free -= need;
                        per_stage[st] += 1;
                        state[id] = State::Running;
                        running.push(r);
                    }
                    Err(m) => {
                        let mut ev = skip_event(plan, id, "failed");
                        ev.event = "end".into();
                        ev.exit_code = Some(127);
                        ev.attempt = Some(attempts[id]);
                        ev.message = Some(m.clone());
                        journal.write(&ev)?;
                        log::error!("{}: {m}", plan.tasks[id].name);
                        fail(plan, id, &dependents, &mut state, &mut journal, &mut sum)?;
                    }
                }
            } else {
                i += 1;
            }
        }
        if running.is_empty() {
            break;
        }
        // Reap whatever finished; poll (no wait on "any child", which could take another
        // thread's child in an embedding program).
        let mut finished = Vec::new();
        running.retain(|r| match reap(r.pid, false) {
            Some(f) => {
                finished.push((r.id, r.attempt, r.started, f));
                false
            }
            None => true,
        });
        if finished.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        for (id, attempt, started, f) in finished {
            let st = plan.tasks[id].stage;
            free += plan.cores(st).min(total);
            per_stage[st] -= 1;
            let tries = plan.stages[st].retries + 1;
            let (ev, ok) = end_event(plan, id, attempt, started, &f, attempt >= tries);
            let msg = ev.message.clone();
            journal.write(&ev)?;
            let t = &plan.tasks[id];
            if ok {
                log::info!(
                    "ok {} ({:.1} s, {} MB)",
                    t.name,
                    ev.duration_s.unwrap_or(0.0),
                    f.max_rss_kb / 1024
                );
                state[id] = State::Good;
                sum.ok += 1;
                for &u in &dependents[id] {
                    missing[u] -= 1;
                    if missing[u] == 0 && state[u] == State::Waiting {
                        state[u] = State::Ready;
                        ready.push_back(u);
                    }
                }
            } else if attempt < tries {
                log::warn!(
                    "retry {}: attempt {attempt} exit {}{}, log {}",
                    t.name,
                    f.exit_code,
                    msg.map(|m| format!(" ({m})")).unwrap_or_default(),
                    t.log
                );
                state[id] = State::Ready;
                ready.push_back(id);
            } else {
                log::error!(
                    "FAILED {}: exit {}{}, log {}",
                    t.name,
                    f.exit_code,
                    msg.map(|m| format!(" ({m})")).unwrap_or_default(),
                    t.log
                );
                fail(plan, id, &dependents, &mut state, &mut journal, &mut sum)?;
            }
        }
    }
    Ok(sum)
}

/// Marks `id` failed and every task downstream of it skipped.
fn fail(
    plan: &Plan,
    id: usize,
    dependents: &[Vec<usize>],
    state: &mut [State],
    journal: &mut Journal,
    sum: &mut Summary,
) -> Result<(), Error> {
    state[id] = State::Bad;
    sum.failed.push(plan.tasks[id].name.clone());
    let why = format!("skipped: upstream failed ({})", plan.tasks[id].name);
    let mut stack: Vec<usize> = dependents[id].clone();
    while let Some(u) = stack.pop() {
        if state[u] == State::Waiting {
            state[u] = State::Bad;
            sum.skipped += 1;
            journal.write(&skip_event(plan, u, &why))?;
            log::warn!(
                "skip {}: upstream {} failed",
                plan.tasks[u].name,
                plan.tasks[id].name
            );
            stack.extend(dependents[u].iter().copied());
        }
    }
    Ok(())
}

/// Schedules the whole plan without running or checking anything (every task treated as to
/// do, unlimited cores): the number of dependency waves. Used by the expansion benchmark.
pub fn schedule_waves(plan: &Plan) -> usize {
    let mut wave = vec![0usize; plan.tasks.len()];
    let mut max = 0;
    for &id in &plan.order {
        let w = plan.tasks[id]
            .deps
            .iter()
            .map(|&d| wave[d] + 1)
            .max()
            .unwrap_or(0);
        wave[id] = w;
        max = max.max(w + 1);
    }
    max
}
