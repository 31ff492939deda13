//! The GPT: token and position embeddings, pre-LN blocks of causal self-attention and a
//! feed-forward unit of the paGating family, a final LayerNorm and the LM head.

use burn::module::{Module, Param};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig,
    Linear, LinearConfig,
};
use burn::tensor::activation::{gelu, log_softmax, mish, relu, sigmoid, silu, softmax, tanh};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, FloatDType, Int, Tensor};

use crate::manifest::{Alpha, AlphaMode, ModelConfig, Unit};

/// nanoGPT's initialisation: N(0, 0.02) weights, zero biases.
const INIT_STD: f64 = 0.02;

/// The LayerNorms' ε (burn's and PyTorch's default), written into exported models too.
const LN_EPSILON: f64 = 1e-5;

fn init(std: f64) -> Initializer {
    Initializer::Normal { mean: 0.0, std }
}

/// nanoGPT's (and GPT-2's) scaled initialisation of the projections that write into the
/// residual stream (attention `proj`, the feed-forward `O`): N(0, 0.02/√(2·layers)), so that
/// the stream's variance does not grow with depth.
fn residual_std(config: &ModelConfig) -> f64 {
    INIT_STD / (2.0 * config.layers.max(1) as f64).sqrt()
}

/// `x · W + b` with the product in `dtype`: the f32 weights are cast on the way in (the cast is
/// differentiable, so their gradients come back in f32) and the output stays in `dtype`.
fn project<const D: usize>(layer: &Linear, x: Tensor<D>, dtype: FloatDType) -> Tensor<D> {
    if dtype == FloatDType::F32 {
        return layer.forward(x);
    }
    let weight = layer.weight.val().cast(dtype).unsqueeze::<D>();
    let y = x.cast(dtype).matmul(weight);
    match &layer.bias {
        Some(bias) => y + bias.val().cast(dtype).unsqueeze::<D>(),
        None => y,
    }
}

fn linear(d_in: usize, d_out: usize, bias: bool, std: f64, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out)
        .with_bias(bias)
        .with_initializer(init(std))
        .init(device)
}

/// The feed-forward unit of a block.
#[derive(Module, Debug)]
pub struct FeedForward {
    a: Linear,
    /// The gate's projection (gated units only).
    b: Option<Linear>,
    o: Linear,
    /// Unconstrained α logit for `alpha = "learnable"`; α = σ(logit), 0 at init so α = 0.5.
    alpha_logit: Option<Param<Tensor<1>>>,
    /// Swish's β, learnable, 1 at init.
    beta: Option<Param<Tensor<1>>>,
    #[module(skip)]
    unit: Unit,
    #[module(skip)]
    alpha: Alpha,
}

impl FeedForward {
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        let d = config.dim as usize;
        let h = config.ffn.hidden_mult as usize * d;
        let unit = config.ffn.unit;
        let learnable = matches!(config.ffn.alpha, Alpha::Mode(AlphaMode::Learnable));
        FeedForward {
            a: linear(d, h, config.bias, INIT_STD, device),
            b: unit
                .is_gated()
                .then(|| linear(d, h, config.bias, INIT_STD, device)),
            o: linear(h, d, config.bias, residual_std(config), device),
            alpha_logit: (unit.is_gated() && learnable)
                .then(|| Param::from_tensor(Tensor::zeros([1], device))),
            beta: (unit == Unit::Swish).then(|| Param::from_tensor(Tensor::ones([1], device))),
            unit,
            alpha: config.ffn.alpha,
        }
    }

    /// α in force as a [1] tensor: the fixed value, the scheduled one, or σ(logit).
    pub fn alpha(&self, scheduled: f64, device: &Device) -> Tensor<1> {
        match (&self.alpha_logit, self.alpha) {
            (Some(logit), _) => sigmoid(logit.val()),
            (None, Alpha::Fixed(a)) => Tensor::full([1], a, device),
            (None, Alpha::Mode(_)) => Tensor::full([1], scheduled, device),
        }
    }

    /// The gate g(b) of this unit.
    fn gate(&self, b: Tensor<3>) -> Tensor<3> {
        match self.unit {
            Unit::Glu | Unit::Gtu => sigmoid(b),
            Unit::Reglu => relu(b),
            Unit::Gelu => gelu(b),
            Unit::Mish => mish(b),
            Unit::Silu => silu(b),
            Unit::Swish => {
                let beta = self
                    .beta
                    .as_ref()
                    .map(|p| p.val())
                    .expect("swish has β")
                    .cast(b.dtype())
                    .reshape([1, 1, 1]);
                b.clone() * sigmoid(b * beta)
            }
            Unit::Mlp => b,
        }
    }

    /// `x`: [batch, time, dim]. `scheduled_alpha` is used by `alpha = "cosine"`. The
    /// projections and the gating run in `dtype`; so does the output.
    pub fn forward(&self, x: Tensor<3>, scheduled_alpha: f64, dtype: FloatDType) -> Tensor<3> {
        let a = project(&self.a, x.clone(), dtype);
        let Some(b) = &self.b else {
            return project(&self.o, gelu(a), dtype);
        };
        let gate = self.gate(project(b, x, dtype));
        let value = if self.unit == Unit::Gtu { tanh(a) } else { a };
        let alpha = self
            .alpha(scheduled_alpha, &value.device())
            .cast(dtype)
            .reshape([1, 1, 1]);
        // α·g + (1 − α): α = 1 is the full gate, α = 0 no gate at all.
        let mixed = gate * alpha.clone() - alpha + 1.0;
        project(&self.o, value * mixed, dtype)
    }
}

