//! `xp validate`: check a manifest, including its sweep and every run it expands to.

use std::io::Write;
use std::path::PathBuf;

use super::load::load_and_plan;
use super::{Context, Result, exit};
use crate::count::Count;

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
        "{}: valid; experiment `{}`, {}",
        loaded.display,
        plan.experiment.name,
        Count::numbered("run", plan.runs.len())
    )?;
    Ok(exit::OK)
}
