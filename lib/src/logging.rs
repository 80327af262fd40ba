//! Logging to stderr through the `log` crate: `-v` adds debug lines, `-q` keeps warnings and
//! errors only. Each line carries the program name and seconds since start, which is what a
//! Slurm log reader needs.

use std::sync::OnceLock;
use std::time::Instant;

struct StderrLogger {
    program: String,
    start: Instant,
}

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            eprintln!(
                "[{:8.2}s] {} {}: {}",
                self.start.elapsed().as_secs_f64(),
                self.program,
                record.level(),
                record.args()
            );
        }
    }
    fn flush(&self) {}
}

static LOGGER: OnceLock<StderrLogger> = OnceLock::new();

/// Installs the stderr logger once per process; later calls only change the level.
/// `verbose` counts `-v` flags; `quiet` keeps warnings and errors only.
pub fn init(program: &str, verbose: u8, quiet: bool) {
    let logger = LOGGER.get_or_init(|| StderrLogger {
        program: program.to_string(),
        start: Instant::now(),
    });
    let _ = log::set_logger(logger);
    log::set_max_level(match (quiet, verbose) {
        (true, _) => log::LevelFilter::Warn,
        (false, 0) => log::LevelFilter::Info,
        (false, 1) => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    });
}
