//! Moving per-bundle shape-fit results between MPI ranks: each rank fits its contiguous share
//! of the bundles, the shares are gathered on rank 0 in rank order and broadcast back, so
//! every rank ends with the same results as one process. Values travel as their f64 bits
//! (counts and indices as exact small integers), so the exchange loses nothing.

use crate::comm::Comm;

use super::shape::{GhCorrection, ShapeError, ShapeFit, NW};
use super::PsfFitError;

/// One bundle's outcome, by bundle index.
pub type BundleResult = (usize, Result<ShapeFit, ShapeError>);

/// Every rank's `mine` (bundle results of this rank's share), in bundle order, on every rank.
pub fn all_bundles(
    comm: &dyn Comm,
    mine: Vec<BundleResult>,
) -> Result<Vec<BundleResult>, PsfFitError> {
    if comm.size() == 1 {
        return Ok(mine);
    }
    let mut all = match comm.gather_bytes(0, &encode(&mine)) {
        Some(parts) => parts.concat(),
        None => Vec::new(),
    };
    comm.broadcast_bytes(0, &mut all);
    decode(&all)
}

fn encode(results: &[BundleResult]) -> Vec<u8> {
    let mut w: Vec<f64> = Vec::new();
    for (b, r) in results {
        w.push(*b as f64);
        match r {
            Ok(fit) => {
                w.push(0.0);
                w.extend_from_slice(&fit.widths);
                w.extend([fit.chi2, fit.ndata as f64, fit.npar as f64]);
                w.extend([fit.nspots as f64, fit.gh.len() as f64]);
                for g in &fit.gh {
                    w.extend([g.i as f64, g.j as f64, g.coeff.len() as f64]);
                    w.extend_from_slice(&g.coeff);
                    w.extend_from_slice(&g.err);
                }
            }
            Err(ShapeError::TooFewSpots(n, need)) => w.extend([1.0, *n as f64, *need as f64]),
            Err(ShapeError::Singular) => w.push(2.0),
            Err(ShapeError::OutOfRange(x)) => w.extend([3.0, *x]),
            Err(ShapeError::GhOutOfRange(i, j, x)) => w.extend([4.0, *i as f64, *j as f64, *x]),
        }
    }
    w.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn decode(bytes: &[u8]) -> Result<Vec<BundleResult>, PsfFitError> {
    let bad = || PsfFitError::Input("corrupt bundle results from another rank".into());
    if !bytes.len().is_multiple_of(8) {
        return Err(bad());
    }
    let words: Vec<f64> = bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect();
    let mut it = words.into_iter();
    let mut next = || it.next().ok_or_else(bad);
    let mut out = Vec::new();
    // Running out of words between records ends the list; inside a record it is an error.
    while let Ok(b) = next() {
        let b = b as usize;
        let r = match next()? as u8 {
            0 => {
                let mut widths = [0.0; NW];
                for v in widths.iter_mut() {
                    *v = next()?;
                }
                let (chi2, ndata, npar) = (next()?, next()? as usize, next()? as usize);
                let (nspots, ngh) = (next()? as usize, next()? as usize);
                let mut gh = Vec::with_capacity(ngh);
                for _ in 0..ngh {
                    let (i, j, n) = (next()? as usize, next()? as usize, next()? as usize);
                    let coeff = (0..n).map(|_| next()).collect::<Result<Vec<_>, _>>()?;
                    let err = (0..n).map(|_| next()).collect::<Result<Vec<_>, _>>()?;
                    gh.push(GhCorrection { i, j, coeff, err });
                }
                Ok(ShapeFit {
                    widths,
                    gh,
                    chi2,
                    ndata,
                    npar,
                    nspots,
                })
            }
            1 => Err(ShapeError::TooFewSpots(next()? as usize, next()? as usize)),
            2 => Err(ShapeError::Singular),
            3 => Err(ShapeError::OutOfRange(next()?)),
            4 => Err(ShapeError::GhOutOfRange(
                next()? as usize,
                next()? as usize,
                next()?,
            )),
            _ => return Err(bad()),
        };
        out.push((b, r));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comm::ThreadComm;

    fn fit(k: usize) -> ShapeFit {
        ShapeFit {
            widths: [0.1 / (k + 1) as f64, -0.02, 1e-300, f64::NAN, 0.0, -0.0],
            gh: vec![GhCorrection {
                i: 4,
                j: 0,
                coeff: vec![0.01, 1.0 / 3.0, -2e-7],
                err: vec![1e-3, 2e-3, 3e-3],
            }],
            chi2: 1234.5678,
            ndata: 10_000 + k,
            npar: 42,
            nspots: 17,
        }
    }

    /// Same bits after the exchange, every outcome kind, bundles in order on every rank
    /// (3 ranks over 7 bundles: shares 3 + 2 + 2).
    #[test]
    fn results_cross_ranks_bit_for_bit() {
        let outcome = |b: usize| -> Result<ShapeFit, ShapeError> {
            match b {
                1 => Err(ShapeError::TooFewSpots(3, 10)),
                2 => Err(ShapeError::Singular),
                4 => Err(ShapeError::OutOfRange(0.31)),
                5 => Err(ShapeError::GhOutOfRange(1, 1, -0.5)),
                _ => Ok(fit(b)),
            }
        };
        let bits = |r: &[BundleResult]| format!("{:?}", encode(r));
        let want: Vec<BundleResult> = (0..7).map(|b| (b, outcome(b))).collect();
        let got = ThreadComm::run(3, |c| {
            let mine = crate::comm::share(7, c.rank(), c.size())
                .map(|b| (b, outcome(b)))
                .collect();
            all_bundles(c, mine).unwrap()
        });
        for g in &got {
            assert_eq!(bits(g), bits(&want));
            assert_eq!(g.len(), 7);
        }
        assert!(decode(&[0u8; 12]).is_err());
    }
}
