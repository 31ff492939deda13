//! GPU conformance: xp's model, and the kernels it is made of, run on a GPU and on burn's CPU
//! backend with the same weights and inputs, each difference measured against a stated
//! tolerance. CI's lavapipe gets WGSL; this is how the SPIR-V kernels that NVIDIA and AMD users
//! run get checked at all (`xp bench conformance`, docs/benchmarks.md).

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, FloatDType, Int, Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::model::{self, AttentionKernel, Gpt};
use super::sample::{Generator, Sampling};
use super::{Error, device};
use crate::manifest::{Config, DeviceChoice, HardwareConfig, ModelConfig, Precision, Unit};

/// What a check compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Every logit of a forward pass.
    Logits,
    /// The mean cross-entropy of a forward pass.
    Loss,
    /// Every parameter's gradient after one backward pass.
    Gradients,
    /// Greedy text from a trained checkpoint.
    Sample,
    /// One operation of the attention or the projections, on its own.
    Op(&'static str),
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::Logits => f.write_str("logits"),
            Kind::Loss => f.write_str("loss"),
            Kind::Gradients => f.write_str("gradients"),
            Kind::Sample => f.write_str("greedy sample"),
            Kind::Op(name) => write!(f, "op {name}"),
        }
    }
}

/// The error measures, by kind and precision. The reference is always the CPU in f32.
///
/// - Logits, gradients and ops: the largest absolute difference divided by the largest
///   absolute reference value (scale-free, so one bound serves a random and a trained model).
///   f32: 1e-4 — a few hundred float32 roundings (2⁻²⁴ ≈ 6e-8 each) summed in another order
///   through six blocks stay below 1e-5; a wrong kernel is off by 1e-1 or more. f16/bf16: the
///   products' inputs are rounded to 11 (8) significant bits (2⁻¹¹ ≈ 4.9e-4, 2⁻⁸ ≈ 3.9e-3)
///   in every layer, so 2e-2 (f16) and 1e-1 (bf16).
/// - Loss: absolute difference in nats; 1e-4 (f32), 1e-2 (f16), 5e-2 (bf16).
/// - Greedy sample: the tokens must be equal; where they first differ the check passes only
///   if the CPU's two best logits there are within the logits tolerance (a near-tie that any
///   rounding may break), and says so.
pub fn tolerance(kind: Kind, precision: Precision) -> f64 {
    match (kind, precision) {
        (Kind::Loss, Precision::F32) => 1e-4,
        (Kind::Loss, Precision::F16) => 1e-2,
        (Kind::Loss, Precision::Bf16) => 5e-2,
        (_, Precision::F32) => 1e-4,
        (_, Precision::F16) => 2e-2,
        (_, Precision::Bf16) => 1e-1,
    }
}

/// One comparison.
#[derive(Debug, Clone)]
pub struct Case {
    pub kind: Kind,
    /// Model shape label, e.g. `shakespeare-char` or `medium (2 of 8 layers)`.
    pub model: String,
    pub unit: Unit,
    pub precision: Precision,
    pub batch: usize,
    pub len: usize,
    pub error: f64,
    pub tolerance: f64,
    /// What the error is, where it is not obvious (the worst parameter, where a sample
    /// diverged).
    pub note: String,
}

impl Case {
    pub fn passed(&self) -> bool {
        self.error.is_finite() && self.error <= self.tolerance
    }
}

/// The devices compared: the CPU reference and the GPU under test.
pub struct Devices {
    pub cpu: Device,
    pub gpu: Device,
    pub backend: String,
    pub adapter: String,
    /// The attention the GPU's models take, as a run there would (`device::attention_kernel`;
    /// `XP_ATTENTION` chooses); the CPU reference is always explicit.
    pub attention: AttentionKernel,
}

