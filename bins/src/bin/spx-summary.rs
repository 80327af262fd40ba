fn main() -> std::process::ExitCode {
    spx::cli::main::<spx::cli::summary::SummaryOpts>(
        "spx-summary",
        |o| &o.common,
        spx::cli::summary::run,
    )
}
