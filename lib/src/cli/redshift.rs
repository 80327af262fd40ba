//! `spx-redshift`: redshifts of the targets of a DESI spectra/coadd file with redrock's
//! algorithm and templates (reference/redshift.md), written in redrock's output format.

use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::CommonOpts;
use crate::comm::{share, Comm};
use crate::io::fits::{require_finite, Provenance};
use crate::io::redrock::{write_details, RedshiftCatalog, RedshiftRow, ScanDetails, TemplateInfo};
use crate::io::spectra::{coadd_fibermap, coadd_tsnr2, Spectra};
use crate::io::table::Table;
use crate::io::templates::{load_templates, zscan_grid};
use crate::redshift::{self, target, zwarn, FitOptions};

/// Options of spx-redshift.
#[derive(clap::Parser, Serialize, Deserialize, Debug, Clone)]
#[command(
    name = "spx-redshift",
    version,
    about = "Fit redshifts of DESI spectra with redrock templates (redrock 0.21 algorithm); \
writes a redrock catalog (REDSHIFTS, FIBERMAP, EXP_FIBERMAP, TSNR2). Wavelengths in Angstrom.",
    long_about = None
)]
pub struct RedshiftOpts {
    /// Input spectra or coadd file (desispec format)
    #[arg(short = 'i', long = "infile", value_name = "SPECTRA")]
    pub infile: PathBuf,
    /// Output redrock catalog (FITS)
    #[arg(short = 'o', long = "outfile", value_name = "REDROCK")]
    pub outfile: PathBuf,
    /// Template set: a list file (.txt), a directory of rrtemplate-*.fits, or one file
    /// (default: spx's own set, see spx-templates)
    #[arg(short = 't', long, env = "RR_TEMPLATE_DIR", value_name = "DIR_OR_LIST")]
    pub templates: Option<PathBuf>,
    /// Also write the χ²(z) scans (Z_<key>, ZCHI2_<key>, PENALTY_<key> per template)
    #[arg(short = 'd', long, value_name = "DETAILS")]
    pub details: Option<PathBuf>,
    /// Only fit these TARGETIDs (comma-separated), in this order
    #[arg(long, value_name = "ID,...")]
    pub targetids: Option<String>,
    /// Minima refined per template and kept per spectral type
    #[arg(long, default_value_t = 3)]
    pub nminima: usize,
    /// Fine-grid points around each minimum
    #[arg(long, default_value_t = 15)]
    pub zminfit_npoints: usize,
    /// Do not mask the 5572–5582 Å and 9792–9795 Å sky lines
    #[arg(long)]
    pub no_skymask: bool,
    /// GALAXY grid zmin,zmax,dz (dex in 1+z) for templates without a REDSHIFTS HDU
    #[arg(long, value_name = "ZMIN,ZMAX,DZ")]
    pub zscan_galaxy: Option<String>,
    /// QSO grid zmin,zmax,dz (dex in 1+z) for templates without a REDSHIFTS HDU
    #[arg(long, value_name = "ZMIN,ZMAX,DZ")]
    pub zscan_qso: Option<String>,
    /// STAR grid zmin,zmax,dz (linear) for templates without a REDSHIFTS HDU
    #[arg(long, value_name = "ZMIN,ZMAX,DZ")]
    pub zscan_star: Option<String>,
    /// Targets fitted together against each rebinned template block (bounds memory)
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub batch: usize,
    #[command(flatten)]
    #[serde(default)]
    pub common: CommonOpts,
}

fn rows_of(t: &Table, ids: &[i64]) -> Table {
    let tid = t.i64s("TARGETID").unwrap_or_default();
    let rows: Vec<usize> = (0..tid.len()).filter(|&i| ids.contains(&tid[i])).collect();
    t.select(&rows)
}

