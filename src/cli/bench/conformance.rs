//! `xp bench conformance`: xp's model on a GPU against burn's CPU backend — logits, loss and
//! gradients at every sequence length of shakespeare-char and at odd shapes of the other
//! presets, each kernel of the attention on its own, and greedy text from a trained
//! checkpoint — with the tolerances of `train::conformance::tolerance`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use super::super::output::{duration, say};
use super::super::{Error, Result, exit};
use crate::manifest::{DeviceChoice, ModelConfig, Precision, Preset, Unit, presets};
use crate::train::conformance::{self, Case, Devices, Kind, Pair};
use crate::train::{self, Metric, Placement, Progress, Recorder, Saved};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The GPU: vulkan or metal (auto: the first hardware GPU found).
    #[arg(long, default_value = "auto")]
    device: String,
    /// Which of this machine's GPUs of that kind.
    #[arg(long)]
    gpu: Option<u32>,
    /// Precisions of the GPU's products (the CPU reference is always f32); default f32 and,
    /// where the device has it, f16.
    #[arg(long, value_delimiter = ',')]
    precision: Vec<String>,
    /// The model checked at every sequence length and with every feed-forward unit; the other
    /// presets are checked at odd shapes.
    #[arg(long, default_value = "shakespeare-char")]
    preset: String,
    /// A few lengths of that model only (no other presets, no greedy sample): for software
    /// adapters, where every new shape takes seconds.
    #[arg(long)]
    quick: bool,
    /// Check these sequence lengths of the main model instead (comma-separated).
    #[arg(long, value_delimiter = ',')]
    lengths: Vec<usize>,
    /// Leave out the per-unit forwards and gradients.
    #[arg(long)]
    skip_units: bool,
    /// Steps of training (on the GPU) before the greedy-sample check; 0 leaves it out.
    #[arg(long, default_value_t = 300)]
    train_steps: u64,
    /// Tokens of the greedy sample.
    #[arg(long, default_value_t = 400)]
    sample_tokens: usize,
    /// Write the summary table as Markdown to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Write every case as CSV to this file, as it is measured.
    #[arg(long, value_name = "FILE")]
    cases: Option<PathBuf>,
}

const SEED: u64 = 20_261_130;

fn preset_config(preset: Preset, layers: Option<u32>, unit: Unit) -> Result<ModelConfig> {
    let layer = presets::layer(preset);
    let mut config: ModelConfig = serde_json::from_value(layer["model"].clone())
        .map_err(|e| Error::Failed(format!("preset {preset:?}: {e}")))?;
    if let Some(l) = layers {
        config.layers = l;
    }
    config.ffn.unit = unit;
    config.ffn.alpha = crate::manifest::Alpha::Fixed(1.0);
    // nanoGPT's shakespeare-char recipe, as `xp bench train` and the experiments use it.
    config.bias = preset != Preset::ShakespeareChar;
    Ok(config)
}

