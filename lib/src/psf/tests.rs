//! Conformance with specter (../shared/data/psf/spots-reference.fits, README psf/ section),
//! derivatives by finite differences, and the PSF file round trip.

use super::*;
use crate::io::fits::{FitsReader, Provenance};
use crate::testsupport::shared_file;

fn load(name: &str) -> Option<GaussHermitePsf> {
    let p = shared_file(&format!("psf/{name}"))?;
    Some(crate::io::psf::read(p).expect("read shared PSF"))
}

struct Ref {
    r: FitsReader,
}

impl Ref {
    fn col_f(&mut self, hdu: &str, c: &str) -> Vec<f64> {
        self.r.col::<f64>(hdu, c).unwrap()
    }
    fn col_i(&mut self, hdu: &str, c: &str) -> Vec<i64> {
        self.r.col::<i64>(hdu, c).unwrap()
    }
    fn col_s(&mut self, hdu: &str, c: &str) -> Vec<String> {
        self.r
            .col::<String>(hdu, c)
            .unwrap()
            .into_iter()
            .map(|s| s.trim().to_string())
            .collect()
    }
}

fn reference() -> Option<(Ref, Vec<(String, GaussHermitePsf)>)> {
    let p = shared_file("psf/spots-reference.fits")?;
    let psfs = ["psf-r0-00051060.fits", "psf-r0-00067784.fits"]
        .iter()
        .map(|n| (n.to_string(), load(n).unwrap()))
        .collect();
    Some((
        Ref {
            r: FitsReader::open(p).unwrap(),
        },
        psfs,
    ))
}

fn psf_for<'a>(psfs: &'a [(String, GaussHermitePsf)], name: &str) -> &'a GaussHermitePsf {
    &psfs
        .iter()
        .find(|(n, _)| name.ends_with(n.as_str()))
        .unwrap()
        .1
}

#[test]
fn traces_sigmas_and_inverse_match_specter() {
    let Some((mut rf, psfs)) = reference() else {
        return;
    };
    let (names, fib, w) = (
        rf.col_s("XY", "PSF"),
        rf.col_i("XY", "FIBER"),
        rf.col_f("XY", "WAVELENGTH"),
    );
    let (x, y) = (rf.col_f("XY", "X"), rf.col_f("XY", "Y"));
    let (sx, sy) = (rf.col_f("XY", "XSIGMA"), rf.col_f("XY", "YSIGMA"));
    assert_eq!(names.len(), 90);
    for i in 0..names.len() {
        let psf = psf_for(&psfs, &names[i]);
        let f = fib[i] as usize;
        // README tolerances: |X|,|Y| 1e-9 px; sigmas 1e-12 relative (Legendre evaluation
        // order differs from numba's only at the 1e-15 level).
        assert!((psf.x(f, w[i]) - x[i]).abs() < 1e-9, "x row {i}");
        assert!((psf.y(f, w[i]) - y[i]).abs() < 1e-9, "y row {i}");
        assert!(
            (psf.xsigma(f, w[i]) / sx[i] - 1.0).abs() < 1e-12,
            "xsigma row {i}"
        );
        assert!(
            (psf.ysigma(f, w[i]) / sy[i] - 1.0).abs() < 1e-12,
            "ysigma row {i}"
        );
    }

    // spx copies specter's fitted inverse, so WAVE_OF_Y.WAVELENGTH within 1e-7 A (README);
    // the exact inverse is checked against WAVELENGTH_EXACT to 1e-8 A.
    let (names, fib) = (rf.col_s("WAVE_OF_Y", "PSF"), rf.col_i("WAVE_OF_Y", "FIBER"));
    let (yy, wfit, wex) = (
        rf.col_f("WAVE_OF_Y", "Y"),
        rf.col_f("WAVE_OF_Y", "WAVELENGTH"),
        rf.col_f("WAVE_OF_Y", "WAVELENGTH_EXACT"),
    );
    let mut worst = 0.0f64;
    for i in 0..names.len() {
        let psf = psf_for(&psfs, &names[i]);
        let f = fib[i] as usize;
        let d = (psf.wavelength(f, yy[i]) - wfit[i]).abs();
        worst = worst.max(d);
        assert!(d < 1e-7, "fitted inverse row {i}: {d}");
        let de = (psf.wavelength_exact(f, yy[i]) - wex[i]).abs();
        assert!(de < 1e-8, "exact inverse row {i}: {de}");
    }
    eprintln!("max |wavelength - specter| = {worst:e} A");

    let (names, fib) = (
        rf.col_s("FIBER_WRANGE", "PSF"),
        rf.col_i("FIBER_WRANGE", "FIBER"),
    );
    let (lo, hi) = (
        rf.col_f("FIBER_WRANGE", "WMIN_SPEC"),
        rf.col_f("FIBER_WRANGE", "WMAX_SPEC"),
    );
    for i in 0..names.len() {
        let (a, b) = psf_for(&psfs, &names[i]).fiber_wrange(fib[i] as usize);
        assert!(
            (a - lo[i]).abs() < 1e-7 && (b - hi[i]).abs() < 1e-7,
            "wrange row {i}"
        );
    }
}

