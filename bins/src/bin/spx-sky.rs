fn main() -> std::process::ExitCode {
    spx::cli::main::<spx::cli::sky::SkyOpts>("spx-sky", |o| &o.common, spx::cli::sky::run)
}
