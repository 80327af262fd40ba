//! `spx-plot spectrum`: one target's b/r/z spectrum with its redshift fit and lines.

use anyhow::Context;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use spx::cli::plot::{parse_size, SpectrumOpts};
use spx::io::redrock::RedshiftCatalog;
use spx::io::spectra::Spectra;
use spx::io::templates::load_templates;
use spx::plot::lines::{observed_in, LineKind};
use spx::plot::model::{has_fit, target_spectrum};
use spx::plot::smooth::ivar_boxcar;

use crate::{band_color, padded, quantile, segments, write_png, SANS};

pub fn run(o: &SpectrumOpts) -> anyhow::Result<()> {
    let size = parse_size(o.out.size.as_deref(), (1400, 600))?;
    let spectra = Spectra::read(&o.infile)?;
    let rows = RedshiftCatalog::read_redshifts(&o.redrock)?;
    let row = match (o.targetid, &o.spectype) {
        (Some(id), _) => rows.iter().find(|r| r.targetid == id).with_context(|| {
            format!(
                "{}[REDSHIFTS]: TARGETID {id} is not in this catalog",
                o.redrock.display()
            )
        })?,
        (None, Some(t)) => rows
            .iter()
            .filter(|r| r.zwarn == 0 && r.spectype.trim().eq_ignore_ascii_case(t.trim()))
            .max_by(|a, b| a.deltachi2.total_cmp(&b.deltachi2))
            .with_context(|| {
                format!(
                    "{}[REDSHIFTS]: no target of SPECTYPE {t} with ZWARN 0",
                    o.redrock.display()
                )
            })?,
        (None, None) => anyhow::bail!("give --targetid or --spectype"),
    };
    let templates = if has_fit(row) {
        let tpath = o
            .templates
            .clone()
            .or_else(spx::templates::default_template_dir)
            .context("no templates: give --templates DIR_OR_LIST (or set RR_TEMPLATE_DIR)")?;
        load_templates(&tpath)?
    } else {
        log::warn!(
            "TARGETID {} has no fit (FITMETHOD NONE): data only",
            row.targetid
        );
        Vec::new()
    };
    // Sky lines unmasked for display: the figure shows the data, the fit's mask is a detail.
    let bands = target_spectrum(&spectra, &o.infile, row, &templates, false)?;
    let n = o.smooth.max(1);
    // Per band: (smoothed data, smoothed model), `None` in gaps.
    type Curve = Vec<Option<f64>>;
    let smoothed: Vec<(Curve, Option<Curve>)> = bands
        .iter()
        .map(|b| {
            let f = ivar_boxcar(&b.flux, &b.ivar, n);
            // The model is defined at every pixel, masked ones too: smooth it with uniform
            // weights so it stays one continuous curve across the data's gaps.
            let m = b.model.as_ref().map(|m| {
                let w: Vec<f64> = m
                    .iter()
                    .map(|v| if v.is_some() { 1.0 } else { 0.0 })
                    .collect();
                let v: Vec<f64> = m.iter().map(|v| v.unwrap_or(0.0)).collect();
                ivar_boxcar(&v, &w, n)
            });
            (f, m)
        })
        .collect();
    let wmin = bands
        .iter()
        .filter_map(|b| b.wave.first())
        .fold(f64::INFINITY, |a, &b| a.min(b));
    let wmax = bands
        .iter()
        .filter_map(|b| b.wave.last())
        .fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    anyhow::ensure!(
        wmin < wmax,
        "{}: no wavelengths in the spectra",
        o.infile.display()
    );
    let data = || {
        smoothed
            .iter()
            .flat_map(|(f, _)| f.iter().flatten().copied())
    };
    let model = || {
        smoothed
            .iter()
            .filter_map(|(_, m)| m.as_ref())
            .flat_map(|m| m.iter().flatten().copied())
    };
    // Robust limits: sky-line residuals and cosmics (a few % of the pixels in the red) should
    // not flatten the spectrum, so the data set the range through their 5–95% quantiles
    // widened by half their spread; the whole model (its emission lines) stays in view.
    let (q05, q95) = (
        quantile(data(), 0.05).unwrap_or(0.0),
        quantile(data(), 0.95).unwrap_or(1.0),
    );
    let spread = q95 - q05;
    let lo = quantile(model(), 0.0)
        .unwrap_or(0.0)
        .min(q05 - 0.5 * spread)
        .min(0.0);
    let hi = quantile(model(), 1.0)
        .unwrap_or(f64::NEG_INFINITY)
        .max(q95 + 0.5 * spread);
    let (ylo, yhi) = padded(lo, hi, 0.05);
    // Room above the data for the line labels and the legend.
    let yhi = yhi + 0.45 * (yhi - ylo);

    let fit = has_fit(row);
    let title = format!(
        "TARGETID {}   {}{}   z = {:.5} (σ {:.1e})   ZWARN {}   Δχ² {:.1}{}",
        row.targetid,
        row.spectype.trim(),
        if row.subtype.trim().is_empty() {
            String::new()
        } else {
            format!(" {}", row.subtype.trim())
        },
        row.z,
        row.zerr,
        row.zwarn,
        row.deltachi2,
        if n > 1 {
            format!("   (smoothed over {n} pixels)")
        } else {
            String::new()
        }
    );
    write_png(&o.out.outfile, size, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (SANS, 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(75)
            .build_cartesian_2d(wmin..wmax, ylo..yhi)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .x_desc("wavelength [Å]")
            .y_desc("flux [10⁻¹⁷ erg s⁻¹ cm⁻² Å⁻¹]")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .label_style((SANS, 15))
            .axis_desc_style((SANS, 17))
            .draw()?;
        // The legend sits at the right under the line labels (top 18% of the plot).
        let legend_at = {
            let (xr, yr) = chart.plotting_area().get_pixel_range();
            SeriesLabelPosition::Coordinate(
                xr.end - xr.start - 150,
                (0.19 * (yr.end - yr.start) as f64) as i32,
            )
        };
        // Lines first, under the data.
        if fit {
            let lines = observed_in(&row.spectype, row.z, wmin, wmax);
            let (px0, px1) = {
                let r = chart.plotting_area().get_pixel_range().0;
                (r.start as f64, r.end as f64)
            };
            let to_px = |w: f64| px0 + (w - wmin) / (wmax - wmin) * (px1 - px0);
            // Stagger labels over three heights so neighbours (Hβ/[O III]) stay legible.
            let mut last = [f64::NEG_INFINITY; 3];
            for (line, w) in lines {
                let color = match line.kind {
                    LineKind::Emission => RGBColor(0, 110, 160),
                    LineKind::Absorption => RGBColor(190, 90, 0),
                };
                chart.draw_series(LineSeries::new(
                    [(w, ylo), (w, yhi)],
                    color.mix(0.35).stroke_width(1),
                ))?;
                let px = to_px(w);
                let level = (0..3).find(|&k| px - last[k] > 52.0).unwrap_or(0);
                last[level] = px;
                let y = yhi - (0.015 + 0.055 * level as f64) * (yhi - ylo);
                chart.draw_series(std::iter::once(Text::new(
                    line.name.to_string(),
                    (w, y),
                    TextStyle::from((SANS, 14))
                        .color(&color)
                        .pos(Pos::new(HPos::Center, VPos::Top)),
                )))?;
            }
        }
        for (b, (f, _)) in bands.iter().zip(&smoothed) {
            let c = band_color(&b.band);
            for (j, seg) in segments(&b.wave, f.iter().copied()).into_iter().enumerate() {
                let s = chart.draw_series(LineSeries::new(seg, c.stroke_width(1)))?;
                if j == 0 {
                    s.label(b.band.clone()).legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2))
                    });
                }
            }
        }
        let mut first = true;
        for (b, (_, m)) in bands.iter().zip(&smoothed) {
            let Some(m) = m else { continue };
            for seg in segments(&b.wave, m.iter().copied()) {
                let s = chart.draw_series(LineSeries::new(seg, BLACK.mix(0.85).stroke_width(1)))?;
                if first {
                    s.label(format!("{} model", row.spectype.trim()))
                        .legend(|(x, y)| {
                            PathElement::new([(x, y), (x + 20, y)], BLACK.stroke_width(2))
                        });
                    first = false;
                }
            }
        }
        chart
            .configure_series_labels()
            .position(legend_at)
            .margin(5)
            .label_font((SANS, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .draw()?;
        Ok(())
    })
}
