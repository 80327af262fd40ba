//! Makes a full-size synthetic preproc image for scripts/bench-extract: every fiber of a
//! Gauss-Hermite PSF gets a smooth continuum plus emission lines, projected with the spx spot
//! code onto the whole CCD, with Poisson-like Gaussian noise and 3 e- read noise (fixed seed).
//!
//! Usage: make_extract_bench PSF OUT.fits [WMIN WMAX DW]

use ndarray::Array2;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use spx::io::fits::Provenance;
use spx::io::header::{Header, HeaderValue};
use spx::io::preproc::{write, PreprocImage};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        anyhow::bail!("usage: make_extract_bench PSF OUT.fits [WMIN WMAX DW]");
    }
    let psf = spx::io::psf::read(&args[1])?;
    let num = |i: usize, d: f64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    // The r-camera production grid, padded by 50 bins on each side like the shared case.
    let (wmin, wmax, dw) = (num(3, 5760.0 - 40.0), num(4, 7620.0 + 40.0), num(5, 0.8));
    let waves: Vec<f64> = (0..)
        .map(|i| wmin + i as f64 * dw)
        .take_while(|&w| w <= wmax + 1e-9)
        .collect();
    let (ny, nx) = (psf.npix_y, psf.npix_x);
    let mut model = Array2::<f64>::zeros((ny, nx));
    let mut ev = psf.evaluator();
    let mut spot = vec![0.0; ev.max_len()];
    for f in 0..psf.nfiber() {
        let (lo, hi) = psf.fiber_wrange(f);
        let params = psf.spot_params(f, 1, &waves);
        for (i, &w) in waves.iter().enumerate() {
            if w < lo || w > hi {
                continue;
            }
            let t = (w - 6700.0) / 1000.0;
            let mut phot = 40.0 + 20.0 * t + 15.0 * (f % 7) as f64;
            for (k, lw) in [5890.0, 6300.3, 6563.0, 6583.5, 6717.0, 7245.2]
                .iter()
                .enumerate()
            {
                let s = 1.0 + 0.2 * k as f64;
                phot += 800.0 * (-0.5 * ((w - lw) / s).powi(2)).exp();
            }
            let st = ev.eval(&params.get(0, i), &mut spot);
            if let Some((c, dx, dy)) = st.clip(0, nx as i64, 0, ny as i64) {
                for r in 0..c.ny {
                    for cc in 0..c.nx {
                        model[[c.y0 as usize + r, c.x0 as usize + cc]] +=
                            phot * spot[(r + dy) * st.nx + dx + cc];
                    }
                }
            }
        }
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
    let unit = Normal::new(0.0, 1.0)?;
    let rn2 = 9.0;
    let image = model.mapv(|m| (m + (m.max(0.0) + rn2).sqrt() * unit.sample(&mut rng)) as f32);
    let ivar = model.mapv(|m| (1.0 / (m.max(0.0) + rn2)) as f32);
    let mut header = Header::default();
    header.set("CAMERA", HeaderValue::Str("r0".into()));
    header.set("FLAVOR", HeaderValue::Str("science".into()));
    header.set("EXPID", HeaderValue::Int(1));
    header.set("RDNOISE", HeaderValue::Float(3.0));
    let img = PreprocImage {
        image,
        ivar,
        mask: Array2::zeros((ny, nx)),
        readnoise: None,
        header,
        fibermap: None,
    };
    write(
        &args[2],
        &img,
        &Provenance::current("make_extract_bench", &[std::path::Path::new(&args[1])]),
    )?;
    Ok(())
}
