//! Validated run specs: the resolved config of one run, its content key and its estimates.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::manifest::{Config, Precision, Unit};

/// One run, fully resolved: the only kind of run the executor accepts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunSpec {
    /// Position in the plan (0-based).
    pub index: usize,
    /// Content key: blake3 of the canonical encoding of what determines the run's outcome.
    pub key: String,
    pub config: Config,
    /// The swept settings of this run, in axis order.
    pub swept: Vec<(String, Value)>,
    pub vocab_size: usize,
    /// Digest of the corpus files, for `data.path` corpora.
    pub corpus: Option<String>,
    pub params: u64,
    pub memory: Memory,
    /// Tokens the run trains on: steps × batch_size × grad_accum × block_size.
    pub tokens: u64,
    /// Index of the run's layer stack in `Plan::layer_sets`.
    #[serde(skip, default)]
    pub layers: usize,
    /// Where the run pauses for early-stopping decisions, in a sweep that stops runs early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stop: Option<Rungs>,
}

/// A run's place in an early-stopped sweep.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Rungs {
    /// Its place in the order runs enter the search in (a seeded shuffle of the plan).
    pub draw: u64,
    pub bracket: u32,
    /// The steps it pauses at, below its last.
    pub steps: Vec<u64>,
}

impl RunSpec {
    /// Every leaf setting of the resolved config, by dotted key (`train.lr`, `model.ffn.unit`):
    /// the one flattening that reports, exports and the dashboard list.
    pub fn settings(&self) -> std::collections::BTreeMap<String, Value> {
        // A config is plain data (no maps with non-string keys), so it always serialises.
        let tree = serde_json::to_value(&self.config).unwrap_or_default();
        crate::manifest::layers::flatten(&tree)
    }
}

/// What determines a run's outcome, and so its key: everything resolved except the
/// experiment's name and description and the memory and loader settings.
#[derive(Serialize)]
struct KeyMaterial<'a> {
    xp_key: u32,
    model: &'a crate::manifest::ModelConfig,
    data: &'a crate::manifest::DataConfig,
    train: &'a crate::manifest::TrainConfig,
    device: crate::manifest::DeviceChoice,
    device_order: &'a [crate::manifest::DeviceKind],
    precision: Precision,
    corpus: Option<&'a str>,
}

/// The content key of a run: blake3 over a CBOR encoding of the typed, resolved settings.
///
/// Hashing typed values, not manifest text, makes the key independent of key order and of
/// how numbers were spelled (1e-3, 0.001; 100, 1_00), and CBOR of structs involves no map
/// whose order a feature flag could change (serde_json's `preserve_order` would).
pub fn content_key(config: &Config, corpus: Option<&str>) -> String {
    let material = KeyMaterial {
        xp_key: 1,
        model: &config.model,
        data: &config.data,
        train: &config.train,
        device: config.hardware.device,
        device_order: &config.hardware.device_order,
        precision: config.hardware.precision,
        corpus,
    };
    let mut bytes = Vec::with_capacity(512);
    ciborium::into_writer(&material, &mut bytes).expect("writing to a Vec cannot fail");
    blake3::hash(&bytes).to_hex().to_string()
}

/// The key of a run in an early-stopped sweep: its content key with the experiment, the
/// early-stopping settings and its bracket, since decisions belong to one search and a run
/// shared with another experiment would be paused and stopped by both.
pub fn search_key(
    content_key: &str,
    experiment: &str,
    settings: &crate::early_stop::EarlyStop,
    bracket: u32,
) -> String {
    let mut bytes = Vec::with_capacity(256);
    ciborium::into_writer(&(content_key, experiment, settings, bracket), &mut bytes)
        .expect("writing to a Vec cannot fail");
    blake3::hash(&bytes).to_hex().to_string()
}

/// Parameters of the GPT described by `config` with this vocabulary (see docs/manifest.md).
pub fn param_count(config: &Config, vocab: usize) -> u64 {
    let m = &config.model;
    let (d, l, t, v) = (
        m.dim as u64,
        m.layers as u64,
        m.block_size as u64,
        vocab as u64,
    );
    let h = m.ffn.hidden_mult as u64 * d;
    let b = u64::from(m.bias);
    let layer_norm = d + b * d;
    let attention = 4 * d * d + b * 4 * d;
    let ffn = match m.ffn.unit {
        Unit::Mlp => 2 * d * h + b * (h + d),
        gated => {
            let alpha = u64::from(matches!(
                m.ffn.alpha,
                crate::manifest::Alpha::Mode(crate::manifest::AlphaMode::Learnable)
            ));
            let beta = u64::from(gated == Unit::Swish);
            3 * d * h + b * (2 * h + d) + alpha + beta
        }
    };
    let embeddings = v * d + t * d;
    let head = if m.tie_weights { 0 } else { d * v };
    embeddings + l * (2 * layer_norm + attention + ffn) + layer_norm + head
}

/// Device bytes per attention score of a block in training (see [`memory`]).
const SCORE_BYTES: u64 = 12;

/// Estimated training memory of one run, in bytes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Memory {
    pub weights: u64,
    pub grads: u64,
    pub optimizer: u64,
    pub activations: u64,
    pub total: u64,
}

