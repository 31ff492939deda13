//! Training: the only module that knows burn. A validated run spec in; metrics, checkpoints
//! and a summary out, through a [`Recorder`] the caller provides.

mod checkpoint;
pub mod conformance;
pub mod device;
pub mod export;
pub mod model;
mod optim;
mod sample;
mod trainer;

use std::path::PathBuf;

use crate::data;
use crate::manifest::Precision;
use crate::summary::Summary;
use crate::sweep::RunSpec;
pub use checkpoint::{CheckpointState, load_state, verify as verify_checkpoint};
pub use optim::{cosine_alpha, learning_rate};
pub use sample::{Generator, Sampling, sample};
pub use trainer::train;

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
    /// The recorder could not keep the run's record; training stops rather than go on
    /// unrecorded.
    #[error("{0}")]
    Recording(String),
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
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    pub step: u64,
    pub steps: u64,
    pub train_loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub tokens_per_s: Option<f64>,
}

/// What the trainer should do next, as its recorder sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    Continue,
    /// Stop at the end of this step with a checkpoint (Ctrl-C).
    Stop,
    /// The record cannot be kept (e.g. the disk is full): fail the run with this cause.
    Fail(String),
}

/// The burn release xp is built with, recorded with every run (a test keeps it in step with
/// Cargo.lock: cargo gives a crate no way to read its dependencies' versions).
pub const BURN_VERSION: &str = "0.23.0-pre.1";

/// Where and how a run trains, as its provenance records it.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    /// `wgpu/vulkan-spirv`, `wgpu/vulkan`, `wgpu/metal` or `flex`.
    pub backend: &'a str,
    /// The adapter's own name.
    pub adapter: &'a str,
    /// The attention kernel and why (`device::attention_kernel`).
    pub attention: &'a str,
}

/// What a run reports as it goes; implemented by the queue executor.
pub trait Recorder {
    /// The device is known; training starts. An error fails the run.
    fn started(&mut self, placement: &Placement) -> Result<(), String>;
    /// A batch of metrics; called at log and eval steps, never every step.
    fn metrics(&mut self, metrics: Vec<Metric>);
    /// A checkpoint was written (retention is the recorder's). An error (the checkpoint
    /// could not be recorded) fails the run.
    fn checkpoint(&mut self, saved: &Saved) -> Result<(), String>;
    fn progress(&mut self, progress: &Progress);
    /// Asked before every step.
    fn control(&self) -> Control {
        Control::Continue
    }
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
    /// The GPU (by index among this machine's GPUs of the chosen kind) this run gets, where a
    /// worker was given one.
    pub device: Option<u32>,
    /// The rung to pause at, in an early-stopped sweep: training stops after this step, with a
    /// checkpoint, as if interrupted there.
    pub until: Option<u64>,
}

/// How a training call ended, when it did not fail.
#[derive(Debug, Clone, PartialEq)]
pub enum Trained {
    /// At the last step.
    Completed(Summary),
    /// At the job's rung, with a checkpoint there.
    Paused { step: u64, summary: Summary },
}

impl Trained {
    /// The summary so far.
    pub fn summary(&self) -> &Summary {
        match self {
            Trained::Completed(summary) | Trained::Paused { summary, .. } => summary,
        }
    }
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
}
