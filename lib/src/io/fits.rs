//! Small FITS helpers shared by every file kind: a reader that addresses HDUs by name and turns
//! every cfitsio failure into a [`FitsError`] naming file and HDU, and an atomic writer
//! (temporary file in the same directory, renamed on [`FitsWriter::commit`]) that stamps
//! provenance keywords into the primary header.
//!
//! Arrays follow numpy order: a FITS image with NAXIS1 = nx, NAXIS2 = ny is `[ny, nx]`.

use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use fitsio::hdu::{FitsHdu, HduInfo};
use fitsio::headers::ReadsKey;
use fitsio::images::{ImageDescription, ImageType, ReadImage, WriteImage};
use fitsio::tables::{ColumnDataType, ColumnDescription, ReadsCol};
use fitsio::FitsFile;
use ndarray::{Array1, Array2, Array3, ArrayD, Ix1, Ix2, Ix3};

pub use super::error::{FitsError, Result};

/// cfitsio status for "keyword not found".
const KEY_NO_EXIST: i32 = 202;

/// Name used for the primary HDU when it has no EXTNAME.
pub const PRIMARY: &str = "PRIMARY";

/// A FITS file opened for reading. HDUs are addressed by EXTNAME (or [`PRIMARY`]).
pub struct FitsReader {
    path: PathBuf,
    file: FitsFile,
}