/// What every rank reads and prepares before fitting.
struct Setup {
    spectra: Spectra,
    /// Targets to fit, in output order.
    ids: Vec<i64>,
    prepared: Vec<redshift::scan::Prepared>,
    grids: Vec<target::Grid>,
    infos: Vec<TemplateInfo>,
    tpath: PathBuf,
}

/// Reads and checks the input and the templates (the same on every rank).
fn setup(opts: &RedshiftOpts) -> anyhow::Result<Setup> {
    let spectra = Spectra::read(&opts.infile)?;
    for b in &spectra.bands {
        let up = b.name.to_ascii_uppercase();
        for (name, a) in [("FLUX", &b.flux), ("IVAR", &b.ivar)] {
            let v: Vec<f64> = a.iter().map(|&x| x as f64).collect();
            require_finite(&opts.infile, &format!("{up}_{name}"), v.iter())?;
        }
        if b.ivar.iter().any(|&x| x < 0.0) {
            bail!(
                "{}[{up}_IVAR]: negative inverse variance",
                opts.infile.display()
            );
        }
    }
    let file_ids = target::unique_targetids(&spectra);
    let ids: Vec<i64> = match &opts.targetids {
        Some(list) => {
            let mut req = Vec::new();
            for x in list.split(',').map(str::trim).filter(|x| !x.is_empty()) {
                req.push(
                    x.parse::<i64>()
                        .map_err(|_| anyhow::anyhow!("--targetids: '{x}' is not an integer"))?,
                );
            }
            let mut seen = std::collections::HashSet::new();
            let mut v = Vec::new();
            for t in &req {
                if !file_ids.contains(t) {
                    bail!("{}: TARGETID {t} is not in FIBERMAP", opts.infile.display());
                }
                if seen.insert(*t) {
                    v.push(*t);
                }
            }
            v
        }
        None => file_ids.clone(),
    };
    if ids.is_empty() {
        bail!("{}: no targets to fit", opts.infile.display());
    }
    // Without --templates: spx's own default set (spx-templates), shipped with spx.
    let tpath = opts
        .templates
        .clone()
        .or_else(crate::templates::default_template_dir)
        .context("no templates: give --templates DIR_OR_LIST (or set RR_TEMPLATE_DIR)")?;
    let mut templates = load_templates(&tpath)?;
    for t in templates.iter_mut().filter(|t| t.default_grid) {
        let spec = match t.spectype.as_str() {
            "GALAXY" => &opts.zscan_galaxy,
            "QSO" => &opts.zscan_qso,
            "STAR" => &opts.zscan_star,
            _ => &None,
        };
        if let Some(s) = spec {
            t.redshifts = zscan_grid(&t.spectype, s).map_err(anyhow::Error::msg)?;
        }
    }
    let infos: Vec<TemplateInfo> = templates
        .iter()
        .map(|t| TemplateInfo {
            fulltype: t.full_type(),
            version: t.version.clone(),
            filename: t
                .filename
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        })
        .collect();
    let grids = target::grids(&spectra);
    let prepared = redshift::prepare(templates, &grids)?;
    let full_mb = redshift::full_cache_bytes(&prepared, &grids) as f64 / 1e6;
    let blk_mb = prepared
        .iter()
        .map(|p| redshift::block_bytes(p, &grids))
        .max()
        .unwrap_or(0) as f64
        / 1e6;
    log::info!(
        "{} targets, {} templates, {} cameras; rebinned-template cache: {:.1} MB per thread \
         (one block of {} redshifts; the full grid would be {:.0} MB)",
        ids.len(),
        prepared.len(),
        grids.len(),
        blk_mb,
        redshift::scan::LANES,
        full_mb
    );
    Ok(Setup {
        spectra,
        ids,
        prepared,
        grids,
        infos,
        tpath,
    })
}

