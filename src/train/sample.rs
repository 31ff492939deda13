//! Text generation from a checkpoint: temperature and top-k sampling.

use std::path::Path;

use burn::tensor::{Int, Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Error, checkpoint, configure_cubecl, device};
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

/// Generates text after `prompt` from the checkpoint in `checkpoint_dir`.
pub fn sample(
    config: &Config,
    checkpoint_dir: &Path,
    prompt: &str,
    how: &Sampling,
) -> Result<String, Error> {
    configure_cubecl();
    let state = checkpoint::load_state(checkpoint_dir)?;
    let tokenizer = state.1;
    let selected = device::select(&config.hardware, None)?;
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
    let mut rng = ChaCha8Rng::seed_from_u64(how.seed);
    let block = model.block_size();
    for _ in 0..how.tokens {
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
        ids.push(pick(&last, how.temperature, how.top_k, &mut rng) as u32);
    }
    Ok(tokenizer.decode(&ids[prompt_len..]))
}

/// Samples an index from logits with temperature and top-k.
fn pick(logits: &[f32], temperature: f64, top_k: Option<usize>, rng: &mut ChaCha8Rng) -> usize {
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
