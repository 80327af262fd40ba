//! Conformance with DESI's own Python readers, both ways:
//! * files written by spx are read with desispec 0.70.0 (`desispec.io.read_frame`, …) and must
//!   hold exactly what spx wrote;
//! * DESI-written files in ../shared/data are read by spx and must hold exactly what astropy
//!   reads from them.
//!
//! The harness: `tests/python/desi_read.py READER FILE OUTDIR` reads FILE with a DESI reader
//! (or astropy) and dumps every array as little-endian f64 plus a JSON manifest (shapes,
//! dtypes, header values, string columns); [`desi_read`] runs it and [`Dump`] gives the values
//! back. Adding a file kind = one Python function in desi_read.py (`READERS[kind]`) and one
//! test here that writes the kind with spx and compares. Skips (with a message) when the Python
//! env (`SPX_PYENV`) or the shared data are absent, fails under `SPX_REQUIRE_SHARED_DATA`.
//!
//! Exactness: spx keeps f64 in memory and writes f32 where DESI does. An f32 value converts to
//! f64 exactly, and DESI's readers return the stored f32, so the comparison is equality with
//! `value as f32`: there is no tolerance to choose, and any layout error (a transposed
//! resolution band, a shifted fiber) shows as a mismatch.

#[path = "common/mod.rs"]
mod common;

use std::path::Path;

use ndarray::{Array1, Array2, Array3, Axis};
use serde_json::Value;
use spx::io::fibermap::Fibermap;
use spx::io::fits::{Column, ColumnData, Provenance};
use spx::io::frame::Frame;
use spx::io::header::Header;
use spx::io::table::Table;
use spx::resolution::Resolution;
use spx::testsupport::{python, shared_file};

/// What a DESI reader saw, dumped by tests/python/desi_read.py.
struct Dump {
    dir: tempfile::TempDir,
    manifest: Value,
}

