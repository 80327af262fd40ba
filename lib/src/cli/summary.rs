//! `spx-summary`: what a night's reduction did and how good it was against the simulation
//! truth: per-stage task counts and times from the pipeline journal, and per target the true
//! and fitted redshift and type, with the success rate (the demo's closing table).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::CommonOpts;
use crate::comm::Comm;
use crate::io::fits::FitsReader;
use crate::io::redrock::RedshiftCatalog;
use crate::io::table::Table;

/// A redshift is right when |Δz|/(1+z) is below this and the type matches (DESI's criterion,
/// 1000 km/s).
pub const DZ_OK: f64 = 0.0033;

/// Summarise a reduced night: stage times from the journal, redshifts against the truth
#[derive(clap::Parser, Debug, Clone, Serialize, Deserialize)]
#[command(version)]
pub struct SummaryOpts {
    /// Pipeline journal (journal.jsonl written by spx-pipeline run)
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// Redshift catalogs (redrock-*.fits from spx-redshift)
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub redrock: Vec<PathBuf>,
    /// Simulation truth files (spx-sim --truth) of the science exposures
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub truth: Vec<PathBuf>,
    /// Folder of figures (spx-plot PNGs) to list at the end
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
    #[command(flatten)]
    #[serde(default)]
    pub common: CommonOpts,
}

#[derive(Default)]
struct StageTimes {
    ok: usize,
    failed: usize,
    cpu: f64,
    first: f64,
    last: f64,
}

fn stage_table(journal: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(journal)
        .with_context(|| format!("{}: cannot read the journal", journal.display()))?;
    let mut stages: Vec<String> = Vec::new();
    let mut times: BTreeMap<String, StageTimes> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        // A torn last line (a killed runner) is skipped, as the runner itself does.
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let stage = v["stage"].as_str().unwrap_or("?").to_string();
        let t = v["time"].as_f64().unwrap_or(0.0);
        if !stages.contains(&stage) {
            stages.push(stage.clone());
        }
        let s = times.entry(stage).or_default();
        if s.first == 0.0 || t < s.first {
            s.first = t;
        }
        s.last = s.last.max(t);
        if v["event"] == "end" {
            s.cpu += v["duration_s"].as_f64().unwrap_or(0.0);
            if v["status"] == "ok" {
                s.ok += 1;
            } else {
                s.failed += 1;
            }
        }
    }
    let mut out = format!(
        "{:<16} {:>5} {:>6} {:>9} {:>10}\n",
        "stage", "ok", "failed", "wall (s)", "tasks (s)"
    );
    let (mut start, mut end, mut total) = (f64::MAX, 0.0f64, 0.0);
    for name in &stages {
        let s = &times[name];
        start = start.min(s.first);
        end = end.max(s.last);
        total += s.cpu;
        out += &format!(
            "{:<16} {:>5} {:>6} {:>9.2} {:>10.2}\n",
            name,
            s.ok,
            s.failed,
            s.last - s.first,
            s.cpu
        );
    }
    if !stages.is_empty() {
        out += &format!(
            "{:<16} {:>5} {:>6} {:>9.2} {:>10.2}\n",
            "night",
            times.values().map(|s| s.ok).sum::<usize>(),
            times.values().map(|s| s.failed).sum::<usize>(),
            end - start,
            total
        );
    }
    Ok(out)
}

/// True (type, z) per TARGETID from the truth files' TRUTH tables, targets only.
pub fn read_truth(paths: &[PathBuf]) -> anyhow::Result<BTreeMap<i64, (String, f64)>> {
    let mut truth = BTreeMap::new();
    for p in paths {
        let mut r = FitsReader::open(p)?;
        let t = Table::read(&mut r, "TRUTH")?;
        let missing = || {
            anyhow::anyhow!(
                "{}[TRUTH]: needs TARGETID, OBJTYPE, SPECTYPE, Z",
                p.display()
            )
        };
        let ids = t.i64s("TARGETID").ok_or_else(missing)?;
        let objtype = t.strs("OBJTYPE").ok_or_else(missing)?;
        let spectype = t.strs("SPECTYPE").ok_or_else(missing)?;
        let z = t.f64s("Z").ok_or_else(missing)?;
        for i in 0..ids.len() {
            if objtype[i] == "TGT" {
                truth.insert(ids[i], (spectype[i].clone(), z[i]));
            }
        }
    }
    Ok(truth)
}

