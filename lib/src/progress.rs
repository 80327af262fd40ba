//! Progress reporting for long loops: an indicatif bar when stderr is a terminal, otherwise
//! a log line at most every 10% or 10 s (batch logs under Slurm or make stay readable).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A thread-safe progress counter over `total` units of work.
pub struct Progress {
    label: String,
    total: usize,
    done: AtomicUsize,
    bar: Option<indicatif::ProgressBar>,
    last: Mutex<(Instant, usize)>,
}

impl Progress {
    /// Starts reporting; `label` names the work (e.g. "extracting patches").
    pub fn new(label: &str, total: usize) -> Self {
        let show_bar =
            std::io::stderr().is_terminal() && log::max_level() >= log::LevelFilter::Info;
        let bar = show_bar.then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
            {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_message(label.to_string());
            b
        });
        Progress {
            label: label.to_string(),
            total,
            done: AtomicUsize::new(0),
            bar,
            last: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Records `n` more finished units.
    pub fn inc(&self, n: usize) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            return;
        }
        if let Ok(mut last) = self.last.lock() {
            let step = (self.total / 10).max(1);
            if done >= last.1 + step || last.0.elapsed() > Duration::from_secs(10) {
                *last = (Instant::now(), done);
                log::info!("{}: {}/{}", self.label, done, self.total);
            }
        }
    }

    /// Ends the bar (or logs the final count).
    pub fn finish(&self) {
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => log::debug!(
                "{}: done ({})",
                self.label,
                self.done.load(Ordering::Relaxed)
            ),
        }
    }
}