impl FitsReader {
    /// Opens `path`; a missing or non-FITS file is an error naming it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(FitsError::file(path, "no such file"));
        }
        let mut file = FitsFile::open(path)
            .map_err(|e| FitsError::file(path, format!("not a readable FITS file ({e})")))?;
        check_not_truncated(path, &mut file)?;
        Ok(FitsReader {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The path this reader was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying cfitsio handle, for the rare reader that needs raw access.
    pub fn file_mut(&mut self) -> &mut FitsFile {
        &mut self.file
    }

    /// Moves to the HDU named `name` (EXTNAME, or [`PRIMARY`]).
    pub fn hdu(&mut self, name: &str) -> Result<FitsHdu> {
        let path = self.path.clone();
        let file = &mut self.file;
        // fitsio panics on HDUs with variable-length array columns; treat that as an error.
        let found = catch_unwind(AssertUnwindSafe(|| {
            if name == PRIMARY {
                file.primary_hdu()
            } else {
                file.hdu(name)
            }
        }));
        match found {
            Ok(Ok(hdu)) => Ok(hdu),
            Ok(Err(_)) => Err(FitsError::missing(&path, name)),
            Err(_) => Err(FitsError::hdu(
                &path,
                name,
                "unsupported column type (variable-length array)",
            )),
        }
    }

    /// Whether an HDU named `name` exists.
    pub fn has_hdu(&mut self, name: &str) -> bool {
        self.hdu(name).is_ok()
    }

    /// EXTNAMEs of all HDUs in file order (the primary is [`PRIMARY`] when unnamed).
    pub fn hdu_names(&mut self) -> Result<Vec<String>> {
        let n = self
            .file
            .num_hdus()
            .map_err(|e| FitsError::file(&self.path, e.to_string()))?;
        let mut names = Vec::with_capacity(n);
        for i in 0..n {
            let hdu = self
                .file
                .hdu(i)
                .map_err(|e| FitsError::file(&self.path, format!("HDU {i}: {e}")))?;
            let name = hdu
                .read_key::<String>(&mut self.file, "EXTNAME")
                .unwrap_or_else(|_| {
                    if i == 0 {
                        PRIMARY.to_string()
                    } else {
                        format!("HDU{i}")
                    }
                });
            names.push(name.trim().to_string());
        }
        Ok(names)
    }

    /// Shape of an image HDU in numpy order, or an error if it is a table.
    pub fn image_shape(&mut self, name: &str) -> Result<Vec<usize>> {
        match self.hdu(name)?.info {
            HduInfo::ImageInfo { shape, .. } => Ok(shape),
            _ => Err(FitsError::hdu(
                &self.path,
                name,
                "is a table, expected an image",
            )),
        }
    }

    /// Reads a whole image HDU of any dimensionality, converting to `T`.
    pub fn image<T>(&mut self, name: &str) -> Result<ArrayD<T>>
    where
        ArrayD<T>: ReadImage,
    {
        let hdu = self.hdu(name)?;
        if !matches!(hdu.info, HduInfo::ImageInfo { .. }) {
            return Err(FitsError::hdu(
                &self.path,
                name,
                "is a table, expected an image",
            ));
        }
        hdu.read_image::<ArrayD<T>>(&mut self.file)
            .map_err(|e| FitsError::hdu(&self.path, name, format!("cannot read image ({e})")))
    }

    /// Reads a 1-D image.
    pub fn image1<T>(&mut self, name: &str) -> Result<Array1<T>>
    where
        ArrayD<T>: ReadImage,
    {
        let a = self.image::<T>(name)?;
        let shape = a.shape().to_vec();
        a.into_dimensionality::<Ix1>().map_err(|_| {
            FitsError::hdu(
                &self.path,
                name,
                format!("expected 1-D image, got shape {shape:?}"),
            )
        })
    }

    /// Reads a 2-D image `[NAXIS2, NAXIS1]`.
    pub fn image2<T>(&mut self, name: &str) -> Result<Array2<T>>
    where
        ArrayD<T>: ReadImage,
    {
        let a = self.image::<T>(name)?;
        let shape = a.shape().to_vec();
        a.into_dimensionality::<Ix2>().map_err(|_| {
            FitsError::hdu(
                &self.path,
                name,
                format!("expected 2-D image, got shape {shape:?}"),
            )
        })
    }

    /// Reads a 3-D image `[NAXIS3, NAXIS2, NAXIS1]`.
    pub fn image3<T>(&mut self, name: &str) -> Result<Array3<T>>
    where
        ArrayD<T>: ReadImage,
    {
        let a = self.image::<T>(name)?;
        let shape = a.shape().to_vec();
        a.into_dimensionality::<Ix3>().map_err(|_| {
            FitsError::hdu(
                &self.path,
                name,
                format!("expected 3-D image, got shape {shape:?}"),
            )
        })
    }

    /// Reads a required header keyword of HDU `hdu`.
    pub fn key<T: ReadsKey>(&mut self, hdu: &str, key: &str) -> Result<T> {
        self.key_opt(hdu, key)?
            .ok_or_else(|| FitsError::hdu(&self.path, hdu, format!("keyword {key} is missing")))
    }

    /// Reads an optional header keyword: `Ok(None)` when absent, an error when unreadable.
    pub fn key_opt<T: ReadsKey>(&mut self, hdu: &str, key: &str) -> Result<Option<T>> {
        let h = self.hdu(hdu)?;
        match h.read_key::<T>(&mut self.file, key) {
            Ok(v) => Ok(Some(v)),
            Err(fitsio::errors::Error::Fits(e)) if e.status == KEY_NO_EXIST => Ok(None),
            Err(e) => Err(FitsError::hdu(
                &self.path,
                hdu,
                format!("keyword {key}: {e}"),
            )),
        }
    }

    /// Number of rows of a table HDU.
    pub fn nrows(&mut self, hdu: &str) -> Result<usize> {
        match self.hdu(hdu)?.info {
            HduInfo::TableInfo { num_rows, .. } => Ok(num_rows),
            _ => Err(FitsError::hdu(
                &self.path,
                hdu,
                "is an image, expected a table",
            )),
        }
    }

    /// Column names of a table HDU, in order.
    pub fn column_names(&mut self, hdu: &str) -> Result<Vec<String>> {
        match self.hdu(hdu)?.info {
            HduInfo::TableInfo {
                column_descriptions,
                ..
            } => Ok(column_descriptions.into_iter().map(|c| c.name).collect()),
            _ => Err(FitsError::hdu(
                &self.path,
                hdu,
                "is an image, expected a table",
            )),
        }
    }

    /// Whether table `hdu` has column `col`.
    pub fn has_column(&mut self, hdu: &str, col: &str) -> Result<bool> {
        Ok(self
            .column_names(hdu)?
            .iter()
            .any(|c| c.eq_ignore_ascii_case(col)))
    }

    /// Reads a whole column; vector columns come back flattened row by row.
    pub fn col<T: ReadsCol + 'static>(&mut self, hdu: &str, col: &str) -> Result<Vec<T>> {
        if !self.has_column(hdu, col)? {
            return Err(FitsError::hdu(
                &self.path,
                hdu,
                format!("column {col} is missing"),
            ));
        }
        if std::any::TypeId::of::<T>() == std::any::TypeId::of::<String>() {
            // fitsio's own String reader overflows its buffers (see col_str).
            let strings: Box<dyn std::any::Any> = Box::new(self.col_str(hdu, col)?);
            return strings
                .downcast::<Vec<T>>()
                .map(|v| *v)
                .map_err(|_| FitsError::hdu(&self.path, hdu, "internal: string column type"));
        }
        let h = self.hdu(hdu)?;
        h.read_col::<T>(&mut self.file, col)
            .map_err(|e| FitsError::hdu(&self.path, hdu, format!("column {col}: {e}")))
    }

    /// Reads a string column. fitsio 0.21's `read_col::<String>` allocates `width` bytes per row
    /// while cfitsio writes `width + 1` (the NUL), a heap overflow on full-width values; this
    /// reads into `width + 1`-byte buffers instead.
    fn col_str(&mut self, hdu: &str, col: &str) -> Result<Vec<String>> {
        let r = self;
        let path = r.path().to_path_buf();
        let names = r.column_names(hdu)?;
        let colnum = names
            .iter()
            .position(|c| c.eq_ignore_ascii_case(col))
            .ok_or_else(|| FitsError::hdu(&path, hdu, format!("column {col} is missing")))?;
        let nrows = r.nrows(hdu)?;
        let h = r.hdu(hdu)?;
        let file = r.file_mut();
        let _ = h.read_key::<String>(file, "EXTNAME");
        let fptr = unsafe { file.as_raw() };
        let mut status = 0;
        let mut width = 0;
        // SAFETY: fptr is open on `hdu`; colnum is 1-based and exists.
        unsafe { fitsio::sys::ffgcdw(fptr, colnum as i32 + 1, &mut width, &mut status) };
        if status != 0 {
            return Err(FitsError::hdu(
                &path,
                hdu,
                format!("column {col}: cfitsio status {status}"),
            ));
        }
        let width = width.max(1) as usize + 1;
        let mut bufs: Vec<Vec<std::os::raw::c_char>> = vec![vec![0; width]; nrows];
        let mut ptrs: Vec<*mut std::os::raw::c_char> =
            bufs.iter_mut().map(|b| b.as_mut_ptr()).collect();
        let mut anynul = 0;
        if nrows > 0 {
            let mut nul = [0 as std::os::raw::c_char; 1];
            // SAFETY: every row buffer holds width+1 bytes (display width plus NUL).
            unsafe {
                fitsio::sys::ffgcvs(
                    fptr,
                    colnum as i32 + 1,
                    1,
                    1,
                    nrows as i64,
                    nul.as_mut_ptr(),
                    ptrs.as_mut_ptr(),
                    &mut anynul,
                    &mut status,
                )
            };
        }
        if status != 0 {
            return Err(FitsError::hdu(
                &path,
                hdu,
                format!("column {col}: cfitsio status {status}"),
            ));
        }
        Ok(bufs
            .iter()
            .map(|b| {
                let bytes: Vec<u8> = b
                    .iter()
                    .take_while(|&&c| c != 0)
                    .map(|&c| c as u8)
                    .collect();
                String::from_utf8_lossy(&bytes).into_owned()
            })
            .collect())
    }

    /// Reads a column if present.
    pub fn col_opt<T: ReadsCol + 'static>(
        &mut self,
        hdu: &str,
        col: &str,
    ) -> Result<Option<Vec<T>>> {
        if self.has_column(hdu, col)? {
            self.col(hdu, col).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// A plain FITS file is a whole number of 2880-byte blocks and ends where its last HDU's data
/// ends; anything else was cut short (a killed writer, a partial copy). cfitsio alone opens
/// such files and only fails, or silently drops an HDU, later.
fn check_not_truncated(path: &Path, file: &mut FitsFile) -> Result<()> {
    let is_plain = path
        .extension()
        .map(|e| e.eq_ignore_ascii_case("fits") || e.eq_ignore_ascii_case("fit"))
        .unwrap_or(false);
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    if !is_plain {
        return Ok(());
    }
    let size = meta.len() as i64;
    let fptr = unsafe { file.as_raw() };
    let (mut nhdu, mut status) = (0, 0);
    let (mut head, mut data, mut end) = (0i64, 0i64, 0i64);
    let mut extname = [0 as std::os::raw::c_char; 81];
    // SAFETY: fptr is the open file; the outputs are plain integers and an 81-byte buffer.
    unsafe {
        fitsio::sys::ffthdu(fptr, &mut nhdu, &mut status);
        fitsio::sys::ffmahd(fptr, nhdu, std::ptr::null_mut(), &mut status);
        fitsio::sys::ffghadll(fptr, &mut head, &mut data, &mut end, &mut status);
        let mut key_status = 0;
        let key = CString::new("EXTNAME").unwrap_or_default();
        fitsio::sys::ffgkys(
            fptr,
            key.as_ptr(),
            extname.as_mut_ptr(),
            std::ptr::null_mut(),
            &mut key_status,
        );
        let mut first = 0;
        fitsio::sys::ffmahd(fptr, 1, &mut first, &mut status);
    }
    let last = unsafe { std::ffi::CStr::from_ptr(extname.as_ptr()) }
        .to_string_lossy()
        .trim()
        .to_string();
    let last = if last.is_empty() {
        format!("HDU{}", nhdu - 1)
    } else {
        last
    };
    if status == 0 && (end > size || size % 2880 != 0) {
        return Err(FitsError::hdu(
            path,
            &last,
            format!("truncated FITS file ({size} bytes; this last HDU ends at byte {end})"),
        ));
    }
    // More bytes after the last HDU cfitsio could parse: an extension whose header was cut.
    if status == 0 && end < size {
        use std::io::{Read, Seek, SeekFrom};
        let mut tail = [0u8; 8];
        let starts_hdu = std::fs::File::open(path)
            .and_then(|mut f| {
                f.seek(SeekFrom::Start(end as u64))?;
                f.read_exact(&mut tail)
            })
            .map(|_| &tail == b"XTENSION")
            .unwrap_or(false);
        if starts_hdu {
            return Err(FitsError::file(
                path,
                format!("truncated FITS file (the header of the HDU at byte {end} is cut)"),
            ));
        }
    }
    Ok(())
}

/// Fails with an error naming file and HDU when any value is NaN or infinite.
pub fn require_finite<'a, I>(path: &Path, hdu: &str, values: I) -> Result<()>
where
    I: IntoIterator<Item = &'a f64>,
{
    if let Some(i) = values.into_iter().position(|v| !v.is_finite()) {
        return Err(FitsError::hdu(
            path,
            hdu,
            format!("non-finite value at flat index {i}"),
        ));
    }
    Ok(())
}

/// Rust element types that map to a FITS image type.
pub trait ImageElem: WriteImage + Copy {
    const IMAGE_TYPE: ImageType;
}
macro_rules! image_elem {
    ($t:ty, $v:ident) => {
        impl ImageElem for $t {
            const IMAGE_TYPE: ImageType = ImageType::$v;
        }
    };
}
image_elem!(u8, UnsignedByte);
image_elem!(i16, Short);
image_elem!(u16, UnsignedShort);
image_elem!(i32, Long);
image_elem!(u32, UnsignedLong);
image_elem!(i64, LongLong);
image_elem!(f32, Float);
image_elem!(f64, Double);

/// The values of one binary-table column. Vector columns hold `repeat` values per row,
/// flattened row by row.
#[derive(Debug, Clone)]
pub enum ColumnData {
    F64(Vec<f64>),
    F32(Vec<f32>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    I16(Vec<i16>),
    U8(Vec<u8>),
    Str(Vec<String>),
    F64Vec { data: Vec<f64>, repeat: usize },
    F32Vec { data: Vec<f32>, repeat: usize },
}

impl ColumnData {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            ColumnData::F64(v) => v.len(),
            ColumnData::F32(v) => v.len(),
            ColumnData::I64(v) => v.len(),
            ColumnData::I32(v) => v.len(),
            ColumnData::I16(v) => v.len(),
            ColumnData::U8(v) => v.len(),
            ColumnData::Str(v) => v.len(),
            ColumnData::F64Vec { data, repeat } => data.len() / (*repeat).max(1),
            ColumnData::F32Vec { data, repeat } => data.len() / (*repeat).max(1),
        }
    }
}

/// A named table column with an optional unit (TUNITn).
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub data: ColumnData,
    pub unit: Option<String>,
}

