fn main() -> std::process::ExitCode {
    spx::cli::main_distributed::<spx::cli::redshift::RedshiftOpts>(
        "spx-redshift",
        |o| &o.common,
        spx::cli::redshift::run,
    )
}
