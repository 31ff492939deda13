//! `xp bench train`: trains one configuration briefly outside the store and reports its
//! speed: tokens/s, step time, first-step time, peak memory, backend and adapter.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use super::super::output::{duration, or_dash, say, si};
use super::super::{Error, Result, exit};
use crate::train::{self, Metric, Placement, Progress, Recorder, Saved};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model preset (tiny, small, medium, large, shakespeare-char).
    #[arg(long, default_value = "shakespeare-char")]
    preset: String,
    /// auto, cpu, vulkan, metal, … as `hardware.device` takes.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Which of this machine's GPUs of that kind (0, 1, …), as `xp worker --device` takes.
    #[arg(long)]
    gpu: Option<u32>,
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

/// Keeps what the speed report needs: per log step, its step time and tokens/s.
#[derive(Default)]
struct Timings {
    backend: String,
    adapter: String,
    attention: String,
    /// (step, step_ms, tokens_per_s) of each log step.
    steps: Vec<(u64, f64, f64)>,
    /// The device allocator's peak, in MB, as last logged.
    device_peak_mb: Option<f64>,
    last_progress: Option<Instant>,
}

impl Recorder for Timings {
    fn started(&mut self, placement: &Placement) -> std::result::Result<(), String> {
        self.backend = placement.backend.into();
        self.adapter = placement.adapter.into();
        self.attention = placement.attention.into();
        say(&format!(
            "training on {} ({}), attention {}",
            placement.backend, placement.adapter, placement.attention
        ));
        Ok(())
    }

    fn metrics(&mut self, metrics: Vec<Metric>) {
        // A log step's metrics arrive together; an eval step's batch has neither figure.
        let find = |name: &str| metrics.iter().find(|m| m.name == name);
        if let (Some(ms), Some(tps)) = (find("step_ms"), find("tokens_per_s")) {
            self.steps.push((ms.step, ms.value, tps.value));
        }
        if let Some(peak) = find("device_peak_mb") {
            self.device_peak_mb = Some(peak.value);
        }
    }

    fn checkpoint(&mut self, _: &Saved) -> std::result::Result<(), String> {
        Ok(())
    }

    fn progress(&mut self, p: &Progress) {
        // A line every few seconds is enough to show it is alive.
        if self
            .last_progress
            .is_none_or(|t| t.elapsed().as_secs_f64() > 5.0)
            || p.step == p.steps
        {
            self.last_progress = Some(Instant::now());
            say(&format!(
                "step {}/{}  loss {}  {} tok/s",
                p.step,
                p.steps,
                p.train_loss.map(|l| format!("{l:.4}")).unwrap_or_default(),
                p.tokens_per_s.map(|t| si(t.round())).unwrap_or_default()
            ));
        }
    }
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

/// The benchmark's one run. shakespeare-char trains with nanoGPT's recipe, as
/// experiments/shakespeare_char.toml and benches/torch_reference.py do, so that the three
/// describe the same model.
fn manifest(a: &Args, batch: u64, nanogpt: bool) -> serde_json::Value {
    let data = match &a.data {
        Some(path) => {
            serde_json::json!({ "path": path.display().to_string(), "tokenizer": "char" })
        }
        None => serde_json::json!({ "source": "tinyshakespeare", "tokenizer": "char" }),
    };
    let mut m = serde_json::json!({
        "experiment": { "name": "bench-train" },
        "data": data,
        "model": { "preset": a.preset, "ffn": { "unit": a.unit, "alpha": 1.0 } },
        "train": {
            "steps": a.steps, "batch_size": batch, "log_every": a.log_every.max(1),
            "eval_every": a.steps, "eval_batches": 1, "checkpoint_every": 0,
            "warmup_steps": a.warmup.min(a.steps / 2),
        },
        "hardware": { "profile": "auto", "device": a.device },
    });
    if nanogpt {
        m["model"]["bias"] = false.into();
        m["train"]["lr"] = 1e-3.into();
        m["train"]["min_lr"] = 1e-4.into();
        m["train"]["beta2"] = 0.99.into();
    }
    m
}

pub fn run(a: Args) -> Result<u8> {
    if a.steps <= a.warmup {
        return Err(Error::Usage(format!(
            "--steps ({}) must be larger than --warmup ({})",
            a.steps, a.warmup
        )));
    }
    let nanogpt = a.preset == "shakespeare-char";
    let batch = a.batch_size.unwrap_or(if nanogpt { 64 } else { 32 });
    let plan = super::scratch::plan("xp bench train", &manifest(&a, batch, nanogpt), &a.sets)?;
    let spec = &plan.runs[0];
    let job = super::scratch::scratch_job("xp-bench-train", spec, a.gpu);
    let mut timings = Timings::default();
    let started = Instant::now();
    let result = train::train(&job, &mut timings);
    let _ = std::fs::remove_dir_all(&job.checkpoint_dir);
    let trained = result.map_err(|e| Error::Failed(format!("training failed: {e}")))?;
    let summary = trained.summary();
    let wall = started.elapsed().as_secs_f64();
    let first = timings.steps.first().map(|s| s.1 / 1e3);
    let (mut step_ms, mut steady): (Vec<f64>, Vec<f64>) = timings
        .steps
        .iter()
        .filter(|s| s.0 > a.warmup)
        .map(|s| (s.1, s.2))
        .unzip();
    let tokens = crate::forecast::median(&mut steady);
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
    writeln!(out, "attention  {}", timings.attention)?;
    writeln!(
        out,
        "first step {}",
        or_dash(first, |s| format!("{s:.2} s"))
    )?;
    writeln!(
        out,
        "tokens/s   {} (median over steps {}–{}, read back every {} steps)",
        or_dash(tokens, |t| format!("{t:.0}")),
        a.warmup + 1,
        a.steps,
        a.log_every.max(1)
    )?;
    writeln!(
        out,
        "step time  {}",
        or_dash(crate::forecast::median(&mut step_ms), |ms| format!(
            "{ms:.2} ms"
        ))
    )?;
    writeln!(
        out,
        "peak RSS   {} (host memory)",
        or_dash(peak_rss_mb(), |mb| format!("{mb:.0} MB"))
    )?;
    writeln!(
        out,
        "peak device memory {} (the allocator's pages at their peak, as burn reports them)",
        or_dash(timings.device_peak_mb, |mb| format!("{mb:.0} MB"))
    )?;
    writeln!(
        out,
        "loss       {} after {} steps; wall {}",
        or_dash(summary.final_train_loss, |l| format!("{l:.4}")),
        a.steps,
        duration(wall)
    )?;
    Ok(exit::OK)
}
