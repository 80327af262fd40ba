//! The DESI Gauss-Hermite PSF: Legendre traces x(λ), y(λ), the inverse λ(y), and the
//! Gauss-Hermite spot (reference/extraction.md §1). Shared by the simulator (projection),
//! the PSF fitter (spots and their derivatives) and the extractor (projection matrix).
//!
//! Conventions: wavelengths in Angstrom, pixel coordinates pixel-centred (pixel i spans
//! [i-0.5, i+0.5)), x = CCD column (cross-dispersion), y = CCD row (dispersion). Fibers are
//! 0-based indices into the PSF (`FIBER - FIBERMIN`).
//!
//! Where specter's choices differ from the exact math, specter governs (conformance with DESI
//! frames): the stamp origin uses truncation toward zero ([`stamp_range`]), GH-0-0 is
//! evaluated as written in the file (not fixed to 1), and λ(y) is specter's fitted inverse
//! ([`TraceSet::invert`]), not an exact root.

pub mod gausshermite;
pub mod legendre;

pub use gausshermite::{stamp_range, SpotDerivs, SpotEvaluator, SpotParams, Stamp};
pub use legendre::{legendre_basis, legval, linspace, TraceSet};

use ndarray::{Array2, Array3};

/// Names of the tail parameters, in the order of [`SpotParams::tail`].
pub const TAIL_PARAMS: [&str; 5] = ["TAILAMP", "TAILCORE", "TAILXSCA", "TAILYSCA", "TAILINDE"];
/// Tail defaults when a row is absent (specex `DefaultParams`).
const TAIL_DEFAULTS: [f64; 5] = [0.0, 1.0, 1.0, 1.0, 2.0];

/// A problem with the PSF model itself (not the file).
#[derive(Debug, thiserror::Error)]
pub enum PsfError {
    #[error("PSF parameter row {0} is missing")]
    MissingParam(String),
    #[error("inconsistent PSF: {0}")]
    Inconsistent(String),
}

/// A Gauss-Hermite PSF (specex PSFVER 3 layout), in memory.
#[derive(Debug, Clone)]
pub struct GaussHermitePsf {
    /// x(λ) per fiber, pixels; domain from XTRACE WAVEMIN/WAVEMAX (Angstrom).
    pub xtrace: TraceSet,
    /// y(λ) per fiber, pixels; domain from YTRACE WAVEMIN/WAVEMAX (Angstrom).
    pub ytrace: TraceSet,
    /// Names of the PSF table rows (`GHSIGX`, `GH-i-j`, `TAIL*`, bookkeeping rows...), trimmed.
    pub param_names: Vec<String>,
    /// Legendre coefficients of each row, `[nparam, nfiber, ncoef]`.
    pub param_coeff: Array3<f64>,
    /// Domain of the PSF table (PSF header WAVEMIN/WAVEMAX, Angstrom); may differ from the
    /// traces' domain (both shipped DESI r0 PSFs: 5543–7827 vs 5543–7826).
    pub param_wmin: f64,
    pub param_wmax: f64,
    /// LEGDEGX / LEGDEGW columns per row (informational, kept for round trips).
    pub legdegx: Vec<i32>,
    pub legdegw: Vec<i32>,
    /// Stamp half sizes: the stamp is (2·hsizey+1) rows × (2·hsizex+1) columns.
    pub hsizex: usize,
    pub hsizey: usize,
    /// Gauss-Hermite degrees along x and y.
    pub ghdegx: usize,
    pub ghdegy: usize,
    /// CCD size in pixels.
    pub npix_x: usize,
    pub npix_y: usize,
    /// First fiber of the PSF (FIBERMIN).
    pub fibermin: usize,
    /// Fractional PSF model error used for chi2pix (header PSFERR, default 0.01 as specter).
    pub psferr: f64,
    /// Other header keywords of the PSF HDU (CAMERA, MJD, ...), passed through on write.
    pub extra_keys: crate::io::header::Header,
    /// Row indices of the parameters a spot needs.
    idx: ParamIndex,
    /// specter's fitted inverse trace λ(y).
    inverse: TraceSet,
}

#[derive(Debug, Clone, Default)]
struct ParamIndex {
    sigx: usize,
    sigy: usize,
    /// `gh[i*(degy+1)+j]` = row of GH-i-j.
    gh: Vec<usize>,
    /// Rows of the tail parameters, `None` when absent (defaults apply).
    tail: [Option<usize>; 5],
}

