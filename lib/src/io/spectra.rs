//! DESI spectra and coadd files (`desispec.io.write_spectra` layout, reference/redshift.md
//! §2.1): `FIBERMAP`, optional `EXP_FIBERMAP` (coadds) and `SCORES`, and per camera band
//! `<B>_WAVELENGTH [nwave]`, `<B>_FLUX`/`<B>_IVAR [nspec, nwave]`, optional `<B>_MASK`, and
//! `<B>_RESOLUTION [nspec, ndiag, nwave]` (DIA storage, offsets +ndiag/2 … −ndiag/2, data
//! indexed by column). Band names come from the EXTNAME prefixes of `*_WAVELENGTH` HDUs.

use std::path::Path;

use ndarray::{Array2, Array3};

use super::fits::{
    Column, ColumnData, FitsError, FitsReader, FitsWriter, Provenance, Result, PRIMARY,
};
use super::table::Table;

/// One camera band of a spectra file.
#[derive(Debug, Clone)]
pub struct Band {
    /// Lower-case band name (`b`, `r`, `z`), from the EXTNAME prefix.
    pub name: String,
    /// Wavelength of each pixel, Angstrom. `[nwave]`
    pub wave: Vec<f64>,
    /// Flux `[nspec, nwave]` (units as in the file, 1e-17 erg/s/cm²/Å for DESI spectra).
    pub flux: Array2<f32>,
    /// Inverse variance of `flux`. `[nspec, nwave]`
    pub ivar: Array2<f32>,
    /// Pixel mask (0 = good), if the file has one. `[nspec, nwave]`
    pub mask: Option<Array2<i32>>,
    /// Resolution matrix diagonals `[nspec, ndiag, nwave]`; diagonal `d` has offset
    /// `ndiag/2 − d`, and `R[i, i+o] = resolution[s, d, i+o]` (DIA storage by column).
    pub resolution: Array3<f32>,
}

/// A DESI spectra (or coadd) file in memory.
#[derive(Debug, Clone)]
pub struct Spectra {
    /// Camera bands in file order.
    pub bands: Vec<Band>,
    /// One row per spectrum (`[nspec]`), in the order of the flux rows.
    pub fibermap: Table,
    /// Per-exposure fibermap (coadd files only).
    pub exp_fibermap: Option<Table>,
    /// SCORES table (TSNR2 etc.), if present.
    pub scores: Option<Table>,
    /// Primary-header keywords passed through by redrock (SPGRP, TILEID, NIGHT …).
    pub header: Vec<(String, String)>,
}

/// Primary-header keywords redrock copies from the spectra file into its output.
pub const PASSTHROUGH_KEYS: [&str; 13] = [
    "SPGRP", "SPGRPVAL", "TILEID", "SPECTRO", "PETAL", "NIGHT", "EXPID", "HPXPIXEL", "HPXNSIDE",
    "HPXNEST", "SURVEY", "PROGRAM", "FAPRGRM",
];

impl Spectra {
    /// Number of spectra (rows).
    pub fn nspec(&self) -> usize {
        self.fibermap.nrows()
    }

    /// TARGETID of each spectrum.
    pub fn targetids(&self) -> Vec<i64> {
        self.fibermap.i64s("TARGETID").unwrap_or_default()
    }

