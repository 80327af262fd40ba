"""Read a FITS file with DESI's own readers (or astropy) and dump what they see, for the Rust
tests in tests/desi_readers.rs to compare with what spx wrote or read.

    desi_read.py READER FILE OUTDIR

READER is `astropy` (every HDU as astropy gives it) or a desispec reader name (`frame`, and
the kinds added below as their spx modules land). Numeric arrays go to OUTDIR/<name>.f8 as
little-endian float64 (exact for every f4/f8/int32 value), everything else (shapes, dtypes,
header values, string columns) to OUTDIR/manifest.json:

    {"arrays": {name: {"shape": [...], "dtype": "float32"}}, "header": {...},
     "columns": {name: [...]}, "info": {...}}
"""

import json
import os
import sys

import numpy as np


class Dump:
    def __init__(self, outdir):
        self.outdir = outdir
        self.manifest = {"arrays": {}, "header": {}, "columns": {}, "info": {}}

    def array(self, name, a):
        a = np.asarray(a)
        self.manifest["arrays"][name] = {"shape": list(a.shape), "dtype": str(a.dtype)}
        a.astype("<f8").tofile(os.path.join(self.outdir, name + ".f8"))

    def header(self, hdr, prefix=""):
        # astropy Header and fitsio FITSHDR (desispec's meta) both have keys() and [].
        for k in hdr.keys():
            v = hdr[k]
            if k in ("COMMENT", "HISTORY", "") or isinstance(v, bytes):
                continue
            if isinstance(v, (np.generic,)):
                v = v.item()
            if not isinstance(v, (str, int, float, bool)):
                v = str(v)
            self.manifest["header"][prefix + k] = v

    def table(self, tab, prefix=""):
        for name in tab.dtype.names:
            col = np.asarray(tab[name])
            if col.dtype.kind in "SU":
                vals = [x.decode() if isinstance(x, bytes) else str(x) for x in col]
                self.manifest["columns"][prefix + name] = [v.rstrip() for v in vals]
            elif col.ndim == 1:
                self.array(prefix + "col_" + name, col)
                self.manifest["columns"][prefix + name] = {"dtype": str(col.dtype)}

    def save(self):
        with open(os.path.join(self.outdir, "manifest.json"), "w") as f:
            json.dump(self.manifest, f)


def read_astropy(path, d):
    from astropy.io import fits

    with fits.open(path) as hdul:
        for i, hdu in enumerate(hdul):
            name = hdu.name or f"HDU{i}"
            d.header(hdu.header, prefix=name + ".")
            if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
                d.table(hdu.data, prefix=name + ".")
            elif hdu.data is not None:
                d.array(name, hdu.data)


def read_frame(path, d):
    import desispec.io
    from desispec.resolution import Resolution

    fr = desispec.io.read_frame(path)
    d.array("wave", fr.wave)
    d.array("flux", fr.flux)
    d.array("ivar", fr.ivar)
    d.array("mask", fr.mask)
    d.array("resolution_data", fr.resolution_data)
    if fr.chi2pix is not None:
        d.array("chi2pix", fr.chi2pix)
    # The dense matrix of spectrum 0 as desispec's Resolution builds it: checks the meaning of
    # the band layout, not only its bytes.
    d.array("dense0", Resolution(fr.resolution_data[0]).toarray())
    d.header(fr.meta)
    d.table(fr.fibermap)
    d.manifest["info"] = {"nspec": int(fr.nspec), "nwave": int(fr.nwave),
                          "spectrograph": fr.spectrograph, "camera": fr.meta.get("CAMERA")}


def read_sky(path, d):
    import desispec.io

    sky = desispec.io.read_sky(path)
    for name in ("wave", "flux", "ivar", "mask", "stat_ivar", "throughput_corrections"):
        value = getattr(sky, name, None)
        if value is not None:
            d.array(name, value)
    d.header(sky.header)
    d.manifest["info"] = {"nspec": int(sky.nspec), "nwave": int(sky.nwave)}


def read_fiberflat(path, d):
    import desispec.io

    ff = desispec.io.read_fiberflat(path)
    for name in ("wave", "fiberflat", "ivar", "mask", "meanspec"):
        d.array(name, getattr(ff, name))
    d.header(ff.header)
    d.manifest["info"] = {"nspec": int(ff.nspec), "nwave": int(ff.nwave)}


def read_image(path, d):
    import desispec.io

    img = desispec.io.read_image(path)
    d.array("pix", img.pix)
    d.array("ivar", img.ivar)
    d.array("mask", img.mask)
    if isinstance(img.readnoise, np.ndarray):
        d.array("readnoise", img.readnoise)
    d.header(img.meta)
    d.manifest["info"] = {"camera": img.camera}


def read_spectra(path, d):
    import desispec.io

    sp = desispec.io.read_spectra(path)
    for b in sp.bands:
        d.array(b + "_wave", sp.wave[b])
        d.array(b + "_flux", sp.flux[b])
        d.array(b + "_ivar", sp.ivar[b])
        if sp.mask is not None:
            d.array(b + "_mask", sp.mask[b])
        d.array(b + "_resolution", sp.resolution_data[b])
    d.table(sp.fibermap)
    d.header(sp.meta)
    d.manifest["info"] = {"bands": list(sp.bands), "nspec": int(sp.num_spectra()),
                          "targets": [int(t) for t in sp.target_ids()]}


def read_preproc_litbox(path, d):
    """desispec.io.read_image on a full-size preproc: the lit box of the shared fixtures
    (header keys LITXMIN…, README) in full, and sums over the whole CCD."""
    import desispec.io

    img = desispec.io.read_image(path)
    m = img.meta
    ys = slice(m["LITYMIN"], m["LITYMAX"])
    xs = slice(m["LITXMIN"], m["LITXMAX"])
    d.array("pix_box", img.pix[ys, xs])
    d.array("ivar_box", img.ivar[ys, xs])
    d.manifest["info"] = {
        "shape": list(img.pix.shape),
        "box": [m["LITYMIN"], m["LITYMAX"], m["LITXMIN"], m["LITXMAX"]],
        "pix_sum": float(np.sum(img.pix, dtype=np.float64)),
        "ivar_sum": float(np.sum(img.ivar, dtype=np.float64)),
        "mask_nonzero": int(np.count_nonzero(img.mask)),
    }


READERS = {"astropy": read_astropy, "preproc_litbox": read_preproc_litbox, "frame": read_frame, "sky": read_sky,
           "fiberflat": read_fiberflat, "image": read_image, "spectra": read_spectra}

if __name__ == "__main__":
    reader, path, outdir = sys.argv[1:4]
    os.makedirs(outdir, exist_ok=True)
    d = Dump(outdir)
    READERS[reader](path, d)
    d.save()