/// Starts the GPU named by `device` (`auto` takes the first hardware GPU) for work in
/// `precision` (which chooses its shader compiler: `device::select`), and the CPU backend.
pub fn devices(
    device: DeviceChoice,
    index: Option<u32>,
    precision: Precision,
) -> Result<Devices, Error> {
    device::configure_cubecl();
    let hardware = HardwareConfig {
        device,
        precision,
        device_order: vec![
            crate::manifest::DeviceKind::Metal,
            crate::manifest::DeviceKind::Vulkan,
        ],
        ..HardwareConfig::default()
    };
    let selected = device::select(&hardware, index)?;
    if selected.backend == "flex" {
        return Err(Error::Device(device::NoDevice(
            "the conformance check compares a GPU with the CPU; this device is the CPU".into(),
        )));
    }
    let (attention, _) = device::attention_kernel(&selected, 0.0);
    Ok(Devices {
        cpu: Device::flex(),
        gpu: selected.device,
        backend: selected.backend,
        adapter: selected.adapter,
        attention,
    })
}

fn dtype(precision: Precision) -> FloatDType {
    match precision {
        Precision::F32 => FloatDType::F32,
        Precision::F16 => FloatDType::F16,
        Precision::Bf16 => FloatDType::BF16,
    }
}

fn read(t: Tensor<3>) -> Vec<f32> {
    t.cast(FloatDType::F32)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

/// max |a − b| / max |b|: NaN, infinities and missing values make it infinite.
pub fn relative_error(found: &[f32], reference: &[f32]) -> f64 {
    if found.len() != reference.len() || reference.is_empty() {
        return f64::INFINITY;
    }
    let mut diff = 0.0f64;
    let mut scale = 0.0f64;
    for (a, b) in found.iter().zip(reference) {
        let d = (*a as f64 - *b as f64).abs();
        if !d.is_finite() {
            return f64::INFINITY;
        }
        diff = diff.max(d);
        scale = scale.max((*b as f64).abs());
    }
    diff / scale.max(f64::MIN_POSITIVE)
}

/// One model on both devices, with the same weights.
pub struct Pair {
    pub label: String,
    pub config: ModelConfig,
    pub vocab: usize,
    /// Trainable copies (autodiff devices), for gradients.
    cpu_train: Gpt,
    gpu_train: Gpt,
    /// Inference copies.
    cpu: Gpt,
    gpu: Gpt,
    precision: Precision,
    gpu_device: Device,
    cpu_device: Device,
    gpu_train_device: Device,
    cpu_train_device: Device,
}

impl Pair {
    /// Builds the model on the CPU from `seed` (dropout off: the two devices draw different
    /// masks) and copies it to the GPU, computing there in `precision`.
    pub fn new(
        devices: &Devices,
        label: &str,
        config: &ModelConfig,
        vocab: usize,
        precision: Precision,
        seed: u64,
    ) -> Pair {
        let config = ModelConfig {
            dropout: 0.0,
            attention_dropout: Some(0.0),
            ..config.clone()
        };
        let cpu_train_device = devices.cpu.clone().autodiff();
        cpu_train_device.seed(seed);
        let cpu_train = Gpt::new(&config, vocab, &cpu_train_device);
        let gpu_train_device = devices.gpu.clone().autodiff();
        let gpu_train = cpu_train
            .clone()
            .fork(&gpu_train_device)
            .with_compute(dtype(precision))
            .with_attention(devices.attention);
        Pair {
            label: label.into(),
            vocab,
            cpu: cpu_train.valid(),
            gpu: gpu_train.valid(),
            cpu_train,
            gpu_train,
            config,
            precision,
            gpu_device: devices.gpu.clone(),
            cpu_device: devices.cpu.clone(),
            gpu_train_device,
            cpu_train_device,
        }
    }

    fn ids(&self, batch: usize, len: usize, seed: u64) -> Vec<i64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ ((batch as u64) << 32) ^ len as u64);
        (0..batch * len)
            .map(|_| rng.random_range(0..self.vocab as i64))
            .collect()
    }

    fn case(&self, kind: Kind, batch: usize, len: usize, error: f64, note: String) -> Case {
        Case {
            kind,
            model: self.label.clone(),
            unit: self.config.ffn.unit,
            precision: self.precision,
            batch,
            len,
            error,
            tolerance: tolerance(kind, self.precision),
            note,
        }
    }

    /// Logits and loss of one forward pass of `batch` random sequences of `len` tokens.
    pub fn forward(&self, batch: usize, len: usize, seed: u64) -> [Case; 2] {
        let ids = self.ids(batch, len, seed);
        let targets = self.ids(batch, len, seed.wrapping_add(1));
        let tensor = |v: &[i64], device: &Device| {
            Tensor::<2, Int>::from_data(TensorData::new(v.to_vec(), [batch, len]), device)
        };
        let on = |model: &Gpt, device: &Device| {
            let logits = model.forward(tensor(&ids, device), 1.0);
            let loss = Gpt::loss_of(logits.clone(), tensor(&targets, device));
            (read(logits), loss.into_scalar::<f32>() as f64)
        };
        let (cpu_logits, cpu_loss) = on(&self.cpu, &self.cpu_device);
        let (gpu_logits, gpu_loss) = on(&self.gpu, &self.gpu_device);
        let loss_error = (gpu_loss - cpu_loss).abs();
        [
            self.case(
                Kind::Logits,
                batch,
                len,
                relative_error(&gpu_logits, &cpu_logits),
                String::new(),
            ),
            self.case(
                Kind::Loss,
                batch,
                len,
                if loss_error.is_finite() {
                    loss_error
                } else {
                    f64::INFINITY
                },
                format!("cpu {cpu_loss:.5}, gpu {gpu_loss:.5}"),
            ),
        ]
    }

    /// Every parameter's gradient of the loss of one batch; the error is the worst parameter's.
    pub fn gradients(&self, batch: usize, len: usize, seed: u64) -> Case {
        let ids = self.ids(batch, len, seed);
        let targets = self.ids(batch, len, seed.wrapping_add(1));
        let grads = |model: &Gpt, device: &Device| {
            let tensor = |v: &[i64]| {
                Tensor::<2, Int>::from_data(TensorData::new(v.to_vec(), [batch, len]), device)
            };
            let loss = model.loss(tensor(&ids), tensor(&targets), 1.0);
            GradientsParams::from_grads(loss.backward(), model)
        };
        let cpu = grads(&self.cpu_train, &self.cpu_train_device);
        let gpu = grads(&self.gpu_train, &self.gpu_train_device);
        let mut params = Params(Vec::new());
        self.cpu_train.visit(&mut params);
        let mut worst = (0.0f64, String::new());
        for (i, (id, rank, shape)) in params.0.iter().enumerate() {
            let (Some(a), Some(b)) = (read_grad(&gpu, *id, *rank), read_grad(&cpu, *id, *rank))
            else {
                worst = (
                    f64::INFINITY,
                    format!("parameter {i} {shape:?}: no gradient"),
                );
                break;
            };
            let e = relative_error(&a, &b);
            if e > worst.0 || !e.is_finite() {
                worst = (
                    e,
                    format!("worst: parameter {i} of {} {shape:?}", params.0.len()),
                );
            }
            if !e.is_finite() {
                break;
            }
        }
        self.case(Kind::Gradients, batch, len, worst.0, worst.1)
    }
}

