//! man/spx-pipeline.1 is rendered from the same clap definition the binary parses (with the
//! YAML schema); this fails when it is stale (regenerate: SPX_BLESS=1 cargo test -p
//! spx-pipeline --test man, or scripts/gen-man).

use clap::CommandFactory;

#[test]
fn man_page_is_current() {
    let mut out = Vec::new();
    clap_mangen::Man::new(spx_pipeline::cli::Cli::command())
        .render(&mut out)
        .unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../man/spx-pipeline.1");
    if std::env::var_os("SPX_BLESS").is_some() {
        std::fs::write(&path, &out).unwrap();
        return;
    }
    let on_disk = std::fs::read(&path).unwrap_or_default();
    assert!(
        on_disk == out,
        "man/spx-pipeline.1 is stale: run scripts/gen-man and commit the result"
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("group_by"));
}
