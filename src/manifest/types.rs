//! Manifest types: the one definition of the TOML format, its JSON schema and resolved configs.
//!
//! Every struct here is `#[serde(default)]` so that a manifest may leave any key out: the
//! value then comes from a lower layer (built-in defaults, hardware profile, model preset).
//! The same structs, fully populated, are the resolved [`Config`] of a run.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An experiment manifest (`experiments/*.toml`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(default, deny_unknown_fields)]
#[schemars(title = "xp experiment manifest")]
pub struct Manifest {
    pub experiment: ExperimentMeta,
    pub model: ModelConfig,
    pub data: DataConfig,
    pub train: TrainConfig,
    pub hardware: HardwareConfig,
    pub executor: ExecutorConfig,
    /// Hardware profiles defined or overridden by this manifest, by name.
    pub profiles: BTreeMap<String, ProfileDef>,
    pub sweep: Sweep,
}

/// The fully resolved configuration of one run: every layer applied, no implicit defaults left.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub experiment: ExperimentMeta,
    pub model: ModelConfig,
    pub data: DataConfig,
    pub train: TrainConfig,
    pub hardware: HardwareConfig,
    pub executor: ExecutorConfig,
}

/// What the experiment is called and why it exists.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentMeta {
    /// Name under which runs are grouped in the store; defaults to the manifest's file stem.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9_.-]+$"))]
    pub name: String,
    /// Free text shown by `xp status` and `xp show`.
    pub description: String,
}

/// A decoder-only GPT.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// A named size; explicit keys in this table override its values.
    pub preset: Option<Preset>,
    /// Transformer blocks.
    #[schemars(range(min = 1, max = 256))]
    pub layers: u32,
    /// Attention heads per block; must divide `dim`.
    #[schemars(range(min = 1, max = 256))]
    pub heads: u32,
    /// Width of the residual stream.
    #[schemars(range(min = 1, max = 65536))]
    pub dim: u32,
    /// Context length in tokens.
    #[schemars(range(min = 1, max = 65536))]
    pub block_size: u32,
    /// Dropout of the embeddings and of each residual branch, in [0, 1).
    #[schemars(range(min = 0.0), extend("exclusiveMaximum" = 1.0))]
    pub dropout: f64,
    /// Dropout of the attention weights, in [0, 1); absent: as `dropout` (nanoGPT's one
    /// dropout). Above 0 it keeps training on the explicit attention, which materialises the
    /// scores: a fused attention kernel has no dropout (docs/model.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0), extend("exclusiveMaximum" = 1.0))]
    pub attention_dropout: Option<f64>,
    /// Biases in linear layers and LayerNorms.
    pub bias: bool,
    /// Share the token embedding with the LM head.
    pub tie_weights: bool,
    pub ffn: FfnConfig,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            preset: None,
            layers: 4,
            heads: 4,
            dim: 128,
            block_size: 128,
            dropout: 0.1,
            attention_dropout: None,
            bias: true,
            tie_weights: false,
            ffn: FfnConfig::default(),
        }
    }
}

impl ModelConfig {
    /// The dropout of the attention weights in force: `attention_dropout`, else `dropout`.
    pub fn attention_dropout(&self) -> f64 {
        self.attention_dropout.unwrap_or(self.dropout)
    }
}

/// Model sizes of our users' reports.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// About 0.1M parameters.
    Tiny,
    /// About 2M parameters.
    Small,
    /// About 25M parameters.
    Medium,
    /// About 125M parameters.
    Large,
    /// nanoGPT's shakespeare-char: 6 layers, 6 heads, 384 dim, block 256, dropout 0.2.
    ShakespeareChar,
}

/// The feed-forward unit of every block.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FfnConfig {
    pub unit: Unit,
    /// Gate strength: a number in [0, 1], "learnable" or "cosine" (1 → 0 over training).
    pub alpha: Alpha,
    /// Hidden width as a multiple of `model.dim`.
    #[schemars(range(min = 1, max = 64))]
    pub hidden_mult: u32,
}

