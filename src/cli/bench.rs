//! `xp bench`: measurements of xp itself. `xp bench store` fills a fresh run store through the
//! trainer's own store code and reports ingest speed and bytes per metric row.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{Context, Error, Result, duration, exit, si};
use crate::manifest::{self, profiles::Machine};
use crate::store::{self, MetricWriter, Provenance, Store, SummaryRow};
use crate::sweep;
use crate::train::{self, Metric, Progress, Recorder, Saved};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Fill a fresh store with R runs × S steps × 3 metrics and report rows/s and bytes/row.
    Store(StoreArgs),
    /// Train a model preset for a few steps and report its speed: tokens/s, step time,
    /// first-step time, peak memory, backend and adapter.
    Train(TrainArgs),
}

#[derive(Debug, clap::Args)]
struct TrainArgs {
    /// The model preset (tiny, small, medium, large, shakespeare-char).
    #[arg(long, default_value = "shakespeare-char")]
    preset: String,
    /// auto, cpu, vulkan, metal, … as `hardware.device` takes.
    #[arg(long, default_value = "auto")]
    device: String,
    /// The feed-forward unit.
    #[arg(long, default_value = "glu")]
    unit: String,
    /// Steps to train.
    #[arg(long, default_value_t = 200)]
    steps: u64,
    /// Steps left out of the median (shader compilation, autotuning, caches warming up).
    #[arg(long, default_value_t = 20)]
    warmup: u64,
    /// Sequences per step (default: 64 for shakespeare-char as in nanoGPT, else 32).
    #[arg(long)]
    batch_size: Option<u64>,
    /// Steps between the loss read-backs that time the run (each one waits for the device).
    #[arg(long, default_value_t = 10)]
    log_every: u64,
    /// Train on this text file instead of tiny Shakespeare.
    #[arg(long, value_name = "FILE")]
    data: Option<PathBuf>,
    /// Any other setting, e.g. --set model.dropout=0 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
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
        What::Train(a) => train_bench(a),
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

/// Keeps what the speed report needs: per log step, its step time and tokens/s.
#[derive(Default)]
struct Timings {
    backend: String,
    adapter: String,
    /// (step, step_ms, tokens_per_s) of each log step.
    steps: Vec<(u64, f64, f64)>,
    last_progress: Option<Instant>,
}

impl Recorder for Timings {
    fn started(&mut self, backend: &str, adapter: &str, _: &serde_json::Value) {
        self.backend = backend.into();
        self.adapter = adapter.into();
        eprintln!("training on {backend} ({adapter})");
    }

    fn metrics(&mut self, metrics: Vec<Metric>) {
        // A log step's metrics arrive together; an eval step's batch has neither figure.
        let find = |name: &str| metrics.iter().find(|m| m.name == name);
        if let (Some(ms), Some(tps)) = (find("step_ms"), find("tokens_per_s")) {
            self.steps.push((ms.step, ms.value, tps.value));
        }
    }

    fn checkpoint(&mut self, _: &Saved) -> Vec<PathBuf> {
        Vec::new()
    }

    fn progress(&mut self, p: &Progress) {
        // A line every few seconds is enough to show it is alive.
        if self
            .last_progress
            .is_none_or(|t| t.elapsed().as_secs_f64() > 5.0)
            || p.step == p.steps
        {
            self.last_progress = Some(Instant::now());
            eprintln!(
                "step {}/{}  loss {}  {} tok/s",
                p.step,
                p.steps,
                p.train_loss.map(|l| format!("{l:.4}")).unwrap_or_default(),
                p.tokens_per_s.map(|t| si(t.round())).unwrap_or_default()
            );
        }
    }
}

/// A measured value, or a dash where there is none.
fn shown<T>(value: Option<T>, format: impl FnOnce(T) -> String) -> String {
    value.map(format).unwrap_or_else(|| "—".into())
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// The process's peak resident memory in MB (Linux), else its current one.
fn peak_rss_mb() -> Option<f64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| kb / 1e3)
}

