//! Spectra of simulated targets straight from truth, without CCD or extraction: the
//! simulator's targets ([`crate::speclib::targets::draw_targets`]) on the DESI preset's
//! camera grids, a Gaussian resolution matrix and Gaussian noise, in a [`Spectra`] that
//! spx-redshift and rrdesi both read. Tests and benchmarks of the redshift fitter use it to
//! measure success rates and redshift errors against known truth.

// Index loops mirror the matrix formulas over several parallel arrays.
#![allow(clippy::needless_range_loop)]

use ndarray::{Array2, Array3};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

use crate::instrument::Instrument;
use crate::io::fits::{Column, ColumnData};
use crate::io::spectra::{Band, Spectra};
use crate::io::table::Table;
use crate::speclib::targets::{draw_targets, Truth};

/// How the truth spectra are observed.
#[derive(Debug, Clone)]
pub struct TruthSpecOptions {
    /// Simulator seed (the targets of `draw_targets(seed, 0, nfibers)`).
    pub seed: u64,
    /// Fibers drawn (sky and dead fibers are dropped, so fewer spectra result).
    pub nfibers: usize,
    /// DESI pixels (0.8 Å) combined into one output pixel (1 = the DESI grid).
    pub bin: usize,
    /// Gaussian resolution σ, Angstrom (DESI: about 0.8 Å, one native pixel).
    pub sigma_res: f64,
    /// Resolution diagonals stored (odd; DESI 11).
    pub ndiag: usize,
    /// Noise density σ·√(pixel width), 1e-17 erg/s/cm²/Å·√Å: the same signal-to-noise per
    /// Angstrom whatever `bin` is. 0.5 is roughly sky-limited for a 1000 s dark exposure.
    pub noise: f64,
}

impl TruthSpecOptions {
    /// DESI's 0.8 Å grid, σ = 0.8 Å resolution, 11 diagonals, noise density 0.5.
    pub fn desi(seed: u64, nfibers: usize) -> Self {
        TruthSpecOptions {
            seed,
            nfibers,
            bin: 1,
            sigma_res: 0.8,
            ndiag: 11,
            noise: 0.5,
        }
    }
}

/// Pixel-mean flux of a density over `[w − dw/2, w + dw/2]` (8 midpoint samples per 0.8 Å).
fn pixel_mean(sed: &dyn crate::speclib::Sed, w: f64, dw: f64, nsub: usize) -> f64 {
    (0..nsub)
        .map(|s| sed.density(w + dw * ((s as f64 + 0.5) / nsub as f64 - 0.5)))
        .sum::<f64>()
        / nsub as f64
}

