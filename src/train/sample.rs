//! Text generation from a checkpoint: next-token logits from the model, temperature and top-k
//! sampling.

use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::model::{AttentionKernel, Gpt};
use super::trainer::stepped_alpha;
use super::{Error, checkpoint, device};
use crate::data::TextTokenizer;
use crate::manifest::Config;

/// How to sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub tokens: usize,
    /// Softmax temperature; 0 takes the most likely token. Finite and ≥ 0 (checked by callers).
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub seed: u64,
}

/// A model ready to continue text on one device.
pub struct Generator {
    model: Gpt,
    device: Device,
    /// α in force at the checkpoint's step: a cosine-α run is sampled as it was evaluated
    /// there, not at α = 1.
    alpha: f64,
    /// Forward every context padded to the block size: one shape for the whole sample, so a
    /// GPU compiles and tunes its kernels once instead of once per new length. Causal
    /// attention makes the padding invisible to the last real position. The CPU backend
    /// gains nothing from it and would do up to `block_size` times the work.
    padded: bool,
    pub tokenizer: TextTokenizer,
}

impl Generator {
    /// Loads the checkpoint in `dir` onto `device`, computing attention with `attention`.
    pub fn load(
        config: &Config,
        dir: &Path,
        device: &Device,
        attention: AttentionKernel,
    ) -> Result<Generator, Error> {
        let (state, tokenizer) = checkpoint::load_state(dir)?;
        let model = checkpoint::load_model(dir, &config.model, tokenizer.vocab_size(), device)?
            .with_attention(attention);
        let padded = match std::env::var("XP_SAMPLE_PADDED").as_deref() {
            Ok("1") => true,
            Ok("0") => false,
            _ => !matches!(device.as_dispatch(), burn_dispatch::DispatchDevice::Flex(_)),
        };
        Ok(Generator {
            model,
            device: device.clone(),
            alpha: stepped_alpha(config, state.step.saturating_sub(1)),
            padded,
            tokenizer,
        })
    }

    /// Logits of the token after `context` (its last `block_size` tokens).
    pub fn next_logits(&self, context: &[u32]) -> Vec<f32> {
        let block = self.model.block_size();
        let context = &context[context.len().saturating_sub(block)..];
        let n = context.len();
        let mut ids: Vec<i64> = context.iter().map(|&i| i as i64).collect();
        if self.padded {
            ids.resize(block, 0);
        }
        let len = ids.len();
        let x = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, len]), &self.device);
        let logits = self.model.forward(x, self.alpha);
        let [_, _, v] = logits.dims();
        logits
            .slice([0..1, n - 1..n, 0..v])
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default()
    }

    /// Logits at every position of `ids` (at most `block_size` of them), [len][vocab]: what
    /// an exported model is checked against.
    pub fn logits(&self, ids: &[u32]) -> Vec<Vec<f32>> {
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let len = ids.len();
        let x = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, len]), &self.device);
        let logits = self.model.forward(x, self.alpha);
        let [_, _, v] = logits.dims();
        let flat = logits.into_data().try_to_vec::<f32>().unwrap_or_default();
        flat.chunks(v.max(1)).map(<[f32]>::to_vec).collect()
    }

    /// Token ids continuing `prompt` (the prompt's own ids first).
    pub fn generate(&self, prompt: &[u32], how: &Sampling) -> Vec<u32> {
        let mut ids = prompt.to_vec();
        if ids.is_empty() {
            ids.push(0);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(how.seed);
        for _ in 0..how.tokens {
            let logits = self.next_logits(&ids);
            ids.push(pick(&logits, how.temperature, how.top_k, &mut rng) as u32);
        }
        ids
    }
}

/// Generates text after `prompt` from the checkpoint in `checkpoint_dir`.
pub fn sample(
    config: &Config,
    checkpoint_dir: &Path,
    prompt: &str,
    how: &Sampling,
) -> Result<String, Error> {
    device::configure_cubecl();
    // Sampling computes in f32 whatever the run trained in, and the precision chooses the
    // device's shader compiler (`device::select`).
    let hardware = crate::manifest::HardwareConfig {
        precision: crate::manifest::Precision::F32,
        ..config.hardware.clone()
    };
    let selected = device::select(&hardware, None)?;
    // Sampling draws no dropout: the fused attention serves wherever the device has it.
    let (attention, _) = device::attention_kernel(&selected, 0.0);
    let generator = Generator::load(config, checkpoint_dir, &selected.device, attention)?;
    let prompt_ids = generator.tokenizer.encode(prompt);
    let start = prompt_ids.len().max(1);
    let ids = generator.generate(&prompt_ids, how);
    Ok(generator.tokenizer.decode(&ids[start..]))
}

/// Samples an index from logits with temperature and top-k.
pub(super) fn pick(
    logits: &[f32],
    temperature: f64,
    top_k: Option<usize>,
    rng: &mut ChaCha8Rng,
) -> usize {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if temperature <= 0.0 || !temperature.is_finite() {
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
    // Non-finite logits (a diverged checkpoint) give no usable weights: take the top token.
    if !(total.is_finite() && total > 0.0) {
        return top[0];
    }
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
    fn sampling_respects_top_k_and_temperature() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let logits = [0.0, 5.0, 1.0, 4.9];
        for _ in 0..50 {
            let i = pick(&logits, 1.0, Some(2), &mut rng);
            assert!(i == 1 || i == 3);
        }
        assert_eq!(pick(&logits, 0.0, None, &mut rng), 1);
        // Logits a diverged model gives never panic the sampler.
        assert_eq!(pick(&[f32::NAN, f32::NAN], 1.0, None, &mut rng), 0);
    }
}