/// How a block's attention is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttentionKernel {
    /// The scores materialised: q·kᵀ, causal mask, softmax in f32, dropout, then ·v. Every
    /// backend runs it; memory and time grow with the square of the context.
    #[default]
    Explicit,
    /// burn's fused causal attention (`burn::tensor::module::attention`) in evaluation and
    /// sampling, the explicit one in training.
    FusedForward,
    /// burn's fused causal attention everywhere: a flash forward that keeps each query's
    /// logsumexp and a fused backward, no T×T scores in memory. It has no dropout, so
    /// training with attention dropout takes the explicit path.
    Fused,
}

impl std::fmt::Display for AttentionKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttentionKernel::Explicit => "explicit",
            AttentionKernel::FusedForward => "fused in evaluation, explicit in training",
            AttentionKernel::Fused => "fused",
        })
    }
}

/// Causal multi-head self-attention.
#[derive(Module, Debug)]
pub struct Attention {
    qkv: Linear,
    proj: Linear,
    attn_dropout: Dropout,
    #[module(skip)]
    heads: usize,
}

impl Attention {
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        let d = config.dim as usize;
        Attention {
            qkv: linear(d, 3 * d, config.bias, INIT_STD, device),
            proj: linear(d, d, config.bias, residual_std(config), device),
            attn_dropout: DropoutConfig::new(config.attention_dropout()).init(),
            heads: config.heads as usize,
        }
    }

    /// Whether `kernel` computes this attention fused for `x`: dropout of the weights is only
    /// drawn in training (an autodiff device), and the fused kernel cannot draw it.
    fn fused(&self, kernel: AttentionKernel, x: &Tensor<3>) -> bool {
        let training = x.device().is_autodiff();
        match kernel {
            AttentionKernel::Explicit => false,
            AttentionKernel::FusedForward => !training,
            AttentionKernel::Fused => !training || self.attn_dropout.prob == 0.0,
        }
    }

    /// The products run in `dtype`, the softmax in f32 (the fused kernel accumulates in f32);
    /// the output is in `dtype`. `mask` is needed only by the explicit path.
    pub fn forward(
        &self,
        x: Tensor<3>,
        mask: Option<&Tensor<4, Bool>>,
        kernel: AttentionKernel,
        dtype: FloatDType,
    ) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let hd = d / self.heads;
        let fused = self.fused(kernel, &x);
        let qkv = project(&self.qkv, x, dtype);
        let split = |i: usize| {
            qkv.clone()
                .slice([0..b, 0..t, i * d..(i + 1) * d])
                .reshape([b, t, self.heads, hd])
                .swap_dims(1, 2)
        };
        let (q, k, v) = (split(0), split(1), split(2));
        let mask = mask.filter(|_| !fused);
        let y = attend(q, k, v, mask, &self.attn_dropout, dtype);
        project(&self.proj, y.swap_dims(1, 2).reshape([b, t, d]), dtype)
    }
}