impl Default for FfnConfig {
    fn default() -> Self {
        Self {
            unit: Unit::Mlp,
            alpha: Alpha::Fixed(1.0),
            hidden_mult: 4,
        }
    }
}

/// Feed-forward units: the ungated baseline and the paGating family.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// O(GELU(A(x))), ungated.
    Mlp,
    /// Gate σ.
    Glu,
    /// tanh(A(x)) with gate σ.
    Gtu,
    /// Gate x·σ(βx), β learnable.
    Swish,
    /// Gate ReLU.
    Reglu,
    /// Gate GELU.
    Gelu,
    /// Gate Mish.
    Mish,
    /// Gate SiLU.
    Silu,
}

impl Unit {
    pub const ALL: [Unit; 8] = [
        Unit::Mlp,
        Unit::Glu,
        Unit::Gtu,
        Unit::Swish,
        Unit::Reglu,
        Unit::Gelu,
        Unit::Mish,
        Unit::Silu,
    ];

    pub fn is_gated(self) -> bool {
        self != Unit::Mlp
    }
}

impl std::fmt::Display for Unit {
    /// As the manifest spells it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unit::Mlp => "mlp",
            Unit::Glu => "glu",
            Unit::Gtu => "gtu",
            Unit::Swish => "swish",
            Unit::Reglu => "reglu",
            Unit::Gelu => "gelu",
            Unit::Mish => "mish",
            Unit::Silu => "silu",
        })
    }
}

/// Gate strength α.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum Alpha {
    /// A fixed α in [0, 1].
    Fixed(#[schemars(range(min = 0.0, max = 1.0))] f64),
    Mode(AlphaMode),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AlphaMode {
    /// A parameter, passed through a sigmoid, initialised so that α = 0.5.
    Learnable,
    /// Scheduled from 1 to 0 over training with a cosine.
    Cosine,
}

/// The training corpus and how it is tokenized.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// A named dataset, downloaded once into the cache and verified by checksum.
    pub source: Option<Dataset>,
    /// A file or glob of text files, relative to the manifest (instead of `source`).
    #[schemars(length(min = 1))]
    pub path: Option<String>,
    pub tokenizer: Tokenizer,
    /// Share of the corpus held out for validation, in (0, 1).
    #[schemars(extend("exclusiveMinimum" = 0.0, "exclusiveMaximum" = 1.0))]
    pub val_fraction: f64,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            source: None,
            path: None,
            tokenizer: Tokenizer::Char,
            val_fraction: 0.1,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Dataset {
    /// The char-rnn tiny Shakespeare corpus (1,115,394 bytes).
    Tinyshakespeare,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Tokenizer {
    /// One token per character; the vocabulary comes from the corpus.
    Char,
    /// GPT-2 byte-pair encoding (50,257 tokens), bundled, works offline.
    Gpt2,
}

/// Optimisation and evaluation.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub seed: u64,
    /// Optimiser steps.
    #[schemars(range(min = 1))]
    pub steps: u64,
    /// Sequences per micro-batch.
    #[schemars(range(min = 1, max = 1048576))]
    pub batch_size: u32,
    /// Micro-batches per optimiser step.
    #[schemars(range(min = 1, max = 65536))]
    pub grad_accum: u32,
    /// Peak learning rate, after warm-up.
    #[schemars(extend("exclusiveMinimum" = 0.0), range(max = 10.0))]
    pub lr: f64,
    /// Learning rate at the end of the cosine decay; at most `lr`.
    #[schemars(range(min = 0.0, max = 10.0))]
    pub min_lr: f64,
    /// Steps of linear warm-up.
    pub warmup_steps: u64,
    /// AdamW weight decay, applied to matrices only.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub weight_decay: f64,
    #[schemars(range(min = 0.0), extend("exclusiveMaximum" = 1.0))]
    pub beta1: f64,
    #[schemars(range(min = 0.0), extend("exclusiveMaximum" = 1.0))]
    pub beta2: f64,
    /// Global gradient-norm clip; 0 turns clipping off.
    #[schemars(range(min = 0.0))]
    pub grad_clip: f64,
    /// Evaluate every N steps.
    #[schemars(range(min = 1))]
    pub eval_every: u64,
    /// Validation batches per evaluation.
    #[schemars(range(min = 1))]
    pub eval_batches: u32,
    /// Checkpoint every N steps (and always at the end); 0 checkpoints only at the end.
    pub checkpoint_every: u64,
    /// Periodic checkpoints kept besides the best.
    #[schemars(range(min = 1))]
    pub keep_last: u32,
    /// Keep the checkpoint with the best validation loss.
    pub keep_best: bool,
    /// Record train metrics every N steps.
    #[schemars(range(min = 1))]
    pub log_every: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 1337,
            steps: 2000,
            batch_size: 32,
            grad_accum: 1,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup_steps: 100,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            grad_clip: 1.0,
            eval_every: 250,
            eval_batches: 20,
            checkpoint_every: 500,
            keep_last: 2,
            keep_best: true,
            log_every: 10,
        }
    }
}

