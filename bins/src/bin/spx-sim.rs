fn main() -> std::process::ExitCode {
    spx::cli::main::<spx::cli::sim::SimOpts>("spx-sim", |o| &o.common, spx::cli::sim::run)
}
