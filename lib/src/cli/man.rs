//! Man pages rendered from the same clap definitions the binaries parse, so they cannot drift:
//! a test compares `man/*.1` with [`render_all`] (regenerate with `scripts/gen-man`).

/// `(file name, roff bytes)` for every binary in [`super::commands`].
pub fn render_all() -> Vec<(String, Vec<u8>)> {
    super::commands()
        .into_iter()
        .map(|cmd| {
            let name = format!("{}.1", cmd.get_name());
            let mut out = Vec::new();
            // Rendering into a Vec cannot fail.
            let _ = clap_mangen::Man::new(cmd).render(&mut out);
            (name, out)
        })
        .collect()
}
