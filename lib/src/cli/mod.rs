//! Command-line layer shared by every `spx-*` binary and by the pipeline runner.
//!
//! Each stage has a module `cli::<stage>` with an options struct (clap derive + serde, so the
//! pipeline can build it from YAML) and `run(&opts, &dyn Comm) -> anyhow::Result<()>`. The
//! binaries in `bins/` only call [`main`] with that function: one code path for the shell,
//! Make, Slurm and the in-process pipeline runner.
//!
//! Conventions (README "CLI conventions"): `--help` states units, `--version`, logs on stderr
//! with `-v`/`-q`, `--threads N` (or `SPX_THREADS`), exit 0 on success, 1 on a runtime failure,
//! 2 on a usage error, and errors as one line `spx-x: error: FILE[HDU]: problem`.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use serde::{Deserialize, Serialize};

use crate::comm::Comm;

pub mod extract;
pub mod fiberflat;
pub mod fluxcal;
pub mod group;
pub mod inspect;
pub mod man;
pub mod plot;
pub mod preproc;
pub mod psf;
pub mod redshift;
pub mod sim;
pub mod sky;
pub mod stdstars;
pub mod summary;
pub mod templates;

/// Options every binary accepts.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CommonOpts {
    /// More log output on stderr (-v: debug, -vv: trace)
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors on stderr
    #[arg(short, long)]
    pub quiet: bool,
    /// Worker threads for this process (default: all cores)
    #[arg(long, env = "SPX_THREADS", value_name = "N")]
    pub threads: Option<usize>,
}

/// Sets up logging and the thread pool for `program`.
pub fn init(program: &str, common: &CommonOpts) {
    crate::logging::init(program, common.verbose, common.quiet);
    init_threads(common.threads);
}

extern "C" {
    fn openblas_set_num_threads(n: std::os::raw::c_int);
}

/// Builds the global rayon pool with `threads` workers (all cores when `None`) and keeps
/// OpenBLAS single-threaded: parallelism comes from rayon/MPI, and OpenBLAS's own threads
/// would oversubscribe the cores (reference/platform.md §4).
pub fn init_threads(threads: Option<usize>) {
    // SAFETY: plain setter in OpenBLAS, linked through ndarray-linalg's openblas-system.
    unsafe { openblas_set_num_threads(1) };
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(n) = threads.filter(|&n| n > 0) {
        builder = builder.num_threads(n);
    }
    // Already built (a second stage in the same process): keep the existing pool.
    let _ = builder.build_global();
}

/// The whole `main` of an `spx-*` binary whose stage does not split its work over ranks:
/// parse `O` (usage errors exit 2), set up logging and threads, call `run`, and turn an error
/// into one line on stderr and exit code 1. Under `mpirun -np N` (feature `mpi`) only rank 0
/// runs the stage (see [`on_root`]), so N ranks never write the same file N times.
pub fn main<O: Parser>(
    program: &str,
    common: impl Fn(&O) -> &CommonOpts,
    run: impl FnOnce(&O, &dyn Comm) -> anyhow::Result<()>,
) -> ExitCode {
    main_distributed(program, common, |opts, comm| on_root(opts, comm, run))
}

/// Like [`main`] for a stage whose `run` spreads its work over the communicator's ranks
/// (spx-extract: bundles, spx-redshift: targets): every rank runs it.
pub fn main_distributed<O: Parser>(
    program: &str,
    common: impl Fn(&O) -> &CommonOpts,
    run: impl FnOnce(&O, &dyn Comm) -> anyhow::Result<()>,
) -> ExitCode {
    // Name the command after the binary, so --version and usage say `spx-x` whatever the
    // options struct is called.
    let matches = O::command().name(program.to_string()).get_matches();
    let opts = match O::from_arg_matches(&matches) {
        Ok(o) => o,
        Err(e) => e.exit(),
    };
    init(program, common(&opts));
    // The ranks agree on the outcome, so every rank exits non-zero when one failed (the
    // failed one says why).
    let on_world = |comm: &dyn Comm| {
        let result = run(&opts, comm);
        let all_ok = comm.all_ok(result.is_ok());
        (result, all_ok)
    };
    // With the `mpi` feature the stage runs on the MPI world (a world of one without mpirun).
    #[cfg(feature = "mpi")]
    let (result, all_ok) = crate::mpi_comm::with_world(on_world);
    #[cfg(not(feature = "mpi"))]
    let (result, all_ok) = on_world(&crate::comm::SingleComm);
    match result {
        Ok(()) if all_ok => ExitCode::SUCCESS,
        Ok(()) => ExitCode::from(1),
        Err(e) => {
            eprintln!("{program}: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Runs a stage that ignores its communicator on rank 0 of `comm` alone, on a communicator
/// of one; the other ranks return at once. The caller collects the verdict.
pub fn on_root<O>(
    opts: &O,
    comm: &dyn Comm,
    run: impl FnOnce(&O, &dyn Comm) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if comm.is_root() {
        run(opts, &crate::comm::SingleComm)
    } else {
        Ok(())
    }
}

/// The clap commands of every binary, named as installed; used for man pages.
pub fn commands() -> Vec<clap::Command> {
    vec![
        // Each stage adds `XOpts::command().name("spx-x")` here.
        crate::cli::inspect::InspectOpts::command().name("spx-inspect"),
        crate::cli::fiberflat::FiberFlatOpts::command().name("spx-fiberflat"),
        crate::cli::sky::SkyOpts::command().name("spx-sky"),
        crate::cli::extract::ExtractOpts::command().name("spx-extract"),
        crate::cli::sim::SimOpts::command().name("spx-sim"),
        crate::cli::preproc::PreprocOpts::command().name("spx-preproc"),
        crate::cli::psf::PsfOpts::command().name("spx-psf"),
        crate::cli::summary::SummaryOpts::command().name("spx-summary"),
        VersionOnly::command().name("spx-version-check").hide(true),
        crate::cli::redshift::RedshiftOpts::command().name("spx-redshift"),
        crate::cli::stdstars::StdStarsOpts::command().name("spx-stdstars"),
        crate::cli::fluxcal::FluxCalOpts::command().name("spx-fluxcal"),
        crate::cli::templates::TemplatesOpts::command().name("spx-templates"),
        crate::cli::group::GroupOpts::command().name("spx-group"),
        crate::cli::plot::PlotOpts::command().name("spx-plot"),
    ]
    .into_iter()
    .filter(|c| !c.is_hide_set())
    .collect()
}

/// Placeholder parser used only to keep `commands()` well-typed before stages register.
#[derive(Parser, Debug)]
#[command(version)]
struct VersionOnly {}
