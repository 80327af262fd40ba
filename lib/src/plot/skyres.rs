//! Sky-subtraction residuals of the sky fibers of a frame: what is left after
//! `flux − sky` in units of its noise. A good sky model leaves pulls of unit scatter around
//! zero at every wavelength, sky lines included; structure in the mean over fibers is
//! model error.

use thiserror::Error;

use crate::io::frame::Frame;
use crate::io::sky::SkyModel;

#[derive(Debug, Error)]
pub enum SkyResError {
    #[error("frame ({0} spectra × {1} wavelengths) and sky model ({2} × {3}) do not match")]
    Shape(usize, usize, usize, usize),
    #[error("the frame's fibermap has no sky fibers (OBJTYPE SKY)")]
    NoSkyFibers,
}

/// Pulls of the sky fibers.
#[derive(Debug, Clone)]
pub struct SkyResiduals {
    /// Wavelength, Angstrom. `[nwave]`
    pub wave: Vec<f64>,
    /// FIBER of each sky fiber. `[nsky]`
    pub fibers: Vec<i32>,
    /// `(flux − sky)/σ` per sky fiber, `None` where masked. `[nsky][nwave]`
    pub pull: Vec<Vec<Option<f64>>>,
    /// Mean pull over the sky fibers with data at each wavelength. `[nwave]`
    pub mean: Vec<Option<f64>>,
    /// Σ pull² / N over all unmasked sky-fiber pixels (1 for a perfect model and errors).
    pub chi2_per_pixel: f64,
}

/// Residuals of the sky fibers of `frame` (fiber-flat already applied when the sky model was
/// computed from a flat-fielded frame) against `sky`, as desispec `subtract_sky` forms them:
/// the sky scaled by its per-fiber throughput correction when the model has one, and
/// σ² = 1/ivar_frame + 1/ivar_sky; masked frame or sky pixels drop out.
pub fn sky_residuals(frame: &Frame, sky: &SkyModel) -> Result<SkyResiduals, SkyResError> {
    let (ns, nw) = (frame.nspec(), frame.nwave());
    if sky.nspec() != ns || sky.nwave() != nw {
        return Err(SkyResError::Shape(ns, nw, sky.nspec(), sky.nwave()));
    }
    let rows = frame.fibermap.sky_rows();
    if rows.is_empty() {
        return Err(SkyResError::NoSkyFibers);
    }
    let all_fibers = frame.fibermap.fibers();
    let mut pull = Vec::with_capacity(rows.len());
    let (mut s2, mut n2) = (0.0, 0usize);
    for &i in &rows {
        let tc = sky
            .throughput_corrections
            .as_ref()
            .map(|t| t[i])
            .filter(|t| t.is_finite() && *t > 0.0)
            .unwrap_or(1.0);
        let p: Vec<Option<f64>> = (0..nw)
            .map(|j| {
                let (fi, si) = (frame.ivar[[i, j]], sky.ivar[[i, j]]);
                let bad =
                    fi <= 0.0 || si <= 0.0 || frame.mask[[i, j]] != 0 || sky.mask[[i, j]] != 0;
                if bad {
                    return None;
                }
                let sigma = (1.0 / fi + 1.0 / si).sqrt();
                let v = (frame.flux[[i, j]] - tc * sky.flux[[i, j]]) / sigma;
                v.is_finite().then_some(v)
            })
            .collect();
        for v in p.iter().flatten() {
            s2 += v * v;
            n2 += 1;
        }
        pull.push(p);
    }
    let mean = (0..nw)
        .map(|j| {
            let (mut s, mut n) = (0.0, 0usize);
            for p in &pull {
                if let Some(v) = p[j] {
                    s += v;
                    n += 1;
                }
            }
            (n > 0).then(|| s / n as f64)
        })
        .collect();
    Ok(SkyResiduals {
        wave: frame.wave.to_vec(),
        fibers: rows
            .iter()
            .map(|&i| all_fibers.get(i).copied().unwrap_or(i as i32))
            .collect(),
        pull,
        mean,
        chi2_per_pixel: if n2 > 0 { s2 / n2 as f64 } else { f64::NAN },
    })
}
