//! `xp sample`: generate text from a run's checkpoint.

use std::io::Write;

use super::{Context, Error, Result, exit};
use crate::train::{self, Sampling};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run: run-N, N, or a prefix of its content key.
    run: String,
    /// Text to continue.
    #[arg(long, default_value = "\n")]
    prompt: String,
    /// Tokens to generate.
    #[arg(long, default_value_t = 300)]
    tokens: usize,
    /// Softmax temperature; 0 takes the most likely token.
    #[arg(long, default_value_t = 0.8, value_parser = super::output::non_negative)]
    temperature: f64,
    /// Sample among the k most likely tokens only.
    #[arg(long)]
    top_k: Option<usize>,
    /// `best` (lowest validation loss), `last`, or a step number.
    #[arg(long, default_value = "best")]
    checkpoint: String,
    #[arg(long, default_value_t = 1337)]
    seed: u64,
}

pub fn run(args: Args, ctx: &Context) -> Result<u8> {
    let store = ctx.open_existing_store()?;
    let run = store.run(&args.run)?;
    let checkpoints = store.checkpoints(run.id)?;
    let chosen = crate::store::checkpoints::choose(&checkpoints, &args.checkpoint)
        .map_err(|m| Error::Usage(format!("{}: {m}", run.name())))?;
    let dir = store.checkpoint_path(&chosen.path);
    train::verify_checkpoint(&dir, chosen.bytes.max(0) as u64, &chosen.blake3)
        .map_err(|e| Error::Failed(format!("{}: {e}", run.name())))?;
    let how = Sampling {
        tokens: args.tokens,
        temperature: args.temperature,
        top_k: args.top_k,
        seed: args.seed,
    };
    let text = train::sample(&run.spec.config, &dir, &args.prompt, &how)
        .map_err(|e| Error::Failed(e.to_string()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}{text}", args.prompt)?;
    Ok(exit::OK)
}
