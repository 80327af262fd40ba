//! The structure of any FITS file, read through cfitsio's HDU-level calls only: HDU names,
//! image shapes and pixel types (tile-compressed images included), table columns and row
//! counts, header cards. It never decodes table rows, so files with column types the typed
//! readers do not support (variable-length arrays, ASCII tables) are still described, and a
//! file whose HDUs run past its end is reported as truncated.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int};
use std::path::Path;

use serde::Serialize;

use crate::io::fits::FitsReader;
use crate::io::header::{raw_cards, unquote};
use crate::io::{FitsError, Result};

/// cfitsio HDU types (fitsio.h).
const IMAGE_HDU: c_int = 0;
const ASCII_TBL: c_int = 1;
/// cfitsio status "keyword not found".
const KEY_NO_EXIST: c_int = 202;

/// What one HDU holds.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum HduData {
    /// An image; `shape` in numpy order (`[NAXIS2, NAXIS1]`), empty for a header-only HDU.
    Image {
        shape: Vec<usize>,
        /// numpy-style pixel type: u1, i1, i2, u2, i4, u4, i8, f4, f8.
        dtype: String,
        /// ZCMPTYPE of a tile-compressed image (GZIP_1, RICE_1, …).
        #[serde(skip_serializing_if = "Option::is_none")]
        compression: Option<String>,
    },
    /// A binary (or ASCII) table.
    Table {
        nrows: usize,
        /// Column names with their TFORM (e.g. `("FLUX_G", "E")`).
        columns: Vec<(String, String)>,
        ascii: bool,
    },
}

/// One HDU of a file.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HduSummary {
    /// 0-based position in the file (for the reader only: spx addresses HDUs by name).
    pub index: usize,
    /// EXTNAME, `PRIMARY` for an unnamed primary, empty for an unnamed extension.
    pub name: String,
    #[serde(flatten)]
    pub data: HduData,
    /// BUNIT, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bunit: Option<String>,
}

impl HduSummary {
    /// Image shape (numpy order) or `None` for a table.
    pub fn shape(&self) -> Option<&[usize]> {
        match &self.data {
            HduData::Image { shape, .. } => Some(shape),
            HduData::Table { .. } => None,
        }
    }

    /// Whether this is an image with `ndim` axes.
    pub fn is_image_nd(&self, ndim: usize) -> bool {
        self.shape().is_some_and(|s| s.len() == ndim)
    }

    /// Whether this is a table having column `col` (case-insensitive).
    pub fn has_column(&self, col: &str) -> bool {
        match &self.data {
            HduData::Table { columns, .. } => {
                columns.iter().any(|(c, _)| c.eq_ignore_ascii_case(col))
            }
            HduData::Image { .. } => false,
        }
    }

    /// Whether this is a table.
    pub fn is_table(&self) -> bool {
        matches!(self.data, HduData::Table { .. })
    }
}

/// A header card value as written (strings unquoted).
pub type Card = (String, String);

/// Raw access to the cfitsio handle of a [`FitsReader`], positioned by HDU number.
pub struct Raw<'a> {
    r: &'a mut FitsReader,
}

impl<'a> Raw<'a> {
    pub fn new(r: &'a mut FitsReader) -> Self {
        Raw { r }
    }

    fn fptr(&mut self) -> *mut fitsio::sys::fitsfile {
        // SAFETY: the reader owns an open file for as long as `self` borrows it.
        unsafe { self.r.file_mut().as_raw() }
    }

    fn path(&self) -> &Path {
        self.r.path()
    }

    fn err(&self, what: &str, status: c_int) -> FitsError {
        FitsError::file(
            self.path(),
            format!("{what} (cfitsio status {status}: {})", status_text(status)),
        )
    }

    /// Number of HDUs.
    pub fn num_hdus(&mut self) -> Result<usize> {
        let (mut n, mut status) = (0, 0);
        unsafe { fitsio::sys::ffthdu(self.fptr(), &mut n, &mut status) };
        if status != 0 {
            return Err(self.err("cannot count HDUs", status));
        }
        Ok(n.max(0) as usize)
    }

    /// Moves to HDU `index` (0-based); returns the cfitsio HDU type.
    fn select(&mut self, index: usize) -> Result<c_int> {
        let (mut typ, mut status) = (0, 0);
        unsafe { fitsio::sys::ffmahd(self.fptr(), index as c_int + 1, &mut typ, &mut status) };
        if status != 0 {
            return Err(self.err(&format!("cannot read HDU {index}"), status));
        }
        Ok(typ)
    }

