//! spx-group on synthetic cframes (2 exposures × b/r/z × 4 fibers of spectrograph 0): spectra
//! rows/bands/values, the coadd (ivar-weighted mean, Σ ivar, ivar-weighted resolution per column,
//! fatal FIBERSTATUS excluded per band, masks), desispec.io.read_spectra on both files,
//! spx-redshift on the coadd, thread independence and bad input.

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, Array3};
use spx::io::fibermap::Fibermap;
use spx::io::fits::{Column, ColumnData, Provenance};
use spx::io::frame::Frame;
use spx::io::header::{Header, HeaderValue};
use spx::io::spectra::Spectra;
use spx::io::table::Table;
use spx::maskbits::{fibermask, specmask};

const NFIB: usize = 4;
const ND: usize = 5;

fn grid(band: char) -> Vec<f64> {
    let (a, b) = match band {
        'b' => (3600.0, 5800.0),
        'r' => (5760.0, 7620.0),
        _ => (7520.0, 9824.0),
    };
    let n = ((b - a) / 4.0) as usize + 1;
    (0..n).map(|i| a + 4.0 * i as f64).collect()
}

/// Deterministic pseudo-random value in [0, 1).
fn u(seed: u64) -> f64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(12345);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// A cframe of camera `band`0 of exposure `expid`; fiber 2 of exposure 2 has BADAMPR set,
/// a few pixels are masked (one pixel masked in both exposures).
fn make(band: char, expid: i64, wave: Vec<f64>) -> Frame {
    make_n(band, expid, wave, NFIB, ND)
}

fn make_n(band: char, expid: i64, wave: Vec<f64>, nfib: usize, nd: usize) -> Frame {
    let nw = wave.len();
    let seed = expid as u64 * 1000 + band as u64;
    let flux = Array2::from_shape_fn((nfib, nw), |(i, j)| {
        1.0 + i as f64 + 0.5 * u(seed * 7919 + (i * nw + j) as u64)
    });
    let ivar = Array2::from_shape_fn((nfib, nw), |(i, j)| {
        2.0 + 3.0 * u(seed * 104729 + (i * nw + j) as u64)
    });
    let mut mask = Array2::<u32>::zeros((nfib, nw));
    mask[[0, 10 + expid as usize]] = specmask::COSMIC;
    mask[[1, 20]] = if expid == 1 {
        specmask::COSMIC
    } else {
        specmask::BADCOLUMN
    };
    // asymmetric, flux-conserving kernels that differ by exposure
    let resolution = Array3::from_shape_fn((nfib, nd, nw), |(i, d, j)| {
        let w = 1.0 / (1.0 + (d as f64 - (nd / 2) as f64 + 0.3).powi(2)) + 0.01 * expid as f64;
        w * (1.0 + 0.1 * u(seed + (i * 31 + j) as u64))
    });
    let fibers: Vec<i32> = (0..nfib as i32).collect();
    let mut fm = Fibermap::minimal(&fibers).table().clone();
    fm.set(Column::new(
        "TARGETID",
        ColumnData::I64((0..nfib as i64).map(|i| 1000 + i).collect()),
    ))
    .unwrap();
    let status: Vec<i32> = (0..nfib)
        .map(|i| {
            if expid == 2 && i == 2 {
                fibermask::BADAMPR
            } else {
                0
            }
        })
        .collect();
    fm.set(Column::new("FIBERSTATUS", ColumnData::I32(status)))
        .unwrap();
    let mut header = Header::default();
    header.set("CAMERA", HeaderValue::Str(format!("{band}0")));
    header.set("EXPID", HeaderValue::Int(expid));
    header.set("NIGHT", HeaderValue::Int(20260101 + expid));
    header.set("TILEID", HeaderValue::Int(80605));
    header.set("EXPTIME", HeaderValue::Float(900.0 + expid as f64));
    header.set("MJD-OBS", HeaderValue::Float(61000.0 + expid as f64));
    header.set(
        "BUNIT",
        HeaderValue::Str("10**-17 erg/(s cm2 Angstrom)".into()),
    );
    Frame {
        wave: Array1::from(wave),
        flux,
        ivar,
        mask,
        resolution,
        fibermap: Fibermap::from_table(Table::new(fm.columns().to_vec()).unwrap()).unwrap(),
        chi2pix: None,
        scores: None,
        header,
    }
}