/// Causal attention of `q` over `k` and `v` ([batch, heads, time, head_dim]): the explicit
/// path where a `mask` is given (true above the diagonal; the softmax in f32, the weights cast
/// to `dtype`), burn's fused kernel where none is.
pub(super) fn attend(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    mask: Option<&Tensor<4, Bool>>,
    dropout: &Dropout,
    dtype: FloatDType,
) -> Tensor<4> {
    let Some(mask) = mask else {
        return attention(q, k, v, None, None, causal());
    };
    let hd = q.dims()[3];
    let scores = q.matmul(k.swap_dims(2, 3)).cast(FloatDType::F32) * (1.0 / (hd as f64).sqrt());
    let scores = scores.mask_fill(mask.clone(), f32::NEG_INFINITY);
    dropout.forward(softmax(scores, 3)).cast(dtype).matmul(v)
}

/// The causal mask of `len` positions: true above the diagonal (burn's `tril_mask` marks what
/// lies outside the lower triangle), where a position may not attend.
pub(super) fn causal_mask(len: usize, device: &Device) -> Tensor<4, Bool> {
    Tensor::<2, Bool>::tril_mask([len, len], 0, device).reshape([1, 1, len, len])
}

/// Causal attention at the default scale 1/√head_dim: the options burn's fused kernels serve.
fn causal() -> AttentionModuleOptions {
    AttentionModuleOptions {
        is_causal: true,
        ..AttentionModuleOptions::default()
    }
}

/// A pre-LN transformer block.
#[derive(Module, Debug)]
pub struct Block {
    ln1: LayerNorm,
    attn: Attention,
    ln2: LayerNorm,
    ffn: FeedForward,
    dropout: Dropout,
}

impl Block {
    /// The residual stream and the LayerNorms stay f32 whatever `dtype` the products run in.
    pub fn forward(
        &self,
        x: Tensor<3>,
        mask: Option<&Tensor<4, Bool>>,
        kernel: AttentionKernel,
        alpha: f64,
        dtype: FloatDType,
    ) -> Tensor<3> {
        let attn = self
            .attn
            .forward(self.ln1.forward(x.clone()), mask, kernel, dtype);
        let x = x + self.dropout.forward(attn.cast(FloatDType::F32));
        let ffn = self.ffn.forward(self.ln2.forward(x.clone()), alpha, dtype);
        x + self.dropout.forward(ffn.cast(FloatDType::F32))
    }
}

/// A decoder-only GPT.
#[derive(Module, Debug)]
pub struct Gpt {
    tokens: Embedding,
    positions: Embedding,
    dropout: Dropout,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    /// The LM head; `None` when tied to the token embedding.
    head: Option<Linear>,
    #[module(skip)]
    block_size: usize,
    /// The dtype of the matrix products: f32, or f16/bf16 for mixed precision.
    #[module(skip)]
    compute: FloatDType,
    #[module(skip)]
    attention: AttentionKernel,
}

impl Gpt {
    pub fn new(config: &ModelConfig, vocab: usize, device: &Device) -> Self {
        let d = config.dim as usize;
        let layer_norm = || {
            LayerNormConfig::new(d)
                .with_bias(config.bias)
                .with_epsilon(LN_EPSILON)
                .init(device)
        };
        let blocks = (0..config.layers)
            .map(|_| Block {
                ln1: layer_norm(),
                attn: Attention::new(config, device),
                ln2: layer_norm(),
                ffn: FeedForward::new(config, device),
                dropout: DropoutConfig::new(config.dropout).init(),
            })
            .collect();
        Gpt {
            tokens: EmbeddingConfig::new(vocab, d)
                .with_initializer(init(INIT_STD))
                .init(device),
            positions: EmbeddingConfig::new(config.block_size as usize, d)
                .with_initializer(init(INIT_STD))
                .init(device),
            dropout: DropoutConfig::new(config.dropout).init(),
            blocks,
            ln_f: layer_norm(),
            head: (!config.tie_weights).then(|| linear(d, vocab, false, INIT_STD, device)),
            block_size: config.block_size as usize,
            compute: FloatDType::F32,
            attention: AttentionKernel::Explicit,
        }
    }

    /// Mixed precision: the matrix products in `dtype` (f16 or bf16), as PyTorch's autocast
    /// does; the weights, LayerNorms, softmax and loss stay f32.
    pub fn with_compute(mut self, dtype: FloatDType) -> Self {
        self.compute = dtype;
        self
    }