    /// Reads a spectra or coadd file. Missing required HDUs, inconsistent shapes and NaN in
    /// wavelengths or resolution are errors naming the file and HDU; NaN flux/ivar values are
    /// data problems the caller decides on (redrock zeroes their weight).
    pub fn read(path: &Path) -> Result<Spectra> {
        let mut r = FitsReader::open(path)?;
        let names = r.hdu_names()?;
        let fibermap = Table::read(&mut r, "FIBERMAP")?;
        let nspec = fibermap.nrows();
        if !fibermap
            .column("TARGETID")
            .is_some_and(|c| c.data.is_integer())
        {
            return Err(FitsError::hdu(
                path,
                "FIBERMAP",
                "column TARGETID is missing or not an integer column",
            ));
        }
        let exp_fibermap = if names.iter().any(|n| n == "EXP_FIBERMAP") {
            Some(Table::read(&mut r, "EXP_FIBERMAP")?)
        } else {
            None
        };
        let scores = if names.iter().any(|n| n == "SCORES") {
            Some(Table::read(&mut r, "SCORES")?)
        } else {
            None
        };
        let mut bands = Vec::new();
        for n in &names {
            let Some(b) = n.strip_suffix("_WAVELENGTH") else {
                continue;
            };
            let wave = r.image1::<f64>(n)?.to_vec();
            if wave.iter().any(|v| !v.is_finite()) || wave.windows(2).any(|w| w[1] <= w[0]) {
                return Err(FitsError::hdu(
                    path,
                    n,
                    "wavelengths must be finite and increasing",
                ));
            }
            let nw = wave.len();
            let flux = r.image2::<f32>(&format!("{b}_FLUX"))?;
            let ivar = r.image2::<f32>(&format!("{b}_IVAR"))?;
            let mask_name = format!("{b}_MASK");
            let mask = if names.contains(&mask_name) {
                Some(r.image2::<i32>(&mask_name)?)
            } else {
                None
            };
            let res_name = format!("{b}_RESOLUTION");
            let resolution = r.image3::<f32>(&res_name)?;
            for (what, dim) in [
                (format!("{b}_FLUX"), flux.dim()),
                (format!("{b}_IVAR"), ivar.dim()),
            ] {
                if dim != (nspec, nw) {
                    return Err(FitsError::hdu(
                        path,
                        &what,
                        format!("shape {dim:?}, expected ({nspec}, {nw}) from FIBERMAP and {n}"),
                    ));
                }
            }
            if let Some(m) = &mask {
                if m.dim() != (nspec, nw) {
                    return Err(FitsError::hdu(
                        path,
                        &mask_name,
                        "shape does not match FLUX",
                    ));
                }
            }
            let (rs, nd, rw) = resolution.dim();
            if rs != nspec || rw != nw || nd % 2 == 0 {
                return Err(FitsError::hdu(
                    path,
                    &res_name,
                    format!("shape ({rs}, {nd}, {rw}); expected ({nspec}, odd ndiag, {nw})"),
                ));
            }
            if resolution.iter().any(|v| !v.is_finite()) {
                return Err(FitsError::hdu(path, &res_name, "contains NaN or Inf"));
            }
            bands.push(Band {
                name: b.to_ascii_lowercase(),
                wave,
                flux,
                ivar,
                mask,
                resolution,
            });
        }
        if bands.is_empty() {
            return Err(FitsError::file(
                path,
                "no <BAND>_WAVELENGTH HDU: not a spectra file",
            ));
        }
        let mut header = Vec::new();
        for k in PASSTHROUGH_KEYS {
            if let Ok(Some(v)) = r.key_opt::<String>(PRIMARY, k) {
                header.push((k.to_string(), v));
            }
        }
        Ok(Spectra {
            bands,
            fibermap,
            exp_fibermap,
            scores,
            header,
        })
    }

