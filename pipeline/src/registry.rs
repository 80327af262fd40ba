//! Stages the MPI runner calls in-process (`run(opts, &comm)` on the task's group
//! communicator) instead of starting a program, and the pipeline's own small built-in
//! stages (`builtin:NAME`, which the local, Make and Slurm executors run as
//! `spx-pipeline builtin NAME …`).
//!
//! A stage binary registers here with one line in [`in_process`]: [`stage`] when its
//! `run` distributes its work over the communicator's ranks (every rank of the group runs
//! it), [`root_only`] when it ignores the communicator (the group's first rank runs it on
//! its own; the others wait for the group's verdict), so a stage that does not split its
//! work never has two ranks write the same file. A stage whose `run` learns to use the
//! communicator moves from `root_only` to `stage`.
//!
//! Only bare program names match: `command: /opt/x/spx-extract` names a particular
//! executable, which the runner starts as a process.

use std::path::Path;

use spx::comm::{share, Comm};

/// A stage's entry point: the full argv (program first) and the group communicator.
pub type StageFn = fn(&[String], &dyn Comm) -> anyhow::Result<()>;

/// Parses `argv` as `O` (a usage error is an error, not an exit) and runs the stage.
pub fn stage<O: clap::Parser>(
    argv: &[String],
    comm: &dyn Comm,
    run: fn(&O, &dyn Comm) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let opts = O::try_parse_from(argv).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim()))?;
    run(&opts, comm)
}

/// Like [`stage`] for a `run` that ignores its communicator: rank 0 of the group runs it
/// on a communicator of one; the other ranks do nothing (the runner's group vote after the
/// task carries rank 0's error to them).
pub fn root_only<O: clap::Parser>(
    argv: &[String],
    comm: &dyn Comm,
    run: fn(&O, &dyn Comm) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if comm.is_root() {
        stage(argv, &spx::SingleComm, run)
    } else {
        Ok(())
    }
}

/// The in-process entry point of `program`, if it has one.
pub fn in_process(program: &str) -> Option<StageFn> {
    use spx::cli;
    match program {
        "builtin:concat" => Some(concat),
        "builtin:panic" => Some(panic_stage),
        // Bundles over the group's ranks, gathered on its rank 0 (extract::ex2d_comm).
        "spx-extract" => Some(|a, c| stage(a, c, cli::extract::run)),
        "spx-fiberflat" => Some(|a, c| root_only(a, c, cli::fiberflat::run)),
        "spx-fluxcal" => Some(|a, c| root_only(a, c, cli::fluxcal::run)),
        "spx-group" => Some(|a, c| root_only(a, c, cli::group::run)),
        "spx-inspect" => Some(|a, c| root_only(a, c, cli::inspect::run)),
        "spx-preproc" => Some(|a, c| root_only(a, c, cli::preproc::run)),
        // Bundle shape fits over the group's ranks, written by its rank 0.
        "spx-psf" => Some(|a, c| stage(a, c, cli::psf::run)),
        // Targets over the group's ranks, gathered on its rank 0 in target order.
        "spx-redshift" => Some(|a, c| stage(a, c, cli::redshift::run)),
        "spx-sim" => Some(|a, c| root_only(a, c, cli::sim::run)),
        "spx-sky" => Some(|a, c| root_only(a, c, cli::sky::run)),
        "spx-stdstars" => Some(|a, c| root_only(a, c, cli::stdstars::run)),
        "spx-summary" => Some(|a, c| root_only(a, c, cli::summary::run)),
        "spx-templates" => Some(|a, c| root_only(a, c, cli::templates::run)),
        _ => None,
    }
}

/// Whether `program` names a built-in stage.
pub fn builtin_name(program: &str) -> Option<&str> {
    program.strip_prefix("builtin:")
}

/// `builtin:concat OUT IN…`: OUT = the inputs concatenated, written atomically. Each rank
/// reads its fixed share of the inputs and the root writes them in rank order, so the bytes
/// do not depend on the group size; ranks agree on read errors before the gather.
fn concat(argv: &[String], comm: &dyn Comm) -> anyhow::Result<()> {
    let [_, out, inputs @ ..] = argv else {
        anyhow::bail!("builtin:concat: usage: builtin:concat OUT IN...");
    };
    let mut mine = Vec::new();
    let mut err = None;
    for p in &inputs[share(inputs.len(), comm.rank(), comm.size())] {
        match std::fs::read(p) {
            Ok(b) => mine.extend(b),
            Err(e) => err = Some(format!("{p}: {e}")),
        }
    }
    if !comm.all_ok(err.is_none()) {
        anyhow::bail!(
            "builtin:concat: {}",
            err.unwrap_or_else(|| "an input failed on another rank".into())
        );
    }
    if let Some(parts) = comm.gather_bytes(0, &mine) {
        let all: Vec<u8> = parts.concat();
        let out = Path::new(out);
        let tmp = spx::io::fits::temp_path_for(out);
        std::fs::write(&tmp, &all).map_err(|e| anyhow::anyhow!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, out).map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
    }
    Ok(())
}

/// `builtin:panic`: panics (tests that a panicking task is contained).
fn panic_stage(_argv: &[String], _comm: &dyn Comm) -> anyhow::Result<()> {
    panic!("builtin:panic was asked to panic")
}

/// The command line that runs `argv` as a process: a built-in stage becomes
/// `spx-pipeline builtin NAME …` (this executable).
pub fn process_argv(argv: &[String]) -> Vec<String> {
    match argv.first().and_then(|a| builtin_name(a)) {
        Some(name) => {
            let exe = std::env::current_exe()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "spx-pipeline".into());
            let mut v = vec![exe, "builtin".into(), name.to_string()];
            v.extend(argv[1..].iter().cloned());
            v
        }
        None => argv.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spx_program_runs_in_process() {
        for cmd in spx::cli::commands() {
            let name = cmd.get_name().to_string();
            // spx-plot draws with the spx-plot crate, which the pipeline does not link: a
            // figure is a program started by the executor, not a rank's in-process task.
            if name == "spx-plot" {
                continue;
            }
            assert!(
                in_process(&name).is_some(),
                "{name} is not in registry::in_process"
            );
        }
        assert!(in_process("/usr/bin/spx-extract").is_none());
        assert!(in_process("spx-nonesuch").is_none());
    }

    #[test]
    fn a_usage_error_is_an_error_not_an_exit() {
        let f = in_process("spx-extract").unwrap();
        let e = f(
            &["spx-extract".into(), "--nonesuch".into()],
            &spx::SingleComm,
        )
        .unwrap_err();
        assert!(e.to_string().contains("--nonesuch"), "{e}");
    }
}
