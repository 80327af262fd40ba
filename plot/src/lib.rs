//! The drawing half of `spx-plot`: PNG figures of spx outputs with plotters' bitmap backend.
//! What is drawn is computed in `spx::plot` (no drawing library there); this crate lays it
//! out. Text uses DejaVu Sans compiled into the binary (fonts/, with its licence), through
//! plotters' `ab_glyph` feature, so nothing is needed at run time: no system fonts, no
//! fontconfig. Every PNG is rendered to a temporary file beside the output and renamed into
//! place, so a failed run leaves no partial figure.

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;

use spx::cli::plot::{Plot, PlotOpts};
use spx::comm::Comm;

mod ccd;
mod chi2;
mod skyres;
mod spectrum;
mod zscatter;

/// DejaVu Sans 2.37 (Bitstream Vera licence, fonts/LICENSE).
static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

/// The family name every figure asks for.
pub(crate) const SANS: &str = "sans-serif";

/// A drawing area of the bitmap backend.
pub(crate) type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

fn register_font() -> anyhow::Result<()> {
    static ONCE: Once = Once::new();
    let mut ok = true;
    ONCE.call_once(|| {
        ok = plotters::style::register_font(SANS, FontStyle::Normal, FONT).is_ok();
    });
    anyhow::ensure!(ok, "the embedded font does not parse (a broken build?)");
    Ok(())
}

/// Removes the temporary PNG unless it was renamed into place.
struct TempPng(Option<PathBuf>);

impl Drop for TempPng {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Renders a `size` (width, height pixels) PNG with `draw` and moves it to `path` atomically.
pub(crate) fn write_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&Area) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    register_font()?;
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file name", path.display()))?
        .to_string_lossy()
        .into_owned();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    anyhow::ensure!(
        dir.is_dir(),
        "{}: cannot write, directory {} does not exist",
        path.display(),
        dir.display()
    );
    // The image encoder picks the format from the extension: keep `.png` last.
    let tmp = dir.join(format!(".{name}.{}.tmp.png", std::process::id()));
    let guard = TempPng(Some(tmp.clone()));
    {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()
            .with_context(|| format!("{}: cannot write the PNG", tmp.display()))?;
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("{}: cannot move the PNG into place", path.display()))?;
    std::mem::forget(guard);
    log::info!("wrote {} ({}x{})", path.display(), size.0, size.1);
    Ok(())
}

/// Runs spx-plot.
pub fn run(opts: &PlotOpts, _comm: &dyn Comm) -> anyhow::Result<()> {
    match &opts.plot {
        Plot::Spectrum(o) => spectrum::run(o),
        Plot::Ccd(o) => ccd::run(o),
        Plot::Skyres(o) => skyres::run(o),
        Plot::Zscatter(o) => zscatter::run(o),
        Plot::Chi2(o) => chi2::run(o),
    }
}

/// The `q` quantile (0–1) of the finite values of `v` (nearest rank), `None` if there are none.
pub(crate) fn quantile(v: impl IntoIterator<Item = f64>, q: f64) -> Option<f64> {
    let mut s: Vec<f64> = v.into_iter().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let i = ((s.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    Some(s[i])
}

/// Splits `(x, y?)` samples into runs of consecutive defined values, one polyline each, so
/// masked pixels show as gaps instead of lines drawn across them.
pub(crate) fn segments(
    x: &[f64],
    y: impl IntoIterator<Item = Option<f64>>,
) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut cur = Vec::new();
    for (&xi, yi) in x.iter().zip(y) {
        match yi {
            Some(v) if v.is_finite() => cur.push((xi, v)),
            _ => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A range `[lo, hi]` widened by `pad` of its width (and made non-empty).
pub(crate) fn padded(lo: f64, hi: f64, pad: f64) -> (f64, f64) {
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5 - lo.abs() * 0.1, hi + 0.5 + hi.abs() * 0.1)
    };
    let w = hi - lo;
    (lo - pad * w, hi + pad * w)
}

/// Colours of the DESI cameras' bands (blue, red, near-infrared).
pub(crate) fn band_color(band: &str) -> RGBColor {
    match band.chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('b') => RGBColor(31, 100, 200),
        Some('r') => RGBColor(200, 40, 40),
        Some('z') => RGBColor(120, 30, 120),
        _ => RGBColor(90, 90, 90),
    }
}

/// Colours of spectral types.
pub(crate) fn type_color(spectype: &str) -> RGBColor {
    match spectype.trim() {
        "GALAXY" => RGBColor(31, 119, 180),
        "QSO" => RGBColor(230, 120, 10),
        "STAR" => RGBColor(44, 160, 44),
        _ => RGBColor(120, 120, 120),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_break_at_gaps() {
        let x = [0.0, 1.0, 2.0, 3.0, 4.0];
        let s = segments(&x, [Some(1.0), Some(2.0), None, Some(f64::NAN), Some(5.0)]);
        assert_eq!(s, vec![vec![(0.0, 1.0), (1.0, 2.0)], vec![(4.0, 5.0)]]);
    }

    #[test]
    fn quantiles() {
        assert_eq!(quantile([3.0, 1.0, 2.0, f64::NAN], 0.0), Some(1.0));
        assert_eq!(quantile([3.0, 1.0, 2.0], 1.0), Some(3.0));
        assert_eq!(quantile([], 0.5), None);
    }

    #[test]
    fn failed_draw_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.png");
        let r = write_png(&out, (300, 200), |_| anyhow::bail!("no"));
        assert!(r.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        write_png(&out, (300, 200), |a| {
            a.fill(&BLUE)?;
            Ok(())
        })
        .unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
