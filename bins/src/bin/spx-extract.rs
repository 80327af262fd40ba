fn main() -> std::process::ExitCode {
    spx::cli::main_distributed::<spx::cli::extract::ExtractOpts>(
        "spx-extract",
        |o| &o.common,
        spx::cli::extract::run,
    )
}
