//! `xp bench store`: fills a fresh run store through the trainer's own store code (the queue,
//! one `MetricWriter` per run) and reports ingest speed and bytes per metric row.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use super::super::output::si;
use super::super::{Error, Result, exit};
use crate::exec::provenance;
use crate::store::{self, MetricRow, MetricWriter, Outcome, Store};
use crate::summary::Summary;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runs to record.
    #[arg(long, default_value_t = 1000)]
    runs: usize,
    /// Steps per run (each step records train_loss, val_loss and lr).
    #[arg(long, default_value_t = 10_000)]
    steps: u64,
    /// The store to create (it must not exist); time `xp --db FILE status` against it after.
    #[arg(long, value_name = "FILE", default_value = "bench-store.db")]
    out: PathBuf,
}

/// The units the benchmark's runs cycle through.
const UNITS: [&str; 8] = [
    "glu", "mlp", "gtu", "swish", "reglu", "gelu", "mish", "silu",
];

/// The benchmark's experiment: the tiny preset, each run a seed and a unit in turn. Typed
/// where order matters: zip axes are taken in the order the manifest lists them.
#[derive(serde::Serialize)]
struct Manifest {
    experiment: serde_json::Value,
    model: serde_json::Value,
    train: serde_json::Value,
    hardware: serde_json::Value,
    sweep: Sweep,
}

#[derive(serde::Serialize)]
struct Sweep {
    zip: Zip,
}

/// Both axes as plain lists: a table value (such as range sugar) would be written after them
/// as a table of its own, and so come second.
#[derive(serde::Serialize)]
struct Zip {
    #[serde(rename = "train.seed")]
    seed: Vec<usize>,
    #[serde(rename = "model.ffn.unit")]
    unit: Vec<&'static str>,
}

fn manifest(runs: usize, steps: u64) -> Manifest {
    Manifest {
        experiment: serde_json::json!({ "name": "bench-store", "description": "xp bench store" }),
        model: serde_json::json!({ "preset": "tiny" }),
        train: serde_json::json!({ "steps": steps, "log_every": 1, "eval_every": 1 }),
        hardware: serde_json::json!({ "profile": "cpu" }),
        sweep: Sweep {
            zip: Zip {
                seed: (0..runs).collect(),
                unit: (0..runs).map(|i| UNITS[i % UNITS.len()]).collect(),
            },
        },
    }
}

pub fn run(a: Args) -> Result<u8> {
    if a.out.exists() {
        return Err(Error::Usage(format!(
            "{} exists; xp bench store only creates a fresh store (remove it or pick another --out)",
            a.out.display()
        )));
    }
    if a.runs == 0 || a.steps == 0 {
        return Err(Error::Usage("--runs and --steps must be at least 1".into()));
    }
    let mut store = Store::open(&a.out)?;
    let rows = a.runs as u64 * a.steps * 3;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "filling {} with {} runs × {} steps × 3 metrics = {} rows",
        a.out.display(),
        a.runs,
        a.steps,
        si(rows as f64)
    )?;
    let (written, ingest) = fill(&mut store, "bench-store", a.runs, a.steps, true)?;
    let size = file_size(&store)?;
    let metrics_bytes = table_bytes(&store, "metrics");
    let rate = written as f64 / ingest.as_secs_f64();
    writeln!(
        out,
        "ingest: {} rows in {:.2} s = {} rows/s (MetricWriter, one per run as in training)",
        written,
        ingest.as_secs_f64(),
        si(rate.round())
    )?;
    writeln!(
        out,
        "size: {} bytes = {:.1} bytes/row for the whole file{}",
        size,
        size as f64 / written as f64,
        metrics_bytes
            .map(|b| format!(
                ", {:.1} bytes/row for the metrics table alone",
                b as f64 / written as f64
            ))
            .unwrap_or_default()
    )?;
    writeln!(
        out,
        "next: xp --db {} status; xp --db {} compare run-1 run-2",
        a.out.display(),
        a.out.display()
    )?;
    Ok(exit::OK)
}

/// Queues an experiment `name` of `runs` runs and records `steps` steps of three metrics for
/// each through the trainer's own store code. With `last_running`, the last run stays running
/// halfway (so that `xp status` has one to report). Returns the rows written and the time the
/// writers took.
pub(super) fn fill(
    store: &mut Store,
    name: &str,
    runs: usize,
    steps: u64,
    last_running: bool,
) -> Result<(u64, std::time::Duration)> {
    let mut m = manifest(runs, steps);
    m.experiment["name"] = serde_json::json!(name);
    let plan = super::scratch::plan(&format!("{name}.toml"), &m, &[])?;
    let queued = store.enqueue(
        &plan,
        &provenance::detect(std::path::Path::new(".")),
        &plan.origins(),
    )?;
    let first = queued.iter().map(|q| q.run_id).min().unwrap_or(1);
    let mut ingest = std::time::Duration::ZERO;
    let mut written = 0;
    let me = provenance::this_process();
    let mut index = 0;
    let failed = |e| Error::Failed(format!("the metric writer failed: {e}"));
    while let Some(run) = store.claim_next(name, &me)? {
        index += 1;
        // Curves shaped like training: a decaying loss, its floor and pace set by the unit,
        // with a little seeded wobble.
        let seed = run.id as f64;
        let unit = ((run.id - first) as usize % UNITS.len()) as f64;
        let loss = |step: u64, offset: f64| {
            let t = step as f64 / steps as f64;
            1.4 + 0.04 * unit
                + offset
                + 2.8 * (-(4.0 + unit) * t).exp()
                + 0.02 * ((step as f64 + seed) * 0.7).sin()
        };
        let last = last_running && index == runs;
        let started = Instant::now();
        let writer = MetricWriter::open(store.path(), run.id, &me)?;
        for step in 1..=steps {
            let t = step as f64 / steps as f64;
            let row = |name: &str, value: f64| MetricRow {
                step,
                name: name.into(),
                value,
                t_ms: step * 12,
            };
            writer.send(vec![
                row("train_loss", loss(step, 0.0)),
                row("val_loss", loss(step, 0.05)),
                row("lr", 1e-3 * (0.1 + 0.9 * (1.0 - t))),
            ]);
        }
        writer.progress(if last { steps / 2 } else { steps });
        writer.close().map_err(failed)?;
        ingest += started.elapsed();
        if last {
            store.truncate_metrics(run.id, (steps / 2) as i64)?;
            written += steps / 2 * 3;
            break;
        }
        written += steps * 3;
        let summary = Summary {
            best_val_loss: Some(loss(steps, 0.05)),
            final_val_loss: Some(loss(steps, 0.05)),
            final_train_loss: Some(loss(steps, 0.0)),
            median_tokens_per_s: Some(10_000.0 + seed),
            wall_s: Some(steps as f64 * 0.012),
            params: Some(100_000),
        };
        store.finish(run.id, &me, &Outcome::Completed { summary })?;
    }
    Ok((written, ingest))
}

/// The store's size once its write-ahead log is folded in.
fn file_size(store: &Store) -> std::result::Result<u64, store::Error> {
    store
        .connection()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(std::fs::metadata(store.path())
        .map(|m| m.len())
        .unwrap_or(0))
}

/// Bytes of a table's pages, where SQLite was built with the dbstat table.
fn table_bytes(store: &Store, table: &str) -> Option<i64> {
    store
        .connection()
        .query_row(
            "SELECT sum(pgsize) FROM dbstat WHERE name = ?1",
            [table],
            |r| r.get(0),
        )
        .ok()
}
