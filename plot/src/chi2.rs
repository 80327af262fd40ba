//! `spx-plot chi2`: a target's χ²(z) scan per template, one panel each.

use plotters::prelude::*;

use spx::cli::plot::{parse_size, Chi2Opts};
use spx::plot::details::read_target_scans;
use spx::redshift::scan::HUGE_CHI2;

use crate::{padded, quantile, write_png, SANS};

pub fn run(o: &Chi2Opts) -> anyhow::Result<()> {
    let size = parse_size(o.out.size.as_deref(), (1200, 800))?;
    let scans = read_target_scans(&o.details, o.targetid)?;
    // redrock's sentinel for failed solves is not a χ² value: leave those points out.
    let valid = |c: f64| c.is_finite() && c < 0.5 * HUGE_CHI2;
    let best = scans
        .iter()
        .flat_map(|s| {
            s.z.iter()
                .zip(&s.chi2)
                .map(move |(&z, &c)| (s.key.as_str(), z, c))
        })
        .filter(|&(_, _, c)| valid(c))
        .min_by(|a, b| a.2.total_cmp(&b.2));
    let title = match best {
        Some((k, z, c)) => format!(
            "χ²(z) of TARGETID {}: lowest χ² = {c:.1} for {k} at z = {z:.5}",
            o.targetid
        ),
        None => format!("χ²(z) of TARGETID {}: no valid χ²", o.targetid),
    };
    write_png(&o.out.outfile, size, |root| {
        let root = root.titled(&title, (SANS, 20))?;
        let panels = root.split_evenly((scans.len(), 1));
        for (s, area) in scans.iter().zip(&panels) {
            let pts: Vec<(f64, f64)> =
                s.z.iter()
                    .zip(&s.chi2)
                    .filter(|&(_, &c)| valid(c))
                    .map(|(&z, &c)| (z, c))
                    .collect();
            let (zlo, zhi) = match (s.z.first(), s.z.last()) {
                (Some(&a), Some(&b)) => padded(a.min(b), a.max(b), 0.0),
                _ => (0.0, 1.0),
            };
            let cmin = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
            let cmax = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
            // Failed solves at a few redshifts spike χ² by orders of magnitude: cap the axis
            // at twice the 90% quantile's distance above the minimum (spikes are clipped).
            let cap =
                quantile(pts.iter().map(|p| p.1), 0.9).map_or(cmax, |q| cmin + 2.0 * (q - cmin));
            let (clo, chi) = if pts.is_empty() {
                (0.0, 1.0)
            } else {
                padded(cmin, cmax.min(cap.max(cmin + 1.0)), 0.06)
            };
            let pts: Vec<(f64, f64)> = pts.into_iter().map(|(z, c)| (z, c.min(chi))).collect();
            let mut ch = ChartBuilder::on(area)
                .margin(8)
                .x_label_area_size(35)
                .y_label_area_size(80)
                .build_cartesian_2d(zlo..zhi, clo..chi)?;
            ch.configure_mesh()
                .light_line_style(WHITE)
                .bold_line_style(RGBColor(225, 225, 225))
                .x_desc("z")
                .y_desc("χ²")
                .y_labels(4)
                .y_label_formatter(&|v| format!("{v:.0}"))
                .label_style((SANS, 13))
                .axis_desc_style((SANS, 15))
                .draw()?;
            ch.draw_series(LineSeries::new(
                pts.clone(),
                RGBColor(31, 100, 200).stroke_width(1),
            ))?;
            if let Some(&(zm, cm)) = pts.iter().min_by(|a, b| a.1.total_cmp(&b.1)) {
                ch.draw_series(LineSeries::new(
                    [(zm, clo), (zm, chi)],
                    RGBColor(220, 20, 20).mix(0.7).stroke_width(1),
                ))?;
                ch.draw_series(std::iter::once(Circle::new(
                    (zm, cm),
                    4,
                    RGBColor(220, 20, 20).filled(),
                )))?;
            }
            let label = match pts.iter().min_by(|a, b| a.1.total_cmp(&b.1)) {
                Some(&(zm, cm)) => format!("{}: min χ² {cm:.1} at z = {zm:.5}", s.key),
                None => format!("{}: no valid χ²", s.key),
            };
            ch.draw_series(std::iter::once(Text::new(
                label,
                (zlo + 0.01 * (zhi - zlo), chi - 0.04 * (chi - clo)),
                (SANS, 15),
            )))?;
        }
        Ok(())
    })
}