impl Dump {
    /// Shape and values (as f64) of array `name`.
    fn array(&self, name: &str) -> (Vec<usize>, Vec<f64>) {
        let meta = &self.manifest["arrays"][name];
        assert!(
            !meta.is_null(),
            "the reader gave no array {name}; it gave {:?}",
            self.manifest["arrays"]
                .as_object()
                .map(|m| m.keys().collect::<Vec<_>>())
        );
        let shape: Vec<usize> = meta["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let bytes = std::fs::read(self.dir.path().join(format!("{name}.f8"))).unwrap();
        let values: Vec<f64> = bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(values.len(), shape.iter().product::<usize>(), "{name}");
        (shape, values)
    }

    fn dtype(&self, name: &str) -> String {
        self.manifest["arrays"][name]["dtype"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn header(&self, key: &str) -> &Value {
        &self.manifest["header"][key]
    }

    fn strings(&self, col: &str) -> Vec<String> {
        self.manifest["columns"][col]
            .as_array()
            .unwrap_or_else(|| panic!("no string column {col}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    fn info(&self, key: &str) -> &Value {
        &self.manifest["info"][key]
    }
}

/// Reads `file` with `reader` ("astropy", "frame", …) in the Python env; `None` to skip.
fn desi_read(reader: &str, file: &Path) -> Option<Dump> {
    let py = python()?;
    let script = common::workspace_root().join("tests/python/desi_read.py");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(py)
        .arg(&script)
        .arg(reader)
        .arg(file)
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "desi_read.py {reader} {} failed:\n{}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    Some(Dump { dir, manifest })
}

/// Asserts `got` (as a DESI reader returned it) equals `want` stored as f32.
fn assert_f32_equal(what: &str, got: &[f64], want: impl IntoIterator<Item = f64>) {
    let want: Vec<f64> = want.into_iter().map(|v| f64::from(v as f32)).collect();
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!("{what}: element {i} is {} , spx wrote {}", got[i], want[i]);
    }
}

/// A resolution band whose profiles are asymmetric (centre shifted by 0.6 pixel and a
/// one-sided tail) and differ per fiber and column: a transposed or flipped layout, or a
/// fiber mix-up, changes the values read back.
fn asymmetric_band(fiber: usize, nwave: usize, ndiag: usize) -> Array2<f64> {
    let h = (ndiag / 2) as f64;
    let mut band = Array2::zeros((ndiag, nwave));
    for j in 0..nwave {
        let sigma = 0.9 + 0.1 * fiber as f64 + 0.002 * j as f64;
        let mut col: Vec<f64> = (0..ndiag)
            .map(|k| {
                let x = k as f64 - h - 0.6;
                let tail = if k < ndiag / 2 {
                    0.05 * (k as f64 + 1.0)
                } else {
                    0.0
                };
                (-0.5 * x * x / (sigma * sigma)).exp() + tail
            })
            .collect();
        let s: f64 = col.iter().sum();
        col.iter_mut().for_each(|v| *v /= s);
        for (k, v) in col.into_iter().enumerate() {
            band[[k, j]] = v;
        }
    }
    band
}

/// A frame of spectrograph 1 with values that are not exactly representable in f32.
fn test_frame() -> Frame {
    let (ns, nw, nd) = (4, 60, 11);
    let wave = Array1::from_iter((0..nw).map(|j| 3600.0 + 0.8 * j as f64));
    let flux = Array2::from_shape_fn((ns, nw), |(i, j)| {
        100.0 * (1.0 + i as f64) + 7.3 * (0.37 * j as f64).sin() + 1.0 / 3.0
    });
    let ivar = Array2::from_shape_fn((ns, nw), |(i, j)| {
        if i == 2 && j < 5 {
            0.0 // masked pixels are data: ivar 0 with a mask bit
        } else {
            0.01 / (1.0 + 0.1 * i as f64) + 1e-4 * j as f64 / 3.0
        }
    });
    let mut mask = Array2::zeros((ns, nw));
    for j in 0..5 {
        mask[[2, j]] = spx::maskbits::specmask::COSMIC;
    }
    let mut resolution = Array3::zeros((ns, nd, nw));
    for i in 0..ns {
        resolution
            .index_axis_mut(Axis(0), i)
            .assign(&asymmetric_band(i, nw, nd));
    }
    let fibers = vec![500, 501, 502, 503];
    let fibermap = Table::new(vec![
        Column::new(
            "TARGETID",
            ColumnData::I64(vec![39_627_000_001, 39_627_000_002, -1, 39_627_000_004]),
        ),
        Column::new("PETAL_LOC", ColumnData::I16(vec![1; ns])),
        Column::new("FIBER", ColumnData::I32(fibers)),
        Column::new("FIBERSTATUS", ColumnData::I32(vec![0, 0, 4, 0])),
        Column::new(
            "OBJTYPE",
            ColumnData::Str(vec!["TGT".into(), "SKY".into(), "BAD".into(), "TGT".into()]),
        ),
        Column::new(
            "TARGET_RA",
            ColumnData::F64(vec![150.1, 150.2, 150.3, 150.4]),
        ),
        Column::new("FLUX_G", ColumnData::F32(vec![1.5, 0.0, 2.25, 10.125])).with_unit("nanomaggy"),
    ])
    .unwrap();
    let mut header = Header::default();
    header.set("CAMERA", "b1".into());
    header.set("EXPID", 1234i64.into());
    header.set("NIGHT", 20201214i64.into());
    header.set("EXPTIME", 900.5f64.into());
    header.set("FLAVOR", "science".into());
    Frame {
        wave,
        flux,
        ivar,
        mask,
        resolution,
        fibermap: Fibermap::from_table(fibermap).unwrap(),
        chi2pix: Some(Array2::from_shape_fn((ns, nw), |(i, j)| {
            1.0 + 0.01 * (i * nw + j) as f64 / 7.0
        })),
        scores: None,
        header,
    }
}

#[test]
fn spx_frame_reads_back_in_desispec() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frame-b1-00001234.fits");
    let f = test_frame();
    f.write(&path, &Provenance::current("spx-test", &[]))
        .unwrap();
    let Some(d) = desi_read("frame", &path) else {
        return;
    };
    let (ns, nd, nw) = f.resolution.dim();
    assert_eq!(d.info("nspec"), ns);
    assert_eq!(d.info("nwave"), nw);
    assert_eq!(d.info("spectrograph"), 1);

    let (shape, flux) = d.array("flux");
    assert_eq!(shape, vec![ns, nw]);
    assert_f32_equal("FLUX", &flux, f.flux.iter().copied());
    let (_, ivar) = d.array("ivar");
    assert_f32_equal("IVAR", &ivar, f.ivar.iter().copied());
    let (_, chi2) = d.array("chi2pix");
    assert_f32_equal(
        "CHI2PIX",
        &chi2,
        f.chi2pix.as_ref().unwrap().iter().copied(),
    );
    let (_, mask) = d.array("mask");
    assert!(
        mask.iter()
            .zip(f.mask.iter())
            .all(|(a, &b)| *a == f64::from(b)),
        "MASK"
    );
    let (_, wave) = d.array("wave");
    assert_eq!(
        wave,
        f.wave.to_vec(),
        "WAVELENGTH is f64 and must round-trip exactly"
    );

    let (shape, rdata) = d.array("resolution_data");
    assert_eq!(shape, vec![ns, nd, nw]);
    assert_f32_equal("RESOLUTION", &rdata, f.resolution.iter().copied());
    // desispec's dense matrix of spectrum 0 must be spx's dense matrix of the same (f32) band:
    // this checks the meaning of the layout (offsets, column indexing), not only the bytes.
    let band32 = f
        .resolution
        .index_axis(Axis(0), 0)
        .mapv(|v| f64::from(v as f32));
    let dense_spx = Resolution::from_band(band32).unwrap().to_dense();
    let (shape, dense_desi) = d.array("dense0");
    assert_eq!(shape, vec![nw, nw]);
    let asym = (0..nw)
        .flat_map(|i| (0..nw).map(move |j| (i, j)))
        .map(|(i, j)| (dense_spx[[i, j]] - dense_spx[[j, i]]).abs())
        .fold(0.0, f64::max);
    assert!(
        asym > 0.05,
        "kernel must be asymmetric for this test to mean anything"
    );
    for i in 0..nw {
        for j in 0..nw {
            assert_eq!(dense_desi[i * nw + j], dense_spx[[i, j]], "R[{i},{j}]");
        }
    }

    // FIBERMAP columns, types included.
    let fm = f.fibermap.table();
    for col in [
        "TARGETID",
        "FIBER",
        "PETAL_LOC",
        "FIBERSTATUS",
        "TARGET_RA",
        "FLUX_G",
    ] {
        let (_, got) = d.array(&format!("col_{col}"));
        assert_eq!(got, fm.f64s(col).unwrap(), "FIBERMAP {col}");
    }
    assert_eq!(d.strings("OBJTYPE"), fm.strs("OBJTYPE").unwrap());
    assert_eq!(d.manifest["columns"]["TARGETID"]["dtype"], ">i8");
    assert_eq!(d.manifest["columns"]["FIBER"]["dtype"], ">i4");

    // Header keywords, and our provenance.
    assert_eq!(d.header("CAMERA"), "b1");
    assert_eq!(d.header("EXPID"), 1234);
    assert_eq!(d.header("NIGHT"), 20201214);
    assert_eq!(d.header("EXPTIME"), 900.5);
    assert_eq!(d.header("FLAVOR"), "science");
    assert_eq!(d.header("BUNIT"), spx::io::frame::BUNIT_FRAME);
    assert_eq!(d.header("SPXPROG"), "spx-test");
}

/// Compares spx's reading of a desispec-written frame with astropy's, value by value.
fn check_spx_reads_desispec_frame(rel: &str) {
    let Some(path) = shared_file(rel) else { return };
    let f = Frame::read(&path).unwrap();
    let Some(d) = desi_read("astropy", &path) else {
        return;
    };
    let exact = |hdu: &str, got: Vec<f64>, shape: &[usize]| {
        let (s, want) = d.array(hdu);
        assert_eq!(s, shape, "{rel}[{hdu}] shape");
        if let Some(i) = (0..want.len()).find(|&i| got[i] != want[i]) {
            panic!(
                "{rel}[{hdu}] element {i}: spx {} astropy {}",
                got[i], want[i]
            );
        }
    };
    let (ns, nd, nw) = f.resolution.dim();
    exact("FLUX", f.flux.iter().copied().collect(), &[ns, nw]);
    exact("IVAR", f.ivar.iter().copied().collect(), &[ns, nw]);
    exact(
        "MASK",
        f.mask.iter().map(|&m| f64::from(m)).collect(),
        &[ns, nw],
    );
    exact("WAVELENGTH", f.wave.to_vec(), &[nw]);
    exact(
        "RESOLUTION",
        f.resolution.iter().copied().collect(),
        &[ns, nd, nw],
    );
    if let Some(c) = &f.chi2pix {
        exact("CHI2PIX", c.iter().copied().collect(), &[ns, nw]);
    }
    for key in ["CAMERA", "FLAVOR", "BUNIT"] {
        assert_eq!(
            d.header(&format!("FLUX.{key}")).as_str(),
            f.header.get_str(key).as_deref(),
            "{rel} {key}"
        );
    }
    for key in ["EXPID", "NIGHT"] {
        assert_eq!(
            d.header(&format!("FLUX.{key}")).as_i64(),
            f.header.get_i64(key),
            "{rel} {key}"
        );
    }
    assert_eq!(
        d.header("FLUX.EXPTIME").as_f64(),
        f.header.get_f64("EXPTIME")
    );
    let fm = f.fibermap.table();
    if d.manifest["columns"]
        .as_object()
        .unwrap()
        .keys()
        .any(|k| k.starts_with("FIBERMAP."))
    {
        for c in fm.columns() {
            let key = format!("FIBERMAP.{}", c.name);
            match fm.strs(&c.name) {
                Some(s) => assert_eq!(d.strings(&key), s, "{rel} {key}"),
                None => {
                    if let Some(v) = fm.f64s(&c.name) {
                        let (_, want) = d.array(&format!("FIBERMAP.col_{}", c.name));
                        assert_eq!(v, want, "{rel} {key}");
                    }
                }
            }
        }
    }
}

#[test]
fn spx_reads_desispec_extraction_frame_as_astropy_does() {
    check_spx_reads_desispec_frame("extract/frame-noisy.fits");
}

#[test]
fn spx_reads_desispec_sky_input_frame_as_astropy_does() {
    check_spx_reads_desispec_frame("sky/frame-sky-input.fits");
}

/// The on-disk types of an spx frame equal those desispec's write_frame used for the shared
/// frame (astropy reports them without conversion), HDU by HDU.
#[test]
fn spx_frame_has_desispec_on_disk_types() {
    let Some(reference) = shared_file("extract/frame-noisy.fits") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frame-b1-00001234.fits");
    test_frame().write(&path, &Provenance::default()).unwrap();
    let (Some(ours), Some(theirs)) = (
        desi_read("astropy", &path),
        desi_read("astropy", &reference),
    ) else {
        return;
    };
    for hdu in [
        "FLUX",
        "IVAR",
        "MASK",
        "WAVELENGTH",
        "RESOLUTION",
        "CHI2PIX",
    ] {
        assert_eq!(ours.dtype(hdu), theirs.dtype(hdu), "{hdu}");
    }
    for key in ["FLUX.BUNIT", "WAVELENGTH.BUNIT"] {
        assert_eq!(ours.header(key), theirs.header(key), "{key}");
    }
}
