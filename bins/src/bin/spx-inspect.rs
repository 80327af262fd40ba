fn main() -> std::process::ExitCode {
    spx::cli::main::<spx::cli::inspect::InspectOpts>(
        "spx-inspect",
        |o| &o.common,
        spx::cli::inspect::run,
    )
}
