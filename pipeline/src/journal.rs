//! The journal: one JSON object per line for every task start, end and skip, appended by
//! every executor (and by concurrent `spx-pipeline task` processes under Slurm: one
//! `write` per line on an O_APPEND file, so lines do not interleave).

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{io_err, Error};

/// One journal line.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// Unix time, seconds.
    pub time: f64,
    /// `start`, `end` or `skip`.
    pub event: String,
    /// Task name.
    pub task: String,
    /// Stage name.
    pub stage: String,
    /// Attempt number (1 = first try).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Exit code (128+signal when killed by a signal; 127 when it could not start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Wall time of the attempt, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// Peak resident memory of the task process, kilobytes (wait4 ru_maxrss).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rss_kb: Option<i64>,
    /// `ok`, `failed`, `retry`, `skipped: upstream failed`, `up to date`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Log file of the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Why it failed, when the exit code does not say it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// An open journal.
pub struct Journal {
    file: std::fs::File,
    path: std::path::PathBuf,
}

impl Journal {
    /// Opens (creating folders) `path` for appending.
    pub fn open(path: &Path) -> Result<Journal, Error> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| io_err(d, e))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io_err(path, e))?;
        // A writer killed mid-line left a torn last line: end it, so the next event starts
        // on a line of its own.
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len > 0 {
            use std::io::{Read, Seek, SeekFrom};
            let mut last = [0u8; 1];
            let mut r = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
            r.seek(SeekFrom::End(-1)).map_err(|e| io_err(path, e))?;
            r.read_exact(&mut last).map_err(|e| io_err(path, e))?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(|e| io_err(path, e))?;
            }
        }
        Ok(Journal {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Appends one event as one line.
    pub fn write(&mut self, ev: &Event) -> Result<(), Error> {
        let mut line = serde_json::to_string(ev).map_err(|e| io_err(&self.path, e))?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| io_err(&self.path, e))
    }
}

/// Reads a journal; a torn last line (the writer was killed) is ignored.
pub fn read(path: &Path) -> Result<Vec<Event>, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_does_not_swallow_the_next_event() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        std::fs::write(&p, "{\"time\":1,\"event\":\"start\",\"task\":\"a\",\"sta").unwrap();
        let mut j = Journal::open(&p).unwrap();
        let ev = Event {
            event: "end".into(),
            task: "b".into(),
            ..Default::default()
        };
        j.write(&ev).unwrap();
        assert_eq!(read(&p).unwrap(), vec![ev]);
    }
}
