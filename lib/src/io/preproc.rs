//! Preprocessed CCD images (desispec `write_image` layout): IMAGE (electrons), IVAR
//! (electrons^-2), MASK (ccdmask bits), optional READNOISE (electrons). HDUs are read by
//! EXTNAME, so tile-compressed HDUs (as in ../shared/data/extract) and desispec's own layout
//! (IMAGE as the primary HDU) both read.

use std::path::Path;

use ndarray::Array2;

use super::fibermap::Fibermap;
use super::fits::{FitsError, FitsReader, FitsWriter, Provenance, Result};
use super::header::Header;

/// Keywords the writer sets itself (not passed through from [`PreprocImage::header`]).
const OWN_KEYS: &[&str] = &["EXTNAME", "BUNIT"];

/// A preprocessed image. Arrays are `[ny, nx]` = `[NAXIS2, NAXIS1]` (rows = CCD y).
#[derive(Debug, Clone)]
pub struct PreprocImage {
    /// Pixel values, electrons.
    pub image: Array2<f32>,
    /// Inverse variance, electrons^-2; 0 = no information.
    pub ivar: Array2<f32>,
    /// ccdmask bits (desispec.maskbits.ccdmask); 0 = good.
    pub mask: Array2<u32>,
    /// Per-pixel read noise, electrons (optional in the file).
    pub readnoise: Option<Array2<f32>>,
    /// Other keywords of the IMAGE header (CAMERA, EXPID, NIGHT, ...), passed through to the
    /// products made from this image.
    pub header: Header,
    /// The camera's rows of the exposure's FIBERMAP, carried from the raw file so the
    /// extraction can pass it on (DESI keeps it in a separate fibermap-EXPID file).
    pub fibermap: Option<Fibermap>,
}

impl PreprocImage {
    /// `(ny, nx)`.
    pub fn shape(&self) -> (usize, usize) {
        self.image.dim()
    }
}

/// Reads a preproc image. IMAGE, IVAR and MASK are required and must share a shape; IMAGE and
/// IVAR must be finite and IVAR non-negative (a NaN is a bad input, not a masked pixel).
pub fn read(path: impl AsRef<Path>) -> Result<PreprocImage> {
    let path = path.as_ref();
    let mut r = FitsReader::open(path)?;
    let image = r.image2::<f32>("IMAGE")?;
    let ivar = r.image2::<f32>("IVAR")?;
    let mask_i = r.image2::<i64>("MASK")?;
    let shape = image.dim();
    for (name, s) in [("IVAR", ivar.dim()), ("MASK", mask_i.dim())] {
        if s != shape {
            return Err(FitsError::hdu(
                path,
                name,
                format!(
                    "shape {:?} differs from IMAGE {:?}",
                    [s.0, s.1],
                    [shape.0, shape.1]
                ),
            ));
        }
    }
    if let Some(i) = image.iter().position(|v| !v.is_finite()) {
        return Err(FitsError::hdu(
            path,
            "IMAGE",
            format!("non-finite value at pixel {:?}", unravel(i, shape.1)),
        ));
    }
    if let Some(i) = ivar.iter().position(|v| !v.is_finite() || *v < 0.0) {
        return Err(FitsError::hdu(
            path,
            "IVAR",
            format!(
                "negative or non-finite value at pixel {:?}",
                unravel(i, shape.1)
            ),
        ));
    }
    let mask = mask_i.mapv(|v| v as u32);
    let readnoise = if r.has_hdu("READNOISE") {
        let rn = r.image2::<f32>("READNOISE")?;
        if rn.dim() != shape {
            return Err(FitsError::hdu(
                path,
                "READNOISE",
                "shape differs from IMAGE",
            ));
        }
        Some(rn)
    } else {
        None
    };
    let mut header = Header::read(&mut r, "IMAGE")?;
    for k in OWN_KEYS {
        header.remove(k);
    }
    let fibermap = if r.has_hdu("FIBERMAP") {
        Some(Fibermap::read(&mut r, "FIBERMAP")?)
    } else {
        None
    };
    Ok(PreprocImage {
        image,
        ivar,
        mask,
        readnoise,
        header,
        fibermap,
    })
}

fn unravel(i: usize, nx: usize) -> [usize; 2] {
    [i / nx, i % nx]
}

