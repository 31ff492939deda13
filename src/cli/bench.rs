//! `xp bench`: measurements of xp itself. `xp bench store` fills a fresh run store through the
//! trainer's own store code and reports ingest speed and bytes per metric row.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{Context, Error, Result, exit, si};
use crate::manifest::{self, profiles::Machine};
use crate::store::{self, MetricWriter, Provenance, Store, SummaryRow};
use crate::sweep;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Fill a fresh store with R runs × S steps × 3 metrics and report rows/s and bytes/row.
    Store(StoreArgs),
}

#[derive(Debug, clap::Args)]
struct StoreArgs {
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

pub fn run(args: Args, _ctx: &Context) -> Result<u8> {
    match args.what {
        What::Store(a) => store_bench(a),
    }
}

/// The units the benchmark's runs cycle through.
const UNITS: [&str; 8] = [
    "glu", "mlp", "gtu", "swish", "reglu", "gelu", "mish", "silu",
];

/// The run plan of the benchmark: the tiny preset, each run a seed and a unit in turn.
fn plan(runs: usize, steps: u64) -> Result<sweep::Plan> {
    let units: Vec<String> = (0..runs)
        .map(|i| format!("\"{}\"", UNITS[i % UNITS.len()]))
        .collect();
    let text = format!(
        "[experiment]\nname = \"bench-store\"\ndescription = \"xp bench store\"\n\
         [model]\npreset = \"tiny\"\n[train]\nsteps = {steps}\nlog_every = 1\neval_every = 1\n\
         [hardware]\nprofile = \"cpu\"\n\
         [sweep.zip]\n\"train.seed\" = {{ range = [0, {runs}, 1] }}\n\"model.ffn.unit\" = [{}]\n",
        units.join(", ")
    );
    let loaded = manifest::parse_bytes(
        "bench-store.toml".into(),
        text.into_bytes(),
        Path::new("bench-store.toml"),
    )?;
    Ok(sweep::plan(&loaded, &[], &Machine::detect()).map_err(manifest::Error::Invalid)?)
}

fn store_bench(a: StoreArgs) -> Result<u8> {
    if a.out.exists() {
        return Err(Error::Usage(format!(
            "{} exists; xp bench store only creates a fresh store (remove it or pick another --out)",
            a.out.display()
        )));
    }
    if a.runs == 0 || a.steps == 0 {
        return Err(Error::Usage("--runs and --steps must be at least 1".into()));
    }
    let plan = plan(a.runs, a.steps)?;
    let mut store = Store::open(&a.out)?;
    store.enqueue(&plan, &Provenance::detect(Path::new(".")), &[])?;
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
    let mut ingest = std::time::Duration::ZERO;
    let host = crate::exec::host();
    let mut index = 0;
    while let Some(run) = store.claim_next("bench-store", host.as_deref())? {
        index += 1;
        // Curves shaped like training: a decaying loss, its floor and pace set by the unit,
        // with a little seeded wobble.
        let seed = run.id as f64;
        let unit = ((run.id - 1) as usize % UNITS.len()) as f64;
        let loss = |step: u64, offset: f64| {
            let t = step as f64 / a.steps as f64;
            1.4 + 0.04 * unit
                + offset
                + 2.8 * (-(4.0 + unit) * t).exp()
                + 0.02 * ((step as f64 + seed) * 0.7).sin()
        };
        let started = Instant::now();
        let writer = MetricWriter::open(store.path())?;
        for step in 1..=a.steps {
            let t = step as f64 / a.steps as f64;
            writer.send(
                run.id,
                vec![
                    (step, "train_loss".to_string(), loss(step, 0.0), step * 12),
                    (step, "val_loss".to_string(), loss(step, 0.05), step * 12),
                    (
                        step,
                        "lr".to_string(),
                        1e-3 * (0.1 + 0.9 * (1.0 - t)),
                        step * 12,
                    ),
                ],
            );
        }
        writer.close()?;
        ingest += started.elapsed();
        // The last run stays running halfway, so that `xp status` has one to report.
        if index == a.runs {
            store.heartbeat(run.id, a.steps / 2)?;
            store.truncate_metrics(run.id, (a.steps / 2) as i64)?;
            break;
        }
        store.set_summary(
            run.id,
            &SummaryRow {
                best_val_loss: Some(loss(a.steps, 0.05)),
                final_val_loss: Some(loss(a.steps, 0.05)),
                final_train_loss: Some(loss(a.steps, 0.0)),
                median_tokens_per_s: Some(10_000.0 + seed),
                wall_s: Some(a.steps as f64 * 0.012),
                params: Some(100_000),
            },
        )?;
        store.heartbeat(run.id, a.steps)?;
        store.finish(run.id, "completed", None)?;
    }
    let written = rows - (a.steps - a.steps / 2) * 3;
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