#[test]
fn spots_match_specter_including_ccd_clipped_ones() {
    let Some((mut rf, psfs)) = reference() else {
        return;
    };
    let h = "SPOTS";
    let (names, fib, w) = (
        rf.col_s(h, "PSF"),
        rf.col_i(h, "FIBER"),
        rf.col_f(h, "WAVELENGTH"),
    );
    let (xmin, xmax, ymin, ymax) = (
        rf.col_i(h, "XMIN"),
        rf.col_i(h, "XMAX"),
        rf.col_i(h, "YMIN"),
        rf.col_i(h, "YMAX"),
    );
    let (nxs, nys) = (rf.col_i(h, "NX"), rf.col_i(h, "NY"));
    let pix = rf.col_f(h, "PIX");
    let pixc = rf.col_f(h, "PIX_CACHED");
    let mut clipped = 0;
    for i in 0..names.len() {
        let psf = psf_for(&psfs, &names[i]);
        let mut ev = psf.evaluator();
        let mut out = vec![0.0; ev.max_len()];
        let st = psf
            .xypix(&mut ev, fib[i] as usize, w[i], &mut out)
            .expect("spot on the CCD");
        let (nx, ny) = (nxs[i] as usize, nys[i] as usize);
        assert_eq!(
            (
                st.x0,
                st.x0 + st.nx as i64,
                st.y0,
                st.y0 + st.ny as i64,
                st.nx,
                st.ny
            ),
            (xmin[i], xmax[i], ymin[i], ymax[i], nx, ny),
            "stamp box row {i}"
        );
        if ny < 11 {
            clipped += 1;
        }
        let refp = &pix[i * 187..(i + 1) * 187];
        let max = refp.iter().cloned().fold(0.0, f64::max);
        for r in 0..ny {
            for c in 0..nx {
                let (a, b) = (out[r * nx + c], refp[r * 17 + c]);
                // README: |PIX_spx - PIX| <= 1e-12 max(PIX) (erf differs by <= 7e-16).
                assert!(
                    (a - b).abs() <= 1e-12 * max,
                    "row {i} pix ({r},{c}): {a} vs {b}"
                );
                assert_eq!(refp[r * 17 + c], pixc[i * 187 + r * 17 + c]);
            }
        }
    }
    // The 6 spots at 7735 A for fibers 0, 1, 499 run off the top of the CCD (facts.json).
    assert_eq!(clipped, 6);
}

#[test]
fn batch_parameters_equal_single_evaluation() {
    let Some(psf) = load("psf-r0-00051060.fits") else {
        return;
    };
    let waves = [6000.0, 6500.3, 7100.7];
    let b = psf.spot_params(20, 3, &waves);
    for f in 0..3 {
        for (iw, &w) in waves.iter().enumerate() {
            let p = b.get(f, iw);
            assert_eq!(p.x, psf.x(20 + f, w));
            assert_eq!(p.sigy, psf.ysigma(20 + f, w));
            assert_eq!(p.gh[0], psf.param("GH-0-0", 20 + f, w).unwrap());
            assert_eq!(
                p.gh[psf.ghdegy + 1],
                psf.param("GH-1-0", 20 + f, w).unwrap()
            );
            assert_eq!(p.gh[1], psf.param("GH-0-1", 20 + f, w).unwrap());
        }
    }
}

