//! `spx-plot ccd`: a cut-out of a preprocessed image with the PSF traces x(y) over it.

use std::ops::Range;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use spx::cli::plot::{parse_range, parse_size, CcdOpts};

use crate::{quantile, write_png, SANS};

/// Default cut-out: the whole axis up to this many pixels, else this many around the centre.
const DEFAULT_SPAN: usize = 400;

fn range(arg: Option<&str>, n: usize, what: &str) -> anyhow::Result<Range<usize>> {
    match arg {
        Some(s) => {
            let r = parse_range(s, what)?;
            anyhow::ensure!(
                r.end <= n,
                "{what} {s}: outside the image ({n} pixels on that axis)"
            );
            Ok(r)
        }
        None if n <= DEFAULT_SPAN => Ok(0..n),
        None => {
            let a = (n - DEFAULT_SPAN) / 2;
            Ok(a..a + DEFAULT_SPAN)
        }
    }
}

pub fn run(o: &CcdOpts) -> anyhow::Result<()> {
    let size = parse_size(o.out.size.as_deref(), (1000, 1000))?;
    let img = spx::io::preproc::read(&o.infile)?;
    let psf = spx::io::psf::read(&o.psf)?;
    let (ny, nx) = img.shape();
    let rows = range(o.rows.as_deref(), ny, "--rows")?;
    let cols = range(o.cols.as_deref(), nx, "--cols")?;
    // Grey scale: square-root stretch between the 1% and 99.5% quantiles of the unmasked
    // cut-out pixels: sky-level noise stays visible next to bright traces.
    let good = |r: usize, c: usize| img.ivar[[r, c]] > 0.0 && img.mask[[r, c]] == 0;
    let vals = || {
        rows.clone()
            .flat_map(|r| cols.clone().map(move |c| (r, c)))
            .filter(|&(r, c)| good(r, c))
            .map(|(r, c)| img.image[[r, c]] as f64)
    };
    let lo = quantile(vals(), 0.01).unwrap_or(0.0);
    let hi = quantile(vals(), 0.995).unwrap_or(1.0).max(lo + 1e-6);
    // Fiber numbers: the image's fibermap FIBER when it matches the PSF, else PSF indices.
    let fibers: Vec<i64> = match img.fibermap.as_ref().map(|f| f.fibers()) {
        Some(f) if f.len() == psf.nfiber() => f.into_iter().map(i64::from).collect(),
        _ => (0..psf.nfiber() as i64).collect(),
    };
    let camera = img.header.get_str("CAMERA").unwrap_or_default();
    let expid = img
        .header
        .get_i64("EXPID")
        .map(|e| format!(" expid {e}"))
        .unwrap_or_default();
    let (x0, x1) = (cols.start as f64 - 0.5, cols.end as f64 - 0.5);
    let (y0, y1) = (rows.start as f64 - 0.5, rows.end as f64 - 0.5);
    let title = format!(
        "{} {camera}{expid}: rows {}:{}, columns {}:{} (electrons, √ stretch {:.1} … {:.1})",
        o.infile
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        rows.start,
        rows.end,
        cols.start,
        cols.end,
        lo,
        hi
    );
    write_png(&o.out.outfile, size, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (SANS, 18))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("column x [pixels]")
            .y_desc("row y [pixels]")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style((SANS, 15))
            .axis_desc_style((SANS, 17))
            .draw()?;
        // The image, one screen pixel at a time (nearest CCD pixel), rows increasing upwards.
        let (xr, yr) = chart.plotting_area().get_pixel_range();
        let (w, h) = ((xr.end - xr.start) as f64, (yr.end - yr.start) as f64);
        for py in yr.clone() {
            let fy = (py - yr.start) as f64 + 0.5;
            let r = rows.end as f64 - fy / h * rows.len() as f64;
            let r = (r.floor() as usize).clamp(rows.start, rows.end - 1);
            for px in xr.clone() {
                let fx = (px - xr.start) as f64 + 0.5;
                let c = cols.start as f64 + fx / w * cols.len() as f64;
                let c = (c.floor() as usize).clamp(cols.start, cols.end - 1);
                let color = if good(r, c) {
                    let t = ((img.image[[r, c]] as f64 - lo) / (hi - lo)).clamp(0.0, 1.0);
                    let g = (t.sqrt() * 255.0).round() as u8;
                    RGBColor(g, g, g)
                } else {
                    // Masked pixels in dark red, so they are not mistaken for data.
                    RGBColor(120, 20, 20)
                };
                root.draw_pixel((px, py), &color)?;
            }
        }
        // Traces x(y): sample each fiber's wavelength range densely, keep the cut-out part.
        let trace_color = RGBColor(0, 200, 255);
        let mut labels = Vec::new();
        for (f, &fiber) in fibers.iter().enumerate() {
            let (wa, wb) = psf.fiber_wrange(f);
            let n = 4 * psf.npix_y.max(2);
            let pts: Vec<(f64, f64)> = (0..=n)
                .map(|i| wa + (wb - wa) * i as f64 / n as f64)
                .map(|wv| (psf.x(f, wv), psf.y(f, wv)))
                .filter(|&(x, y)| x >= x0 && x <= x1 && y >= y0 && y <= y1)
                .collect();
            let Some(&top) = pts.iter().max_by(|a, b| a.1.total_cmp(&b.1)) else {
                continue;
            };
            labels.push((fiber, top.0));
            // Opaque on purpose: plotters' bitmap backend drops 1-pixel vertical segments drawn
            // bottom-up with alpha < 1 (an empty blend rectangle), which is all a trace is.
            chart.draw_series(LineSeries::new(pts, trace_color.stroke_width(1)))?;
        }
        // Fiber numbers along the top, thinned to one per ~16 screen pixels.
        let step_px = w / (x1 - x0);
        let mut last = f64::NEG_INFINITY;
        for (fiber, x) in labels {
            let px = (x - x0) * step_px;
            if px - last < 16.0 {
                continue;
            }
            last = px;
            chart.draw_series(std::iter::once(Text::new(
                fiber.to_string(),
                (x, y1),
                TextStyle::from((SANS, 14))
                    .color(&RGBColor(255, 220, 0))
                    .pos(Pos::new(HPos::Center, VPos::Top)),
            )))?;
        }
        Ok(())
    })
}
