//! CCD calibration images as desispec reads and writes them: one 2-D image in the primary HDU
//! (or an HDU named BIAS, DARK, PIXFLAT, MASK). Bias: ADU, raw shape (`EXTNAME = 'BIAS'`,
//! `BUNIT = 'adu'`). Dark: electrons/second, image shape (`EXTNAME = 'DARK'`,
//! `BUNIT = 'electron/s'`). Pixel flat: dimensionless, image shape. Mask: ccdmask bits.

use std::path::Path;

use ndarray::Array2;

use crate::io::fits::{FitsReader, FitsWriter, Provenance, PRIMARY};
use crate::io::header::Header;
use crate::io::{FitsError, Result};

/// Reads the first 2-D image among the HDUs `names` (by EXTNAME), else the primary HDU.
/// Returns the image, its header, and the HDU it came from. Values must be finite.
pub fn read_image(path: &Path, names: &[&str]) -> Result<(Array2<f32>, Header, String)> {
    let mut r = FitsReader::open(path)?;
    let mut candidates: Vec<&str> = names.to_vec();
    candidates.push(PRIMARY);
    for n in candidates {
        if !r.has_hdu(n) {
            continue;
        }
        let shape = r.image_shape(n)?;
        if shape.len() != 2 {
            continue;
        }
        let img = r.image2::<f32>(n)?;
        if let Some(i) = img.iter().position(|v| !v.is_finite()) {
            return Err(FitsError::hdu(
                path,
                n,
                format!(
                    "non-finite value at pixel {:?}",
                    [i / shape[1], i % shape[1]]
                ),
            ));
        }
        let header = Header::read(&mut r, n)?;
        return Ok((img, header, n.to_string()));
    }
    Err(FitsError::file(
        path,
        format!(
            "no 2-D image HDU (looked for {} and the primary HDU)",
            names.join(", ")
        ),
    ))
}

/// Reads a bad-pixel mask (integer ccdmask bits, image shape).
pub fn read_mask(path: &Path) -> Result<Array2<u32>> {
    let (_, _, hdu) = read_image(path, &["MASK"])?;
    let mut r = FitsReader::open(path)?;
    let m = r.image2::<i64>(&hdu)?;
    if let Some(i) = m.iter().position(|&v| v < 0 || v > u32::MAX as i64) {
        return Err(FitsError::hdu(
            path,
            &hdu,
            format!("mask value out of range at flat index {i}"),
        ));
    }
    Ok(m.mapv(|v| v as u32))
}

/// Writes a calibration image as desispec's compute_bias_file / compute_dark_file do: the
/// image (float32) in the primary HDU with `EXTNAME = extname` and `BUNIT = bunit`, plus the
/// given header keywords.
pub fn write_image(
    path: &Path,
    extname: &str,
    bunit: &str,
    image: &Array2<f32>,
    header: &Header,
    prov: &Provenance,
) -> Result<()> {
    let (ny, nx) = image.dim();
    let data: Vec<f32> = image.iter().copied().collect();
    let mut w = FitsWriter::create_with_primary_image(path, prov, extname, &[ny, nx], &data)?;
    header.write(&mut w)?;
    w.key("BUNIT", bunit)?;
    w.commit()?;
    Ok(())
}