/// Where a run executes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HardwareConfig {
    /// "auto" (chosen from detected RAM and GPU), a built-in profile or a `[profiles.NAME]`.
    #[schemars(length(min = 1))]
    pub profile: String,
    /// "auto" takes the first available device of the profile's `device_order`.
    pub device: DeviceChoice,
    /// Devices to try, in order, when `device = "auto"`.
    #[schemars(length(min = 1))]
    pub device_order: Vec<DeviceKind>,
    /// Training memory a run may use, in GB; a run estimated above it is refused.
    #[schemars(extend("exclusiveMinimum" = 0.0))]
    pub memory_budget_gb: f64,
    pub precision: Precision,
    /// Threads preparing batches.
    #[schemars(range(min = 1, max = 256))]
    pub loader_threads: u32,
}

impl Default for HardwareConfig {
    fn default() -> Self {
        Self {
            profile: "auto".into(),
            device: DeviceChoice::Auto,
            device_order: vec![DeviceKind::Cpu],
            memory_budget_gb: 4.0,
            precision: Precision::F32,
            loader_threads: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    Auto,
    Metal,
    Vulkan,
    // Not offered: no build of xp has burn's CUDA backend (its build downloads LLVM). Still
    // read, so that runs stored by an older xp load; they fail with that reason.
    #[schemars(skip)]
    Cuda,
    Cpu,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Metal,
    Vulkan,
    // Not offered, as `DeviceChoice::Cuda`.
    #[schemars(skip)]
    Cuda,
    Cpu,
}

/// f32, or mixed precision: the matrix products in f16 or bf16 while the weights, the optimizer
/// and the loss stay f32. The device's shaders must have the half type's arithmetic.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    F16,
    Bf16,
}

impl std::fmt::Display for Precision {
    /// As the manifest spells it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        })
    }
}

