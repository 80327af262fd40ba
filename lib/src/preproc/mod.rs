//! Preprocessing of one camera of a raw exposure into a preprocessed image (electrons,
//! inverse variance, CCD mask, read noise), in desispec's order of operations
//! (`desispec.preproc.preproc`, reference/calibration.md §1.3):
//!
//! 1. subtract the master bias image (raw shape, ADU) from the raw pixels, overscan included;
//! 2. per amplifier: overscan level and read noise from BIASSEC with the clipped statistic
//!    (§1.2; one average per amp, `OMETH = RMETH = AVERAGE`, and the `OSTEP` score from the
//!    per-row levels), master-bias noise correction `rn² += σ_bias(DATASEC)² − σ_bias(BIASSEC)²`,
//!    saturation on the bias-subtracted raw values, `image = (raw − overscan)·gain`, bias shot
//!    noise `rn² += max(bias·gain, 0)`, BADAMP for `badamps`;
//! 3. Poisson variance `max(image, 0)` taken before the dark and the pixel flat;
//! 4. dark subtraction (electrons) with `rn² += σ_dark²` per amp;
//! 5. pixel flat: divide image and read noise where the flat exceeds 0.001 (PIXFLATZERO
//!    elsewhere, PIXFLATLOW below 0.1);
//! 6. `ivar = 1/(pvar + rn²)`, BADREADNOISE where rn > 15 e⁻;
//! 7. cosmic rays ([`cosmics`]).
//!
//! Not done (desispec needs its calibration YAML for them): inter-amp crosstalk, dark trails,
//! per-row overscan (`USE_ORSEC`), CTE correction, model variance, scattered light.

pub mod calib;
pub mod combine;
pub mod cosmics;
pub mod overscan;

use ndarray::Array2;
use rayon::prelude::*;

use crate::io::header::{Header, HeaderValue};
use crate::io::preproc::PreprocImage;
use crate::io::raw::{AmpInfo, RawCamera, Section};
use crate::maskbits::ccdmask;
use cosmics::CosmicParams;
use overscan::{calc_overscan, overscan_step};

/// Problems with the inputs of a preprocessing (the CLI adds the file names).
#[derive(Debug, thiserror::Error)]
pub enum PreprocError {
    #[error("{what} shape {got:?} differs from {want}")]
    Shape {
        what: &'static str,
        got: (usize, usize),
        want: String,
    },
    #[error("camera {0}: no cosmic-ray PSF gradients for band '{1}' (expected b, r or z)")]
    UnknownBand(String, char),
    #[error("bad amplifier '{0}' is not one of the camera's amplifiers {1}")]
    BadAmp(char, String),
    #[error("{0}")]
    Input(String),
}

/// A dark current image, electrons/second (trimmed, image shape) as desispec's dark files,
/// or ADU/second in the raw shape (desispec's untrimmed darks, converted with the amp gain).
#[derive(Debug, Clone)]
pub enum Dark {
    Trimmed(Array2<f32>),
    Untrimmed(Array2<f32>),
}

/// Calibration images; `None` skips the step (desispec `--nobias` etc.).
#[derive(Debug, Clone, Default)]
pub struct CalibImages {
    /// Master bias, ADU, raw shape `[raw_ny, raw_nx]`.
    pub bias: Option<Array2<f32>>,
    /// Dark current per second.
    pub dark: Option<Dark>,
    /// Pixel flat, image shape `[ny, nx]`, dimensionless.
    pub pixflat: Option<Array2<f32>>,
    /// Bad-pixel mask (ccdmask bits), image shape.
    pub mask: Option<Array2<u32>>,
}

/// Options of [`preprocess`].
#[derive(Debug, Clone, Default)]
pub struct PreprocOptions {
    /// Cosmic-ray rejection parameters; `None` = no cosmic-ray masking.
    pub cosmics: Option<CosmicParams>,
    /// Amplifier letters to flag BADAMP (e.g. "AC").
    pub badamps: String,
    /// Exposure time for the dark, seconds (the EXPTIME of the exposure).
    pub exptime: f64,
    /// Names of the calibration files, recorded as DEPNAMnn/DEPVERnn (CCD_CALIB_BIAS, …).
    pub calib_names: Vec<(String, String)>,
}

