//! Grouping cframes into a DESI spectra file and the per-camera inverse-variance coadd
//! (desispec `spectra`/`coaddition.coadd`; reference/calibration.md §5.3–5.4).
//!
//! Grouping: one spectra row per (exposure, fiber), exposures in ascending EXPID, spectrographs
//! ascending within an exposure; bands from the cameras' letters. Every band has the same rows: a
//! camera missing for an exposure gives ivar 0 and mask NODATA for those rows.
//!
//! Coadd (per band, per TARGETID in first-appearance order, as `coadd_fibermap` orders them):
//! exposures whose FIBERSTATUS has a fatal bit for the band are excluded; with masked ivar
//! `w_e = ivar_e·[mask_e = 0]`: `ivar = Σ w_e`, `flux = Σ w_e f_e / ivar`; where every exposure is
//! masked the unmasked ivar is used instead (desispec's fallback) and the mask is the OR of the
//! inputs, else 0. Resolution: `R[d, j] = Σ ivar_e R_e[d, j] / Σ ivar_e` per column j with the
//! unmasked ivar (desispec), the plain mean where that sum is 0. Cosmic-ray cross-exposure
//! masking, COADD_NORM and coadd_cameras are not implemented.

use std::collections::BTreeSet;

use anyhow::{bail, Context};
use ndarray::{s, Array2, Array3};
use rayon::prelude::*;

use crate::io::fits::{Column, ColumnData};
use crate::io::frame::Frame;
use crate::io::spectra::{coadd_fibermap, Band, Spectra};
use crate::io::table::Table;
use crate::maskbits::{fibermask, specmask};

/// Largest wavelength difference, Angstrom, between frames of one band (desispec's
/// coadd_cameras alignment tolerance).
pub const WAVE_TOL: f64 = 1e-4;

/// A cframe with the name it was read from (for error messages).
pub struct NamedFrame {
    pub name: String,
    pub frame: Frame,
}

struct Key {
    band: char,
    spectro: u32,
    expid: i64,
}

fn key_of(nf: &NamedFrame) -> anyhow::Result<Key> {
    let cam = nf
        .frame
        .camera()
        .with_context(|| format!("{}: FLUX header has no CAMERA", nf.name))?;
    let mut ch = cam.chars();
    let (Some(band), Some(sp), None) =
        (ch.next(), ch.next().and_then(|c| c.to_digit(10)), ch.next())
    else {
        bail!("{}: CAMERA '{cam}' is not b0…z9", nf.name);
    };
    if !matches!(band, 'b' | 'r' | 'z') {
        bail!("{}: CAMERA '{cam}' is not b0…z9", nf.name);
    }
    let expid = nf
        .frame
        .expid()
        .with_context(|| format!("{}: FLUX header has no EXPID", nf.name))?;
    Ok(Key {
        band,
        spectro: sp,
        expid,
    })
}

