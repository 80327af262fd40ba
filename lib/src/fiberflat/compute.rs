//! desispec `compute_fiberflat` (reference/calibration.md §2.2): data ≈ F_f · (R_f M), with
//! one deconvolved lamp spectrum M shared by all fibers and a per-fiber flat F.

use ndarray::{Array1, Array2};
use rayon::prelude::*;

use super::spline::spline_fit;
use crate::io::fiberflat::FiberFlat;
use crate::io::frame::Frame;
use crate::maskbits::{fibermask, specmask};
use crate::resolution::Resolution;
use crate::sky::fiberbitmasked_ivar;
use crate::sky::linear::{normal_equations, solve_constrained, ColumnBands};
use crate::stats::median;

/// Options of [`compute_fiberflat`] (desispec defaults in [`Default`]).
#[derive(Debug, Clone, Copy)]
pub struct FiberFlatOptions {
    /// Outlier threshold in σ.
    pub nsig_clipping: f64,
    /// Convergence of the smooth flat (max change between iterations).
    pub accuracy: f64,
    /// Pixels below `minval` × the median spectrum are masked.
    pub minval: f64,
    /// Pixels above `maxval` × the median spectrum are masked.
    pub maxval: f64,
    /// Iterations of each pass.
    pub max_iterations: usize,
    /// Spline knot spacing of the smooth flat, Angstrom.
    pub smoothing_res: f64,
    /// A fiber with this many rejected pixels is dropped.
    pub max_bad: usize,
    /// At most this many pixels rejected per fiber and iteration in the first pass.
    pub max_rej_it: usize,
}

impl Default for FiberFlatOptions {
    fn default() -> Self {
        FiberFlatOptions {
            nsig_clipping: 10.0,
            accuracy: 5e-4,
            minval: 0.1,
            maxval: 10.0,
            max_iterations: 15,
            smoothing_res: 5.0,
            max_bad: 100,
            max_rej_it: 5,
        }
    }
}

/// A fiber's smooth flat (None if the spline failed) and its convolved lamp spectrum `[nwave]`.
type FiberFit = (Option<Vec<f64>>, Vec<f64>);

/// Per-wavelength median over the fibers where `ok(f, i)`, `default` where none is.
fn column_median(
    a: &Array2<f64>,
    ok: impl Fn(usize, usize) -> bool + Sync,
    default: &Array1<f64>,
) -> Array1<f64> {
    let (nf, nw) = a.dim();
    let v: Vec<f64> = (0..nw)
        .into_par_iter()
        .map(|i| {
            let vals: Vec<f64> = (0..nf).filter(|&f| ok(f, i)).map(|f| a[[f, i]]).collect();
            if vals.is_empty() {
                default[i]
            } else {
                median(vals)
            }
        })
        .collect();
    Array1::from(v)
}

/// Spline fit with desispec's one retry at 1.5× the knot spacing.
fn smooth(
    wave: &[f64],
    x: &[f64],
    y: &[f64],
    res: f64,
    w: &[f64],
    retry: bool,
) -> Option<Vec<f64>> {
    match spline_fit(wave, x, y, res, w) {
        Ok(s) => Some(s),
        Err(_) if retry => spline_fit(wave, x, y, 1.5 * res, w).ok(),
        Err(_) => None,
    }
}

