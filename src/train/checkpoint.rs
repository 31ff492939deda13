//! Checkpoints: a folder per step with the model as safetensors (for Python) and burnpack (for
//! resuming: it keeps parameter ids, which the optimizer state is keyed by), the optimizer
//! state, and the step, seed and tokenizer.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::{BurnpackStore, ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::{Error, Saved, model::Gpt};
use crate::data::TextTokenizer;
use crate::manifest::ModelConfig;

/// Where training stood; with per-step seeding this is all the RNG and data-cursor state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointState {
    pub step: u64,
    pub seed: u64,
    pub best_val_loss: Option<f64>,
    pub tokens: u64,
}

const MODEL: &str = "model.safetensors";
const MODEL_BPK: &str = "model.bpk";
const OPTIMIZER: &str = "optimizer.bpk";
const STATE: &str = "state.json";
const TOKENIZER: &str = "tokenizer.json";

fn fail(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Writes a checkpoint for the current step into `root/step-NNNNNNN`.
pub fn save(
    root: &Path,
    model: &Gpt,
    optim: &ModuleOptimizer,
    state: &CheckpointState,
    tokenizer: &TextTokenizer,
    val_loss: Option<f64>,
) -> Result<Saved, Error> {
    let dir = root.join(format!("step-{:07}", state.step));
    // Written beside the final name and renamed: a crash never leaves a half checkpoint
    // under a name that looks complete.
    let partial = root.join(format!(".step-{:07}.partial", state.step));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|e| fail(&partial, e))?;
    let model = model.valid();
    let mut safetensors = SafetensorsStore::from_file(partial.join(MODEL))
        .metadata("step", state.step.to_string())
        .metadata("format", "xp gpt");
    model
        .save_into(&mut safetensors)
        .map_err(|e| fail(&partial, e))?;
    let mut burnpack = BurnpackStore::from_file(partial.join(MODEL_BPK)).overwrite(true);
    model
        .save_into(&mut burnpack)
        .map_err(|e| fail(&partial, e))?;
    optim
        .save(partial.join(OPTIMIZER))
        .map_err(|e| fail(&partial, format!("{e:?}")))?;
    let json = serde_json::to_vec_pretty(state).expect("state serializes");
    std::fs::write(partial.join(STATE), json).map_err(|e| fail(&partial, e))?;
    let tok = serde_json::to_vec(&tokenizer.to_json()).expect("tokenizer serializes");
    std::fs::write(partial.join(TOKENIZER), tok).map_err(|e| fail(&partial, e))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&partial, &dir).map_err(|e| fail(&dir, e))?;
    let (bytes, blake3) = digest(&dir)?;
    Ok(Saved {
        step: state.step,
        dir,
        bytes,
        blake3,
        val_loss,
    })
}

/// Total size and blake3 over the checkpoint's files (in name order).
fn digest(dir: &Path) -> Result<(u64, String), Error> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| fail(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort();
    let mut hasher = blake3::Hasher::new();
    let mut bytes = 0;
    for path in names {
        let content = std::fs::read(&path).map_err(|e| fail(&path, e))?;
        bytes += content.len() as u64;
        hasher.update(
            path.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        hasher.update(&content);
    }
    Ok((bytes, hasher.finalize().to_hex().to_string()))
}

/// Restores a model's parameters, with their ids, from a checkpoint folder.
pub fn load_params(dir: &Path, mut model: Gpt) -> Result<Gpt, Error> {
    let mut store = BurnpackStore::from_file(dir.join(MODEL_BPK));
    model.load_from(&mut store).map_err(|e| fail(dir, e))?;
    Ok(model)
}

/// Restores optimizer state; `optim` must be built for the model returned by [`load_params`],
/// since its parameter groups are keyed by the restored ids.
pub fn load_optimizer(dir: &Path, optim: ModuleOptimizer) -> Result<ModuleOptimizer, Error> {
    optim
        .load(dir.join(OPTIMIZER))
        .map_err(|e| fail(dir, format!("{e:?}")))
}

/// The state and tokenizer of a checkpoint.
pub fn load_state(dir: &Path) -> Result<(CheckpointState, TextTokenizer), Error> {
    let read =
        |name: &str| std::fs::read(dir.join(name)).map_err(|e| fail(dir, format!("{name}: {e}")));
    let state: CheckpointState = serde_json::from_slice(&read(STATE)?).map_err(|e| fail(dir, e))?;
    let tok: serde_json::Value =
        serde_json::from_slice(&read(TOKENIZER)?).map_err(|e| fail(dir, e))?;
    let tokenizer = TextTokenizer::from_json(&tok).ok_or_else(|| fail(dir, "unknown tokenizer"))?;
    Ok((state, tokenizer))
}

/// The model of a checkpoint, for inference, from its safetensors file.
pub fn load_model(
    dir: &Path,
    config: &ModelConfig,
    vocab: usize,
    device: &Device,
) -> Result<Gpt, Error> {
    let mut model = Gpt::new(config, vocab, device);
    let mut store = SafetensorsStore::from_file(dir.join(MODEL));
    model.load_from(&mut store).map_err(|e| fail(dir, e))?;
    Ok(model.valid())
}