/// Groups cframes (any order; b/r/z of one or more exposures and spectrographs) into spectra.
/// `tile`, if given, must equal every frame's TILEID keyword (when it has one) and is written
/// to the header. Errors (one line, naming the file) for missing CAMERA/EXPID, duplicate
/// cameras, wavelength grids that differ by more than [`WAVE_TOL`] within a band, and frames
/// of one (exposure, spectrograph) with different TARGETIDs.
pub fn group(frames: &[NamedFrame], tile: Option<i64>) -> anyhow::Result<Spectra> {
    if frames.is_empty() {
        bail!("no cframes given");
    }
    let keys = frames
        .iter()
        .map(key_of)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bands: Vec<char> = ['b', 'r', 'z']
        .into_iter()
        .filter(|b| keys.iter().any(|k| k.band == *b))
        .collect();
    let slots: BTreeSet<(i64, u32)> = keys.iter().map(|k| (k.expid, k.spectro)).collect();
    let find = |b: char, e: i64, sp: u32| -> Vec<usize> {
        (0..frames.len())
            .filter(|&i| keys[i].band == b && keys[i].expid == e && keys[i].spectro == sp)
            .collect()
    };
    // band layout: reference grid and max ndiag
    let mut grids = Vec::new();
    for &b in &bands {
        let idx: Vec<usize> = (0..frames.len()).filter(|&i| keys[i].band == b).collect();
        let ref_f = &frames[idx[0]];
        let w0 = &ref_f.frame.wave;
        let mut nd = 0;
        for &i in &idx {
            let f = &frames[i];
            let w = &f.frame.wave;
            if w.len() != w0.len() || w.iter().zip(w0).any(|(a, c)| (a - c).abs() > WAVE_TOL) {
                bail!(
                    "{}: WAVELENGTH grid of band {b} differs from that of {} (all {b} cframes must share one grid)",
                    f.name,
                    ref_f.name
                );
            }
            nd = nd.max(f.frame.resolution.dim().1);
        }
        grids.push((w0.to_vec(), nd));
    }
    // rows per slot, fibermap pieces
    let mut fm: Option<Table> = None;
    let mut slot_rows = Vec::new();
    let mut meta = Vec::new();
    for &(e, sp) in &slots {
        let mut present = Vec::new();
        for &b in &bands {
            let f = find(b, e, sp);
            if f.len() > 1 {
                bail!(
                    "{} and {}: same camera {b}{sp} and EXPID {e}",
                    frames[f[0]].name,
                    frames[f[1]].name
                );
            }
            present.extend(f);
        }
        let first = &frames[present[0]];
        let tids = first.frame.fibermap.targetids();
        for &i in &present[1..] {
            if frames[i].frame.fibermap.targetids() != tids {
                bail!(
                    "{}: FIBERMAP TARGETIDs differ from those of {} (same exposure and spectrograph)",
                    frames[i].name,
                    first.name
                );
            }
        }
        let h = &first.frame.header;
        let ftile = h.get_i64("TILEID");
        if let (Some(t), Some(ft)) = (tile, ftile) {
            if t != ft {
                bail!("{}: TILEID {ft} but --tile {t}", first.name);
            }
        }
        let n = tids.len();
        let mut t = first.frame.fibermap.table().clone();
        let night = h.get_i64("NIGHT").unwrap_or(0);
        let cols = [
            Column::new("NIGHT", ColumnData::I32(vec![night as i32; n])),
            Column::new("EXPID", ColumnData::I32(vec![e as i32; n])),
            Column::new(
                "MJD",
                ColumnData::F64(vec![h.get_f64("MJD-OBS").unwrap_or(0.0); n]),
            ),
            Column::new(
                "TILEID",
                ColumnData::I32(vec![ftile.or(tile).unwrap_or(-1) as i32; n]),
            ),
            Column::new(
                "EXPTIME",
                ColumnData::F32(vec![h.get_f64("EXPTIME").unwrap_or(0.0) as f32; n]),
            ),
        ];
        for c in cols {
            t.set(c).map_err(anyhow::Error::msg)?;
        }
        fm = Some(match fm {
            None => t,
            Some(acc) => acc.concat(&t),
        });
        meta.push((night, ftile));
        slot_rows.push((present, n));
    }
    let nspec: usize = slot_rows.iter().map(|(_, n)| n).sum();
    let mut out_bands = Vec::new();
    for (bi, &b) in bands.iter().enumerate() {
        let (wave, nd) = &grids[bi];
        let nw = wave.len();
        let mut flux = Array2::<f32>::zeros((nspec, nw));
        let mut ivar = Array2::<f32>::zeros((nspec, nw));
        let mut mask = Array2::<i32>::from_elem((nspec, nw), specmask::NODATA as i32);
        let mut res = Array3::<f32>::zeros((nspec, *nd, nw));
        // rows without data get an identity resolution (flux conserving, harmless at ivar 0)
        res.slice_mut(s![.., nd / 2, ..]).fill(1.0);
        let mut row0 = 0;
        for (present, n) in &slot_rows {
            if let Some(&i) = present.iter().find(|&&i| keys[i].band == b) {
                let f = &frames[i].frame;
                let r = row0..row0 + n;
                flux.slice_mut(s![r.clone(), ..])
                    .assign(&f.flux.mapv(|v| v as f32));
                ivar.slice_mut(s![r.clone(), ..])
                    .assign(&f.ivar.mapv(|v| v as f32));
                mask.slice_mut(s![r.clone(), ..])
                    .assign(&f.mask.mapv(|v| v as i32));
                let fd = f.resolution.dim().1;
                let off = (nd - fd) / 2;
                let mut rs = res.slice_mut(s![r, .., ..]);
                rs.fill(0.0);
                rs.slice_mut(s![.., off..off + fd, ..])
                    .assign(&f.resolution.mapv(|v| v as f32));
            }
            row0 += n;
        }
        out_bands.push(Band {
            name: b.to_string(),
            wave: wave.clone(),
            flux,
            ivar,
            mask: Some(mask),
            resolution: res,
        });
    }
    let fibermap = fm.unwrap_or_default();
    let mut header = vec![("SPGRP".to_string(), "cumulative".to_string())];
    let lastnight = meta.iter().map(|m| m.0).max().unwrap_or(0);
    header.push(("SPGRPVAL".into(), lastnight.to_string()));
    if let Some(t) = tile.or(meta[0].1) {
        header.push(("TILEID".into(), t.to_string()));
    }
    let spectros: BTreeSet<u32> = keys.iter().map(|k| k.spectro).collect();
    if spectros.len() == 1 {
        let sp = spectros.iter().next().copied().unwrap_or(0);
        header.push(("SPECTRO".into(), sp.to_string()));
        header.push(("PETAL".into(), sp.to_string()));
    }
    header.push(("NIGHT".into(), lastnight.to_string()));
    Ok(Spectra {
        bands: out_bands,
        fibermap,
        exp_fibermap: None,
        scores: None,
        header,
    })
}

