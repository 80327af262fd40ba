//! Gauss-Hermite PSF files (specex PSFVER 3, reference/extraction.md §1.1): XTRACE (primary
//! image `[nfiber, ncoef]`), YTRACE (image), PSF (table with PARAM, COEFF `[nfiber][ncoef]`,
//! LEGDEGX, LEGDEGW). HDUs and parameter rows are found by name.

use std::path::Path;

use ndarray::{Array2, Array3};

use super::fits::{Column, ColumnData, FitsError, FitsReader, FitsWriter, Provenance, Result};
use super::header::Header;
use crate::psf::{GaussHermitePsf, TraceSet};

/// Header keywords the reader interprets itself; everything else in the PSF HDU header that is
/// not structural is kept in [`GaussHermitePsf::extra_keys`] and written back.
const OWN_KEYS: &[&str] = &[
    "PSFTYPE", "PSFVER", "NPIX_X", "NPIX_Y", "HSIZEX", "HSIZEY", "FIBERMIN", "FIBERMAX", "NPARAMS",
    "LEGDEG", "GHDEGX", "GHDEGY", "WAVEMIN", "WAVEMAX", "PSFERR", "EXTNAME",
];

/// Reads a PSFVER 3 GAUSS-HERMITE PSF file. Errors name the file, HDU and problem: an unknown
/// PSFTYPE, an older PSFVER, a missing HDU/row/keyword, inconsistent shapes or NaN values.
pub fn read(path: impl AsRef<Path>) -> Result<GaussHermitePsf> {
    let path = path.as_ref();
    let mut r = FitsReader::open(path)?;
    let hdu0 = "XTRACE";
    // PSFTYPE/PSFVER live in the primary (XTRACE) header and again in the PSF table header.
    let primary = if r.has_hdu(hdu0) {
        hdu0
    } else {
        super::fits::PRIMARY
    };
    let psftype = r
        .key_opt::<String>(primary, "PSFTYPE")?
        .or(r.key_opt::<String>("PSF", "PSFTYPE").ok().flatten())
        .ok_or_else(|| FitsError::hdu(path, primary, "keyword PSFTYPE is missing"))?;
    if psftype.trim() != "GAUSS-HERMITE" {
        return Err(FitsError::hdu(
            path,
            primary,
            format!(
                "unsupported PSFTYPE '{}' (only GAUSS-HERMITE is supported)",
                psftype.trim()
            ),
        ));
    }
    let ver = r
        .key_opt::<String>(primary, "PSFVER")?
        .ok_or_else(|| FitsError::hdu(path, primary, "keyword PSFVER is missing"))?;
    let ver_num: f64 = ver
        .trim()
        .trim_matches('\'')
        .trim()
        .parse()
        .map_err(|_| FitsError::hdu(path, primary, format!("unreadable PSFVER '{ver}'")))?;
    if ver_num < 3.0 {
        return Err(FitsError::hdu(
            path,
            primary,
            format!("unsupported PSFVER {ver} (only PSFVER 3 with XTRACE/YTRACE/PSF HDUs)"),
        ));
    }

    let xtrace = read_trace(&mut r, "XTRACE")?;
    let ytrace = read_trace(&mut r, "YTRACE")?;
    let nfiber = xtrace.nfiber();

    let t = "PSF";
    let names: Vec<String> = r
        .col::<String>(t, "PARAM")?
        .into_iter()
        .map(|s| s.trim().to_string())
        .collect();
    let coeff = r.col::<f64>(t, "COEFF")?;
    let nparam = names.len();
    if nparam == 0 || coeff.len() % (nparam * nfiber) != 0 {
        return Err(FitsError::hdu(
            path,
            t,
            format!(
                "COEFF has {} values, not a multiple of {nparam} rows x {nfiber} fibers",
                coeff.len()
            ),
        ));
    }
    let ncoef = coeff.len() / (nparam * nfiber);
    super::fits::require_finite(path, t, coeff.iter())?;
    let param_coeff = Array3::from_shape_vec((nparam, nfiber, ncoef), coeff)
        .map_err(|e| FitsError::hdu(path, t, format!("COEFF shape: {e}")))?;
    let legdegx = r
        .col_opt::<i32>(t, "LEGDEGX")?
        .unwrap_or_else(|| vec![0; nparam]);
    let legdegw = r
        .col_opt::<i32>(t, "LEGDEGW")?
        .unwrap_or_else(|| vec![0; nparam]);

    let ukey = |r: &mut FitsReader, k: &str| -> Result<usize> {
        let v: i64 = r.key(t, k)?;
        usize::try_from(v)
            .map_err(|_| FitsError::hdu(path, t, format!("keyword {k} = {v} is negative")))
    };
    let hsizex = ukey(&mut r, "HSIZEX")?;
    let hsizey = ukey(&mut r, "HSIZEY")?;
    let ghdegx = ukey(&mut r, "GHDEGX")?;
    let ghdegy = ukey(&mut r, "GHDEGY")?;
    let npix_x = ukey(&mut r, "NPIX_X")?;
    let npix_y = ukey(&mut r, "NPIX_Y")?;
    let wmin: f64 = r.key(t, "WAVEMIN")?;
    let wmax: f64 = r.key(t, "WAVEMAX")?;
    let fibermin = match r.key_opt::<i64>(t, "FIBERMIN")? {
        Some(v) => usize::try_from(v).unwrap_or(0),
        None => 0,
    };
    // specter reads PSFERR (default 0.01); specex writes PSFERROR, which specter ignores.
    let psferr = r.key_opt::<f64>(t, "PSFERR")?.unwrap_or(0.01);

    let mut psf = GaussHermitePsf::new(
        xtrace,
        ytrace,
        names,
        param_coeff,
        (wmin, wmax),
        (hsizex, hsizey),
        (ghdegx, ghdegy),
        (npix_x, npix_y),
        fibermin,
        psferr,
    )
    .map_err(|e| FitsError::hdu(path, t, e.to_string()))?;
    psf.legdegx = legdegx;
    psf.legdegw = legdegw;
    let mut extra = Header::read(&mut r, t)?;
    for k in OWN_KEYS {
        extra.remove(k);
    }
    psf.extra_keys = extra;
    Ok(psf)
}

