//! The χ²(z) kernel (reference/redshift.md §2.2, §2.4).
//!
//! For a block of `LANES` redshifts the template is rebinned once per camera into
//! `[npix + 2·pad][nbasis][LANES]` (the lanes are the SIMD axis), and every target of the batch
//! streams over it: per pixel `Tb = R·T` from the target's resolution rows, then
//! `M += w Tb Tbᵀ`, `y += Tb w f`. Per lane the normal equations are solved by LU with partial
//! pivoting (numpy `linalg.solve`; exactly singular → HUGE_CHI2) and
//! χ² = fᵀWf − 2aᵀy + aᵀMa, which equals Σ w (f − Tb a)² without a second pass over pixels.
//! All sums run in a fixed order, so results do not depend on threads.

// Index loops mirror the formulas (and redrock's code) over several parallel arrays.
#![allow(clippy::needless_range_loop)]

use crate::io::templates::Template;

use super::igm;
use super::rebin::Cumulative;
use super::target::{Grid, Target};

/// A template with what the scan needs precomputed: its running integral and its [O II]
/// penalty (GALAXY PCA only).
pub struct Prepared {
    pub t: Template,
    pub cum: Cumulative,
    pub oii: Option<OiiPenalty>,
}

impl Prepared {
    pub fn new(t: Template) -> Self {
        let cum = Cumulative::new(&t.wave, &t.flux, t.nbasis);
        let oii = OiiPenalty::for_template(&t);
        Prepared { t, cum, oii }
    }
}

/// redrock's sentinel χ² for a failed solve or a target without data.
pub const HUGE_CHI2: f64 = 9_999_999.0;
/// Redshifts per block (SIMD lanes; 8 doubles = one AVX-512 register, two AVX2 registers).
pub const LANES: usize = 8;
/// Largest number of basis vectors with a specialised kernel.
pub const MAX_NB: usize = 10;

/// A template rebinned (and IGM-absorbed) at `LANES` redshifts on every camera grid.
pub struct Block {
    /// Per grid: `[npix + 2·pad][nbasis][LANES]`, pad = ndiag/2 rows of zeros each side.
    pub cams: Vec<Vec<f64>>,
    pub nb: usize,
}

/// Rebins `p` at redshifts `zs` (≤ LANES; unused lanes stay zero and fit as HUGE_CHI2) on
/// all grids. Returns `None` if a redshift does not cover a grid.
pub fn build_block(p: &Prepared, grids: &[Grid], zs: &[f64]) -> Option<Block> {
    let t = &p.t;
    let nb = t.nbasis;
    let mut cams = Vec::with_capacity(grids.len());
    let mut tmp = Vec::new();
    for g in grids {
        let npix = g.wave.len();
        let pad = g.ndiag / 2;
        let mut blk = vec![0.0; (npix + 2 * pad) * nb * LANES];
        let st = p.cum.stride();
        // Rebin in chunks of pixels, all lanes per chunk: the lanes' redshifts are close, so
        // they read the same stretch of the template (≈ 50 kB per chunk for 0.1 Å templates)
        // while it is in L1/L2, instead of streaming the whole camera range once per lane.
        // A chunk's result does not depend on the chunking (each pixel is C(u₁) − C(u₀)).
        const CHUNK: usize = 256;
        tmp.resize(CHUNK * st, 0.0);
        for i0 in (0..npix).step_by(CHUNK) {
            let i1 = (i0 + CHUNK).min(npix);
            for (lane, &z) in zs.iter().enumerate().take(LANES) {
                if !p.cum.rebin(z, &g.edges[i0..=i1], &mut tmp) {
                    return None;
                }
                for i in i0..i1 {
                    for k in 0..nb {
                        blk[((i + pad) * nb + k) * LANES + lane] = tmp[(i - i0) * st + k];
                    }
                }
            }
        }
        for (lane, &z) in zs.iter().enumerate().take(LANES) {
            if let Some(tr) = igm::transmission(t.igm, z, &g.wave) {
                for i in 0..npix {
                    for k in 0..nb {
                        blk[((i + pad) * nb + k) * LANES + lane] *= tr[i];
                    }
                }
            }
        }
        cams.push(blk);
    }
    Some(Block { cams, nb })
}

/// χ² and coefficients of one target at each lane of a block.
#[derive(Debug, Clone, Copy)]
pub struct LaneFit {
    pub chi2: [f64; LANES],
    /// `coeff[lane][k]`, zero-padded beyond nbasis.
    pub coeff: [[f64; MAX_NB]; LANES],
}

