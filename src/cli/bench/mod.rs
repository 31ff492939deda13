//! `xp bench`: measurements of xp itself — the run store's ingest and size (`store`), training
//! speed of one configuration (`train`) and the dashboard's speed (`ui`).

mod conformance;
mod scratch;
mod store;
mod train;
mod ui;

use super::{Context, Result};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    measurement: Measurement,
}

#[derive(Debug, clap::Subcommand)]
enum Measurement {
    /// Fill a fresh store with R runs × S steps × 3 metrics and report rows/s and bytes/row.
    Store(store::Args),
    /// Train a model preset for a few steps and report its speed: tokens/s, step time,
    /// first-step time, peak memory, backend and adapter.
    Train(train::Args),
    /// Check the GPU against the CPU: logits, loss and gradients of xp's model at every
    /// sequence length and at odd shapes, the attention's kernels one by one, and greedy text
    /// from a trained checkpoint. Exit 1 if any case is outside its tolerance.
    Conformance(conformance::Args),
    /// Time the dashboard on a large store: the runs table, a 100,000-step curve, and the
    /// first page in headless Chromium (when chromium and chromedriver are installed).
    Ui(ui::Args),
}

pub fn run(args: Args, _ctx: &Context) -> Result<u8> {
    match args.measurement {
        Measurement::Store(a) => store::run(a),
        Measurement::Train(a) => train::run(a),
        Measurement::Ui(a) => ui::run(a),
        Measurement::Conformance(a) => conformance::run(a),
    }
}