    /// Byte offsets (header start, data start, data end) of the current HDU.
    fn extent(&mut self) -> Result<(u64, u64, u64)> {
        let (mut h, mut d, mut e, mut status) = (0, 0, 0, 0);
        unsafe { fitsio::sys::ffghadll(self.fptr(), &mut h, &mut d, &mut e, &mut status) };
        if status != 0 {
            return Err(self.err("cannot locate HDU data", status));
        }
        Ok((h.max(0) as u64, d.max(0) as u64, e.max(0) as u64))
    }

    /// The raw value string of keyword `key` in the current HDU (strings unquoted), if present.
    fn key(&mut self, key: &str) -> Result<Option<String>> {
        let k = CString::new(key).map_err(|_| FitsError::file(self.path(), "bad keyword"))?;
        let mut value = [0 as c_char; 100];
        let mut status = 0;
        unsafe {
            fitsio::sys::ffgkey(
                self.fptr(),
                k.as_ptr(),
                value.as_mut_ptr(),
                std::ptr::null_mut(),
                &mut status,
            )
        };
        if status == KEY_NO_EXIST {
            return Ok(None);
        }
        if status != 0 {
            return Err(self.err(&format!("cannot read keyword {key}"), status));
        }
        let raw = unsafe { CStr::from_ptr(value.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        Ok(Some(unquote(&raw)))
    }

    /// Every card (name, value) of HDU `index`, COMMENT/HISTORY and blank cards left out.
    pub fn cards(&mut self, index: usize) -> Result<Vec<Card>> {
        self.select(index)?;
        let cards = raw_cards(self.r).map_err(|e| {
            self.err(
                &format!("HDU {index}: cannot read header card {}", e.card),
                e.status,
            )
        })?;
        Ok(cards
            .into_iter()
            .filter(|(name, value)| {
                !(name.is_empty() || name == "COMMENT" || name == "HISTORY" || value.is_empty())
            })
            .map(|(name, value)| (name, unquote(&value)))
            .collect())
    }

    /// Values of `keys` in HDU `index`, in the order of `keys`, absent ones left out.
    pub fn keys(&mut self, index: usize, keys: &[&str]) -> Result<Vec<Card>> {
        self.select(index)?;
        let mut out = Vec::new();
        for k in keys {
            if let Some(v) = self.key(k)?.filter(|v| !v.is_empty()) {
                out.push((k.to_string(), v));
            }
        }
        Ok(out)
    }

    /// Describes every HDU. A file whose last HDU ends beyond the end of the file is an error
    /// ("truncated"), as is any HDU cfitsio cannot parse.
    pub fn summaries(&mut self) -> Result<Vec<HduSummary>> {
        let size = std::fs::metadata(self.path())
            .map_err(|e| FitsError::file(self.path(), format!("cannot stat ({e})")))?
            .len();
        // cfitsio inflates .gz/.Z/.bz2 files into memory at open, so the byte offsets below
        // refer to the inflated file; it also inflates a gzip file cut short without a word.
        // A gzip file ends with the inflated size mod 2^32 (RFC 1952 ISIZE), which must then
        // equal the end of the last HDU; a cut file ends with compressed bytes instead.
        let compression = compression_of(self.path());
        let gzip_isize = match compression {
            Compression::Gzip => Some(gzip_isize(self.path())?),
            _ => None,
        };
        let size = if compression == Compression::None {
            size
        } else {
            u64::MAX
        };
        let n = self.num_hdus()?;
        let mut out = Vec::with_capacity(n);
        let mut last_end = 0;
        for index in 0..n {
            let typ = self.select(index)?;
            let (_, _, end) = self.extent()?;
            let name = self.key("EXTNAME")?.unwrap_or_default();
            let name = if name.is_empty() && index == 0 {
                crate::io::fits::PRIMARY.to_string()
            } else {
                name
            };
            if end > size {
                let shown = if name.is_empty() {
                    format!("HDU {index}")
                } else {
                    format!("HDU {name}")
                };
                return Err(FitsError::file(
                    self.path(),
                    format!("truncated: {shown} needs {end} bytes, the file has {size}"),
                ));
            }
            let data = if typ == IMAGE_HDU {
                self.image_info()?
            } else {
                self.table_info(typ == ASCII_TBL)?
            };
            let bunit = self.key("BUNIT")?.filter(|s| !s.is_empty());
            last_end = end;
            out.push(HduSummary {
                index,
                name,
                data,
                bunit,
            });
        }
        // cfitsio stops counting HDUs at a header cut short, so a file cut inside a header
        // shows as complete HDUs followed by bytes that belong to none.
        if let Some(isize) = gzip_isize {
            if isize != last_end as u32 {
                return Err(FitsError::file(
                    self.path(),
                    format!(
                        "truncated or corrupt gzip file: its HDUs end at byte {last_end}, \
                         the gzip trailer says {isize} (mod 2^32)"
                    ),
                ));
            }
        }
        if size != u64::MAX && size > last_end {
            let after = out.last().map_or("the primary HDU".to_string(), |h| {
                if h.name.is_empty() {
                    format!("HDU {}", h.index)
                } else {
                    format!("HDU {}", h.name)
                }
            });
            return Err(FitsError::file(
                self.path(),
                format!(
                    "truncated: {} bytes after {after} are not a complete HDU",
                    size - last_end
                ),
            ));
        }
        Ok(out)
    }

    fn image_info(&mut self) -> Result<HduData> {
        let fptr = self.fptr();
        let (mut bitpix, mut naxis, mut status) = (0, 0, 0);
        unsafe {
            fitsio::sys::ffgiet(fptr, &mut bitpix, &mut status);
            fitsio::sys::ffgidm(fptr, &mut naxis, &mut status);
        }
        if status != 0 {
            return Err(self.err("cannot read image description", status));
        }
        let mut naxes = vec![0i64; naxis.max(0) as usize];
        if naxis > 0 {
            unsafe { fitsio::sys::ffgiszll(fptr, naxis, naxes.as_mut_ptr(), &mut status) };
            if status != 0 {
                return Err(self.err("cannot read image size", status));
            }
        }
        // numpy order: last FITS axis first.
        let shape = naxes.iter().rev().map(|&v| v.max(0) as usize).collect();
        let dtype = match bitpix {
            8 => "u1",
            10 => "i1",
            16 => "i2",
            20 => "u2",
            32 => "i4",
            40 => "u4",
            64 => "i8",
            80 => "u8",
            -32 => "f4",
            -64 => "f8",
            _ => "?",
        }
        .to_string();
        let compression = self.key("ZCMPTYPE")?;
        Ok(HduData::Image {
            shape,
            dtype,
            compression,
        })
    }

    fn table_info(&mut self, ascii: bool) -> Result<HduData> {
        let fptr = self.fptr();
        let (mut nrows, mut ncols, mut status) = (0i64, 0, 0);
        unsafe {
            fitsio::sys::ffgnrwll(fptr, &mut nrows, &mut status);
            fitsio::sys::ffgncl(fptr, &mut ncols, &mut status);
        }
        if status != 0 {
            return Err(self.err("cannot read table description", status));
        }
        let mut columns = Vec::with_capacity(ncols.max(0) as usize);
        for i in 1..=ncols.max(0) {
            let name = self
                .key(&format!("TTYPE{i}"))?
                .unwrap_or_else(|| format!("COL{i}"));
            let form = self.key(&format!("TFORM{i}"))?.unwrap_or_default();
            columns.push((name, form));
        }
        Ok(HduData::Table {
            nrows: nrows.max(0) as usize,
            columns,
            ascii,
        })
    }
}

/// Whole-file compression that cfitsio undoes on open.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Compression {
    None,
    Gzip,
    /// Unix compress (.Z) or bzip2.
    Other,
}

fn compression_of(path: &Path) -> Compression {
    use std::io::Read;
    let mut magic = [0u8; 3];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut magic))
        .unwrap_or(0);
    match magic {
        [0x1f, 0x8b, _] if n >= 2 => Compression::Gzip,
        [0x1f, 0x9d, _] if n >= 2 => Compression::Other,
        [b'B', b'Z', b'h'] => Compression::Other,
        _ => Compression::None,
    }
}

/// The ISIZE field of a gzip file: its last 4 bytes, little-endian.
fn gzip_isize(path: &Path) -> Result<u32> {
    use std::io::{Read, Seek, SeekFrom};
    let mut buf = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::End(-4))?;
            f.read_exact(&mut buf)
        })
        .map_err(|e| FitsError::file(path, format!("cannot read gzip trailer ({e})")))?;
    Ok(u32::from_le_bytes(buf))
}

/// Fails when the file is truncated (an HDU runs past the end, a header is cut short, a gzip
/// file is cut) or an HDU cannot be parsed. Reads headers only. cfitsio alone misses the
/// last two cases (it sees one HDU fewer, or inflates what is there), so a typed reader that
/// treats an absent HDU as optional would accept such a file; this is the check for them.
pub fn check_complete(r: &mut FitsReader) -> Result<()> {
    Raw::new(r).summaries().map(|_| ())
}

/// cfitsio's short text for a status code.
fn status_text(status: c_int) -> String {
    let mut buf = [0 as c_char; 31];
    unsafe { fitsio::sys::ffgerr(status, buf.as_mut_ptr()) };
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}
