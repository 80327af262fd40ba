//! Header keywords carried from one file to the next (a frame inherits the preproc header,
//! which inherits the raw header). Structural keywords (NAXIS, TFORM, …), compression
//! keywords and our provenance keywords are never copied.

use std::ffi::CStr;

use super::fits::{is_provenance_key, FitsReader, FitsWriter};
use super::Result;
use crate::io::FitsError;

/// One header value.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// Ordered header cards (name, value) of one HDU, without structural keywords.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Header {
    cards: Vec<(String, HeaderValue)>,
}

/// Keywords that describe the HDU's structure and must not be copied to another HDU.
fn is_structural(key: &str) -> bool {
    const EXACT: &[&str] = &[
        "SIMPLE", "BITPIX", "NAXIS", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT", "TFIELDS",
        "EXTNAME", "BZERO", "BSCALE", "COMMENT", "HISTORY", "CONTINUE", "", "INHERIT", "THEAP",
    ];
    const PREFIX: &[&str] = &[
        "NAXIS", "TTYPE", "TFORM", "TUNIT", "TDIM", "TNULL", "TSCAL", "TZERO", "TDISP", "ZIMAGE",
        "ZBITPIX", "ZNAXIS", "ZTILE", "ZCMPTYPE", "ZNAME", "ZVAL", "ZQUANTIZ", "ZDITHER",
        "ZSIMPLE", "ZTENSION", "ZEXTEND", "ZPCOUNT", "ZGCOUNT", "ZHECKSUM", "ZDATASUM", "ZBLANK",
        "ZSCALE", "ZZERO",
    ];
    EXACT.contains(&key) || PREFIX.iter().any(|p| key.starts_with(p)) || is_provenance_key(key)
}

/// A header card that cfitsio could not read: its 1-based number and the cfitsio status.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CardError {
    pub card: i32,
    pub status: i32,
}

/// Every card of the reader's current cfitsio HDU, in file order, as (name, raw value):
/// names trimmed, values trimmed but otherwise as cfitsio returns them (strings still quoted,
/// see [`unquote`]; empty for COMMENT/HISTORY/blank cards). Callers position the HDU first
/// ([`FitsReader::hdu`], or by number) and turn a [`CardError`] into their own message.
pub fn raw_cards(r: &mut FitsReader) -> std::result::Result<Vec<(String, String)>, CardError> {
    // SAFETY: the reader owns an open file for the duration of this call.
    let fptr = unsafe { r.file_mut().as_raw() };
    let mut status = 0;
    let (mut nkeys, mut more) = (0, 0);
    // SAFETY: fptr is an open file positioned on an HDU; buffers are cfitsio-sized (80).
    unsafe { fitsio::sys::ffghsp(fptr, &mut nkeys, &mut more, &mut status) };
    let mut cards = Vec::with_capacity(nkeys.max(0) as usize);
    for n in 1..=nkeys {
        let mut name = [0 as std::os::raw::c_char; 80];
        let mut value = [0 as std::os::raw::c_char; 80];
        let mut comment = [0 as std::os::raw::c_char; 80];
        unsafe {
            fitsio::sys::ffgkyn(
                fptr,
                n,
                name.as_mut_ptr(),
                value.as_mut_ptr(),
                comment.as_mut_ptr(),
                &mut status,
            )
        };
        if status != 0 {
            return Err(CardError { card: n, status });
        }
        let text = |b: &[std::os::raw::c_char]| {
            // SAFETY: cfitsio NUL-terminates every returned string within its buffer.
            unsafe { CStr::from_ptr(b.as_ptr()) }
                .to_string_lossy()
                .trim()
                .to_string()
        };
        cards.push((text(&name), text(&value)));
    }
    Ok(cards)
}

/// A FITS string value without its quotes (`'it''s  '` → `it's`); other values trimmed.
pub fn unquote(raw: &str) -> String {
    let raw = raw.trim();
    match raw.strip_prefix('\'') {
        Some(inner) => inner
            .strip_suffix('\'')
            .unwrap_or(inner)
            .replace("''", "'")
            .trim_end()
            .to_string(),
        None => raw.to_string(),
    }
}

impl Header {
    /// Reads the copyable cards of HDU `hdu`.
    pub fn read(r: &mut FitsReader, hdu: &str) -> Result<Header> {
        r.hdu(hdu)?; // makes it cfitsio's current HDU
        let raw = raw_cards(r).map_err(|e| {
            FitsError::hdu(
                r.path(),
                hdu,
                format!(
                    "cannot read header card {} (cfitsio status {})",
                    e.card, e.status
                ),
            )
        })?;
        let cards = raw
            .into_iter()
            .filter(|(name, raw)| !is_structural(name) && !raw.is_empty())
            .filter_map(|(name, raw)| Some((name, parse_value(&raw)?)))
            .collect();
        Ok(Header { cards })
    }

