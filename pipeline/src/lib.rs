//! spx-pipeline: runs a YAML dependency graph of spx stages locally, under MPI, as Slurm job
//! arrays or as a Makefile (README "Running a night").
//!
//! [`schema`] reads the YAML, [`expand`] turns it into a validated [`plan::Plan`] (one task
//! per command line, with its files and dependencies), and the executors run that plan:
//! [`local`] (a process pool), [`makefile`], [`slurm`] and, with the `mpi` feature,
//! [`mpi_run`]. [`journal`] records what ran; [`status`] reports it.

pub mod cli;
pub mod expand;
pub mod exposures;
pub mod journal;
pub mod local;
pub mod makefile;
#[cfg(feature = "mpi")]
pub mod mpi_run;
pub mod plan;
pub mod registry;
pub mod schema;
pub mod shell;
pub mod slurm;
pub mod status;
pub mod task;
pub mod template;

pub use expand::{expand, ExpandOptions};
pub use plan::{Plan, Task};
pub use schema::PipelineSpec;

/// Every pipeline error is one line naming what is wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The YAML (or a plan file) cannot be read or does not fit the schema.
    #[error("{file}: {msg}")]
    Spec {
        /// File name.
        file: String,
        /// Problem.
        msg: String,
    },
    /// The exposure list cannot be read.
    #[error("exposures {file}: {msg}")]
    Exposures {
        /// Raw file or table.
        file: String,
        /// Problem.
        msg: String,
    },
    /// A variable is missing or malformed.
    #[error("{0}")]
    Var(String),
    /// A problem within one stage (template, missing variable, group_by …).
    #[error("stage {stage}: {msg}")]
    Stage {
        /// Stage name.
        stage: String,
        /// Problem.
        msg: String,
    },
    /// `after:` names a stage that does not exist.
    #[error("stage {referenced_by}: after: unknown stage {stage:?}")]
    UnknownStage {
        /// The unknown name.
        stage: String,
        /// The stage that names it.
        referenced_by: String,
    },
    /// The dependencies form a cycle.
    #[error("dependency cycle: {0}")]
    Cycle(String),
    /// Two tasks write the same file.
    #[error("output {path} is written by two tasks: {first} and {second}")]
    DuplicateOutput {
        /// The path.
        path: String,
        /// First writer.
        first: String,
        /// Second writer.
        second: String,
    },
    /// An input that no task produces and that does not exist.
    #[error("task {task}: input {path} does not exist and no task produces it")]
    MissingInput {
        /// Task name.
        task: String,
        /// The path.
        path: String,
    },
    /// A path a generator cannot write (e.g. a space in a make target).
    #[error("{generator}: cannot represent path {path:?}: {why}")]
    Unrepresentable {
        /// `makefile` or `slurm`.
        generator: &'static str,
        /// The path.
        path: String,
        /// Why.
        why: String,
    },
    /// A file operation failed.
    #[error("{path}: {msg}")]
    Io {
        /// Path.
        path: String,
        /// Problem.
        msg: String,
    },
    /// A plan-level problem (bad stage name or index, …).
    #[error("{0}")]
    Plan(String),
}

/// `Error::Io` from an io::Error.
pub(crate) fn io_err(path: impl AsRef<std::path::Path>, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.as_ref().display().to_string(),
        msg: e.to_string(),
    }
}
