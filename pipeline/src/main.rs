//! spx-pipeline: runs a YAML dependency graph of spx stages locally, under MPI, as Slurm job
//! arrays or as a Makefile (README "Running a night").

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use spx_pipeline::cli::{Cli, Cmd, PlanArgs};
use spx_pipeline::{
    expand, local, makefile, slurm, status, task, ExpandOptions, PipelineSpec, Plan,
};

fn load(p: &PlanArgs, skip_file_checks: bool) -> anyhow::Result<Plan> {
    if p.yaml.extension().is_some_and(|e| e == "json") {
        return Ok(Plan::load(&p.yaml)?);
    }
    let spec = PipelineSpec::read(&p.yaml)?;
    let vars = p
        .vars
        .iter()
        .map(|v| expand::parse_var(v))
        .collect::<Result<_, _>>()?;
    Ok(expand(
        &spec,
        &ExpandOptions {
            vars,
            skip_file_checks,
            exposures: None,
        },
    )?)
}

fn write_out(path: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match path {
        Some(p) => spx::io::fits::write_text_atomic(p, text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Plan { p, json } => {
            let plan = load(&p, false)?;
            if let Some(j) = json {
                plan.save(&j)?;
            }
            print!("{}", plan.describe(&plan.done()));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run { p, cores: c } => {
            #[cfg(feature = "mpi")]
            {
                if let Some(code) = spx_pipeline::mpi_run::run_if_mpi(&|| load(&p, false))? {
                    return Ok(code);
                }
            }
            let plan = load(&p, false)?;
            let sum = local::run(
                &plan,
                &local::LocalOptions {
                    cores: c.unwrap_or_else(cores),
                },
            )?;
            eprintln!(
                "spx-pipeline: {} up to date, {} ran ok, {} failed, {} skipped (upstream failed); journal {}",
                sum.up_to_date,
                sum.ok,
                sum.failed.len(),
                sum.skipped,
                plan.journal_path().display()
            );
            if sum.success() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("spx-pipeline: failed: {}", sum.failed.join(" "));
                Ok(ExitCode::from(1))
            }
        }
        Cmd::Task { plan, stage, index } => {
            let plan = Plan::load(&plan)?;
            let t = plan.task_of(&stage, index)?;
            let c = std::env::var("SLURM_CPUS_PER_TASK")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| plan.cores(t.stage));
            Ok(match task::run_one(&plan, t.id, c)? {
                task::Outcome::Ok | task::Outcome::UpToDate => ExitCode::SUCCESS,
                task::Outcome::UpstreamFailed => {
                    eprintln!("spx-pipeline: {}: skipped: upstream failed", t.name);
                    ExitCode::from(task::EXIT_UPSTREAM_FAILED)
                }
                task::Outcome::Failed(code) => {
                    eprintln!(
                        "spx-pipeline: {}: failed (exit {code}), log {}",
                        t.name, t.log
                    );
                    ExitCode::from(1)
                }
            })
        }
        Cmd::Makefile { p, output } => {
            let plan = load(&p, false)?;
            write_out(output.as_deref(), &makefile::generate(&plan)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Slurm {
            p,
            output,
            sbatch,
            submit,
        } => {
            let plan = load(&p, false)?;
            let workdir = std::env::current_dir()?;
            let exe = std::env::current_exe()?;
            let dir = if output.is_absolute() {
                output
            } else {
                workdir.join(output)
            };
            let script = slurm::generate(
                &plan,
                &slurm::SlurmOptions {
                    dir,
                    exe,
                    workdir,
                    sbatch_options: sbatch,
                },
            )?;
            if submit {
                let st = std::process::Command::new("bash").arg(&script).status()?;
                if !st.success() {
                    anyhow::bail!("{}: submission failed ({st})", script.display());
                }
            } else {
                println!("{}", script.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { yaml, vars } => {
            let plan = load(&PlanArgs { yaml, vars }, true)?;
            print!("{}", status::report(&plan)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Builtin { name, args } => {
            let program = format!("builtin:{name}");
            let f = spx_pipeline::registry::in_process(&program)
                .ok_or_else(|| anyhow::anyhow!("no built-in stage {name:?}"))?;
            let mut argv = vec![program];
            argv.extend(args);
            f(&argv, &spx::SingleComm)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::BenchExpand { p, exposures } => {
            let spec = PipelineSpec::read(&p.yaml)?;
            let vars = p
                .vars
                .iter()
                .map(|v| expand::parse_var(v))
                .collect::<Result<_, _>>()?;
            let exps = (0..exposures)
                .map(|i| {
                    [
                        ("night", "20250101".to_string()),
                        ("expid", (1000 + i).to_string()),
                        ("flavor", "science".to_string()),
                        ("tile", (80000 + i / 4).to_string()),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect()
                })
                .collect();
            let cpu0 = cpu_seconds();
            let t0 = Instant::now();
            let plan = expand(
                &spec,
                &ExpandOptions {
                    vars,
                    skip_file_checks: true,
                    exposures: Some(exps),
                },
            )?;
            let t1 = Instant::now();
            let jobs = slurm::arrays(&plan)?;
            let waves = spx_pipeline::local::schedule_waves(&plan);
            let t2 = Instant::now();
            let cpu = cpu_seconds() - cpu0;
            println!(
                "{} exposures: {} tasks, {} dependencies, {} stages ({} arrays), {} waves; expand {:.3} s, schedule {:.3} s, total {:.3} s wall, {cpu:.3} s CPU",
                exposures,
                plan.tasks.len(),
                plan.tasks.iter().map(|t| t.deps.len()).sum::<usize>(),
                plan.stages.len(),
                jobs.len(),
                waves,
                (t1 - t0).as_secs_f64(),
                (t2 - t1).as_secs_f64(),
                (t2 - t0).as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// User + system CPU time of this process, seconds (wall time on a shared machine measures
/// the other users too).
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills a plain struct for this process.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a local.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    spx::logging::init("spx-pipeline", cli.verbose, cli.quiet);
    match real_main(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("spx-pipeline: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
