//! The Gauss-Hermite spot: pixel-integrated Hermite basis, tail, clip at 0, normalise to 1,
//! exactly as specter's `GaussHermitePSF._xypix` (reference/extraction.md §1.3).
//!
//! Evaluation is split in two so that callers (simulator, PSF fitter, extractor) can reuse
//! work: [`SpotParams`] holds everything the spot of one (fiber, wavelength) needs (centre,
//! sigmas, GH coefficients, tail), evaluated once per (fiber, wavelength grid) in a batch by
//! [`crate::psf::GaussHermitePsf::spot_params`]; [`SpotEvaluator`] then turns parameters
//! into a stamp written into a caller buffer, with no allocation per spot, and optionally the
//! derivatives of the normalised stamp with respect to x, y, GHSIGX and GHSIGY.

/// 1/sqrt(2 pi).
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// Parameters of one spot. Positions in pixels (pixel-centred CCD coordinates), sigmas in
/// pixels, GH coefficients dimensionless (`gh[i*(degy+1) + j]` multiplies `Px_i ⊗ Py_j`,
/// i = x order, j = y order).
#[derive(Debug, Clone, Copy)]
pub struct SpotParams<'a> {
    /// Trace x (column) of the spot centre, pixels.
    pub x: f64,
    /// Trace y (row) of the spot centre, pixels.
    pub y: f64,
    /// GHSIGX, pixels.
    pub sigx: f64,
    /// GHSIGY, pixels.
    pub sigy: f64,
    /// GH-i-j coefficients, `[(degx+1)·(degy+1)]`, index `i*(degy+1) + j`.
    pub gh: &'a [f64],
    /// TAILAMP, TAILCORE, TAILXSCA, TAILYSCA, TAILINDE.
    pub tail: [f64; 5],
}

/// Pixel box of a stamp: columns `x0 .. x0+nx`, rows `y0 .. y0+ny` (absolute CCD pixels,
/// may extend beyond the CCD). Buffers are `[ny][nx]` row-major.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub x0: i64,
    pub y0: i64,
    pub nx: usize,
    pub ny: usize,
}

impl Stamp {
    /// This stamp intersected with the box `[xmin, xmax) × [ymin, ymax)`: the clipped
    /// stamp and the offsets (dx, dy) of its first pixel inside this stamp. `None` if empty.
    pub fn clip(
        &self,
        xmin: i64,
        xmax: i64,
        ymin: i64,
        ymax: i64,
    ) -> Option<(Stamp, usize, usize)> {
        let cx0 = self.x0.max(xmin);
        let cx1 = (self.x0 + self.nx as i64).min(xmax);
        let cy0 = self.y0.max(ymin);
        let cy1 = (self.y0 + self.ny as i64).min(ymax);
        if cx1 <= cx0 || cy1 <= cy0 {
            return None;
        }
        Some((
            Stamp {
                x0: cx0,
                y0: cy0,
                nx: (cx1 - cx0) as usize,
                ny: (cy1 - cy0) as usize,
            },
            (cx0 - self.x0) as usize,
            (cy0 - self.y0) as usize,
        ))
    }
}

/// Derivatives of a normalised stamp, each `[ny][nx]` like the stamp.
#[derive(Debug, Clone, Default)]
pub struct SpotDerivs {
    /// d(stamp)/d(x centre), 1/pixel.
    pub dx: Vec<f64>,
    /// d(stamp)/d(y centre), 1/pixel.
    pub dy: Vec<f64>,
    /// d(stamp)/d(GHSIGX), 1/pixel.
    pub dsigx: Vec<f64>,
    /// d(stamp)/d(GHSIGY), 1/pixel.
    pub dsigy: Vec<f64>,
}

/// Specter's stamp range along one axis: `arange(int(c - h + 0.5), int(c + h + 1.5))`, where
/// `int` truncates toward zero. This is specter's choice (reference §1.3 step 1), kept for
/// conformance: for a negative lower end the stamp is one pixel shorter than `2h+1`.
#[inline]
pub fn stamp_range(c: f64, h: usize) -> (i64, usize) {
    let h = h as f64;
    let lo = (c - h + 0.5) as i64;
    let hi = (c + h + 1.5) as i64;
    (lo, (hi - lo).max(0) as usize)
}