/// Where and how a plan's runs execute: on this machine by one or several worker processes,
/// or as Slurm job arrays. Not part of a run's content key: a run trained on a laptop and on a
/// cluster is the same run.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutorConfig {
    /// "local" (this machine) or "slurm" (job arrays; `xp run` submits and returns).
    pub kind: ExecutorKind,
    /// local: runs trained at once, each by a worker process of its own.
    #[schemars(range(min = 1, max = 256))]
    pub jobs: u32,
    /// local: the GPUs (by index among this machine's GPUs) to spread workers over, several
    /// workers per GPU when `jobs` is larger; empty: every GPU found.
    pub devices: Vec<u32>,
    /// slurm: a folder every node can read and write, for specs, scripts, logs, checkpoints
    /// and journals.
    #[schemars(length(min = 1))]
    pub dir: Option<String>,
    /// slurm: `--partition`.
    #[schemars(length(min = 1))]
    pub partition: Option<String>,
    /// slurm: `--time`, e.g. "02:00:00" or "1-00:00:00".
    #[schemars(length(min = 1))]
    pub time: Option<String>,
    /// slurm: `--cpus-per-task`.
    #[schemars(range(min = 1))]
    pub cpus_per_task: Option<u32>,
    /// slurm: `--gpus-per-task`.
    #[schemars(range(min = 1))]
    pub gpus_per_task: Option<u32>,
    /// slurm: `--mem`, e.g. "16G".
    #[schemars(length(min = 1))]
    pub mem: Option<String>,
    /// slurm: at most this many tasks of an array at once (`--array=…%N`).
    #[schemars(range(min = 1))]
    pub max_parallel: Option<u32>,
    /// slurm: `--signal`: the warning a task gets before its time limit (or preemption), on
    /// which it checkpoints and requeues itself.
    #[schemars(length(min = 1))]
    pub signal: String,
    /// slurm: more `sbatch` arguments, e.g. ["--account=abc123", "--qos=long"].
    pub sbatch_args: Vec<String>,
    /// slurm: shell lines each task runs before xp, e.g. ["module load vulkan"].
    pub setup: Vec<String>,
    /// slurm: the xp binary on the nodes (default: this binary's absolute path).
    #[schemars(length(min = 1))]
    pub xp: Option<String>,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            kind: ExecutorKind::Local,
            jobs: 1,
            devices: Vec::new(),
            dir: None,
            partition: None,
            time: None,
            cpus_per_task: None,
            gpus_per_task: None,
            mem: None,
            max_parallel: None,
            signal: "B:USR1@120".into(),
            sbatch_args: Vec::new(),
            setup: Vec::new(),
            xp: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    Local,
    Slurm,
}

/// A hardware profile defined in a manifest; unset fields come from `extends`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileDef {
    /// Built-in profile this one starts from (default: the built-in of the same name, else "cpu").
    pub extends: Option<String>,
    pub description: Option<String>,
    #[schemars(length(min = 1))]
    pub device_order: Option<Vec<DeviceKind>>,
    /// Memory of the machine in GB (RAM, or GPU memory for a discrete GPU).
    #[schemars(extend("exclusiveMinimum" = 0.0))]
    pub memory_gb: Option<f64>,
    /// Training memory budget in GB (default: 75% of `memory_gb`).
    #[schemars(extend("exclusiveMinimum" = 0.0))]
    pub memory_budget_gb: Option<f64>,
    #[schemars(range(min = 1))]
    pub batch_size: Option<u32>,
    #[schemars(range(min = 1))]
    pub grad_accum: Option<u32>,
    pub precision: Option<Precision>,
    #[schemars(range(min = 1, max = 256))]
    pub loader_threads: Option<u32>,
    /// Runs trained at once on this machine (`executor.jobs`).
    #[schemars(range(min = 1, max = 256))]
    pub jobs: Option<u32>,
}

/// Sweep axes; keys are dotted paths into the manifest, e.g. "model.ffn.unit".
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Sweep {
    /// Cartesian product of every axis.
    pub grid: BTreeMap<String, AxisValues>,
    /// Linked axes: lists of equal length advance together.
    pub zip: BTreeMap<String, AxisValues>,
    /// Seeded random sampling.
    pub random: RandomSweep,
    /// Keep only runs for which this expression holds, e.g. "train.batch_size * train.grad_accum <= 512".
    #[serde(rename = "where")]
    #[schemars(length(min = 1))]
    pub where_: Option<String>,
    /// Stop losing runs early: pause each run at rungs and promote only the best.
    // A table or nothing (TOML has no null): the schema says "a table", so that a problem
    // inside it is reported at its key.
    #[schemars(with = "EarlyStopSection")]
    pub early_stop: Option<EarlyStopSection>,
    /// Search: trials whose settings a model of the results so far chooses (TPE), instead of
    /// axes fixed before the sweep starts.
    #[schemars(with = "SearchSection")]
    pub search: Option<SearchSection>,
}

