//! Expansion of a [`PipelineSpec`] into a validated [`Plan`]: variables, `foreach` products,
//! `group_by` fan-in, file dependencies, `after`, and the validation errors (unknown stage,
//! cycle, missing variable, output written twice, input nobody makes that does not exist).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::rc::Rc;

use crate::exposures::{self, Exposure};
use crate::plan::{Plan, StageInfo, Task};
use crate::schema::{scalar_text, PipelineSpec, StageSpec};
use crate::template::{Layered, ListKind, RenderError, Template};
use crate::Error;

// Shared strings: a task's bindings are mostly the same few values (an exposure's fields, a
// camera) cloned into many items, so clones are reference counts, not allocations.
type Bindings = BTreeMap<Rc<str>, Rc<str>>;
type Macros = BTreeMap<String, String>;

/// A hash map with a fast non-cryptographic hash (FxHash's multiply-rotate, 8 bytes at a
/// time): planning a large campaign hashes hundreds of thousands of paths, and SipHash's
/// protection against hostile keys buys nothing for our own file names.
type HashMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

#[derive(Default)]
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
    fn write_usize(&mut self, n: usize) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        self.0 = (self.0.rotate_left(5) ^ n as u64).wrapping_mul(K);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

fn rc_map(m: &BTreeMap<String, String>) -> Bindings {
    m.iter()
        .map(|(k, v)| (Rc::from(k.as_str()), Rc::from(v.as_str())))
        .collect()
}

/// How to expand.
#[derive(Debug, Clone, Default)]
pub struct ExpandOptions {
    /// `--var name=value` settings (override the YAML's variables).
    pub vars: Vec<(String, String)>,
    /// Check that inputs nobody produces exist (off for synthetic benchmarks).
    pub skip_file_checks: bool,
    /// Use these exposures instead of the YAML's source.
    pub exposures: Option<Vec<Exposure>>,
}

/// Parses a template after inlining the macro variables.
fn tpl(src: &str, macros: &Macros) -> Result<Template, String> {
    Template::parse(&crate::template::inline(src, macros)?)
}

/// Parses `name=value`.
pub fn parse_var(s: &str) -> Result<(String, String), Error> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| Error::Var(format!("--var {s:?}: expected name=value")))?;
    let k = k.trim();
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::Var(format!("--var {s:?}: bad variable name")));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Resolves the variables: YAML values overridden by `--var`, each rendered with the others.
fn resolve_variables(
    spec: &PipelineSpec,
    opts: &ExpandOptions,
) -> Result<(Bindings, Macros), Error> {
    // `--var` values are literal (a path with braces stays a path) and win over the YAML.
    let mut done: Bindings = opts
        .vars
        .iter()
        .map(|(k, v)| (Rc::from(k.as_str()), Rc::from(v.as_str())))
        .collect();
    // A YAML variable may use others; resolve in passes until nothing changes.
    let mut pending: Vec<(String, Template)> = spec
        .variables
        .iter()
        .filter(|(k, _)| !done.contains_key(k.as_str()))
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .map(|(k, v)| {
            Template::parse(&v)
                .map(|t| (k.clone(), t))
                .map_err(|m| Error::Var(format!("variable {k}: {m}")))
        })
        .collect::<Result<_, _>>()?;
    while !pending.is_empty() {
        let before = pending.len();
        let mut still = Vec::new();
        for (k, t) in pending {
            match t.render(&done) {
                Ok(v) => {
                    done.insert(k.into(), v.into());
                }
                Err(_) => still.push((k, t)),
            }
        }
        if still.len() == before {
            // What cannot be resolved from the variables alone needs a task's variables:
            // keep it as a macro, inlined into the templates that use it.
            let macros = still
                .into_iter()
                .map(|(k, t)| (k, t.source().to_string()))
                .collect();
            return Ok((done, macros));
        }
        pending = still;
    }
    Ok((done, BTreeMap::new()))
}