/// Writes `img` in desispec's layout: IMAGE as the primary HDU (with the passed-through
/// header and BUNIT), then IVAR, MASK (int32, as desispec writes it) and READNOISE.
pub fn write(path: impl AsRef<Path>, img: &PreprocImage, prov: &Provenance) -> Result<()> {
    let path = path.as_ref();
    let (ny, nx) = img.shape();
    let shape = [ny, nx];
    // borrow row-major arrays (a camera is 4k × 4k) rather than copy them
    fn flat(a: &Array2<f32>) -> std::borrow::Cow<'_, [f32]> {
        match a.as_slice() {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(a.iter().copied().collect()),
        }
    }
    if img.ivar.dim() != (ny, nx) || img.mask.dim() != (ny, nx) {
        return Err(FitsError::file(path, "IVAR/MASK shapes differ from IMAGE"));
    }
    // the header before the data (see create_with_primary_image_keys)
    let mut w = FitsWriter::create_with_primary_image_keys(
        path,
        prov,
        "IMAGE",
        &shape,
        &flat(&img.image),
        |w| {
            img.header.write(w)?;
            w.key("BUNIT", "electron")
        },
    )?;
    w.image("IVAR", &shape, &flat(&img.ivar))?;
    w.key("BUNIT", "electron^-2")?;
    let mask: Vec<i32> = img.mask.iter().map(|&m| m as i32).collect();
    w.image("MASK", &shape, &mask)?;
    if let Some(rn) = &img.readnoise {
        w.image("READNOISE", &shape, &flat(rn))?;
        w.key("BUNIT", "electron")?;
    }
    if let Some(fm) = &img.fibermap {
        fm.write(&mut w, "FIBERMAP")?;
    }
    w.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsupport::shared_file;

    #[test]
    fn reads_tile_compressed_shared_image_by_extname() {
        let Some(p) = shared_file("extract/preproc-noisy.fits") else {
            return;
        };
        let img = read(&p).unwrap();
        assert_eq!(img.shape(), (4128, 4114));
        assert_eq!(img.header.get_str("CAMERA").as_deref(), Some("r0"));
        // The lit box holds all light; IVAR is zero outside it (data README, extract/).
        assert_eq!(img.ivar[[0, 0]], 0.0);
        assert!(img.ivar[[1900, 200]] > 0.0);
        assert!(img.mask.iter().all(|&m| m == 0));
    }

    #[test]
    fn round_trip_and_bad_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("preproc-r0-00000001.fits");
        let image = Array2::from_shape_fn((6, 5), |(y, x)| (y * 5 + x) as f32 - 3.5);
        let img = PreprocImage {
            image: image.clone(),
            ivar: Array2::from_elem((6, 5), 0.25),
            mask: Array2::from_shape_fn((6, 5), |(y, x)| if x == y { 16 } else { 0 }),
            readnoise: Some(Array2::from_elem((6, 5), 3.0)),
            header: {
                let mut h = Header::default();
                h.set("CAMERA", "r0".into());
                h.set("EXPID", 1i64.into());
                h.set("EXPTIME", 900.5f64.into());
                h
            },
            fibermap: None,
        };
        write(&p, &img, &Provenance::default()).unwrap();
        let back = read(&p).unwrap();
        assert_eq!(back.image, image);
        assert_eq!(back.mask, img.mask);
        assert_eq!(back.readnoise, img.readnoise);
        assert_eq!(back.header.get_str("CAMERA").as_deref(), Some("r0"));
        assert_eq!(back.header.get_i64("EXPID"), Some(1));

        // NaN in IMAGE and a wrong-shaped IVAR are errors naming file and HDU.
        let mut bad = img.clone();
        bad.image[[2, 3]] = f32::NAN;
        let pb = dir.path().join("nan.fits");
        write(&pb, &bad, &Provenance::default()).unwrap();
        let e = read(&pb).unwrap_err().to_string();
        assert!(
            e.contains("nan.fits[IMAGE]") && e.contains("non-finite"),
            "{e}"
        );
        let mut w =
            FitsWriter::create(dir.path().join("shape.fits"), &Provenance::default()).unwrap();
        w.image("IMAGE", &[6, 5], &[0f32; 30]).unwrap();
        w.image("IVAR", &[5, 5], &[1f32; 25]).unwrap();
        w.image("MASK", &[6, 5], &[0i32; 30]).unwrap();
        w.commit().unwrap();
        let e = read(dir.path().join("shape.fits")).unwrap_err().to_string();
        assert!(e.contains("[IVAR]") && e.contains("shape"), "{e}");
    }
}