/// Weights, gradients and AdamW's two moments in f32, plus the activations autodiff keeps
/// for one micro-batch (see docs/manifest.md for the per-layer count).
pub fn memory(config: &Config, params: u64, vocab: usize) -> Memory {
    let m = &config.model;
    let (bsz, t, d, heads) = (
        config.train.batch_size as u64,
        m.block_size as u64,
        m.dim as u64,
        m.heads as u64,
    );
    let h = m.ffn.hidden_mult as u64 * d;
    let ffn_tensors = if m.ffn.unit.is_gated() { 4 } else { 2 };
    let per_layer = bsz * t * (10 * d + ffn_tensors * h);
    let head = 3 * bsz * t * vocab as u64;
    let embeddings = 2 * bsz * t * d;
    let element = match config.hardware.precision {
        Precision::F32 => 4,
        Precision::F16 | Precision::Bf16 => 2,
    };
    // The attention's T×T chain runs in f32 whatever the precision (the softmax, its dropout
    // mask and the weights are kept for the backward pass, the scores' gradient made in it):
    // 12 bytes a score, what the peaks measured on an H200 at block 256, 512 and 1024 need
    // (docs/benchmarks.md; the estimate is then 14% under, 5% under and 2% over them).
    let scores = SCORE_BYTES * m.layers as u64 * bsz * heads * t * t;
    let activations = element * (m.layers as u64 * per_layer + head + embeddings) + scores;
    let (weights, grads, optimizer) = (4 * params, 4 * params, 8 * params);
    Memory {
        weights,
        grads,
        optimizer,
        activations,
        total: weights + grads + optimizer + activations,
    }
}

/// Tokens a run trains on.
pub fn tokens(config: &Config) -> u64 {
    let t = &config.train;
    t.steps * t.batch_size as u64 * t.grad_accum as u64 * config.model.block_size as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Alpha, AlphaMode};

    fn shakespeare_char() -> Config {
        let mut c = Config::default();
        c.model.layers = 6;
        c.model.heads = 6;
        c.model.dim = 384;
        c.model.block_size = 256;
        c.model.bias = false;
        c
    }

    #[test]
    fn counts_nanogpt_parameters() {
        // By hand: embeddings 65·384 + 256·384, six blocks of two bias-free LayerNorms (2·384),
        // attention 4·384² and MLP 2·384·1536, a final LayerNorm and an untied 384×65 head.
        // PyTorch counts the same model at 10,770,048 (benches/torch_reference.py).
        let c = shakespeare_char();
        let block = 2 * 384 + 4 * 384 * 384 + 2 * 384 * 1536;
        assert_eq!(
            param_count(&c, 65),
            65 * 384 + 256 * 384 + 6 * block + 384 + 384 * 65
        );
        assert_eq!(param_count(&c, 65), 10_770_048);
        let mut tied = c.clone();
        tied.model.tie_weights = true;
        assert_eq!(param_count(&c, 65) - param_count(&tied, 65), 65 * 384);
    }

    #[test]
    fn gated_units_add_a_projection() {
        let mut c = shakespeare_char();
        let mlp = param_count(&c, 65);
        c.model.ffn.unit = Unit::Glu;
        let glu = param_count(&c, 65);
        assert_eq!(glu - mlp, 6 * 384 * 4 * 384);
        c.model.ffn.alpha = Alpha::Mode(AlphaMode::Learnable);
        assert_eq!(param_count(&c, 65) - glu, 6);
    }

    #[test]
    fn key_is_pinned() {
        // The key of the default config; if this changes, every stored run's key changes and
        // `xp run` would queue completed work again: bump `xp_key` deliberately, not by accident.
        assert_eq!(
            &content_key(&Config::default(), None)[..16],
            "9400a51366e1d2ba"
        );
    }

    #[test]
    fn key_ignores_names_but_not_settings() {
        let c = Config::default();
        let mut renamed = c.clone();
        renamed.experiment.name = "other".into();
        assert_eq!(content_key(&c, None), content_key(&renamed, None));
        let mut dropped = c.clone();
        dropped.model.attention_dropout = Some(0.0);
        assert_ne!(content_key(&c, None), content_key(&dropped, None));
        let mut changed = c.clone();
        changed.train.lr = 2e-3;
        assert_ne!(content_key(&c, None), content_key(&changed, None));
        assert_ne!(content_key(&c, None), content_key(&c, Some("corpus")));
    }

    #[test]
    fn memory_adds_up() {
        let c = shakespeare_char();
        let p = param_count(&c, 65);
        let m = memory(&c, p, 65);
        assert_eq!(m.weights + m.grads + m.optimizer, 16 * p);
        assert_eq!(m.total, 16 * p + m.activations);
    }

    #[test]
    fn attention_scores_count_twelve_bytes_in_any_precision() {
        // Half precision halves every activation but the f32 chain of the T×T scores.
        let mut c = shakespeare_char();
        c.train.batch_size = 64;
        let p = param_count(&c, 65);
        let f32 = memory(&c, p, 65).activations;
        c.hardware.precision = Precision::F16;
        let f16 = memory(&c, p, 65).activations;
        let scores = 12 * 6 * 64 * 6 * 256 * 256;
        assert_eq!(f32 - scores, 2 * (f16 - scores));
        // The shakespeare-char run measured on an H200 in f16 (glu, bias off) peaked at 4.69 GB.
        c.model.ffn.unit = Unit::Glu;
        let p = param_count(&c, 65);
        let total = memory(&c, p, 65).total as f64 / 1e9;
        assert!((3.9..4.7).contains(&total), "{total}");
    }
}