    /// Writes the file in desispec's layout (FIBERMAP, [EXP_FIBERMAP], per band WAVELENGTH,
    /// FLUX, IVAR, MASK, RESOLUTION, then SCORES), atomically.
    pub fn write(&self, path: &Path, prov: &Provenance) -> Result<()> {
        let mut w = FitsWriter::create(path, prov)?;
        for (k, v) in &self.header {
            match v.parse::<i64>() {
                Ok(i) => w.key(k, i)?,
                Err(_) => w.key(k, v.as_str())?,
            }
        }
        self.fibermap.write(&mut w, "FIBERMAP")?;
        if let Some(t) = &self.exp_fibermap {
            write_with_logicals(&mut w, "EXP_FIBERMAP", t)?;
        }
        for b in &self.bands {
            let up = b.name.to_ascii_uppercase();
            let nw = b.wave.len();
            let ns = b.flux.nrows();
            w.image(&format!("{up}_WAVELENGTH"), &[nw], &b.wave)?;
            w.key("BUNIT", "Angstrom")?;
            w.image(
                &format!("{up}_FLUX"),
                &[ns, nw],
                &b.flux.iter().copied().collect::<Vec<_>>(),
            )?;
            w.key("BUNIT", "10**-17 erg/(s cm2 Angstrom)")?;
            w.image(
                &format!("{up}_IVAR"),
                &[ns, nw],
                &b.ivar.iter().copied().collect::<Vec<_>>(),
            )?;
            w.key("BUNIT", "10**+34 (s2 cm4 Angstrom2) / erg2")?;
            if let Some(m) = &b.mask {
                w.image(
                    &format!("{up}_MASK"),
                    &[ns, nw],
                    &m.iter().copied().collect::<Vec<_>>(),
                )?;
            }
            let (a, d, c) = b.resolution.dim();
            w.image(
                &format!("{up}_RESOLUTION"),
                &[a, d, c],
                &b.resolution.iter().copied().collect::<Vec<_>>(),
            )?;
        }
        if let Some(t) = &self.scores {
            t.write(&mut w, "SCORES")?;
        }
        w.commit()?;
        Ok(())
    }
}

/// Writes a table whose `IN_COADD_*` columns (held as 0/1 bytes) are FITS logicals ('L'), as
/// desispec writes them: the bytes are stored as the FITS logical characters 'T'/'F' and the
/// column's TFORM is set to L (a logical is one byte, so the row layout is unchanged).
pub fn write_with_logicals(w: &mut FitsWriter, extname: &str, table: &Table) -> Result<()> {
    let columns = table.columns();
    let is_logical =
        |c: &Column| c.name.starts_with("IN_COADD_") && matches!(c.data, ColumnData::U8(_));
    let cols: Vec<Column> = columns
        .iter()
        .map(|c| match (&c.data, is_logical(c)) {
            (ColumnData::U8(v), true) => Column {
                name: c.name.clone(),
                unit: c.unit.clone(),
                data: ColumnData::U8(
                    v.iter()
                        .map(|&b| if b != 0 { b'T' } else { b'F' })
                        .collect(),
                ),
            },
            _ => c.clone(),
        })
        .collect();
    w.table(extname, &cols)?;
    for (i, c) in columns.iter().enumerate() {
        if is_logical(c) {
            w.key(&format!("TFORM{}", i + 1), "L")?;
        }
    }
    Ok(())
}

/// Columns of a per-exposure fibermap that desispec keeps in EXP_FIBERMAP, in its order
/// (`desispec.coaddition.fibermap_perexp_cols`).
const PEREXP_COLS: [&str; 24] = [
    "TARGETID",
    "PRIORITY",
    "SUBPRIORITY",
    "NIGHT",
    "EXPID",
    "MJD",
    "TILEID",
    "EXPTIME",
    "PETAL_LOC",
    "DEVICE_LOC",
    "LOCATION",
    "FIBER",
    "FIBERSTATUS",
    "FIBERASSIGN_X",
    "FIBERASSIGN_Y",
    "LAMBDA_REF",
    "PLATE_RA",
    "PLATE_DEC",
    "NUM_ITER",
    "FIBER_X",
    "FIBER_Y",
    "DELTA_X",
    "DELTA_Y",
    "FIBER_RA",
];
const PEREXP_COLS_TAIL: [&str; 2] = ["FIBER_DEC", "PSF_TO_FIBER_SPECFLUX"];

/// FIBERSTATUS bits that exclude an exposure from a band's coadd
/// (`desispec.fiberbitmasking.get_all_fiberbitmask_with_amp`).
fn bad_fiberstatus(band: char) -> i64 {
    i64::from(crate::maskbits::fibermask::fatal_for(band))
}

fn f32s(v: Vec<f64>) -> ColumnData {
    ColumnData::F32(v.into_iter().map(|x| x as f32).collect())
}

