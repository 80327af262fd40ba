//! Quick statistics per file kind, read with the generic FITS reader only (no typed reader),
//! so a file that a typed reader would refuse (NaN in FLUX, a missing HDU) still gets them.
//! Non-finite values are counted and left out of medians.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Value};

use super::kind::{spectra_bands, FileKind};
use super::structure::{HduData, HduSummary};
use crate::io::fits::FitsReader;
use crate::io::Result;

/// One statistic: a spread over fibers, or any JSON value.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Stat {
    /// min / median / max of per-fiber values (serialised in this order).
    Spread {
        min: f64,
        median: f64,
        max: f64,
    },
    Value(Value),
}

/// Named statistics in insertion order (serialised as a JSON object in that order).
#[derive(Debug, Clone, Default)]
pub struct Stats(pub Vec<(String, Stat)>);

impl Stats {
    pub fn put(&mut self, name: &str, value: impl Into<Value>) {
        self.0.push((name.to_string(), Stat::Value(value.into())));
    }

    fn put_stat(&mut self, name: &str, value: Stat) {
        self.0.push((name.to_string(), value));
    }

    /// The statistic named `name`.
    pub fn get(&self, name: &str) -> Option<&Stat> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

impl Serialize for Stats {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Median of the finite values (`None` when there are none). Even counts take the mean of
/// the two middle values, as numpy does.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    let n = v.len();
    let (_, hi, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    let hi = *hi;
    if n % 2 == 1 {
        return Some(hi);
    }
    let lo = v[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(0.5 * (lo + hi))
}

/// min, median and max of the finite values, or null.
fn spread(values: &[f64]) -> Stat {
    let finite: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    match median(finite.iter().copied()) {
        None => Stat::Value(Value::Null),
        Some(median) => Stat::Spread {
            min: finite.iter().copied().fold(f64::INFINITY, f64::min),
            median,
            max: finite.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        },
    }
}

/// Fraction of ivar values that carry no information (≤ 0 or NaN).
fn zero_ivar_fraction<T: Copy + Into<f64>>(ivar: impl ExactSizeIterator<Item = T>) -> f64 {
    let n = ivar.len();
    let none = ivar
        .filter(|&w| w.into().partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater))
        .count();
    none as f64 / n.max(1) as f64
}

fn opt(v: Option<f64>) -> Value {
    v.map_or(Value::Null, Value::from)
}

/// Counts of each distinct value, sorted by value.
fn histogram<T: Ord + ToString + Clone>(values: &[T]) -> Value {
    let mut sorted = values.to_vec();
    sorted.sort();
    let mut m = serde_json::Map::new();
    let mut i = 0;
    while i < sorted.len() {
        let j = sorted[i..].iter().take_while(|v| **v == sorted[i]).count();
        m.insert(sorted[i].to_string(), Value::from(j));
        i += j;
    }
    Value::Object(m)
}

fn find<'a>(hdus: &'a [HduSummary], name: &str) -> Option<&'a HduSummary> {
    hdus.iter().find(|h| h.name.eq_ignore_ascii_case(name))
}

fn nrows(hdus: &[HduSummary], name: &str) -> Option<usize> {
    match &find(hdus, name)?.data {
        HduData::Table { nrows, .. } => Some(*nrows),
        HduData::Image { .. } => None,
    }
}

/// Wavelength range and median step of a 1-D image (Angstrom).
fn wave_stats(r: &mut FitsReader, hdu: &str, st: &mut Stats, prefix: &str) -> Result<()> {
    let w = r.image::<f64>(hdu)?;
    let w: Vec<f64> = w.iter().copied().collect();
    st.put(&format!("{prefix}nwave"), w.len());
    if let (Some(first), Some(last)) = (w.first(), w.last()) {
        st.put(&format!("{prefix}wave_min"), *first);
        st.put(&format!("{prefix}wave_max"), *last);
        st.put(
            &format!("{prefix}wave_step"),
            opt(median(w.windows(2).map(|p| p[1] - p[0]))),
        );
    }
    Ok(())
}