    /// Writes every card into the writer's current HDU (updating existing keywords).
    pub fn write(&self, w: &mut FitsWriter) -> Result<()> {
        for (k, v) in &self.cards {
            match v {
                HeaderValue::Str(s) => w.key(k, s.as_str())?,
                HeaderValue::Int(i) => w.key(k, *i)?,
                HeaderValue::Float(f) => w.key(k, *f)?,
                HeaderValue::Bool(b) => w.key(k, *b)?,
            }
        }
        Ok(())
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&HeaderValue> {
        self.cards.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A string keyword (numbers are formatted).
    pub fn get_str(&self, key: &str) -> Option<String> {
        self.get(key).map(|v| match v {
            HeaderValue::Str(s) => s.clone(),
            HeaderValue::Int(i) => i.to_string(),
            HeaderValue::Float(f) => f.to_string(),
            HeaderValue::Bool(b) => if *b { "T" } else { "F" }.to_string(),
        })
    }

    /// An integer keyword (a string holding an integer is accepted).
    pub fn get_i64(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            HeaderValue::Int(i) => Some(*i),
            HeaderValue::Float(f) if f.fract() == 0.0 => Some(*f as i64),
            HeaderValue::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// A floating-point keyword (integers are converted).
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        match self.get(key)? {
            HeaderValue::Int(i) => Some(*i as f64),
            HeaderValue::Float(f) => Some(*f),
            HeaderValue::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// Sets (or replaces) `key`.
    pub fn set(&mut self, key: &str, value: HeaderValue) {
        match self.cards.iter_mut().find(|(k, _)| k == key) {
            Some(card) => card.1 = value,
            None => self.cards.push((key.to_string(), value)),
        }
    }

    /// Removes `key` if present.
    pub fn remove(&mut self, key: &str) {
        self.cards.retain(|(k, _)| k != key);
    }

    /// All cards in order.
    pub fn cards(&self) -> &[(String, HeaderValue)] {
        &self.cards
    }
}

impl From<&str> for HeaderValue {
    fn from(s: &str) -> Self {
        HeaderValue::Str(s.to_string())
    }
}
impl From<String> for HeaderValue {
    fn from(s: String) -> Self {
        HeaderValue::Str(s)
    }
}
impl From<i64> for HeaderValue {
    fn from(v: i64) -> Self {
        HeaderValue::Int(v)
    }
}
impl From<f64> for HeaderValue {
    fn from(v: f64) -> Self {
        HeaderValue::Float(v)
    }
}
impl From<bool> for HeaderValue {
    fn from(v: bool) -> Self {
        HeaderValue::Bool(v)
    }
}

/// Parses a raw FITS card value as cfitsio returns it (`'text'`, `T`, `12`, `1.5E3`).
fn parse_value(raw: &str) -> Option<HeaderValue> {
    if raw.starts_with('\'') {
        return Some(HeaderValue::Str(unquote(raw)));
    }
    match raw {
        "T" => return Some(HeaderValue::Bool(true)),
        "F" => return Some(HeaderValue::Bool(false)),
        _ => {}
    }
    if let Ok(i) = raw.parse::<i64>() {
        return Some(HeaderValue::Int(i));
    }
    raw.replace('D', "E")
        .parse::<f64>()
        .ok()
        .map(HeaderValue::Float)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::fits::Provenance;

    #[test]
    fn cards_round_trip_without_structural_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.fits");
        let mut h = Header::default();
        h.set("CAMERA", "r0".into());
        h.set("EXPID", 12i64.into());
        h.set("EXPTIME", 900.25f64.into());
        h.set("OK", true.into());
        h.set("NOTE", "it's".into());
        let mut w = FitsWriter::create(&path, &Provenance::default()).unwrap();
        w.image("X", &[2], &[1.0f32, 2.0]).unwrap();
        h.write(&mut w).unwrap();
        w.commit().unwrap();
        let mut r = FitsReader::open(&path).unwrap();
        let back = Header::read(&mut r, "X").unwrap();
        assert_eq!(back, h);
        assert_eq!(back.get_f64("EXPID"), Some(12.0));
        assert_eq!(back.get_str("CAMERA").as_deref(), Some("r0"));
    }

    #[test]
    fn unquote_strips_fits_string_quotes() {
        assert_eq!(unquote("'r0      '"), "r0");
        assert_eq!(unquote("'it''s'"), "it's");
        assert_eq!(unquote(" 1000.0 "), "1000.0");
    }
}
