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


READERS = {"astropy": read_astropy, "frame": read_frame}

if __name__ == "__main__":
    reader, path, outdir = sys.argv[1:4]
    os.makedirs(outdir, exist_ok=True)
    d = Dump(outdir)
    READERS[reader](path, d)
    d.save()