/// Accumulates M (upper triangle) and y for one target over a block.
#[inline(always)]
fn accumulate<const NB: usize>(
    blk: &Block,
    grids: &[Grid],
    tg: &Target,
    m: &mut [[[f64; LANES]; NB]; NB],
    y: &mut [[f64; LANES]; NB],
) {
    for (c, g) in grids.iter().enumerate() {
        let cam = &tg.cams[c];
        let t = &blk.cams[c];
        let nd = g.ndiag;
        let npix = g.wave.len();
        for i in 0..npix {
            let w = cam.ivar[i];
            if w == 0.0 {
                continue;
            }
            let mut tb = [[0.0f64; LANES]; NB];
            let rr = &cam.rrow[i * nd..(i + 1) * nd];
            // Row i of R touches columns i+half-d, i.e. padded rows i+2·half-d.
            let base = i + nd - 1;
            for (d, &r) in rr.iter().enumerate() {
                let row = &t[(base - d) * NB * LANES..(base - d + 1) * NB * LANES];
                for k in 0..NB {
                    for l in 0..LANES {
                        tb[k][l] = r.mul_add(row[k * LANES + l], tb[k][l]);
                    }
                }
            }
            let wf = w * cam.flux[i];
            for k in 0..NB {
                let mut wtb = [0.0f64; LANES];
                for l in 0..LANES {
                    wtb[l] = w * tb[k][l];
                    y[k][l] = tb[k][l].mul_add(wf, y[k][l]);
                }
                for kk in k..NB {
                    for l in 0..LANES {
                        m[k][kk][l] = wtb[l].mul_add(tb[kk][l], m[k][kk][l]);
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn fit_block_generic<const NB: usize>(blk: &Block, grids: &[Grid], tg: &Target) -> LaneFit {
    let mut out = LaneFit {
        chi2: [HUGE_CHI2; LANES],
        coeff: [[0.0; MAX_NB]; LANES],
    };
    if tg.wsum == 0.0 {
        return out;
    }
    let mut m = [[[0.0f64; LANES]; NB]; NB];
    let mut y = [[0.0f64; LANES]; NB];
    accumulate::<NB>(blk, grids, tg, &mut m, &mut y);
    for l in 0..LANES {
        let mut a = [[0.0f64; NB]; NB];
        let mut b = [0.0f64; NB];
        for k in 0..NB {
            b[k] = y[k][l];
            for kk in k..NB {
                a[k][kk] = m[k][kk][l];
                a[kk][k] = m[k][kk][l];
            }
        }
        let Some((x, projected)) = cholesky_solve::<NB>(&a, &b) else {
            continue;
        };
        // χ² = fWf − yᵀM⁻¹y = fWf − ‖L⁻¹y‖². Not fWf − 2aᵀy + aᵀMa: with nearly collinear
        // vectors the coefficients grow large and that form cancels terms far above fWf;
        // this one subtracts two numbers ≤ fWf.
        out.chi2[l] = tg.fwf - projected;
        out.coeff[l][..NB].copy_from_slice(&x);
    }
    out
}

/// A direction whose Cholesky pivot falls below this fraction of its diagonal (its angle to
/// the span of the earlier vectors under 1e-4 rad) is dropped, coefficient 0. Where a
/// template's vectors become nearly collinear over the observed pixels (spx's EMLINE basis
/// once [O II] leaves the z camera at z > 1.635) keeping them gives coefficients of 1e6–1e8
/// that fit noise and make redrock's [O II] penalty, taken on the unobserved window, jump by
/// 1e5 between neighbouring redshifts; the refinement parabola then found a false minimum
/// 384 below the truth. Real redrock templates on the shared data never come near the limit
/// (conformance unchanged).
const PIVOT_RTOL: f64 = 1e-8;

/// Solves M a = y for symmetric positive (semi)definite M by Cholesky, M = L Lᵀ. Returns the
/// coefficients and ‖L⁻¹y‖² (= yᵀM⁻¹y, the χ² explained by the fit). `None` when a diagonal is
/// exactly zero or not finite (a vector without data: redrock's solve fails there too).
fn cholesky_solve<const NB: usize>(m: &[[f64; NB]; NB], y: &[f64; NB]) -> Option<([f64; NB], f64)> {
    if (0..NB).any(|j| m[j][j] == 0.0 || !m[j][j].is_finite()) {
        return None;
    }
    let mut l = [[0.0f64; NB]; NB];
    let mut z = [0.0f64; NB];
    let mut kept = [false; NB];
    for j in 0..NB {
        let mut d = m[j][j];
        for k in 0..j {
            d -= l[j][k] * l[j][k];
        }
        if d.is_nan() || d <= PIVOT_RTOL * m[j][j] {
            continue;
        }
        let s = d.sqrt();
        kept[j] = true;
        l[j][j] = s;
        for i in j + 1..NB {
            let mut v = m[i][j];
            for k in 0..j {
                v -= l[i][k] * l[j][k];
            }
            l[i][j] = v / s;
        }
        let mut v = y[j];
        for k in 0..j {
            v -= l[j][k] * z[k];
        }
        z[j] = v / s;
    }
    let mut a = [0.0f64; NB];
    for j in (0..NB).rev() {
        if !kept[j] {
            continue;
        }
        let mut v = z[j];
        for i in j + 1..NB {
            v -= l[i][j] * a[i];
        }
        a[j] = v / l[j][j];
    }
    let projected: f64 = z.iter().map(|v| v * v).sum();
    if projected.is_finite() && a.iter().all(|v| v.is_finite()) {
        Some((a, projected))
    } else {
        None
    }
}

macro_rules! versions {
    ($($nb:literal),*) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        unsafe fn fit_avx512(nb: usize, blk: &Block, grids: &[Grid], tg: &Target) -> LaneFit {
            match nb { $($nb => fit_block_generic::<$nb>(blk, grids, tg),)* _ => unreachable!() }
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn fit_avx2(nb: usize, blk: &Block, grids: &[Grid], tg: &Target) -> LaneFit {
            match nb { $($nb => fit_block_generic::<$nb>(blk, grids, tg),)* _ => unreachable!() }
        }
        fn fit_plain(nb: usize, blk: &Block, grids: &[Grid], tg: &Target) -> LaneFit {
            match nb { $($nb => fit_block_generic::<$nb>(blk, grids, tg),)* _ => unreachable!() }
        }
    };
}
versions!(1, 2, 3, 4, 5, 6, 7, 8, 9, 10);

/// Fits one target against every lane of a block. The accumulations use fused multiply-adds
/// (hardware FMA on the AVX-512 and AVX2+FMA paths; the plain fallback computes the same
/// correctly rounded FMA in software, slowly), so every path gives identical bits.
pub fn fit_block(blk: &Block, grids: &[Grid], tg: &Target) -> LaneFit {
    let nb = blk.nb;
    assert!(
        (1..=MAX_NB).contains(&nb),
        "nbasis checked at template load"
    );
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked above).
            return unsafe { fit_avx512(nb, blk, grids, tg) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            return unsafe { fit_avx2(nb, blk, grids, tg) };
        }
    }
    fit_plain(nb, blk, grids, tg)
}

/// The ad-hoc [O II] penalty of GALAXY PCA templates (redrock `calc_negOII_penalty`):
/// rest 3724–3733 Å model flux S = Σ_λ Σ_k a_k T_k(λ); penalty −S when S < 0.
pub struct OiiPenalty {
    /// `[nλ][nbasis]` template samples inside the [O II] window.
    samples: Vec<f64>,
    nb: usize,
}

impl OiiPenalty {
    /// `Some` for GALAXY PCA templates, as redrock caches `OIItemplate`.
    pub fn for_template(t: &Template) -> Option<Self> {
        if t.spectype != "GALAXY" || t.method != "PCA" {
            return None;
        }
        let mut samples = Vec::new();
        for (j, &w) in t.wave.iter().enumerate() {
            if (3724.0..=3733.0).contains(&w) {
                samples.extend_from_slice(&t.flux[j * t.nbasis..(j + 1) * t.nbasis]);
            }
        }
        Some(OiiPenalty {
            samples,
            nb: t.nbasis,
        })
    }

    /// Penalty for coefficients `a` (≥ 0).
    pub fn penalty(&self, a: &[f64]) -> f64 {
        let mut s = 0.0;
        for row in self.samples.chunks_exact(self.nb) {
            let mut v = 0.0;
            for k in 0..self.nb {
                v += a[k] * row[k];
            }
            s += v;
        }
        if s < 0.0 {
            -s
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_fit_of_a_nearly_collinear_basis() {
        // Data on two halves of 100 unit-weight pixels each, sums s1 and s2, fitted with
        // u1 and u1 + ε·u2 (u1, u2 the indicators of the halves): M and y in closed form.
        let (h, s1, s2, fwf) = (100.0, 360.0, 340.0, 2600.0);
        let exact = fwf - s1 * s1 / h - s2 * s2 / h;
        let fit = |eps: f64| {
            let m = [[h, h], [h, h * (1.0 + eps * eps)]];
            cholesky_solve::<2>(&m, &[s1, s1 + eps * s2]).unwrap()
        };
        let (a, projected) = fit(1e-3);
        assert!(
            (fwf - projected - exact).abs() < 1e-9 * fwf,
            "{}",
            fwf - projected
        );
        // a1 + a2 is the mean of the first half, ε·a2 that of the second
        assert!((a[0] + a[1] - s1 / h).abs() < 1e-9);
        assert!((1e-3 * a[1] - s2 / h).abs() < 1e-9);
        // ε² below the pivot tolerance: the second direction is dropped, the fit is u1's alone
        let (a, projected) = fit(1e-8);
        assert_eq!(a[1], 0.0);
        assert!((projected - s1 * s1 / h).abs() < 1e-9 * fwf);
        // a vector without data: no solution (redrock's solve fails; χ² stays the sentinel)
        assert!(cholesky_solve::<2>(&[[h, 0.0], [0.0, 0.0]], &[s1, 0.0]).is_none());
    }
}