/// Scratch space and GH degrees for evaluating spots without allocation. One per thread.
#[derive(Debug, Clone)]
pub struct SpotEvaluator {
    degx: usize,
    degy: usize,
    hsizex: usize,
    hsizey: usize,
    /// Pixel-integrated basis along x: `[degx+2][nxmax]` (one order more for derivatives).
    px: Vec<f64>,
    py: Vec<f64>,
    /// E_m(u) = He_m(u) phi(u) at the edges, `[deg+2][nmax+1]`, and the edges u.
    ex: Vec<f64>,
    ey: Vec<f64>,
    ux: Vec<f64>,
    uy: Vec<f64>,
    /// sum_i c_ij Px_i[x], `[degy+1][nxmax]`, and its x/sigx derivatives.
    t: Vec<f64>,
    tdx: Vec<f64>,
    tdsx: Vec<f64>,
    /// d Px / d x centre and d Px / d sigx (and y), `[deg+1][nmax]`.
    dpx: Vec<f64>,
    dpsx: Vec<f64>,
    dpy: Vec<f64>,
    dpsy: Vec<f64>,
    /// Unnormalised core+tail before clipping, for the derivatives.
    raw: Vec<f64>,
}

impl SpotEvaluator {
    /// Scratch for a PSF with GH degrees `degx`, `degy` and stamp half sizes `hsizex`, `hsizey`.
    pub fn new(degx: usize, degy: usize, hsizex: usize, hsizey: usize) -> Self {
        let nx = 2 * hsizex + 1;
        let ny = 2 * hsizey + 1;
        SpotEvaluator {
            degx,
            degy,
            hsizex,
            hsizey,
            px: vec![0.0; (degx + 2) * nx],
            py: vec![0.0; (degy + 2) * ny],
            ex: vec![0.0; (degx + 2) * (nx + 1)],
            ey: vec![0.0; (degy + 2) * (ny + 1)],
            ux: vec![0.0; nx + 1],
            uy: vec![0.0; ny + 1],
            t: vec![0.0; (degy + 1) * nx],
            tdx: vec![0.0; (degy + 1) * nx],
            tdsx: vec![0.0; (degy + 1) * nx],
            dpx: vec![0.0; (degx + 1) * nx],
            dpsx: vec![0.0; (degx + 1) * nx],
            dpy: vec![0.0; (degy + 1) * ny],
            dpsy: vec![0.0; (degy + 1) * ny],
            raw: vec![0.0; nx * ny],
        }
    }

    /// Largest stamp size, `(2·HSIZEY+1)·(2·HSIZEX+1)`: the buffer length [`Self::eval`] needs.
    pub fn max_len(&self) -> usize {
        (2 * self.hsizex + 1) * (2 * self.hsizey + 1)
    }

    /// Largest stamp width and height in pixels.
    pub fn max_shape(&self) -> (usize, usize) {
        (2 * self.hsizex + 1, 2 * self.hsizey + 1)
    }

    /// Evaluates the normalised spot (not clipped to the CCD) into `out[..ny*nx]` (`[ny][nx]`
    /// row-major) and returns its pixel box. `out` must hold at least [`Self::max_len`]
    /// values. A spot whose clipped core sums to zero comes back all zero.
    pub fn eval(&mut self, p: &SpotParams, out: &mut [f64]) -> Stamp {
        self.eval_impl(p, out, None)
    }

    /// Like [`Self::eval`], and also the derivatives of the normalised stamp with respect to
    /// the centre (x, y) and GHSIGX/GHSIGY, including the effect of the normalisation and of
    /// the clip at 0 (clipped pixels have zero derivative). The GH coefficients and tail are
    /// held fixed. Each derivative vector is resized to the stamp length.
    pub fn eval_with_derivs(
        &mut self,
        p: &SpotParams,
        out: &mut [f64],
        d: &mut SpotDerivs,
    ) -> Stamp {
        self.eval_impl(p, out, Some(d))
    }

