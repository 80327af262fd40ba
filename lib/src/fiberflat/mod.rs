//! Fiber flat (desispec `fiberflat.py` of desispec 0.70, reference/calibration.md §2):
//! computing it from a continuum-lamp frame ([`compute`]), averaging several into the nightly
//! flat ([`average_fiberflat`]) and applying it to a frame ([`apply_fiberflat`]).

pub mod compute;
pub mod spline;

pub use compute::{compute_fiberflat, FiberFlatOptions};

use ndarray::Array2;

use crate::io::fiberflat::FiberFlat;
use crate::io::frame::Frame;
use crate::maskbits::specmask;
use crate::sky::{allclose, interp};

/// Errors of the fiber-flat stages.
#[derive(Debug, thiserror::Error)]
pub enum FiberFlatError {
    /// Frame and flat (or two flats) do not match.
    #[error("{0}")]
    Mismatch(String),
    /// Nothing to average.
    #[error("no fiber flat to average")]
    Empty,
}

/// desispec `apply_fiberflat`: `flux /= F` where F > 0 and
/// `ivar = (ivar>0)(C>0)(F>0) / [1/(ivar·F²) + flux²/(C·F⁴)]` (C the flat's ivar); pixels where
/// the flat is 0, has ivar 0 or is masked get BADFIBERFLAT. When the frame header has
/// HELIOCOR, each fiber's flat is first interpolated from `wave·HELIOCOR` onto the frame grid.
pub fn apply_fiberflat(frame: &mut Frame, ff: &FiberFlat) -> Result<(), FiberFlatError> {
    if frame.nspec() != ff.nspec()
        || !allclose(
            frame.wave.as_slice().unwrap_or(&[]),
            ff.wave.as_slice().unwrap_or(&[]),
        )
    {
        return Err(FiberFlatError::Mismatch(format!(
            "frame ({} spectra) and fiber flat ({} spectra) do not have the same fibers and wavelength arrays",
            frame.nspec(),
            ff.nspec()
        )));
    }
    let mut flat = ff.fiberflat.clone();
    if let Some(h) = frame.header.get_f64("HELIOCOR") {
        log::info!("applying the heliocentric factor {h} to the fiber flat wavelengths");
        for f in 0..ff.nspec() {
            let good: Vec<usize> = (0..ff.nwave()).filter(|&j| ff.ivar[[f, j]] > 0.0).collect();
            if good.is_empty() {
                continue;
            }
            let x: Vec<f64> = good.iter().map(|&j| ff.wave[j] * h).collect();
            let y: Vec<f64> = good.iter().map(|&j| ff.fiberflat[[f, j]]).collect();
            for (j, v) in flat.row_mut(f).iter_mut().enumerate() {
                *v = interp(frame.wave[j], &x, &y);
            }
        }
    }
    let one_if_zero = |v: f64| if v == 0.0 { 1.0 } else { 0.0 };
    let new_ivar = Array2::from_shape_fn(frame.ivar.dim(), |(f, j)| {
        let (iv, fl) = (frame.ivar[[f, j]], frame.flux[[f, j]]);
        let (c, ffv) = (ff.ivar[[f, j]], flat[[f, j]]);
        if !(iv > 0.0 && c > 0.0 && ffv > 0.0) {
            return 0.0;
        }
        let f2 = ffv * ffv;
        let cf4 = c * f2 * f2;
        1.0 / (1.0 / ((iv + one_if_zero(iv)) * (f2 + one_if_zero(ffv)))
            + fl * fl / (cf4 + one_if_zero(c * ffv)))
    });
    frame.ivar = new_ivar;
    ndarray::Zip::from(&mut frame.flux)
        .and(&flat)
        .for_each(|v, &f| {
            if f > 0.0 {
                *v /= f
            }
        });
    ndarray::Zip::from(&mut frame.mask)
        .and(&flat)
        .and(&ff.ivar)
        .and(&ff.mask)
        .for_each(|m, &f, &c, &fm| {
            if f == 0.0 || c == 0.0 || fm != 0 {
                *m |= specmask::BADFIBERFLAT;
            }
        });
    Ok(())
}