/// What was measured on one amplifier (the header keywords desispec writes).
#[derive(Debug, Clone, PartialEq)]
pub struct AmpResult {
    pub name: String,
    /// electrons/ADU (GAINx)
    pub gain: f64,
    /// ADU, bias-subtracted raw (OVERSCNx)
    pub overscan: f64,
    /// electrons (OBSRDNx), including the master-bias noise correction
    pub read_noise: f64,
    /// ADU (OSTEPx)
    pub ostep: f64,
    /// ADU, including bias (SATULEVx)
    pub saturation_adu: f64,
    /// electrons (SATUELEx)
    pub saturation_e: f64,
}

/// Preprocesses `cam`. `primary` holds the exposure keywords merged into the output header
/// (after the camera's own). Returns the image and the per-amp results.
pub fn preprocess(
    cam: &RawCamera,
    primary: &Header,
    calib: &CalibImages,
    opts: &PreprocOptions,
) -> Result<(PreprocImage, Vec<AmpResult>), PreprocError> {
    let (ny, nx) = cam.image_shape();
    let raw_shape = cam.image.dim();
    let check = |what: &'static str, got: (usize, usize), want: (usize, usize), label: &str| {
        if got == want {
            Ok(())
        } else {
            Err(PreprocError::Shape {
                what,
                got,
                want: format!("the {label} shape {want:?}"),
            })
        }
    };
    if let Some(b) = &calib.bias {
        check("bias", b.dim(), raw_shape, "raw")?;
    }
    if let Some(p) = &calib.pixflat {
        check("pixflat", p.dim(), (ny, nx), "image")?;
    }
    if let Some(m) = &calib.mask {
        check("mask", m.dim(), (ny, nx), "image")?;
    }
    match &calib.dark {
        Some(Dark::Trimmed(d)) => check("dark", d.dim(), (ny, nx), "image")?,
        Some(Dark::Untrimmed(d)) => check("dark", d.dim(), raw_shape, "raw")?,
        None => {}
    }
    let amp_names: String = cam.amps.iter().map(|a| a.name.as_str()).collect();
    for c in opts.badamps.chars() {
        if !cam.amps.iter().any(|a| a.name.starts_with(c)) {
            return Err(PreprocError::BadAmp(c, amp_names.clone()));
        }
    }
    let band = cam.camera.chars().next().unwrap_or('?');
    let grad = match &opts.cosmics {
        Some(_) => Some(
            cosmics::psf_gradients(band, cam.header.get_str("CCDTYPE").as_deref())
                .ok_or_else(|| PreprocError::UnknownBand(cam.camera.clone(), band))?,
        ),
        None => None,
    };

    // raw − bias, f64 (desispec converts to float64 and subtracts the bias first)
    let raw_at = |y: usize, x: usize| -> f64 {
        let r = f64::from(cam.image[[y, x]]);
        match &calib.bias {
            Some(b) => r - f64::from(b[[y, x]]),
            None => r,
        }
    };
    let exptime = opts.exptime;
    // desispec skips an all-zero dark (no subtraction, no noise term)
    let dark = calib.dark.as_ref().filter(|d| {
        let a = match d {
            Dark::Trimmed(a) | Dark::Untrimmed(a) => a,
        };
        a.iter().any(|&v| v != 0.0) && exptime != 0.0
    });

    let mut amps = Vec::with_capacity(cam.amps.len());
    let mut per_amp = Vec::with_capacity(cam.amps.len());
    for a in &cam.amps {
        let gain = match a.gain {
            Some(g) => g,
            None => {
                log::error!(
                    "camera {} missing keyword GAIN{}; using 1.0",
                    cam.camera,
                    a.name
                );
                1.0
            }
        };
        let saturation_adu = a.saturation.unwrap_or(65535.0);
        let b = a.biassec;
        let rows: Vec<Vec<f64>> = (b.y0..b.y1)
            .into_par_iter()
            .map(|y| (b.x0..b.x1).map(|x| raw_at(y, x)).collect())
            .collect();
        let per_row: Vec<f64> = rows.par_iter().map(|r| calc_overscan(r).0).collect();
        let ostep = overscan_step(&per_row);
        let all: Vec<f64> = rows.into_iter().flatten().collect();
        let (level, mut rn_adu) = calc_overscan(&all);
        if let Some(bias) = &calib.bias {
            let sec_vals = |s: &Section| -> Vec<f64> {
                (s.y0..s.y1)
                    .flat_map(|y| (s.x0..s.x1).map(move |x| f64::from(bias[[y, x]])))
                    .collect()
            };
            let (_, sd) = calc_overscan(&sec_vals(&a.datasec));
            let (_, so) = calc_overscan(&sec_vals(&a.biassec));
            rn_adu = (rn_adu * rn_adu + sd * sd - so * so).sqrt();
        }
        let read_noise = rn_adu * gain;
        if let Some(expected) = a.read_noise {
            if !(0.9 * expected..=1.2 * expected).contains(&read_noise) {
                log::warn!(
                    "camera {} amp {} measured read noise {read_noise:.2} e vs expected {expected:.2}",
                    cam.camera,
                    a.name
                );
            }
        }
        log::info!(
            "camera {} amp {}: overscan {level:.3} ADU, read noise {read_noise:.3} e, OSTEP {ostep:.3} ADU",
            cam.camera,
            a.name
        );
        // dark in electrons over this amp's CCDSEC, and its clipped rms
        let dark_e: Option<Array2<f64>> = dark.map(|d| {
            let c = a.ccdsec;
            Array2::from_shape_fn((c.nrows(), c.ncols()), |(r, k)| match d {
                Dark::Trimmed(t) => f64::from(t[[c.y0 + r, c.x0 + k]]) * exptime,
                Dark::Untrimmed(u) => {
                    f64::from(u[[a.datasec.y0 + r, a.datasec.x0 + k]]) * exptime * gain
                }
            })
        });
        let dark_rms = dark_e
            .as_ref()
            .map(|d| calc_overscan(d.as_slice().expect("contiguous")).1)
            .unwrap_or(0.0);
        amps.push(AmpResult {
            name: a.name.clone(),
            gain,
            overscan: level,
            read_noise,
            ostep,
            saturation_adu,
            saturation_e: gain * (saturation_adu - level),
        });
        per_amp.push(AmpWork {
            amp: a,
            level,
            gain,
            saturation_adu,
            read_noise,
            dark_e,
            dark_rms,
            badamp: opts.badamps.chars().any(|c| a.name.starts_with(c)),
        });
    }

    // the pixel loop: rows in parallel, each pixel independent
    let t0 = std::time::Instant::now();
    let mut image = Array2::<f32>::zeros((ny, nx));
    let mut ivar = Array2::<f32>::zeros((ny, nx));
    let mut readnoise = Array2::<f32>::zeros((ny, nx));
    let mut mask = calib
        .mask
        .clone()
        .unwrap_or_else(|| Array2::zeros((ny, nx)));
    let img_s = image.as_slice_mut().expect("contiguous");
    let iv_s = ivar.as_slice_mut().expect("contiguous");
    let rn_s = readnoise.as_slice_mut().expect("contiguous");
    let mk_s = mask.as_slice_mut().expect("contiguous");
    img_s
        .par_chunks_mut(nx)
        .zip(iv_s.par_chunks_mut(nx))
        .zip(rn_s.par_chunks_mut(nx))
        .zip(mk_s.par_chunks_mut(nx))
        .enumerate()
        .for_each(|(y, (((img, iv), rn), mk))| {
            for w in &per_amp {
                let c = w.amp.ccdsec;
                if y < c.y0 || y >= c.y1 {
                    continue;
                }
                let r = y - c.y0;
                let ry = w.amp.datasec.y0 + r;
                let raw_row = cam.image.row(ry);
                let bias_row = calib.bias.as_ref().map(|b| b.row(ry));
                for k in 0..c.ncols() {
                    let x = c.x0 + k;
                    let rx = w.amp.datasec.x0 + k;
                    // raw − bias as `raw_at`, from this row
                    let raw = match &bias_row {
                        Some(b) => f64::from(raw_row[rx]) - f64::from(b[rx]),
                        None => f64::from(raw_row[rx]),
                    };
                    let mut m = mk[x];
                    if raw >= w.saturation_adu {
                        m |= ccdmask::SATURATED as u32;
                    }
                    if w.badamp {
                        m |= ccdmask::BADAMP as u32;
                    }
                    let mut value = (raw - w.level) * w.gain;
                    let mut rn2 = w.read_noise * w.read_noise;
                    if let Some(b) = &bias_row {
                        let be = f64::from(b[rx]) * w.gain;
                        rn2 += be.max(0.0);
                    }
                    let mut pvar = value.max(0.0);
                    if let Some(d) = &w.dark_e {
                        value -= d[[r, k]];
                        rn2 += w.dark_rms * w.dark_rms;
                    }
                    let mut rnv = rn2.sqrt();
                    if let Some(pf) = &calib.pixflat {
                        let f = f64::from(pf[[y, x]]);
                        if f > 0.001 {
                            value /= f;
                            rnv /= f;
                            pvar /= f * f;
                        } else {
                            m |= ccdmask::PIXFLATZERO as u32;
                        }
                        if f > 0.0 && f < 0.1 {
                            m |= ccdmask::PIXFLATLOW as u32;
                        }
                    }
                    let var = pvar + rnv * rnv;
                    if rnv > 15.0 {
                        m |= ccdmask::BADREADNOISE as u32;
                    }
                    img[x] = value as f32;
                    rn[x] = rnv as f32;
                    iv[x] = if var > 0.0 { (1.0 / var) as f32 } else { 0.0 };
                    mk[x] = m;
                }
            }
        });

    log::debug!("pixel loop {:.3} s", t0.elapsed().as_secs_f64());
    if let (Some(p), Some(g)) = (&opts.cosmics, grad) {
        let cr = cosmics::reject_cosmic_rays(image.view(), ivar.view(), mask.view(), g, p);
        let n = cr.iter().filter(|&&b| b).count();
        log::info!("camera {}: {n} pixels masked as cosmic rays", cam.camera);
        ndarray::Zip::from(&mut mask).and(&cr).for_each(|m, &c| {
            if c {
                *m |= ccdmask::COSMIC as u32;
            }
        });
    }
    if mask.iter().all(|&m| m != 0) {
        log::error!("camera {} is entirely masked", cam.camera);
    }

    let header = output_header(cam, primary, &amps, opts);
    Ok((
        PreprocImage {
            image,
            ivar,
            mask,
            readnoise: Some(readnoise),
            header,
            fibermap: None,
        },
        amps,
    ))
}

