fn main() -> std::process::ExitCode {
    spx::cli::main::<spx::cli::extract::ExtractOpts>(
        "spx-extract",
        |o| &o.common,
        spx::cli::extract::run,
    )
}
