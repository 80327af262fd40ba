//! `spx-templates`: builds spx's default redshift template set (PCA of rest-frame spectra from
//! spx's spectral library, held out from the simulator's parameter draws) in redrock's format.

use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::CommonOpts;
use crate::comm::Comm;
use crate::io::fits::{write_text_atomic, Provenance};
use crate::templates::{build_set, LIST_FILE, VERSION};

/// Options of spx-templates.
#[derive(clap::Parser, Serialize, Deserialize, Debug, Clone)]
#[command(
    name = "spx-templates",
    version,
    about = "Build spx's redshift templates (PCA of the spectral library) in redrock's format",
    long_about = "Build the default redshift template set of spx: rest-frame spectra of \
galaxies, quasars and stars drawn from spx's spectral library on parameter lattices disjoint \
from the simulator's draws, normalised, reduced by PCA (GALAXY EMLINE 6 and PASSIVE 4, QSO 4, \
STAR A/F/G/K 5 basis vectors) on a log10 grid of 1e-4 dex, written as rrtemplate-<TYPE>-<SUBTYPE>-v<VERSION>.fits \
plus a templates-default.txt list that spx-redshift and redrock read."
)]
pub struct TemplatesOpts {
    /// Output directory (created if missing)
    #[arg(short = 'o', long = "outdir", value_name = "DIR")]
    pub outdir: PathBuf,
    /// Training spectra per template class
    #[arg(long, default_value_t = 400, value_name = "N")]
    pub nspec: usize,
    /// Seed of the training draws (combined with a key the simulator never uses)
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    #[serde(default)]
    pub common: CommonOpts,
}

/// Runs spx-templates.
pub fn run(opts: &TemplatesOpts, _comm: &dyn Comm) -> anyhow::Result<()> {
    let max_nb = crate::templates::CLASSES
        .iter()
        .map(|c| c.nbasis)
        .max()
        .unwrap_or(1);
    if opts.nspec < max_nb {
        anyhow::bail!(
            "--nspec {} is below the largest basis size {max_nb}",
            opts.nspec
        );
    }
    let set = build_set(opts.nspec, opts.seed).context("PCA of the training spectra")?;
    let prov = Provenance::current("spx-templates", &[]);
    let mut list = format!(
        "# spx default redshift templates v{VERSION}: spx-templates --nspec {} --seed {}\n",
        opts.nspec, opts.seed
    );
    for b in &set {
        let path = opts.outdir.join(b.class.filename());
        let extra = [
            ("INSPEC", "spx::speclib".to_string()),
            ("SEED", opts.seed.to_string()),
            ("NSPEC", b.nspec.to_string()),
            ("INSTRUMENT", "DESI".to_string()),
        ];
        b.template.write(&path, &prov, &extra)?;
        let total: f64 = b.captured.iter().sum();
        log::info!(
            "{}: {} basis vectors on {} samples ({:.0}–{:.0} Å), capture {:.6} of the training power",
            b.class.filename(),
            b.template.nbasis,
            b.template.nwave(),
            b.template.wave[0],
            b.template.wave[b.template.nwave() - 1],
            total
        );
        list.push_str(&b.class.filename());
        list.push('\n');
    }
    write_text_atomic(&opts.outdir.join(LIST_FILE), &list)?;
    Ok(())
}
