//! Checkpoints: a folder per step with the model as safetensors (for Python) and burnpack (for
//! resuming: it keeps parameter ids, which the optimizer state is keyed by), the optimizer
//! state, the step, seed and tokenizer, and `checksums.json` (each file's size and blake3),
//! whose own blake3 the store records, so that a damaged file is found and named before use.

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
    /// An f16 run's loss scale: the scale, clean steps since it last changed, overflowed
    /// steps in all.
    #[serde(default)]
    pub loss_scale: Option<(f64, u64, u64)>,
}

const MODEL: &str = "model.safetensors";
const MODEL_BPK: &str = "model.bpk";
const OPTIMIZER: &str = "optimizer.bpk";
const STATE: &str = "state.json";
const TOKENIZER: &str = "tokenizer.json";
const CHECKSUMS: &str = "checksums.json";

/// One file of a checkpoint as `checksums.json` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct FileSum {
    name: String,
    bytes: u64,
    blake3: String,
}

fn fail(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Removes half-written checkpoints (`.step-….partial`) that a killed process left in a run's
/// checkpoint folder: they never became checkpoints and nothing refers to them.
pub fn remove_partials(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".step-") && name.ends_with(".partial") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Writes a checkpoint for the current step into `root/step-NNNNNNN`. On any failure (a full
/// disk, say) nothing is left behind: the half-written folder is removed.
pub fn save(
    root: &Path,
    model: &Gpt,
    optim: &ModuleOptimizer,
    state: &CheckpointState,
    tokenizer: &TextTokenizer,
    val_loss: Option<f64>,
) -> Result<Saved, Error> {
    // Written beside the final name and renamed: a crash never leaves a half checkpoint
    // under a name that looks complete (a crash's leftover is replaced on the next attempt).
    let partial = root.join(format!(".step-{:07}.partial", state.step));
    let _ = std::fs::remove_dir_all(&partial);
    let saved = write(root, &partial, model, optim, state, tokenizer, val_loss);
    if saved.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    saved
}

fn write(
    root: &Path,
    partial: &Path,
    model: &Gpt,
    optim: &ModuleOptimizer,
    state: &CheckpointState,
    tokenizer: &TextTokenizer,
    val_loss: Option<f64>,
) -> Result<Saved, Error> {
    let dir = root.join(format!("step-{:07}", state.step));
    std::fs::create_dir_all(partial).map_err(|e| fail(partial, e))?;
    let model = model.valid();
    let mut safetensors = SafetensorsStore::from_file(partial.join(MODEL))
        .metadata("step", state.step.to_string())
        .metadata("format", "xp gpt");
    model
        .save_into(&mut safetensors)
        .map_err(|e| fail(partial, e))?;
    let mut burnpack = BurnpackStore::from_file(partial.join(MODEL_BPK)).overwrite(true);
    model
        .save_into(&mut burnpack)
        .map_err(|e| fail(partial, e))?;
    optim
        .save(partial.join(OPTIMIZER))
        .map_err(|e| fail(partial, format!("{e:?}")))?;
    let json = serde_json::to_vec_pretty(state).expect("state serializes");
    write_synced(&partial.join(STATE), &json)?;
    let tok = serde_json::to_vec(&tokenizer.to_json()).expect("tokenizer serializes");
    write_synced(&partial.join(TOKENIZER), &tok)?;
    let mut sums = Vec::new();
    for name in [MODEL, MODEL_BPK, OPTIMIZER, STATE, TOKENIZER] {
        let path = partial.join(name);
        let content = std::fs::read(&path).map_err(|e| fail(&path, e))?;
        sync(&path)?;
        sums.push(FileSum {
            name: name.into(),
            bytes: content.len() as u64,
            blake3: blake3::hash(&content).to_hex().to_string(),
        });
    }
    let listing = serde_json::to_vec_pretty(&sums).expect("checksums serialize");
    write_synced(&partial.join(CHECKSUMS), &listing)?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(partial, &dir).map_err(|e| fail(&dir, e))?;
    // The rename is durable only once the folder holding it is.
    sync(root)?;
    let bytes = sums.iter().map(|f| f.bytes).sum::<u64>() + listing.len() as u64;
    Ok(Saved {
        step: state.step,
        dir,
        bytes,
        blake3: blake3::hash(&listing).to_hex().to_string(),
        val_loss,
    })
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| fail(path, e))?;
    f.write_all(bytes).map_err(|e| fail(path, e))?;
    f.sync_all().map_err(|e| fail(path, e))
}

/// Flushes a file or folder to the disk.
fn sync(path: &Path) -> Result<(), Error> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| fail(path, e))
}

/// Checks a checkpoint folder against what the store recorded of it: `blake3` is the hash
/// of its `checksums.json`, which gives each file's size and hash; `bytes` their total. The
/// error names the first file that differs. A checkpoint written before `checksums.json`
/// existed is checked against the hash of all its files at once.
pub fn verify(dir: &Path, bytes: u64, blake3: &str) -> Result<(), Error> {
    let listing_path = dir.join(CHECKSUMS);
    let listing = match std::fs::read(&listing_path) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (found_bytes, found) = legacy_digest(dir)?;
            if found != blake3 || found_bytes != bytes {
                return Err(fail(
                    dir,
                    format!(
                        "its files do not match the recorded blake3 {} ({found_bytes} bytes,                          recorded {bytes})",
                        short(blake3)
                    ),
                ));
            }
            return Ok(());
        }
        Err(e) => return Err(fail(&listing_path, e)),
    };
    let found = blake3::hash(&listing).to_hex().to_string();
    if found != blake3 {
        return Err(fail(
            &listing_path,
            format!(
                "blake3 {} does not match the recorded {}",
                short(&found),
                short(blake3)
            ),
        ));
    }
    let sums: Vec<FileSum> =
        serde_json::from_slice(&listing).map_err(|e| fail(&listing_path, e))?;
    let mut total = listing.len() as u64;
    for sum in sums {
        let path = dir.join(&sum.name);
        let content = std::fs::read(&path).map_err(|e| fail(&path, e))?;
        total += content.len() as u64;
        if content.len() as u64 != sum.bytes {
            return Err(fail(
                &path,
                format!("{} bytes, recorded {}", content.len(), sum.bytes),
            ));
        }
        let found = blake3::hash(&content).to_hex().to_string();
        if found != sum.blake3 {
            return Err(fail(
                &path,
                format!(
                    "blake3 {} does not match the recorded {}",
                    short(&found),
                    short(&sum.blake3)
                ),
            ));
        }
    }
    if total != bytes {
        return Err(fail(dir, format!("{total} bytes, recorded {bytes}")));
    }
    Ok(())
}

fn short(hash: &str) -> &str {
    &hash[..12.min(hash.len())]
}

/// Total size and blake3 over all of a checkpoint's files (in name order): what checkpoints
/// written before `checksums.json` existed recorded.
fn legacy_digest(dir: &Path) -> Result<(u64, String), Error> {
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
