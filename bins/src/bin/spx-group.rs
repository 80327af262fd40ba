fn main() -> std::process::ExitCode {
    spx::cli::main::<spx::cli::group::GroupOpts>("spx-group", |o| &o.common, spx::cli::group::run)
}
