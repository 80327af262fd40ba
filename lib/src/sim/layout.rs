//! The raw readout layout of a camera built from the instrument's CCD description: four
//! amplifiers `C D` over `A B` (reference/calibration.md §0), each read out with a prescan on
//! its outer side, a column overscan (BIASSEC) on its inner side and a row overscan (ORSEC)
//! between the halves. For DESI sizes this reproduces the LBNL CCD raw headers
//! (raw 4194 rows × 4256 columns, e.g. BIASSECB = [2129:2192,1:2064]).

use crate::instrument::Ccd;
use crate::io::raw::{AmpInfo, Section};

/// Amps with their sections plus the raw image size and, for each amp, the whole raw block it
/// reads out (the pixels that get its bias and read noise).
#[derive(Debug, Clone)]
pub struct Layout {
    /// Raw image rows and columns.
    pub raw_ny: usize,
    pub raw_nx: usize,
    pub amps: Vec<AmpInfo>,
    /// Raw block read by each amp (prescan + data + overscans).
    pub blocks: Vec<Section>,
}

impl Layout {
    /// Layout of `ccd`.
    pub fn new(ccd: &Ccd) -> Layout {
        let (nxh, nyh) = (ccd.nx / 2, ccd.ny / 2);
        let (p, o, r, g) = (
            ccd.prescan,
            ccd.overscan_cols,
            ccd.overscan_rows,
            ccd.row_gap,
        );
        let raw_nx = 2 * (p + nxh + o);
        let raw_ny = 2 * (nyh + r) + g;
        let split_y = nyh + r + g / 2;
        let mut amps = Vec::new();
        let mut blocks = Vec::new();
        for (k, a) in ccd.amps.iter().enumerate() {
            let right = k % 2 == 1;
            let top = k >= 2;
            // columns
            let (data_x0, bias_x0, pre_x0) = if right {
                (raw_nx - p - nxh, raw_nx - p - nxh - o, raw_nx - p)
            } else {
                (p, p + nxh, 0)
            };
            // rows
            let (data_y0, or_y0) = if top {
                (raw_ny - nyh, raw_ny - nyh - r)
            } else {
                (0, nyh)
            };
            let rows = |y0: usize, n: usize| (y0, y0 + n);
            let (dy0, dy1) = rows(data_y0, nyh);
            let sec = |y: (usize, usize), x0: usize, nx: usize| Section {
                y0: y.0,
                y1: y.1,
                x0,
                x1: x0 + nx,
            };
            amps.push(AmpInfo {
                name: a.name.clone(),
                gain: Some(a.gain),
                read_noise: Some(a.read_noise),
                saturation: Some(ccd.saturation),
                datasec: sec((dy0, dy1), data_x0, nxh),
                ccdsec: Section {
                    y0: if top { nyh } else { 0 },
                    y1: if top { ccd.ny } else { nyh },
                    x0: if right { nxh } else { 0 },
                    x1: if right { ccd.nx } else { nxh },
                },
                biassec: sec((dy0, dy1), bias_x0, o),
                orsec: (r > 0).then(|| sec(rows(or_y0, r), data_x0, nxh)),
                presec: (p > 0).then(|| sec((dy0, dy1), pre_x0, p)),
            });
            blocks.push(Section {
                y0: if top { split_y } else { 0 },
                y1: if top { raw_ny } else { split_y },
                x0: if right { raw_nx / 2 } else { 0 },
                x1: if right { raw_nx } else { raw_nx / 2 },
            });
        }
        Layout {
            raw_ny,
            raw_nx,
            amps,
            blocks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instrument::Instrument;

    #[test]
    fn desi_layout_matches_lbnl_headers() {
        let inst = Instrument::preset("desi").unwrap();
        let (cam, _) = inst.camera("r0").unwrap();
        let l = Layout::new(&cam.ccd);
        assert_eq!((l.raw_ny, l.raw_nx), (4194, 4256));
        let a = &l.amps[0];
        assert_eq!(a.datasec.to_iraf(), "[8:2064,1:2064]");
        assert_eq!(a.biassec.to_iraf(), "[2065:2128,1:2064]");
        assert_eq!(a.ccdsec.to_iraf(), "[1:2057,1:2064]");
        assert_eq!(l.amps[1].biassec.to_iraf(), "[2129:2192,1:2064]");
        assert_eq!(l.amps[3].ccdsec.to_iraf(), "[2058:4114,2065:4128]");
        assert_eq!(l.amps[2].datasec.to_iraf(), "[8:2064,2131:4194]");
        // every raw pixel belongs to exactly one block
        let area: usize = l.blocks.iter().map(|b| b.nrows() * b.ncols()).sum();
        assert_eq!(area, l.raw_ny * l.raw_nx);
    }
}