/// Runs spx-redshift: every rank reads the input, fits its share of the targets
/// ([`share`]), and rank 0 gathers the results in target order and writes the output.
pub fn run(opts: &RedshiftOpts, comm: &dyn Comm) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    let setup = setup(opts);
    // All ranks agree before the gather, so one rank's bad input cannot hang the others.
    if !comm.all_ok(setup.is_ok()) {
        return match setup {
            Err(e) => Err(e),
            Ok(_) => bail!("spx-redshift: another rank failed to read the input"),
        };
    }
    let Setup {
        spectra,
        ids,
        prepared,
        grids,
        infos,
        tpath,
    } = setup?;
    let fopts = FitOptions {
        nminima: opts.nminima.max(1),
        npoints: opts.zminfit_npoints.max(3),
    };
    // Targets over ranks: a fixed contiguous share per rank (comm::share), gathered on rank 0
    // in rank order, which is target order, so the output does not depend on the rank count.
    let mine = &ids[share(ids.len(), comm.rank(), comm.size())];
    let (part_rows, part_scans) = fit_share(&spectra, &prepared, &grids, mine, opts, &fopts);
    let mut payload = Vec::new();
    encode_share(&part_rows, &part_scans, &mut payload);
    let Some(parts) = comm.gather_bytes(0, &payload) else {
        return Ok(());
    };
    let mut rows = Vec::with_capacity(ids.len());
    let mut scans: Vec<ScanDetails> = prepared
        .iter()
        .map(|p| ScanDetails {
            key: p.t.key(),
            redshifts: p.t.redshifts.clone(),
            zchi2: Vec::with_capacity(ids.len() * p.t.redshifts.len()),
            penalty: Vec::with_capacity(ids.len() * p.t.redshifts.len()),
        })
        .collect();
    for (rank, part) in parts.iter().enumerate() {
        decode_share(part, &mut rows, &mut scans)
            .with_context(|| format!("spx-redshift: corrupt results from rank {rank}"))?;
    }
    if rows.iter().map(|r| r.targetid).ne(ids.iter().copied()) {
        bail!("spx-redshift: gathered results do not match the target list");
    }
    // Output fibermaps in file order, as rrdesi (coadd_fibermap for uncoadded spectra).
    let (fibermap, exp_fibermap, tsnr2) = match &spectra.exp_fibermap {
        Some(exp) => {
            let tsnr = spectra
                .scores
                .as_ref()
                .map(|s| s.filter_columns(|c| c.name == "TARGETID" || c.name.starts_with("TSNR2_")))
                .unwrap_or_default();
            (
                rows_of(&spectra.fibermap, &ids),
                rows_of(exp, &ids),
                rows_of(&tsnr, &ids),
            )
        }
        None => {
            let sel = rows_of(&spectra.fibermap, &ids);
            let (fm, exp) = coadd_fibermap(&sel).map_err(anyhow::Error::msg)?;
            let tsnr = spectra
                .scores
                .as_ref()
                .map(|s| coadd_tsnr2(&rows_of(s, &ids)))
                .transpose()
                .map_err(anyhow::Error::msg)?
                .unwrap_or_default();
            (fm, exp, tsnr)
        }
    };
    apply_fibermap_zwarn(&mut rows, &fibermap);
    let ncoeff_max = prepared.iter().map(|p| p.t.nbasis).max().unwrap_or(1);
    let cat = RedshiftCatalog {
        rows,
        ncoeff_max,
        templates: infos,
        fibermap,
        exp_fibermap,
        tsnr2,
        header: spectra.header.clone(),
    };
    let prov = Provenance::current("spx-redshift", &[opts.infile.as_path(), tpath.as_path()]);
    // Write the details first: a failure there leaves no catalog that looks done.
    if let Some(d) = &opts.details {
        write_details(d, &prov, &ids, &scans)?;
    }
    cat.write(&opts.outfile, &prov)?;
    let secs = start.elapsed().as_secs_f64();
    log::info!(
        "wrote {} ({} targets, {:.3} s/target wall on {} threads)",
        opts.outfile.display(),
        ids.len(),
        secs / ids.len() as f64,
        rayon::current_num_threads()
    );
    Ok(())
}

