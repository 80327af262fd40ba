//! Stages the MPI runner calls in-process (`run(opts, &comm)` on the task's group
//! communicator) instead of starting a program, and the pipeline's own small built-in
//! stages (`builtin:NAME`, which the local, Make and Slurm executors run as
//! `spx-pipeline builtin NAME …`).
//!
//! A stage binary registers here with one line in [`in_process`]:
//! `"spx-extract" => Some(|a, c| stage::<spx::cli::extract::ExtractOpts>(a, c, spx::cli::extract::run))`.

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

/// The in-process entry point of `program`, if it has one.
pub fn in_process(program: &str) -> Option<StageFn> {
    match program {
        "builtin:concat" => Some(concat),
        "builtin:panic" => Some(panic_stage),
        // spx stages register here as they land (see the module doc).
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