#[test]
fn derivatives_match_finite_differences() {
    let Some(psf) = load("psf-r0-00051060.fits") else {
        return;
    };
    let b = psf.spot_params(12, 1, &[6400.0]);
    let p0 = b.get(0, 0);
    let mut ev = psf.evaluator();
    let n = ev.max_len();
    let (mut s0, mut sp, mut sm) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let mut d = SpotDerivs::default();
    let st = ev.eval_with_derivs(&p0, &mut s0, &mut d);
    // Steps small enough not to move the stamp origin; central differences are accurate to
    // O(h²) ~ 1e-8 of the peak, so 1e-6 of the peak catches any wrong term.
    let h = 1e-4;
    type Set = fn(&mut SpotParams, f64);
    let cases: [(&str, Set, &Vec<f64>); 4] = [
        ("x", |p, v| p.x += v, &d.dx),
        ("y", |p, v| p.y += v, &d.dy),
        ("sigx", |p, v| p.sigx += v, &d.dsigx),
        ("sigy", |p, v| p.sigy += v, &d.dsigy),
    ];
    let peak = s0.iter().cloned().fold(0.0, f64::max);
    for (name, set, an) in cases {
        let (mut pp, mut pm) = (p0, p0);
        set(&mut pp, h);
        set(&mut pm, -h);
        assert_eq!(ev.eval(&pp, &mut sp), st);
        assert_eq!(ev.eval(&pm, &mut sm), st);
        let mut worst = 0.0f64;
        for k in 0..st.nx * st.ny {
            let fd = (sp[k] - sm[k]) / (2.0 * h);
            worst = worst.max((fd - an[k]).abs());
        }
        assert!(worst < 1e-6 * peak, "{name}: max |fd - analytic| = {worst}");
        assert!(
            an.iter().any(|v| v.abs() > 1e-3 * peak),
            "{name}: derivative not trivially 0"
        );
    }
}

#[test]
fn psf_file_round_trip() {
    let Some(psf) = load("psf-r0-00067784.fits") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("psf.fits");
    crate::io::psf::write(&out, &psf, &Provenance::default()).unwrap();
    let back = crate::io::psf::read(&out).unwrap();
    assert_eq!(back.xtrace, psf.xtrace);
    assert_eq!(back.ytrace, psf.ytrace);
    assert_eq!(back.param_names, psf.param_names);
    assert_eq!(back.param_coeff, psf.param_coeff);
    assert_eq!(
        (back.param_wmin, back.param_wmax),
        (psf.param_wmin, psf.param_wmax)
    );
    assert_eq!(
        (back.hsizex, back.hsizey, back.ghdegx, back.ghdegy),
        (8, 5, 6, 6)
    );
    assert_eq!(back.psferr, psf.psferr);
    assert_eq!(back.legdegw, psf.legdegw);
    assert_eq!(back.extra_keys, psf.extra_keys);
    assert!(back.extra_keys.get("CAMERA").is_some());
}