/// Per-row statistics of 2-D spectra `[nspec, nwave]` with their ivar (and mask, if any):
/// per-fiber medians of flux and of S/N = flux·√ivar over pixels with ivar > 0.
fn spectra_stats(
    r: &mut FitsReader,
    flux_hdu: &str,
    ivar_hdu: Option<&str>,
    mask_hdu: Option<&str>,
    st: &mut Stats,
    prefix: &str,
) -> Result<()> {
    let flux = r.image2::<f64>(flux_hdu)?;
    let ivar = match ivar_hdu {
        Some(h) => {
            let iv = r.image2::<f64>(h)?;
            (iv.dim() == flux.dim()).then_some(iv)
        }
        None => None,
    };
    let (ns, nw) = flux.dim();
    st.put(&format!("{prefix}nspec"), ns);
    let nonfinite = flux.iter().filter(|v| !v.is_finite()).count();
    if nonfinite > 0 {
        st.put(&format!("{prefix}nonfinite_flux"), nonfinite);
    }
    let mut med_flux = Vec::with_capacity(ns);
    let mut med_snr = Vec::with_capacity(ns);
    let mut dead = 0;
    for i in 0..ns {
        let f = flux.row(i);
        match &ivar {
            Some(iv) => {
                let iv = iv.row(i);
                let good: Vec<usize> = (0..nw).filter(|&j| iv[j] > 0.0).collect();
                if good.is_empty() {
                    dead += 1;
                    continue;
                }
                med_flux.extend(median(good.iter().map(|&j| f[j])));
                med_snr.extend(median(good.iter().map(|&j| f[j] * iv[j].sqrt())));
            }
            None => med_flux.extend(median(f.iter().copied())),
        }
    }
    st.put_stat(&format!("{prefix}median_flux_per_fiber"), spread(&med_flux));
    if let Some(iv) = &ivar {
        st.put_stat(&format!("{prefix}median_snr_per_fiber"), spread(&med_snr));
        st.put(
            &format!("{prefix}zero_ivar_fraction"),
            zero_ivar_fraction(iv.iter().copied()),
        );
        st.put(&format!("{prefix}fibers_without_data"), dead);
    }
    if let Some(m) = mask_hdu {
        let mask = r.image2::<i64>(m)?;
        let masked = mask.iter().filter(|&&v| v != 0).count();
        st.put(
            &format!("{prefix}masked_fraction"),
            masked as f64 / mask.len().max(1) as f64,
        );
    }
    Ok(())
}

/// OBJTYPE histogram and the number of SKY fibers of a FIBERMAP table.
fn fibermap_stats(r: &mut FitsReader, hdu: &str, st: &mut Stats) -> Result<()> {
    if let Some(types) = r.col_opt::<String>(hdu, "OBJTYPE")? {
        let types: Vec<String> = types.iter().map(|s| s.trim().to_string()).collect();
        st.put("sky_fibers", types.iter().filter(|t| *t == "SKY").count());
        st.put("objtypes", histogram(&types));
    }
    if let Some(fibers) = r.col_opt::<i64>(hdu, "FIBER")? {
        if let (Some(lo), Some(hi)) = (fibers.iter().min(), fibers.iter().max()) {
            st.put("fiber_range", json!([lo, hi]));
        }
    }
    Ok(())
}

fn has(hdus: &[HduSummary], name: &str) -> bool {
    find(hdus, name).is_some()
}

