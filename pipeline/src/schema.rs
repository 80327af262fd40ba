//! The pipeline YAML (README "Running a night"). Unknown keys are errors, so a typo never
//! silently drops a setting.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::Error;

/// A whole pipeline file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// Variables usable in every template (`{name}`); `--var name=value` overrides them.
    /// A value may use other variables.
    #[serde(default)]
    pub variables: BTreeMap<String, Scalar>,
    /// Where the exposures of `foreach: {exposure: …}` come from.
    #[serde(default)]
    pub exposures: Option<ExposureSource>,
    /// Folder for task logs and the journal (template; default `{outdir}/logs` when `outdir`
    /// is a variable, else `spx-pipeline-logs`).
    #[serde(default)]
    pub logdir: Option<String>,
    /// The stages, in any order (dependencies come from files and `after`).
    pub stages: Vec<StageSpec>,
}

/// The exposure list of a night: exactly one of `raw`, `table`, `list`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExposureSource {
    /// A folder (template) scanned for raw files `*/desi-XXXXXXXX.fits[.fz]`, whose headers
    /// give NIGHT, EXPID, FLAVOR (or OBSTYPE), EXPTIME and TILEID.
    #[serde(default)]
    pub raw: Option<String>,
    /// A table (template): CSV with a header row, or YAML (a list of maps), with columns
    /// NIGHT, EXPID, FLAVOR and optionally EXPTIME, TILEID (case-insensitive).
    #[serde(default)]
    pub table: Option<String>,
    /// The exposures written inline (as in a table file).
    #[serde(default)]
    pub list: Option<Vec<BTreeMap<String, Scalar>>>,
}

/// One stage: a command run once per task.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Stage name (unique).
    pub name: String,
    /// The program (template), e.g. `spx-extract`.
    pub command: String,
    /// Expansion: the product of these dimensions gives the stage's items. `exposure` takes
    /// a filter map over exposure fields (`{flavor: science}`, a value or a list of values;
    /// `all` for every exposure); any other name takes a list, or a template whose value is
    /// split at commas and spaces (e.g. `camera: "{cameras}"`).
    #[serde(default)]
    pub foreach: BTreeMap<String, serde_norway::Value>,
    /// Fan-in: one task per distinct value of these variables over the items; templates that
    /// need a per-item variable expand once per item of the group (deduplicated).
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    /// Named input paths (templates). A name ending in `?` is optional: dropped when no task
    /// produces it and it does not exist.
    #[serde(default)]
    pub inputs: BTreeMap<String, OneOrMany>,
    /// Named output paths (templates).
    #[serde(default)]
    pub outputs: BTreeMap<String, OneOrMany>,
    /// Arguments (templates; `{inputs.NAME}` expands to the list of that input).
    #[serde(default)]
    pub args: Vec<String>,
    /// Options appended as `--key value` (`true`: `--key`; `false` or an empty list: left
    /// out; a list: `--key v1 v2 …`).
    #[serde(default)]
    pub options: BTreeMap<String, serde_norway::Value>,
    /// Stages this one runs after, beyond what its inputs imply: each task waits for the
    /// tasks of those stages whose shared variables (expid, camera, …) have the same values.
    #[serde(default)]
    pub after: Vec<String>,
    /// Ranks per task (MPI group size; locally, the task's share of cores is ranks×threads).
    #[serde(default = "one")]
    pub ranks: usize,
    /// Threads per rank.
    #[serde(default = "one")]
    pub threads: usize,
    /// At most this many tasks of the stage at once (Slurm: the `%M` of `--array`).
    #[serde(default)]
    pub max_parallel: Option<usize>,
    /// Retries after a failure before the task counts as failed.
    #[serde(default)]
    pub retries: u32,
}

fn one() -> usize {
    1
}

/// A YAML scalar (string, number or bool) kept as text.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "serde_norway::Value")]
pub struct Scalar(pub String);

impl From<serde_norway::Value> for Scalar {
    fn from(v: serde_norway::Value) -> Self {
        Scalar(scalar_text(&v).unwrap_or_default())
    }
}

/// The text of a YAML scalar (None for maps, sequences and null).
pub fn scalar_text(v: &serde_norway::Value) -> Option<String> {
    use serde_norway::Value as V;
    match v {
        V::String(s) => Some(s.clone()),
        V::Number(n) => Some(n.to_string()),
        V::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// One template or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single path template.
    One(String),
    /// Several path templates.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The templates, in order.
    pub fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

impl PipelineSpec {
    /// Reads a pipeline YAML file; the error is one line naming the file.
    pub fn read(path: &Path) -> Result<PipelineSpec, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Spec {
            file: path.display().to_string(),
            msg: e.to_string(),
        })?;
        Self::parse(&text).map_err(|e| match e {
            Error::Spec { msg, .. } => Error::Spec {
                file: path.display().to_string(),
                msg,
            },
            other => other,
        })
    }

    /// Parses pipeline YAML text.
    pub fn parse(text: &str) -> Result<PipelineSpec, Error> {
        serde_norway::from_str(text).map_err(|e| Error::Spec {
            file: "<yaml>".into(),
            msg: e.to_string().replace('\n', " "),
        })
    }
}
