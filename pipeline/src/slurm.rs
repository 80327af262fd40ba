//! `spx-pipeline slurm`: freezes the plan to a JSON file and writes one sbatch job array per
//! stage (`--array=0-N%M`, `--ntasks` = ranks, `--cpus-per-task` = threads), plus a
//! `submit.sh` that submits them in dependency order. Between element-wise stages the
//! dependency is `aftercorr` (element i waits for element i only); otherwise `afterany`,
//! and each element (`spx-pipeline task PLAN STAGE $SLURM_ARRAY_TASK_ID`) checks its own
//! inputs and ends "skipped: upstream failed" when one is missing, so one failed task
//! cancels or skips only what depends on it.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::plan::Plan;
use crate::shell::quote;
use crate::{io_err, Error};

/// How one stage waits for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepKind {
    /// Element i waits for element i of the other array.
    AfterCorr,
    /// Every element waits for the whole other array to end, whatever its state.
    AfterAny,
}

/// One stage's job array.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayJob {
    /// Stage index.
    pub stage: usize,
    /// Upstream stages and how this one waits for them.
    pub deps: Vec<(usize, DepKind)>,
}

/// Stages with tasks, in an order where each comes after the stages it depends on.
pub fn arrays(plan: &Plan) -> Result<Vec<ArrayJob>, Error> {
    let ns = plan.stages.len();
    let mut up: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); ns];
    for t in &plan.tasks {
        for &d in &t.deps {
            let ds = plan.tasks[d].stage;
            if ds != t.stage {
                up[t.stage].insert(ds);
            } else {
                return Err(Error::Plan(format!(
                    "slurm: stage {} has tasks depending on tasks of the same stage ({} on {}); one job array cannot express that",
                    plan.stages[t.stage].name, t.name, plan.tasks[d].name
                )));
            }
        }
    }
    // Topological order of stages (stable: YAML order among the ready ones).
    let mut order = Vec::with_capacity(ns);
    let mut placed = vec![false; ns];
    while order.len() < ns {
        let next = (0..ns).find(|&s| !placed[s] && up[s].iter().all(|&u| placed[u]));
        let Some(s) = next else {
            let left: Vec<&str> = (0..ns)
                .filter(|&s| !placed[s])
                .map(|s| plan.stages[s].name.as_str())
                .collect();
            return Err(Error::Cycle(format!(
                "slurm: stages depend on each other in a cycle among {}",
                left.join(", ")
            )));
        };
        placed[s] = true;
        order.push(s);
    }
    Ok(order
        .into_iter()
        .filter(|&s| !plan.stages[s].tasks.is_empty())
        .map(|s| ArrayJob {
            stage: s,
            deps: up[s]
                .iter()
                .filter(|&&u| !plan.stages[u].tasks.is_empty())
                .map(|&u| (u, dep_kind(plan, s, u)))
                .collect(),
        })
        .collect())
}

/// `aftercorr` when element i of `s` depends on exactly element i of `u` among `u`'s tasks.
fn dep_kind(plan: &Plan, s: usize, u: usize) -> DepKind {
    let (ts, tu) = (&plan.stages[s].tasks, &plan.stages[u].tasks);
    if ts.len() != tu.len() {
        return DepKind::AfterAny;
    }
    let elementwise = ts.iter().enumerate().all(|(i, &t)| {
        let on_u: Vec<usize> = plan.tasks[t]
            .deps
            .iter()
            .copied()
            .filter(|&d| plan.tasks[d].stage == u)
            .collect();
        on_u == [tu[i]]
    });
    if elementwise {
        DepKind::AfterCorr
    } else {
        DepKind::AfterAny
    }
}

/// Options of the generator.
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    /// Folder for the frozen plan, the sbatch scripts and submit.sh.
    pub dir: PathBuf,
    /// The spx-pipeline executable the array elements run.
    pub exe: PathBuf,
    /// Working directory of the jobs (relative paths in the plan are relative to it).
    pub workdir: PathBuf,
    /// Extra `#SBATCH` options (e.g. `--partition=debug`), one per entry.
    pub sbatch_options: Vec<String>,
}