/// Statistics suited to `kind`.
pub fn compute(r: &mut FitsReader, kind: FileKind, hdus: &[HduSummary]) -> Result<Stats> {
    let mut st = Stats::default();
    let opt_hdu = |n: &'static str| has(hdus, n).then_some(n);
    match kind {
        k if k.is_frame() => {
            wave_stats(r, "WAVELENGTH", &mut st, "")?;
            spectra_stats(r, "FLUX", opt_hdu("IVAR"), opt_hdu("MASK"), &mut st, "")?;
            if has(hdus, "FIBERMAP") {
                fibermap_stats(r, "FIBERMAP", &mut st)?;
            }
            if let Some(s) = find(hdus, "RESOLUTION").and_then(|h| h.shape()) {
                st.put("resolution_ndiag", s.get(1).copied().unwrap_or(0));
            }
        }
        FileKind::Spectra | FileKind::Coadd => {
            let bands = spectra_bands(hdus);
            st.put(
                "bands",
                bands.iter().map(|b| b.to_lowercase()).collect::<Vec<_>>(),
            );
            if let Some(n) = nrows(hdus, "FIBERMAP") {
                st.put("nspec", n);
                if let Some(t) = r.col_opt::<i64>("FIBERMAP", "TARGETID")? {
                    let mut u = t.clone();
                    u.sort_unstable();
                    u.dedup();
                    st.put("targets", u.len());
                }
            }
            for b in &bands {
                let p = format!("{}_", b.to_lowercase());
                let wave = format!("{b}_WAVELENGTH");
                if has(hdus, &wave) {
                    wave_stats(r, &wave, &mut st, &p)?;
                }
                let ivar = format!("{b}_IVAR");
                let mask = format!("{b}_MASK");
                let ivar = has(hdus, &ivar).then_some(ivar.as_str());
                let mask = find(hdus, &mask)
                    .filter(|h| !h.is_table())
                    .map(|_| mask.as_str());
                spectra_stats(r, &format!("{b}_FLUX"), ivar, mask, &mut st, &p)?;
            }
        }
        FileKind::Redrock => {
            st.put("ntargets", nrows(hdus, "REDSHIFTS").unwrap_or(0));
            if let Some(t) = r.col_opt::<String>("REDSHIFTS", "SPECTYPE")? {
                let t: Vec<String> = t.iter().map(|s| s.trim().to_string()).collect();
                st.put("spectypes", histogram(&t));
            }
            if let Some(z) = r.col_opt::<i64>("REDSHIFTS", "ZWARN")? {
                st.put("zwarn_nonzero", z.iter().filter(|&&v| v != 0).count());
                st.put("zwarn", histogram(&z));
            }
            if let Some(z) = r.col_opt::<f64>("REDSHIFTS", "Z")? {
                st.put_stat("z", spread(&z));
            }
        }
        FileKind::Psf => {
            for (hdu, key) in [
                ("XTRACE", "FIBERMIN"),
                ("XTRACE", "FIBERMAX"),
                ("XTRACE", "WAVEMIN"),
                ("XTRACE", "WAVEMAX"),
                ("PSF", "HSIZEX"),
                ("PSF", "HSIZEY"),
                ("PSF", "NPIX_X"),
                ("PSF", "NPIX_Y"),
                ("PSF", "GHDEGX"),
                ("PSF", "GHDEGY"),
                ("PSF", "LEGDEG"),
            ] {
                if has(hdus, hdu) {
                    if let Some(v) = r.key_opt::<f64>(hdu, key)? {
                        st.put(&key.to_lowercase(), v);
                    }
                }
            }
            if let Some(s) = find(hdus, "XTRACE").and_then(|h| h.shape()) {
                st.put("nfibers", s.first().copied().unwrap_or(0));
                st.put("trace_coefficients", s.get(1).copied().unwrap_or(0));
            }
            if let Some(n) = nrows(hdus, "PSF") {
                st.put("psf_parameters", n);
            }
        }
        FileKind::Preproc => {
            let img = r.image2::<f32>("IMAGE")?;
            st.put("shape", json!([img.nrows(), img.ncols()]));
            let ivar = r.image2::<f32>("IVAR")?;
            let good: Vec<f64> = if ivar.dim() == img.dim() {
                img.iter()
                    .zip(ivar.iter())
                    .filter(|(_, &w)| w > 0.0)
                    .map(|(&v, _)| f64::from(v))
                    .collect()
            } else {
                Vec::new()
            };
            st.put("median", opt(median(img.iter().map(|&v| f64::from(v)))));
            st.put(
                "median_where_ivar_positive",
                opt(median(good.iter().copied())),
            );
            st.put(
                "zero_ivar_fraction",
                zero_ivar_fraction(ivar.iter().copied()),
            );
            drop((img, ivar, good));
            if has(hdus, "MASK") {
                let mask = r.image2::<i32>("MASK")?;
                let bad = mask.iter().filter(|&&m| m != 0).count();
                st.put("masked_fraction", bad as f64 / mask.len().max(1) as f64);
            }
            let rn = if has(hdus, "READNOISE") {
                median(r.image::<f32>("READNOISE")?.iter().map(|&v| f64::from(v)))
            } else {
                let mut v = None;
                for hdu in ["IMAGE", "PRIMARY"] {
                    if v.is_none() && has(hdus, hdu) {
                        v = r.key_opt::<f64>(hdu, "RDNOISE")?;
                        if v.is_none() {
                            let amps: Vec<f64> = ["A", "B", "C", "D"]
                                .iter()
                                .filter_map(|a| {
                                    r.key_opt::<f64>(hdu, &format!("OBSRDN{a}")).ok().flatten()
                                })
                                .collect();
                            v = median(amps);
                        }
                    }
                }
                v
            };
            st.put("read_noise", opt(rn));
        }
        FileKind::Raw => {
            let cams: Vec<&HduSummary> = hdus
                .iter()
                .filter(|h| super::kind::is_camera_name(&h.name) && h.is_image_nd(2))
                .collect();
            st.put(
                "cameras",
                cams.iter()
                    .map(|h| h.name.to_lowercase())
                    .collect::<Vec<_>>(),
            );
            for h in cams {
                let img = r.image2::<f32>(&h.name)?;
                st.put(
                    &format!("{}_median_adu", h.name.to_lowercase()),
                    opt(median(img.iter().map(|&v| f64::from(v)))),
                );
            }
        }
        FileKind::Fiberflat | FileKind::Sky | FileKind::Fluxcalib => {
            let main = match kind {
                FileKind::Fiberflat => "FIBERFLAT",
                FileKind::Sky => "SKY",
                _ => "FLUXCALIB",
            };
            if has(hdus, "WAVELENGTH") {
                wave_stats(r, "WAVELENGTH", &mut st, "")?;
            }
            let a = r.image2::<f64>(main)?;
            st.put("nspec", a.nrows());
            st.put(
                &format!("median_{}", main.to_lowercase()),
                opt(median(a.iter().copied())),
            );
            let nonfinite = a.iter().filter(|v| !v.is_finite()).count();
            if nonfinite > 0 {
                st.put("nonfinite_values", nonfinite);
            }
            if has(hdus, "IVAR") {
                let iv = r.image2::<f64>("IVAR")?;
                st.put("zero_ivar_fraction", zero_ivar_fraction(iv.iter().copied()));
            }
            if has(hdus, "MASK") {
                let m = r.image2::<i64>("MASK")?;
                st.put(
                    "masked_fraction",
                    m.iter().filter(|&&v| v != 0).count() as f64 / m.len().max(1) as f64,
                );
            }
        }
        FileKind::Stdstars => {
            wave_stats(r, "WAVELENGTH", &mut st, "")?;
            let f = r.image2::<f64>("FLUX")?;
            st.put("nstars", f.nrows());
            if let Ok(fibers) = r.image::<i64>("FIBERS") {
                st.put("fibers", fibers.iter().copied().collect::<Vec<_>>());
            }
        }
        FileKind::Templates => {
            let hdu = if has(hdus, "BASIS_VECTORS") {
                "BASIS_VECTORS"
            } else {
                "PRIMARY"
            };
            if let Some(s) = find(hdus, hdu).and_then(|h| h.shape()) {
                st.put("nbasis", s.first().copied().unwrap_or(0));
                st.put("nwave", s.get(1).copied().unwrap_or(0));
                let crval = r.key_opt::<f64>(hdu, "CRVAL1")?;
                let cdelt = r.key_opt::<f64>(hdu, "CDELT1")?;
                let loglam = r.key_opt::<f64>(hdu, "LOGLAM")?.unwrap_or(0.0) != 0.0;
                if let (Some(c0), Some(dc), Some(&n)) = (crval, cdelt, s.get(1)) {
                    let last = c0 + dc * (n.max(1) - 1) as f64;
                    let (lo, hi) = if loglam {
                        (10f64.powf(c0), 10f64.powf(last))
                    } else {
                        (c0, last)
                    };
                    st.put("rest_wave_min", lo);
                    st.put("rest_wave_max", hi);
                }
            }
            if let Some(s) = find(hdus, "REDSHIFTS").and_then(|h| h.shape()) {
                st.put("redshift_grid", s.first().copied().unwrap_or(0));
            }
        }
        FileKind::Zscan => {
            if let Some(s) = find(hdus, "TARGETID").and_then(|h| h.shape()) {
                st.put("ntargets", s.first().copied().unwrap_or(0));
            }
            let grids: serde_json::Map<String, Value> = hdus
                .iter()
                .filter_map(|h| {
                    let key = h.name.strip_prefix("ZCHI2_")?;
                    Some((
                        key.to_string(),
                        Value::from(h.shape()?.get(1).copied().unwrap_or(0)),
                    ))
                })
                .collect();
            st.put("templates", Value::Object(grids));
        }
        FileKind::Simtruth => {
            let cams: Vec<&HduSummary> = hdus
                .iter()
                .filter(|h| h.name.starts_with("PHOT_") && h.is_image_nd(2))
                .collect();
            st.put(
                "cameras",
                cams.iter()
                    .map(|h| h.name[5..].to_lowercase())
                    .collect::<Vec<_>>(),
            );
            if let Some(s) = cams.first().and_then(|h| h.shape()) {
                st.put("nspec", s[0]);
            }
            for h in cams {
                let cam = &h.name[5..];
                wave_stats(
                    r,
                    &format!("WAVE_{cam}"),
                    &mut st,
                    &format!("{}_", cam.to_lowercase()),
                )?;
            }
            if has(hdus, "TRUTH") {
                if let Some(t) = r.col_opt::<String>("TRUTH", "SPECTYPE")? {
                    let t: Vec<String> = t.iter().map(|s| s.trim().to_string()).collect();
                    st.put("spectypes", histogram(&t));
                }
            }
        }
        FileKind::Fibermap => {
            st.put("nrows", nrows(hdus, "FIBERMAP").unwrap_or(0));
            fibermap_stats(r, "FIBERMAP", &mut st)?;
        }
        _ => {}
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_matches_numpy_conventions() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median([f64::NAN, 1.0]), Some(1.0));
        assert_eq!(median(Vec::<f64>::new()), None);
    }

    #[test]
    fn histogram_counts_sorted() {
        let h = histogram(&["QSO", "GALAXY", "QSO"]);
        assert_eq!(h, json!({"GALAXY": 1, "QSO": 2}));
    }
}
