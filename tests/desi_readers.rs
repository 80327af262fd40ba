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
    common::run_ok(
        std::process::Command::new(py)
            .arg(&script)
            .arg(reader)
            .arg(file)
            .arg(dir.path()),
        &format!("desi_read.py {reader} {}", file.display()),
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

/// `got` (as a DESI reader returned it) equals `want` at the precision it is stored in: the
/// f64 value itself, or its f32 rounding for an f32 HDU.
fn assert_stored_equal(what: &str, got: &[f64], want: impl IntoIterator<Item = f64>) {
    let want: Vec<f64> = want.into_iter().collect();
    assert_eq!(got.len(), want.len(), "{what}: length");
    let as_f32 = |v: f64| f64::from(v as f32);
    let exact = got.iter().zip(&want).all(|(g, w)| g == w);
    if !exact {
        if let Some(i) = (0..got.len()).find(|&i| got[i] != as_f32(want[i])) {
            panic!("{what}: element {i} is {}, spx wrote {}", got[i], want[i]);
        }
    }
}

/// Values that are not exactly representable in f32, so a precision loss beyond the
/// storage type shows.
fn wiggly(ns: usize, nw: usize, scale: f64) -> Array2<f64> {
    Array2::from_shape_fn((ns, nw), |(i, j)| {
        scale * (1.0 + 0.1 * i as f64 + 0.013 * (0.7 * j as f64).sin()) + 1.0 / 3.0
    })
}

#[test]
fn spx_sky_reads_back_in_desispec() {
    use spx::io::sky::SkyModel;
    let (ns, nw) = (5, 40);
    let mut mask = Array2::zeros((ns, nw));
    mask[[3, 7]] = spx::maskbits::specmask::BADSKY;
    let mut header = Header::default();
    header.set("CAMERA", "r2".into());
    header.set("EXPID", 99i64.into());
    let sky = SkyModel {
        wave: Array1::from_iter((0..nw).map(|j| 5760.0 + 0.8 * j as f64)),
        flux: wiggly(ns, nw, 50.0),
        ivar: wiggly(ns, nw, 0.02),
        mask,
        stat_ivar: Some(wiggly(ns, nw, 0.03)),
        throughput_corrections: Some(Array1::from_iter((0..ns).map(|i| 1.0 + 0.01 * i as f64))),
        throughput_corrections_model: Some(Array1::ones(ns)),
        skytargetid: Some(vec![11, 12]),
        header,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sky-r2-00000099.fits");
    sky.write(&path, &Provenance::default()).unwrap();
    let Some(d) = desi_read("sky", &path) else {
        return;
    };
    assert_eq!(d.info("nspec"), ns);
    assert_stored_equal("WAVELENGTH", &d.array("wave").1, sky.wave.iter().copied());
    assert_stored_equal("SKY", &d.array("flux").1, sky.flux.iter().copied());
    assert_stored_equal("IVAR", &d.array("ivar").1, sky.ivar.iter().copied());
    let stat = sky.stat_ivar.as_ref().unwrap();
    assert_stored_equal("STATIVAR", &d.array("stat_ivar").1, stat.iter().copied());
    let tp = sky.throughput_corrections.as_ref().unwrap();
    assert_stored_equal(
        "THRPUTCORR",
        &d.array("throughput_corrections").1,
        tp.iter().copied(),
    );
    let mask: Vec<f64> = sky.mask.iter().map(|&m| f64::from(m)).collect();
    assert_eq!(d.array("mask").1, mask, "MASK");
    assert_eq!(d.header("CAMERA"), "r2");
}

#[test]
fn spx_fiberflat_reads_back_in_desispec() {
    use spx::io::fiberflat::FiberFlat;
    let (ns, nw) = (4, 30);
    let mut mask = Array2::zeros((ns, nw));
    mask[[1, 2]] = spx::maskbits::specmask::BADFIBERFLAT;
    let mut header = Header::default();
    header.set("CAMERA", "z0".into());
    let ff = FiberFlat {
        wave: Array1::from_iter((0..nw).map(|j| 7520.0 + 0.8 * j as f64)),
        fiberflat: wiggly(ns, nw, 1.0),
        ivar: wiggly(ns, nw, 1e4),
        mask,
        meanspec: Array1::from_iter((0..nw).map(|j| 1000.0 + j as f64 / 3.0)),
        chi2pdf: Some(1.25),
        fibermap: None,
        header,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fiberflat-z0-00000012.fits");
    ff.write(&path, &Provenance::default()).unwrap();
    let Some(d) = desi_read("fiberflat", &path) else {
        return;
    };
    assert_eq!(d.info("nspec"), ns);
    assert_eq!(d.info("nwave"), nw);
    assert_stored_equal("WAVELENGTH", &d.array("wave").1, ff.wave.iter().copied());
    assert_stored_equal(
        "FIBERFLAT",
        &d.array("fiberflat").1,
        ff.fiberflat.iter().copied(),
    );
    assert_stored_equal("IVAR", &d.array("ivar").1, ff.ivar.iter().copied());
    assert_stored_equal(
        "MEANSPEC",
        &d.array("meanspec").1,
        ff.meanspec.iter().copied(),
    );
    let mask: Vec<f64> = ff.mask.iter().map(|&m| f64::from(m)).collect();
    assert_eq!(d.array("mask").1, mask, "MASK");
    assert_eq!(d.header("CAMERA"), "z0");
    assert_eq!(d.header("CHI2PDF"), 1.25);
}

#[test]
fn spx_preproc_reads_back_in_desispec() {
    use spx::io::preproc::PreprocImage;
    let (ny, nx) = (12, 9);
    let f32s = |a: Array2<f64>| a.mapv(|v| v as f32);
    let mut mask = Array2::zeros((ny, nx));
    mask[[4, 5]] = 1u32; // ccdmask BAD
    let mut header = Header::default();
    header.set("CAMERA", "b3".into());
    header.set("EXPID", 5i64.into());
    let img = PreprocImage {
        image: f32s(wiggly(ny, nx, 100.0)),
        ivar: f32s(wiggly(ny, nx, 0.01)),
        mask,
        readnoise: Some(f32s(wiggly(ny, nx, 3.0))),
        header,
        // spx keeps the camera's FIBERMAP rows in the preproc file; desispec must not mind.
        fibermap: Some(spx::io::fibermap::Fibermap::minimal(&[1500, 1501, 1502])),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("preproc-b3-00000005.fits");
    spx::io::preproc::write(&path, &img, &Provenance::default()).unwrap();
    let Some(d) = desi_read("image", &path) else {
        return;
    };
    assert_eq!(d.info("camera"), "b3");
    let (shape, pix) = d.array("pix");
    assert_eq!(shape, vec![ny, nx], "numpy order [NAXIS2, NAXIS1]");
    assert_stored_equal("IMAGE", &pix, img.image.iter().map(|&v| f64::from(v)));
    assert_stored_equal(
        "IVAR",
        &d.array("ivar").1,
        img.ivar.iter().map(|&v| f64::from(v)),
    );
    let rn = img.readnoise.as_ref().unwrap();
    assert_stored_equal(
        "READNOISE",
        &d.array("readnoise").1,
        rn.iter().map(|&v| f64::from(v)),
    );
    let mask: Vec<f64> = img.mask.iter().map(|&m| f64::from(m)).collect();
    assert_eq!(d.array("mask").1, mask, "MASK");
}

#[test]
fn spx_spectra_read_back_in_desispec() {
    use spx::io::spectra::{Band, Spectra};
    let (ns, nd) = (3, 11);
    let bands: Vec<Band> = [("b", 3600.0, 25), ("r", 5760.0, 20)]
        .iter()
        .map(|&(name, w0, nw)| {
            let mut res = Array3::zeros((ns, nd, nw));
            for i in 0..ns {
                res.index_axis_mut(Axis(0), i)
                    .assign(&asymmetric_band(i, nw, nd));
            }
            Band {
                name: name.to_string(),
                wave: (0..nw).map(|j| w0 + 0.8 * j as f64).collect(),
                flux: wiggly(ns, nw, 10.0).mapv(|v| v as f32),
                ivar: wiggly(ns, nw, 0.5).mapv(|v| v as f32),
                mask: Some(Array2::from_shape_fn((ns, nw), |(i, j)| {
                    ((i + j) % 7 == 0) as i32
                })),
                resolution: res.mapv(|v| v as f32),
            }
        })
        .collect();
    let fibermap = Table::new(vec![
        Column::new("TARGETID", ColumnData::I64(vec![101, 102, 101])),
        Column::new("FIBER", ColumnData::I32(vec![10, 11, 10])),
        Column::new("EXPID", ColumnData::I32(vec![1, 1, 2])),
    ])
    .unwrap();
    let sp = Spectra {
        bands,
        fibermap,
        exp_fibermap: None,
        scores: None,
        header: vec![("SPGRP".into(), "healpix".into())],
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spectra-test.fits");
    sp.write(&path, &Provenance::default()).unwrap();
    let Some(d) = desi_read("spectra", &path) else {
        return;
    };
    assert_eq!(d.info("bands"), &serde_json::json!(["b", "r"]));
    assert_eq!(d.info("nspec"), ns);
    for b in &sp.bands {
        let n = &b.name;
        assert_eq!(
            d.array(&format!("{n}_wave")).1,
            b.wave,
            "{n} WAVELENGTH (f8)"
        );
        let f = |a: &Array2<f32>| a.iter().map(|&v| f64::from(v)).collect::<Vec<_>>();
        assert_eq!(d.array(&format!("{n}_flux")).1, f(&b.flux), "{n} FLUX");
        assert_eq!(d.array(&format!("{n}_ivar")).1, f(&b.ivar), "{n} IVAR");
        let m: Vec<f64> = b
            .mask
            .as_ref()
            .unwrap()
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        assert_eq!(d.array(&format!("{n}_mask")).1, m, "{n} MASK");
        let (shape, r) = d.array(&format!("{n}_resolution"));
        assert_eq!(shape, b.resolution.shape(), "{n} RESOLUTION shape");
        let want: Vec<f64> = b.resolution.iter().map(|&v| f64::from(v)).collect();
        assert_eq!(r, want, "{n} RESOLUTION");
    }
    let (_, tid) = d.array("col_TARGETID");
    assert_eq!(tid, vec![101.0, 102.0, 101.0]);
    assert_eq!(d.header("SPGRP"), "healpix");
}

/// `got` equals astropy's values of HDU `hdu` exactly, shape included.
fn assert_same_as_astropy(d: &Dump, what: &str, hdu: &str, shape: &[usize], got: &[f64]) {
    let (s, want) = d.array(hdu);
    assert_eq!(s, shape, "{what}[{hdu}] shape");
    if let Some(i) = (0..want.len()).find(|&i| got[i] != want[i]) {
        panic!(
            "{what}[{hdu}] element {i}: spx {} astropy {}",
            got[i], want[i]
        );
    }
}

#[test]
fn spx_reads_desispec_sky_as_astropy_does() {
    let rel = "sky/sky-ref.fits";
    let Some(path) = shared_file(rel) else { return };
    let sky = spx::io::sky::SkyModel::read(&path).unwrap();
    let Some(d) = desi_read("astropy", &path) else {
        return;
    };
    let (ns, nw) = sky.flux.dim();
    let v = |a: &Array2<f64>| a.iter().copied().collect::<Vec<_>>();
    assert_same_as_astropy(&d, rel, "SKY", &[ns, nw], &v(&sky.flux));
    assert_same_as_astropy(&d, rel, "IVAR", &[ns, nw], &v(&sky.ivar));
    let mask: Vec<f64> = sky.mask.iter().map(|&m| f64::from(m)).collect();
    assert_same_as_astropy(&d, rel, "MASK", &[ns, nw], &mask);
    assert_same_as_astropy(&d, rel, "WAVELENGTH", &[nw], &sky.wave.to_vec());
    let stat = sky.stat_ivar.as_ref().expect("sky-ref has STATIVAR");
    assert_same_as_astropy(&d, rel, "STATIVAR", &[ns, nw], &v(stat));
    let tp = sky
        .throughput_corrections
        .as_ref()
        .expect("sky-ref has THRPUTCORR");
    assert_same_as_astropy(&d, rel, "THRPUTCORR", &[ns], &tp.to_vec());
    let tid: Vec<f64> = sky
        .skytargetid
        .as_ref()
        .expect("SKYTARGETID")
        .iter()
        .map(|&t| t as f64)
        .collect();
    assert_same_as_astropy(&d, rel, "SKYTARGETID", &[tid.len()], &tid);
}

#[test]
fn spx_reads_desispec_spectra_as_astropy_does() {
    let rel = "redshift/spectra-30.fits";
    let Some(path) = shared_file(rel) else { return };
    let sp = spx::io::spectra::Spectra::read(&path).unwrap();
    let Some(d) = desi_read("astropy", &path) else {
        return;
    };
    let names: Vec<&str> = sp.bands.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["b", "r", "z"]);
    let ns = sp.nspec();
    assert_eq!(ns, 30);
    for b in &sp.bands {
        let u = b.name.to_uppercase();
        let nw = b.wave.len();
        let f = |a: &Array2<f32>| a.iter().map(|&v| f64::from(v)).collect::<Vec<_>>();
        assert_same_as_astropy(&d, rel, &format!("{u}_WAVELENGTH"), &[nw], &b.wave);
        assert_same_as_astropy(&d, rel, &format!("{u}_FLUX"), &[ns, nw], &f(&b.flux));
        assert_same_as_astropy(&d, rel, &format!("{u}_IVAR"), &[ns, nw], &f(&b.ivar));
        let m: Vec<f64> = b
            .mask
            .as_ref()
            .expect("MASK")
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        assert_same_as_astropy(&d, rel, &format!("{u}_MASK"), &[ns, nw], &m);
        let r: Vec<f64> = b.resolution.iter().map(|&v| f64::from(v)).collect();
        let nd = b.resolution.dim().1;
        assert_same_as_astropy(&d, rel, &format!("{u}_RESOLUTION"), &[ns, nd, nw], &r);
    }
    let tid: Vec<f64> = sp.targetids().iter().map(|&t| t as f64).collect();
    assert_eq!(d.array("FIBERMAP.col_TARGETID").1, tid, "FIBERMAP TARGETID");
}

#[test]
fn spx_reads_desispec_preproc_as_desispec_does() {
    let rel = "extract/preproc-noisy.fits";
    let Some(path) = shared_file(rel) else { return };
    let img = spx::io::preproc::read(&path).unwrap();
    let Some(d) = desi_read("preproc_litbox", &path) else {
        return;
    };
    let (ny, nx) = img.image.dim();
    assert_eq!(d.info("shape"), &serde_json::json!([ny, nx]));
    let bx: Vec<usize> = serde_json::from_value(d.info("box").clone()).unwrap();
    let sub = |a: &Array2<f32>| {
        a.slice(ndarray::s![bx[0]..bx[1], bx[2]..bx[3]])
            .iter()
            .map(|&v| f64::from(v))
            .collect::<Vec<_>>()
    };
    let shape = [bx[1] - bx[0], bx[3] - bx[2]];
    let (s, pix) = d.array("pix_box");
    assert_eq!(s, shape);
    assert_eq!(pix, sub(&img.image), "IMAGE in the lit box");
    assert_eq!(d.array("ivar_box").1, sub(&img.ivar), "IVAR in the lit box");
    // Whole-CCD sums: the same f32 values summed in f64 in another order (numpy pairwise,
    // here sequential) agree to ~n·ε ≈ 1.7e7 · 1.1e-16 ≈ 2e-9 relative at worst.
    let sum = |a: &Array2<f32>| a.iter().map(|&v| f64::from(v)).sum::<f64>();
    for (name, ours) in [("pix_sum", sum(&img.image)), ("ivar_sum", sum(&img.ivar))] {
        let theirs = d.info(name).as_f64().unwrap();
        assert!(
            (ours - theirs).abs() <= 2e-9 * theirs.abs(),
            "{name}: {ours} vs {theirs}"
        );
    }
    assert_eq!(
        d.info("mask_nonzero"),
        img.mask.iter().filter(|&&m| m != 0).count()
    );
}