/// The text of one stage's sbatch script.
pub fn stage_script(plan: &Plan, stage: usize, plan_file: &Path, opts: &SlurmOptions) -> String {
    let st = &plan.stages[stage];
    let n = st.tasks.len();
    let throttle = st.max_parallel.map(|m| format!("%{m}")).unwrap_or_default();
    let mut s = String::new();
    let _ = writeln!(s, "#!/bin/bash");
    let _ = writeln!(s, "#SBATCH --job-name=spx-{}", st.name);
    let _ = writeln!(s, "#SBATCH --array=0-{}{throttle}", n - 1);
    let _ = writeln!(s, "#SBATCH --ntasks={}", st.ranks);
    let _ = writeln!(s, "#SBATCH --cpus-per-task={}", st.threads);
    // A dependency that can never be met (aftercorr on a failed element) cancels the element
    // instead of leaving it pending forever (reference/platform.md §8).
    let _ = writeln!(s, "#SBATCH --kill-on-invalid-dep=yes");
    for o in &opts.sbatch_options {
        let _ = writeln!(s, "#SBATCH {o}");
    }
    let _ = writeln!(
        s,
        "# {n} tasks of stage {}; element i runs task i of the frozen plan.",
        st.name
    );
    let _ = writeln!(
        s,
        "exec {} task {} {} \"$SLURM_ARRAY_TASK_ID\"",
        quote(&opts.exe.to_string_lossy()),
        quote(&plan_file.to_string_lossy()),
        quote(&st.name)
    );
    s
}

/// The text of submit.sh: submits every array in order with its dependencies, prints the
/// job ids as `stage jobid` lines.
pub fn submit_script(plan: &Plan, jobs: &[ArrayJob], opts: &SlurmOptions) -> String {
    let mut s = String::from("#!/bin/bash\n# Generated by spx-pipeline slurm: submits one job array per stage.\nset -euo pipefail\n");
    let logs = Path::new(&plan.logdir).join("slurm");
    let _ = writeln!(s, "mkdir -p {}", quote(&logs.to_string_lossy()));
    for j in jobs {
        let name = &plan.stages[j.stage].name;
        let var = format!("j_{}", name.replace('-', "_"));
        let mut dep = String::new();
        if !j.deps.is_empty() {
            let parts: Vec<String> = j
                .deps
                .iter()
                .map(|(u, k)| {
                    let uv = format!("j_{}", plan.stages[*u].name.replace('-', "_"));
                    match k {
                        DepKind::AfterCorr => format!("aftercorr:${uv}"),
                        DepKind::AfterAny => format!("afterany:${uv}"),
                    }
                })
                .collect();
            dep = format!(" --dependency=\"{}\"", parts.join(","));
        }
        let out = logs.join(format!("{name}-%A_%a.out"));
        let script = opts.dir.join(format!("{name}.sbatch"));
        let _ = writeln!(
            s,
            "{var}=$(sbatch --parsable{dep} --chdir={} --output={} {})\n{var}=${{{var}%%;*}}\necho {} \"${var}\"",
            quote(&opts.workdir.to_string_lossy()),
            quote(&out.to_string_lossy()),
            quote(&script.to_string_lossy()),
            quote(name),
        );
    }
    s
}

/// Freezes the plan and writes the scripts; returns the path of submit.sh.
pub fn generate(plan: &Plan, opts: &SlurmOptions) -> Result<PathBuf, Error> {
    let jobs = arrays(plan)?;
    std::fs::create_dir_all(&opts.dir).map_err(|e| io_err(&opts.dir, e))?;
    let plan_file = opts.dir.join("plan.json");
    plan.save(&plan_file)?;
    for j in &jobs {
        let p = opts
            .dir
            .join(format!("{}.sbatch", plan.stages[j.stage].name));
        spx::io::fits::write_text_atomic(&p, &stage_script(plan, j.stage, &plan_file, opts))
            .map_err(|e| io_err(&p, e))?;
    }
    let submit = opts.dir.join("submit.sh");
    spx::io::fits::write_text_atomic(&submit, &submit_script(plan, &jobs, opts))
        .map_err(|e| io_err(&submit, e))?;
    Ok(submit)
}