fn load_exposures(
    spec: &PipelineSpec,
    globals: &Bindings,
    macros: &Macros,
    opts: &ExpandOptions,
) -> Result<Option<Vec<Bindings>>, Error> {
    if let Some(e) = &opts.exposures {
        return Ok(Some(e.iter().map(rc_map).collect()));
    }
    let render = |s: &str| -> Result<String, Error> {
        tpl(s, macros)
            .map_err(Error::Var)?
            .render(globals)
            .map_err(|e| Error::Var(format!("exposures: {e}")))
    };
    let Some(src) = &spec.exposures else {
        return Ok(None);
    };
    let rows: Vec<Exposure> = match (&src.raw, &src.table, &src.list) {
        (Some(d), None, None) => exposures::from_raw_dir(Path::new(&render(d)?))?,
        (None, Some(t), None) => exposures::from_table(Path::new(&render(t)?))?,
        (None, None, Some(rows)) => exposures::from_list(rows)?,
        _ => {
            return Err(Error::Var(
                "exposures: give exactly one of raw:, table: or list:".into(),
            ))
        }
    };
    Ok(Some(rows.iter().map(rc_map).collect()))
}

/// A stage's templates, parsed once.
struct Parsed {
    command: Template,
    inputs: Vec<(String, bool, Vec<Template>)>,
    outputs: Vec<(String, Vec<Template>)>,
    args: Vec<Template>,
    options: Vec<(String, OptionValue)>,
}

enum OptionValue {
    Flag,
    Values(Vec<Template>),
}

fn parse_stage(s: &StageSpec, macros: &Macros) -> Result<Parsed, Error> {
    let se = |m: String| Error::Stage {
        stage: s.name.clone(),
        msg: m,
    };
    let p = |t: &str| tpl(t, macros).map_err(se);
    let no_list = |t: Template| -> Result<Template, Error> {
        if t.has_list() {
            Err(se(format!(
                "{:?}: {{inputs.…}}/{{outputs.…}} only go in args and options",
                t.source()
            )))
        } else {
            Ok(t)
        }
    };
    let mut inputs = Vec::new();
    for (name, v) in &s.inputs {
        let (name, optional) = match name.strip_suffix('?') {
            Some(n) => (n.to_string(), true),
            None => (name.clone(), false),
        };
        let ts = v
            .items()
            .into_iter()
            .map(|t| p(t).and_then(no_list))
            .collect::<Result<_, _>>()?;
        inputs.push((name, optional, ts));
    }
    let mut outputs = Vec::new();
    for (name, v) in &s.outputs {
        let ts = v
            .items()
            .into_iter()
            .map(|t| p(t).and_then(no_list))
            .collect::<Result<_, _>>()?;
        outputs.push((name.clone(), ts));
    }
    let mut options = Vec::new();
    for (k, v) in &s.options {
        use serde_norway::Value as V;
        let val = match v {
            V::Bool(true) => Some(OptionValue::Flag),
            V::Bool(false) | V::Null => None,
            V::Sequence(items) => Some(OptionValue::Values(
                items
                    .iter()
                    .map(|i| {
                        scalar_text(i)
                            .ok_or_else(|| se(format!("option {k}: list items must be scalars")))
                            .and_then(|t| p(&t))
                    })
                    .collect::<Result<_, _>>()?,
            )),
            other => Some(OptionValue::Values(vec![p(&scalar_text(other)
                .ok_or_else(|| {
                    se(format!("option {k}: expected a scalar, a list or a bool"))
                })?)?])),
        };
        if let Some(val) = val {
            options.push((k.clone(), val));
        }
    }
    Ok(Parsed {
        command: no_list(p(&s.command)?)?,
        inputs,
        outputs,
        args: s.args.iter().map(|a| p(a)).collect::<Result<_, _>>()?,
        options,
    })
}

/// One item of a stage's foreach product.
struct Item {
    b: Bindings,
    /// The values that name it (expid for an exposure, the value of other dimensions).
    key: Vec<String>,
}

fn split_list(s: &str) -> Vec<String> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

fn derive(b: &mut Bindings) {
    if let Some(cam) = b.get("camera").cloned() {
        if let Ok(sp) = spx::io::findfile::camera_spectrograph(&cam) {
            b.entry("spectrograph".into())
                .or_insert_with(|| sp.to_string().into());
            b.entry("band".into()).or_insert_with(|| cam[..1].into());
        }
    }
}

