//! Helpers for tests: where the conformance data of ../shared/data is.
//!
//! The data sits beside the repository (and in CI), never on a user's machine. Tests find it
//! through `SPX_SHARED_DATA` or by walking up from the workspace; when it is absent they skip
//! with a message, unless `SPX_REQUIRE_SHARED_DATA` is set (CI), where absence is a failure.

use std::path::{Path, PathBuf};

/// The shared data folder, if it can be found.
pub fn shared_data_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("SPX_SHARED_DATA") {
        let p = PathBuf::from(d);
        return p.is_dir().then_some(p);
    }
    let mut dir: Option<&Path> = Some(Path::new(env!("CARGO_MANIFEST_DIR")));
    while let Some(d) = dir {
        let cand = d.join("../shared/data");
        if cand.is_dir() {
            return cand.canonicalize().ok();
        }
        dir = d.parent();
    }
    None
}

/// Path of `rel` inside the shared data, or `None` (with a skip message) when absent.
/// Panics when absent and `SPX_REQUIRE_SHARED_DATA` is set, so CI cannot skip silently.
pub fn shared_file(rel: &str) -> Option<PathBuf> {
    let found = shared_data_dir()
        .map(|d| d.join(rel))
        .filter(|p| p.exists());
    if found.is_none() {
        if std::env::var_os("SPX_REQUIRE_SHARED_DATA").is_some() {
            panic!("shared data file {rel} is missing and SPX_REQUIRE_SHARED_DATA is set");
        }
        eprintln!("skipping: shared data file {rel} not found (set SPX_SHARED_DATA)");
    }
    found
}

/// The Python interpreter of the test env with desispec/redrock (`SPX_PYENV`), if present.
/// Same skip/require rule as [`shared_file`], keyed on `SPX_REQUIRE_SHARED_DATA`.
pub fn python() -> Option<PathBuf> {
    let env = std::env::var("SPX_PYENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pyenv"));
    let py = env.join("bin/python");
    if py.exists() {
        return Some(py);
    }
    if std::env::var_os("SPX_REQUIRE_SHARED_DATA").is_some() {
        panic!(
            "Python test env {} is missing (scripts/setup --python)",
            env.display()
        );
    }
    eprintln!(
        "skipping: Python test env {} not found (scripts/setup --python)",
        env.display()
    );
    None
}