    /// The attention kernel: `device::attention_kernel` says which one a device can take.
    pub fn with_attention(mut self, kernel: AttentionKernel) -> Self {
        self.attention = kernel;
        self
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Logits [batch, time, vocab] for token ids [batch, time].
    pub fn forward(&self, ids: Tensor<2, Int>, alpha: f64) -> Tensor<3> {
        let [b, t] = ids.dims();
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(0..t as i64, &device).reshape([1, t]);
        let x = self.tokens.forward(ids) + self.positions.forward(positions);
        let mut x = self.dropout.forward(x);
        // Only the explicit path reads the mask.
        let explicit = self
            .blocks
            .iter()
            .any(|block| !block.attn.fused(self.attention, &x));
        let mask = explicit.then(|| causal_mask(t, &device));
        for block in &self.blocks {
            x = block.forward(x, mask.as_ref(), self.attention, alpha, self.compute);
        }
        let x = self.ln_f.forward(x);
        let logits = match &self.head {
            Some(head) => project(head, x, self.compute),
            None => {
                let weight = self.tokens.weight.val().cast(self.compute);
                let [vocab, d] = weight.dims();
                x.reshape([b * t, d])
                    .cast(self.compute)
                    .matmul(weight.transpose())
                    .reshape([b, t, vocab])
            }
        };
        logits.cast(FloatDType::F32)
    }

    /// Mean cross-entropy of the next-token predictions, a [1] tensor.
    pub fn loss(&self, ids: Tensor<2, Int>, targets: Tensor<2, Int>, alpha: f64) -> Tensor<1> {
        Self::loss_of(self.forward(ids, alpha), targets)
    }

    /// Mean cross-entropy of logits [batch, time, vocab] against targets [batch, time].
    pub fn loss_of(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<1> {
        let [b, t, v] = logits.dims();
        let log_probs = log_softmax(logits.reshape([b * t, v]), 1);
        let picked = log_probs.gather(1, targets.reshape([b * t, 1]));
        picked.mean().neg()
    }

    /// α in force in each block (for the α metrics).
    pub fn alphas(&self, scheduled: f64, device: &Device) -> Vec<Tensor<1>> {
        self.blocks
            .iter()
            .map(|b| b.ffn.alpha(scheduled, device))
            .collect()
    }
}

/// The model's weights as plain arrays, for `onnx::model`: α baked in as it is at `alpha`
/// (the scheduled value of a cosine-α run at the checkpoint's step; fixed and learned α are
/// the model's own).
pub(super) fn export(model: &Gpt, alpha: f64) -> crate::onnx::Gpt {
    use crate::onnx;
    fn array<const D: usize>(t: Tensor<D>) -> onnx::Array {
        let shape = t.dims().to_vec();
        let values = t
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        onnx::Array { shape, values }
    }
    let linear = |l: &Linear| onnx::Linear {
        weight: array(l.weight.val()),
        bias: l.bias.as_ref().map(|b| array(b.val())),
    };
    let layer_norm = |l: &LayerNorm| onnx::LayerNorm {
        gamma: array(l.gamma.val()),
        beta: l.beta.as_ref().map(|b| array(b.val())),
        epsilon: LN_EPSILON as f32,
    };
    let device = model.tokens.weight.val().device();
    let blocks = model
        .blocks
        .iter()
        .map(|block| {
            let ffn = &block.ffn;
            let gate = match ffn.unit {
                Unit::Glu | Unit::Gtu => Some(onnx::Gate::Sigmoid),
                Unit::Reglu => Some(onnx::Gate::Relu),
                Unit::Gelu => Some(onnx::Gate::Gelu),
                Unit::Mish => Some(onnx::Gate::Mish),
                Unit::Silu => Some(onnx::Gate::Silu),
                Unit::Swish => Some(onnx::Gate::Swish {
                    beta: ffn
                        .beta
                        .as_ref()
                        .and_then(|p| array(p.val()).values.first().copied())
                        .unwrap_or(1.0),
                }),
                Unit::Mlp => None,
            };
            let gated = ffn.b.as_ref().zip(gate).map(|(b, gate)| onnx::Gated {
                b: linear(b),
                gate,
                tanh_value: ffn.unit == Unit::Gtu,
                alpha: array(ffn.alpha(alpha, &device))
                    .values
                    .first()
                    .copied()
                    .unwrap_or(1.0),
            });
            onnx::Block {
                ln1: layer_norm(&block.ln1),
                qkv: linear(&block.attn.qkv),
                proj: linear(&block.attn.proj),
                heads: block.attn.heads,
                ln2: layer_norm(&block.ln2),
                ffn: onnx::FeedForward {
                    a: linear(&ffn.a),
                    gated,
                    o: linear(&ffn.o),
                },
            }
        })
        .collect();
    onnx::Gpt {
        tokens: array(model.tokens.weight.val()),
        positions: array(model.positions.weight.val()),
        blocks,
        ln_f: layer_norm(&model.ln_f),
        head: model.head.as_ref().map(|h| array(h.weight.val())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::FfnConfig;
    use burn::tensor::TensorData;

    /// A one-dimensional unit with hand-set weights: A = 2, B = 1, O = 1, no biases.
    fn unit(kind: Unit, alpha: Alpha) -> FeedForward {
        let device = Device::flex();
        let config = ModelConfig {
            dim: 1,
            heads: 1,
            bias: false,
            ffn: FfnConfig {
                unit: kind,
                alpha,
                hidden_mult: 1,
            },
            ..ModelConfig::default()
        };
        let mut ffn = FeedForward::new(&config, &device);
        let set = |value: f32| {
            Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![value], [1, 1]),
                &device,
            ))
        };
        ffn.a.weight = set(2.0);
        if let Some(b) = ffn.b.as_mut() {
            b.weight = set(1.0);
        }
        ffn.o.weight = set(1.0);
        ffn
    }

    fn at(ffn: &FeedForward, x: f32, scheduled: f64) -> f32 {
        let device = Device::flex();
        let input = Tensor::<3>::from_data(TensorData::new(vec![x], [1, 1, 1]), &device);
        ffn.forward(input, scheduled, FloatDType::F32)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()[0]
    }

    fn close(a: f32, b: f64) {
        assert!((a as f64 - b).abs() < 1e-4, "{a} vs {b}");
    }

    /// Root mean square of a weight: its standard deviation, for a zero-mean initialisation.
    fn rms(weight: &Param<Tensor<2>>) -> f64 {
        let v = weight.val().into_data().try_to_vec::<f32>().unwrap();
        (v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
    }

    #[test]
    fn residual_projections_get_the_scaled_initialisation() {
        let config = ModelConfig {
            layers: 8,
            dim: 64,
            heads: 4,
            ffn: FfnConfig {
                unit: Unit::Glu,
                alpha: Alpha::Fixed(1.0),
                hidden_mult: 4,
            },
            ..ModelConfig::default()
        };
        let gpt = Gpt::new(&config, 65, &Device::flex());
        // 0.02 / √(2·8) = 0.005 for the projections into the residual stream, 0.02 elsewhere.
        let block = &gpt.blocks[3];
        for (name, weight, std) in [
            ("attn.proj", &block.attn.proj.weight, 0.005),
            ("ffn.o", &block.ffn.o.weight, 0.005),
            ("attn.qkv", &block.attn.qkv.weight, 0.02),
            ("ffn.a", &block.ffn.a.weight, 0.02),
        ] {
            let found = rms(weight);
            assert!((found / std - 1.0).abs() < 0.05, "{name}: {found} vs {std}");
        }
    }

    #[test]
    fn the_fused_attention_computes_what_the_explicit_one_does() {
        // The wiring around burn's attention op (heads split, causal options, output layout),
        // on the CPU backend: forward and gradients of the whole model, both paths.
        let device = Device::flex();
        let config = ModelConfig {
            layers: 2,
            heads: 4,
            dim: 32,
            block_size: 16,
            dropout: 0.0,
            ..ModelConfig::default()
        };
        let train = device.clone().autodiff();
        train.seed(5);
        let explicit = Gpt::new(&config, 23, &train);
        let fused = explicit.clone().with_attention(AttentionKernel::Fused);
        let ids: Vec<i64> = (0..2 * 13).map(|i| (i * 7 % 23) as i64).collect();
        let targets: Vec<i64> = (0..2 * 13).map(|i| (i * 5 % 23) as i64).collect();
        let tensor =
            |v: &[i64]| Tensor::<2, Int>::from_data(TensorData::new(v.to_vec(), [2, 13]), &train);
        let flat = |t: Tensor<3>| t.into_data().try_to_vec::<f32>().unwrap();
        let (a, b) = (
            flat(explicit.forward(tensor(&ids), 1.0)),
            flat(fused.forward(tensor(&ids), 1.0)),
        );
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-5, "logits differ by {worst}");
        let grad = |model: &Gpt| {
            let grads = model.loss(tensor(&ids), tensor(&targets), 1.0).backward();
            let w = &model.blocks[0].attn.qkv.weight;
            w.val()
                .grad(&grads)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let (a, b) = (grad(&explicit), grad(&fused));
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        let scale = a.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(
            scale > 0.0 && worst <= 1e-4 * scale,
            "qkv gradients differ by {worst}"
        );
    }

    #[test]
    fn attention_dropout_is_only_ever_drawn_explicitly() {
        let config = ModelConfig {
            attention_dropout: Some(0.2),
            ..ModelConfig::default()
        };
        let attn = Attention::new(&config, &Device::flex());
        let x = |device: &Device| Tensor::<3>::zeros([1, 2, 128], device);
        let train = Device::flex().autodiff();
        assert!(!attn.fused(AttentionKernel::Fused, &x(&train)));
        assert!(attn.fused(AttentionKernel::Fused, &x(&Device::flex())));
        assert!(!attn.fused(AttentionKernel::FusedForward, &x(&train)));
        assert!(attn.fused(AttentionKernel::FusedForward, &x(&Device::flex())));
        assert!(!attn.fused(AttentionKernel::Explicit, &x(&Device::flex())));
        let none = Attention::new(
            &ModelConfig {
                dropout: 0.3,
                attention_dropout: Some(0.0),
                ..ModelConfig::default()
            },
            &Device::flex(),
        );
        assert!(none.fused(AttentionKernel::Fused, &x(&train)));
    }

    #[test]
    fn units_match_hand_computed_values() {
        // x = 0.5: A(x) = 1, B(x) = 0.5; σ(0.5) = 0.622459, tanh(1) = 0.761594.
        let s = 0.622_459_3;
        close(at(&unit(Unit::Glu, Alpha::Fixed(1.0)), 0.5, 0.0), s);
        close(
            at(&unit(Unit::Glu, Alpha::Fixed(0.5)), 0.5, 0.0),
            0.5 * s + 0.5,
        );
        close(at(&unit(Unit::Glu, Alpha::Fixed(0.0)), 0.5, 0.0), 1.0);
        close(
            at(&unit(Unit::Gtu, Alpha::Fixed(1.0)), 0.5, 0.0),
            0.761_594_2 * s,
        );
        close(at(&unit(Unit::Reglu, Alpha::Fixed(1.0)), 0.5, 0.0), 0.5);
        close(at(&unit(Unit::Reglu, Alpha::Fixed(1.0)), -0.5, 0.0), 0.0);
        // GELU(0.5) = 0.5·Φ(0.5) = 0.345731; A(-0.5)... here x = 0.5 so A = 1.
        close(
            at(&unit(Unit::Gelu, Alpha::Fixed(1.0)), 0.5, 0.0),
            0.345_731_4,
        );
        // Mish(0.5) = 0.5·tanh(softplus(0.5)) = 0.5·tanh(0.974077) = 0.5·0.750490 = 0.375245.
        close(
            at(&unit(Unit::Mish, Alpha::Fixed(1.0)), 0.5, 0.0),
            0.375_245_2,
        );
        // SiLU(0.5) = 0.5·σ(0.5) = 0.311230; swish with β = 1 is the same.
        close(
            at(&unit(Unit::Silu, Alpha::Fixed(1.0)), 0.5, 0.0),
            0.311_229_6,
        );
        close(
            at(&unit(Unit::Swish, Alpha::Fixed(1.0)), 0.5, 0.0),
            0.311_229_6,
        );
        // mlp: O(GELU(A(x))) = GELU(1) = 0.841345.
        close(
            at(&unit(Unit::Mlp, Alpha::Fixed(1.0)), 0.5, 0.0),
            0.841_344_7,
        );
        // learnable α starts at σ(0) = 0.5; cosine takes the scheduled value.
        close(
            at(
                &unit(Unit::Glu, Alpha::Mode(AlphaMode::Learnable)),
                0.5,
                0.0,
            ),
            0.5 * s + 0.5,
        );
        close(
            at(&unit(Unit::Glu, Alpha::Mode(AlphaMode::Cosine)), 0.5, 0.25),
            0.25 * s + 0.75,
        );
    }
}
