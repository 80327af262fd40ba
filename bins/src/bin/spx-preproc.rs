fn main() -> std::process::ExitCode {
    spx::cli::main::<spx::cli::preproc::PreprocOpts>(
        "spx-preproc",
        |o| &o.common,
        spx::cli::preproc::run,
    )
}
