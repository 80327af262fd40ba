fn main() -> std::process::ExitCode {
    spx::cli::main::<spx::cli::fiberflat::FiberFlatOpts>(
        "spx-fiberflat",
        |o| &o.common,
        spx::cli::fiberflat::run,
    )
}
