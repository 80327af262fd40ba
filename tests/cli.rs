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

/// Names of every binary, as registered in `spx::cli::commands()` (which the man pages use).
fn registered() -> Vec<String> {
    spx::cli::commands()
        .iter()
        .map(|c| c.get_name().to_string())
        .collect()
}

/// Every `bins/src/bin/spx-*.rs` is registered, so the checks below (and the man pages)
/// cover new binaries without anyone editing this file.
#[test]
fn every_binary_is_registered() {
    let names = registered();
    let dir = common::workspace_root().join("bins/src/bin");
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let Some(stem) = p.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
            continue;
        };
        if p.extension().is_some_and(|x| x == "rs") && stem.starts_with("spx-") {
            assert!(
                names.contains(&stem),
                "{stem} is not in spx::cli::commands(): add it there (and run scripts/gen-man)"
            );
        }
    }
}

/// Help must fit one screen: at most 60 rows of at most 100 columns (a longer line counts as
/// the rows it wraps to). That is what a default terminal window on a laptop shows without
/// scrolling; explanations that need more belong in the man page, which the same clap
/// definitions generate. Both `-h` and `--help` (clap's long form) are held to it.
const SCREEN_ROWS: usize = 60;
const SCREEN_COLS: usize = 100;

#[test]
fn help_fits_one_screen() {
    for name in registered() {
        for flag in ["-h", "--help"] {
            let out = common::bin(&name).arg(flag).output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{name} {flag}");
            let text = String::from_utf8(out.stdout).unwrap();
            let rows: usize = text
                .lines()
                .map(|l| l.chars().count().div_ceil(SCREEN_COLS).max(1))
                .sum();
            assert!(
                rows <= SCREEN_ROWS,
                "{name} {flag} takes {rows} rows of {SCREEN_COLS} columns, more than {SCREEN_ROWS}:\n{text}"
            );
            assert!(text.contains("Usage:"), "{name} {flag}:\n{text}");
        }
    }
}

/// `--version` prints one line `<name> <version>` on stdout and exits 0. The name is the
/// clap command name: `spx-x` where the options struct says `#[command(name = "spx-x")]`,
/// else the crate's (`spx`); either way the line starts with "spx" and ends with the version.
#[test]
fn version_prints_the_version() {
    for name in registered() {
        let out = common::bin(&name).arg("--version").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{name} --version");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.strip_suffix('\n').unwrap_or(&text);
        assert!(
            !line.contains('\n')
                && line.starts_with("spx")
                && line.ends_with(&format!(" {}", env!("CARGO_PKG_VERSION"))),
            "{name} --version printed {text:?}"
        );
    }
}

/// An unknown flag is a usage error: exit code 2, a message naming the flag on stderr,
/// nothing on stdout.
#[test]
fn bad_flag_is_usage_error_exit_2() {
    for name in registered() {
        let out = common::bin(&name)
            .arg("--no-such-flag-spx")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name} --no-such-flag-spx");
        assert!(out.stdout.is_empty(), "{name}: usage errors go to stderr");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--no-such-flag-spx"),
            "{name}: the message names the flag"
        );
    }
}
