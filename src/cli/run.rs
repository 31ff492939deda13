//! `xp run`: plan a manifest, queue its runs in the store, and execute the queue.

use std::io::Write;
use std::path::PathBuf;

use serde_json::Value;

use super::{Context, Result, exit, load_and_plan};
use crate::manifest::layers;
use crate::store::Provenance;
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
    Ok(exit::OK)
}