/// `[sweep.search]`: `trials` runs, each setting every key of `space`; the first
/// `startup_trials` drawn at random, the rest by TPE from the results of the trials that ended
/// at least `lag` trials before (docs/manifest.md "Search").
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SearchSection {
    /// `tpe` (tree-structured Parzen estimators) or `random` (every trial from the space).
    pub method: SearchMethod,
    /// How many trials (runs) the search trains.
    #[schemars(range(min = 1, max = 100000))]
    pub trials: u32,
    /// Trials drawn at random before TPE takes over (default: 10, at most `trials`).
    #[schemars(range(min = 1, max = 100000))]
    pub startup_trials: Option<u32>,
    /// Seed of the search: trial k draws from a generator seeded by (seed, k).
    #[serde(default)]
    pub seed: u64,
    /// Trial k sees the results of trials before k − lag, once all of those have ended: up to
    /// lag + 1 trials train at once, and the trials are the same for any number of workers.
    #[serde(default = "default_lag")]
    #[schemars(range(min = 0, max = 1000))]
    pub lag: u32,
    /// The metric the search minimises (or maximises): `val_loss`, `val_ppl` or `train_loss`.
    #[serde(default = "default_objective")]
    pub metric: String,
    /// Whether lower (`min`) or higher (`max`) values of the metric are better.
    #[serde(default)]
    pub mode: ObjectiveMode,
    /// Candidates drawn from the good trials' density; the one most likely good is taken.
    #[serde(default = "default_candidates")]
    #[schemars(range(min = 1, max = 10000))]
    pub candidates: u32,
    /// The share of trials that count as good: the best ceil(gamma · n), at most 25.
    #[serde(default = "default_gamma")]
    #[schemars(extend("exclusiveMinimum" = 0.0), range(max = 1.0))]
    pub gamma: f64,
    /// Model the keys jointly (one kernel per trial for every key) rather than one by one.
    #[serde(default = "default_true")]
    pub multivariate: bool,
    /// The keys searched and their distributions, as in `[sweep.random]`.
    #[schemars(length(min = 1))]
    pub space: BTreeMap<String, Distribution>,
}

/// How a search chooses its trials.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SearchMethod {
    /// Tree-structured Parzen estimators (Bergstra et al. 2011), as Optuna's default sampler.
    Tpe,
    /// Every trial drawn from the space: the baseline TPE must beat.
    Random,
}

fn default_lag() -> u32 {
    3
}
fn default_candidates() -> u32 {
    24
}
fn default_gamma() -> f64 {
    0.1
}
fn default_true() -> bool {
    true
}

/// `[sweep.early_stop]`: each run pauses at rungs `min_steps · eta^k` (below `train.steps`),
/// and a decision at each rung promotes it to the next or stops it (docs/manifest.md).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopSection {
    pub method: StopMethod,
    /// The metric compared at each rung: `val_loss`, `val_ppl` or `train_loss`.
    #[serde(default = "default_objective")]
    pub metric: String,
    /// Whether lower (`min`) or higher (`max`) values of the metric are better.
    #[serde(default)]
    pub mode: ObjectiveMode,
    /// The first rung, in steps (default: `train.eval_every`, the first evaluation).
    #[schemars(range(min = 1))]
    pub min_steps: Option<u64>,
    /// Reduction factor: rungs grow by `eta`, and ASHA promotes the top 1/eta of a rung.
    #[serde(default = "default_eta")]
    #[schemars(range(min = 2, max = 1000))]
    pub eta: u64,
    /// Hyperband's brackets (default: one per rung, and one without early stopping).
    #[schemars(range(min = 1, max = 64))]
    pub brackets: Option<u32>,
    /// A rung's value is the mean of the metric's last `smooth` recorded values.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1, max = 1000))]
    pub smooth: u32,
    /// No run is stopped at a rung with fewer results than this.
    #[serde(default = "default_min_peers")]
    #[schemars(range(min = 1, max = 100000))]
    pub min_peers: u32,
    /// Seed of the order runs enter the first rung in (and of their brackets): a shuffle, so
    /// that a grid's order does not decide which runs are promoted before the rung is full.
    #[serde(default)]
    pub seed: u64,
}

