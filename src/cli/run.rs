//! `xp run`: plan a manifest, queue its runs in the store, and execute the queue.

use std::io::Write;
use std::path::PathBuf;

use serde_json::Value;

use super::{Context, Result, exit, load_and_plan, progress};
use crate::exec::{self, Queue};
use crate::manifest::layers;
use crate::store::{Provenance, RunFilter, Store};
use crate::sweep::{self, Plan};

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
}

/// Per run, which layer gave each setting (swept settings say so).
fn origins(plan: &Plan) -> Vec<Value> {
    let mut per_set: Vec<Option<std::collections::BTreeMap<String, String>>> =
        vec![None; plan.layer_sets.len()];
    plan.runs
        .iter()
        .map(|run| {
            let base = per_set[run.layers].get_or_insert_with(|| {
                let resolved = serde_json::to_value(&run.config).expect("config serializes");
                layers::origins(&plan.layer_sets[run.layers], &resolved)
            });
            let mut map = base.clone();
            for (key, _) in &run.swept {
                for (k, v) in map.iter_mut() {
                    if k == key || k.starts_with(&format!("{key}.")) {
                        *v = "sweep".into();
                    }
                }
            }
            serde_json::to_value(map).expect("serializes")
        })
        .collect()
}

pub fn run(args: Args, ctx: &Context) -> Result<u8> {
    let (loaded, _, plan) = load_and_plan(&args.manifest, &args.sets)?;
    let mut store = ctx.open_store()?;
    let provenance = Provenance::detect(&loaded.base_dir());
    let enqueued = store.enqueue(&plan, &provenance, &origins(&plan))?;
    let mut out = std::io::stdout().lock();
    let mut new = 0;
    for e in &enqueued {
        let run = &plan.runs[e.plan_index];
        let swept: Vec<String> = run
            .swept
            .iter()
            .map(|(k, v)| format!("{k}={}", sweep::short(v)))
            .collect();
        let mark = match e.outcome.as_str() {
            "new" => {
                new += 1;
                "+new".to_string()
            }
            "completed" => "=done".to_string(),
            other => format!("={other}"),
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
        "experiment {}: {} run{} planned, {new} newly queued",
        plan.experiment.name,
        plan.runs.len(),
        if plan.runs.len() == 1 { "" } else { "s" }
    )?;
    if args.retry_failed {
        let n = store.requeue_failed(&plan.experiment.name)?;
        writeln!(
            out,
            "re-queued {n} failed run{}",
            if n == 1 { "" } else { "s" }
        )?;
    }
    if args.queue_only {
        return Ok(exit::OK);
    }
    out.flush()?;
    let (report, recovered) = execute(
        &mut store,
        Queue::Experiment(&plan.experiment.name),
        &plan.runs,
        &loaded.base_dir(),
        args.fail_fast,
        ctx,
    )?;
    writeln!(
        out,
        "experiment {}: {} completed, {} failed, {} interrupted{}",
        plan.experiment.name,
        report.completed,
        report.failed,
        report.interrupted,
        if recovered > 0 {
            format!(" ({recovered} orphaned by a dead process, resumed)")
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

/// Recovers orphaned runs, then executes a queue with progress on stderr and Ctrl-C handling;
/// returns what the queue did and how many orphaned runs were put back in it.
pub fn execute(
    store: &mut Store,
    queue: Queue<'_>,
    specs: &[sweep::RunSpec],
    base_dir: &std::path::Path,
    fail_fast: bool,
    ctx: &Context,
) -> Result<(exec::Report, usize)> {
    let recovered = exec::recover_stale(store)?;
    for (run, reason) in &recovered {
        eprintln!(
            "{} was left running: {reason}; it resumes from its last checkpoint",
            run.name()
        );
    }
    let pending: Vec<_> = match queue {
        Queue::Experiment(name) => store
            .runs(&RunFilter {
                experiment: Some(name.to_string()),
                ..RunFilter::default()
            })?
            .into_iter()
            .filter(|r| matches!(r.status.as_str(), "queued" | "interrupted"))
            .collect(),
        Queue::Run(id) => vec![store.run(&id.to_string())?],
    };
    let steps: u64 = pending
        .iter()
        .map(|r| (r.steps_total - r.step).max(0) as u64)
        .sum();
    let stop = progress::interrupt_flag(ctx.db.clone())?;
    let mut observer = progress::observer(pending.len(), steps);
    let options = exec::Options {
        fail_fast,
        stop: &stop,
    };
    let report = exec::execute(store, queue, specs, base_dir, &options, observer.as_mut())?;
    Ok((report, recovered.len()))
}