    /// Pixel-integrated basis along one axis (reference §1.3 step 2). Fills `e[m][k]` =
    /// He_m(u_k) phi(u_k) for m <= nord (nord = deg+1 when derivatives are wanted) and
    /// `p[m][k]` for m <= deg (+1), returns nothing; `u` gets the edges.
    #[allow(clippy::too_many_arguments)]
    fn basis_1d(
        c: f64,
        sig: f64,
        origin: i64,
        n: usize,
        nord: usize,
        u: &mut [f64],
        e: &mut [f64],
        p: &mut [f64],
        stride: usize,
    ) {
        // Edges as specter builds them: lower edges (pix - c) - 0.5, and the last upper edge
        // one pixel above the last lower edge.
        for (k, uk) in u[..n].iter_mut().enumerate() {
            *uk = ((origin + k as i64) as f64 - c) - 0.5;
        }
        u[n] = u[n - 1] + 1.0;
        for uk in u[..=n].iter_mut() {
            *uk /= sig;
        }
        let es = stride + 1;
        for k in 0..=n {
            let uk = u[k];
            let phi = (-0.5 * uk * uk).exp() * INV_SQRT_2PI;
            // Probabilists' Hermite He_m by He_{m+1} = u He_m - m He_{m-1}.
            let mut hm1 = 0.0;
            let mut h = 1.0;
            for m in 0..nord {
                e[m * es + k] = h * phi;
                let hn = uk * h - m as f64 * hm1;
                hm1 = h;
                h = hn;
            }
        }
        // Order 0: Phi(u_hi) - Phi(u_lo) as an erf difference; order m: E_{m-1} differences.
        let mut lo = libm::erf(u[0] / std::f64::consts::SQRT_2);
        for k in 0..n {
            let hi = libm::erf(u[k + 1] / std::f64::consts::SQRT_2);
            p[k] = 0.5 * (hi - lo);
            lo = hi;
        }
        for m in 1..nord {
            let em = &e[(m - 1) * es..(m - 1) * es + n + 1];
            let pm = &mut p[m * stride..m * stride + n];
            for k in 0..n {
                pm[k] = em[k] - em[k + 1];
            }
        }
    }

    fn eval_impl(
        &mut self,
        p: &SpotParams,
        out: &mut [f64],
        derivs: Option<&mut SpotDerivs>,
    ) -> Stamp {
        let (x0, nx) = stamp_range(p.x, self.hsizex);
        let (y0, ny) = stamp_range(p.y, self.hsizey);
        let stamp = Stamp { x0, y0, nx, ny };
        let len = nx * ny;
        let out = &mut out[..len];
        if nx == 0 || ny == 0 {
            return stamp;
        }
        let want_d = derivs.is_some();
        let (ngx, ngy) = (self.degx + 1, self.degy + 1);
        // One more order than the core needs: d Px_m / d x = Px_{m+1} / sigma.
        let nordx = ngx + usize::from(want_d);
        let nordy = ngy + usize::from(want_d);
        let sx = 2 * self.hsizex + 1;
        let sy = 2 * self.hsizey + 1;
        Self::basis_1d(
            p.x,
            p.sigx,
            x0,
            nx,
            nordx,
            &mut self.ux,
            &mut self.ex,
            &mut self.px,
            sx,
        );
        Self::basis_1d(
            p.y,
            p.sigy,
            y0,
            ny,
            nordy,
            &mut self.uy,
            &mut self.ey,
            &mut self.py,
            sy,
        );

        // T_j[x] = sum_i c_ij Px_i[x], then core[y][x] = sum_j Py_j[y] T_j[x].
        for j in 0..ngy {
            let t = &mut self.t[j * sx..j * sx + nx];
            t.fill(0.0);
            for i in 0..ngx {
                let c = p.gh[i * ngy + j];
                if c == 0.0 {
                    continue;
                }
                let pxi = &self.px[i * sx..i * sx + nx];
                for (tv, &pv) in t.iter_mut().zip(pxi) {
                    *tv += c * pv;
                }
            }
        }
        out.fill(0.0);
        for j in 0..ngy {
            let t = &self.t[j * sx..j * sx + nx];
            let pyj = &self.py[j * sy..j * sy + ny];
            for (iy, &pv) in pyj.iter().enumerate() {
                let row = &mut out[iy * nx..(iy + 1) * nx];
                for (o, &tv) in row.iter_mut().zip(t) {
                    *o += pv * tv;
                }
            }
        }
        // Tail at pixel centres; exactly zero when TAILAMP = 0 (both shipped DESI PSFs).
        let [tamp, tcore, txs, tys, tinde] = p.tail;
        if tamp != 0.0 {
            let c2 = tcore * tcore;
            let pw = 1.0 + tinde / 2.0;
            for iy in 0..ny {
                let dy = (y0 + iy as i64) as f64 - p.y;
                let ry = (dy * tys) * (dy * tys);
                for ix in 0..nx {
                    let dx = (x0 + ix as i64) as f64 - p.x;
                    let r2 = (dx * txs) * (dx * txs) + ry;
                    out[iy * nx + ix] += tamp * r2 / (c2 + r2).powf(pw);
                }
            }
        }
        if want_d {
            self.raw[..len].copy_from_slice(out);
        }
        let mut sum = 0.0;
        for v in out.iter_mut() {
            if *v < 0.0 {
                *v = 0.0;
            }
            sum += *v;
        }
        if sum > 0.0 {
            // specter divides (a reciprocal multiply would differ by an ulp).
            for v in out.iter_mut() {
                *v /= sum;
            }
        }
        if let Some(d) = derivs {
            self.derivs(p, stamp, sum, out, d);
        }
        stamp
    }