/// Computes the fiber flat of a continuum-lamp `frame`.
pub fn compute_fiberflat(frame: &Frame, opts: &FiberFlatOptions) -> FiberFlat {
    let (nfib, nwave) = (frame.nspec(), frame.nwave());
    let wave: Vec<f64> = frame.wave.to_vec();
    let (frame_ivar, _) = fiberbitmasked_ivar(frame, fibermask::FLAT_FATAL);
    let flux = &frame.flux;
    let mut ivar = frame_ivar.clone();
    // min_sn = 0: pixels with negative signal-to-noise are dropped
    ndarray::Zip::from(&mut ivar).and(flux).for_each(|iv, &f| {
        if f * iv.sqrt() < 0.0 {
            *iv = 0.0
        }
    });
    let nsig2 = opts.nsig_clipping * opts.nsig_clipping;
    let res = opts.smoothing_res;
    let live = (0..nfib)
        .filter(|&f| ivar.row(f).iter().any(|&v| v > 0.0))
        .count();
    if live == 0 {
        log::warn!("no fiber has a valid pixel: the flat is 1 with ivar 0 everywhere");
    } else {
        log::info!("fiber flat from {live} of {nfib} fibers, {nwave} wavelengths");
    }

    // 0th pass: mask pixels far from the per-wavelength median
    let mut mean_spectrum = Array1::<f64>::zeros(nwave);
    let mut nbad = vec![0usize; nfib];
    for _ in 0..opts.max_iterations {
        let iv = &ivar;
        mean_spectrum = column_median(flux, |f, i| iv[[f, i]] > 0.0, &mean_spectrum);
        let mut nbad_it = 0;
        for f in 0..nfib {
            let mut n = 0;
            for i in 0..nwave {
                let v = flux[[f, i]];
                let m = mean_spectrum[i];
                if (v < opts.minval * m || v > opts.maxval * m) && ivar[[f, i]] > 0.0 {
                    ivar[[f, i]] = 0.0;
                    n += 1;
                }
            }
            nbad_it += n;
            nbad[f] += n;
            if nbad[f] >= opts.max_bad {
                ivar.row_mut(f).fill(0.0);
            }
        }
        if nbad_it == 0 {
            break;
        }
    }

    // 1st pass: median spectrum, smooth flat without resolution, outlier rejection
    let mut smooth_ff = Array2::<f64>::ones((nfib, nwave));
    for _ in 0..opts.max_iterations {
        let iv = &ivar;
        mean_spectrum = column_median(flux, |f, i| iv[[f, i]] > 0.0, &Array1::zeros(nwave));
        let fits: Vec<Option<Option<Vec<f64>>>> = (0..nfib)
            .into_par_iter()
            .map(|f| {
                if !ivar.row(f).iter().any(|&v| v > 0.0) {
                    return None;
                }
                let sel: Vec<usize> = (0..nwave)
                    .filter(|&i| mean_spectrum[i] != 0.0 && ivar[[f, i]] > 0.0)
                    .collect();
                let x: Vec<f64> = sel.iter().map(|&i| wave[i]).collect();
                let y: Vec<f64> = sel
                    .iter()
                    .map(|&i| flux[[f, i]] / mean_spectrum[i])
                    .collect();
                let w: Vec<f64> = sel
                    .iter()
                    .map(|&i| ivar[[f, i]] * mean_spectrum[i] * mean_spectrum[i])
                    .collect();
                Some(smooth(&wave, &x, &y, res, &w, true))
            })
            .collect();
        let mut nbad_it = 0;
        for (f, fit) in fits.into_iter().enumerate() {
            match fit {
                None => continue,
                Some(None) => {
                    log::error!("spline fit failed: ivar=0 for fiber {f}");
                    ivar.row_mut(f).fill(0.0);
                }
                Some(Some(s)) => smooth_ff.row_mut(f).assign(&Array1::from(s)),
            }
            let chi2: Vec<f64> = (0..nwave)
                .map(|i| {
                    let r = flux[[f, i]] - mean_spectrum[i] * smooth_ff[[f, i]];
                    ivar[[f, i]] * r * r
                })
                .collect();
            let mut bad: Vec<usize> = (0..nwave).filter(|&i| chi2[i] > nsig2).collect();
            if !bad.is_empty() {
                if bad.len() > opts.max_rej_it {
                    bad.sort_by(|&a, &b| chi2[a].total_cmp(&chi2[b]));
                    bad = bad[bad.len() - opts.max_rej_it..].to_vec();
                }
                for &i in &bad {
                    ivar[[f, i]] = 0.0;
                }
                nbad[f] += bad.len();
                if nbad[f] >= opts.max_bad {
                    ivar.row_mut(f).fill(0.0);
                }
                nbad_it += bad.len();
            }
        }
        if nbad_it == 0 {
            break;
        }
    }
    let iv = &ivar;
    let norm = column_median(&smooth_ff, |f, i| iv[[f, i]] > 0.0, &Array1::ones(nwave));
    smooth_ff /= &norm;

    // 2nd pass: deconvolved mean spectrum through each fiber's resolution, no rejection
    let res_all: Vec<Resolution> = (0..nfib).map(|f| frame.resolution_of(f)).collect();
    let bands: Vec<ColumnBands> = res_all.iter().map(ColumnBands::new).collect();
    let mut previous = Array2::<f64>::zeros((nfib, nwave));
    let mut previous_max_diff = 0.0;
    let mut chi2pdf = 0.0;
    let mut deconv = vec![0.0; nwave];
    for iteration in 0..opts.max_iterations {
        // A = Σ R_fᵀ diag(ivar F²) R_f, B = Σ R_fᵀ (ivar F flux) = Σ R_fᵀ diag(ivar F²)(flux/F)
        let w = Array2::from_shape_fn((nfib, nwave), |(f, i)| {
            ivar[[f, i]] * smooth_ff[[f, i]] * smooth_ff[[f, i]]
        });
        let y = Array2::from_shape_fn((nfib, nwave), |(f, i)| {
            let s = smooth_ff[[f, i]];
            if s != 0.0 {
                flux[[f, i]] / s
            } else {
                0.0
            }
        });
        let (a, b) = normal_equations(&bands, w.view(), y.view());
        deconv = solve_constrained(&a, &b).0;
        let fits: Vec<Option<FiberFit>> = (0..nfib)
            .into_par_iter()
            .map(|f| {
                if !ivar.row(f).iter().any(|&v| v > 0.0) {
                    return None;
                }
                let m = res_all[f]
                    .apply(&deconv)
                    .unwrap_or_else(|_| vec![0.0; nwave]);
                let sel: Vec<usize> = (0..nwave)
                    .filter(|&i| m[i] != 0.0 && ivar[[f, i]] > 0.0)
                    .collect();
                if sel.is_empty() {
                    return None;
                }
                let x: Vec<f64> = sel.iter().map(|&i| wave[i]).collect();
                let yy: Vec<f64> = sel.iter().map(|&i| flux[[f, i]] / m[i]).collect();
                let ww: Vec<f64> = sel.iter().map(|&i| ivar[[f, i]] * m[i] * m[i]).collect();
                let s = smooth(&wave, &x, &yy, res, &ww, true).map(|s| {
                    (0..nwave)
                        .map(|i| {
                            if ivar[[f, i]] * m[i] * m[i] > 0.0 {
                                s[i]
                            } else {
                                0.0
                            }
                        })
                        .collect()
                });
                Some((s, m))
            })
            .collect();
        let mut sum_chi2 = 0.0;
        for (f, fit) in fits.into_iter().enumerate() {
            let Some((s, m)) = fit else { continue };
            match s {
                Some(s) => smooth_ff.row_mut(f).assign(&Array1::from(s)),
                None => {
                    log::error!("spline fit failed: ivar=0 for fiber {f}");
                    ivar.row_mut(f).fill(0.0);
                }
            }
            for i in 0..nwave {
                let r = flux[[f, i]] - smooth_ff[[f, i]] * m[i];
                sum_chi2 += ivar[[f, i]] * r * r;
            }
            if smooth_ff.row(f).iter().any(|v| v.is_nan()) {
                ivar.row_mut(f).fill(0.0);
                smooth_ff.row_mut(f).fill(1.0);
            }
        }
        let iv = &ivar;
        let norm = column_median(&smooth_ff, |f, i| iv[[f, i]] > 0.0, &Array1::ones(nwave));
        for (i, &n) in norm.iter().enumerate() {
            if n != 0.0 {
                smooth_ff.column_mut(i).mapv_inplace(|v| v / n);
            }
        }
        let mut max_diff: f64 = 0.0;
        ndarray::Zip::from(&smooth_ff)
            .and(&previous)
            .and(&ivar)
            .for_each(|&s, &p, &iv| {
                if iv > 0.0 {
                    max_diff = max_diff.max((s - p).abs());
                }
            });
        previous.assign(&smooth_ff);
        let ndf = ivar.iter().filter(|&&v| v > 0.0).count() as f64
            - nwave as f64
            - nfib as f64 * (nwave as f64 / res);
        let ndf = ndf.trunc();
        chi2pdf = if ndf > 0.0 { sum_chi2 / ndf } else { 0.0 };
        log::info!("2nd pass iter {iteration}: chi2pdf={chi2pdf:.3} max diff={max_diff:.2e}");
        if max_diff < opts.accuracy {
            break;
        }
        if (max_diff - previous_max_diff).abs() < opts.accuracy * 0.1 {
            log::warn!("no significant improvement of the max difference, stopping");
            break;
        }
        previous_max_diff = max_diff;
    }

    // The lamp spectrum where no fiber measured its wavelength is set by the resolution wings
    // of the neighbouring pixels alone (ill-conditioned: ±1e6 across a range masked in every
    // fiber); store desispec's value for unconstrained wavelengths, 0, there. The solution
    // itself stays as solved for the flat below (it reproduces the measured pixels).
    let meanspec = Array1::from_shape_fn(nwave, |i| {
        if (0..nfib).any(|f| ivar[[f, i]] > 0.0 && smooth_ff[[f, i]] != 0.0) {
            deconv[i]
        } else {
            0.0
        }
    });

    // 3rd pass: unsmoothed flat at each fiber's resolution, single-worst-pixel rejection
    let ivar = frame_ivar;
    let per_fiber: Vec<(Vec<f64>, Vec<f64>, Vec<u32>)> = (0..nfib)
        .into_par_iter()
        .map(|f| {
            let mut ff = vec![1.0; nwave];
            let mut ffivar = vec![0.0; nwave];
            let mut mask = vec![0u32; nwave];
            if !ivar.row(f).iter().any(|&v| v > 0.0) {
                return (ff, ffivar, mask);
            }
            let m = res_all[f]
                .apply(&deconv)
                .unwrap_or_else(|_| vec![0.0; nwave]);
            for i in 0..nwave {
                ff[i] = if m[i] != 0.0 {
                    flux[[f, i]] / m[i]
                } else {
                    1.0
                };
                ffivar[i] = ivar[[f, i]] * m[i] * m[i];
            }
            for _ in 0..500 {
                let sel: Vec<usize> = (0..nwave).filter(|&i| ffivar[i] > 0.0).collect();
                if sel.len() < 100 {
                    break;
                }
                let x: Vec<f64> = sel.iter().map(|&i| wave[i]).collect();
                let y: Vec<f64> = sel.iter().map(|&i| ff[i]).collect();
                let w: Vec<f64> = sel.iter().map(|&i| ffivar[i]).collect();
                let Some(s) = smooth(&wave, &x, &y, res, &w, false) else {
                    mask.iter_mut().for_each(|v| *v |= specmask::BADFIBERFLAT);
                    ffivar.iter_mut().for_each(|v| *v = 0.0);
                    break;
                };
                let chi2: Vec<f64> = (0..nwave)
                    .map(|i| ffivar[i] * (ff[i] - s[i]) * (ff[i] - s[i]))
                    .collect();
                let worst = (0..nwave)
                    .filter(|&i| chi2[i] > nsig2)
                    .max_by(|&a, &b| chi2[a].total_cmp(&chi2[b]));
                match worst {
                    Some(i) => {
                        mask[i] |= specmask::BADFIBERFLAT;
                        ffivar[i] = 0.0;
                    }
                    None => break,
                }
            }
            (ff, ffivar, mask)
        })
        .collect();
    let mut fiberflat = Array2::from_shape_fn((nfib, nwave), |(f, i)| per_fiber[f].0[i]);
    let mut ffivar = Array2::from_shape_fn((nfib, nwave), |(f, i)| per_fiber[f].1[i]);
    let mut mask = Array2::from_shape_fn((nfib, nwave), |(f, i)| per_fiber[f].2[i]);
    normalise_median(&mut fiberflat, &mask, &ivar);

    // replace bad pixels by a spline over pixel index
    let rows: Vec<Option<(Vec<f64>, Vec<f64>)>> = (0..nfib)
        .into_par_iter()
        .map(|f| {
            if !ivar.row(f).iter().any(|&v| v > 0.0) {
                return None;
            }
            let mut ff = fiberflat.row(f).to_vec();
            let mut fi = ffivar.row(f).to_vec();
            let bad: Vec<usize> = (0..nwave)
                .filter(|&i| {
                    mask[[f, i]] > 0 || fi[i] == 0.0 || ff[i] < opts.minval || ff[i] > opts.maxval
                })
                .collect();
            if bad.is_empty() {
                return None;
            }
            for &i in &bad {
                fi[i] = 0.0;
            }
            let mut longest = 0;
            let mut run = 0;
            for (k, &i) in bad.iter().enumerate() {
                run = if k > 0 && bad[k - 1] + 1 == i {
                    run + 1
                } else {
                    1
                };
                longest = longest.max(run);
            }
            let sres = longest.max(100) as f64;
            let xall: Vec<f64> = (0..nwave).map(|i| i as f64).collect();
            let sel: Vec<usize> = (0..nwave).filter(|&i| fi[i] > 0.0).collect();
            if sel.is_empty() {
                return Some((ff, fi));
            }
            let x: Vec<f64> = sel.iter().map(|&i| i as f64).collect();
            let y: Vec<f64> = sel.iter().map(|&i| ff[i]).collect();
            let w: Vec<f64> = sel.iter().map(|&i| fi[i]).collect();
            match spline_fit(&xall, &x, &y, sres, &w) {
                Ok(s) => bad.iter().for_each(|&i| ff[i] = s[i]),
                Err(_) => bad.iter().for_each(|&i| {
                    ff[i] = 1.0;
                    fi[i] = 0.0;
                }),
            }
            Some((ff, fi))
        })
        .collect();
    for (f, r) in rows.into_iter().enumerate() {
        if let Some((ff, fi)) = r {
            fiberflat.row_mut(f).assign(&Array1::from(ff));
            ffivar.row_mut(f).assign(&Array1::from(fi));
        }
    }
    normalise_median(&mut fiberflat, &mask, &ivar);

    // systematic floor of 0.35% (calibrated on simulations by desispec)
    ffivar.mapv_inplace(|v| {
        if v > 0.0 {
            1.0 / (1.0 / v + 0.0035 * 0.0035)
        } else {
            0.0
        }
    });
    ndarray::Zip::from(&mut mask)
        .and(&ffivar)
        .for_each(|m, &v| {
            if v == 0.0 {
                *m |= specmask::BADFIBERFLAT
            }
        });
    FiberFlat {
        wave: frame.wave.clone(),
        fiberflat,
        ivar: ffivar,
        mask,
        meanspec,
        chi2pdf: Some(chi2pdf),
        fibermap: Some(frame.fibermap.clone()),
        header: frame.header.clone(),
    }
}

/// Divides by the per-wavelength median over unmasked fibers with ivar > 0.
fn normalise_median(ff: &mut Array2<f64>, mask: &Array2<u32>, ivar: &Array2<f64>) {
    let norm = column_median(
        ff,
        |f, i| mask[[f, i]] == 0 && ivar[[f, i]] > 0.0,
        &Array1::ones(ff.ncols()),
    );
    for (i, &n) in norm.iter().enumerate() {
        if n != 0.0 {
            ff.column_mut(i).mapv_inplace(|v| v / n);
        }
    }
}
