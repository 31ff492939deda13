//! Training: the only module that knows burn. A validated run spec in; metrics, checkpoints
//! and a summary out, through a [`Recorder`] the caller provides.

mod checkpoint;
pub mod device;
pub mod model;

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, FloatDType, Int, Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data;
use crate::manifest::{Alpha, AlphaMode, Config, Precision, TrainConfig, Unit};
use crate::sweep::RunSpec;
pub use checkpoint::{CheckpointState, load_state};
use model::Gpt;

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Data(#[from] data::Error),
    #[error(transparent)]
    Device(#[from] device::NoDevice),
    #[error("diverged: the training loss was {value} at step {step}")]
    Diverged { step: u64, value: f64 },
    #[error("interrupted at step {step}")]
    Interrupted { step: u64 },
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error(
        "precision {precision} is not supported on {backend} ({adapter}): its shaders lack \
         {precision} arithmetic; use {supported}"
    )]
    Precision {
        precision: Precision,
        backend: String,
        adapter: String,
        supported: String,
    },
    #[error("the model has {found} parameters, but the plan computed {planned}: a bug in xp")]
    ParamMismatch { found: u64, planned: u64 },
}

/// One metric value.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub step: u64,
    pub name: String,
    pub value: f64,
    /// Milliseconds since the run (or its resumption) started.
    pub t_ms: u64,
}

/// A checkpoint written to disk.
#[derive(Debug, Clone)]
pub struct Saved {
    pub step: u64,
    pub dir: PathBuf,
    pub bytes: u64,
    pub blake3: String,
    pub val_loss: Option<f64>,
}

/// Where a run is, for progress displays.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub step: u64,
    pub steps: u64,
    pub train_loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub tokens_per_s: Option<f64>,
}

/// The burn release xp is built with, recorded with every run (a test keeps it in step with
/// Cargo.lock: cargo gives a crate no way to read its dependencies' versions).
pub const BURN_VERSION: &str = "0.22.1";

/// What a run reports as it goes; implemented by the queue executor.
pub trait Recorder {
    /// The device and tokenizer are known; training starts.
    fn started(&mut self, backend: &str, adapter: &str, tokenizer: &serde_json::Value);
    /// A batch of metrics; called at log and eval steps, never every step.
    fn metrics(&mut self, metrics: Vec<Metric>);
    /// A checkpoint was written; returns the checkpoint folders that retention removes.
    fn checkpoint(&mut self, saved: &Saved) -> Vec<PathBuf>;
    fn progress(&mut self, progress: &Progress);
    /// Whether to stop at the end of the current step (Ctrl-C).
    fn should_stop(&self) -> bool {
        false
    }
}

/// A run's results.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub best_val_loss: Option<f64>,
    pub final_val_loss: Option<f64>,
    pub final_train_loss: Option<f64>,
    pub median_tokens_per_s: Option<f64>,
    pub wall_s: f64,
    pub params: u64,
}

/// Keeps CubeCL's autotune and kernel caches in xp's cache folder: by default CubeCL writes
/// them under the nearest folder with a Cargo.toml, which may be the user's experiment folder.
/// They persist between processes only in a build with the `persistent-cache` feature.
fn configure_cubecl() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use burn::cubecl::config::cache::CacheConfig;
        use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
        let mut config = CubeClRuntimeConfig::default().override_from_env();
        config.environment.path = CacheConfig::Directory(data::cache_dir().join("cubecl"));
        // With CubeCL's persistence compiled in, compiled kernels are kept too (SPIR-V
        // builds), not only autotune results: together they make a second start quick.
        #[cfg(feature = "persistent-cache")]
        {
            config.compilation.cache = true;
        }
        if !CubeClRuntimeConfig::try_set(config) {
            tracing::warn!("CubeCL was configured before xp could move its caches");
        }
    });
}

/// Learning rate at optimiser step `step` (0-based): linear warm-up, then cosine to `min_lr`.
pub fn learning_rate(t: &TrainConfig, step: u64) -> f64 {
    if step < t.warmup_steps {
        return t.lr * (step + 1) as f64 / (t.warmup_steps + 1) as f64;
    }
    let span = (t.steps - t.warmup_steps).max(1) as f64;
    let progress = ((step - t.warmup_steps) as f64 / span).min(1.0);
    t.min_lr + 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()) * (t.lr - t.min_lr)
}

/// The scheduled α of `alpha = "cosine"`: 1 at the start, 0 at the end.
pub fn cosine_alpha(step: u64, steps: u64) -> f64 {
    0.5 * (1.0 + (std::f64::consts::PI * step as f64 / steps.max(1) as f64).cos())
}