/// Parameters of the spots of a fiber range on a wavelength grid, evaluated once and reused
/// (specter's `cache_params`). Index `(ifiber, iwave)` is `ifiber*nwave + iwave`.
#[derive(Debug, Clone, Default)]
pub struct SpotParamsBatch {
    /// First fiber (0-based PSF index) of the batch.
    pub fiber0: usize,
    pub nfiber: usize,
    /// Wavelengths (Angstrom), `[nwave]`.
    pub waves: Vec<f64>,
    /// Trace centres, pixels, `[nfiber*nwave]`.
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    /// GHSIGX, GHSIGY, pixels, `[nfiber*nwave]`.
    pub sigx: Vec<f64>,
    pub sigy: Vec<f64>,
    /// GH coefficients, `[nfiber*nwave][ngh]`.
    pub gh: Vec<f64>,
    /// Tail parameters, `[nfiber*nwave]`.
    pub tail: Vec<[f64; 5]>,
    ngh: usize,
}

impl SpotParamsBatch {
    /// Number of wavelengths.
    pub fn nwave(&self) -> usize {
        self.waves.len()
    }

    /// Parameters of fiber `self.fiber0 + ifiber` at `self.waves[iwave]`.
    #[inline]
    pub fn get(&self, ifiber: usize, iwave: usize) -> SpotParams<'_> {
        let k = ifiber * self.waves.len() + iwave;
        SpotParams {
            x: self.x[k],
            y: self.y[k],
            sigx: self.sigx[k],
            sigy: self.sigy[k],
            gh: &self.gh[k * self.ngh..(k + 1) * self.ngh],
            tail: self.tail[k],
        }
    }
}