fn items_of(
    s: &StageSpec,
    globals: &Bindings,
    macros: &Macros,
    exposures: Option<&[Bindings]>,
) -> Result<Vec<Item>, Error> {
    let se = |m: String| Error::Stage {
        stage: s.name.clone(),
        msg: m,
    };
    let render = |t: &str| -> Result<String, Error> {
        tpl(t, macros)
            .map_err(se)?
            .render(globals)
            .map_err(|e| se(format!("foreach: {e}")))
    };
    let mut items = vec![Item {
        b: BTreeMap::new(),
        key: Vec::new(),
    }];
    // The exposure dimension first, so tasks come in exposure order.
    let mut dims: Vec<(&String, &serde_norway::Value)> = s.foreach.iter().collect();
    dims.sort_by_key(|(k, _)| *k != "exposure");
    for (dim, val) in dims {
        use serde_norway::Value as V;
        let values: Vec<(Bindings, String)> = if dim == "exposure" {
            let exps = exposures.ok_or_else(|| {
                se("foreach exposure: the pipeline has no exposures: source".into())
            })?;
            let mut filter: Vec<(String, BTreeSet<String>)> = Vec::new();
            match val {
                V::String(a) if a == "all" => {}
                V::Null => {}
                V::Mapping(m) => {
                    for (k, v) in m {
                        let k = scalar_text(k)
                            .ok_or_else(|| se("foreach exposure: bad filter key".into()))?
                            .to_ascii_lowercase();
                        let vals: Vec<String> = match v {
                            V::Sequence(xs) => xs.iter().filter_map(scalar_text).collect(),
                            other => vec![scalar_text(other).ok_or_else(|| {
                                se(format!("foreach exposure: filter {k}: expected values"))
                            })?],
                        };
                        let vals = vals
                            .iter()
                            .map(|v| render(v).map(|r| r.to_ascii_lowercase()))
                            .collect::<Result<_, _>>()?;
                        filter.push((k, vals));
                    }
                }
                _ => {
                    return Err(se(
                        "foreach exposure: expected `all` or a map of field: value(s)".into(),
                    ))
                }
            }
            exps.iter()
                .filter(|e| {
                    filter.iter().all(|(k, vals)| {
                        e.get(k.as_str())
                            .is_some_and(|v| vals.contains(&v.to_ascii_lowercase()))
                    })
                })
                .map(|e| (e.clone(), e["expid"].to_string()))
                .collect()
        } else {
            let list: Vec<String> = match val {
                V::Sequence(xs) => xs
                    .iter()
                    .map(|x| {
                        scalar_text(x)
                            .ok_or_else(|| se(format!("foreach {dim}: items must be scalars")))
                            .and_then(|t| render(&t))
                    })
                    .collect::<Result<_, _>>()?,
                other => split_list(&render(&scalar_text(other).ok_or_else(|| {
                    se(format!("foreach {dim}: expected a list or a template"))
                })?)?),
            };
            list.into_iter()
                .map(|v| {
                    (
                        BTreeMap::from([(Rc::from(dim.as_str()), Rc::from(v.as_str()))]),
                        v,
                    )
                })
                .collect()
        };
        let mut next = Vec::with_capacity(items.len() * values.len());
        for it in &items {
            for (vb, vk) in &values {
                let mut b = it.b.clone();
                b.extend(vb.iter().map(|(k, v)| (k.clone(), v.clone())));
                let mut key = it.key.clone();
                key.push(vk.clone());
                next.push(Item { b, key });
            }
        }
        items = next;
    }
    for it in &mut items {
        derive(&mut it.b);
    }
    Ok(items)
}

/// A task before dependencies are known.
struct Draft {
    stage: usize,
    name: String,
    b: Bindings,
    members: Vec<Bindings>,
    /// Paths of each of the stage's inputs (as in [`Parsed::inputs`]).
    inputs: Vec<Vec<String>>,
    /// Paths of each of the stage's outputs (as in [`Parsed::outputs`]).
    outputs: Vec<Vec<String>>,
}

