//! A checkpoint → an ONNX model: the weights read on the CPU, α taken as it is at the
//! checkpoint's step, and the tokenizer and provenance in the model's metadata.

use std::path::Path;

use super::trainer::stepped_alpha;
use super::{Error, checkpoint, device, model};
use crate::data::TextTokenizer;
use crate::manifest::{Config, DeviceChoice, HardwareConfig, Precision};

/// Where an exported model came from, written into its metadata.
pub struct Origin<'a> {
    pub run: &'a str,
    pub blake3: &'a str,
}

/// The ONNX model (opset [`crate::onnx::OPSET`]) of the checkpoint in `dir`, a run of `config`.
pub fn onnx(config: &Config, dir: &Path, origin: &Origin<'_>) -> Result<Vec<u8>, Error> {
    device::configure_cubecl();
    let hardware = HardwareConfig {
        device: DeviceChoice::Cpu,
        precision: Precision::F32,
        ..config.hardware.clone()
    };
    let selected = device::select(&hardware, None)?;
    let (state, tokenizer) = checkpoint::load_state(dir)?;
    let gpt = checkpoint::load_model(dir, &config.model, tokenizer.vocab_size(), &selected.device)?;
    // The step the checkpoint was written after: the α its evaluation and `xp sample` use.
    let alpha = stepped_alpha(config, state.step.saturating_sub(1));
    let weights = model::export(&gpt, alpha);
    let mut metadata = vec![
        (
            "xp.version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        ("xp.run".into(), origin.run.into()),
        ("xp.checkpoint_step".into(), state.step.to_string()),
        ("xp.checkpoint_blake3".into(), origin.blake3.into()),
        ("xp.block_size".into(), config.model.block_size.to_string()),
        (
            "xp.config".into(),
            serde_json::to_string(config).unwrap_or_default(),
        ),
    ];
    match &tokenizer {
        TextTokenizer::Char { chars } => {
            let vocab: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
            metadata.push(("xp.tokenizer".into(), "char".into()));
            metadata.push((
                "xp.vocab".into(),
                serde_json::to_string(&vocab).unwrap_or_default(),
            ));
        }
        TextTokenizer::Gpt2(_) => {
            metadata.push(("xp.tokenizer".into(), "gpt2".into()));
            // tiktoken's name for the encoding (`tiktoken.get_encoding("gpt2")`).
            metadata.push(("xp.encoding".into(), "gpt2".into()));
        }
    }
    let doc = format!(
        "{} at step {} (xp {}): input_ids int64 [batch, seq ≤ {}] → logits f32 [batch, seq, {}]",
        origin.run,
        state.step,
        env!("CARGO_PKG_VERSION"),
        config.model.block_size,
        tokenizer.vocab_size()
    );
    Ok(crate::onnx::model(&weights, &metadata, &doc))
}