impl Column {
    pub fn new(name: &str, data: ColumnData) -> Self {
        Column {
            name: name.to_string(),
            data,
            unit: None,
        }
    }
    pub fn with_unit(mut self, unit: &str) -> Self {
        self.unit = Some(unit.to_string());
        self
    }
}

/// What wrote a file: stamped into the primary header as SPXVER, SPXPROG, SPXCMD, SPXINnn.
/// These keywords (with DATE and CHECKSUM) are the only header content allowed to differ
/// between two runs that must give "the same bytes".
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// Program name, e.g. `spx-extract`.
    pub program: String,
    /// The full command line.
    pub command: String,
    /// Input files.
    pub inputs: Vec<PathBuf>,
}

impl Provenance {
    /// Provenance of the running process with the given inputs.
    pub fn current(program: &str, inputs: &[&Path]) -> Self {
        Provenance {
            program: program.to_string(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            inputs: inputs.iter().map(|p| p.to_path_buf()).collect(),
        }
    }
}

/// Header keywords that carry provenance and are ignored when comparing outputs.
pub const PROVENANCE_KEYS: &[&str] = &[
    "SPXVER", "SPXPROG", "SPXCMD", "DATE", "CHECKSUM", "DATASUM", "LONGSTRN",
];

/// Whether `key` is a provenance keyword (including SPXINnn).
pub fn is_provenance_key(key: &str) -> bool {
    PROVENANCE_KEYS.contains(&key) || key.starts_with("SPXIN")
}

/// A value that can be written as a header keyword. Writing updates an existing keyword of
/// the same name instead of appending a duplicate; strings of any length use the FITS
/// long-string convention.
pub trait KeyValue {
    /// # Safety
    /// `fptr` must be an open cfitsio file and `key` a NUL-terminated keyword name.
    #[doc(hidden)]
    unsafe fn update(
        &self,
        fptr: *mut fitsio::sys::fitsfile,
        key: *const std::os::raw::c_char,
        status: &mut i32,
    );
}

impl KeyValue for &str {
    unsafe fn update(
        &self,
        fptr: *mut fitsio::sys::fitsfile,
        key: *const std::os::raw::c_char,
        status: &mut i32,
    ) {
        let v = CString::new(self.replace('\0', " ")).unwrap_or_default();
        // SAFETY: fptr is an open file, key and v are NUL-terminated.
        unsafe {
            if self.len() > 68 {
                fitsio::sys::ffukls(fptr, key, v.as_ptr(), std::ptr::null(), status);
            } else {
                fitsio::sys::ffukys(fptr, key, v.as_ptr(), std::ptr::null(), status);
            }
        }
    }
}
impl KeyValue for String {
    unsafe fn update(
        &self,
        fptr: *mut fitsio::sys::fitsfile,
        key: *const std::os::raw::c_char,
        status: &mut i32,
    ) {
        unsafe { self.as_str().update(fptr, key, status) }
    }
}
impl KeyValue for f64 {
    unsafe fn update(
        &self,
        fptr: *mut fitsio::sys::fitsfile,
        key: *const std::os::raw::c_char,
        status: &mut i32,
    ) {
        // -17: shortest exact representation of a double.
        unsafe { fitsio::sys::ffukyd(fptr, key, *self, -17, std::ptr::null(), status) };
    }
}
impl KeyValue for f32 {
    unsafe fn update(
        &self,
        fptr: *mut fitsio::sys::fitsfile,
        key: *const std::os::raw::c_char,
        status: &mut i32,
    ) {
        unsafe { f64::from(*self).update(fptr, key, status) }
    }
}
impl KeyValue for i64 {
    unsafe fn update(
        &self,
        fptr: *mut fitsio::sys::fitsfile,
        key: *const std::os::raw::c_char,
        status: &mut i32,
    ) {
        unsafe { fitsio::sys::ffukyj(fptr, key, *self as _, std::ptr::null(), status) };
    }
}
macro_rules! int_key {
    ($($t:ty),*) => {$(
        impl KeyValue for $t {
            unsafe fn update(&self, fptr: *mut fitsio::sys::fitsfile, key: *const std::os::raw::c_char, status: &mut i32) {
                unsafe { (*self as i64).update(fptr, key, status) }
            }
        }
    )*};
}
int_key!(i32, u32, i16, u16, u8, usize);
impl KeyValue for bool {
    unsafe fn update(
        &self,
        fptr: *mut fitsio::sys::fitsfile,
        key: *const std::os::raw::c_char,
        status: &mut i32,
    ) {
        unsafe { fitsio::sys::ffukyl(fptr, key, *self as i32, std::ptr::null(), status) };
    }
}

/// Writes a FITS file atomically: everything goes to a hidden temporary file next to the
/// destination, which [`FitsWriter::commit`] renames into place. Dropping an uncommitted
/// writer deletes the temporary file, so a failed or killed task leaves no file that looks done.
pub struct FitsWriter {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<FitsFile>,
    current: Option<(String, FitsHdu)>,
}

/// Temporary name used while writing `path`: same directory, so the rename is atomic.
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out.fits".into());
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    dir.join(format!(".{name}.tmp.{}", std::process::id()))
}

