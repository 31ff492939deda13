//! `xp validate`: check a manifest, including its sweep and every run it expands to.

use std::io::Write;
use std::path::PathBuf;

use super::load::load_and_plan;
use super::{Context, Result, exit};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manifest to check.
    manifest: PathBuf,
    /// Override a setting, e.g. --set train.lr=3e-4 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

pub fn run(args: Args, _ctx: &Context) -> Result<u8> {
    let (loaded, _, plan) = load_and_plan(&args.manifest, &args.sets)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}: valid; experiment `{}`, {} run{}",
        loaded.display,
        plan.experiment.name,
        plan.runs.len(),
        if plan.runs.len() == 1 { "" } else { "s" }
    )?;
    Ok(exit::OK)
}