/// What an spx-plot figure shows, from the file-name prefix the demo gives it.
fn plot_kind(name: &str) -> &'static str {
    match name.split(['-', '.']).next().unwrap_or("") {
        "spectrum" => "spectrum with its redshift fit and lines",
        "ccd" => "CCD cut-out with PSF traces and fiber numbers",
        "skyres" => "sky-subtraction residuals of the sky fibers",
        "zscatter" => "fitted vs true redshift",
        "chi2" => "χ²(z) scan per template",
        _ => "",
    }
}

/// The PNG files of `dir`, sorted by name, as "  path  (bytes)" lines.
fn plot_list(dir: &std::path::Path) -> anyhow::Result<String> {
    let mut pngs: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list the plots", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .map(|p| {
            let n = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            (p, n)
        })
        .collect();
    pngs.sort();
    let mut out = format!("plots in {} ({} PNG):\n", dir.display(), pngs.len());
    for (p, n) in pngs {
        let name = p
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        out += &format!(
            "  {name:<28} {:>6.0} kB  {}\n",
            n as f64 / 1e3,
            plot_kind(&name)
        );
    }
    Ok(out)
}

/// Runs the summary and prints it on stdout.
pub fn run(opts: &SummaryOpts, _comm: &dyn Comm) -> anyhow::Result<()> {
    if let Some(j) = &opts.journal {
        println!("{}", stage_table(j)?);
    }
    redshift_table(opts)?;
    if let Some(d) = &opts.plots {
        print!("\n{}", plot_list(d)?);
    }
    Ok(())
}

/// Per target true vs fitted type and redshift, and the success rate.
fn redshift_table(opts: &SummaryOpts) -> anyhow::Result<()> {
    if opts.redrock.is_empty() {
        return Ok(());
    }
    let truth = read_truth(&opts.truth)?;
    println!(
        "{:>18} {:>7} {:>9} {:>7} {:>9} {:>5} {:>10}  verdict",
        "TARGETID", "true", "true z", "fit", "fit z", "ZWARN", "dz/(1+z)"
    );
    let (mut n, mut confident, mut right, mut catastrophic) = (0, 0, 0, 0);
    for path in &opts.redrock {
        for row in RedshiftCatalog::read_redshifts(path)? {
            let Some((ttype, tz)) = truth.get(&row.targetid) else {
                continue;
            };
            n += 1;
            let dz = (row.z - tz) / (1.0 + tz);
            let good = dz.abs() < DZ_OK && row.spectype.trim() == ttype.trim();
            let verdict = match (row.zwarn == 0, good) {
                (true, true) => "ok",
                (true, false) => "WRONG",
                (false, true) => "ok (flagged)",
                (false, false) => "flagged",
            };
            if row.zwarn == 0 {
                confident += 1;
                right += usize::from(good);
                catastrophic += usize::from(!good);
            }
            println!(
                "{:>18} {:>7} {:>9.5} {:>7} {:>9.5} {:>5} {:>10.2e}  {verdict}",
                row.targetid,
                ttype,
                tz,
                row.spectype.trim(),
                row.z,
                row.zwarn,
                dz
            );
        }
    }
    let pct = |a: usize, b: usize| {
        if b == 0 {
            0.0
        } else {
            100.0 * a as f64 / b as f64
        }
    };
    println!(
        "\n{n} targets; {confident} with ZWARN=0, of which {right} right ({:.1}%) and {catastrophic} catastrophic ({:.1}%); criterion |dz|/(1+z) < {DZ_OK} and same type",
        pct(right, confident),
        pct(catastrophic, confident)
    );
    Ok(())
}