struct AmpWork<'a> {
    amp: &'a AmpInfo,
    level: f64,
    gain: f64,
    saturation_adu: f64,
    read_noise: f64,
    dark_e: Option<Array2<f64>>,
    dark_rms: f64,
    badamp: bool,
}

/// The output header: the camera HDU's keywords (section keywords put back), the per-amp
/// results desispec records, the calibration dependencies, then the primary keywords the
/// camera header lacks (desispec `meta.extend(primary_header, unique=True)`).
fn output_header(
    cam: &RawCamera,
    primary: &Header,
    amps: &[AmpResult],
    opts: &PreprocOptions,
) -> Header {
    let mut h = cam.header.clone();
    h.set("CAMERA", cam.camera.as_str().into());
    for (a, r) in cam.amps.iter().zip(amps) {
        let n = &a.name;
        let secs = [
            ("DATASEC", Some(a.datasec)),
            ("CCDSEC", Some(a.ccdsec)),
            ("BIASSEC", Some(a.biassec)),
            ("ORSEC", a.orsec),
            ("PRESEC", a.presec),
        ];
        for (k, s) in secs {
            if let Some(s) = s {
                h.set(&format!("{k}{n}"), s.to_iraf().into());
            }
        }
        if let Some(rn) = a.read_noise {
            h.set(&format!("RDNOISE{n}"), rn.into());
        }
        if let Some(s) = a.saturation {
            h.set(&format!("SATURLEV{n}"), s.into());
        }
        h.set(&format!("GAIN{n}"), r.gain.into());
        h.set(&format!("SATULEV{n}"), r.saturation_adu.into());
        h.set(&format!("OSTEP{n}"), r.ostep.into());
        h.set(&format!("OMETH{n}"), "AVERAGE".into());
        h.set(&format!("RMETH{n}"), "AVERAGE".into());
        h.set(&format!("OVERSCN{n}"), r.overscan.into());
        h.set(&format!("OBSRDN{n}"), r.read_noise.into());
        h.set(&format!("SATUELE{n}"), r.saturation_e.into());
    }
    if !opts.badamps.is_empty() {
        h.set("BADAMPS", opts.badamps.as_str().into());
    }
    for (name, value) in &opts.calib_names {
        set_dependency(&mut h, name, value);
    }
    if h.get("EXPTIME").is_none() {
        h.set("EXPTIME", opts.exptime.into());
    }
    for (k, v) in primary.cards() {
        if h.get(k).is_none() {
            h.set(k, v.clone());
        }
    }
    h
}

/// desiutil `depend.setdep`: record `name = value` as DEPNAMnn/DEPVERnn (replacing an
/// existing entry of the same name).
pub fn set_dependency(h: &mut Header, name: &str, value: &str) {
    for i in 0..100 {
        let (kn, kv) = (format!("DEPNAM{i:02}"), format!("DEPVER{i:02}"));
        match h.get(&kn) {
            Some(HeaderValue::Str(s)) if s == name => {
                h.set(&kv, value.into());
                return;
            }
            Some(_) => continue,
            None => {
                h.set(&kn, name.into());
                h.set(&kv, value.into());
                return;
            }
        }
    }
}
