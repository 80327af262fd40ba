//! `spx-plot skyres`: sky-subtraction residuals of the sky fibers of a frame.

use plotters::prelude::*;

use spx::cli::plot::{parse_size, SkyresOpts};
use spx::io::fiberflat::FiberFlat;
use spx::io::frame::Frame;
use spx::io::sky::SkyModel;
use spx::plot::skyres::sky_residuals;

use crate::{segments, write_png, SANS};

/// Pulls are drawn within ±this (clamped beyond): unit-variance noise stays readable.
const YMAX: f64 = 6.0;

pub fn run(o: &SkyresOpts) -> anyhow::Result<()> {
    let size = parse_size(o.out.size.as_deref(), (1400, 600))?;
    let mut frame = Frame::read(&o.frame)?;
    if let Some(ffp) = &o.fiberflat {
        let ff = FiberFlat::read(ffp)?;
        spx::fiberflat::apply_fiberflat(&mut frame, &ff)
            .map_err(|e| anyhow::anyhow!("{} with {}: {e}", o.frame.display(), ffp.display()))?;
    }
    let sky = SkyModel::read(&o.sky)?;
    let res = sky_residuals(&frame, &sky)
        .map_err(|e| anyhow::anyhow!("{} with {}: {e}", o.frame.display(), o.sky.display()))?;
    let (wmin, wmax) = match (res.wave.first(), res.wave.last()) {
        (Some(&a), Some(&b)) if a < b => (a, b),
        _ => anyhow::bail!("{}: no wavelengths", o.frame.display()),
    };
    let title = format!(
        "sky residuals: {} sky fibers of {}{}{}   Σ pull²/N = {:.2}",
        res.fibers.len(),
        frame.camera().unwrap_or_default(),
        frame
            .expid()
            .map(|e| format!(" expid {e}"))
            .unwrap_or_default(),
        if o.fiberflat.is_some() {
            " (flat-fielded)"
        } else {
            ""
        },
        res.chi2_per_pixel
    );
    let clamp = |v: Option<f64>| v.map(|x| x.clamp(-YMAX, YMAX));
    write_png(&o.out.outfile, size, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (SANS, 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(wmin..wmax, -YMAX..YMAX)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .x_desc("wavelength [Å]")
            .y_desc("(flux − sky) / σ")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style((SANS, 15))
            .axis_desc_style((SANS, 17))
            .draw()?;
        let grey = RGBColor(120, 120, 120);
        for (k, p) in res.pull.iter().enumerate() {
            for (j, seg) in segments(&res.wave, p.iter().map(|&v| clamp(v)))
                .into_iter()
                .enumerate()
            {
                let s = chart.draw_series(LineSeries::new(seg, grey.mix(0.35).stroke_width(1)))?;
                if k == 0 && j == 0 {
                    s.label("each sky fiber")
                        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], grey));
                }
            }
        }
        for y in [-1.0, 1.0] {
            chart.draw_series(LineSeries::new(
                [(wmin, y), (wmax, y)],
                RGBColor(0, 120, 0).mix(0.7).stroke_width(1),
            ))?;
        }
        chart
            .draw_series(LineSeries::new(
                [(wmin, 0.0), (wmax, 0.0)],
                BLACK.mix(0.6).stroke_width(1),
            ))?
            .label("±1σ, 0")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RGBColor(0, 120, 0)));
        let red = RGBColor(220, 20, 20);
        let mut first = true;
        for seg in segments(&res.wave, res.mean.iter().map(|&v| clamp(v))) {
            let s = chart.draw_series(LineSeries::new(seg, red.stroke_width(2)))?;
            if first {
                s.label(format!("mean of {} fibers", res.fibers.len()))
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 20, y)], red.stroke_width(2))
                    });
                first = false;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((SANS, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .draw()?;
        Ok(())
    })
}