/// One target's coadd in one band: (flux, ivar, mask, resolution `[ndiag, nwave]`).
type TargetCoadd = (Vec<f32>, Vec<f32>, Vec<i32>, Array2<f32>);

fn coadd_target(b: &Band, rows: &[usize]) -> TargetCoadd {
    let nw = b.wave.len();
    let nd = b.resolution.dim().1;
    let mut flux = vec![0f32; nw];
    let mut ivar = vec![0f32; nw];
    let mut mask = vec![0i32; nw];
    let mut res = Array2::<f32>::zeros((nd, nw));
    if rows.is_empty() {
        mask.fill((specmask::NODATA | specmask::BADFIBER) as i32);
        res.row_mut(nd / 2).fill(1.0);
        return (flux, ivar, mask, res);
    }
    for j in 0..nw {
        // sums in f64, in row order (deterministic)
        let (mut sw, mut swf, mut su, mut suf) = (0f64, 0f64, 0f64, 0f64);
        let mut or = 0i32;
        let mut all_masked = true;
        for &r in rows {
            let iv = b.ivar[[r, j]] as f64;
            let f = b.flux[[r, j]] as f64;
            let m = b.mask.as_ref().map(|m| m[[r, j]]).unwrap_or(0);
            or |= m;
            su += iv;
            suf += iv * f;
            if m == 0 {
                all_masked = false;
                sw += iv;
                swf += iv * f;
            }
        }
        let (tiv, tf) = if sw > 0.0 { (sw, swf) } else { (su, suf) };
        ivar[j] = tiv as f32;
        flux[j] = if tiv > 0.0 { (tf / tiv) as f32 } else { 0.0 };
        mask[j] = if all_masked { or } else { 0 };
        for d in 0..nd {
            let mut acc = 0f64;
            let mut plain = 0f64;
            for &r in rows {
                let rv = b.resolution[[r, d, j]] as f64;
                acc += b.ivar[[r, j]] as f64 * rv;
                plain += rv;
            }
            res[[d, j]] = if su > 0.0 {
                (acc / su) as f32
            } else {
                (plain / rows.len() as f64) as f32
            };
        }
    }
    (flux, ivar, mask, res)
}

/// Coadds a spectra file per band over the exposures of each TARGETID (see the module doc).
/// FIBERMAP and EXP_FIBERMAP come from [`coadd_fibermap`]; rows follow its target order.
pub fn coadd(sp: &Spectra) -> anyhow::Result<Spectra> {
    let tid = sp.targetids();
    if tid.len() != sp.nspec() || tid.is_empty() {
        bail!("spectra have no TARGETID rows to coadd");
    }
    let status = sp
        .fibermap
        .i64s("FIBERSTATUS")
        .unwrap_or_else(|| vec![0; tid.len()]);
    let mut order: Vec<i64> = Vec::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut pos = std::collections::HashMap::new();
    for (i, t) in tid.iter().enumerate() {
        let g = *pos.entry(*t).or_insert_with(|| {
            order.push(*t);
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    let (fm, expfm) = coadd_fibermap(&sp.fibermap).map_err(anyhow::Error::msg)?;
    if fm.i64s("TARGETID").as_deref() != Some(&order[..]) {
        bail!("internal: coadd_fibermap target order differs from the coadd's");
    }
    let mut bands = Vec::new();
    for b in &sp.bands {
        let bc = b.name.chars().next().unwrap_or('b');
        let fatal = fibermask::fatal_for(bc) as i64;
        let per: Vec<TargetCoadd> = groups
            .par_iter()
            .map(|g| {
                let good: Vec<usize> = g
                    .iter()
                    .copied()
                    .filter(|&r| status[r] & fatal == 0)
                    .collect();
                coadd_target(b, &good)
            })
            .collect();
        let (nt, nw, nd) = (order.len(), b.wave.len(), b.resolution.dim().1);
        let mut flux = Array2::<f32>::zeros((nt, nw));
        let mut ivar = Array2::<f32>::zeros((nt, nw));
        let mut mask = Array2::<i32>::zeros((nt, nw));
        let mut res = Array3::<f32>::zeros((nt, nd, nw));
        for (t, (f, iv, m, r)) in per.into_iter().enumerate() {
            flux.row_mut(t).assign(&ndarray::ArrayView1::from(&f));
            ivar.row_mut(t).assign(&ndarray::ArrayView1::from(&iv));
            mask.row_mut(t).assign(&ndarray::ArrayView1::from(&m));
            res.slice_mut(s![t, .., ..]).assign(&r);
        }
        bands.push(Band {
            name: b.name.clone(),
            wave: b.wave.clone(),
            flux,
            ivar,
            mask: Some(mask),
            resolution: res,
        });
    }
    Ok(Spectra {
        bands,
        fibermap: fm,
        exp_fibermap: Some(expfm),
        scores: None,
        header: sp.header.clone(),
    })
}
