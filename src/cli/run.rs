//! `xp run`: plan a manifest, queue its runs in the store, and execute the queue.

use std::io::Write;
use std::path::PathBuf;

use super::load::load_and_plan;
use super::output::Lossy;
use super::{Context, Result, exit, progress};
use crate::count::Count;
use crate::exec::{self, Queue};
use crate::manifest::ExecutorKind;
use crate::store::Status;
use crate::sweep;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manifest to run.
    manifest: PathBuf,
    /// Override a setting, e.g. --set train.steps=100 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Only queue the runs; do not train.
    #[arg(long)]
    queue_only: bool,
    /// Stop the queue at the first failed run.
    #[arg(long)]
    fail_fast: bool,
    /// Put the experiment's failed runs back in the queue first (they resume from their last
    /// checkpoint).
    #[arg(long)]
    retry_failed: bool,
    /// Train up to N runs at once, each by a worker process (sets executor.jobs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    jobs: Option<u32>,
    /// GPUs to spread the workers over, e.g. 0,1 (sets executor.devices).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    devices: Option<Vec<u32>>,
    /// Where runs execute: local (this machine) or slurm (submit job arrays and return; sets
    /// executor.kind).
    #[arg(long, value_name = "KIND", value_parser = ["local", "slurm"])]
    executor: Option<String>,
}

impl Args {
    /// `--set` and the flags that are shorthand for settings.
    fn sets(&self) -> Vec<String> {
        let mut sets = self.sets.clone();
        if let Some(n) = self.jobs {
            sets.push(format!("executor.jobs={n}"));
        }
        if let Some(devices) = &self.devices {
            let list: Vec<String> = devices.iter().map(u32::to_string).collect();
            sets.push(format!("executor.devices=[{}]", list.join(", ")));
        }
        if let Some(kind) = &self.executor {
            sets.push(format!("executor.kind={kind}"));
        }
        sets
    }
}

pub fn run(args: Args, ctx: &Context) -> Result<u8> {
    let (loaded, _, plan) = load_and_plan(&args.manifest, &args.sets())?;
    let mut store = ctx.open_store()?;
    let provenance = exec::provenance::detect(&loaded.base_dir());
    let enqueued = store.enqueue(&plan, &provenance, &plan.origins())?;
    let mut out = Lossy(std::io::stdout().lock());
    let mut new = 0;
    for e in &enqueued {
        let run = &plan.runs[e.plan_index];
        let swept: Vec<String> = run
            .swept
            .iter()
            .map(|(k, v)| format!("{k}={}", sweep::short(v)))
            .collect();
        let mark = match e.existing {
            None => {
                new += 1;
                "+new".to_string()
            }
            Some(Status::Completed) => "=done".to_string(),
            Some(other) => format!("={other}"),
        };
        writeln!(
            out,
            "{mark:<13} run-{:<5} {}  {}",
            e.run_id,
            &run.key[..10],
            swept.join(" ")
        )?;
    }
    writeln!(
        out,
        "experiment {}: {} planned, {new} newly queued",
        plan.experiment.name,
        Count::numbered("run", plan.runs.len())
    )?;
    if args.retry_failed {
        let n = store.requeue_failed(&plan.experiment.name)?;
        writeln!(out, "re-queued {}", Count::numbered("failed run", n))?;
    }
    if args.queue_only {
        return Ok(exit::OK);
    }
    out.flush()?;
    let executor = plan.executor();
    if executor.kind == ExecutorKind::Slurm {
        let arrays = exec::slurm::submit(&mut store, &plan.experiment.name, executor)?;
        let runs: usize = arrays.iter().map(|a| a.runs.len()).sum();
        for a in &arrays {
            writeln!(
                out,
                "submitted Slurm job {} (array of {}: {}), script {}",
                a.job,
                Count::numbered("task", a.runs.len()),
                a.runs
                    .iter()
                    .map(|r| format!("run-{r}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                a.script.display()
            )?;
        }
        writeln!(
            out,
            "experiment {}: {} submitted to Slurm; `xp status` follows them",
            plan.experiment.name,
            Count::numbered("run", runs)
        )?;
        return Ok(exit::OK);
    }
    let workers = crate::exec::Workers {
        jobs: executor.jobs,
        devices: &executor.devices,
    };
    let report = progress::execute(
        &mut store,
        Queue::Experiment(&plan.experiment.name),
        args.fail_fast,
        &workers,
        ctx,
    )?;
    writeln!(
        out,
        "experiment {}: {} completed, {} failed, {} interrupted{}{}",
        plan.experiment.name,
        report.completed,
        report.failed,
        report.interrupted,
        if plan.early_stop.is_some() {
            format!(", {} stopped early", report.stopped_early)
        } else {
            String::new()
        },
        if report.recovered > 0 {
            format!(
                " ({} orphaned by a dead process, resumed)",
                report.recovered
            )
        } else {
            String::new()
        }
    )?;
    Ok(code(&report))
}

/// The exit code of a queue: interrupted beats failed beats ok.
pub fn code(report: &exec::Report) -> u8 {
    if report.stopped {
        exit::INTERRUPTED
    } else if report.failed > 0 {
        exit::FAILURE
    } else {
        exit::OK
    }
}