impl FitsWriter {
    fn start(path: &Path, primary: Option<&ImageDescription>) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| FitsError::file(path, format!("cannot create directory ({e})")))?;
        }
        let tmp = temp_path_for(path);
        let _ = std::fs::remove_file(&tmp);
        let mut builder = FitsFile::create(&tmp).overwrite();
        if let Some(desc) = primary {
            builder = builder.with_custom_primary(desc);
        }
        let file = builder
            .open()
            .map_err(|e| FitsError::file(path, format!("cannot create ({e})")))?;
        Ok(FitsWriter {
            path: path.to_path_buf(),
            tmp,
            file: Some(file),
            current: None,
        })
    }

    /// Starts a file with an empty primary HDU (the next HDUs are extensions).
    pub fn create(path: impl AsRef<Path>, prov: &Provenance) -> Result<Self> {
        let mut w = Self::start(path.as_ref(), None)?;
        w.select_primary()?;
        w.provenance(prov)?;
        Ok(w)
    }

    /// Starts a file whose primary HDU is the image `extname` (as desispec writes FLUX or
    /// IMAGE first). `shape` is in numpy order.
    pub fn create_with_primary_image<T: ImageElem>(
        path: impl AsRef<Path>,
        prov: &Provenance,
        extname: &str,
        shape: &[usize],
        data: &[T],
    ) -> Result<Self> {
        Self::create_with_primary_image_keys(path, prov, extname, shape, data, |_| Ok(()))
    }

    /// [`FitsWriter::create_with_primary_image`] that has `keys` write header keywords
    /// (after EXTNAME and the provenance) before the data goes in. Keywords added after the
    /// data make cfitsio move the whole data unit down, 2880 bytes at a time, each time the
    /// header outgrows a block: for a 4k × 4k float image and a preproc header that was
    /// 2 × 70 MB copied (~1 s).
    pub fn create_with_primary_image_keys<T: ImageElem>(
        path: impl AsRef<Path>,
        prov: &Provenance,
        extname: &str,
        shape: &[usize],
        data: &[T],
        keys: impl FnOnce(&mut Self) -> Result<()>,
    ) -> Result<Self> {
        let desc = ImageDescription {
            data_type: T::IMAGE_TYPE,
            dimensions: shape,
        };
        let mut w = Self::start(path.as_ref(), Some(&desc))?;
        w.select_primary()?;
        w.check_len(extname, shape, data.len())?;
        w.key("EXTNAME", extname)?;
        w.provenance(prov)?;
        keys(&mut w)?;
        let (file, hdu) = w.parts(extname)?;
        hdu.write_image(file, data)
            .map_err(|e| FitsError::hdu(&w.path, extname, format!("cannot write ({e})")))?;
        Ok(w)
    }

    fn select_primary(&mut self) -> Result<()> {
        let path = self.path.clone();
        let file = self.file_mut()?;
        let hdu = file
            .primary_hdu()
            .map_err(|e| FitsError::hdu(&path, PRIMARY, e.to_string()))?;
        self.current = Some((PRIMARY.to_string(), hdu));
        Ok(())
    }

    fn file_mut(&mut self) -> Result<&mut FitsFile> {
        let path = self.path.clone();
        self.file
            .as_mut()
            .ok_or_else(|| FitsError::file(&path, "writer already closed"))
    }

    fn parts(&mut self, what: &str) -> Result<(&mut FitsFile, &FitsHdu)> {
        match (self.file.as_mut(), self.current.as_ref()) {
            (Some(f), Some((_, h))) => Ok((f, h)),
            _ => Err(FitsError::hdu(&self.path, what, "no HDU to write to")),
        }
    }

    fn check_len(&self, name: &str, shape: &[usize], len: usize) -> Result<()> {
        let want: usize = shape.iter().product();
        if want != len {
            return Err(FitsError::hdu(
                &self.path,
                name,
                format!("data length {len} does not match shape {shape:?}"),
            ));
        }
        Ok(())
    }

    /// Appends an image extension `extname` with `shape` in numpy order; it becomes the
    /// current HDU for [`FitsWriter::key`].
    pub fn image<T: ImageElem>(
        &mut self,
        extname: &str,
        shape: &[usize],
        data: &[T],
    ) -> Result<()> {
        self.check_len(extname, shape, data.len())?;
        let path = self.path.clone();
        let desc = ImageDescription {
            data_type: T::IMAGE_TYPE,
            dimensions: shape,
        };
        let file = self.file_mut()?;
        let hdu = file
            .create_image(extname, &desc)
            .map_err(|e| FitsError::hdu(&path, extname, format!("cannot create ({e})")))?;
        hdu.write_image(file, data)
            .map_err(|e| FitsError::hdu(&path, extname, format!("cannot write ({e})")))?;
        self.current = Some((extname.to_string(), hdu));
        Ok(())
    }

    /// Appends a binary table; all columns must have the same number of rows.
    pub fn table(&mut self, extname: &str, columns: &[Column]) -> Result<()> {
        let path = self.path.clone();
        let nrows = columns.first().map(|c| c.data.len()).unwrap_or(0);
        if let Some(c) = columns.iter().find(|c| c.data.len() != nrows) {
            return Err(FitsError::hdu(
                &path,
                extname,
                format!(
                    "column {} has {} rows, expected {nrows}",
                    c.name,
                    c.data.len()
                ),
            ));
        }
        let mut descs = Vec::with_capacity(columns.len());
        for c in columns {
            let (typ, repeat) = match &c.data {
                ColumnData::F64(_) => (ColumnDataType::Double, 1),
                ColumnData::F32(_) => (ColumnDataType::Float, 1),
                ColumnData::I64(_) => (ColumnDataType::LongLong, 1),
                ColumnData::I32(_) => (ColumnDataType::Int, 1),
                ColumnData::I16(_) => (ColumnDataType::Short, 1),
                ColumnData::U8(_) => (ColumnDataType::Byte, 1),
                ColumnData::Str(v) => (
                    ColumnDataType::String,
                    v.iter().map(|s| s.len()).max().unwrap_or(1).max(1),
                ),
                ColumnData::F64Vec { repeat, .. } => (ColumnDataType::Double, *repeat),
                ColumnData::F32Vec { repeat, .. } => (ColumnDataType::Float, *repeat),
            };
            let mut d = ColumnDescription::new(c.name.as_str());
            d.with_type(typ);
            if repeat != 1 {
                d.that_repeats(repeat);
            }
            descs.push(
                d.create().map_err(|e| {
                    FitsError::hdu(&path, extname, format!("column {}: {e}", c.name))
                })?,
            );
        }
        let file = self.file_mut()?;
        let hdu = file
            .create_table(extname, &descs)
            .map_err(|e| FitsError::hdu(&path, extname, format!("cannot create ({e})")))?;
        if nrows > 0 {
            for c in columns {
                let res = match &c.data {
                    ColumnData::F64(v) => hdu.write_col(file, &c.name, v),
                    ColumnData::F32(v) => hdu.write_col(file, &c.name, v),
                    ColumnData::I64(v) => hdu.write_col(file, &c.name, v),
                    ColumnData::I32(v) => hdu.write_col(file, &c.name, v),
                    ColumnData::I16(v) => hdu.write_col(file, &c.name, v),
                    ColumnData::U8(v) => hdu.write_col(file, &c.name, v),
                    ColumnData::Str(v) => hdu.write_col(file, &c.name, v),
                    ColumnData::F64Vec { data, .. } => hdu.write_col(file, &c.name, data),
                    ColumnData::F32Vec { data, .. } => hdu.write_col(file, &c.name, data),
                };
                res.map_err(|e| FitsError::hdu(&path, extname, format!("column {}: {e}", c.name)))?;
            }
        }
        for (i, c) in columns.iter().enumerate() {
            if let Some(u) = &c.unit {
                hdu.write_key(file, &format!("TUNIT{}", i + 1), u.as_str())
                    .map_err(|e| FitsError::hdu(&path, extname, e.to_string()))?;
            }
        }
        self.current = Some((extname.to_string(), hdu));
        Ok(())
    }

    /// Writes (or updates) a header keyword in the current (last created) HDU.
    pub fn key<T: KeyValue>(&mut self, key: &str, value: T) -> Result<()> {
        // SAFETY: raw_key passes an open file and a NUL-terminated name.
        self.raw_key(key, |fptr, k, status| unsafe {
            value.update(fptr, k, status)
        })
    }

    fn raw_key(
        &mut self,
        key: &str,
        write: impl FnOnce(*mut fitsio::sys::fitsfile, *const std::os::raw::c_char, &mut i32),
    ) -> Result<()> {
        let name = self
            .current
            .as_ref()
            .map(|c| c.0.clone())
            .unwrap_or_default();
        let path = self.path.clone();
        let k = CString::new(key).map_err(|_| FitsError::hdu(&path, &name, "bad keyword"))?;
        let (file, hdu) = self.parts(&name)?;
        // Make the current HDU the one cfitsio writes to: a cheap keyword read does that.
        let _ = hdu.read_key::<String>(file, "XTENSION");
        let mut status = 0;
        let fptr = unsafe { file.as_raw() };
        write(fptr, k.as_ptr(), &mut status);
        if status != 0 {
            return Err(FitsError::hdu(
                &path,
                &name,
                format!("keyword {key}: cfitsio status {status}"),
            ));
        }
        Ok(())
    }

    /// Writes the provenance keywords into the primary header, then returns to the current HDU.
    fn provenance(&mut self, prov: &Provenance) -> Result<()> {
        let saved = self.current.take();
        self.select_primary()?;
        self.key("SPXVER", env!("CARGO_PKG_VERSION"))?;
        self.key("SPXPROG", prov.program.as_str())?;
        self.key("SPXCMD", prov.command.as_str())?;
        for (i, p) in prov.inputs.iter().enumerate().take(100) {
            self.key(&format!("SPXIN{i:02}"), p.display().to_string())?;
        }
        self.raw_key("DATE", |fptr, _, status| unsafe {
            fitsio::sys::ffpdat(fptr, status);
        })?;
        if saved.is_some() {
            self.current = saved;
        }
        Ok(())
    }

    /// Path of the final file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the temporary file and renames it to the final path.
    pub fn commit(mut self) -> Result<PathBuf> {
        self.current = None;
        drop(self.file.take());
        std::fs::rename(&self.tmp, &self.path).map_err(|e| {
            FitsError::file(
                &self.path,
                format!("cannot rename temporary file into place ({e})"),
            )
        })?;
        Ok(self.path.clone())
    }
}