fn train_bench(a: TrainArgs) -> Result<u8> {
    if a.steps <= a.warmup {
        return Err(Error::Usage(format!(
            "--steps ({}) must be larger than --warmup ({})",
            a.steps, a.warmup
        )));
    }
    let nanogpt = a.preset == "shakespeare-char";
    let batch = a.batch_size.unwrap_or(if nanogpt { 64 } else { 32 });
    // shakespeare-char trains with nanoGPT's recipe, as experiments/shakespeare_char.toml and
    // benches/torch_reference.py do, so that the three describe the same model.
    let recipe = if nanogpt {
        "bias = false\n[train]\nlr = 1e-3\nmin_lr = 1e-4\nbeta2 = 0.99\n"
    } else {
        "[train]\n"
    };
    let text = format!(
        "[experiment]\nname = \"bench-train\"\n\
         [data]\n{data}\ntokenizer = \"char\"\n\
         [model]\npreset = {preset:?}\nffn = {{ unit = {unit:?}, alpha = 1.0 }}\n{recipe}\
         steps = {steps}\nbatch_size = {batch}\nlog_every = {log}\neval_every = {steps}\n\
         eval_batches = 1\ncheckpoint_every = 0\nwarmup_steps = {warm}\n\
         [hardware]\nprofile = \"auto\"\ndevice = {device:?}\n",
        preset = a.preset,
        unit = a.unit,
        steps = a.steps,
        log = a.log_every.max(1),
        warm = a.warmup.min(a.steps / 2),
        device = a.device,
        data = match &a.data {
            Some(path) => format!("path = {:?}", path.display().to_string()),
            None => "source = \"tinyshakespeare\"".into(),
        },
    );
    let loaded = manifest::parse_bytes(
        "xp bench train".into(),
        text.into_bytes(),
        Path::new("bench-train.toml"),
    )?;
    let (overrides, problems) =
        manifest::overrides(std::iter::empty::<(String, String)>(), &a.sets);
    if !problems.is_empty() {
        let mut d = loaded.diagnostics();
        d.extend(problems);
        return Err(manifest::Error::Invalid(d).into());
    }
    let plan =
        sweep::plan(&loaded, &overrides, &Machine::detect()).map_err(manifest::Error::Invalid)?;
    let spec = &plan.runs[0];
    let scratch = std::env::temp_dir().join(format!("xp-bench-train-{}", std::process::id()));
    let job = train::Job {
        spec,
        base_dir: PathBuf::from("."),
        checkpoint_dir: scratch.clone(),
        resume: None,
    };
    let mut timings = Timings::default();
    let started = Instant::now();
    let result = train::train(&job, &mut timings);
    let _ = std::fs::remove_dir_all(&scratch);
    let summary = result.map_err(|e| Error::Failed(format!("training failed: {e}")))?;
    let wall = started.elapsed().as_secs_f64();
    let first = timings.steps.first().map(|s| s.1 / 1e3);
    let (mut step_ms, mut steady): (Vec<f64>, Vec<f64>) = timings
        .steps
        .iter()
        .filter(|s| s.0 > a.warmup)
        .map(|s| (s.1, s.2))
        .unzip();
    let tokens = median(&mut steady);
    let mut out = std::io::stdout().lock();
    let config = &spec.config;
    writeln!(
        out,
        "model      {} ({} layers, {} heads, dim {}, block {}), unit {}, {} parameters",
        a.preset,
        config.model.layers,
        config.model.heads,
        config.model.dim,
        config.model.block_size,
        a.unit,
        si(spec.params as f64)
    )?;
    writeln!(
        out,
        "batch      {} × {} tokens = {} tokens/step, precision {}",
        config.train.batch_size,
        config.model.block_size,
        config.train.batch_size * config.model.block_size,
        config.hardware.precision
    )?;
    writeln!(out, "device     {} ({})", timings.backend, timings.adapter)?;
    writeln!(out, "first step {}", shown(first, |s| format!("{s:.2} s")))?;
    writeln!(
        out,
        "tokens/s   {} (median over steps {}–{}, read back every {} steps)",
        shown(tokens, |t| format!("{t:.0}")),
        a.warmup + 1,
        a.steps,
        a.log_every.max(1)
    )?;
    writeln!(
        out,
        "step time  {}",
        shown(median(&mut step_ms), |ms| format!("{ms:.2} ms"))
    )?;
    writeln!(
        out,
        "peak RSS   {} (host memory; burn 0.22 exposes no device memory figure)",
        shown(peak_rss_mb(), |mb| format!("{mb:.0} MB"))
    )?;
    writeln!(
        out,
        "loss       {} after {} steps; wall {}",
        shown(summary.final_train_loss, |l| format!("{l:.4}")),
        a.steps,
        duration(wall)
    )?;
    Ok(exit::OK)
}