/// Mixes a seed with counters, so each step's randomness depends only on (seed, step): a
/// resumed run draws exactly what an uninterrupted one would.
fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(&a.to_le_bytes());
    h.update(&b.to_le_bytes());
    u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"))
}

/// A batch of random crops of `block + 1` tokens: inputs and next-token targets.
fn batch(
    tokens: &[u32],
    batch: usize,
    block: usize,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let mut x = Vec::with_capacity(batch * block);
    let mut y = Vec::with_capacity(batch * block);
    for _ in 0..batch {
        let start = rng.random_range(0..tokens.len() - block - 1);
        x.extend(tokens[start..start + block].iter().map(|&t| t as i64));
        y.extend(
            tokens[start + 1..start + block + 1]
                .iter()
                .map(|&t| t as i64),
        );
    }
    let make =
        |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [batch, block]), device);
    (make(x), make(y))
}

/// Collects the ids of parameters that get no weight decay: vectors (biases, LayerNorm, α, β).
#[derive(Default)]
struct VectorParams(Vec<ParamId>);

impl ModuleVisitor for VectorParams {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if D < 2 {
            self.0.push(param.id);
        }
    }
}

/// AdamW with decay on matrices only, as nanoGPT does.
fn optimizer(t: &TrainConfig, model: &Gpt) -> ModuleOptimizer {
    let adamw = |decay: f64| {
        AdamWConfig::new()
            .with_beta_1(t.beta1 as f32)
            .with_beta_2(t.beta2 as f32)
            .with_epsilon(1e-8)
            .with_weight_decay(decay as f32)
    };
    let mut vectors = VectorParams::default();
    model.visit(&mut vectors);
    adamw(t.weight_decay).init().with_group(
        burn::module::ParamGroup::from_ids(vectors.0),
        adamw(0.0).build(),
        None,
    )
}

/// The factor f16 runs multiply the loss by before the backward pass, so that small
/// gradients stay above f16's smallest normal value (6.1e-5); the gradients are divided by it
/// again before clipping. Static: 2^10 leaves a margin of 64 below f16's largest value for
/// activation gradients of order one, and a dynamic scale would need a read-back every step
/// to detect overflow. bf16 has f32's range and needs none.
const F16_LOSS_SCALE: f64 = 1024.0;

/// The dtype of the matrix products for a precision.
fn compute_dtype(precision: Precision) -> FloatDType {
    match precision {
        Precision::F32 => FloatDType::F32,
        Precision::F16 => FloatDType::F16,
        Precision::Bf16 => FloatDType::BF16,
    }
}

/// Global gradient norm, and the gradients scaled so that it is at most `clip` (0: no clip).
struct GlobalNorm<'a> {
    grads: &'a mut GradientsParams,
    ids: Vec<(ParamId, usize)>,
}

impl ModuleVisitor for GlobalNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.grads.get::<D>(param.id).is_some() {
            self.ids.push((param.id, D));
        }
    }
}

fn squared_norm<const D: usize>(grads: &GradientsParams, id: ParamId) -> Option<Tensor<1>> {
    grads.get::<D>(id).map(|g| g.square().sum())
}

fn scale<const D: usize>(grads: &mut GradientsParams, id: ParamId, factor: &Tensor<1>) {
    if let Some(g) = grads.remove::<D>(id) {
        let f = factor.clone().reshape([1; D]);
        grads.register::<D>(id, g * f);
    }
}