#[test]
fn in_memory_psf_builds_writes_and_reads_back() {
    // A nominal PSF as the simulator makes it: 3 fibers, straight traces, Gaussian spots.
    let nf = 3;
    let xt = TraceSet::new(
        ndarray::Array2::from_shape_fn(
            (nf, 2),
            |(f, k)| if k == 0 { 50.0 + 8.0 * f as f64 } else { 0.5 },
        ),
        5000.0,
        6000.0,
    );
    let yt = TraceSet::new(
        ndarray::Array2::from_shape_fn((nf, 2), |(_, k)| if k == 0 { 500.0 } else { 480.0 }),
        5000.0,
        6000.0,
    );
    let mut names = vec!["GHSIGX".to_string(), "GHSIGY".to_string()];
    for i in 0..=2 {
        for j in 0..=2 {
            names.push(format!("GH-{i}-{j}"));
        }
    }
    let mut coeff = ndarray::Array3::<f64>::zeros((names.len(), nf, 2));
    for f in 0..nf {
        coeff[[0, f, 0]] = 1.0;
        coeff[[1, f, 0]] = 1.1;
        coeff[[2, f, 0]] = 1.0;
    }
    let psf = GaussHermitePsf::new(
        xt,
        yt,
        names,
        coeff,
        (5000.0, 6000.0),
        (4, 3),
        (2, 2),
        (100, 1000),
        0,
        0.01,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nominal.fits");
    crate::io::psf::write(&out, &psf, &Provenance::default()).unwrap();
    let back = crate::io::psf::read(&out).unwrap();
    let mut ev = back.evaluator();
    let mut s = vec![0.0; ev.max_len()];
    let st = back.xypix(&mut ev, 1, 5500.0, &mut s).unwrap();
    assert_eq!((st.nx, st.ny), (9, 7));
    let sum: f64 = s[..st.nx * st.ny].iter().sum();
    assert!((sum - 1.0).abs() < 1e-14);
    // The centroid of a pure Gaussian spot sits at the trace, x = 50 + 8·1 + 0.5·L1(u = 0) =
    // 58 px at 5500 A (the stamp is wide enough that truncation moves it < 0.01 px).
    let cx: f64 = (0..st.ny)
        .flat_map(|r| (0..st.nx).map(move |c| (r, c)))
        .map(|(r, c)| s[r * st.nx + c] * (st.x0 + c as i64) as f64)
        .sum();
    assert!((cx - 58.0).abs() < 1e-2, "{cx}");
}

#[test]
fn unknown_psftype_is_a_named_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("spot.fits");
    let mut w = crate::io::fits::FitsWriter::create_with_primary_image(
        &p,
        &Provenance::default(),
        "XTRACE",
        &[1, 2],
        &[0.0f64, 1.0],
    )
    .unwrap();
    w.key("PSFTYPE", "SPOTGRID").unwrap();
    w.commit().unwrap();
    let e = crate::io::psf::read(&p).unwrap_err().to_string();
    assert!(
        e.contains("spot.fits") && e.contains("PSFTYPE") && e.contains("SPOTGRID"),
        "{e}"
    );
}

#[test]
fn written_psf_reads_in_astropy_with_desi_shapes() {
    let Some(psf) = load("psf-r0-00051060.fits") else {
        return;
    };
    let Some(py) = crate::testsupport::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("psf.fits");
    crate::io::psf::write(&out, &psf, &Provenance::default()).unwrap();
    let orig = shared_file("psf/psf-r0-00051060.fits").unwrap();
    // specter reads COEFF as [nfiber, ncoef] per row (needs TDIM) and compares PSFVER as a
    // string; desispec's read_xytraceset reads XTRACE/YTRACE by name.
    let script = format!(
        "from astropy.io import fits; import numpy as np\n\
         a = fits.open('{}'); b = fits.open('{}')\n\
         assert a['PSF'].data['COEFF'].shape == (59, 500, 4), a['PSF'].data['COEFF'].shape\n\
         assert np.array_equal(a['PSF'].data['COEFF'], b['PSF'].data['COEFF'])\n\
         assert np.array_equal(a['XTRACE'].data, b['XTRACE'].data)\n\
         assert a['PSF'].header['PSFVER'] == '3' and a[0].header['PSFTYPE'] == 'GAUSS-HERMITE'\n\
         assert [p.strip() for p in a['PSF'].data['PARAM']] == [p.strip() for p in b['PSF'].data['PARAM']]\n",
        out.display(),
        orig.display()
    );
    let st = std::process::Command::new(py)
        .arg("-c")
        .arg(script)
        .status()
        .unwrap();
    assert!(st.success());
}