/// desispec `coadd_fibermap`: one row per target (first-appearance order) with COADD_* and
/// MEAN_/RMS_/STD_ columns, and the per-exposure table (EXP_FIBERMAP) with IN_COADD_B/R/Z
/// (written as 0/1 bytes). Returns `(fibermap, exp_fibermap)`; errs when `fm` has rows but no
/// integer TARGETID column.
pub fn coadd_fibermap(fm: &Table) -> std::result::Result<(Table, Table), String> {
    let tid = fm.i64s("TARGETID").unwrap_or_default();
    if tid.len() != fm.nrows() {
        return Err("FIBERMAP has no TARGETID column".into());
    }
    let n = tid.len();
    let mut order: Vec<i64> = Vec::new();
    let mut first = Vec::new();
    for (i, t) in tid.iter().enumerate() {
        if !order.contains(t) {
            order.push(*t);
            first.push(i);
        }
    }
    let groups: Vec<Vec<usize>> = order
        .iter()
        .map(|t| (0..n).filter(|&i| tid[i] == *t).collect())
        .collect();
    let onetile = fm
        .i64s("TILEID")
        .map(|v| v.iter().all(|&x| x == v[0]))
        .unwrap_or(false);
    let status = fm
        .i64s("FIBERSTATUS")
        .or_else(|| fm.i64s("COADD_FIBERSTATUS"))
        .unwrap_or_else(|| vec![0; n]);
    let in_band =
        |b: char| -> Vec<bool> { status.iter().map(|s| s & bad_fiberstatus(b) == 0).collect() };
    let (inb, inr, inz) = (in_band('b'), in_band('r'), in_band('z'));
    let good: Vec<bool> = (0..n).map(|i| inb[i] || inr[i] || inz[i]).collect();

    let base = fm.select(&first);
    let mean_cols: Vec<&str> = if onetile {
        vec![
            "DELTA_X",
            "DELTA_Y",
            "PSF_TO_FIBER_SPECFLUX",
            "FIBER_X",
            "FIBER_Y",
        ]
    } else {
        vec!["DELTA_X", "DELTA_Y", "PSF_TO_FIBER_SPECFLUX"]
    };
    let removed: Vec<&str> = {
        let mut r = vec![
            "NIGHT",
            "EXPID",
            "MJD",
            "EXPTIME",
            "NUM_ITER",
            "FIBER_RA",
            "FIBER_DEC",
        ];
        r.extend(mean_cols.iter().copied());
        if !onetile {
            r.extend([
                "TILEID",
                "FIBER",
                "FIBER_X",
                "FIBER_Y",
                "PRIORITY",
                "PETAL_RA",
                "PETAL_DEC",
                "LAMBDA_REF",
                "FIBERASSIGN_X",
                "FIBERASSIGN_Y",
                "PETAL_LOC",
                "DEVICE_LOC",
                "LOCATION",
            ]);
        }
        r
    };
    let target_bits = [
        "CMX_TARGET",
        "DESI_TARGET",
        "BGS_TARGET",
        "MWS_TARGET",
        "SCND_TARGET",
    ];
    let mut cols: Vec<Column> = Vec::new();
    for c in base.into_columns() {
        if removed.contains(&c.name.as_str()) {
            continue;
        }
        let mut c = c;
        if c.name == "FIBERSTATUS" {
            c.name = "COADD_FIBERSTATUS".into();
            let v: Vec<i64> = groups
                .iter()
                .map(|g| {
                    let gg: Vec<usize> = g.iter().copied().filter(|&i| good[i]).collect();
                    if gg.is_empty() {
                        g.iter().fold(0, |a, &i| a | status[i])
                    } else {
                        gg.iter().fold(-1, |a, &i| a & status[i])
                    }
                })
                .collect();
            c.data = ColumnData::I32(v.into_iter().map(|x| x as i32).collect());
        } else if target_bits.contains(&c.name.as_str())
            || c.name.starts_with("SV") && c.name.ends_with("_TARGET")
        {
            if let Some(all) = fm.i64s(&c.name) {
                let v: Vec<i64> = groups
                    .iter()
                    .map(|g| g.iter().fold(0, |a, &i| a | all[i]))
                    .collect();
                c.data = match c.data {
                    ColumnData::I32(_) => {
                        ColumnData::I32(v.into_iter().map(|x| x as i32).collect())
                    }
                    _ => ColumnData::I64(v),
                };
            }
        }
        cols.push(c);
    }
    // which exposures enter the means: the good ones, or all when none is good
    let use_rows: Vec<Vec<usize>> = groups
        .iter()
        .map(|g| {
            let gg: Vec<usize> = g.iter().copied().filter(|&i| good[i]).collect();
            if gg.is_empty() {
                g.clone()
            } else {
                gg
            }
        })
        .collect();
    let good_rows: Vec<Vec<usize>> = groups
        .iter()
        .map(|g| g.iter().copied().filter(|&i| good[i]).collect())
        .collect();
    cols.push(Column::new(
        "COADD_NUMEXP",
        ColumnData::I16(good_rows.iter().map(|g| g.len() as i16).collect()),
    ));
    if let Some(et) = fm.f64s("EXPTIME") {
        cols.push(Column::new(
            "COADD_EXPTIME",
            f32s(
                good_rows
                    .iter()
                    .map(|g| g.iter().map(|&i| et[i] as f32 as f64).sum())
                    .collect(),
            ),
        ));
    }
    for (name, col) in [("COADD_NUMNIGHT", "NIGHT"), ("COADD_NUMTILE", "TILEID")] {
        if let Some(v) = fm.i64s(col) {
            cols.push(Column::new(
                name,
                ColumnData::I16(
                    good_rows
                        .iter()
                        .map(|g| {
                            let mut u: Vec<i64> = g.iter().map(|&i| v[i]).collect();
                            u.sort();
                            u.dedup();
                            u.len() as i16
                        })
                        .collect(),
                ),
            ));
        }
    }
    let mean = |v: &[f64], rows: &[usize]| {
        rows.iter().map(|&i| v[i]).sum::<f64>() / rows.len().max(1) as f64
    };
    for k in &mean_cols {
        if let Some(v) = fm.f64s(k) {
            cols.push(Column::new(
                &format!("MEAN_{k}"),
                f32s(use_rows.iter().map(|r| mean(&v, r)).collect()),
            ));
            if *k == "DELTA_X" || *k == "DELTA_Y" {
                let sq: Vec<f64> = v.iter().map(|x| x * x).collect();
                cols.push(Column::new(
                    &format!("RMS_{k}"),
                    f32s(use_rows.iter().map(|r| mean(&sq, r).sqrt()).collect()),
                ));
            }
        }
    }
    if let (Some(ra), Some(dec)) = (fm.f64s("FIBER_RA"), fm.f64s("FIBER_DEC")) {
        let (mut mra, mut sra, mut mdec, mut sdec) = (vec![], vec![], vec![], vec![]);
        for (g, r) in groups.iter().zip(&use_rows) {
            let gc: Vec<usize> = g
                .iter()
                .copied()
                .filter(|&i| ra[i] != 0.0 || dec[i] != 0.0)
                .collect();
            let coords = if gc.is_empty() { g.clone() } else { gc };
            let both: Vec<usize> = coords.iter().copied().filter(|i| r.contains(i)).collect();
            let rows = if both.is_empty() { coords } else { both };
            let ras: Vec<f64> = rows.iter().map(|&i| ra[i]).collect();
            let decs: Vec<f64> = rows.iter().map(|&i| dec[i]).collect();
            let (lo, hi) = ras
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
            let offset = if hi - lo > 180.0 { 180.0 } else { 0.0 };
            let ras: Vec<f64> = ras
                .iter()
                .map(|x| {
                    if offset > 0.0 {
                        (x + offset) % 360.0
                    } else {
                        *x
                    }
                })
                .collect();
            let m = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let sd = |v: &[f64]| {
                let mu = m(v);
                (v.iter().map(|x| (x - mu) * (x - mu)).sum::<f64>() / v.len() as f64).sqrt()
            };
            let md = m(&decs);
            mdec.push(md);
            sdec.push(sd(&decs) * 3600.0);
            mra.push((m(&ras) - offset + 360.0) % 360.0);
            sra.push(sd(&ras) * md.to_radians().cos() * 3600.0);
        }
        cols.push(Column::new("MEAN_FIBER_RA", ColumnData::F64(mra)));
        cols.push(Column::new("STD_FIBER_RA", f32s(sra)));
        cols.push(Column::new("MEAN_FIBER_DEC", ColumnData::F64(mdec)));
        cols.push(Column::new("STD_FIBER_DEC", f32s(sdec)));
    }
    if let Some(mjd) = fm.f64s("MJD") {
        let pick = |f: &dyn Fn(&[f64]) -> f64| -> Vec<f64> {
            use_rows
                .iter()
                .map(|r| f(&r.iter().map(|&i| mjd[i]).collect::<Vec<_>>()))
                .collect()
        };
        cols.push(Column::new(
            "MIN_MJD",
            ColumnData::F64(pick(&|v| v.iter().cloned().fold(f64::MAX, f64::min))),
        ));
        cols.push(Column::new(
            "MAX_MJD",
            ColumnData::F64(pick(&|v| v.iter().cloned().fold(f64::MIN, f64::max))),
        ));
        cols.push(Column::new(
            "MEAN_MJD",
            ColumnData::F64(pick(&|v| v.iter().sum::<f64>() / v.len() as f64)),
        ));
    }
    let mut exp_cols: Vec<Column> = PEREXP_COLS
        .iter()
        .chain(PEREXP_COLS_TAIL.iter())
        .filter_map(|k| fm.columns().iter().find(|c| c.name == *k).cloned())
        .collect();
    for (name, v) in [
        ("IN_COADD_B", &inb),
        ("IN_COADD_R", &inr),
        ("IN_COADD_Z", &inz),
    ] {
        exp_cols.push(Column::new(
            name,
            ColumnData::U8(v.iter().map(|&b| u8::from(b)).collect()),
        ));
    }
    Ok((Table::new(cols)?, Table::new(exp_cols)?))
}

