//! Rest-frame wavelengths (vacuum, Angstrom) of the lines labelled on spectrum plots: the
//! strong features that identify a redshift in DESI spectra (QSO broad lines, galaxy nebular
//! lines, stellar/galaxy absorption). Values from the SDSS line list (vacuum).

/// Whether a line is usually seen in emission or in absorption (only the label colour).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Emission,
    Absorption,
}

/// One labelled line: `name` as printed, `rest` wavelength in Angstrom (vacuum), and the
/// spectral types it is labelled for (bits [`QSO`], [`GAL`], [`STAR`]).
#[derive(Debug, Clone, Copy)]
pub struct Line {
    pub name: &'static str,
    pub rest: f64,
    pub kind: LineKind,
    pub types: u8,
}

pub const QSO: u8 = 1;
pub const GAL: u8 = 2;
pub const STAR: u8 = 4;

const fn em(name: &'static str, rest: f64, types: u8) -> Line {
    Line {
        name,
        rest,
        kind: LineKind::Emission,
        types,
    }
}

const fn abs(name: &'static str, rest: f64, types: u8) -> Line {
    Line {
        name,
        rest,
        kind: LineKind::Absorption,
        types,
    }
}

/// The labelled lines, by increasing rest wavelength. Close doublets ([O II] 3727/3730,
/// Ca II H/K kept apart since both are resolved) carry one label at their mean.
pub const LINES: &[Line] = &[
    em("Lyα", 1215.67, QSO),
    em("N V", 1240.81, QSO),
    em("Si IV", 1397.61, QSO),
    em("C IV", 1549.48, QSO),
    em("C III]", 1908.73, QSO),
    em("Mg II", 2799.49, QSO | GAL),
    em("[O II]", 3728.48, QSO | GAL),
    abs("Ca K", 3934.78, GAL | STAR),
    abs("Ca H", 3969.59, GAL | STAR),
    em("Hδ", 4102.89, GAL | STAR),
    abs("G", 4305.61, GAL | STAR),
    em("Hγ", 4341.68, GAL | STAR),
    em("Hβ", 4862.68, QSO | GAL | STAR),
    em("[O III]", 4960.30, GAL),
    em("[O III]", 5008.24, QSO | GAL),
    abs("Mg b", 5176.70, GAL | STAR),
    abs("Na D", 5895.60, GAL | STAR),
    em("Hα", 6564.61, QSO | GAL | STAR),
    em("[N II]", 6585.27, GAL),
    em("[S II]", 6718.29, GAL),
    em("[S II]", 6732.67, GAL),
    abs("Ca triplet", 8544.44, GAL | STAR),
];

/// The lines of `spectype` (GALAXY, QSO, STAR; any other: all) whose observed wavelength
/// `rest·(1+z)` falls in `[wmin, wmax]` (Angstrom), with that observed wavelength. Stars
/// show their Balmer lines in absorption, so every STAR line is returned as absorption.
pub fn observed_in(spectype: &str, z: f64, wmin: f64, wmax: f64) -> Vec<(Line, f64)> {
    let mask = match spectype.trim() {
        "QSO" => QSO,
        "GALAXY" => GAL,
        "STAR" => STAR,
        _ => QSO | GAL | STAR,
    };
    LINES
        .iter()
        .filter(|l| l.types & mask != 0)
        .map(|l| {
            let mut l = *l;
            if mask == STAR {
                l.kind = LineKind::Absorption;
            }
            (l, l.rest * (1.0 + z))
        })
        .filter(|&(_, w)| w >= wmin && w <= wmax)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_sorted_and_shift_with_z() {
        assert!(LINES.windows(2).all(|w| w[0].rest <= w[1].rest));
        // Hα at z = 0.1 is at 7221.07 Å; Lyα is not in 3600–9800 Å at z = 0.1.
        let v = observed_in("GALAXY", 0.1, 3600.0, 9800.0);
        let ha = v.iter().find(|(l, _)| l.name == "Hα").unwrap();
        assert!((ha.1 - 6564.61 * 1.1).abs() < 1e-9);
        assert!(v.iter().all(|(l, _)| l.name != "Lyα"));
        // Lyα enters the DESI range above z ≈ 2 (3600/1215.67 − 1 = 1.96).
        assert!(observed_in("QSO", 2.5, 3600.0, 9800.0)
            .iter()
            .any(|(l, _)| l.name == "Lyα"));
        // Stars get no nebular lines, and their Balmer lines are absorption.
        let s = observed_in("STAR", 0.0, 3600.0, 9800.0);
        assert!(s.iter().all(|(l, _)| !l.name.contains("[O")));
        assert!(s.iter().all(|(l, _)| l.kind == LineKind::Absorption));
    }
}
