fn main() -> std::process::ExitCode {
    spx::cli::main::<spx::cli::templates::TemplatesOpts>(
        "spx-templates",
        |o| &o.common,
        spx::cli::templates::run,
    )
}
