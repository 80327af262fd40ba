//! spx-psf end to end on synthetic `mini` r-camera exposures with a known PSF: traces from a
//! flat, wavelength solution and widths from an arc, dead fibers, missing lines, trace shifts,
//! the nightly average, desispec's reader on our files, bad input.
//!
//! Exposures come from spx-sim (`mini` r0, with `--truth-psf`) through spx-preproc; the fit
//! starts from the instrument's nominal PSF. The full-size benchmark inputs (scripts/bench-psf)
//! are made from the PSF's spots directly, to keep the benchmark to the fit itself.

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use ndarray::{Array2, Array3};
use spx::instrument::Instrument;
use spx::io::fits::Provenance;
use spx::io::header::{Header, HeaderValue};
use spx::io::preproc::PreprocImage;
use spx::psf::{linspace, GaussHermitePsf, TraceSet};

/// Read noise of the synthetic images, electrons.
const RDNOISE: f64 = 3.0;

/// Deterministic standard normal deviates (splitmix64 + Box-Muller): no RNG crate needed.
struct Gauss(u64);
impl Gauss {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn next(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// The mini r0 PSF: nominal, or moved by (dx, dy) + tilt/stretch with widths scaled.
fn mini_psf(dx: f64, dy: f64, tilt: f64, stretch: f64, sx: f64, sy: f64) -> GaussHermitePsf {
    preset_psf("mini", dx, dy, tilt, stretch, sx, sy)
}

/// The r0 PSF of instrument `preset`, moved and scaled as [`mini_psf`].
fn preset_psf(
    preset: &str,
    dx: f64,
    dy: f64,
    tilt: f64,
    stretch: f64,
    sx: f64,
    sy: f64,
) -> GaussHermitePsf {
    let inst = Instrument::preset(preset).unwrap();
    let (cam, _) = inst.camera("r0").unwrap();
    let p = &cam.psf;
    let (nx, ny) = (cam.ccd.nx, cam.ccd.ny);
    let (w0, w1) = (p.ccd_wave_min, p.ccd_wave_max);
    let nf = inst.nspec;
    let w = linspace(w0, w1, 64);
    let xs = Array2::from_shape_fn((nf, 64), |(f, k)| {
        let u = 2.0 * (w[k] - w0) / (w1 - w0) - 1.0;
        inst.fiber_x(f, nx) + p.x_bow * u * u * (f as f64 / (nf - 1) as f64 - 0.5) + dx + tilt * u
    });
    let ys = Array2::from_shape_fn((nf, 64), |(_, k)| {
        let u = 2.0 * (w[k] - w0) / (w1 - w0) - 1.0;
        (ny as f64 - 1.0) * (u + 1.0) / 2.0 + p.y_bow * (1.0 - u * u) + dy + stretch * u
    });
    let xt = TraceSet::fit(&w, &xs, p.trace_deg, w0, w1).unwrap();
    let yt = TraceSet::fit(&w, &ys, p.trace_deg, w0, w1).unwrap();
    let mut names = vec!["GHSIGX".to_string(), "GHSIGY".to_string()];
    for j in 0..=p.ghdeg {
        for i in 0..=p.ghdeg {
            names.push(format!("GH-{i}-{j}"));
        }
    }
    let ncoef = p.legdeg + 1;
    let mut c = Array3::<f64>::zeros((names.len(), nf, ncoef));
    for f in 0..nf {
        c[[0, f, 0]] = 0.5 * (p.sigma_x[0] + p.sigma_x[1]) * sx;
        c[[0, f, 1]] = 0.5 * (p.sigma_x[1] - p.sigma_x[0]) * sx;
        c[[1, f, 0]] = 0.5 * (p.sigma_y[0] + p.sigma_y[1]) * sy;
        c[[1, f, 1]] = 0.5 * (p.sigma_y[1] - p.sigma_y[0]) * sy;
        for (r, n) in names.iter().enumerate() {
            if n == "GH-0-0" {
                c[[r, f, 0]] = 1.0;
            }
            for g in &p.gh {
                if *n == format!("GH-{}-{}", g[0], g[1]) {
                    c[[r, f, 0]] = g[2];
                }
            }
        }
    }
    GaussHermitePsf::new(
        xt,
        yt,
        names,
        c,
        (w0, w1),
        (p.hsizex, p.hsizey),
        (p.ghdeg, p.ghdeg),
        (nx, ny),
        0,
        0.01,
    )
    .unwrap()
}

/// Adds `flux` electrons of the spot of `fiber` at `wave` into `img`.
fn add_spot(
    psf: &GaussHermitePsf,
    ev: &mut spx::psf::SpotEvaluator,
    img: &mut Array2<f64>,
    fiber: usize,
    wave: f64,
    flux: f64,
) {
    let b = psf.spot_params(fiber, 1, &[wave]);
    let mut buf = vec![0.0; ev.max_len()];
    let st = ev.eval(&b.get(0, 0), &mut buf);
    let (ny, nx) = img.dim();
    for r in 0..st.ny {
        for c in 0..st.nx {
            let (x, y) = (st.x0 + c as i64, st.y0 + r as i64);
            if x >= 0 && y >= 0 && (x as usize) < nx && (y as usize) < ny {
                img[[y as usize, x as usize]] += flux * buf[r * st.nx + c];
            }
        }
    }
}

/// Noise (Poisson approximated as Gaussian, plus read noise) and the preproc layout.
fn noisy(model: &Array2<f64>, seed: u64, header: Header) -> PreprocImage {
    let mut g = Gauss(seed);
    let var = model.mapv(|m| m.max(0.0) + RDNOISE * RDNOISE);
    let image = Array2::from_shape_fn(model.dim(), |(y, x)| {
        (model[[y, x]] + var[[y, x]].sqrt() * g.next()) as f32
    });
    PreprocImage {
        image,
        ivar: var.mapv(|v| (1.0 / v) as f32),
        mask: Array2::zeros(model.dim()),
        readnoise: Some(Array2::from_elem(model.dim(), RDNOISE as f32)),
        header,
        fibermap: None,
    }
}

fn header(obstype: &str, expid: i64) -> Header {
    let mut h = Header::default();
    h.set("CAMERA", HeaderValue::Str("r0".into()));
    h.set("OBSTYPE", HeaderValue::Str(obstype.into()));
    h.set("EXPID", HeaderValue::Int(expid));
    h
}

/// Arc lines of the lamps as the fitter sees them (wavelength, expected rate); the `mini` and
/// `desi` presets have the same lamps.
fn arc_lines(psf: &GaussHermitePsf) -> Vec<(f64, f64)> {
    let inst = Instrument::preset("mini").unwrap();
    let (w0, w1) = psf.wrange_any();
    inst.arc_lines(w0 - 10.0, w1 + 10.0)
        .iter()
        .map(|l| (l.wave, l.rate))
        .collect()
}

/// Synthetic arc: every line of the list with `peak` electrons for the strongest, except the
/// fibers in `dead` and the lines for which `drop` is true.
fn arc_image(
    psf: &GaussHermitePsf,
    peak: f64,
    dead: &[usize],
    drop: impl Fn(f64) -> bool,
    seed: u64,
) -> PreprocImage {
    let lines = arc_lines(psf);
    let rmax = lines.iter().map(|l| l.1).fold(0.0, f64::max);
    let mut m = Array2::<f64>::zeros((psf.npix_y, psf.npix_x));
    let mut ev = psf.evaluator();
    for f in (0..psf.nfiber()).filter(|f| !dead.contains(f)) {
        for &(w, r) in lines.iter().filter(|l| !drop(l.0)) {
            add_spot(psf, &mut ev, &mut m, f, w, peak * r / rmax);
        }
    }
    noisy(&m, seed, header("ARC", 2))
}

/// Synthetic continuum: `per_row` electrons per CCD row per fiber, spots every ~0.25 row.
fn flat_image(psf: &GaussHermitePsf, per_row: f64, dead: &[usize], seed: u64) -> PreprocImage {
    let mut m = Array2::<f64>::zeros((psf.npix_y, psf.npix_x));
    let mut ev = psf.evaluator();
    let (w0, w1) = psf.wrange_any();
    let n = 4 * psf.npix_y + 200;
    let dw = (w1 - w0 + 20.0) / n as f64;
    let disp = (w1 - w0) / psf.npix_y as f64;
    for f in (0..psf.nfiber()).filter(|f| !dead.contains(f)) {
        for k in 0..n {
            add_spot(
                psf,
                &mut ev,
                &mut m,
                f,
                w0 - 10.0 + (k as f64 + 0.5) * dw,
                per_row * dw / disp,
            );
        }
    }
    noisy(&m, seed, header("FLAT", 1))
}

/// Runs `spx-sim KIND` for mini r0 (night 20260101, `expid`) and spx-preproc on the result;
/// returns the preproc image and the exposure's truth PSF. spx-sim adds no cosmic rays unless
/// asked, and spx-preproc's cosmic-ray finder currently flags 10–20% of a mini arc's pixels
/// (the sharp line cores), so it is off here.
fn sim(dir: &Path, kind: &str, expid: i64, extra: &[&str]) -> (PathBuf, PathBuf) {
    sim_cam(dir, "r0", kind, expid, extra)
}

/// `spx-sim KIND` for one camera, preprocessed: (preproc, true PSF of the exposure).
fn sim_cam(dir: &Path, cam: &str, kind: &str, expid: i64, extra: &[&str]) -> (PathBuf, PathBuf) {
    let raw = dir.join(format!("raw-{cam}-{expid}.fits"));
    let truth = dir.join(format!("truth-{cam}-{expid}.fits"));
    let tpsf = dir.join(format!("psf-truth-{cam}-{expid:08}.fits"));
    let e = expid.to_string();
    let o = common::bin("spx-sim")
        .args([
            kind,
            "--cameras",
            cam,
            "--night",
            "20260101",
            "--expid",
            &e,
            "--seed",
            "7",
            "--no-truth-images",
        ])
        .args(extra)
        .arg("-o")
        .arg(&raw)
        .arg("--truth")
        .arg(&truth)
        .arg("--truth-psf")
        .arg(&tpsf)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "spx-sim: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let pre = dir.join(format!("preproc-{cam}-{expid:08}.fits"));
    let o = common::bin("spx-preproc")
        .arg("-i")
        .arg(&raw)
        .args(["--camera", cam, "--no-cosmics", "-o"])
        .arg(&pre)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "spx-preproc: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (pre, tpsf)
}

fn write_img(dir: &Path, name: &str, img: &PreprocImage) -> PathBuf {
    let p = dir.join(name);
    spx::io::preproc::write(&p, img, &Provenance::default()).unwrap();
    p
}

fn write_psf(dir: &Path, name: &str, psf: &GaussHermitePsf) -> PathBuf {
    let p = dir.join(name);
    spx::io::psf::write(&p, psf, &Provenance::default()).unwrap();
    p
}

/// rms over fibers and on-CCD wavelengths of `f(fit) - f(truth)`.
fn rms(
    fit: &GaussHermitePsf,
    truth: &GaussHermitePsf,
    fibers: &[usize],
    f: impl Fn(&GaussHermitePsf, usize, f64) -> f64,
) -> f64 {
    let mut s = 0.0;
    let mut n = 0;
    for &fib in fibers {
        let (w0, w1) = truth.fiber_wrange(fib);
        for w in linspace(w0 + 5.0, w1 - 5.0, 50) {
            s += (f(fit, fib, w) - f(truth, fib, w)).powi(2);
            n += 1;
        }
    }
    (s / n as f64).sqrt()
}

fn all_fibers(psf: &GaussHermitePsf) -> Vec<usize> {
    (0..psf.nfiber()).collect()
}

/// rms errors (x, y) in pixels of the traces of every fiber of `truth`.
fn trace_rms(fit: &GaussHermitePsf, truth: &GaussHermitePsf) -> (f64, f64) {
    let all = all_fibers(truth);
    (
        rms(fit, truth, &all, |p, f, w| p.x(f, w)),
        rms(fit, truth, &all, |p, f, w| p.y(f, w)),
    )
}

fn max_rel_sigma(fit: &GaussHermitePsf, truth: &GaussHermitePsf, fibers: &[usize]) -> f64 {
    let mut m: f64 = 0.0;
    for &fib in fibers {
        let (w0, w1) = truth.fiber_wrange(fib);
        for w in linspace(w0 + 5.0, w1 - 5.0, 20) {
            m = m.max((fit.xsigma(fib, w) / truth.xsigma(fib, w) - 1.0).abs());
            m = m.max((fit.ysigma(fib, w) / truth.ysigma(fib, w) - 1.0).abs());
        }
    }
    m
}

fn run_psf(args: &[&str]) -> std::process::Output {
    common::bin("spx-psf")
        .args(args)
        .env("SPX_THREADS", "2")
        .output()
        .unwrap()
}

/// Runs spx-psf with `args` and `-o out`, which must succeed, and reads the PSF it wrote.
fn fit_psf(args: &[&str], out: &Path) -> GaussHermitePsf {
    let o = run_psf(&[args, &["-o", out.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    spx::io::psf::read(out).unwrap()
}

/// `spx-psf --arc ARC --flat FLAT -o OUT` (see [`fit_psf`]).
fn fit_arc_flat(arc: &Path, flat: &Path, out: &Path) -> GaussHermitePsf {
    fit_psf(
        &[
            "--arc",
            arc.to_str().unwrap(),
            "--flat",
            flat.to_str().unwrap(),
        ],
        out,
    )
}

fn status_row(psf: &GaussHermitePsf) -> Vec<f64> {
    let r = psf
        .param_names
        .iter()
        .position(|n| n == "STATUS")
        .expect("STATUS row");
    (0..psf.nfiber())
        .map(|f| psf.param_coeff[[r, f, 0]])
        .collect()
}

#[test]
fn flat_and_arc_recover_the_truth_psf() {
    let dir = tempfile::tempdir().unwrap();
    let (flat, _) = sim(dir.path(), "flat", 1, &["--preset", "mini"]);
    let (arc, tpsf) = sim(dir.path(), "arc", 2, &["--preset", "mini"]);
    let truth = spx::io::psf::read(&tpsf).unwrap();
    let out = dir.path().join("psf-r0-00000002.fits");
    let fit = fit_arc_flat(&arc, &flat, &out);
    let nominal = spx::sim::psfmodel::nominal_psf(
        &Instrument::preset("mini").unwrap(),
        Instrument::preset("mini").unwrap().camera("r0").unwrap().0,
        0,
    )
    .unwrap();
    let (ex, ey) = trace_rms(&fit, &truth);
    let es = max_rel_sigma(&fit, &truth, &all_fibers(&truth));
    let (x0, y0) = trace_rms(&nominal, &truth);
    let s0 = max_rel_sigma(&nominal, &truth, &all_fibers(&truth));
    eprintln!("x rms {ex:.4} px, y rms {ey:.4} px, max |σ/σtrue-1| {es:.4} (nominal start: {x0:.3}, {y0:.3}, {s0:.3})");
    // Issue 5: x and y rms < 0.02 px, widths within 1%. Noise floor: a 16-row band of the
    // flat measures x to ~σ/√N ≲ 0.01 px, each fiber's y(λ) averages tens of lines measured
    // to ≲ 0.05 px with a degree ≤ 3 correction; the widths average hundreds of spots.
    assert!(ex < 0.02, "x rms {ex}");
    assert!(ey < 0.02, "y rms {ey}");
    assert!(es < 0.01, "sigma error {es}");
    // spx-sim's default targets put one dead fiber on the petal (fiber 10 of tile 1000):
    // it has no light, so STATUS 3 (traces from its neighbours); all others are fitted.
    let st = status_row(&fit);
    assert!(st.iter().filter(|&&s| s == 3.0).count() <= 1, "{st:?}");
    assert!(st.iter().all(|&s| s == 0.0 || s == 3.0), "{st:?}");
    for b in 0..2 {
        let r = fit.extra_keys.get_f64(&format!("B{b:02}RCHI2")).unwrap();
        // Right model and noise (weights: model + read noise²): χ²/ndf ≈ 1, measured
        // 0.995–0.998 (0.92–0.97 with preproc's data-based ivar). With ndf > 10⁴ pixels its
        // noise is √(2/ndf) < 0.014, so ±0.05 is > 3.5σ.
        let ndata = fit.extra_keys.get_i64(&format!("B{b:02}NDATA")).unwrap();
        assert!(ndata > 10_000, "bundle {b} ndata {ndata}");
        assert!((r - 1.0).abs() < 0.05, "bundle {b} rchi2 {r}");
    }
    // Same result with one thread (fixed chunks, ordered combination).
    let out1 = dir.path().join("psf-1thread.fits");
    let o = common::bin("spx-psf")
        .args([
            "--arc",
            arc.to_str().unwrap(),
            "--flat",
            flat.to_str().unwrap(),
            "-o",
            out1.to_str().unwrap(),
        ])
        .env("SPX_THREADS", "1")
        .output()
        .unwrap();
    assert!(o.status.success());
    let fit1 = spx::io::psf::read(&out1).unwrap();
    assert_eq!(fit1.param_coeff, fit.param_coeff);
    assert_eq!(fit1.xtrace, fit.xtrace);
    assert_eq!(fit1.ytrace, fit.ytrace);
}

/// Issue 5 on every camera of the mini preset: `spx-psf --arc A --flat F` gives x(λ) and y(λ)
/// within 0.02 px rms of the arc exposure's true PSF and the widths within 1% on b0 and z0 too
/// (r0 in `flat_and_arc_recover_the_truth_psf`). The flat and the arc see different flexures
/// (spx-sim draws one per exposure: 0.04–0.4 px between these two), so the flat gives the
/// trace shapes and the arc the offset; compared with the flat's own truth the fit is off by
/// that flexure, as it should be (measured here, not asserted: the PSF describes the arc).
/// Measured (seed 7): x 0.0014 / 0.0019 px, y 0.0031 / 0.0020 px, widths 0.37% / 0.21%
/// (b0 / z0). Noise floors as in the r0 test: tens of lines per fiber at ≲ 0.05 px each, a
/// 16-row flat band at ≲ 0.01 px; the widths of a bundle come from ~200 spots at S/N 10–300,
/// ±0.2% (1σ) on the constant and ±0.3% at the ends of the range (the wavelength slope),
/// so 1% is ≥ 3σ everywhere. Over seeds 1–3 the largest error on any camera is 0.64%; before
/// the model-variance weights (see psffit/shape.rs) GHSIGY was 0.2% narrow on every camera.
#[test]
fn arc_and_flat_traces_on_b0_and_z0() {
    let dir = tempfile::tempdir().unwrap();
    for cam in ["b0", "z0"] {
        let (flat, _) = sim_cam(dir.path(), cam, "flat", 1, &["--preset", "mini"]);
        let (arc, tpsf) = sim_cam(dir.path(), cam, "arc", 2, &["--preset", "mini"]);
        let truth = spx::io::psf::read(&tpsf).unwrap();
        let out = dir.path().join(format!("psf-{cam}.fits"));
        let fit = fit_arc_flat(&arc, &flat, &out);
        let (ex, ey) = trace_rms(&fit, &truth);
        let es = max_rel_sigma(&fit, &truth, &all_fibers(&truth));
        eprintln!("{cam}: x rms {ex:.4} px, y rms {ey:.4} px, max |σ/σtrue-1| {es:.4}");
        assert!(ex < 0.02, "{cam}: x rms {ex}");
        assert!(ey < 0.02, "{cam}: y rms {ey}");
        assert!(es < 0.01, "{cam}: sigma error {es}");
    }
}

/// The input PSF of the camera with the GH terms that spx-psf fits (GH-1-1, GH-4-0, GH-0-4)
/// set to zero: the fit must find them from the arc alone.
fn without_fitted_gh(psf: &GaussHermitePsf) -> GaussHermitePsf {
    let mut p = psf.clone();
    for (r, n) in p.param_names.iter().enumerate() {
        if ["GH-1-1", "GH-4-0", "GH-0-4"].contains(&n.as_str()) {
            p.param_coeff.index_axis_mut(ndarray::Axis(0), r).fill(0.0);
        }
    }
    p
}

fn param_row(psf: &GaussHermitePsf, name: &str) -> usize {
    psf.param_names.iter().position(|n| n == name).unwrap()
}

/// GH-1-1, GH-4-0 and GH-0-4 fitted from a start where they are zero (the truth has 0.01,
/// 0.01, 0.015, constant in wavelength) on the mini b0 arc: every Legendre coefficient of
/// every bundle's correction is within 4σ of the truth, σ from the fit's own covariance
/// (weights model + read noise, the same noise the simulation draws; measured σ of the
/// constant terms: 0.0010, 0.00037, 0.00034; over seeds 1–3 the largest deviation was 2.5σ).
/// The widths stay within 1%. A bundle whose fit fails keeps the input shape and is flagged.
#[test]
fn gh_terms_recovered_from_a_zeroed_start() {
    use spx::psffit::{fit_psf, fit_psf_on, lines::arc_reflines, PsfFitOptions};
    let dir = tempfile::tempdir().unwrap();
    let (flat, _) = sim_cam(dir.path(), "b0", "flat", 1, &["--preset", "mini"]);
    let (arc, tpsf) = sim_cam(dir.path(), "b0", "arc", 2, &["--preset", "mini"]);
    let truth = spx::io::psf::read(&tpsf).unwrap();
    let inst = Instrument::preset("mini").unwrap();
    let nominal = spx::sim::psfmodel::nominal_psf(&inst, inst.camera("b0").unwrap().0, 0).unwrap();
    let input = without_fitted_gh(&nominal);
    let arc = spx::io::preproc::read(&arc).unwrap();
    let flat = spx::io::preproc::read(&flat).unwrap();
    let (w0, w1) = input.wrange_any();
    let lines = arc_reflines(&inst, w0, w1);
    let opts = PsfFitOptions {
        bundle_size: inst.bundle_size,
        ..Default::default()
    };
    let (fit, report) = fit_psf(Some(&arc), Some(&flat), &input, &lines, &opts).unwrap();
    assert_eq!(report.bundles.len(), 2);
    // The same fit with the bundle shapes spread over 3 ranks (1 + 1 + 0 bundles): every
    // rank returns the single process's PSF, bit for bit.
    let on3 = spx::comm::ThreadComm::run(3, |c| {
        fit_psf_on(Some(&arc), Some(&flat), &input, &lines, &opts, c)
            .unwrap()
            .0
    });
    for p in &on3 {
        assert_eq!(p.param_names, fit.param_names);
        assert_eq!(p.param_coeff, fit.param_coeff);
        assert_eq!(p.xtrace.coeff, fit.xtrace.coeff);
        assert_eq!(p.ytrace.coeff, fit.ytrace.coeff);
    }
    for (b, br) in report.bundles.iter().enumerate() {
        assert_eq!(br.status, 0.0, "bundle {b}");
        assert_eq!(br.gh.len(), 3, "bundle {b}: {:?}", br.gh);
        for g in &br.gh {
            let row = param_row(&truth, &format!("GH-{}-{}", g.i, g.j));
            // the truth of the bundle's fibers (all alike on mini)
            let f = b * inst.bundle_size;
            for (d, (c, e)) in g.coeff.iter().zip(&g.err).enumerate() {
                let t = truth.param_coeff[[row, f, d]];
                eprintln!(
                    "bundle {b} GH-{}-{} L{d}: {c:.5} ± {e:.5} (truth {t:.5})",
                    g.i, g.j
                );
                assert!(
                    *e > 0.0 && *e < 0.005,
                    "bundle {b} GH-{}-{}: σ {e}",
                    g.i,
                    g.j
                );
                assert!(
                    (c - t).abs() < 4.0 * e,
                    "bundle {b} GH-{}-{} L{d}: {c} vs {t} ± {e}",
                    g.i,
                    g.j
                );
            }
            // and the written PSF carries the correction
            let r = param_row(&fit, &format!("GH-{}-{}", g.i, g.j));
            assert!((fit.param_coeff[[r, f, 0]] - g.coeff[0]).abs() < 1e-12);
        }
    }
    let es = max_rel_sigma(&fit, &truth, &all_fibers(&truth));
    eprintln!("max |σ/σtrue-1| {es:.4}");
    assert!(es < 0.01, "sigma error {es}");

    // Without the GH fit the zeroed terms stay zero and the widths absorb what they can.
    let no_gh = PsfFitOptions {
        fit_gh: false,
        ..opts.clone()
    };
    let (fit0, _) = fit_psf(Some(&arc), Some(&flat), &input, &lines, &no_gh).unwrap();
    let r = param_row(&fit0, "GH-4-0");
    assert!(fit0
        .param_coeff
        .index_axis(ndarray::Axis(0), r)
        .iter()
        .all(|&v| v == 0.0));

    // Bundles that cannot be fitted (too few spots) keep the input widths and GH terms and
    // are flagged STATUS 2 (or 3 for the dead fiber), without failing the camera.
    let starved = PsfFitOptions {
        min_spots: 100_000,
        ..opts
    };
    let (kept, rep) = fit_psf(Some(&arc), Some(&flat), &input, &lines, &starved).unwrap();
    assert!(rep
        .bundles
        .iter()
        .all(|b| b.status == 2.0 && b.gh.is_empty()));
    let st = status_row(&kept);
    assert!(st.iter().all(|&s| s == 2.0 || s == 3.0), "{st:?}");
    for name in ["GHSIGX", "GHSIGY", "GH-1-1", "GH-4-0", "GH-0-4"] {
        let (ri, rk) = (param_row(&input, name), param_row(&kept, name));
        assert_eq!(
            input.param_coeff.index_axis(ndarray::Axis(0), ri),
            kept.param_coeff.index_axis(ndarray::Axis(0), rk),
            "{name}"
        );
    }
}

/// Pull statistics (mean, σ about the mean, n) of `(flux − R·truth)·√ivar` of `frame` against
/// the truth photons of spx-sim over the frame's grid, leaving out `trim` bins at each end
/// (their R·truth needs truth beyond the extracted range).
fn frame_pulls(
    frame: &spx::io::frame::Frame,
    truth: &spx::io::simtruth::CameraTruth,
    trim: usize,
) -> (f64, f64, usize) {
    let tw = truth.wave.as_slice().unwrap();
    let k0 = tw
        .iter()
        .position(|&w| (w - frame.wave[0]).abs() < 1e-6)
        .expect("frame grid on the truth grid");
    let nw = frame.nwave();
    let dw = frame.wave[1] - frame.wave[0];
    let mut pulls = Vec::new();
    for f in 0..frame.nspec() {
        let t: Vec<f64> = (k0..k0 + nw)
            .map(|k| (truth.phot[[f, k]] + truth.skyphot[[f, k]]) as f64 / dw)
            .collect();
        let rt = frame.resolution_of(f).apply(&t).unwrap();
        for (i, r) in rt.iter().enumerate().take(nw - trim).skip(trim) {
            let iv = frame.ivar[[f, i]];
            if iv > 0.0 {
                pulls.push((frame.flux[[f, i]] - r) * iv.sqrt());
            }
        }
    }
    let n = pulls.len();
    let mean = pulls.iter().sum::<f64>() / n as f64;
    let var = pulls.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / n as f64;
    (mean, var.sqrt(), n)
}

/// Issue 5: extraction of a science exposure with the fitted PSF gives pulls σ within 0.02 of
/// extraction with the true PSF. mini b0 (the camera with the faintest arc): flat + arc →
/// spx-psf from the nominal PSF; a 900 s science exposure simulated with the arc's true PSF
/// (`--psf`, so that no flexure separates them); bundle 0 extracted over 400 bins with each
/// PSF; pulls against spx-sim's truth. Both extractions see the same pixels and ivar, so
/// their difference is the PSF's doing. Measured: σ 1.0228 with either, means −0.1496 /
/// −0.1487. The σ criterion alone is lenient (the nominal PSF, the fit's start with widths 2–3%
/// and traces off by the night's offset, gives σ 1.0427, mean −0.299), so the means must agree to
/// 0.02σ, which the nominal PSF misses by 7×.
#[test]
fn extraction_with_the_fitted_psf_matches_the_true_psf() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (flat, _) = sim_cam(d, "b0", "flat", 1, &["--preset", "mini"]);
    let (arc, tpsf) = sim_cam(d, "b0", "arc", 2, &["--preset", "mini"]);
    let fitted = d.join("psf-fit.fits");
    let o = run_psf(&[
        "--arc",
        arc.to_str().unwrap(),
        "--flat",
        flat.to_str().unwrap(),
        "-o",
        fitted.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (sci, _) = sim_cam(
        d,
        "b0",
        "science",
        5,
        &["--preset", "mini", "--psf", tpsf.to_str().unwrap()],
    );
    let truth = spx::io::simtruth::SimTruth::read(&d.join("truth-b0-5.fits")).unwrap();
    let t = truth.camera("b0").unwrap();
    // 400 bins of the camera grid from 4400 Å (continuum and a few sky lines)
    let k0 = 1000;
    let (wa, wb) = (t.wave[k0], t.wave[k0 + 399]);
    let grid = format!("{wa},{wb},0.8");
    let nominal = d.join("psf-nominal.fits");
    let o = common::bin("spx-sim")
        .args(["nominal-psf", "--preset", "mini", "--cameras", "b0", "-o"])
        .arg(&nominal)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut sig = Vec::new();
    let mut means: Vec<f64> = Vec::new();
    for (name, psf) in [("true", &tpsf), ("fitted", &fitted), ("nominal", &nominal)] {
        let out = d.join(format!("frame-{name}.fits"));
        let o = common::bin("spx-extract")
            .arg("-i")
            .arg(&sci)
            .arg("-p")
            .arg(psf)
            .arg("-o")
            .arg(&out)
            .args(["-w", &grid, "-n", "10", "--bundlesize", "10"])
            .env("SPX_THREADS", "2")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let frame = spx::io::frame::Frame::read(&out).unwrap();
        assert_eq!(frame.nwave(), 400);
        let (mean, sigma, n) = frame_pulls(&frame, t, 10);
        eprintln!("{name} PSF: pulls n {n} mean {mean:.4} σ {sigma:.4}");
        // sanity: the extraction against truth is near unit pulls (preproc's ivar from the
        // data, not the model, shifts the mean by a few 0.1σ and widens σ by a few %)
        assert!(
            n > 3000 && (0.9..1.15).contains(&sigma),
            "{name}: n {n} σ {sigma}"
        );
        sig.push(sigma);
        means.push(mean);
    }
    assert!(
        (sig[1] - sig[0]).abs() <= 0.02,
        "pull σ with the fitted PSF {} vs the true PSF {}",
        sig[1],
        sig[0]
    );
    assert!(
        (means[1] - means[0]).abs() <= 0.02,
        "pull mean with the fitted PSF {} vs the true PSF {}",
        means[1],
        means[0]
    );
    assert!(
        (means[2] - means[0]).abs() > 0.1,
        "the nominal PSF should be told apart: means {means:?}"
    );
}

/// A 100 s arc (20× the nominal 5 s) saturates the brightest lines: preproc masks their cores
/// (SATURATED) and the fit keeps the accuracy of the nominal arc. (Measured: the same widths
/// within 4e-5 whether the saturated cores are masked, unmasked or clipped; the line and
/// spot selections leave those spots out by their masked cores and χ².)
#[test]
fn saturated_arc_lines_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (flat, _) = sim(dir.path(), "flat", 1, &["--preset", "mini"]);
    let (arc, tpsf) = sim(
        dir.path(),
        "arc",
        2,
        &["--preset", "mini", "--exptime", "100"],
    );
    let mask = spx::io::preproc::read(&arc).unwrap().mask;
    let saturated = mask
        .iter()
        .filter(|&&m| m & spx::maskbits::ccdmask::SATURATED as u32 != 0)
        .count();
    assert!(saturated > 100, "only {saturated} saturated pixels");
    let truth = spx::io::psf::read(&tpsf).unwrap();
    let fit = fit_arc_flat(&arc, &flat, &dir.path().join("psf.fits"));
    let (ex, ey) = trace_rms(&fit, &truth);
    let es = max_rel_sigma(&fit, &truth, &all_fibers(&truth));
    eprintln!(
        "{saturated} saturated pixels: x rms {ex:.4} px, y rms {ey:.4} px, max |σ/σtrue-1| {es:.4}"
    );
    // The limits, as for the nominal arc.
    assert!(ex < 0.02 && ey < 0.02, "x rms {ex}, y rms {ey}");
    assert!(es < 0.01, "sigma error {es}");
}

#[test]
fn dead_fiber_and_missing_lines() {
    let dir = tempfile::tempdir().unwrap();
    // Fiber 4 is dead (no light in the flat nor the arc); the Xe and Cd lamps are off in the
    // simulated instrument but their lines stay in mini's list that spx-psf uses.
    let mut inst = Instrument::preset("mini").unwrap();
    inst.lamps.arc.retain(|l| l.ion != "XeI" && l.ion != "CdI");
    let yaml = dir.path().join("mini-no-xe-cd.yaml");
    std::fs::write(&yaml, inst.to_yaml()).unwrap();
    let targets = dir.path().join("targets.yaml");
    std::fs::write(&targets, "[{fiber: 4, kind: dead}]\n").unwrap();
    let extra = [
        "--instrument",
        yaml.to_str().unwrap(),
        "--targets",
        targets.to_str().unwrap(),
    ];
    let (flat, _) = sim(dir.path(), "flat", 1, &extra);
    let (arc, tpsf) = sim(dir.path(), "arc", 2, &extra);
    let truth = spx::io::psf::read(&tpsf).unwrap();
    let out = dir.path().join("psf.fits");
    let fit = fit_arc_flat(&arc, &flat, &out);
    let live: Vec<usize> = (0..20).filter(|&f| f != 4).collect();
    let ex = rms(&fit, &truth, &live, |p, f, w| p.x(f, w));
    let ey = rms(&fit, &truth, &live, |p, f, w| p.y(f, w));
    let es = max_rel_sigma(&fit, &truth, &live);
    eprintln!("live fibers: x rms {ex:.4}, y rms {ey:.4}, sigma {es:.4}");
    assert!(
        ex < 0.02 && ey < 0.02,
        "live fibers: x rms {ex}, y rms {ey}"
    );
    assert!(es < 0.01, "sigma {es}");
    let st = status_row(&fit);
    assert_eq!(st[4], 3.0, "dead fiber flagged: {st:?}");
    // Besides fiber 4, spx-sim's default targets have one dead fiber of their own.
    assert!(st.iter().filter(|&&s| s == 3.0).count() <= 2, "{st:?}");
    assert!(st.iter().all(|&s| s == 0.0 || s == 3.0), "{st:?}");
    // The dead fiber's traces are its neighbours' corrections applied to its input traces:
    // the simulated night moves all fibers alike, so they land within a few live-fiber errors.
    let dx = rms(&fit, &truth, &[4], |p, f, w| p.x(f, w));
    let dy = rms(&fit, &truth, &[4], |p, f, w| p.y(f, w));
    assert!(dx < 0.06 && dy < 0.06, "dead fiber x {dx}, y {dy}");
}

#[test]
fn shift_moves_traces_to_the_exposure() {
    let dir = tempfile::tempdir().unwrap();
    // Input: the PSF of an arc of the night; the science exposure has its own flexure
    // (0.1–0.3 px in x and y in spx-sim).
    let (_, arc_psf) = sim(dir.path(), "arc", 2, &["--preset", "mini", "--no-noise"]);
    let (sci, sci_psf) = sim(dir.path(), "science", 3, &["--preset", "mini"]);
    let input = spx::io::psf::read(&arc_psf).unwrap();
    let truth = spx::io::psf::read(&sci_psf).unwrap();
    let out = dir.path().join("psf-shifted.fits");
    let fit = fit_psf(
        &[
            "--shift",
            "-i",
            sci.to_str().unwrap(),
            "--input-psf",
            arc_psf.to_str().unwrap(),
        ],
        &out,
    );
    let (ex, ey) = trace_rms(&fit, &truth);
    let (x0, y0) = trace_rms(&input, &truth);
    eprintln!("shift: x rms {ex:.4}, y rms {ey:.4} (input {x0:.3}, {y0:.3})");
    // The flexure moves every trace rigidly: the shifted traces must match within 0.02 px
    // (sky lines measure y to a few 0.01 px each; tens of them per fiber).
    assert!(x0.max(y0) > 0.03, "the exposures differ: {x0} {y0}");
    assert!(ex < 0.02 && ey < 0.02, "x rms {ex}, y rms {ey}");
    assert!(
        fit.extra_keys.get_f64("MEANDX").is_some() && fit.extra_keys.get_f64("MAXDY").is_some()
    );
    assert!(fit
        .extra_keys
        .get_str("IN_PSF")
        .unwrap()
        .contains("psf-truth-r0-00000002"));
}

#[test]
fn average_is_bundle_by_bundle_mean_with_rchi2_selection() {
    let dir = tempfile::tempdir().unwrap();
    let mk = |dx: f64, r: [f64; 2]| {
        let mut p = mini_psf(dx, 0.0, 0.0, 0.0, 1.0 + dx / 10.0, 1.0);
        for (b, v) in r.iter().enumerate() {
            p.extra_keys
                .set(&format!("B{b:02}RCHI2"), HeaderValue::Float(*v));
            p.extra_keys
                .set(&format!("B{b:02}NDATA"), HeaderValue::Int(1000));
            p.extra_keys
                .set(&format!("B{b:02}NPAR"), HeaderValue::Int(100));
        }
        p
    };
    // Bundle 1 of the third PSF has a bad χ² (> median + 1) and is left out of the mean.
    let ps = [
        mk(0.1, [1.1, 1.0]),
        mk(0.3, [1.2, 1.1]),
        mk(0.5, [1.0, 9.0]),
    ];
    let paths: Vec<PathBuf> = ps
        .iter()
        .enumerate()
        .map(|(i, p)| write_psf(dir.path(), &format!("psf-{i}.fits"), p))
        .collect();
    let out = dir.path().join("psfnight.fits");
    let mut args: Vec<&str> = vec!["--average"];
    args.extend(paths.iter().map(|p| p.to_str().unwrap()));
    args.extend(["-o", out.to_str().unwrap()]);
    let o = run_psf(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let night = spx::io::psf::read(&out).unwrap();
    let w = 6500.0;
    // Bundle 0 (fibers 0-9): mean of the three; bundle 1: mean of the first two.
    let x0 = ps.iter().map(|p| p.x(3, w)).sum::<f64>() / 3.0;
    let x1 = (ps[0].x(13, w) + ps[1].x(13, w)) / 2.0;
    assert!((night.x(3, w) - x0).abs() < 1e-9 && (night.x(13, w) - x1).abs() < 1e-9);
    let s1 = (ps[0].xsigma(13, w) + ps[1].xsigma(13, w)) / 2.0;
    assert!((night.xsigma(13, w) - s1).abs() < 1e-12);
    assert!((night.extra_keys.get_f64("B01RCHI2").unwrap() - 1.05).abs() < 1e-12);
}

#[test]
fn desispec_reads_our_psf_with_the_same_traces() {
    let Some(py) = spx::testsupport::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (flat, _) = sim(dir.path(), "flat", 1, &["--preset", "mini"]);
    let out = dir.path().join("psf-traces.fits");
    let fit = fit_psf(&["--traces-only", "--flat", flat.to_str().unwrap()], &out);
    // desispec's XYTraceSet evaluates through specter's TraceSet. The test env has desispec
    // but not specter (not on PyPI); when it is missing, a stand-in with specter's formula
    // (numpy legval on 2(w-wmin)/(wmax-wmin)-1) goes on PYTHONPATH. The file reading, HDU
    // lookup, domain keys and coefficient layout are desispec's own either way.
    let shim = dir.path().join("shim");
    std::fs::create_dir_all(shim.join("specter/util")).unwrap();
    std::fs::write(shim.join("specter/__init__.py"), "").unwrap();
    std::fs::write(shim.join("specter/util/__init__.py"), "").unwrap();
    std::fs::write(
        shim.join("specter/util/traceset.py"),
        "import numpy as np\nfrom numpy.polynomial.legendre import legval\nclass TraceSet:\n    def __init__(self, coeff, domain):\n        self._coeff = np.asarray(coeff)\n        self._xmin, self._xmax = domain\n    def eval(self, ispec, x):\n        u = (np.asarray(x) - self._xmin) * (2.0 / (self._xmax - self._xmin)) - 1.0\n        return legval(u, self._coeff[ispec])\n",
    )
    .unwrap();
    let script = "import sys, importlib.util, numpy as np\nif importlib.util.find_spec('specter') is None:\n    sys.path.insert(0, sys.argv[2])\nfrom desispec.io import read_xytraceset\nt = read_xytraceset(sys.argv[1])\nw = np.linspace(6200, 6900, 8)\nfor f in range(t.nspec):\n    print('ROW', ' '.join('%.10f %.10f %.10f' % (t.x_vs_wave(f, x), t.y_vs_wave(f, x), t.xsig_vs_wave(f, x)) for x in w))\n";
    let o = std::process::Command::new(&py)
        .args(["-c", script, out.to_str().unwrap(), shim.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let w = linspace(6200.0, 6900.0, 8);
    let rows: Vec<Vec<f64>> = text
        .lines()
        .filter_map(|l| l.strip_prefix("ROW "))
        .map(|l| l.split_whitespace().map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 20);
    for (f, r) in rows.iter().enumerate() {
        for (k, &wk) in w.iter().enumerate() {
            // Same Legendre series evaluated in float64 by numpy: agreement to rounding.
            assert!((r[3 * k] - fit.x(f, wk)).abs() < 1e-8, "x fiber {f}");
            assert!((r[3 * k + 1] - fit.y(f, wk)).abs() < 1e-8, "y fiber {f}");
            assert!(
                (r[3 * k + 2] - fit.xsigma(f, wk)).abs() < 1e-9,
                "GHSIGX fiber {f}"
            );
        }
    }
}

#[test]
fn bad_input_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.fits");
    let o = run_psf(&[
        "--average",
        "/nonexistent/psf.fits",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/psf.fits"));
    // An image of another CCD size than the PSF.
    let small = PreprocImage {
        image: Array2::zeros((10, 10)),
        ivar: Array2::ones((10, 10)),
        mask: Array2::zeros((10, 10)),
        readnoise: None,
        header: header("FLAT", 1),
        fibermap: None,
    };
    let f = write_img(dir.path(), "small.fits", &small);
    let inp = write_psf(
        dir.path(),
        "psf.fits",
        &mini_psf(0.0, 0.0, 0.0, 0.0, 1.0, 1.0),
    );
    let o = run_psf(&[
        "--traces-only",
        "--flat",
        f.to_str().unwrap(),
        "--input-psf",
        inp.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("small.fits") && e.contains("CCD"), "{e}");
    assert!(!out.exists());
    // Usage error: no mode.
    assert_eq!(
        run_psf(&["-o", out.to_str().unwrap()]).status.code(),
        Some(1)
    );
}

/// Inputs of scripts/bench-psf: a full-size `desi` r0 arc and flat made from the truth PSF, the
/// nominal PSF to start from, and the truth, in `$SPX_BENCH_DIR`.
#[test]
#[ignore]
fn desi_bench_inputs() {
    let dir = PathBuf::from(std::env::var("SPX_BENCH_DIR").expect("SPX_BENCH_DIR"));
    let truth = preset_psf("desi", 0.7, -0.9, 0.2, -0.25, 1.03, 0.97);
    let nominal = preset_psf("desi", 0.0, 0.0, 0.0, 0.0, 1.0, 1.0);
    write_img(
        &dir,
        "preproc-arc.fits",
        &arc_image(&truth, 40000.0, &[], |_| false, 51),
    );
    write_img(
        &dir,
        "preproc-flat.fits",
        &flat_image(&truth, 3000.0, &[], 52),
    );
    write_psf(&dir, "psf-nominal.fits", &nominal);
    write_psf(&dir, "psf-truth.fits", &truth);
}

/// Accuracy of the benchmark's fit against the truth (printed by scripts/bench-psf).
#[test]
#[ignore]
fn desi_bench_check() {
    let dir = PathBuf::from(std::env::var("SPX_BENCH_DIR").expect("SPX_BENCH_DIR"));
    let truth = spx::io::psf::read(dir.join("psf-truth.fits")).unwrap();
    let fit = spx::io::psf::read(dir.join("psf-fit.fits")).unwrap();
    let (ex, ey) = trace_rms(&fit, &truth);
    let es = max_rel_sigma(&fit, &truth, &all_fibers(&truth));
    let bad = status_row(&fit).iter().filter(|&&s| s != 0.0).count();
    // largest GH-1-1/4-0/0-4 error over fibers and on-CCD wavelengths
    let mut egh: f64 = 0.0;
    for name in ["GH-1-1", "GH-4-0", "GH-0-4"] {
        let (rf, rt) = (param_row(&fit, name), param_row(&truth, name));
        for f in 0..truth.nfiber() {
            for w in linspace(fit.param_wmin, fit.param_wmax, 20) {
                let u = 2.0 * (w - fit.param_wmin) / (fit.param_wmax - fit.param_wmin) - 1.0;
                let cf = fit.param_coeff.slice(ndarray::s![rf, f, ..]).to_vec();
                let ct = truth.param_coeff.slice(ndarray::s![rt, f, ..]).to_vec();
                let d = spx::psf::legendre::legval(u, &cf) - spx::psf::legendre::legval(u, &ct);
                egh = egh.max(d.abs());
            }
        }
    }
    println!("desi r0: x rms {ex:.4} px, y rms {ey:.4} px, max |sigma/truth - 1| {es:.4}, max |GH - truth| {egh:.4} (GH-1-1/4-0/0-4 true 0.01/0.01/0.015), {bad} fibers with STATUS != 0");
}

/// spx-psf's `run` on a 2-rank group (threads standing in for MPI ranks): the arc fit splits
/// its bundles and rank 0 writes the single-process PSF; `--traces-only` runs on rank 0 alone;
/// an unreadable arc fails on every rank instead of leaving one waiting.
#[test]
fn run_on_two_ranks() {
    use clap::Parser;
    use spx::cli::psf::{run, PsfOpts};
    let dir = tempfile::tempdir().unwrap();
    let (flat, _) = sim(dir.path(), "flat", 1, &["--preset", "mini"]);
    let (arc, _) = sim(dir.path(), "arc", 2, &["--preset", "mini"]);
    let one = fit_arc_flat(&arc, &flat, &dir.path().join("one.fits"));
    let on2 = |args: &[&str]| {
        let opts = PsfOpts::parse_from([&["spx-psf"], args].concat());
        spx::comm::ThreadComm::run(2, |c| run(&opts, c).map_err(|e| e.to_string()))
    };
    let two = dir.path().join("two.fits");
    let (a, f, t) = (
        arc.to_str().unwrap(),
        flat.to_str().unwrap(),
        two.to_str().unwrap(),
    );
    assert!(on2(&["--arc", a, "--flat", f, "-o", t])
        .iter()
        .all(|r| r.is_ok()));
    let fit2 = spx::io::psf::read(&two).unwrap();
    assert_eq!(fit2.param_coeff, one.param_coeff);
    assert_eq!(fit2.ytrace, one.ytrace);
    let traces = dir.path().join("traces.fits");
    let r = on2(&["--traces-only", "--flat", f, "-o", traces.to_str().unwrap()]);
    assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
    assert!(traces.exists());
    let bad = dir.path().join("bad.fits");
    let r = on2(&["--arc", "missing.fits", "-o", bad.to_str().unwrap()]);
    assert!(r.iter().all(|r| r.is_err()), "{r:?}");
    assert!(r[0].as_ref().unwrap_err().contains("missing.fits"), "{r:?}");
    assert!(!bad.exists());
}
