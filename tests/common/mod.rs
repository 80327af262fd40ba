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

/// Runs `cmd` (a Python script, a system tool) to completion and returns its output; panics
/// naming `what`, with its stderr, unless it exits 0.
pub fn run_ok(cmd: &mut std::process::Command, what: &str) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run ({e})"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Deterministic standard normal deviates for synthetic test data: splitmix64 uniforms and
/// Box–Muller, seeded by the caller so every run (and thread count) sees the same noise.
/// Same sequence as the local copies in tests/fiberflat.rs and tests/psffit.rs (`Gauss`,
/// `next()`) and tests/fluxcal.rs (`Noise`, `normal()`), which can use this one instead.
pub struct Gauss(pub u64);

impl Gauss {
    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal deviate (consumes two uniforms).
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}