/// desispec `average_fiberflat`: the inverse-variance weighted mean of two flats, or the
/// masked median of three or more (ivar summed × 2/π for the median's lower efficiency). A
/// pixel's mask is cleared where any input is unmasked.
pub fn average_fiberflat(flats: &[FiberFlat]) -> Result<FiberFlat, FiberFlatError> {
    let first = flats.first().ok_or(FiberFlatError::Empty)?;
    if flats.len() == 1 {
        log::warn!("only one fiber flat to average");
        return Ok(first.clone());
    }
    for f in &flats[1..] {
        if f.fiberflat.dim() != first.fiberflat.dim()
            || !allclose(
                first.wave.as_slice().unwrap_or(&[]),
                f.wave.as_slice().unwrap_or(&[]),
            )
        {
            return Err(FiberFlatError::Mismatch(
                "fiber flats do not have the same shape and wavelength arrays".into(),
            ));
        }
    }
    let dim = first.fiberflat.dim();
    let (fiberflat, ivar) = if flats.len() > 2 {
        let mut med = Array2::zeros(dim);
        let mut iv = Array2::zeros(dim);
        for ((i, j), m) in med.indexed_iter_mut() {
            // masked median: the median of the unmasked values, of all values if none is
            let good: Vec<f64> = flats
                .iter()
                .filter(|f| f.mask[[i, j]] == 0)
                .map(|f| f.fiberflat[[i, j]])
                .collect();
            *m = if good.is_empty() {
                crate::stats::median(flats.iter().map(|f| f.fiberflat[[i, j]]))
            } else {
                crate::stats::median(good)
            };
            iv[[i, j]] =
                flats.iter().map(|f| f.ivar[[i, j]]).sum::<f64>() * (2.0 / std::f64::consts::PI);
        }
        (med, iv)
    } else {
        let mut sw = Array2::<f64>::zeros(dim);
        let mut swf = Array2::<f64>::zeros(dim);
        for f in flats {
            for ((i, j), w) in sw.indexed_iter_mut() {
                let wt = if f.mask[[i, j]] == 0 {
                    f.ivar[[i, j]]
                } else {
                    0.0
                };
                *w += wt;
                swf[[i, j]] += wt * f.fiberflat[[i, j]];
            }
        }
        let ff = Array2::from_shape_fn(dim, |(i, j)| {
            let s = sw[[i, j]];
            swf[[i, j]] / (s + if s == 0.0 { 1.0 } else { 0.0 })
        });
        (ff, sw)
    };
    let mut mask = first.mask.clone();
    for f in &flats[1..] {
        ndarray::Zip::from(&mut mask)
            .and(&f.mask)
            .for_each(|m, &o| {
                if *m > 0 && o > 0 {
                    *m |= o;
                }
                if o == 0 {
                    *m = 0;
                }
            });
    }
    // mean lamp spectrum, weighted as the flats were
    let nw = first.nwave();
    let mut sw = vec![0.0; nw];
    let mut swf = vec![0.0; nw];
    for f in flats {
        for j in 0..nw {
            let w: f64 = (0..f.nspec())
                .map(|i| {
                    let ok = f.mask[[i, j]] == 0;
                    if flats.len() > 2 {
                        f64::from(u8::from(ok && f.ivar[[i, j]] > 0.0))
                    } else if ok {
                        f.ivar[[i, j]]
                    } else {
                        0.0
                    }
                })
                .sum();
            sw[j] += w;
            swf[j] += w * f.meanspec[j];
        }
    }
    let meanspec = if sw.iter().any(|&s| s > 0.0) {
        ndarray::Array1::from_iter((0..nw).map(|j| if sw[j] > 0.0 { swf[j] / sw[j] } else { 0.0 }))
    } else {
        first.meanspec.clone()
    };
    Ok(FiberFlat {
        wave: first.wave.clone(),
        fiberflat,
        ivar,
        mask,
        meanspec,
        chi2pdf: None,
        fibermap: first.fibermap.clone(),
        header: first.header.clone(),
    })
}