impl Drop for FitsWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes text (YAML, JSON, Makefiles…) atomically, like [`FitsWriter`].
pub fn write_text_atomic(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| FitsError::file(path, format!("cannot create directory ({e})")))?;
    }
    let tmp = temp_path_for(path);
    std::fs::write(&tmp, text).map_err(|e| FitsError::file(path, format!("cannot write ({e})")))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        FitsError::file(path, format!("cannot rename into place ({e})"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_table_keys_round_trip_and_atomic_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.fits");
        let prov = Provenance::current("test", &[Path::new("in.fits")]);
        let data: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let mut w =
            FitsWriter::create_with_primary_image(&path, &prov, "FLUX", &[3, 4], &data).unwrap();
        w.key("CAMERA", "b0").unwrap();
        w.image("MASK", &[3, 4], &[1u32; 12]).unwrap();
        w.table(
            "FIBERMAP",
            &[
                Column::new("FIBER", ColumnData::I32(vec![0, 1, 2])),
                Column::new(
                    "OBJTYPE",
                    ColumnData::Str(vec!["TGT".into(), "SKY".into(), "".into()]),
                ),
                Column::new(
                    "COEFF",
                    ColumnData::F64Vec {
                        data: (0..6).map(f64::from).collect(),
                        repeat: 2,
                    },
                ),
            ],
        )
        .unwrap();
        w.key("OK", true).unwrap();
        w.key("EXPTIME", 900.5f64).unwrap();
        w.key("EXPID", 12i64).unwrap();
        assert!(!path.exists(), "nothing at the final path before commit");
        w.commit().unwrap();

        let mut r = FitsReader::open(&path).unwrap();
        assert_eq!(r.image2::<f32>("FLUX").unwrap()[[2, 3]], 11.0);
        assert_eq!(r.key::<String>("FLUX", "CAMERA").unwrap(), "b0");
        assert_eq!(r.key::<String>("FLUX", "SPXPROG").unwrap(), "test");
        assert_eq!(r.key_opt::<String>("FLUX", "NOPE").unwrap(), None);
        assert_eq!(r.key::<String>("FLUX", "EXTNAME").unwrap(), "FLUX");
        assert_eq!(r.key::<f64>("FIBERMAP", "EXPTIME").unwrap(), 900.5);
        assert_eq!(r.key::<i64>("FIBERMAP", "EXPID").unwrap(), 12);
        assert_eq!(r.image2::<u32>("MASK").unwrap()[[0, 0]], 1);
        assert_eq!(r.col::<String>("FIBERMAP", "OBJTYPE").unwrap()[1], "SKY");
        assert_eq!(r.col::<f64>("FIBERMAP", "COEFF").unwrap()[5], 5.0);
        assert!(matches!(
            r.image2::<f32>("IVAR"),
            Err(FitsError::MissingHdu { .. })
        ));
        assert_eq!(r.hdu_names().unwrap(), vec!["FLUX", "MASK", "FIBERMAP"]);
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.fits");
        {
            let mut w = FitsWriter::create(&path, &Provenance::default()).unwrap();
            w.image("X", &[2], &[1.0f64, 2.0]).unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn missing_and_truncated_files_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.fits");
        let e = FitsReader::open(&missing).err().unwrap().to_string();
        assert!(e.contains("nope.fits") && e.contains("no such file"), "{e}");
        let junk = dir.path().join("junk.fits");
        std::fs::write(&junk, b"SIMPLE  =                    T").unwrap();
        let e = FitsReader::open(&junk).err().unwrap().to_string();
        assert!(e.contains("junk.fits"), "{e}");

        // A valid file cut inside its last HDU (as a killed `cp` would leave it).
        let whole = dir.path().join("whole.fits");
        let mut w = FitsWriter::create(&whole, &Provenance::default()).unwrap();
        w.image("A", &[100, 100], &vec![1.0f64; 10000]).unwrap();
        w.image("B", &[100, 100], &vec![2.0f64; 10000]).unwrap();
        w.commit().unwrap();
        let bytes = std::fs::read(&whole).unwrap();
        // Last HDU's data cut, cut mid-block, and cut right after B's header block.
        let b_header_end = 2880 * 2 + 80000usize.div_ceil(2880) * 2880 + 2880;
        for cut in [
            bytes.len() - 2880,
            bytes.len() - 100,
            2880 * 3,
            b_header_end,
        ] {
            let part = dir.path().join("part.fits");
            std::fs::write(&part, &bytes[..cut]).unwrap();
            let e = FitsReader::open(&part)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                e.contains("part.fits") && e.contains("truncated"),
                "cut at {cut}: {e}"
            );
        }
        assert!(FitsReader::open(&whole).is_ok());
    }
}