/// desispec `compute_coadd_tsnr_scores`: TARGETID plus every `TSNR2_<T>_<band>` summed over
/// the target's spectra, and `TSNR2_<T>` summed over bands (float32). Every column has one
/// row per distinct TARGETID, so the only error is an internal inconsistency.
pub fn coadd_tsnr2(scores: &Table) -> std::result::Result<Table, String> {
    let tid = scores.i64s("TARGETID").unwrap_or_default();
    let mut order: Vec<i64> = Vec::new();
    for t in &tid {
        if !order.contains(t) {
            order.push(*t);
        }
    }
    let mut cols = vec![Column::new("TARGETID", ColumnData::I64(order.clone()))];
    let mut types: Vec<(String, Vec<f32>)> = Vec::new();
    for c in scores.columns() {
        let parts: Vec<&str> = c.name.split('_').collect();
        if !c.name.starts_with("TSNR2_") || parts.len() != 3 {
            continue;
        }
        if !["B", "R", "Z", "b", "r", "z"].contains(&parts[2]) {
            continue;
        }
        let Some(v) = scores.f64s(&c.name) else {
            continue;
        };
        let sums: Vec<f32> = order
            .iter()
            .map(|t| {
                (0..tid.len())
                    .filter(|&i| tid[i] == *t)
                    .fold(0f32, |a, i| a + v[i] as f32)
            })
            .collect();
        match types.iter_mut().find(|(n, _)| n == parts[1]) {
            Some((_, tot)) => tot.iter_mut().zip(&sums).for_each(|(a, b)| *a += b),
            None => types.push((parts[1].to_string(), sums.clone())),
        }
        cols.push(Column::new(&c.name, ColumnData::F32(sums)));
    }
    for (t, tot) in types {
        cols.push(Column::new(&format!("TSNR2_{t}"), ColumnData::F32(tot)));
    }
    Table::new(cols)
}