/// Lengths around the multiples of 8 … 128 (and the block's end), at most `block`.
fn odd_lengths(block: usize) -> Vec<usize> {
    let mut out: Vec<usize> = [8usize, 16, 32, 64, 128]
        .iter()
        .flat_map(|m| [m - 1, *m, m + 1])
        .chain([block - 1, block])
        .filter(|&l| l >= 1 && l <= block)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

struct Sink {
    cases: Vec<Case>,
    csv: Option<std::fs::File>,
    started: Instant,
    last_say: Instant,
}

impl Sink {
    fn push(&mut self, case: Case) -> Result<()> {
        if let Some(f) = &mut self.csv {
            writeln!(
                f,
                "{},\"{}\",{},{},{},{},{:e},{:e},{},\"{}\"",
                case.kind,
                case.model,
                case.unit,
                case.precision,
                case.batch,
                case.len,
                case.error,
                case.tolerance,
                if case.passed() { "pass" } else { "FAIL" },
                case.note.replace('"', "'")
            )?;
        }
        if !case.passed() || self.last_say.elapsed().as_secs_f64() > 10.0 {
            self.last_say = Instant::now();
            let c = &case;
            say(&format!(
                "[{}] {} {} {} {} {}×{}: error {:.2e} (tolerance {:.0e}) {}",
                duration(self.started.elapsed().as_secs_f64()),
                c.kind,
                c.model,
                c.unit,
                c.precision,
                c.batch,
                c.len,
                c.error,
                c.tolerance,
                if c.passed() { "" } else { "FAIL" }
            ));
        }
        self.cases.push(case);
        Ok(())
    }
}

/// Trains nothing but records nothing either: the sample check only needs the checkpoint.
struct Quiet;

impl Recorder for Quiet {
    fn started(&mut self, _: &Placement) -> std::result::Result<(), String> {
        Ok(())
    }
    fn metrics(&mut self, _: Vec<Metric>) {}
    fn checkpoint(&mut self, _: &Saved) -> std::result::Result<(), String> {
        Ok(())
    }
    fn progress(&mut self, _: &Progress) {}
}

pub fn run(a: Args) -> Result<u8> {
    let device = match a.device.as_str() {
        "auto" => DeviceChoice::Auto,
        "vulkan" => DeviceChoice::Vulkan,
        "metal" => DeviceChoice::Metal,
        other => {
            return Err(Error::Usage(format!(
                "--device takes auto, vulkan or metal (the GPU to check against the CPU), not `{other}`"
            )));
        }
    };
    let mut precisions = Vec::new();
    for p in &a.precision {
        precisions.push(match p.as_str() {
            "f32" => Precision::F32,
            "f16" => Precision::F16,
            "bf16" => Precision::Bf16,
            other => {
                return Err(Error::Usage(format!(
                    "--precision takes f32, f16 or bf16, not `{other}`"
                )));
            }
        });
    }
    // The first precision chooses the device's shader compiler for the whole process (f32:
    // WGSL, f16/bf16: SPIR-V where the adapter has it); check each in a process of its own to
    // see each compiler.
    let first = precisions.first().copied().unwrap_or(Precision::F32);
    let devices =
        conformance::devices(device, a.gpu, first).map_err(|e| Error::Failed(e.to_string()))?;
    if precisions.is_empty() {
        precisions.push(Precision::F32);
        if devices.gpu.supports_dtype(burn::tensor::FloatDType::F16) {
            precisions.push(Precision::F16);
        }
    }
    say(&format!(
        "checking {} ({}) against the CPU in {}",
        devices.backend,
        devices.adapter,
        precisions
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let csv = match &a.cases {
        Some(path) => {
            let mut f = std::fs::File::create(path)
                .map_err(|e| Error::Failed(format!("{}: {e}", path.display())))?;
            writeln!(
                f,
                "check,model,unit,precision,batch,length,error,tolerance,result,note"
            )?;
            Some(f)
        }
        None => None,
    };
    let mut sink = Sink {
        cases: Vec::new(),
        csv,
        started: Instant::now(),
        last_say: Instant::now(),
    };
    // First, so that a run cut short still has the end-to-end check.
    let mut sample_text = None;
    if a.train_steps > 0 && !a.quick && first != Precision::F32 {
        say(
            "greedy-sample check left out: `xp sample` runs in f32, so it is checked with --precision f32",
        );
    }
    if a.train_steps > 0 && !a.quick && first == Precision::F32 {
        let (case, text) = sample_check(&a, &devices)?;
        sink.push(case)?;
        sample_text = Some(text);
    }
    let main: Preset = serde_json::from_value(serde_json::Value::String(a.preset.clone()))
        .map_err(|_| {
            Error::Usage(format!(
                "--preset takes tiny, small, medium, large or shakespeare-char, not `{}`",
                a.preset
            ))
        })?;
    let label = preset_label(main);
    let vocab = 65;
    let main_glu = preset_config(main, None, Unit::Glu)?;
    let block = main_glu.block_size as usize;
    // Every length a sampler visits; a short list for software adapters.
    let every: Vec<usize> = if !a.lengths.is_empty() {
        a.lengths
            .iter()
            .copied()
            .filter(|&l| l >= 1 && l <= block)
            .collect()
    } else if a.quick {
        [
            1, 2, 7, 8, 9, 63, 64, 65, 127, 128, 129, 170, 171, 172, 255, 256,
        ]
        .into_iter()
        .filter(|&l| l <= block)
        .collect()
    } else {
        (1..=block).collect()
    };
    let mut sparse: Vec<usize> = [1usize, 64, 129, 170, 171, 256]
        .into_iter()
        .map(|l| l.min(block))
        .collect();
    sparse.dedup();
    for &precision in &precisions {
        let pair = Pair::new(&devices, label, &main_glu, vocab, precision, SEED);
        for &len in &every {
            for case in conformance::ops(&devices, &main_glu, vocab, precision, 1, len, SEED) {
                sink.push(case)?;
            }
            for case in pair.forward(1, len, SEED) {
                sink.push(case)?;
            }
        }
        for batch in [3, 7] {
            for len in [129, 171, 256] {
                let len = len.min(block);
                for case in
                    conformance::ops(&devices, &main_glu, vocab, precision, batch, len, SEED)
                {
                    sink.push(case)?;
                }
                for case in pair.forward(batch, len, SEED) {
                    sink.push(case)?;
                }
            }
        }
        sink.push(pair.gradients(3, 171.min(block), SEED))?;
        sink.push(pair.gradients(7, block, SEED))?;
        drop(pair);
        for unit in Unit::ALL.into_iter().filter(|_| !a.skip_units) {
            let config = preset_config(main, None, unit)?;
            let pair = Pair::new(&devices, label, &config, vocab, precision, SEED);
            for &len in &sparse {
                for case in pair.forward(1, len, SEED) {
                    sink.push(case)?;
                }
            }
            sink.push(pair.gradients(3, 65.min(block), SEED))?;
        }
        let others: Vec<Preset> = if a.quick {
            Vec::new()
        } else {
            [
                Preset::Tiny,
                Preset::Small,
                Preset::Medium,
                Preset::Large,
                Preset::ShakespeareChar,
            ]
            .into_iter()
            .filter(|&p| p != main)
            .collect()
        };
        for preset in others {
            // Two blocks are enough: every block runs the same kernels on the same shapes.
            let config = preset_config(preset, Some(2), Unit::Glu)?;
            let block = config.block_size as usize;
            let label = format!("{} (2 layers)", preset_label(preset));
            let pair = Pair::new(&devices, &label, &config, vocab, precision, SEED);
            for batch in [1, 3, 7] {
                for len in odd_lengths(block) {
                    // Seven long sequences of the large model take the CPU minutes.
                    if batch == 7 && len > 129 {
                        continue;
                    }
                    for case in pair.forward(batch, len, SEED) {
                        sink.push(case)?;
                    }
                }
            }
            sink.push(pair.gradients(3, block.min(129), SEED))?;
            sink.push(pair.gradients(1, block, SEED))?;
        }
    }
    let wall = sink.started.elapsed().as_secs_f64();
    let table = summary(&sink.cases, &devices, wall);
    let mut out = std::io::stdout().lock();
    write!(out, "{table}")?;
    if let Some(text) = sample_text {
        writeln!(out, "\nGPU's greedy sample:\n{text}")?;
    }
    if let Some(path) = &a.out {
        std::fs::write(path, &table)
            .map_err(|e| Error::Failed(format!("{}: {e}", path.display())))?;
    }
    let failed = sink.cases.iter().filter(|c| !c.passed()).count();
    Ok(if failed == 0 { exit::OK } else { exit::FAILURE })
}

fn preset_label(p: Preset) -> &'static str {
    match p {
        Preset::Tiny => "tiny",
        Preset::Small => "small",
        Preset::Medium => "medium",
        Preset::Large => "large",
        Preset::ShakespeareChar => "shakespeare-char",
    }
}

/// Trains shakespeare-char briefly on the GPU, then samples greedily from its checkpoint on
/// both devices.
fn sample_check(a: &Args, devices: &Devices) -> Result<(Case, String)> {
    let gpu = if devices.backend.contains("metal") {
        "metal"
    } else {
        "vulkan"
    };
    let manifest = serde_json::json!({
        "experiment": { "name": "conformance" },
        "data": { "source": "tinyshakespeare", "tokenizer": "char" },
        "model": { "preset": "shakespeare-char", "bias": false, "ffn": { "unit": "glu", "alpha": 1.0 } },
        "train": {
            "steps": a.train_steps, "batch_size": 64, "log_every": a.train_steps,
            "eval_every": a.train_steps, "eval_batches": 1, "checkpoint_every": 0,
            "warmup_steps": a.train_steps / 10, "lr": 1e-3, "min_lr": 1e-4, "beta2": 0.99,
        },
        "hardware": { "profile": "auto", "device": gpu },
    });
    let plan = super::scratch::plan("xp bench conformance", &manifest, &[])?;
    let spec = &plan.runs[0];
    let job = super::scratch::scratch_job("xp-bench-conformance", spec, a.gpu);
    let scratch = job.checkpoint_dir.clone();
    say(&format!(
        "training shakespeare-char for {} steps on the GPU for the sample check",
        a.train_steps
    ));
    let trained = train::train(&job, &mut Quiet);
    let result = trained
        .map_err(|e| Error::Failed(format!("training for the sample check failed: {e}")))
        .and_then(|_| {
            let dir = scratch.join(format!("step-{:07}", a.train_steps));
            let mut config = spec.config.clone();
            config.model.dropout = 0.0;
            conformance::greedy_sample(
                devices,
                &config,
                &dir,
                "\n",
                a.sample_tokens,
                "shakespeare-char (trained)",
            )
            .map_err(|e| Error::Failed(e.to_string()))
        });
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// Folds the cases into one row per check, model, unit, precision and batch: the lengths
/// covered, the worst error, and the lengths that failed.
fn summary(cases: &[Case], devices: &Devices, wall: f64) -> String {
    type Key = (Kind, String, String, String, usize);
    let mut groups: BTreeMap<Key, Vec<&Case>> = BTreeMap::new();
    for c in cases {
        groups
            .entry((
                c.kind,
                c.model.clone(),
                c.unit.to_string(),
                c.precision.to_string(),
                c.batch,
            ))
            .or_default()
            .push(c);
    }
    let mut s = String::new();
    let failed = cases.iter().filter(|c| !c.passed()).count();
    s.push_str(&format!(
        "GPU: {} ({}); reference: burn's CPU backend (flex), f32. {} cases, {} failed, {}.\n\n",
        devices.backend,
        devices.adapter,
        cases.len(),
        failed,
        duration(wall)
    ));
    s.push_str("| check | model | unit | precision | batch | lengths | worst error | tolerance | result |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for ((kind, model, unit, precision, batch), group) in &groups {
        let worst = group
            .iter()
            .map(|c| c.error)
            .fold(0.0f64, |m, e| if e.is_nan() || e > m { e } else { m });
        let bad: Vec<usize> = group
            .iter()
            .filter(|c| !c.passed())
            .map(|c| c.len)
            .collect();
        let lens: Vec<usize> = group.iter().map(|c| c.len).collect();
        let notes: Vec<&str> = group
            .iter()
            .filter(|c| !c.note.is_empty() && (*kind == Kind::Sample || !c.passed()))
            .map(|c| c.note.as_str())
            .take(1)
            .collect();
        let result = if bad.is_empty() {
            "pass".to_string()
        } else {
            format!("**FAIL** at {}", ranges(&bad))
        };
        let result = match notes.first() {
            Some(n) => format!("{result} ({n})"),
            None => result,
        };
        s.push_str(&format!(
            "| {kind} | {model} | {unit} | {precision} | {batch} | {} | {worst:.1e} | {:.0e} | {result} |\n",
            ranges(&lens),
            group[0].tolerance,
        ));
    }
    s
}

/// `1–3, 7, 9–10` for [1, 2, 3, 7, 9, 10].
fn ranges(values: &[usize]) -> String {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        parts.push(if j > i + 1 {
            format!("{}–{}", v[i], v[j])
        } else if j == i + 1 {
            format!("{}, {}", v[i], v[j])
        } else {
            v[i].to_string()
        });
        i = j + 1;
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_fold_consecutive_values() {
        assert_eq!(ranges(&[9, 1, 2, 3, 7, 10]), "1–3, 7, 9, 10");
        assert_eq!(ranges(&[5]), "5");
        assert_eq!(ranges(&[]), "");
    }

    #[test]
    fn odd_lengths_stay_inside_the_block() {
        assert_eq!(
            odd_lengths(64),
            vec![7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64]
        );
        assert_eq!(odd_lengths(1024).last(), Some(&1024));
    }
}