/// Divides the gradients by `loss_scale` and clips them, in place; returns the (unscaled) norm
/// before clipping as a [1] tensor (read only when logged).
fn clip_global_norm(
    model: &Gpt,
    grads: &mut GradientsParams,
    clip: f64,
    loss_scale: f64,
    device: &Device,
) -> Tensor<1> {
    let mut visitor = GlobalNorm {
        grads,
        ids: Vec::new(),
    };
    model.visit(&mut visitor);
    let ids = visitor.ids;
    let mut total = Tensor::<1>::zeros([1], device);
    for &(id, rank) in &ids {
        let part = match rank {
            1 => squared_norm::<1>(grads, id),
            2 => squared_norm::<2>(grads, id),
            3 => squared_norm::<3>(grads, id),
            _ => squared_norm::<4>(grads, id),
        };
        if let Some(p) = part {
            total = total + p;
        }
    }
    let norm = total.sqrt() / loss_scale;
    if clip > 0.0 || loss_scale != 1.0 {
        // min(1, clip / norm) / scale: computed on the device (no sync); without clipping and
        // scaling there is nothing to do.
        let clipped = if clip > 0.0 {
            (norm.clone() + 1e-6)
                .recip()
                .mul_scalar(clip)
                .clamp_max(1.0)
        } else {
            Tensor::ones([1], device)
        };
        let factor = clipped / loss_scale;
        for &(id, rank) in &ids {
            match rank {
                1 => scale::<1>(grads, id, &factor),
                2 => scale::<2>(grads, id, &factor),
                3 => scale::<3>(grads, id, &factor),
                _ => scale::<4>(grads, id, &factor),
            }
        }
    }
    norm
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

/// Mean validation loss over `batches` fixed batches (the same ones at every evaluation).
fn evaluate(model: &Gpt, tokens: &[u32], config: &Config, alpha: f64, device: &Device) -> f64 {
    let t = &config.train;
    let mut rng = ChaCha8Rng::seed_from_u64(mix(t.seed, u64::MAX, 0));
    let mut total = Tensor::<1>::zeros([1], device);
    for _ in 0..t.eval_batches {
        let (x, y) = batch(
            tokens,
            t.batch_size as usize,
            config.model.block_size as usize,
            &mut rng,
            device,
        );
        total = total + model.loss(x, y, alpha);
    }
    scalar(total) / t.eval_batches as f64
}

fn rss_mb() -> Option<f64> {
    let pid = sysinfo::get_current_pid().ok()?;
    let mut sys = sysinfo::System::new().ok()?;
    sys.refresh_processes(sysinfo::ProcessesToUpdate::Some(&[pid]), true);
    sys.process(pid).map(|p| p.memory() as f64 / 1e6)
}

/// What to train and where to keep its checkpoints.
pub struct Job<'a> {
    pub spec: &'a RunSpec,
    /// Folder that `data.path` is relative to.
    pub base_dir: PathBuf,
    /// Folder for this run's checkpoints.
    pub checkpoint_dir: PathBuf,
    /// A checkpoint to continue from.
    pub resume: Option<PathBuf>,
}