    /// Derivatives of the normalised stamp (see [`Self::eval_with_derivs`]).
    fn derivs(&mut self, p: &SpotParams, st: Stamp, sum: f64, img: &[f64], d: &mut SpotDerivs) {
        let (nx, ny) = (st.nx, st.ny);
        let len = nx * ny;
        for v in [&mut d.dx, &mut d.dy, &mut d.dsigx, &mut d.dsigy] {
            v.clear();
            v.resize(len, 0.0);
        }
        if sum <= 0.0 {
            return;
        }
        let (ngx, ngy) = (self.degx + 1, self.degy + 1);
        let sx = 2 * self.hsizex + 1;
        let sy = 2 * self.hsizey + 1;
        // d Px_m/dc = Px_{m+1}/sigma;  d Px_m/dsigma = (u_lo E_m(u_lo) - u_hi E_m(u_hi))/sigma.
        for m in 0..ngx {
            for k in 0..nx {
                self.dpx[m * sx + k] = self.px[(m + 1) * sx + k] / p.sigx;
                let e = &self.ex[m * (sx + 1)..];
                self.dpsx[m * sx + k] = (self.ux[k] * e[k] - self.ux[k + 1] * e[k + 1]) / p.sigx;
            }
        }
        for m in 0..ngy {
            for k in 0..ny {
                self.dpy[m * sy + k] = self.py[(m + 1) * sy + k] / p.sigy;
                let e = &self.ey[m * (sy + 1)..];
                self.dpsy[m * sy + k] = (self.uy[k] * e[k] - self.uy[k + 1] * e[k + 1]) / p.sigy;
            }
        }
        for j in 0..ngy {
            for k in 0..nx {
                let (mut a, mut b) = (0.0, 0.0);
                for i in 0..ngx {
                    let c = p.gh[i * ngy + j];
                    a += c * self.dpx[i * sx + k];
                    b += c * self.dpsx[i * sx + k];
                }
                self.tdx[j * sx + k] = a;
                self.tdsx[j * sx + k] = b;
            }
        }
        // Raw (unnormalised) derivatives of core (+ tail for the centre).
        let [tamp, tcore, txs, tys, tinde] = p.tail;
        for iy in 0..ny {
            for ix in 0..nx {
                let (mut ddx, mut ddy, mut dsx, mut dsy) = (0.0, 0.0, 0.0, 0.0);
                for j in 0..ngy {
                    let pyj = self.py[j * sy + iy];
                    let t = self.t[j * sx + ix];
                    ddx += pyj * self.tdx[j * sx + ix];
                    dsx += pyj * self.tdsx[j * sx + ix];
                    ddy += self.dpy[j * sy + iy] * t;
                    dsy += self.dpsy[j * sy + iy] * t;
                }
                if tamp != 0.0 {
                    let dxp = (st.x0 + ix as i64) as f64 - p.x;
                    let dyp = (st.y0 + iy as i64) as f64 - p.y;
                    let r2 = (dxp * txs).powi(2) + (dyp * tys).powi(2);
                    let q = tcore * tcore + r2;
                    let pw = 1.0 + tinde / 2.0;
                    // d tail / d r2, then d r2 / d xc = -2 dx txs².
                    let dt = tamp * (q.powf(-pw) - r2 * pw * q.powf(-pw - 1.0));
                    ddx += dt * (-2.0 * dxp * txs * txs);
                    ddy += dt * (-2.0 * dyp * tys * tys);
                }
                let k = iy * nx + ix;
                let on = self.raw[k] > 0.0;
                d.dx[k] = if on { ddx } else { 0.0 };
                d.dy[k] = if on { ddy } else { 0.0 };
                d.dsigx[k] = if on { dsx } else { 0.0 };
                d.dsigy[k] = if on { dsy } else { 0.0 };
            }
        }
        // Normalisation: d(c/S) = dc/S - (c/S)·(sum dc)/S.
        for v in [&mut d.dx, &mut d.dy, &mut d.dsigx, &mut d.dsigy] {
            let tot: f64 = v.iter().sum();
            for (dv, &s) in v.iter_mut().zip(img) {
                *dv = (*dv - s * tot) / sum;
            }
        }
    }
}