/// Fits `ids` in batches of `opts.batch`; rows in `ids` order and the χ² scans of these
/// targets (`[ids.len() * nz]` per template).
fn fit_share(
    spectra: &Spectra,
    prepared: &[redshift::scan::Prepared],
    grids: &[target::Grid],
    ids: &[i64],
    opts: &RedshiftOpts,
    fopts: &FitOptions,
) -> (Vec<RedshiftRow>, Vec<ScanDetails>) {
    let mut rows = Vec::with_capacity(ids.len());
    let mut scans: Vec<ScanDetails> = prepared
        .iter()
        .map(|p| ScanDetails {
            key: p.t.key(),
            redshifts: p.t.redshifts.clone(),
            zchi2: Vec::new(),
            penalty: Vec::new(),
        })
        .collect();
    for chunk in ids.chunks(opts.batch.max(1)) {
        let targets = target::prepare_targets(spectra, chunk, !opts.no_skymask);
        let out = redshift::fit(prepared, grids, &targets, fopts);
        for (tg, ranked) in targets.iter().zip(&out.ranked) {
            rows.push(match ranked.first() {
                Some(b) => RedshiftRow {
                    targetid: tg.targetid,
                    z: b.cand.z,
                    zerr: b.cand.zerr,
                    zwarn: b.cand.zwarn,
                    chi2: b.cand.chi2,
                    coeff: b.cand.coeff.clone(),
                    fitmethod: "PCA".into(),
                    npixels: b.cand.npixels as i64,
                    spectype: b.cand.spectype.clone(),
                    subtype: b.cand.subtype.clone(),
                    ncoeff: b.cand.ncoeff as i64,
                    deltachi2: b.deltachi2,
                },
                None => RedshiftRow {
                    targetid: tg.targetid,
                    z: 0.0,
                    zerr: 0.0,
                    zwarn: zwarn::NODATA,
                    chi2: 0.0,
                    coeff: vec![],
                    fitmethod: "NONE".into(),
                    npixels: tg.npixels as i64,
                    spectype: "GALAXY".into(),
                    subtype: String::new(),
                    ncoeff: 0,
                    deltachi2: 0.0,
                },
            });
        }
        for (d, s) in scans.iter_mut().zip(out.scans) {
            d.zchi2.extend(s.zchi2);
            d.penalty.extend(s.penalty);
        }
        log::info!("fitted {}/{} targets of this rank", rows.len(), ids.len());
    }
    (rows, scans)
}