fn read_trace(r: &mut FitsReader, hdu: &str) -> Result<TraceSet> {
    let path = r.path().to_path_buf();
    let c = r.image2::<f64>(hdu)?;
    super::fits::require_finite(&path, hdu, c.iter())?;
    let wmin: f64 = r.key(hdu, "WAVEMIN")?;
    let wmax: f64 = r.key(hdu, "WAVEMAX")?;
    if wmax.partial_cmp(&wmin) != Some(std::cmp::Ordering::Greater) {
        return Err(FitsError::hdu(
            &path,
            hdu,
            format!("empty domain WAVEMIN {wmin} .. WAVEMAX {wmax}"),
        ));
    }
    Ok(TraceSet::new(c, wmin, wmax))
}

/// Writes `psf` as a PSFVER 3 GAUSS-HERMITE file that specter and desispec read.
pub fn write(path: impl AsRef<Path>, psf: &GaussHermitePsf, prov: &Provenance) -> Result<()> {
    let path = path.as_ref();
    let (xc, yc) = psf.trace_coeffs();
    let nfiber = psf.nfiber();
    let fibermax = psf.fibermin + nfiber - 1;
    let xdata = row_major(xc);
    let mut w =
        FitsWriter::create_with_primary_image(path, prov, "XTRACE", &[nfiber, xc.ncols()], &xdata)?;
    w.key("FIBERMIN", psf.fibermin)?;
    w.key("FIBERMAX", fibermax)?;
    w.key("WAVEMIN", psf.xtrace.wmin)?;
    w.key("WAVEMAX", psf.xtrace.wmax)?;
    w.key("PSFTYPE", "GAUSS-HERMITE")?;
    w.key("PSFVER", "3")?;
    w.image("YTRACE", &[nfiber, yc.ncols()], &row_major(yc))?;
    w.key("FIBERMIN", psf.fibermin)?;
    w.key("FIBERMAX", fibermax)?;
    w.key("WAVEMIN", psf.ytrace.wmin)?;
    w.key("WAVEMAX", psf.ytrace.wmax)?;

    let ncoef = psf.ncoef();
    let nparam = psf.param_names.len();
    let coeff: Vec<f64> = psf.param_coeff.iter().copied().collect();
    // specex writes PARAM as 8A, space padded.
    let names: Vec<String> = psf.param_names.iter().map(|n| format!("{n:<8}")).collect();
    let pad = |v: &[i32]| {
        if v.len() == nparam {
            v.to_vec()
        } else {
            vec![0; nparam]
        }
    };
    w.table(
        "PSF",
        &[
            Column::new("PARAM", ColumnData::Str(names)),
            Column::new(
                "COEFF",
                ColumnData::F64Vec {
                    data: coeff,
                    repeat: nfiber * ncoef,
                },
            ),
            Column::new("LEGDEGX", ColumnData::I32(pad(&psf.legdegx))),
            Column::new("LEGDEGW", ColumnData::I32(pad(&psf.legdegw))),
        ],
    )?;
    // COEFF is [nfiber][ncoef] per row; TDIM tells astropy/fitsio readers its shape.
    w.key("TDIM2", format!("({ncoef},{nfiber})"))?;
    w.key("PSFTYPE", "GAUSS-HERMITE")?;
    w.key("PSFVER", "3")?;
    w.key("NPIX_X", psf.npix_x)?;
    w.key("NPIX_Y", psf.npix_y)?;
    w.key("HSIZEX", psf.hsizex)?;
    w.key("HSIZEY", psf.hsizey)?;
    w.key("FIBERMIN", psf.fibermin)?;
    w.key("FIBERMAX", fibermax)?;
    w.key("NPARAMS", nparam)?;
    w.key("LEGDEG", ncoef.saturating_sub(1))?;
    w.key("GHDEGX", psf.ghdegx)?;
    w.key("GHDEGY", psf.ghdegy)?;
    w.key("WAVEMIN", psf.param_wmin)?;
    w.key("WAVEMAX", psf.param_wmax)?;
    w.key("PSFERR", psf.psferr)?;
    psf.extra_keys.write(&mut w)?;
    w.commit()?;
    Ok(())
}

fn row_major(a: &Array2<f64>) -> Vec<f64> {
    a.iter().copied().collect()
}
