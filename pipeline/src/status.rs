//! `spx-pipeline status`: per stage, how many tasks are done, failed (with exit code and
//! log), skipped, running or pending, from the files and the journal.

use std::collections::HashMap;
use std::fmt::Write;

use crate::journal::{self, Event};
use crate::plan::Plan;
use crate::Error;

/// A task's state as the files and the journal tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    /// Outputs up to date.
    Done,
    /// Last attempt failed (exit code).
    Failed(Option<i32>),
    /// Skipped because a dependency failed.
    Skipped,
    /// Started and not ended (running, or its runner was killed).
    Started,
    /// Not run yet.
    Pending,
}

/// The state of every task.
pub fn states(plan: &Plan) -> Result<Vec<TaskState>, Error> {
    let done = plan.done();
    let events = journal::read(&plan.journal_path())?;
    let mut last: HashMap<&str, &Event> = HashMap::new();
    for e in &events {
        last.insert(e.task.as_str(), e);
    }
    Ok(plan
        .tasks
        .iter()
        .map(|t| {
            if done[t.id] {
                return TaskState::Done;
            }
            match last.get(t.name.as_str()) {
                Some(e) if e.event == "start" => TaskState::Started,
                Some(e) if e.event == "end" && e.status.as_deref() != Some("ok") => {
                    TaskState::Failed(e.exit_code)
                }
                Some(e) if e.event == "skip" && e.status.as_deref() != Some("up to date") => {
                    TaskState::Skipped
                }
                _ => TaskState::Pending,
            }
        })
        .collect())
}

/// The status report text.
pub fn report(plan: &Plan) -> Result<String, Error> {
    let st = states(plan)?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<16} {:>6} {:>6} {:>6} {:>7} {:>7} {:>7}",
        "stage", "tasks", "done", "failed", "skipped", "started", "pending"
    );
    for stage in &plan.stages {
        let count =
            |f: &dyn Fn(&TaskState) -> bool| stage.tasks.iter().filter(|&&t| f(&st[t])).count();
        let _ = writeln!(
            s,
            "{:<16} {:>6} {:>6} {:>6} {:>7} {:>7} {:>7}",
            stage.name,
            stage.tasks.len(),
            count(&|x| *x == TaskState::Done),
            count(&|x| matches!(x, TaskState::Failed(_))),
            count(&|x| *x == TaskState::Skipped),
            count(&|x| *x == TaskState::Started),
            count(&|x| *x == TaskState::Pending),
        );
    }
    for t in &plan.tasks {
        if let TaskState::Failed(code) = &st[t.id] {
            let code = code.map(|c| c.to_string()).unwrap_or_else(|| "?".into());
            let _ = writeln!(s, "failed: {} (exit {code}), log {}", t.name, t.log);
        }
    }
    Ok(s)
}
