//! Tests that drive the real `spx-*` binaries, and checks shared by all of them.

#[path = "common/mod.rs"]
mod common;

/// man/*.1 must equal what the clap definitions render; `SPX_BLESS=1` rewrites them.
#[test]
fn man_pages_are_current() {
    let dir = common::workspace_root().join("man");
    let bless = std::env::var_os("SPX_BLESS").is_some();
    for (name, bytes) in spx::cli::man::render_all() {
        let path = dir.join(&name);
        if bless {
            std::fs::write(&path, &bytes).unwrap();
            continue;
        }
        let on_disk = std::fs::read(&path).unwrap_or_default();
        assert!(
            on_disk == bytes,
            "man/{name} is stale: run scripts/gen-man and commit the result"
        );
    }
}
