//! `xp run`: plan a manifest, queue its runs in the store, and execute the queue.

use std::io::Write;
use std::path::PathBuf;

use serde_json::Value;

use super::{Context, Result, exit, load_and_plan, si};
use crate::exec;
use crate::manifest::layers;
use crate::store::{Provenance, RunFilter, RunRow};
use crate::sweep::{self, Plan};
use crate::train::Progress;

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
}

/// Plain progress lines on stderr.
struct Lines {
    total: usize,
}

impl exec::Observer for Lines {
    fn run_started(&mut self, run: &RunRow, index: usize, backend: &str, adapter: &str) {
        eprintln!(
            "[{index}/{}] {} started on {backend} ({adapter})",
            self.total,
            run.name()
        );
    }

    fn progress(&mut self, run: &RunRow, p: &Progress) {
        let mut line = format!("{} step {}/{}", run.name(), p.step, p.steps);
        if let Some(l) = p.train_loss {
            line.push_str(&format!("  loss {l:.4}"));
        }
        if let Some(v) = p.val_loss {
            line.push_str(&format!("  val {v:.4}"));
        }
        if let Some(s) = p.tokens_per_s {
            line.push_str(&format!("  {} tok/s", si(s.round())));
        }
        eprintln!("{line}");
    }

    fn run_finished(&mut self, run: &RunRow, outcome: &exec::Outcome) {
        match outcome {
            exec::Outcome::Completed(s) => eprintln!(
                "{} completed: best val loss {} in {:.1} s",
                run.name(),
                s.best_val_loss
                    .map(|v| format!("{v:.4}"))
                    .unwrap_or_else(|| "—".into()),
                s.wall_s
            ),
            exec::Outcome::Failed(e) => eprintln!("{} failed: {e}", run.name()),
            exec::Outcome::Interrupted(step) => {
                eprintln!("{} interrupted at step {step}", run.name())
            }
        }
    }
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
    if args.queue_only {
        return Ok(exit::OK);
    }
    out.flush()?;
    let pending = store
        .runs(&RunFilter {
            experiment: Some(plan.experiment.name.clone()),
            status: None,
        })?
        .iter()
        .filter(|r| r.status == "queued" || r.status == "interrupted")
        .count();
    let mut observer = Lines { total: pending };
    let report = exec::execute(
        &mut store,
        &plan.experiment.name,
        &plan.runs,
        &loaded.base_dir(),
        args.fail_fast,
        &mut observer,
    )?;
    writeln!(
        out,
        "experiment {}: {} completed, {} failed, {} interrupted",
        plan.experiment.name, report.completed, report.failed, report.interrupted
    )?;
    Ok(if report.failed > 0 {
        exit::FAILURE
    } else {
        exit::OK
    })
}
