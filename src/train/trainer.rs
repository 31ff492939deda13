//! The training loop of one run: a [`Trainer`] holds the model, the optimiser and where
//! training stands, and goes step by step, logging, evaluating and checkpointing on schedule.

use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, FloatDType, Int, Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::checkpoint::{self, CheckpointState};
use super::model::Gpt;
use super::optim::{LossScale, clip_global_norm, cosine_alpha, learning_rate, optimizer};
use super::{Control, Error, Job, Metric, Placement, Progress, Recorder, Trained, device};
use crate::data::{self, Corpus};
use crate::manifest::{Alpha, AlphaMode, Config, Precision, Unit};
use crate::summary::Summary;

/// Trains one run to the end, or to the rung it pauses at (or until stopped), reporting
/// through `recorder`.
pub fn train(job: &Job<'_>, recorder: &mut dyn Recorder) -> Result<Trained, Error> {
    device::configure_cubecl();
    let (trainer, model) = Trainer::new(job, recorder)?;
    trainer.run(model)
}

/// The dtype of the matrix products for a precision.
fn compute_dtype(precision: Precision) -> FloatDType {
    match precision {
        Precision::F32 => FloatDType::F32,
        Precision::F16 => FloatDType::F16,
        Precision::Bf16 => FloatDType::BF16,
    }
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

fn rss_mb() -> Option<f64> {
    let pid = sysinfo::get_current_pid().ok()?;
    let mut sys = sysinfo::System::new().ok()?;
    sys.refresh_processes(sysinfo::ProcessesToUpdate::Some(&[pid]), true);
    sys.process(pid).map(|p| p.memory() as f64 / 1e6)
}

/// What one optimiser step leaves on the device, read back only at log steps.
struct Stepped {
    /// The step's mean training loss, a [1] tensor.
    loss: Tensor<1>,
    /// The global gradient norm before clipping, a [1] tensor.
    grad_norm: Tensor<1>,
    lr: f64,
    alpha: f64,
}

/// A run in training. The model is passed through each step rather than kept here, since
/// burn's optimiser takes it by value to update it in place.
pub(super) struct Trainer<'j, 'r> {
    job: &'j Job<'j>,
    recorder: &'r mut dyn Recorder,
    corpus: Corpus,
    /// The plain device (evaluation, read-backs) and its autodiff twin (training).
    device: Device,
    train_device: Device,
    optim: ModuleOptimizer,
    state: CheckpointState,
    /// f16 runs scale their loss (bf16 has f32's range and needs none).
    loss_scale: Option<LossScale>,
    tokens_per_step: u64,
    summary: Summary,
    /// tokens/s of each log interval, for the median.
    speeds: Vec<f64>,
    /// When and at which step the current speed interval started.
    interval: (Instant, u64),
    started: Instant,
}

impl<'j, 'r> Trainer<'j, 'r> {
    /// Loads the corpus, picks the device, builds the model (restoring it from the job's
    /// checkpoint, if any) and tells the recorder training starts.
    pub(super) fn new(
        job: &'j Job<'j>,
        recorder: &'r mut dyn Recorder,
    ) -> Result<(Trainer<'j, 'r>, Gpt), Error> {
        let config = &job.spec.config;
        let t = &config.train;
        let block = config.model.block_size as usize;
        let corpus = data::corpus(&job.base_dir, &config.data, block)?;
        let selected = device::select(&config.hardware, job.device)?;
        let (attention, why) =
            device::attention_kernel(&selected, config.model.attention_dropout());
        recorder
            .started(&Placement {
                backend: &selected.backend,
                adapter: &selected.adapter,
                attention: &why,
            })
            .map_err(Error::Recording)?;

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
        let train_device = device.clone().autodiff();
        train_device.seed(t.seed);
        let mut model = Gpt::new(&config.model, corpus.tokenizer.vocab_size(), &train_device)
            .with_compute(dtype)
            .with_attention(attention);
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
            loss_scale: None,
        };
        if let Some(dir) = &job.resume {
            model = checkpoint::load_params(dir, model)?;
            state = checkpoint::load_state(dir)?.0;
        }
        checkpoint::remove_partials(&job.checkpoint_dir);
        let mut optim = optimizer(t, &model);
        if let Some(dir) = &job.resume {
            optim = checkpoint::load_optimizer(dir, optim)?;
        }
        let loss_scale = (precision == Precision::F16).then(|| {
            let (scale, clean, overflows) = state.loss_scale.unwrap_or((LossScale::INITIAL, 0, 0));
            LossScale::new(scale, clean, overflows, &device)
        });
        let now = Instant::now();
        let trainer = Trainer {
            job,
            recorder,
            corpus,
            device,
            train_device,
            optim,
            interval: (now, state.step),
            summary: Summary {
                params: Some(found),
                best_val_loss: state.best_val_loss,
                ..Summary::default()
            },
            state,
            loss_scale,
            tokens_per_step: (t.batch_size as u64) * (t.grad_accum as u64) * block as u64,
            speeds: Vec::new(),
            started: now,
        };
        Ok((trainer, model))
    }

    fn config(&self) -> &'j Config {
        &self.job.spec.config
    }

    fn ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Trains `model` to the last step or the job's rung, or until the recorder says stop.
    pub(super) fn run(mut self, mut model: Gpt) -> Result<Trained, Error> {
        let t = &self.config().train;
        let until = self.job.until.filter(|&u| u < t.steps);
        // Resumed from the rung's own checkpoint (its process died after writing it, before
        // the pause was recorded): it pauses there again, training nothing.
        if until == Some(self.state.step) {
            return Ok(Trained::Paused {
                step: self.state.step,
                summary: self.summary(),
            });
        }
        while self.state.step < t.steps {
            match self.recorder.control() {
                Control::Continue => {}
                Control::Stop => {
                    let step = self.state.step;
                    self.checkpoint(&model, None)?;
                    return Err(Error::Interrupted { step });
                }
                Control::Fail(cause) => return Err(Error::Recording(cause)),
            }
            let stepped;
            (model, stepped) = self.step(model);
            let done = self.state.step;
            let alpha = stepped.alpha;
            // Reading values back forces the device to finish its queue: only at log steps.
            // The first step is logged too: it carries shader compilation and autotuning, and
            // shows early that training runs.
            let log = done == 1 || done.is_multiple_of(t.log_every) || done == t.steps;
            if log {
                self.log(&model, stepped)?;
            }
            let val = if done.is_multiple_of(t.eval_every) || done == t.steps {
                Some(self.evaluate(&model, alpha)?)
            } else {
                None
            };
            if log {
                self.recorder.progress(&Progress {
                    step: done,
                    steps: t.steps,
                    train_loss: self.summary.final_train_loss,
                    val_loss: self.summary.final_val_loss,
                    tokens_per_s: self.speeds.last().copied(),
                });
            }
            let checkpoint = (t.checkpoint_every > 0 && done.is_multiple_of(t.checkpoint_every))
                || done == t.steps;
            // A rung: the run waits there, from a checkpoint, for its early-stopping decision.
            // Training went exactly as it would have without the pause.
            let rung = until == Some(done);
            if checkpoint || rung {
                self.checkpoint(&model, val)?;
            }
            if rung {
                return Ok(Trained::Paused {
                    step: done,
                    summary: self.summary(),
                });
            }
            if checkpoint || val.is_some() {
                // Evaluating and saving are not training: the next speed interval starts
                // after them.
                self.interval.0 = Instant::now();
            }
        }
        Ok(Trained::Completed(self.summary()))
    }

    /// The summary so far, with this attempt's wall time and median speed.
    fn summary(&mut self) -> Summary {
        let mut summary = self.summary.clone();
        summary.wall_s = Some(self.started.elapsed().as_secs_f64());
        self.speeds.sort_by(f64::total_cmp);
        summary.median_tokens_per_s = self.speeds.get(self.speeds.len() / 2).copied();
        summary
    }

    /// One optimiser step: `grad_accum` micro-batches, clipping, the update.
    fn step(&mut self, model: Gpt) -> (Gpt, Stepped) {
        let config = self.config();
        let t = &config.train;
        let step = self.state.step;
        let lr = learning_rate(t, step);
        let alpha = stepped_alpha(config, step);
        self.train_device.seed(mix(t.seed, step, 1));
        let mut accumulator = GradientsAccumulator::new();
        let mut loss_sum = Tensor::<1>::zeros([1], &self.device);
        for micro in 0..t.grad_accum as u64 {
            let mut rng = ChaCha8Rng::seed_from_u64(mix(t.seed, step, micro + 2));
            let (x, y) = batch(
                &self.corpus.train,
                t.batch_size as usize,
                config.model.block_size as usize,
                &mut rng,
                &self.train_device,
            );
            let loss = model.loss(x, y, alpha) / t.grad_accum as f64;
            loss_sum = loss_sum + loss.clone().inner();
            let scaled = match &self.loss_scale {
                None => loss,
                Some(ls) => loss * Tensor::from_inner(ls.scale.clone()),
            };
            let grads = GradientsParams::from_grads(scaled.backward(), &model);
            accumulator.accumulate(&model, grads);
        }
        let mut grads = accumulator.grads();
        let norm = clip_global_norm(
            &model,
            &mut grads,
            t.grad_clip,
            self.loss_scale.as_mut(),
            &self.train_device,
        );
        let model = self.optim.step(lr, model, grads);
        self.state.step += 1;
        self.state.tokens += self.tokens_per_step;
        let stepped = Stepped {
            loss: loss_sum,
            grad_norm: norm.inner(),
            lr,
            alpha,
        };
        (model, stepped)
    }

    /// Reads the step's figures back in one transfer and records them.
    fn log(&mut self, model: &Gpt, stepped: Stepped) -> Result<(), Error> {
        let done = self.state.step;
        let config = self.config();
        // One read back for everything logged: the loss, the gradient norm and each block's
        // α, gathered on the device so the queue is waited for once.
        let mut logged = vec![stepped.loss, stepped.grad_norm];
        if let Some(ls) = &self.loss_scale {
            logged.extend([ls.scale.clone(), ls.overflows.clone()]);
        }
        if config.model.ffn.unit != Unit::Mlp {
            logged.extend(
                model
                    .alphas(stepped.alpha, &self.device)
                    .into_iter()
                    .map(|a| a.inner()),
            );
        }
        let values = read_f64s(Tensor::cat(logged, 0));
        let (Some(&loss), Some(&grad_norm)) = (values.first(), values.get(1)) else {
            return Err(Error::Recording(
                "the device returned no loss value".to_string(),
            ));
        };
        if !loss.is_finite() {
            return Err(Error::Diverged {
                step: done,
                value: loss,
            });
        }
        let elapsed = self.interval.0.elapsed().as_secs_f64();
        let steps = (done - self.interval.1) as f64;
        let speed = steps * self.tokens_per_step as f64 / elapsed.max(1e-9);
        self.interval = (Instant::now(), done);
        self.speeds.push(speed);
        self.summary.final_train_loss = Some(loss);
        let mut metrics = vec![
            ("train_loss".to_string(), loss),
            ("lr".into(), stepped.lr),
            ("grad_norm".into(), grad_norm),
            ("tokens_per_s".into(), speed),
            ("step_ms".into(), elapsed * 1e3 / steps.max(1.0)),
        ];
        if let Some(rss) = rss_mb() {
            metrics.push(("rss_mb".into(), rss));
        }
        if let Some(peak) = device_peak_mb(&self.device) {
            metrics.push(("device_peak_mb".into(), peak));
        }
        let mut rest = &values[2..];
        if self.loss_scale.is_some()
            && let [scale, overflows, after @ ..] = rest
        {
            metrics.push(("loss_scale".into(), *scale));
            metrics.push(("overflow_steps".into(), *overflows));
            rest = after;
        }
        for (i, a) in rest.iter().enumerate() {
            metrics.push((format!("alpha.{i}"), *a));
        }
        let t_ms = self.ms();
        self.recorder.metrics(
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
        Ok(())
    }

    /// Mean validation loss over `eval_batches` fixed batches (the same ones every time),
    /// recorded with its perplexity.
    fn evaluate(&mut self, model: &Gpt, alpha: f64) -> Result<f64, Error> {
        let done = self.state.step;
        let config = self.config();
        let t = &config.train;
        let model = model.valid();
        let mut rng = ChaCha8Rng::seed_from_u64(mix(t.seed, u64::MAX, 0));
        let mut total = Tensor::<1>::zeros([1], &self.device);
        for _ in 0..t.eval_batches {
            let (x, y) = batch(
                &self.corpus.val,
                t.batch_size as usize,
                config.model.block_size as usize,
                &mut rng,
                &self.device,
            );
            total = total + model.loss(x, y, alpha);
        }
        let v = total.into_scalar::<f32>() as f64 / t.eval_batches as f64;
        if !v.is_finite() {
            return Err(Error::Diverged {
                step: done,
                value: v,
            });
        }
        self.summary.final_val_loss = Some(v);
        if self.summary.best_val_loss.is_none_or(|b| v < b) {
            self.summary.best_val_loss = Some(v);
        }
        self.state.best_val_loss = self.summary.best_val_loss;
        let t_ms = self.ms();
        self.recorder.metrics(vec![
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
        Ok(v)
    }

    /// Writes a checkpoint and registers it.
    fn checkpoint(&mut self, model: &Gpt, val_loss: Option<f64>) -> Result<(), Error> {
        // The loss scale goes with the weights: a resumed f16 run scales as it would have.
        if let Some(ls) = &self.loss_scale {
            let values = read_f64s(Tensor::cat(
                vec![ls.scale.clone(), ls.clean.clone(), ls.overflows.clone()],
                0,
            ));
            if let [scale, clean, overflows] = values[..] {
                self.state.loss_scale = Some((scale, clean as u64, overflows as u64));
            }
        }
        let saved = checkpoint::save(
            &self.job.checkpoint_dir,
            model,
            &self.optim,
            &self.state,
            &self.corpus.tokenizer,
            val_loss,
        )?;
        self.recorder.checkpoint(&saved).map_err(Error::Recording)
    }
}

/// The α a scheduled unit uses at `step`; 1 (unused) for the others.
pub(super) fn stepped_alpha(config: &Config, step: u64) -> f64 {
    if matches!(config.model.ffn.alpha, Alpha::Mode(AlphaMode::Cosine)) {
        cosine_alpha(step, config.train.steps)
    } else {
        1.0
    }
}

/// A small tensor's values on the host, in one read-back (empty if it cannot be read as f32).
fn read_f64s(t: Tensor<1>) -> Vec<f64> {
    t.into_data()
        .try_to_vec::<f32>()
        .unwrap_or_default()
        .into_iter()
        .map(f64::from)
        .collect()
}

/// The most device memory the run's allocator has held at once, in MB: every dynamic pool's
/// peak page count times its page size, as burn reports them (a GPU's pools; the CPU backend
/// reports none). An upper bound on what the tensors needed: pages are reserved whole.
fn device_peak_mb(device: &Device) -> Option<f64> {
    let pools = device.memory_pool_report()?;
    let bytes: u64 = pools.iter().map(|p| p.page_size * p.pages_peak).sum();
    (bytes > 0).then(|| bytes as f64 / 1e6)
}