fn write_inputs(dir: &Path) -> Vec<PathBuf> {
    let prov = Provenance::current("test", &[]);
    let mut paths = Vec::new();
    // deliberately not in (expid, band) order
    for (band, expid) in [('z', 2), ('b', 1), ('r', 2), ('z', 1), ('b', 2), ('r', 1)] {
        let p = dir.join(format!("cframe-{band}0-{expid:08}.fits"));
        make(band, expid, grid(band)).write(&p, &prov).unwrap();
        paths.push(p);
    }
    paths
}

fn group(inputs: &[PathBuf], out: &Path, coadd: &Path, threads: usize) {
    let mut cmd = common::bin("spx-group");
    cmd.arg("--cframes")
        .args(inputs)
        .arg("-o")
        .arg(out)
        .arg("--tile")
        .arg("80605")
        .arg("--coadd")
        .arg(coadd)
        .arg("--threads")
        .arg(threads.to_string())
        .arg("-q");
    cmd.assert().success();
}

fn f32r(x: f64) -> f64 {
    x as f32 as f64
}

#[test]
fn group_and_coadd_synthetic_cframes() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = write_inputs(dir.path());
    let (sp_path, co_path) = (
        dir.path().join("spectra.fits"),
        dir.path().join("coadd.fits"),
    );
    group(&inputs, &sp_path, &co_path, 2);

    let sp = Spectra::read(&sp_path).unwrap();
    assert_eq!(sp.nspec(), 2 * NFIB);
    let names: Vec<&str> = sp.bands.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["b", "r", "z"]);
    let expids = sp.fibermap.i64s("EXPID").unwrap();
    assert_eq!(expids, [1, 1, 1, 1, 2, 2, 2, 2]);
    assert_eq!(sp.fibermap.i64s("NIGHT").unwrap()[5], 20260103);
    assert_eq!(sp.fibermap.i64s("TILEID").unwrap(), vec![80605; 8]);
    assert_eq!(sp.fibermap.f64s("EXPTIME").unwrap()[0], 901.0);
    assert_eq!(sp.fibermap.f64s("MJD").unwrap()[7], 61002.0);
    let co = Spectra::read(&co_path).unwrap();
    assert_eq!(co.targetids(), vec![1000, 1001, 1002, 1003]);
    assert_eq!(co.exp_fibermap.as_ref().unwrap().nrows(), 8);

    for (bi, band) in ['b', 'r', 'z'].into_iter().enumerate() {
        let ins = [make(band, 1, grid(band)), make(band, 2, grid(band))];
        let b = &sp.bands[bi];
        assert_eq!(b.wave, grid(band));
        // spectra rows are the inputs, rounded to f32 (exact)
        for (e, f) in ins.iter().enumerate() {
            for i in 0..NFIB {
                for j in 0..b.wave.len() {
                    let r = e * NFIB + i;
                    assert_eq!(b.flux[[r, j]], f.flux[[i, j]] as f32);
                    assert_eq!(b.ivar[[r, j]], f.ivar[[i, j]] as f32);
                    assert_eq!(b.mask.as_ref().unwrap()[[r, j]], f.mask[[i, j]] as i32);
                    for d in 0..ND {
                        assert_eq!(b.resolution[[r, d, j]], f.resolution[[i, d, j]] as f32);
                    }
                }
            }
        }
        // coadd against the formula, from the f32 values the spectra file holds. The coadd is
        // computed in f64 and stored as f32: ≤ 0.5 ulp (6e-8 relative) plus f64 sums (1e-15),
        // so 1.2e-7 relative is the bound.
        let c = &co.bands[bi];
        let tol = |a: f64, x: f64| (a - x).abs() <= 1.2e-7 * x.abs().max(1e-30);
        for i in 0..NFIB {
            // fiber 2 of exposure 2 has BADAMPR: excluded from r only
            let exps: Vec<usize> = if band == 'r' && i == 2 {
                vec![0]
            } else {
                vec![0, 1]
            };
            for j in 0..c.wave.len() {
                let iv: Vec<f64> = exps.iter().map(|&e| f32r(ins[e].ivar[[i, j]])).collect();
                let fl: Vec<f64> = exps.iter().map(|&e| f32r(ins[e].flux[[i, j]])).collect();
                let m: Vec<u32> = exps.iter().map(|&e| ins[e].mask[[i, j]]).collect();
                let good: Vec<usize> = (0..exps.len()).filter(|&k| m[k] == 0).collect();
                let use_k: Vec<usize> = if good.is_empty() {
                    (0..exps.len()).collect()
                } else {
                    good
                };
                let siv: f64 = use_k.iter().map(|&k| iv[k]).sum();
                let sf: f64 = use_k.iter().map(|&k| iv[k] * fl[k]).sum::<f64>() / siv;
                assert!(tol(c.ivar[[i, j]] as f64, siv), "{band} {i} {j} ivar");
                assert!(tol(c.flux[[i, j]] as f64, sf), "{band} {i} {j} flux");
                let all_masked = m.iter().all(|&x| x != 0);
                let em = if all_masked {
                    m.iter().fold(0, |a, &x| a | x) as i32
                } else {
                    0
                };
                assert_eq!(c.mask.as_ref().unwrap()[[i, j]], em);
                let sall: f64 = iv.iter().sum();
                for d in 0..ND {
                    let r: f64 = exps
                        .iter()
                        .zip(&iv)
                        .map(|(&e, v)| v * f32r(ins[e].resolution[[i, d, j]]))
                        .sum::<f64>()
                        / sall;
                    assert!(
                        tol(c.resolution[[i, d, j]] as f64, r),
                        "{band} {i} {d} {j} R"
                    );
                }
            }
        }
    }
    // pixel 20 of fiber 1 is masked in both exposures: OR of the masks
    assert_eq!(
        co.bands[0].mask.as_ref().unwrap()[[1, 20]],
        (specmask::COSMIC | specmask::BADCOLUMN) as i32
    );

    // thread independence: identical arrays with 1 thread
    let (sp1, co1) = (
        dir.path().join("spectra1.fits"),
        dir.path().join("coadd1.fits"),
    );
    group(&inputs, &sp1, &co1, 1);
    for (a, b) in [(&sp_path, &sp1), (&co_path, &co1)] {
        let (x, y) = (Spectra::read(a).unwrap(), Spectra::read(b).unwrap());
        for (p, q) in x.bands.iter().zip(&y.bands) {
            assert_eq!(p.flux, q.flux);
            assert_eq!(p.ivar, q.ivar);
            assert_eq!(p.mask, q.mask);
            assert_eq!(p.resolution, q.resolution);
        }
    }

    // desispec reads both files
    if let Some(py) = spx::testsupport::python() {
        let script = "import sys\nfrom desispec.io import read_spectra\n\
for f in sys.argv[1:]:\n    s = read_spectra(f)\n    print(f.split('/')[-1], s.num_spectra(), ' '.join(s.bands), s.flux['b'].shape, s.resolution_data['r'].shape, len(s.fibermap))\n";
        let out = std::process::Command::new(py)
            .arg("-c")
            .arg(script)
            .arg(&sp_path)
            .arg(&co_path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let nb = grid('b').len();
        let nr = grid('r').len();
        assert!(
            text.contains(&format!("spectra.fits 8 b r z (8, {nb}) (8, {ND}, {nr}) 8")),
            "{text}"
        );
        assert!(
            text.contains(&format!("coadd.fits 4 b r z (4, {nb}) (4, {ND}, {nr}) 4")),
            "{text}"
        );
    }

    // spx-redshift accepts the coadd (one STAR template keeps it fast)
    if let Some(t) = spx::testsupport::shared_file("redrock-templates/rrtemplate-STAR-G-v0.1.fits")
    {
        let list = dir.path().join("templates.txt");
        std::fs::write(&list, format!("{}\n", t.display())).unwrap();
        let rr = dir.path().join("redrock.fits");
        common::bin("spx-redshift")
            .arg("-i")
            .arg(&co_path)
            .arg("-o")
            .arg(&rr)
            .arg("-t")
            .arg(&list)
            .arg("-q")
            .assert()
            .success();
        let z = spx::io::redrock::RedshiftCatalog::read_redshifts(&rr).unwrap();
        assert_eq!(z.len(), NFIB);
    }
}

