//! Model presets: named sizes whose values sit below the manifest's own keys.

use serde_json::{Value, json};

use super::types::Preset;

/// The `model` keys a preset sets, as a config layer. None sets `attention_dropout`: it follows
/// `dropout`, as nanoGPT's one dropout does, since turning it off cost shakespeare-char 0.024 in
/// best validation loss (docs/benchmarks.md, "Attention dropout").
pub fn layer(preset: Preset) -> Value {
    let (layers, heads, dim, block_size, dropout) = match preset {
        Preset::Tiny => (2, 4, 64, 64, 0.0),
        Preset::Small => (4, 6, 192, 256, 0.1),
        Preset::Medium => (8, 8, 512, 512, 0.1),
        Preset::Large => (12, 12, 768, 1024, 0.1),
        Preset::ShakespeareChar => (6, 6, 384, 256, 0.2),
    };
    json!({ "model": {
        "preset": preset,
        "layers": layers,
        "heads": heads,
        "dim": dim,
        "block_size": block_size,
        "dropout": dropout,
    }})
}
