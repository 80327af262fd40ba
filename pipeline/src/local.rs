//! The local executor: a process pool that runs each task as a child process, giving it
//! ranks×threads of the machine's cores (capped at all of them), at most `max_parallel` per
//! stage, skipping done tasks, retrying failures, and isolating them: a failed task's
//! dependents are skipped, everything else still runs, and the result says what failed.
//! [`Scheduler`] is the bookkeeping, shared with the MPI runner.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::journal::Journal;
use crate::plan::Plan;
use crate::task::{end_event, reap, skip_event, spawn, start_event, Finished, Running};
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

/// Which tasks can start, what finished, what failed: the executors' shared bookkeeping.
/// Every start, end and skip is written to the journal.
pub struct Scheduler<'a> {
    plan: &'a Plan,
    journal: Journal,
    dependents: Vec<Vec<usize>>,
    state: Vec<State>,
    missing: Vec<usize>,
    attempts: Vec<u32>,
    ready: VecDeque<usize>,
    per_stage: Vec<usize>,
    /// What happened so far.
    pub summary: Summary,
}

impl<'a> Scheduler<'a> {
    /// Marks done tasks finished and queues what can start.
    pub fn new(plan: &'a Plan) -> Result<Scheduler<'a>, Error> {
        let n = plan.tasks.len();
        let done = plan.done();
        let mut s = Scheduler {
            plan,
            journal: Journal::open(&plan.journal_path())?,
            dependents: plan.dependents(),
            state: vec![State::Waiting; n],
            missing: plan.tasks.iter().map(|t| t.deps.len()).collect(),
            attempts: vec![0; n],
            ready: VecDeque::new(),
            per_stage: vec![0; plan.stages.len()],
            summary: Summary::default(),
        };
        for &id in &plan.order {
            if done[id] {
                s.state[id] = State::Good;
                s.summary.up_to_date += 1;
                for &u in &s.dependents[id] {
                    s.missing[u] -= 1;
                }
            }
        }
        for &id in &plan.order {
            if s.state[id] == State::Waiting && s.missing[id] == 0 {
                s.state[id] = State::Ready;
                s.ready.push_back(id);
            }
        }
        if s.summary.up_to_date > 0 {
            log::info!("{} of {n} tasks are up to date", s.summary.up_to_date);
        }
        Ok(s)
    }

    /// The first ready task (in readiness order) under its stage's `max_parallel` for which
    /// `fits(stage)` holds; it is marked running, its attempt counted and journaled.
    pub fn take(&mut self, fits: impl Fn(usize) -> bool) -> Result<Option<(usize, u32)>, Error> {
        let plan = self.plan;
        let pos = self.ready.iter().position(|&id| {
            let st = plan.tasks[id].stage;
            self.per_stage[st] < plan.stages[st].max_parallel.unwrap_or(usize::MAX) && fits(st)
        });
        let Some(pos) = pos else { return Ok(None) };
        let id = self.ready.remove(pos).unwrap_or(0);
        self.state[id] = State::Running;
        self.per_stage[plan.tasks[id].stage] += 1;
        self.attempts[id] += 1;
        self.journal
            .write(&start_event(plan, id, self.attempts[id]))?;
        log::info!(
            "start {} (attempt {})",
            plan.tasks[id].name,
            self.attempts[id]
        );
        Ok(Some((id, self.attempts[id])))
    }

    /// Whether nothing is ready (tasks may still be running).
    pub fn nothing_ready(&self) -> bool {
        self.ready.is_empty()
    }

    /// Records the end of an attempt: success releases dependents; a failure is retried or,
    /// after the last try, fails the task and skips its dependents.
    pub fn finish(
        &mut self,
        id: usize,
        attempt: u32,
        started: Instant,
        f: &Finished,
    ) -> Result<(), Error> {
        self.finish_with(id, attempt, started, f, None)
    }

    /// As [`Scheduler::finish`], with a message for a failure the exit code does not explain.
    pub fn finish_with(
        &mut self,
        id: usize,
        attempt: u32,
        started: Instant,
        f: &Finished,
        message: Option<String>,
    ) -> Result<(), Error> {
        let plan = self.plan;
        let st = plan.tasks[id].stage;
        self.per_stage[st] -= 1;
        let tries = plan.stages[st].retries + 1;
        let (mut ev, ok) = end_event(plan, id, attempt, started, f, attempt >= tries);
        if !ok && ev.message.is_none() {
            ev.message = message;
        }
        let msg = ev.message.clone();
        self.journal.write(&ev)?;
        let t = &plan.tasks[id];
        let why = msg.map(|m| format!(" ({m})")).unwrap_or_default();
        if ok {
            log::info!(
                "ok {} ({:.1} s, {} MB)",
                t.name,
                ev.duration_s.unwrap_or(0.0),
                f.max_rss_kb / 1024
            );
            self.state[id] = State::Good;
            self.summary.ok += 1;
            for &u in &self.dependents[id] {
                self.missing[u] -= 1;
                if self.missing[u] == 0 && self.state[u] == State::Waiting {
                    self.state[u] = State::Ready;
                    self.ready.push_back(u);
                }
            }
        } else if attempt < tries {
            log::warn!(
                "retry {}: attempt {attempt} exit {}{why}, log {}",
                t.name,
                f.exit_code,
                t.log
            );
            self.state[id] = State::Ready;
            self.ready.push_back(id);
        } else {
            log::error!(
                "FAILED {}: exit {}{why}, log {}",
                t.name,
                f.exit_code,
                t.log
            );
            self.fail(id)?;
        }
        Ok(())
    }

    /// Records a task that could not even start (exit 127) as failed after this attempt.
    pub fn could_not_start(&mut self, id: usize, attempt: u32, msg: &str) -> Result<(), Error> {
        let mut ev = skip_event(self.plan, id, "failed");
        ev.event = "end".into();
        ev.exit_code = Some(127);
        ev.attempt = Some(attempt);
        ev.message = Some(msg.to_string());
        self.journal.write(&ev)?;
        log::error!("{}: {msg}", self.plan.tasks[id].name);
        self.per_stage[self.plan.tasks[id].stage] -= 1;
        self.fail(id)
    }

    /// Marks `id` failed and every task downstream of it skipped.
    fn fail(&mut self, id: usize) -> Result<(), Error> {
        let plan = self.plan;
        self.state[id] = State::Bad;
        self.summary.failed.push(plan.tasks[id].name.clone());
        let why = format!("skipped: upstream failed ({})", plan.tasks[id].name);
        let mut stack: Vec<usize> = self.dependents[id].clone();
        while let Some(u) = stack.pop() {
            if self.state[u] == State::Waiting {
                self.state[u] = State::Bad;
                self.summary.skipped += 1;
                self.journal.write(&skip_event(plan, u, &why))?;
                log::warn!(
                    "skip {}: upstream {} failed",
                    plan.tasks[u].name,
                    plan.tasks[id].name
                );
                stack.extend(self.dependents[u].iter().copied());
            }
        }
        Ok(())
    }
}

/// Runs the plan on this machine.
pub fn run(plan: &Plan, opts: &LocalOptions) -> Result<Summary, Error> {
    let total = opts.cores.max(1);
    let mut sched = Scheduler::new(plan)?;
    let mut running: Vec<Running> = Vec::new();
    let mut free = total;
    // A task wider than the machine gets all of it.
    let need = |st: usize| plan.cores(st).min(total);
    loop {
        while let Some((id, attempt)) = sched.take(|st| need(st) <= free)? {
            let st = plan.tasks[id].stage;
            match spawn(plan, id, need(st), attempt) {
                Ok(r) => {
                    free -= need(st);
                    running.push(r);
                }
                Err(m) => sched.could_not_start(id, attempt, &m)?,
            }
        }
        if running.is_empty() {
            break;
        }
        // Poll the children (no wait on "any child", which could take another thread's
        // child in an embedding program).
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
            free += need(plan.tasks[id].stage);
            sched.finish(id, attempt, started, &f)?;
        }
    }
    Ok(sched.summary)
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