/// Parameter ids with their rank and shape, in the model's order.
struct Params(Vec<(ParamId, usize, Vec<usize>)>);

impl ModuleVisitor for Params {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push((param.id, D, param.val().dims().to_vec()));
    }
}

fn read_grad(grads: &GradientsParams, id: ParamId, rank: usize) -> Option<Vec<f32>> {
    let flat = match rank {
        1 => grads.get::<1>(id).map(|g| g.reshape([1, 1, -1])),
        2 => grads.get::<2>(id).map(|g| g.reshape([1, 1, -1])),
        3 => grads.get::<3>(id),
        _ => None,
    }?;
    Some(read(flat))
}

/// The operations of one block and the head, each on its own at `batch` × `len` with random
/// inputs: which kernel is wrong, where a whole model's logits are.
pub fn ops(
    devices: &Devices,
    config: &ModelConfig,
    vocab: usize,
    precision: Precision,
    batch: usize,
    len: usize,
    seed: u64,
) -> Vec<Case> {
    let d = config.dim as usize;
    let h = config.heads as usize;
    let hd = d / h;
    let ffn = config.ffn.hidden_mult as usize * d;
    let dt = dtype(precision);
    let b = batch;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ len as u64 ^ ((b as u64) << 40));
    let mut random = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| (rng.random_range(-1.0f32..1.0)) * scale)
            .collect()
    };
    let x = random(b * len * d, 1.0);
    let hidden = random(b * len * ffn, 1.0);
    let w_qkv = random(d * 3 * d, 0.05);
    let w_in = random(d * ffn, 0.05);
    let w_out = random(ffn * d, 0.05);
    let w_head = random(d * vocab, 0.05);
    let q = random(b * h * len * hd, 1.0);
    let k = random(b * h * len * hd, 1.0);
    let v = random(b * h * len * hd, 1.0);
    let v_grad = random(b * h * len * hd, 1.0);
    let scores = random(b * h * len * len, 3.0);
    let t4 = |data: &[f32], shape: [usize; 4], device: &Device| {
        Tensor::<4>::from_data(TensorData::new(data.to_vec(), shape), device)
    };
    let t3 = |data: &[f32], shape: [usize; 3], device: &Device| {
        Tensor::<3>::from_data(TensorData::new(data.to_vec(), shape), device)
    };
    let t2 = |data: &[f32], shape: [usize; 2], device: &Device| {
        Tensor::<2>::from_data(TensorData::new(data.to_vec(), shape), device)
    };
    // burn's `linear` (what `Linear::forward` runs in f32) and the broadcast product the
    // mixed-precision path runs instead, both in the compute dtype: an f16 run's device never
    // runs f32 products (`device::select`).
    let linear = |input: &[f32], d_in: usize, weight: &[f32], d_out: usize, dev: &Device| {
        let x = t3(input, [b, len, d_in], dev).cast(dt);
        let w = t2(weight, [d_in, d_out], dev).cast(dt);
        read(burn::tensor::module::linear(x, w, None))
    };
    let broadcast = |input: &[f32], d_in: usize, weight: &[f32], d_out: usize, dev: &Device| {
        let x = t3(input, [b, len, d_in], dev).cast(dt);
        let w = t3(weight, [1, d_in, d_out], dev).cast(dt);
        read(x.matmul(w))
    };
    let flat = |t: Tensor<4>| {
        let n = t.dims().iter().product::<usize>();
        read(t.reshape([1, 1, n]))
    };
    // The GPU takes the attention its models take; the CPU reference is explicit.
    let gpu = |dev: &Device| *dev == devices.gpu && devices.gpu != devices.cpu;
    let fused = |dev: &Device| gpu(dev) && devices.attention != AttentionKernel::Explicit;
    let fused_training = |dev: &Device| gpu(dev) && devices.attention == AttentionKernel::Fused;
    let no_dropout = burn::nn::DropoutConfig::new(0.0).init();
    let attend = |q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, fused: bool| -> Tensor<4> {
        let mask = (!fused).then(|| model::causal_mask(len, &q.device()));
        model::attend(q, k, v, mask.as_ref(), &no_dropout, dt)
    };
    type Op<'a> = (&'static str, Box<dyn Fn(&Device) -> Vec<f32> + 'a>);
    let list: Vec<Op> = vec![
        (
            "q·kᵀ",
            Box::new(|dev: &Device| {
                let q = t4(&q, [b, h, len, hd], dev).cast(dt);
                let k = t4(&k, [b, h, len, hd], dev).cast(dt);
                flat(q.matmul(k.swap_dims(2, 3)))
            }),
        ),
        (
            "masked softmax",
            Box::new(|dev: &Device| {
                let s = t4(&scores, [b, h, len, len], dev);
                let mask = model::causal_mask(len, dev);
                flat(softmax(s.mask_fill(mask, f32::NEG_INFINITY), 3))
            }),
        ),
        (
            "weights·v",
            Box::new(|dev: &Device| {
                let s = t4(&scores, [b, h, len, len], dev);
                let mask = model::causal_mask(len, dev);
                let w = softmax(s.mask_fill(mask, f32::NEG_INFINITY), 3).cast(dt);
                let v = t4(&v, [b, h, len, hd], dev).cast(dt);
                flat(w.matmul(v))
            }),
        ),
        (
            "attention",
            Box::new(|dev: &Device| {
                let [q, k, v] = [&q, &k, &v].map(|x| t4(x, [b, h, len, hd], dev).cast(dt));
                flat(attend(q, k, v, fused(dev)))
            }),
        ),
        (
            // On an autodiff device the fused path is another kernel: the forward that keeps
            // each query's logsumexp for the backward.
            "attention in training",
            Box::new(|dev: &Device| {
                let train = dev.clone().autodiff();
                let [q, k, v] = [&q, &k, &v].map(|x| t4(x, [b, h, len, hd], &train).require_grad());
                flat(attend(
                    q.cast(dt),
                    k.cast(dt),
                    v.cast(dt),
                    fused_training(dev),
                ))
            }),
        ),
        (
            "attention backward",
            Box::new(|dev: &Device| {
                // The gradients of Σ out·g against q, k and v, one after the other.
                let train = dev.clone().autodiff();
                let [q, k, v] = [&q, &k, &v].map(|x| t4(x, [b, h, len, hd], &train).require_grad());
                let g = t4(&v_grad, [b, h, len, hd], &train);
                let out = attend(
                    q.clone().cast(dt),
                    k.clone().cast(dt),
                    v.clone().cast(dt),
                    fused_training(dev),
                );
                let grads = (out.cast(FloatDType::F32) * g).sum().backward();
                [q, k, v]
                    .iter()
                    .flat_map(|x| x.grad(&grads).map(flat).unwrap_or_default())
                    .collect()
            }),
        ),
        (
            "linear qkv",
            Box::new(|dev: &Device| linear(&x, d, &w_qkv, 3 * d, dev)),
        ),
        (
            "linear ffn in",
            Box::new(|dev: &Device| linear(&x, d, &w_in, ffn, dev)),
        ),
        (
            "linear ffn out",
            Box::new(|dev: &Device| linear(&hidden, ffn, &w_out, d, dev)),
        ),
        (
            "linear head",
            Box::new(|dev: &Device| linear(&x, d, &w_head, vocab, dev)),
        ),
        (
            "x·W qkv",
            Box::new(|dev: &Device| broadcast(&x, d, &w_qkv, 3 * d, dev)),
        ),
        (
            "x·W ffn out",
            Box::new(|dev: &Device| broadcast(&hidden, ffn, &w_out, d, dev)),
        ),
        (
            "head split",
            Box::new(|dev: &Device| {
                let x = t3(&x, [b, len, d], dev).cast(dt);
                let w = t3(&w_qkv, [1, d, 3 * d], dev).cast(dt);
                let qkv = x.matmul(w);
                let q = qkv
                    .slice([0..b, 0..len, d..2 * d])
                    .reshape([b, len, h, hd])
                    .swap_dims(1, 2);
                flat(q)
            }),
        ),
    ];
    list.into_iter()
        .map(|(name, op)| {
            let reference = op(&devices.cpu);
            let found = op(&devices.gpu);
            let kind = Kind::Op(name);
            Case {
                kind,
                model: format!("dim {d}, {h} heads"),
                unit: config.ffn.unit,
                precision,
                batch: b,
                len,
                error: relative_error(&found, &reference),
                tolerance: tolerance(kind, precision),
                note: String::new(),
            }
        })
        .collect()
}

