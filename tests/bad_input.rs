//! Bad input to the frame reader (and, as they land, to the binaries that read frames): a
//! truncated FITS, a missing HDU, a wrong-shaped IVAR, NaN in FLUX. Each must be a one-line
//! error naming the file and the HDU, never a panic.

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use spx::io::fits::{FitsWriter, Provenance};
use spx::io::frame::Frame;

const NS: usize = 3;
const NW: usize = 16;
const ND: usize = 5;

/// How to spoil a frame file written in desispec's layout.
#[derive(Clone, Copy, PartialEq)]
enum Spoil {
    None,
    MissingIvar,
    IvarShape,
    NanFlux,
}

/// Writes a frame HDU by HDU (Frame::write refuses bad frames, so bad files are made here).
fn write_frame(path: &Path, spoil: Spoil) {
    let mut flux = vec![1.5f32; NS * NW];
    if spoil == Spoil::NanFlux {
        flux[NW + 7] = f32::NAN;
    }
    let mut w = FitsWriter::create_with_primary_image(
        path,
        &Provenance::default(),
        "FLUX",
        &[NS, NW],
        &flux,
    )
    .unwrap();
    w.key("CAMERA", "b0").unwrap();
    match spoil {
        Spoil::MissingIvar => {}
        Spoil::IvarShape => w
            .image("IVAR", &[NS, NW - 1], &[1.0f32; NS * (NW - 1)])
            .unwrap(),
        _ => w.image("IVAR", &[NS, NW], &[1.0f32; NS * NW]).unwrap(),
    }
    w.image("MASK", &[NS, NW], &[0u32; NS * NW]).unwrap();
    let wave: Vec<f64> = (0..NW).map(|j| 3600.0 + 0.8 * j as f64).collect();
    w.image("WAVELENGTH", &[NW], &wave).unwrap();
    let mut res = vec![0.0f32; NS * ND * NW];
    for s in 0..NS {
        for j in 0..NW {
            res[(s * ND + ND / 2) * NW + j] = 1.0;
        }
    }
    w.image("RESOLUTION", &[NS, ND, NW], &res).unwrap();
    w.commit().unwrap();
}

/// The bad files, each with the HDU its error must name (None: the file as a whole).
fn bad_frames(dir: &Path) -> Vec<(PathBuf, Option<&'static str>)> {
    let good = dir.join("good.fits");
    write_frame(&good, Spoil::None);
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.join("truncated.fits");
    // Cut inside the data of the last HDU (RESOLUTION): every header is intact.
    std::fs::write(&truncated, &bytes[..bytes.len() - 2880 / 2]).unwrap();
    let mut out = vec![(truncated, Some("RESOLUTION"))];
    for (name, spoil, hdu) in [
        ("missing-ivar.fits", Spoil::MissingIvar, "IVAR"),
        ("ivar-shape.fits", Spoil::IvarShape, "IVAR"),
        ("nan-flux.fits", Spoil::NanFlux, "FLUX"),
    ] {
        let p = dir.join(name);
        write_frame(&p, spoil);
        out.push((p, Some(hdu)));
    }
    out
}

#[test]
fn good_frame_reads() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("good.fits");
    write_frame(&p, Spoil::None);
    let f = Frame::read(&p).unwrap();
    assert_eq!((f.nspec(), f.nwave()), (NS, NW));
}

#[test]
fn frame_reader_names_file_and_hdu() {
    let dir = tempfile::tempdir().unwrap();
    for (path, hdu) in bad_frames(dir.path()) {
        let e = Frame::read(&path)
            .err()
            .unwrap_or_else(|| panic!("{} was accepted", path.display()));
        let msg = e.to_string();
        assert_eq!(msg.lines().count(), 1, "one line: {msg}");
        assert!(
            msg.contains(&*path.to_string_lossy()),
            "names the file: {msg}"
        );
        if let Some(hdu) = hdu {
            assert!(msg.contains(hdu), "names HDU {hdu}: {msg}");
        }
        eprintln!("{msg}");
    }
}

/// The binaries that read a frame (`-i FRAME -o OUT`): each bad frame gives exit code 1, one
/// error line naming the file and HDU, and no output file (nor a temporary one) at all.
#[test]
fn frame_reading_binaries_fail_cleanly() {
    let inputs = tempfile::tempdir().unwrap();
    let bad = bad_frames(inputs.path());
    for bin in ["spx-sky", "spx-fiberflat"] {
        for (path, hdu) in &bad {
            let outdir = tempfile::tempdir().unwrap();
            let outfile = outdir.path().join("out.fits");
            let out = common::bin(bin)
                .arg("-i")
                .arg(path)
                .arg("-o")
                .arg(&outfile)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            let what = format!("{bin} -i {}", path.display());
            assert_eq!(out.status.code(), Some(1), "{what}: {err}");
            let lines: Vec<&str> = err.lines().collect();
            assert_eq!(lines.len(), 1, "{what}: one line, got {err}");
            assert!(
                lines[0].starts_with(&format!("{bin}: error: ")),
                "{what}: {err}"
            );
            assert!(
                lines[0].contains(&*path.to_string_lossy()),
                "{what}: names the file: {err}"
            );
            if let Some(hdu) = hdu {
                assert!(lines[0].contains(hdu), "{what}: names HDU {hdu}: {err}");
            }
            let left: Vec<_> = std::fs::read_dir(outdir.path()).unwrap().collect();
            assert!(left.is_empty(), "{what}: left {left:?}");
        }
    }
}

/// A PSF of a type spx does not evaluate: a one-line error naming the file, the HDU and the
/// PSFTYPE (the bad-input list). spx-inspect still names it a psf.
#[test]
fn psf_reader_refuses_unknown_psftype() {
    let Some(src) = spx::testsupport::shared_file("psf/psf-r0-00067784.fits") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("psf-spotgrid.fits");
    // Rewrite the PSFTYPE cards in place (same length, so the file layout is unchanged).
    let mut bytes = std::fs::read(&src).unwrap();
    let (from, to) = (b"'GAUSS-HERMITE'", b"'SPOTGRID'     ");
    let at: Vec<usize> = bytes
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| w == from)
        .map(|(i, _)| i)
        .collect();
    assert!(!at.is_empty(), "no PSFTYPE card found");
    for i in at {
        bytes[i..i + from.len()].copy_from_slice(to);
    }
    std::fs::write(&path, &bytes).unwrap();
    let msg = spx::io::psf::read(&path).expect_err("accepted").to_string();
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(
        msg.contains(&*path.to_string_lossy())
            && msg.contains("PSFTYPE")
            && msg.contains("SPOTGRID"),
        "{msg}"
    );
    assert!(
        msg.contains("[XTRACE]") || msg.contains("[PSF]"),
        "names the HDU: {msg}"
    );
    let out = common::bin("spx-inspect")
        .arg("--json")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["kind"], "psf");
}
