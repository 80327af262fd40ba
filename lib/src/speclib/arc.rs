//! Arc-lamp lines: vacuum wavelengths and NIST relative intensities of Hg I, Ar I, Cd I, Ne I
//! (the list DESI's specex fits) and the strongest Kr I and Xe I lines (NIST), in
//! `data/arc_lines.txt` (regenerate with scripts/make-linelists). The instrument YAML says which
//! lamps are on and scales relative intensity to photons/s.

use std::sync::OnceLock;

/// Ions in the line list.
pub const IONS: &[&str] = &["HgI", "ArI", "CdI", "NeI", "KrI", "XeI"];

/// One arc line.
#[derive(Debug, Clone, PartialEq)]
pub struct ArcLine {
    /// Vacuum wavelength, Å.
    pub wave: f64,
    /// Ion, e.g. "NeI".
    pub ion: String,
    /// In [`lines`]: NIST relative intensity. From `Instrument::arc_lines`: photons/s per fiber
    /// before throughput.
    pub rate: f64,
}

const DATA: &str = include_str!("data/arc_lines.txt");

/// The whole line list, sorted by wavelength.
pub fn lines() -> &'static [ArcLine] {
    static LINES: OnceLock<Vec<ArcLine>> = OnceLock::new();
    LINES.get_or_init(|| {
        let mut v: Vec<ArcLine> = DATA
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let wave = it.next()?.parse().ok()?;
                let ion = it.next()?.to_string();
                let rate = it.next()?.parse().ok()?;
                Some(ArcLine { wave, ion, rate })
            })
            .collect();
        v.sort_by(|a, b| a.wave.total_cmp(&b.wave));
        v
    })
}

/// An arc exposure's lamp spectrum (photons/s per fiber before throughput): lines only.
pub struct ArcSpectrum {
    pub lines: Vec<ArcLine>,
}

impl super::Sed for ArcSpectrum {
    fn density(&self, _wave: f64) -> f64 {
        0.0
    }
    fn lines(&self, wmin: f64, wmax: f64) -> Vec<(f64, f64)> {
        self.lines
            .iter()
            .filter(|l| l.wave >= wmin && l.wave <= wmax)
            .map(|l| (l.wave, l.rate))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_lines_present() {
        // NIST vacuum wavelengths: Hg I 4359.56, Ne I 6404.018, Ar I 8117.542
        for (w, ion) in [(4359.56, "HgI"), (6404.018, "NeI"), (8117.542, "ArI")] {
            assert!(
                lines()
                    .iter()
                    .any(|l| (l.wave - w).abs() < 1e-3 && l.ion == ion),
                "{ion} {w}"
            );
        }
        for ion in IONS {
            assert!(lines().iter().any(|l| l.ion == *ion), "{ion}");
        }
    }
}