fn assert_fails(args: &[&std::ffi::OsStr], out: &Path, needle: &str) {
    let o = common::bin("spx-group").args(args).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(needle), "{err}");
    assert!(!out.exists());
}

#[test]
fn bad_input_is_one_line_error_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spectra.fits");
    assert_fails(&["-o".as_ref(), out.as_os_str()], &out, "no cframes");

    let prov = Provenance::current("test", &[]);
    let mut paths = Vec::new();
    for (band, expid) in [('r', 1), ('r', 2)] {
        let mut w = grid(band);
        if expid == 2 {
            w.iter_mut().for_each(|x| *x += 0.4);
        }
        let p = dir.path().join(format!("cframe-{band}0-{expid:08}.fits"));
        make(band, expid, w).write(&p, &prov).unwrap();
        paths.push(p);
    }
    let mut args: Vec<&std::ffi::OsStr> = vec!["--cframes".as_ref()];
    args.extend(paths.iter().map(|p| p.as_os_str()));
    args.extend(["-o".as_ref(), out.as_os_str()]);
    assert_fails(&args, &out, "WAVELENGTH grid of band r differs");
}

#[test]
fn missing_camera_rows_are_nodata_and_coadd_uses_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let prov = Provenance::current("test", &[]);
    let mut paths = Vec::new();
    // exposure 2 has no z camera
    for (band, expid) in [('b', 1), ('z', 1), ('b', 2)] {
        let p = dir.path().join(format!("cframe-{band}0-{expid:08}.fits"));
        make(band, expid, grid(band)).write(&p, &prov).unwrap();
        paths.push(p);
    }
    let (sp_path, co_path) = (
        dir.path().join("spectra.fits"),
        dir.path().join("coadd.fits"),
    );
    group(&paths, &sp_path, &co_path, 2);
    let sp = Spectra::read(&sp_path).unwrap();
    let z = &sp.bands[1];
    assert_eq!(z.name, "z");
    for r in NFIB..2 * NFIB {
        assert!(z.ivar.row(r).iter().all(|&v| v == 0.0));
        assert!(z
            .mask
            .as_ref()
            .unwrap()
            .row(r)
            .iter()
            .all(|&m| m == specmask::NODATA as i32));
    }
    let co = Spectra::read(&co_path).unwrap();
    let z1 = make('z', 1, grid('z'));
    let cz = &co.bands[1];
    for i in 0..NFIB {
        for j in 0..cz.wave.len() {
            if z1.mask[[i, j]] == 0 {
                // one contributing exposure: the coadd is that exposure (f32 round trip exact)
                assert_eq!(cz.flux[[i, j]], z1.flux[[i, j]] as f32);
                assert_eq!(cz.ivar[[i, j]], z1.ivar[[i, j]] as f32);
                assert_eq!(cz.mask.as_ref().unwrap()[[i, j]], 0);
            }
        }
    }
}

