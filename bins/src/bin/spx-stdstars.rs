fn main() -> std::process::ExitCode {
    spx::cli::main::<spx::cli::stdstars::StdStarsOpts>(
        "spx-stdstars",
        |o| &o.common,
        spx::cli::stdstars::run,
    )
}
