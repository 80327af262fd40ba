fn main() -> std::process::ExitCode {
    spx::cli::main::<spx::cli::fluxcal::FluxCalOpts>(
        "spx-fluxcal",
        |o| &o.common,
        spx::cli::fluxcal::run,
    )
}
