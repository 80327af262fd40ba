//! Header passthrough: read the non-structural keywords of an HDU as raw cards and write them
//! back with their types (string, logical, integer, real). Used where DESI passes a header
//! from input to output (preproc IMAGE -> frame FLUX, PSF table keys).

use super::fits::{FitsError, FitsReader, FitsWriter, Result};

/// Non-structural header keywords of `hdu` (except `skip`, structural and provenance keys)
/// as (name, value text as written in the card), in header order.
pub fn read_cards(r: &mut FitsReader, hdu: &str, skip: &[&str]) -> Result<Vec<(String, String)>> {
    let path = r.path().to_path_buf();
    let h = r.hdu(hdu)?;
    let file = r.file_mut();
    // Make `hdu` the current HDU of the raw handle.
    let _ = h.read_key::<String>(file, "EXTNAME");
    let fptr = unsafe { file.as_raw() };
    let mut status = 0;
    let mut nkeys = 0;
    let mut more = 0;
    // SAFETY: fptr is an open file positioned on `hdu`.
    unsafe { fitsio::sys::ffghsp(fptr, &mut nkeys, &mut more, &mut status) };
    if status != 0 {
        return Err(FitsError::hdu(
            &path,
            hdu,
            format!("cannot read header (status {status})"),
        ));
    }
    let mut out = Vec::new();
    for i in 1..=nkeys {
        let mut name = [0 as std::os::raw::c_char; 80];
        let mut value = [0 as std::os::raw::c_char; 80];
        let mut comment = [0 as std::os::raw::c_char; 80];
        // SAFETY: buffers are FLEN_KEYWORD/FLEN_VALUE/FLEN_COMMENT-sized (<= 80).
        unsafe {
            fitsio::sys::ffgkyn(
                fptr,
                i,
                name.as_mut_ptr(),
                value.as_mut_ptr(),
                comment.as_mut_ptr(),
                &mut status,
            )
        };
        if status != 0 {
            return Err(FitsError::hdu(
                &path,
                hdu,
                format!("cannot read keyword {i} (status {status})"),
            ));
        }
        let cstr = |b: &[std::os::raw::c_char]| {
            // SAFETY: cfitsio NUL-terminates these buffers.
            unsafe { std::ffi::CStr::from_ptr(b.as_ptr()) }
                .to_string_lossy()
                .trim()
                .to_string()
        };
        let k = cstr(&name);
        if k.is_empty()
            || skip.contains(&k.as_str())
            || is_structural(&k)
            || super::fits::is_provenance_key(&k)
        {
            continue;
        }
        out.push((k, cstr(&value)));
    }
    Ok(out)
}

fn is_structural(k: &str) -> bool {
    matches!(
        k,
        "XTENSION"
            | "BITPIX"
            | "PCOUNT"
            | "GCOUNT"
            | "TFIELDS"
            | "SIMPLE"
            | "EXTEND"
            | "COMMENT"
            | "HISTORY"
            | "END"
    ) || k.starts_with("NAXIS")
        || k.starts_with("TTYPE")
        || k.starts_with("TFORM")
        || k.starts_with("TDIM")
        || k.starts_with("TUNIT")
        || is_compression_key(k)
}

/// Keywords of the binary table that holds a tile-compressed image (cfitsio shows them raw).
fn is_compression_key(k: &str) -> bool {
    matches!(
        k,
        "ZIMAGE"
            | "ZSIMPLE"
            | "ZTENSION"
            | "ZBITPIX"
            | "ZEXTEND"
            | "ZPCOUNT"
            | "ZGCOUNT"
            | "ZCMPTYPE"
            | "ZQUANTIZ"
            | "ZDITHER0"
            | "ZBLANK"
            | "ZSCALE"
            | "ZZERO"
            | "ZHECKSUM"
            | "ZDATASUM"
            | "THEAP"
    ) || ["ZNAXIS", "ZTILE", "ZNAME", "ZVAL"]
        .iter()
        .any(|p| k.starts_with(p))
}

/// Writes a key whose value is the raw card text read by [`read_cards`]: quoted
/// strings stay strings, T/F logicals, integers and reals keep their type.
pub fn write_card(w: &mut FitsWriter, key: &str, raw: &str) -> Result<()> {
    let s = raw.trim();
    if let Some(inner) = card_string(s) {
        w.key(key, inner.as_str())
    } else if s == "T" || s == "F" {
        w.key(key, s == "T")
    } else if let Ok(i) = s.parse::<i64>() {
        w.key(key, i)
    } else if let Ok(f) = s.replace(['D', 'd'], "E").parse::<f64>() {
        w.key(key, f)
    } else {
        w.key(key, s)
    }
}

/// The string value of a raw card value (`'text  '` with `''` for a quote), trailing blanks
/// removed as FITS specifies; `None` if it is not a string.
pub fn card_string(raw: &str) -> Option<String> {
    let s = raw.trim();
    let inner = s.strip_prefix('\'')?.strip_suffix('\'')?;
    Some(inner.replace("''", "'").trim_end().to_string())
}