impl GaussHermitePsf {
    /// Builds a PSF from its parts and checks their consistency (same fiber count, all
    /// GH-i-j rows and the sigma rows present, positive sizes), then fits specter's inverse
    /// trace. `extra_keys` may be empty.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        xtrace: TraceSet,
        ytrace: TraceSet,
        param_names: Vec<String>,
        param_coeff: Array3<f64>,
        param_domain: (f64, f64),
        hsize: (usize, usize),
        ghdeg: (usize, usize),
        npix: (usize, usize),
        fibermin: usize,
        psferr: f64,
    ) -> Result<Self, PsfError> {
        let nf = xtrace.nfiber();
        if ytrace.nfiber() != nf || param_coeff.shape()[1] != nf {
            return Err(PsfError::Inconsistent(format!(
                "XTRACE has {nf} fibers, YTRACE {}, PSF table {}",
                ytrace.nfiber(),
                param_coeff.shape()[1]
            )));
        }
        if param_coeff.shape()[0] != param_names.len() {
            return Err(PsfError::Inconsistent(format!(
                "{} parameter names for {} coefficient rows",
                param_names.len(),
                param_coeff.shape()[0]
            )));
        }
        if npix.0 == 0
            || npix.1 == 0
            || param_domain.1.partial_cmp(&param_domain.0) != Some(std::cmp::Ordering::Greater)
        {
            return Err(PsfError::Inconsistent(
                "empty CCD or PSF wavelength domain".into(),
            ));
        }
        let find = |name: &str| param_names.iter().position(|n| n == name);
        let need = |name: &str| find(name).ok_or_else(|| PsfError::MissingParam(name.into()));
        let mut gh = Vec::with_capacity((ghdeg.0 + 1) * (ghdeg.1 + 1));
        for i in 0..=ghdeg.0 {
            for j in 0..=ghdeg.1 {
                gh.push(need(&format!("GH-{i}-{j}"))?);
            }
        }
        let idx = ParamIndex {
            sigx: need("GHSIGX")?,
            sigy: need("GHSIGY")?,
            gh,
            tail: TAIL_PARAMS.map(find),
        };
        let inverse = ytrace.invert().map_err(PsfError::Inconsistent)?;
        let nparam = param_names.len();
        Ok(GaussHermitePsf {
            xtrace,
            ytrace,
            param_names,
            param_coeff,
            param_wmin: param_domain.0,
            param_wmax: param_domain.1,
            legdegx: vec![0; nparam],
            legdegw: vec![0; nparam],
            hsizex: hsize.0,
            hsizey: hsize.1,
            ghdegx: ghdeg.0,
            ghdegy: ghdeg.1,
            npix_x: npix.0,
            npix_y: npix.1,
            fibermin,
            psferr,
            extra_keys: Default::default(),
            idx,
            inverse,
        })
    }

    /// Number of fibers.
    pub fn nfiber(&self) -> usize {
        self.xtrace.nfiber()
    }

    /// Number of Legendre coefficients per PSF parameter (LEGDEG+1).
    pub fn ncoef(&self) -> usize {
        self.param_coeff.shape()[2]
    }

    /// Trace x of `fiber` at `wave` (Angstrom), pixels.
    pub fn x(&self, fiber: usize, wave: f64) -> f64 {
        self.xtrace.eval(fiber, wave)
    }

    /// Trace y of `fiber` at `wave` (Angstrom), pixels.
    pub fn y(&self, fiber: usize, wave: f64) -> f64 {
        self.ytrace.eval(fiber, wave)
    }

    /// specter's fitted λ(y) of `fiber` at row `y` (pixels), Angstrom.
    pub fn wavelength(&self, fiber: usize, y: f64) -> f64 {
        self.inverse.eval(fiber, y)
    }

    /// The exact inverse of y(λ) for `fiber` at row `y` (bisection to 1e-10 A, starting from
    /// the fitted inverse); differs from [`Self::wavelength`] by up to ~5e-4 A on DESI PSFs.
    pub fn wavelength_exact(&self, fiber: usize, y: f64) -> f64 {
        let w0 = self.wavelength(fiber, y);
        let f = |w: f64| self.y(fiber, w) - y;
        let (mut lo, mut hi) = (w0 - 1.0, w0 + 1.0);
        let mut step = 1.0;
        while f(lo) * f(hi) > 0.0 && step < 1e4 {
            step *= 2.0;
            lo = w0 - step;
            hi = w0 + step;
        }
        let inc = f(hi) > f(lo);
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if (f(mid) > 0.0) == inc {
                hi = mid;
            } else {
                lo = mid;
            }
            if hi - lo < 1e-11 {
                break;
            }
        }
        0.5 * (lo + hi)
    }

    /// Wavelength range of `fiber` on the CCD: λ(y = -0.5) and λ(y = npix_y - 0.5) from the
    /// fitted inverse (specter's `_wmin_spec`, `_wmax_spec`), Angstrom.
    pub fn fiber_wrange(&self, fiber: usize) -> (f64, f64) {
        (
            self.wavelength(fiber, -0.5),
            self.wavelength(fiber, self.npix_y as f64 - 0.5),
        )
    }

    /// Smallest and largest wavelength seen by any fiber (specter `wmin`, `wmax`).
    pub fn wrange_any(&self) -> (f64, f64) {
        (0..self.nfiber())
            .map(|f| self.fiber_wrange(f))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (lo, hi)| {
                (a.min(lo), b.max(hi))
            })
    }

    /// Wavelength range seen by all fibers (specter `wmin_all`, `wmax_all`).
    pub fn wrange_all(&self) -> (f64, f64) {
        (0..self.nfiber())
            .map(|f| self.fiber_wrange(f))
            .fold((f64::NEG_INFINITY, f64::INFINITY), |(a, b), (lo, hi)| {
                (a.max(lo), b.min(hi))
            })
    }

    /// Value of the named table parameter for `fiber` at `wave`.
    pub fn param(&self, name: &str, fiber: usize, wave: f64) -> Result<f64, PsfError> {
        let p = self
            .param_names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| PsfError::MissingParam(name.into()))?;
        Ok(self.param_row(p, fiber, wave))
    }

    fn param_row(&self, p: usize, fiber: usize, wave: f64) -> f64 {
        let u = (wave - self.param_wmin) * (2.0 / (self.param_wmax - self.param_wmin)) - 1.0;
        let c = self.param_coeff.slice(ndarray::s![p, fiber, ..]);
        match c.as_slice() {
            Some(c) => legval(u, c),
            None => legval(u, &c.to_vec()),
        }
    }

    /// GHSIGX of `fiber` at `wave`, pixels.
    pub fn xsigma(&self, fiber: usize, wave: f64) -> f64 {
        self.param_row(self.idx.sigx, fiber, wave)
    }

    /// GHSIGY of `fiber` at `wave`, pixels.
    pub fn ysigma(&self, fiber: usize, wave: f64) -> f64 {
        self.param_row(self.idx.sigy, fiber, wave)
    }

    /// A spot evaluator (scratch buffers) for this PSF; make one per thread.
    pub fn evaluator(&self) -> SpotEvaluator {
        SpotEvaluator::new(self.ghdegx, self.ghdegy, self.hsizex, self.hsizey)
    }

    /// Number of GH coefficients per spot, `(GHDEGX+1)·(GHDEGY+1)`.
    pub fn ngh(&self) -> usize {
        self.idx.gh.len()
    }

    /// Evaluates every parameter a spot needs for fibers `fiber0 .. fiber0+nfiber` at each of
    /// `waves` (Angstrom) once, sharing the Legendre basis across fibers and parameters.
    pub fn spot_params(&self, fiber0: usize, nfiber: usize, waves: &[f64]) -> SpotParamsBatch {
        let nw = waves.len();
        let n = nfiber * nw;
        let ngh = self.ngh();
        let mut b = SpotParamsBatch {
            fiber0,
            nfiber,
            waves: waves.to_vec(),
            x: vec![0.0; n],
            y: vec![0.0; n],
            sigx: vec![0.0; n],
            sigy: vec![0.0; n],
            gh: vec![0.0; n * ngh],
            tail: vec![TAIL_DEFAULTS; n],
            ngh,
        };
        // Raw coefficient slices (standard layout) and normalised coordinates per wavelength:
        // the same Clenshaw evaluation as `param_row`, without per-call slicing overhead.
        let nc = self.ncoef();
        let nfib = self.nfiber();
        let std_coeff;
        let coeff: &[f64] = match self.param_coeff.as_slice() {
            Some(c) => c,
            None => {
                std_coeff = self.param_coeff.as_standard_layout().to_owned();
                std_coeff.as_slice().unwrap_or(&[])
            }
        };
        let scale = 2.0 / (self.param_wmax - self.param_wmin);
        let us: Vec<f64> = waves
            .iter()
            .map(|&w| (w - self.param_wmin) * scale - 1.0)
            .collect();
        let row = |p: usize, fib: usize, u: f64| {
            let o = (p * nfib + fib) * nc;
            legval(u, &coeff[o..o + nc])
        };
        for f in 0..nfiber {
            let fib = fiber0 + f;
            for (iw, &w) in waves.iter().enumerate() {
                let k = f * nw + iw;
                let u = us[iw];
                b.x[k] = self.xtrace.eval(fib, w);
                b.y[k] = self.ytrace.eval(fib, w);
                b.sigx[k] = row(self.idx.sigx, fib, u);
                b.sigy[k] = row(self.idx.sigy, fib, u);
                for (g, &r) in self.idx.gh.iter().enumerate() {
                    b.gh[k * ngh + g] = row(r, fib, u);
                }
                for (t, r) in self.idx.tail.iter().enumerate() {
                    if let Some(r) = r {
                        b.tail[k][t] = row(*r, fib, u);
                    }
                }
            }
        }
        b
    }

    /// The spot of `fiber` at `wave` as specter's `xypix` returns it on a freshly loaded PSF:
    /// the stamp clipped to the CCD (no renormalisation after clipping), written into
    /// `out[..ny*nx]`. `None` when the wavelength is off the CCD for this fiber (outside
    /// [`Self::fiber_wrange`]) or the stamp lies entirely outside the CCD.
    pub fn xypix(
        &self,
        ev: &mut SpotEvaluator,
        fiber: usize,
        wave: f64,
        out: &mut [f64],
    ) -> Option<Stamp> {
        let (wlo, whi) = self.fiber_wrange(fiber);
        if wave < wlo || wave > whi {
            return None;
        }
        let batch = self.spot_params(fiber, 1, &[wave]);
        let mut full = vec![0.0; ev.max_len()];
        let st = ev.eval(&batch.get(0, 0), &mut full);
        let (clip, dx, dy) = st.clip(0, self.npix_x as i64, 0, self.npix_y as i64)?;
        for r in 0..clip.ny {
            let src = &full[(r + dy) * st.nx + dx..(r + dy) * st.nx + dx + clip.nx];
            out[r * clip.nx..(r + 1) * clip.nx].copy_from_slice(src);
        }
        Some(clip)
    }

    /// Trace coefficients as `[nfiber, ncoef]` arrays (for writers).
    pub fn trace_coeffs(&self) -> (&Array2<f64>, &Array2<f64>) {
        (&self.xtrace.coeff, &self.ytrace.coeff)
    }
}

#[cfg(test)]
mod tests;
