"""Runs desispec's preproc on an spx-sim raw file and compares with the truth.

usage: sim_desispec_preproc.py RAW TRUTH CAMERA
Prints one JSON line: pull statistics of (preproc image - expected) / sigma, where
expected = IMAGE truth + dark + cosmics (electrons) and sigma from preproc's ivar.
"""
import json
import sys

import numpy as np
from astropy.io import fits

raw, truth, camera = sys.argv[1:4]
from desispec.io.raw import read_raw_primary_header
from desispec.preproc import preproc

# desispec's read_raw also builds a blank fibermap, which needs desimodel data files that a
# test env lacks; call preproc itself on the camera HDU, as read_raw does.
primary = read_raw_primary_header(raw)
with fits.open(raw) as fx:
    rawimage = fx[camera.upper()].data.astype(np.float64)
    header = fx[camera.upper()].header.copy()
img = preproc(rawimage, header, primary, bias=False, dark=False, pixflat=False, mask=False,
              nocosmic=True, ccd_calibration_filename=False, no_cte_corr=True,
              no_ccd_region_mask=True)
with fits.open(truth) as t:
    cam = camera.upper()
    expect = t["IMAGE_" + cam].data.astype(float) + t["WAVE_" + cam].header["DARKELEC"]
    if "COSMIC_" + cam in t:
        expect += t["COSMIC_" + cam].data
pix = img.pix.astype(float)
ivar = img.ivar.astype(float)
good = ivar > 0
pull = (pix - expect)[good] * np.sqrt(ivar[good])
# desispec's ivar comes from the data (biased low where noise fluctuates up); the pull with the
# true variance (expectation + preproc's read-noise map², which includes the ADU quantisation
# since it is measured on the overscan) is unbiased
gain = np.zeros_like(pix)
for amp in "ABCD":
    sec = header["CCDSEC" + amp].strip("[]").replace(" ", "").split(",")
    (x0, x1), (y0, y1) = [tuple(int(v) for v in r.split(":")) for r in sec]
    gain[y0 - 1:y1, x0 - 1:x1] = header["GAIN" + amp]
var_true = np.maximum(expect, 0) + img.readnoise.astype(float) ** 2
pull_true = (pix - expect) / np.sqrt(var_true)
# bright pixels: gain errors would show there
bright = good & (expect > 1000)
chi = (pix - expect)[bright].sum() / np.sqrt(expect[bright].sum()) if bright.any() else 0.0
rdn = {k: img.meta.get("OBSRDN" + k) for k in "ABCD"}
print(json.dumps({
    "shape": list(pix.shape),
    "ngood": int(good.sum()),
    "pull_mean": float(pull.mean()),
    "pull_std": float(pull.std()),
    "pull_max": float(np.abs(pull).max()),
    "pull_true_mean": float(pull_true.mean()),
    "pull_true_std": float(pull_true.std()),
    "bright_n": int(bright.sum()),
    "bright_chi": float(chi),
    "readnoise": rdn,
}))
