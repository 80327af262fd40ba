//! The command line of `spx-pipeline` (clap), shared by the binary and its man page.
#![allow(missing_docs)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The YAML schema, in `--help` and the man page (README "Running a night" has the same).
pub const SCHEMA: &str = "\
PIPELINE YAML (keys; unknown keys are errors)
  variables: {name: value}
      Usable as {name} in every template. --var name=value overrides
      (a --var value is literal). A value that needs a task's
      variables, e.g. frame: \"{outdir}/{file:frame}\", is inlined
      where it is used.
  exposures: raw: DIR | table: FILE | list: [{NIGHT, EXPID, FLAVOR,
      TILEID}, ...]. raw scans DIR/*/desi-*.fits[.fz] and reads NIGHT,
      EXPID, FLAVOR (or OBSTYPE), EXPTIME, TILEID from the headers;
      a table is CSV with a header row, or YAML.
  logdir: task logs and journal.jsonl (default {outdir}/logs).
  stages: a list of
    name: unique, letters, digits, _ and -.
    command: the program (template); builtin:NAME for the
      pipeline's own small stages.
    foreach: {exposure: all | {field: value(s)}, camera: \"{cameras}\",
      other: [values]}. The product gives the items. A camera also
      binds spectrograph and band; an exposure binds night, expid,
      flavor, exptime and tile.
    group_by: [variables]. One task per distinct value (fan-in); a
      template that needs a member's variable expands per member.
    inputs: {name: path or [paths]}. A name ending in ? is optional.
    outputs: {name: path or [paths]}.
    args: [templates]. {inputs.NAME} and {outputs.NAME} expand to
      the whole list.
    options: {key: value, [values] or true}, appended as --key ...
    after: [stages]. Extra ordering, matched on shared variables.
    ranks, threads (per rank), max_parallel, retries.

TEMPLATES
  {name}, {name:08d}, {file:KIND} (the DESI file name of raw,
  preproc, psf, psfnight, fiberflatnight, biasnight, darknight,
  frame, fiberflat, sky, stdstars, fluxcalib, cframe, spectra,
  coadd or redrock from night, expid, camera, spectrograph, tile),
  {{ and }} for literal braces.

RESUME
  A task is done when its outputs exist and are newer than its
  inputs; run, make and the Slurm array elements skip done tasks.";

/// Runs a night (or a campaign) described by a pipeline YAML: plan it, run it here, under
/// MPI, as Slurm job arrays or through make. A rerun redoes only what is missing.
#[derive(Parser, Debug)]
#[command(name = "spx-pipeline", version, after_long_help = SCHEMA)]
pub struct Cli {
    /// More log output on stderr (-v: debug)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(clap::Args, Debug, Clone)]
pub struct PlanArgs {
    /// The pipeline YAML
    pub yaml: PathBuf,
    /// Set a variable (overrides the YAML's variables:), e.g. --var night=20201214
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// List the tasks, their dependencies and which are done
    Plan {
        #[command(flatten)]
        p: PlanArgs,
        /// Also write the expanded plan as JSON to this file
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
    /// Run the plan on this machine (process pool), or on MPI ranks under mpirun with the
    /// `mpi` feature
    Run {
        #[command(flatten)]
        p: PlanArgs,
        /// Cores to use (default: all)
        #[arg(long, value_name = "N")]
        cores: Option<usize>,
    },
    /// Run task IDX of STAGE of a frozen plan (what each Slurm array element runs)
    Task {
        /// The plan file written by `slurm` (or `plan --json`)
        plan: PathBuf,
        /// Stage name
        stage: String,
        /// Index of the task within its stage ($SLURM_ARRAY_TASK_ID)
        index: usize,
    },
    /// Write a Makefile (one rule per task) for `make -jN`
    Makefile {
        #[command(flatten)]
        p: PlanArgs,
        /// Output file (default: stdout)
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Freeze the plan and write one sbatch job array per stage (and submit.sh)
    Slurm {
        #[command(flatten)]
        p: PlanArgs,
        /// Folder for plan.json, the sbatch scripts and submit.sh
        #[arg(short, long, value_name = "DIR", default_value = "slurm")]
        output: PathBuf,
        /// Extra #SBATCH option for every array, e.g. --sbatch=--partition=debug
        #[arg(long = "sbatch", value_name = "OPTION", allow_hyphen_values = true)]
        sbatch: Vec<String>,
        /// Submit the arrays now (runs submit.sh)
        #[arg(long)]
        submit: bool,
    },
    /// Done / failed / skipped / pending tasks per stage, with the logs of failures
    Status {
        /// The pipeline YAML, or a frozen plan (.json)
        yaml: PathBuf,
        /// Set a variable, e.g. --var night=20201214
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
    },
    /// Run a built-in stage (builtin:NAME in a pipeline YAML)
    #[command(hide = true)]
    Builtin {
        /// Built-in stage name
        name: String,
        /// Its arguments
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmark: expand and schedule a synthetic campaign (no file checks)
    #[command(hide = true)]
    BenchExpand {
        #[command(flatten)]
        p: PlanArgs,
        /// Number of synthetic science exposures
        #[arg(long, default_value_t = 1000)]
        exposures: usize,
    },
}