/// Trains one run to the end (or until stopped), reporting through `recorder`.
pub fn train(job: &Job<'_>, recorder: &mut dyn Recorder) -> Result<Summary, Error> {
    configure_cubecl();
    let config = &job.spec.config;
    let t = &config.train;
    let block = config.model.block_size as usize;
    let corpus = data::corpus(&job.base_dir, &config.data, block)?;
    let selected = device::select(&config.hardware)?;
    recorder.started(
        &selected.backend,
        &selected.adapter,
        &corpus.tokenizer.to_json(),
    );

    let device = selected.device.clone();
    let precision = config.hardware.precision;
    let dtype = compute_dtype(precision);
    if !device.supports_dtype(dtype) {
        let supported = [Precision::F16, Precision::Bf16]
            .into_iter()
            .filter(|p| device.supports_dtype(compute_dtype(*p)))
            .fold("f32".to_string(), |acc, p| format!("{acc} or {p}"));
        return Err(Error::Precision {
            precision,
            backend: selected.backend,
            adapter: selected.adapter,
            supported,
        });
    }
    let loss_scale = if precision == Precision::F16 {
        F16_LOSS_SCALE
    } else {
        1.0
    };
    let train_device = device.clone().autodiff();
    train_device.seed(t.seed);
    let mut model =
        Gpt::new(&config.model, corpus.tokenizer.vocab_size(), &train_device).with_compute(dtype);
    let found = model.num_params() as u64;
    if found != job.spec.params {
        return Err(Error::ParamMismatch {
            found,
            planned: job.spec.params,
        });
    }
    let mut state = CheckpointState {
        step: 0,
        seed: t.seed,
        best_val_loss: None,
        tokens: 0,
    };
    if let Some(dir) = &job.resume {
        model = checkpoint::load_params(dir, model)?;
        state = checkpoint::load_state(dir)?.0;
    }
    // Built after loading: its no-decay group names the parameters by their (restored) ids.
    let mut optim = optimizer(t, &model);
    if let Some(dir) = &job.resume {
        optim = checkpoint::load_optimizer(dir, optim)?;
    }

    let started = Instant::now();
    let tokens_per_step = (t.batch_size as u64) * (t.grad_accum as u64) * block as u64;
    let mut last_log = (Instant::now(), state.step);
    let mut speeds: Vec<f64> = Vec::new();
    let mut summary = Summary {
        params: found,
        best_val_loss: state.best_val_loss,
        ..Summary::default()
    };
    let ms = || started.elapsed().as_millis() as u64;
    // Writes a checkpoint, registers it, and deletes the ones retention drops.
    let save = |model: &Gpt,
                optim: &ModuleOptimizer,
                state: &CheckpointState,
                val: Option<f64>,
                recorder: &mut dyn Recorder|
     -> Result<(), Error> {
        let saved = checkpoint::save(
            &job.checkpoint_dir,
            model,
            optim,
            state,
            &corpus.tokenizer,
            val,
        )?;
        for dir in recorder.checkpoint(&saved) {
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(())
    };

    while state.step < t.steps {
        let step = state.step;
        if recorder.should_stop() {
            save(&model, &optim, &state, None, recorder)?;
            return Err(Error::Interrupted { step });
        }
        let lr = learning_rate(t, step);
        let alpha = if matches!(config.model.ffn.alpha, Alpha::Mode(AlphaMode::Cosine)) {
            cosine_alpha(step, t.steps)
        } else {
            1.0
        };
        train_device.seed(mix(t.seed, step, 1));
        let mut accumulator = GradientsAccumulator::new();
        let mut loss_sum = Tensor::<1>::zeros([1], &device);
        for micro in 0..t.grad_accum as u64 {
            let mut rng = ChaCha8Rng::seed_from_u64(mix(t.seed, step, micro + 2));
            let (x, y) = batch(
                &corpus.train,
                t.batch_size as usize,
                block,
                &mut rng,
                &train_device,
            );
            let loss = model.loss(x, y, alpha) / t.grad_accum as f64;
            loss_sum = loss_sum + loss.clone().inner();
            let scaled = if loss_scale == 1.0 {
                loss
            } else {
                loss * loss_scale
            };
            let grads = GradientsParams::from_grads(scaled.backward(), &model);
            accumulator.accumulate(&model, grads);
        }
        let mut grads = accumulator.grads();
        let norm = clip_global_norm(&model, &mut grads, t.grad_clip, loss_scale, &train_device);
        model = optim.step(lr, model, grads);
        state.step += 1;
        state.tokens += tokens_per_step;
        let done = state.step;

        // Reading values back forces the device to finish its queue: only at log steps.
        // The first step is logged too: it carries shader compilation and autotuning, and
        // shows early that training runs.
        let log = done == 1 || done.is_multiple_of(t.log_every) || done == t.steps;
        if log {
            // One read back for everything logged: the loss, the gradient norm and each
            // block's α, gathered on the device so the queue is waited for once.
            let mut logged = vec![loss_sum, norm.inner()];
            if config.model.ffn.unit != Unit::Mlp {
                logged.extend(model.alphas(alpha, &device).into_iter().map(|a| a.inner()));
            }
            let values: Vec<f64> = Tensor::cat(logged, 0)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap_or_default()
                .into_iter()
                .map(f64::from)
                .collect();
            let (loss, grad_norm) = (values[0], values[1]);
            if !loss.is_finite() {
                return Err(Error::Diverged {
                    step: done,
                    value: loss,
                });
            }
            let elapsed = last_log.0.elapsed().as_secs_f64();
            let steps = (done - last_log.1) as f64;
            let speed = steps * tokens_per_step as f64 / elapsed.max(1e-9);
            last_log = (Instant::now(), done);
            speeds.push(speed);
            summary.final_train_loss = Some(loss);
            let mut metrics = vec![
                ("train_loss".to_string(), loss),
                ("lr".into(), lr),
                ("grad_norm".into(), grad_norm),
                ("tokens_per_s".into(), speed),
                ("step_ms".into(), elapsed * 1e3 / steps.max(1.0)),
            ];
            if let Some(rss) = rss_mb() {
                metrics.push(("rss_mb".into(), rss));
            }
            for (i, a) in values[2..].iter().enumerate() {
                metrics.push((format!("alpha.{i}"), *a));
            }
            let t_ms = ms();
            recorder.metrics(
                metrics
                    .into_iter()
                    .map(|(name, value)| Metric {
                        step: done,
                        name,
                        value,
                        t_ms,
                    })
                    .collect(),
            );
        }

        let mut val = None;
        if done.is_multiple_of(t.eval_every) || done == t.steps {
            let v = evaluate(&model.valid(), &corpus.val, config, alpha, &device);
            if !v.is_finite() {
                return Err(Error::Diverged {
                    step: done,
                    value: v,
                });
            }
            val = Some(v);
            summary.final_val_loss = Some(v);
            if summary.best_val_loss.is_none_or(|b| v < b) {
                summary.best_val_loss = Some(v);
            }
            state.best_val_loss = summary.best_val_loss;
            let t_ms = ms();
            recorder.metrics(vec![
                Metric {
                    step: done,
                    name: "val_loss".into(),
                    value: v,
                    t_ms,
                },
                Metric {
                    step: done,
                    name: "val_ppl".into(),
                    value: v.exp(),
                    t_ms,
                },
            ]);
        }
        if log {
            recorder.progress(&Progress {
                step: done,
                steps: t.steps,
                train_loss: summary.final_train_loss,
                val_loss: summary.final_val_loss,
                tokens_per_s: speeds.last().copied(),
            });
        }
        let checkpoint =
            (t.checkpoint_every > 0 && done.is_multiple_of(t.checkpoint_every)) || done == t.steps;
        if checkpoint {
            save(&model, &optim, &state, val, recorder)?;
        }
        if checkpoint || val.is_some() {
            // Evaluating and saving are not training: the next speed interval starts after them.
            last_log.0 = Instant::now();
        }
    }
    summary.wall_s = started.elapsed().as_secs_f64();
    speeds.sort_by(f64::total_cmp);
    summary.median_tokens_per_s = speeds.get(speeds.len() / 2).copied();
    Ok(summary)
}

/// Generates `tokens` tokens after `prompt` from a checkpoint, sampling with temperature and top-k.
pub fn sample(
    config: &Config,
    checkpoint_dir: &Path,
    prompt: &str,
    tokens: usize,
    temperature: f64,
    top_k: Option<usize>,
    seed: u64,
) -> Result<String, Error> {
    configure_cubecl();
    let state = checkpoint::load_state(checkpoint_dir)?;
    let tokenizer = state.1;
    let selected = device::select(&config.hardware)?;
    let device = selected.device;
    let model = checkpoint::load_model(
        checkpoint_dir,
        &config.model,
        tokenizer.vocab_size(),
        &device,
    )?;
    let mut ids: Vec<u32> = tokenizer.encode(prompt);
    if ids.is_empty() {
        ids.push(0);
    }
    let prompt_len = ids.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let block = model.block_size();
    for _ in 0..tokens {
        let context: Vec<i64> = ids[ids.len().saturating_sub(block)..]
            .iter()
            .map(|&i| i as i64)
            .collect();
        let n = context.len();
        let x = Tensor::<2, Int>::from_data(TensorData::new(context, [1, n]), &device);
        let logits = model.forward(x, 1.0);
        let [_, _, v] = logits.dims();
        let last: Vec<f32> = logits
            .slice([0..1, n - 1..n, 0..v])
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        ids.push(pick(&last, temperature, top_k, &mut rng) as u32);
    }
    Ok(tokenizer.decode(&ids[prompt_len..]))
}

/// Samples an index from logits with temperature and top-k.
fn pick(logits: &[f32], temperature: f64, top_k: Option<usize>, rng: &mut ChaCha8Rng) -> usize {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if temperature <= 0.0 {
        return order[0];
    }
    let keep = top_k.unwrap_or(logits.len()).clamp(1, logits.len());
    let top = &order[..keep];
    let max = logits[top[0]] as f64;
    let weights: Vec<f64> = top
        .iter()
        .map(|&i| ((logits[i] as f64 - max) / temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut r = rng.random_range(0.0..total);
    for (w, &i) in weights.iter().zip(top) {
        if r < *w {
            return i;
        }
        r -= w;
    }
    top[keep - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burn_version_matches_the_lock_file() {
        let lock = include_str!("../../Cargo.lock");
        let needle = format!("name = \"burn\"\nversion = \"{BURN_VERSION}\"");
        assert!(
            lock.contains(&needle),
            "Cargo.lock has another burn than {BURN_VERSION}"
        );
    }

    #[test]
    fn schedule_warms_up_then_decays_to_min_lr() {
        let t = TrainConfig {
            steps: 100,
            warmup_steps: 10,
            lr: 1e-3,
            min_lr: 1e-4,
            ..TrainConfig::default()
        };
        assert!(learning_rate(&t, 0) < learning_rate(&t, 5));
        assert!((learning_rate(&t, 10) - 1e-3).abs() < 1e-12);
        assert!((learning_rate(&t, 100) - 1e-4).abs() < 1e-12);
        assert!((cosine_alpha(0, 10) - 1.0).abs() < 1e-12 && cosine_alpha(10, 10).abs() < 1e-12);
    }

    #[test]
    fn sampling_respects_top_k_and_temperature() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let logits = [0.0, 5.0, 1.0, 4.9];
        for _ in 0..50 {
            let i = pick(&logits, 1.0, Some(2), &mut rng);
            assert!(i == 1 || i == 3);
        }
        assert_eq!(pick(&logits, 0.0, None, &mut rng), 1);
    }
}
