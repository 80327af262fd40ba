//! The expanded plan: every task with its command line, files and dependencies. It is what
//! every executor runs, and what `slurm` freezes to a JSON file for `spx-pipeline task`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::Error;

/// One stage of the plan.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageInfo {
    /// Stage name.
    pub name: String,
    /// Ranks per task.
    pub ranks: usize,
    /// Threads per rank.
    pub threads: usize,
    /// Most tasks of this stage at once.
    pub max_parallel: Option<usize>,
    /// Retries after a failure.
    pub retries: u32,
    /// The stage's tasks (ids into [`Plan::tasks`]), index = Slurm array index.
    pub tasks: Vec<usize>,
}

/// One task: a command line with its files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Task {
    /// Id = position in [`Plan::tasks`].
    pub id: usize,
    /// Stage (index into [`Plan::stages`]).
    pub stage: usize,
    /// Position within its stage.
    pub index: usize,
    /// Unique name, `stage-KEY-KEY` (e.g. `extract-00000012-b0`).
    pub name: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Input paths.
    pub inputs: Vec<String>,
    /// Output paths.
    pub outputs: Vec<String>,
    /// Tasks that must finish first (ids).
    pub deps: Vec<usize>,
    /// Log file of the task (stdout and stderr).
    pub log: String,
}

/// An expanded, validated pipeline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    /// Folder of logs and the journal.
    pub logdir: String,
    /// Stages in the order of the YAML.
    pub stages: Vec<StageInfo>,
    /// All tasks, grouped by stage.
    pub tasks: Vec<Task>,
    /// Task ids in an order where every task comes after its dependencies.
    pub order: Vec<usize>,
}

fn mtime(p: &str) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl Plan {
    /// The journal file (JSON lines).
    pub fn journal_path(&self) -> PathBuf {
        Path::new(&self.logdir).join("journal.jsonl")
    }

    /// Cores one task of `stage` wants under the local executor: ranks × threads.
    pub fn cores(&self, stage: usize) -> usize {
        let s = &self.stages[stage];
        (s.ranks * s.threads).max(1)
    }

    /// Whether a task's own files are up to date (make semantics): it has outputs, they all
    /// exist (atomic writes: an existing file is complete), and none is older than an input.
    pub fn files_done(&self, id: usize) -> bool {
        let t = &self.tasks[id];
        if t.outputs.is_empty() {
            return false;
        }
        let Some(oldest_out) = t
            .outputs
            .iter()
            .map(|o| mtime(o))
            .collect::<Option<Vec<_>>>()
        else {
            return false;
        };
        let oldest_out = oldest_out.into_iter().min();
        let newest_in = t.inputs.iter().filter_map(|i| mtime(i)).max();
        match (oldest_out, newest_in) {
            (Some(o), Some(i)) => o >= i,
            _ => true,
        }
    }

    /// For every task, whether it is done: its files are up to date and every dependency is
    /// done (a task whose inputs will be remade is not done).
    pub fn done(&self) -> Vec<bool> {
        let mut done = vec![false; self.tasks.len()];
        for &id in &self.order {
            done[id] = self.tasks[id].deps.iter().all(|&d| done[d]) && self.files_done(id);
        }
        done
    }

    /// The tasks that depend on `id`, directly or not.
    pub fn dependents(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.tasks.len()];
        for t in &self.tasks {
            for &d in &t.deps {
                out[d].push(t.id);
            }
        }
        out
    }

    /// Finds a task by stage name and index within the stage.
    pub fn task_of(&self, stage: &str, index: usize) -> Result<&Task, Error> {
        let s = self
            .stages
            .iter()
            .find(|s| s.name == stage)
            .ok_or_else(|| Error::Plan(format!("no stage {stage:?} in the plan")))?;
        let id = s.tasks.get(index).ok_or_else(|| {
            Error::Plan(format!(
                "stage {stage} has {} tasks, no index {index}",
                s.tasks.len()
            ))
        })?;
        Ok(&self.tasks[*id])
    }

    /// Writes the plan as JSON (atomically).
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let text = serde_json::to_string(self).map_err(|e| Error::Plan(e.to_string()))?;
        spx::io::fits::write_text_atomic(path, &text).map_err(|e| Error::Io {
            path: path.display().to_string(),
            msg: e.to_string(),
        })
    }

    /// Reads a plan written by [`Plan::save`].
    pub fn load(path: &Path) -> Result<Plan, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| Error::Spec {
            file: path.display().to_string(),
            msg: format!("not a plan file: {e}"),
        })
    }

    /// A human-readable listing: one line per task with its state and dependencies.
    pub fn describe(&self, done: &[bool]) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        for st in &self.stages {
            let ndone = st.tasks.iter().filter(|&&t| done[t]).count();
            let _ = writeln!(
                s,
                "stage {} ({} tasks, {} done; ranks {} threads {})",
                st.name,
                st.tasks.len(),
                ndone,
                st.ranks,
                st.threads
            );
            for &id in &st.tasks {
                let t = &self.tasks[id];
                let deps: Vec<&str> = t
                    .deps
                    .iter()
                    .map(|&d| self.tasks[d].name.as_str())
                    .collect();
                let _ = writeln!(
                    s,
                    "  [{}] {}{}{}",
                    if done[id] { "done" } else { "todo" },
                    t.name,
                    if deps.is_empty() { "" } else { "  after " },
                    deps.join(",")
                );
            }
        }
        s
    }
}
