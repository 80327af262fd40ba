//! `spx-plot zscatter`: fitted vs true redshift of simulated targets.

use plotters::prelude::*;

use spx::cli::plot::{parse_size, ZscatterOpts};
use spx::cli::summary::{read_truth, DZ_OK};
use spx::io::redrock::RedshiftCatalog;

use crate::{type_color, write_png, SANS};

/// One target: true type and z, fitted type and z, ZWARN.
struct Point {
    ttype: String,
    tz: f64,
    ftype: String,
    fz: f64,
    zwarn: i64,
}

impl Point {
    fn dz(&self) -> f64 {
        (self.fz - self.tz) / (1.0 + self.tz)
    }
    /// DESI's criterion, as spx-summary: |Δz|/(1+z) < DZ_OK and the same type.
    fn right(&self) -> bool {
        self.dz().abs() < DZ_OK && self.ftype.trim() == self.ttype.trim()
    }
}

pub fn run(o: &ZscatterOpts) -> anyhow::Result<()> {
    let size = parse_size(o.out.size.as_deref(), (900, 1000))?;
    let truth = read_truth(&o.truth)?;
    let mut pts = Vec::new();
    for p in &o.redrock {
        for r in RedshiftCatalog::read_redshifts(p)? {
            if let Some((ttype, tz)) = truth.get(&r.targetid) {
                pts.push(Point {
                    ttype: ttype.trim().to_string(),
                    tz: *tz,
                    ftype: r.spectype.trim().to_string(),
                    fz: r.z,
                    zwarn: r.zwarn,
                });
            }
        }
    }
    anyhow::ensure!(
        !pts.is_empty(),
        "no TARGETID of the redrock catalogs is a target (OBJTYPE TGT) in the truth files"
    );
    let confident: Vec<&Point> = pts.iter().filter(|p| p.zwarn == 0).collect();
    let right = confident.iter().filter(|p| p.right()).count();
    let title = format!(
        "{} targets: {} with ZWARN = 0, {} right ({:.0}%)",
        pts.len(),
        confident.len(),
        right,
        if confident.is_empty() {
            0.0
        } else {
            100.0 * right as f64 / confident.len() as f64
        }
    );
    let zmax = pts
        .iter()
        .flat_map(|p| [p.tz, p.fz])
        .fold(0.0f64, f64::max)
        .max(0.1)
        * 1.05;
    let zmin = pts.iter().flat_map(|p| [p.tz, p.fz]).fold(0.0f64, f64::min) - 0.02 * zmax;
    // Δz panel: ±5× the success threshold, outliers pinned to the edge as triangles.
    let dmax = 5.0 * DZ_OK;
    let mut types: Vec<String> = pts.iter().map(|p| p.ttype.clone()).collect();
    types.sort();
    types.dedup();
    write_png(&o.out.outfile, size, |root| {
        let root = root.titled(&title, (SANS, 20))?;
        let (top, bottom) = root.split_vertically((62).percent());
        let mut a = ChartBuilder::on(&top)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(zmin..zmax, zmin..zmax)?;
        a.configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .x_desc("true z")
            .y_desc("fitted z")
            .label_style((SANS, 15))
            .axis_desc_style((SANS, 17))
            .draw()?;
        a.draw_series(LineSeries::new(
            [(zmin, zmin), (zmax, zmax)],
            BLACK.mix(0.4).stroke_width(1),
        ))?;
        let marker = |p: &Point, x: f64, y: f64| -> Circle<(f64, f64), i32> {
            let c = type_color(&p.ttype);
            // Filled: confident (ZWARN = 0); hollow: flagged.
            let style = if p.zwarn == 0 {
                c.filled()
            } else {
                c.stroke_width(2)
            };
            Circle::new((x, y), 5, style)
        };
        for t in &types {
            let c = type_color(t);
            a.draw_series(
                pts.iter()
                    .filter(|p| &p.ttype == t)
                    .map(|p| marker(p, p.tz, p.fz)),
            )?
            .label(format!("true {t}"))
            .legend(move |(x, y)| Circle::new((x + 10, y), 5, c.filled()));
        }
        a.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((SANS, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .draw()?;
        a.draw_series(std::iter::once(Text::new(
            "filled: ZWARN = 0, hollow: flagged",
            (zmin + 0.55 * (zmax - zmin), zmin + 0.04 * (zmax - zmin)),
            (SANS, 14),
        )))?;

        let mut b = ChartBuilder::on(&bottom)
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(zmin..zmax, -dmax..dmax)?;
        b.configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .x_desc("true z")
            .y_desc("Δz / (1 + z)")
            .y_label_formatter(&|v| format!("{v:.4}"))
            .label_style((SANS, 15))
            .axis_desc_style((SANS, 17))
            .draw()?;
        for y in [-DZ_OK, DZ_OK] {
            b.draw_series(LineSeries::new(
                [(zmin, y), (zmax, y)],
                RGBColor(200, 0, 0).mix(0.6).stroke_width(1),
            ))?;
        }
        b.draw_series(LineSeries::new(
            [(zmin, 0.0), (zmax, 0.0)],
            BLACK.mix(0.4).stroke_width(1),
        ))?;
        b.draw_series(
            pts.iter()
                .filter(|p| p.dz().abs() <= dmax)
                .map(|p| marker(p, p.tz, p.dz())),
        )?;
        b.draw_series(pts.iter().filter(|p| p.dz().abs() > dmax).map(|p| {
            let c = type_color(&p.ttype);
            TriangleMarker::new((p.tz, p.dz().clamp(-dmax, dmax) * 0.96), 7, c.filled())
        }))?;
        b.draw_series(std::iter::once(Text::new(
            format!("red lines: ±{DZ_OK} (1000 km/s); triangles: beyond the axis"),
            (zmin + 0.02 * (zmax - zmin), 0.93 * dmax),
            (SANS, 14),
        )))?;
        Ok(())
    })
}