/// Serialises one rank's rows and scans (little endian, f64 bit patterns, so the gathered
/// values are exactly those computed).
fn encode_share(rows: &[RedshiftRow], scans: &[ScanDetails], out: &mut Vec<u8>) {
    let u = |out: &mut Vec<u8>, v: u64| out.extend_from_slice(&v.to_le_bytes());
    let f = |out: &mut Vec<u8>, v: f64| out.extend_from_slice(&v.to_le_bytes());
    let s = |out: &mut Vec<u8>, v: &str| {
        out.extend_from_slice(&(v.len() as u64).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
    };
    u(out, rows.len() as u64);
    for r in rows {
        u(out, r.targetid as u64);
        f(out, r.z);
        f(out, r.zerr);
        u(out, r.zwarn as u64);
        f(out, r.chi2);
        u(out, r.coeff.len() as u64);
        r.coeff.iter().for_each(|&c| f(out, c));
        s(out, &r.fitmethod);
        u(out, r.npixels as u64);
        s(out, &r.spectype);
        s(out, &r.subtype);
        u(out, r.ncoeff as u64);
        f(out, r.deltachi2);
    }
    for sc in scans {
        u(out, sc.zchi2.len() as u64);
        sc.zchi2.iter().for_each(|&c| f(out, c));
        sc.penalty.iter().for_each(|&c| f(out, c));
    }
}

/// Reads back [`encode_share`]'s bytes, appending to `rows` and each template's scans.
fn decode_share(
    buf: &[u8],
    rows: &mut Vec<RedshiftRow>,
    scans: &mut [ScanDetails],
) -> anyhow::Result<()> {
    let mut pos = 0usize;
    let mut take = |n: usize| -> anyhow::Result<&[u8]> {
        let b = buf.get(pos..pos + n).context("truncated result buffer")?;
        pos += n;
        Ok(b)
    };
    fn word(b: &[u8]) -> [u8; 8] {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        a
    }
    macro_rules! u {
        () => {
            u64::from_le_bytes(word(take(8)?))
        };
    }
    macro_rules! f {
        () => {
            f64::from_le_bytes(word(take(8)?))
        };
    }
    macro_rules! s {
        () => {{
            let n = u!() as usize;
            String::from_utf8(take(n)?.to_vec()).context("bad string in result buffer")?
        }};
    }
    let n = u!() as usize;
    for _ in 0..n {
        let targetid = u!() as i64;
        let z = f!();
        let zerr = f!();
        let zwarn = u!() as i64;
        let chi2 = f!();
        let nc = u!() as usize;
        let mut coeff = Vec::with_capacity(nc.min(64));
        for _ in 0..nc {
            coeff.push(f!());
        }
        rows.push(RedshiftRow {
            targetid,
            z,
            zerr,
            zwarn,
            chi2,
            coeff,
            fitmethod: s!(),
            npixels: u!() as i64,
            spectype: s!(),
            subtype: s!(),
            ncoeff: u!() as i64,
            deltachi2: f!(),
        });
    }
    for sc in scans.iter_mut() {
        let m = u!() as usize;
        if m != n * sc.redshifts.len() {
            bail!("scan of {} has {m} values for {n} targets", sc.key);
        }
        for _ in 0..m {
            sc.zchi2.push(f!());
        }
        for _ in 0..m {
            sc.penalty.push(f!());
        }
    }
    if pos != buf.len() {
        bail!("{} trailing bytes in result buffer", buf.len() - pos);
    }
    Ok(())
}

/// rrdesi's ZWARN bits from the coadded fibermap (COADD_FIBERSTATUS, OBJTYPE), and the
/// NODATA overwrite of unusable fibers.
fn apply_fibermap_zwarn(rows: &mut [RedshiftRow], fm: &Table) {
    use crate::maskbits::fibermask as m;
    // FIBERSTATUS is an int32 column; read as i64, the bits are the same
    let bit = |b: i32| i64::from(b);
    let tid = fm.i64s("TARGETID").unwrap_or_default();
    let status = fm
        .i64s("COADD_FIBERSTATUS")
        .or_else(|| fm.i64s("FIBERSTATUS"))
        .unwrap_or_else(|| vec![0; tid.len()]);
    let objtype = fm
        .strs("OBJTYPE")
        .unwrap_or_else(|| vec![String::new(); tid.len()]);
    for r in rows.iter_mut() {
        let Some(i) = tid.iter().position(|&t| t == r.targetid) else {
            continue;
        };
        let s = status[i];
        let ot = objtype[i].trim();
        if s & bit(m::POORPOSITION) != 0 {
            r.zwarn |= zwarn::POORDATA;
        }
        if s & bit(m::BADPOSITION | m::BROKENFIBER | m::UNASSIGNED) != 0 || ot == "BAD" {
            r.zwarn |= zwarn::NODATA;
            r.spectype = "GALAXY".into();
            r.subtype.clear();
            r.coeff.iter_mut().for_each(|c| *c = 0.0);
            r.fitmethod = "NONE".into();
        }
        if s & bit(m::BROKENFIBER) != 0 {
            r.zwarn |= zwarn::UNPLUGGED;
        }
        if ot == "SKY" {
            r.zwarn |= zwarn::SKY;
        }
        if s & bit(m::BADAMPB | m::BADAMPR | m::BADAMPZ) != 0 {
            r.zwarn |= zwarn::LITTLE_COVERAGE;
        }
    }
}
