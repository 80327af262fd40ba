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
use crate::stats::{allclose, interp};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::header::Header;
    use ndarray::Array1;

    fn flat_for(frame: &Frame, value: f64, ivar: f64) -> FiberFlat {
        let dim = frame.flux.dim();
        FiberFlat {
            wave: frame.wave.clone(),
            fiberflat: Array2::from_elem(dim, value),
            ivar: Array2::from_elem(dim, ivar),
            mask: Array2::zeros(dim),
            meanspec: Array1::ones(frame.nwave()),
            chi2pdf: None,
            fibermap: None,
            header: Header::default(),
        }
    }

    #[test]
    fn apply_fiberflat_propagates_the_variance_of_both() {
        let mut fr = crate::sky::tests::tiny_frame("r0");
        fr.flux.fill(10.0);
        fr.ivar.fill(4.0);
        let mut ff = flat_for(&fr, 2.0, 100.0);
        ff.fiberflat[[0, 1]] = 0.0;
        ff.ivar[[0, 2]] = 0.0;
        ff.mask[[0, 3]] = specmask::BADFIBERFLAT;
        apply_fiberflat(&mut fr, &ff).unwrap();
        // F' = F/C; Var = Var(F)/C² + F² Var(C)/C⁴ = 1/16 + 100/(100·16) = 1/8
        assert!((fr.flux[[0, 0]] - 5.0).abs() < 1e-15);
        assert!((fr.ivar[[0, 0]] - 8.0).abs() < 1e-12);
        // flat 0: flux untouched, ivar 0, flagged; flat ivar 0: divided, ivar 0, flagged
        assert_eq!((fr.flux[[0, 1]], fr.ivar[[0, 1]]), (10.0, 0.0));
        assert_eq!((fr.flux[[0, 2]], fr.ivar[[0, 2]]), (5.0, 0.0));
        for j in 1..4 {
            assert!(fr.mask[[0, j]] & specmask::BADFIBERFLAT != 0);
        }
        assert_eq!(fr.mask[[0, 0]], 0);
        // a flat on another grid is refused
        let mut fr2 = crate::sky::tests::tiny_frame("r0");
        let mut ff2 = flat_for(&fr2, 1.0, 1.0);
        ff2.wave += 1.0;
        assert!(apply_fiberflat(&mut fr2, &ff2).is_err());
    }

    #[test]
    fn average_of_three_is_a_masked_median() {
        let fr = crate::sky::tests::tiny_frame("r0");
        let mut a = flat_for(&fr, 1.0, 1.0);
        let b = flat_for(&fr, 1.2, 1.0);
        let c = flat_for(&fr, 0.9, 1.0);
        a.mask[[0, 0]] = specmask::BADFIBERFLAT;
        let avg = average_fiberflat(&[a, b, c]).unwrap();
        assert!((avg.fiberflat[[1, 1]] - 1.0).abs() < 1e-15);
        assert!((avg.fiberflat[[0, 0]] - 1.05).abs() < 1e-12);
        assert!((avg.ivar[[1, 1]] - 3.0 * 2.0 / std::f64::consts::PI).abs() < 1e-12);
        assert_eq!(avg.mask[[0, 0]], 0);
        assert!(matches!(average_fiberflat(&[]), Err(FiberFlatError::Empty)));
    }
}
