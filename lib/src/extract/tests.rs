//! Conformance with specter's ex2d on ../shared/data/extract (README extract/ section).

use super::*;
use crate::io::fits::FitsReader;
use crate::testsupport::shared_file;

struct Case {
    psf: GaussHermitePsf,
    img: crate::io::preproc::PreprocImage,
    wave: Vec<f64>,
}

fn case(which: &str) -> Option<Case> {
    let psf = crate::io::psf::read(shared_file("psf/psf-r0-00051060.fits")?).unwrap();
    let img =
        crate::io::preproc::read(shared_file(&format!("extract/preproc-{which}.fits"))?).unwrap();
    let wave = geometry::np_arange(6500.0, 6749.6 + 0.4, 0.8);
    Some(Case { psf, img, wave })
}

fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

fn compare(which: &str, threads: usize) {
    let Some(c) = case(which) else { return };
    let Some(refp) = shared_file(&format!("extract/ex2d-f64-{which}.fits")) else {
        return;
    };
    let mut r = FitsReader::open(refp).unwrap();
    let rwave = r.image1::<f64>("WAVELENGTH").unwrap();
    assert_eq!(rwave.as_slice().unwrap(), &c.wave[..], "grid");
    let p = ExtractParams::new(0, 25, c.wave.clone(), c.psf.psferr);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let ex = pool
        .install(|| ex2d(&c.psf, c.img.image.view(), c.img.ivar.view(), &p))
        .unwrap();
    let rflux = r.image2::<f64>("FLUX").unwrap();
    let rivar = r.image2::<f64>("IVAR").unwrap();
    let rres = r.image3::<f64>("RESOLUTION").unwrap();
    let rchi = r.image2::<f64>("CHI2PIX").unwrap();
    let rpmf = r.image2::<f64>("PIXMASK_FRACTION").unwrap();
    assert_eq!(ex.resolution.dim(), rres.dim());
    let fmax = max_abs(rflux.as_slice().unwrap());
    let imax = max_abs(rivar.as_slice().unwrap());
    let df = max_abs(&(&ex.flux - &rflux).into_raw_vec_and_offset().0);
    let di = max_abs(&(&ex.ivar - &rivar).into_raw_vec_and_offset().0);
    let dr = max_abs(&(&ex.resolution - &rres).into_raw_vec_and_offset().0);
    let dp = max_abs(&(&ex.pixmask_fraction - &rpmf).into_raw_vec_and_offset().0);
    let mut dc = 0.0f64;
    for (a, b) in ex.chi2pix.iter().zip(rchi.iter()) {
        dc = dc.max((a - b).abs() / b.abs().max(1e-300));
    }
    if std::env::var_os("SPX_DEBUG_EX").is_some() {
        for f in 0..25 {
            let row: Vec<String> = (0..7)
                .map(|b| {
                    let mut m = 0.0f64;
                    for j in b * 50..((b + 1) * 50).min(313) {
                        m = m.max((ex.flux[[f, j]] - rflux[[f, j]]).abs() / fmax);
                    }
                    format!("{m:8.1e}")
                })
                .collect();
            eprintln!("fiber {f:2}: {}", row.join(" "));
        }
    }
    if let Ok(f) = std::env::var("SPX_DEBUG_FIB") {
        let f: usize = f.parse().unwrap();
        for j in 0..313 {
            let d = (ex.flux[[f, j]] - rflux[[f, j]]) / fmax;
            let dv = (ex.ivar[[f, j]] - rivar[[f, j]]) / imax;
            let drr = (0..11)
                .map(|k| (ex.resolution[[f, k, j]] - rres[[f, k, j]]).abs())
                .fold(0.0, f64::max);
            if d.abs() > 1e-12 || drr > 1e-12 {
                eprintln!(
                    "bin {j}: dflux {d:9.2e} divar {dv:9.2e} dR {drr:9.2e} flux {:.4} ivar {:.4e}",
                    rflux[[f, j]],
                    rivar[[f, j]]
                );
            }
        }
    }
    eprintln!(
        "{which}: |dflux|/max {:e}, |divar|/max {:e}, |dR| {:e}, chi2 rel {:e}, pmf {:e}",
        df / fmax,
        di / imax,
        dr,
        dc,
        dp
    );
    // README tolerances: ×1e4 above specter's measured floor (1e-12), ×1e4 below the
    // smallest algorithmic change (wavesize 40 vs 50).
    assert!(df <= 1e-8 * fmax, "flux");
    assert!(di <= 1e-8 * imax, "ivar");
    assert!(dr <= 1e-9, "resolution");
    assert!(dc <= 1e-6, "chi2pix");
    assert!(dp <= 1e-12, "pixmask_fraction");
}

#[test]
fn noiseless_matches_specter_ex2d() {
    compare("noiseless", 2);
}

#[test]
fn noisy_matches_specter_ex2d() {
    compare("noisy", 1);
}