/// Simulated spectra on the DESI preset's b, r and z grids and the truth of each row.
///
/// Rows are the non-sky, non-dead fibers in fiber order; FIBERMAP has DESI's identifying
/// columns (TARGETID, FIBER, FIBERSTATUS, OBJTYPE, TARGET_RA/DEC, …), SCORES only TARGETID
/// (no TSNR2: that needs DESI's ensemble templates). The noise of fiber `f`
/// comes from its own ChaCha8 stream, so a spectrum does not depend on `nfibers`.
pub fn simulate(opts: &TruthSpecOptions) -> (Spectra, Vec<Truth>) {
    let inst = match Instrument::preset("desi") {
        Ok(i) => i,
        // The preset is compiled in; failing to parse it is a build defect.
        Err(e) => panic!("desi preset: {e}"),
    };
    let bin = opts.bin.max(1);
    let nd = opts.ndiag | 1;
    let half = (nd / 2) as isize;
    let drawn: Vec<_> = draw_targets(opts.seed, 0, opts.nfibers, &[])
        .into_iter()
        .enumerate()
        .filter(|(_, t)| t.sed.is_some())
        .collect();
    let nspec = drawn.len();
    let mut bands = Vec::new();
    for (ci, cam) in inst.cameras.iter().enumerate() {
        let native = cam.wave_grid();
        let dw = cam.dwave * bin as f64;
        let wave: Vec<f64> = native
            .chunks_exact(bin)
            .map(|c| c.iter().sum::<f64>() / bin as f64)
            .collect();
        let nw = wave.len();
        let sig = opts.sigma_res / dw;
        let kern: Vec<f64> = {
            let k: Vec<f64> = (0..nd)
                .map(|d| {
                    let x = (half - d as isize) as f64 / sig;
                    (-0.5 * x * x).exp()
                })
                .collect();
            let s: f64 = k.iter().sum();
            k.into_iter().map(|v| v / s).collect()
        };
        let sigma_pix = opts.noise / dw.sqrt();
        let normal = match Normal::new(0.0, sigma_pix) {
            Ok(n) => n,
            Err(e) => panic!("noise σ {sigma_pix}: {e}"),
        };
        // Rows in parallel: each row's noise has its own stream, so rows do not depend on
        // the thread count.
        let rows: Vec<Vec<f32>> = drawn
            .par_iter()
            .map(|(fiber, t)| {
                let mut row = vec![0.0f32; nw];
                let Some(sed) = &t.sed else { return row };
                let truef: Vec<f64> = wave
                    .iter()
                    .map(|&w| pixel_mean(sed.as_ref(), w, dw, 8 * bin))
                    .collect();
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
                rng.set_stream((*fiber as u64) << 2 | ci as u64);
                for i in 0..nw {
                    // R[i, j] = kern at offset j − i (stored at resolution[s, half − (j − i), j])
                    let mut v = 0.0;
                    for d in 0..nd {
                        let j = i as isize + half - d as isize;
                        if j >= 0 && (j as usize) < nw {
                            v += kern[d] * truef[j as usize];
                        }
                    }
                    row[i] = (v + normal.sample(&mut rng)) as f32;
                }
                row
            })
            .collect();
        let mut flux = Array2::<f32>::zeros((nspec, nw));
        for (s, row) in rows.iter().enumerate() {
            flux.row_mut(s)
                .iter_mut()
                .zip(row)
                .for_each(|(a, b)| *a = *b);
        }
        let ivar = Array2::<f32>::from_elem((nspec, nw), (1.0 / (sigma_pix * sigma_pix)) as f32);
        let mut res = Array3::<f32>::zeros((nspec, nd, nw));
        for d in 0..nd {
            res.index_axis_mut(ndarray::Axis(1), d).fill(kern[d] as f32);
        }
        bands.push(Band {
            name: cam.band.clone(),
            wave,
            flux,
            ivar,
            mask: Some(Array2::zeros((nspec, nw))),
            resolution: res,
        });
    }
    let truths: Vec<Truth> = drawn.iter().map(|(_, t)| t.truth.clone()).collect();
    let fibers: Vec<i32> = drawn.iter().map(|(f, _)| *f as i32).collect();
    let col = |name: &str, data: ColumnData| Column::new(name, data);
    let fibermap = Table::new(vec![
        col(
            "TARGETID",
            ColumnData::I64(truths.iter().map(|t| t.targetid).collect()),
        ),
        col("PETAL_LOC", ColumnData::I16(vec![0; nspec])),
        col(
            "DEVICE_LOC",
            ColumnData::I32(fibers.iter().map(|f| f + 10).collect()),
        ),
        col(
            "LOCATION",
            ColumnData::I64(fibers.iter().map(|&f| f as i64 + 10).collect()),
        ),
        col("FIBER", ColumnData::I32(fibers.clone())),
        col("FIBERSTATUS", ColumnData::I32(vec![0; nspec])),
        col(
            "TARGET_RA",
            ColumnData::F64(truths.iter().map(|t| t.ra).collect()),
        ),
        col(
            "TARGET_DEC",
            ColumnData::F64(truths.iter().map(|t| t.dec).collect()),
        ),
        col(
            "OBJTYPE",
            ColumnData::Str(
                truths
                    .iter()
                    .map(|t| t.kind.objtype().to_string())
                    .collect(),
            ),
        ),
        col(
            "DESI_TARGET",
            ColumnData::I64(truths.iter().map(|t| t.kind.target_bits().0).collect()),
        ),
        col(
            "MWS_TARGET",
            ColumnData::I64(truths.iter().map(|t| t.kind.target_bits().1).collect()),
        ),
        col("TILEID", ColumnData::I32(vec![1; nspec])),
        col("NIGHT", ColumnData::I32(vec![20260101; nspec])),
        col("EXPID", ColumnData::I32(vec![1; nspec])),
        col("MJD", ColumnData::F64(vec![61041.0; nspec])),
        col("EXPTIME", ColumnData::F64(vec![1000.0; nspec])),
    ])
    .expect("fibermap columns all have one row per target");
    // SCORES with TARGETID only: rrdesi requires the HDU; TSNR2 needs DESI's ensemble
    // templates, which this simulation does not have.
    let scores = Table::new(vec![col(
        "TARGETID",
        ColumnData::I64(truths.iter().map(|t| t.targetid).collect()),
    )])
    .expect("one column");
    let spectra = Spectra {
        bands,
        fibermap,
        exp_fibermap: None,
        scores: Some(scores),
        header: Vec::new(),
    };
    (spectra, truths)
}
