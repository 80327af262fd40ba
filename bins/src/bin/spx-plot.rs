fn main() -> std::process::ExitCode {
    spx::cli::main::<spx::cli::plot::PlotOpts>("spx-plot", |o| o.common(), spx_plot::run)
}