/// Full-size timing (not an assertion): 3 exposures × b/r/z × 500 fibers on the production grids
/// (0.8 Å), ndiag 11. Run with `cargo test -p spx-bins --test group -- --ignored --nocapture`.
#[test]
#[ignore]
fn full_size_timing() {
    let dir = tempfile::tempdir().unwrap();
    let prov = Provenance::current("test", &[]);
    let mut paths = Vec::new();
    for expid in 1..=3 {
        for (band, a, n) in [
            ('b', 3600.0, 2751),
            ('r', 5760.0, 2326),
            ('z', 7520.0, 2881),
        ] {
            let w: Vec<f64> = (0..n).map(|i| a + 0.8 * i as f64).collect();
            let p = dir.path().join(format!("cframe-{band}0-{expid:08}.fits"));
            make_n(band, expid, w, 500, 11).write(&p, &prov).unwrap();
            paths.push(p);
        }
    }
    let (sp_path, co_path) = (
        dir.path().join("spectra.fits"),
        dir.path().join("coadd.fits"),
    );
    for threads in [1, 2] {
        let t0 = std::time::Instant::now();
        group(&paths, &sp_path, &co_path, threads);
        eprintln!(
            "spx-group 9 cframes x 500 fibers, {threads} thread(s): {:.2} s",
            t0.elapsed().as_secs_f64()
        );
    }
}
