"""Run desispec 0.70.0's preproc on one camera of a raw file and dump the result.

Usage: desispec_preproc.py RAW CAMERA OUT.fits [--nocosmic]

Calibration files are off (bias, dark, pixflat, mask = False, no calibration YAML, no CTE
correction, no CCD region mask): the same as `spx-preproc -i RAW --camera CAMERA` with no
calibration options. OUT holds IMAGE, IVAR, MASK, READNOISE (float64/int32) and the
per-amp header keywords desispec computed.
"""
import sys

import numpy as np
from astropy.io import fits
from desispec.preproc import preproc

raw, camera, out = sys.argv[1], sys.argv[2], sys.argv[3]
nocosmic = "--nocosmic" in sys.argv[4:]
with fits.open(raw) as hdul:
    names = [h.name for h in hdul]
    primary = hdul["SPEC"].header if "SPEC" in names else hdul[0].header
    hdu = hdul[camera.upper()]
    img = preproc(hdu.data.astype(np.float64), hdu.header, primary,
                  bias=False, dark=False, pixflat=False, mask=False,
                  ccd_calibration_filename=False, no_cte_corr=True,
                  no_ccd_region_mask=True, nocosmic=nocosmic)
h = fits.Header()
for k in img.meta:
    if k[:-1] in ("OVERSCN", "OBSRDN", "OSTEP", "SATUELE", "GAIN"):
        h[k] = img.meta[k]
fits.HDUList([
    fits.PrimaryHDU(img.pix.astype(np.float64), header=h),
    fits.ImageHDU(img.ivar.astype(np.float64), name="IVAR"),
    fits.ImageHDU(img.mask.astype(np.int32), name="MASK"),
    fits.ImageHDU(img.readnoise.astype(np.float64), name="READNOISE"),
]).writeto(out, overwrite=True)