fn default_objective() -> String {
    "val_loss".into()
}
fn default_eta() -> u64 {
    3
}
fn default_one() -> u32 {
    1
}
fn default_min_peers() -> u32 {
    3
}

/// How runs are stopped early.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StopMethod {
    /// Asynchronous successive halving: at each rung, the top 1/eta go on.
    Asha,
    /// Several ASHA brackets, each starting at a later first rung.
    Hyperband,
    /// A run goes on while it is no worse than the median of the runs before it at the rung.
    Median,
}

/// Which way the objective is better.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ObjectiveMode {
    #[default]
    Min,
    Max,
}

impl ObjectiveMode {
    /// `value` as a key that orders values best first.
    pub fn key(self, value: f64) -> f64 {
        match self {
            ObjectiveMode::Min => value,
            ObjectiveMode::Max => -value,
        }
    }

    /// Which way is better, for reports.
    pub fn better(self) -> &'static str {
        match self {
            ObjectiveMode::Min => "lower is better",
            ObjectiveMode::Max => "higher is better",
        }
    }
}

/// The values of one axis: a list, or sugar that expands to one.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum AxisValues {
    List(Vec<Value>),
    Linspace(Linspace),
    Logspace(Logspace),
    Range(RangeSugar),
}

/// `{ linspace = [a, b, n] }`: n evenly spaced values from a to b inclusive.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Linspace {
    pub linspace: (f64, f64, u32),
}

/// `{ logspace = [a, b, n] }`: n values from 10^a to 10^b, evenly spaced in the exponent.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Logspace {
    pub logspace: (f64, f64, u32),
}

/// `{ range = [start, stop, step] }`: start, start+step, … while below stop.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RangeSugar {
    pub range: (f64, f64, f64),
}

/// `[sweep.random]`: `samples` draws, each setting every axis from its distribution.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(default)]
pub struct RandomSweep {
    /// Number of samples to draw.
    #[schemars(range(min = 1, max = 10000000))]
    pub samples: Option<u64>,
    /// Seed of the sampler; the same seed draws the same runs.
    pub seed: u64,
    #[serde(flatten)]
    pub axes: BTreeMap<String, Distribution>,
}

/// A distribution to sample one axis from.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum Distribution {
    Uniform(Uniform),
    LogUniform(LogUniform),
    IntUniform(IntUniform),
    Choice(Choice),
}

/// `{ uniform = [low, high] }`
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Uniform {
    pub uniform: (f64, f64),
}

/// `{ loguniform = [low, high] }`, low > 0: uniform in log space.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogUniform {
    pub loguniform: (f64, f64),
}

/// `{ randint = [low, high] }`: an integer from low to high inclusive.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IntUniform {
    pub randint: (i64, i64),
}

/// `{ choice = [a, b, …] }`: one of the listed values, equally likely.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    #[schemars(length(min = 1))]
    pub choice: Vec<Value>,
}

/// The leaf settings of a run's config, each with the field it sets, so that a sweep can set
/// them without a round trip through JSON (a test checks the list against the structs).
macro_rules! settings {
    ($($key:literal => $($field:ident).+;)*) => {
        /// Every leaf setting of a [`Config`], by dotted key.
        pub const SETTINGS: &[&str] = &[$($key),*];

        impl Config {
            /// Sets one leaf setting; `None` if `key` is not a leaf setting.
            pub fn set_leaf(&mut self, key: &str, value: &Value) -> Option<Result<(), serde_json::Error>> {
                match key {
                    $($key => Some(Deserialize::deserialize(value).map(|v| self.$($field).+ = v)),)*
                    _ => None,
                }
            }
        }
    };
}

