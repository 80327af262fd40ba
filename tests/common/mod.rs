//! Helpers shared by the integration tests in tests/.
#![allow(dead_code)]

use std::path::PathBuf;

/// The workspace root (this file is in tests/common/).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A Command for the installed binary `name` (e.g. "spx-inspect") of this workspace.
pub fn bin(name: &str) -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin(name).unwrap_or_else(|e| panic!("binary {name}: {e}"))
}
