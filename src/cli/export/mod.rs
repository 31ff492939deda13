//! `xp export`: what xp recorded, for other tools — metrics and summaries as tables, a run's
//! model as an ONNX file.

mod decisions;
mod model;
mod rows;

use super::{Context, Result};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: Export,
}

#[derive(Debug, clap::Subcommand)]
enum Export {
    /// One row per (run, metric, step): run, experiment, metric, step, value, t_ms.
    Metrics(rows::Args),
    /// One row per run: state, the settings that vary among the runs, summary metrics.
    Summaries(rows::Args),
    /// A run's model, from one of its checkpoints, as an ONNX file that onnxruntime (and any
    /// ONNX runtime) can run: the whole GPT, α as at that step, the tokenizer in its metadata.
    Model(model::Args),
    /// An early-stopped experiment's decisions, by bracket and rung: run, action, its value,
    /// rank and peers, the cut-off and the reason.
    Decisions(decisions::Args),
}

pub fn run(args: Args, ctx: &Context) -> Result<u8> {
    match args.what {
        Export::Metrics(a) => rows::run(rows::Rows::Metrics, a, ctx),
        Export::Summaries(a) => rows::run(rows::Rows::Summaries, a, ctx),
        Export::Model(a) => model::run(a, ctx),
        Export::Decisions(a) => decisions::run(a, ctx),
    }
}