/// Greedy text of `tokens` tokens from the checkpoint in `dir`, on the CPU and on the GPU
/// (f32, as `xp sample` runs), compared token by token.
pub fn greedy_sample(
    devices: &Devices,
    config: &Config,
    dir: &Path,
    prompt: &str,
    tokens: usize,
    label: &str,
) -> Result<(Case, String), Error> {
    let cpu = Generator::load(config, dir, &devices.cpu, AttentionKernel::Explicit)?;
    let gpu = Generator::load(config, dir, &devices.gpu, devices.attention)?;
    let prompt_ids = cpu.tokenizer.encode(prompt);
    let how = Sampling {
        tokens,
        temperature: 0.0,
        top_k: None,
        seed: 0,
    };
    let timed = |g: &Generator| {
        let started = std::time::Instant::now();
        let ids = g.generate(&prompt_ids, &how);
        (ids, tokens as f64 / started.elapsed().as_secs_f64())
    };
    let (a, cpu_speed) = timed(&cpu);
    let (b, gpu_speed) = timed(&gpu);
    let speed = format!("; {cpu_speed:.1} tokens/s on the CPU, {gpu_speed:.1} on the GPU");
    let start = prompt_ids.len().max(1);
    let tol = tolerance(Kind::Sample, Precision::F32);
    let diverged = a.iter().zip(&b).position(|(x, y)| x != y);
    let (error, note) = match diverged {
        None => (0.0, format!("{tokens} of {tokens} tokens equal")),
        Some(at) => {
            // The CPU's two best logits where the texts part: a near-tie is rounding's to break.
            let logits = cpu.next_logits(&a[..at]);
            let mut sorted = logits.clone();
            sorted.sort_by(|x, y| y.total_cmp(x));
            let scale = logits.iter().fold(0.0f64, |m, x| m.max((*x as f64).abs()));
            let margin = (sorted[0] - sorted.get(1).copied().unwrap_or(f32::NEG_INFINITY)) as f64
                / scale.max(f64::MIN_POSITIVE);
            let equal = at - start;
            if margin <= tol {
                (
                    margin,
                    format!(
                        "{equal} of {tokens} tokens equal, then a near-tie (top-2 margin {margin:.1e})"
                    ),
                )
            } else {
                (
                    f64::INFINITY,
                    format!(
                        "{equal} of {tokens} tokens equal; then the GPU took another token (top-2 margin {margin:.1e})"
                    ),
                )
            }
        }
    };
    let note = note + &speed;
    let case = Case {
        kind: Kind::Sample,
        model: label.into(),
        unit: config.model.ffn.unit,
        precision: Precision::F32,
        batch: 1,
        len: tokens,
        error,
        tolerance: tol,
        note,
    };
    Ok((case, cpu.tokenizer.decode(&b[start..])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_is_relative_to_the_reference_and_infinite_for_garbage() {
        let reference = [1.0, -4.0, 2.0];
        assert_eq!(relative_error(&reference, &reference), 0.0);
        // 2.0004 is 2.00040007 in f32: a difference of 4.00066e-4 against the largest, |−4|.
        assert!((relative_error(&[1.0, -4.0, 2.0004], &reference) - 1.000_166e-4).abs() < 1e-9);
        assert_eq!(
            relative_error(&[1.0, f32::NAN, 2.0], &reference),
            f64::INFINITY
        );
        assert_eq!(relative_error(&[1.0, 2.0], &reference), f64::INFINITY);
        let case = |error: f64| Case {
            kind: Kind::Logits,
            model: "m".into(),
            unit: Unit::Glu,
            precision: Precision::F32,
            batch: 1,
            len: 1,
            error,
            tolerance: tolerance(Kind::Logits, Precision::F32),
            note: String::new(),
        };
        assert!(case(5e-5).passed());
        assert!(!case(2e-4).passed());
        assert!(!case(f64::NAN).passed());
    }

    #[test]
    fn identical_models_on_one_device_pair_agree_exactly_on_the_cpu() {
        // The harness itself: the same weights on the CPU twice give error 0, so a nonzero
        // error on a GPU is the GPU's.
        let devices = Devices {
            cpu: Device::flex(),
            gpu: Device::flex(),
            backend: "flex".into(),
            adapter: "CPU".into(),
            attention: AttentionKernel::Explicit,
        };
        let config = ModelConfig {
            layers: 1,
            heads: 2,
            dim: 16,
            block_size: 8,
            ..ModelConfig::default()
        };
        let pair = Pair::new(&devices, "t", &config, 11, Precision::F32, 3);
        let [logits, loss] = pair.forward(2, 5, 1);
        assert_eq!((logits.error, loss.error), (0.0, 0.0));
        assert_eq!(pair.gradients(2, 8, 1).error, 0.0);
        for case in ops(&devices, &config, 11, Precision::F32, 2, 5, 1) {
            assert_eq!(case.error, 0.0, "{}", case.kind);
        }
    }
}