settings! {
    "experiment.name" => experiment.name;
    "experiment.description" => experiment.description;
    "model.preset" => model.preset;
    "model.layers" => model.layers;
    "model.heads" => model.heads;
    "model.dim" => model.dim;
    "model.block_size" => model.block_size;
    "model.dropout" => model.dropout;
    "model.attention_dropout" => model.attention_dropout;
    "model.bias" => model.bias;
    "model.tie_weights" => model.tie_weights;
    "model.ffn.unit" => model.ffn.unit;
    "model.ffn.alpha" => model.ffn.alpha;
    "model.ffn.hidden_mult" => model.ffn.hidden_mult;
    "data.source" => data.source;
    "data.path" => data.path;
    "data.tokenizer" => data.tokenizer;
    "data.val_fraction" => data.val_fraction;
    "train.seed" => train.seed;
    "train.steps" => train.steps;
    "train.batch_size" => train.batch_size;
    "train.grad_accum" => train.grad_accum;
    "train.lr" => train.lr;
    "train.min_lr" => train.min_lr;
    "train.warmup_steps" => train.warmup_steps;
    "train.weight_decay" => train.weight_decay;
    "train.beta1" => train.beta1;
    "train.beta2" => train.beta2;
    "train.grad_clip" => train.grad_clip;
    "train.eval_every" => train.eval_every;
    "train.eval_batches" => train.eval_batches;
    "train.checkpoint_every" => train.checkpoint_every;
    "train.keep_last" => train.keep_last;
    "train.keep_best" => train.keep_best;
    "train.log_every" => train.log_every;
    "hardware.profile" => hardware.profile;
    "hardware.device" => hardware.device;
    "hardware.device_order" => hardware.device_order;
    "hardware.memory_budget_gb" => hardware.memory_budget_gb;
    "hardware.precision" => hardware.precision;
    "hardware.loader_threads" => hardware.loader_threads;
    "executor.kind" => executor.kind;
    "executor.jobs" => executor.jobs;
    "executor.devices" => executor.devices;
    "executor.dir" => executor.dir;
    "executor.partition" => executor.partition;
    "executor.time" => executor.time;
    "executor.cpus_per_task" => executor.cpus_per_task;
    "executor.gpus_per_task" => executor.gpus_per_task;
    "executor.mem" => executor.mem;
    "executor.max_parallel" => executor.max_parallel;
    "executor.signal" => executor.signal;
    "executor.sbatch_args" => executor.sbatch_args;
    "executor.setup" => executor.setup;
    "executor.xp" => executor.xp;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_list_every_leaf_of_the_config() {
        // `attention_dropout` is left out of the encoding while unset, so that run keys stay
        // those of the xp before it: set here to be a leaf.
        let mut config = Config::default();
        config.model.attention_dropout = Some(0.1);
        let tree = serde_json::to_value(config).unwrap();
        let leaves: Vec<String> = super::super::layers::flatten(&tree).into_keys().collect();
        let mut listed: Vec<String> = SETTINGS.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(leaves, listed);
    }

    #[test]
    fn set_leaf_matches_the_json_route() {
        let mut c = Config::default();
        c.set_leaf("train.lr", &serde_json::json!(0.5))
            .unwrap()
            .unwrap();
        c.set_leaf("model.ffn.alpha", &serde_json::json!("learnable"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.train.lr, c.model.ffn.alpha),
            (0.5, Alpha::Mode(AlphaMode::Learnable))
        );
        assert!(
            c.set_leaf("model.layers", &serde_json::json!("x"))
                .unwrap()
                .is_err()
        );
        assert!(c.set_leaf("model.ffn", &serde_json::json!({})).is_none());
    }
}
