fn main() -> std::process::ExitCode {
    spx::cli::main::<spx::cli::redshift::RedshiftOpts>(
        "spx-redshift",
        |o| &o.common,
        spx::cli::redshift::run,
    )
}
