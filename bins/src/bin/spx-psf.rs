fn main() -> std::process::ExitCode {
    spx::cli::main_distributed::<spx::cli::psf::PsfOpts>(
        "spx-psf",
        |o| &o.common,
        spx::cli::psf::run,
    )
}