/// Renders `t` for a task; in a group, a template needing a per-member variable renders once
/// per member (deduplicated, in member order).
fn render_paths(
    t: &Template,
    b: &Bindings,
    members: &[Bindings],
    globals: &Bindings,
    out: &mut Vec<String>,
) -> Result<(), RenderError> {
    match t.render(&Layered(b, globals)) {
        Ok(p) => {
            out.push(p);
            Ok(())
        }
        Err(RenderError::Unbound(v)) if members.iter().any(|m| m.contains_key(v.as_str())) => {
            let start = out.len();
            for m in members {
                let p = t.render(&Layered(m, globals))?;
                if !out[start..].contains(&p) {
                    out.push(p);
                }
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn drafts_of(
    si: usize,
    s: &StageSpec,
    parsed: &Parsed,
    globals: &Bindings,
    macros: &Macros,
    exposures: Option<&[Bindings]>,
) -> Result<Vec<Draft>, Error> {
    let se = |m: String| Error::Stage {
        stage: s.name.clone(),
        msg: m,
    };
    let items = items_of(s, globals, macros, exposures)?;
    // (bindings, members, name key)
    let groups: Vec<(Bindings, Vec<Bindings>, Vec<String>)> = match &s.group_by {
        None => items
            .into_iter()
            .map(|i| (i.b, Vec::new(), i.key))
            .collect(),
        Some(keys) => {
            let mut order: Vec<Vec<String>> = Vec::new();
            let mut by: HashMap<Vec<String>, Vec<Bindings>> = HashMap::default();
            for it in items {
                let kv = keys
                    .iter()
                    .map(|k| {
                        it.b.get(k.as_str())
                            .or_else(|| globals.get(k.as_str()))
                            .map(|v| v.to_string())
                            .ok_or_else(|| {
                                se(format!(
                                    "group_by {k}: not a foreach variable of this stage"
                                ))
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                by.entry(kv.clone())
                    .or_insert_with(|| {
                        order.push(kv);
                        Vec::new()
                    })
                    .push(it.b);
            }
            order
                .into_iter()
                .map(|kv| {
                    let members = by.remove(&kv).unwrap_or_default();
                    // The group's bindings: what every member agrees on.
                    let mut b = members[0].clone();
                    b.retain(|k, v| members.iter().all(|m| m.get(k) == Some(v)));
                    (b, members, kv)
                })
                .collect()
        }
    };
    let mut out = Vec::with_capacity(groups.len());
    for (b, members, key) in groups {
        let name = if key.is_empty() {
            s.name.clone()
        } else {
            format!("{}-{}", s.name, key.join("-"))
        };
        let err = |what: &str, e: RenderError| se(format!("task {name}: {what}: {e}"));
        let mut inputs = Vec::with_capacity(parsed.inputs.len());
        for (n, _, ts) in &parsed.inputs {
            let mut paths = Vec::new();
            for t in ts {
                render_paths(t, &b, &members, globals, &mut paths)
                    .map_err(|e| err(&format!("input {n}"), e))?;
            }
            inputs.push(paths);
        }
        let mut outputs = Vec::with_capacity(parsed.outputs.len());
        for (n, ts) in &parsed.outputs {
            let mut paths = Vec::new();
            for t in ts {
                render_paths(t, &b, &members, globals, &mut paths)
                    .map_err(|e| err(&format!("output {n}"), e))?;
            }
            outputs.push(paths);
        }
        out.push(Draft {
            stage: si,
            name,
            b,
            members,
            inputs,
            outputs,
        });
    }
    Ok(out)
}

fn default_logdir(globals: &Bindings) -> String {
    match globals.get("outdir") {
        Some(o) => format!("{o}/logs"),
        None => "spx-pipeline-logs".into(),
    }
}

/// Expands and validates a pipeline into a plan.
pub fn expand(spec: &PipelineSpec, opts: &ExpandOptions) -> Result<Plan, Error> {
    let (globals, macros) = resolve_variables(spec, opts)?;
    let mut names = HashMap::default();
    for (i, s) in spec.stages.iter().enumerate() {
        if names.insert(s.name.as_str(), i).is_some() {
            return Err(Error::Stage {
                stage: s.name.clone(),
                msg: "stage name used twice".into(),
            });
        }
        if s.name.is_empty()
            || !s
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(Error::Stage {
                stage: s.name.clone(),
                msg: "a stage name may only have letters, digits, '_' and '-'".into(),
            });
        }
        if s.ranks == 0 || s.threads == 0 {
            return Err(Error::Stage {
                stage: s.name.clone(),
                msg: "ranks and threads must be at least 1".into(),
            });
        }
    }
    for s in &spec.stages {
        for a in &s.after {
            if !names.contains_key(a.as_str()) {
                return Err(Error::UnknownStage {
                    stage: a.clone(),
                    referenced_by: s.name.clone(),
                });
            }
        }
    }
    let exps = load_exposures(spec, &globals, &macros, opts)?;
    let parsed: Vec<Parsed> = spec
        .stages
        .iter()
        .map(|s| parse_stage(s, &macros))
        .collect::<Result<_, _>>()?;
    let mut drafts = Vec::new();
    for (si, s) in spec.stages.iter().enumerate() {
        drafts.extend(drafts_of(
            si,
            s,
            &parsed[si],
            &globals,
            &macros,
            exps.as_deref(),
        )?);
    }

    let mut inputs: Vec<Vec<Vec<String>>> = drafts
        .iter_mut()
        .map(|d| std::mem::take(&mut d.inputs))
        .collect();
    // Who writes what.
    let mut producer: HashMap<&str, usize> =
        HashMap::with_capacity_and_hasher(drafts.len() * 2, Default::default());
    for (id, d) in drafts.iter().enumerate() {
        for p in d.outputs.iter().flatten() {
            if let Some(&other) = producer.get(p.as_str()) {
                return Err(Error::DuplicateOutput {
                    path: p.clone(),
                    first: drafts[other].name.clone(),
                    second: d.name.clone(),
                });
            }
            producer.insert(p, id);
        }
    }
    let mut seen_names: HashMap<&str, usize> =
        HashMap::with_capacity_and_hasher(drafts.len(), Default::default());
    for (id, d) in drafts.iter().enumerate() {
        if let Some(&o) = seen_names.get(d.name.as_str()) {
            if drafts[o].stage == d.stage {
                return Err(Error::Stage {
                    stage: spec.stages[d.stage].name.clone(),
                    msg: format!(
                        "two tasks are both named {}: add the distinguishing variable to foreach or group_by",
                        d.name
                    ),
                });
            }
        }
        seen_names.insert(&d.name, id);
    }

    // Dependencies from files, dropping optional inputs that nobody makes and do not exist.
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); drafts.len()];
    for (id, ins) in inputs.iter_mut().enumerate() {
        let d = &drafts[id];
        for (k, paths) in ins.iter_mut().enumerate() {
            let optional = parsed[d.stage].inputs[k].1;
            let mut keep = Vec::with_capacity(paths.len());
            for p in std::mem::take(paths) {
                if let Some(&src) = producer.get(p.as_str()) {
                    if src == id {
                        return Err(Error::Cycle(format!("{} reads its own output {p}", d.name)));
                    }
                    deps[id].push(src);
                    keep.push(p);
                } else if opts.skip_file_checks || Path::new(&p).exists() {
                    keep.push(p);
                } else if !optional {
                    return Err(Error::MissingInput {
                        task: d.name.clone(),
                        path: p,
                    });
                }
            }
            *paths = keep;
        }
    }

    // `after`: tasks of the named stage that agree on every variable both have.
    let mut by_stage: Vec<Vec<usize>> = vec![Vec::new(); spec.stages.len()];
    for (id, d) in drafts.iter().enumerate() {
        by_stage[d.stage].push(id);
    }
    for (si, s) in spec.stages.iter().enumerate() {
        for a in &s.after {
            let ai = names[a.as_str()];
            for &t in &by_stage[si] {
                let tb = &drafts[t].b;
                for &u in &by_stage[ai] {
                    let ub = &drafts[u].b;
                    let shared: Vec<&str> = tb
                        .keys()
                        .filter(|k| ub.contains_key(*k))
                        .map(|k| &**k)
                        .collect();
                    let tv: Vec<&str> = shared.iter().map(|k| &*tb[*k]).collect();
                    let uv: Vec<&str> = shared.iter().map(|k| &*ub[*k]).collect();
                    if tv == uv {
                        if u == t {
                            return Err(Error::Cycle(format!("stage {} is after itself", s.name)));
                        }
                        deps[t].push(u);
                    }
                }
            }
        }
    }

    for d in &mut deps {
        d.sort_unstable();
        d.dedup();
    }
    let order = topo_order(&drafts, &deps)?;

    // Command lines.
    let logdir = match &spec.logdir {
        Some(l) => tpl(l, &macros)
            .map_err(Error::Var)?
            .render(&globals)
            .map_err(|e| Error::Var(format!("logdir: {e}")))?,
        None => default_logdir(&globals),
    };
    let mut tasks = Vec::with_capacity(drafts.len());
    let mut stages: Vec<StageInfo> = spec
        .stages
        .iter()
        .map(|s| StageInfo {
            name: s.name.clone(),
            ranks: s.ranks,
            threads: s.threads,
            max_parallel: s.max_parallel,
            retries: s.retries,
            tasks: Vec::new(),
        })
        .collect();
    for (id, d) in drafts.into_iter().enumerate() {
        let s = &spec.stages[d.stage];
        let p = &parsed[d.stage];
        let ins = std::mem::take(&mut inputs[id]);
        let outs = &d.outputs;
        let lists = |k: ListKind, n: &str| -> Option<&[String]> {
            match k {
                ListKind::Inputs => p
                    .inputs
                    .iter()
                    .position(|(m, _, _)| m == n)
                    .map(|i| &ins[i][..]),
                ListKind::Outputs => p
                    .outputs
                    .iter()
                    .position(|(m, _)| m == n)
                    .map(|i| &outs[i][..]),
            }
        };
        let stage_vars: Bindings = BTreeMap::from([
            (Rc::from("ranks"), Rc::from(s.ranks.to_string())),
            (Rc::from("threads"), Rc::from(s.threads.to_string())),
        ]);
        let outer = Layered(&stage_vars, &globals);
        let vars = Layered(&d.b, &outer);
        let err = |e: RenderError| Error::Stage {
            stage: s.name.clone(),
            msg: format!("task {}: {e}", d.name),
        };
        // Appends the argument(s) of `t` to `out`: one string, or one per list element, or
        // (in a group) one per member when it needs a member's variable.
        let push_arg = |t: &Template, out: &mut Vec<String>| -> Result<(), Error> {
            let r = if t.has_list() {
                t.render_list(&vars, &lists).map(|v| out.extend(v))
            } else {
                t.render(&vars).map(|a| out.push(a))
            };
            match r {
                Err(RenderError::Unbound(v))
                    if d.members.iter().any(|m| m.contains_key(v.as_str())) =>
                {
                    let start = out.len();
                    for m in &d.members {
                        let mv = Layered(m, &outer);
                        for a in t.render_list(&mv, &lists).map_err(err)? {
                            if !out[start..].contains(&a) {
                                out.push(a);
                            }
                        }
                    }
                    Ok(())
                }
                r => r.map_err(err),
            }
        };
        let mut argv = Vec::with_capacity(1 + p.args.len() + 2 * p.options.len());
        argv.push(p.command.render(&vars).map_err(err)?);
        for a in &p.args {
            push_arg(a, &mut argv)?;
        }
        for (k, v) in &p.options {
            match v {
                OptionValue::Flag => argv.push(format!("--{k}")),
                OptionValue::Values(ts) => {
                    let flag = argv.len();
                    argv.push(format!("--{k}"));
                    for t in ts {
                        push_arg(t, &mut argv)?;
                    }
                    // An option whose values are all gone (an absent optional input) goes too.
                    if argv.len() == flag + 1 {
                        argv.pop();
                    }
                }
            }
        }
        let index = stages[d.stage].tasks.len();
        stages[d.stage].tasks.push(id);
        tasks.push(Task {
            id,
            stage: d.stage,
            index,
            log: format!("{logdir}/{}/{}.log", s.name, d.name),
            name: d.name,
            argv,
            inputs: ins.into_iter().flatten().collect(),
            outputs: d.outputs.into_iter().flatten().collect(),
            deps: std::mem::take(&mut deps[id]),
        });
    }
    Ok(Plan {
        logdir,
        stages,
        tasks,
        order,
    })
}

/// Kahn's algorithm; on a cycle, names the tasks (and stages) on it.
fn topo_order(drafts: &[Draft], deps: &[Vec<usize>]) -> Result<Vec<usize>, Error> {
    let n = drafts.len();
    let mut indeg: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut users = vec![Vec::new(); n];
    for (t, ds) in deps.iter().enumerate() {
        for &d in ds {
            users[d].push(t);
        }
    }
    let mut ready: std::collections::VecDeque<usize> = (0..n).filter(|&t| indeg[t] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(t) = ready.pop_front() {
        order.push(t);
        for &u in &users[t] {
            indeg[u] -= 1;
            if indeg[u] == 0 {
                ready.push_back(u);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Walk back along unfinished dependencies until a task repeats: that is a cycle.
    let mut t = (0..n).find(|&t| indeg[t] > 0).unwrap_or(0);
    let mut path = Vec::new();
    let mut pos = HashMap::default();
    while !pos.contains_key(&t) {
        pos.insert(t, path.len());
        path.push(t);
        t = deps[t].iter().copied().find(|&d| indeg[d] > 0).unwrap_or(t);
    }
    let mut cyc: Vec<usize> = path[pos[&t]..].to_vec();
    cyc.reverse();
    cyc.push(cyc[0]);
    let names: Vec<&str> = cyc.iter().map(|&i| drafts[i].name.as_str()).collect();
    Err(Error::Cycle(names.join(" -> ")))
}
