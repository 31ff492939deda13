//! `xp sync`: merges what Slurm tasks recorded in their journals into runs.db, and fails the
//! runs whose task left Slurm's queue without an outcome. Reading commands do it first too.

use std::io::Write;

use super::{Context, Result, exit};
use crate::exec::slurm;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, ctx: &Context) -> Result<u8> {
    let mut store = ctx.open_existing_store()?;
    let synced = slurm::sync(&mut store)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "merged {} journal entr{}",
        synced.entries,
        if synced.entries == 1 { "y" } else { "ies" }
    )?;
    for (run, reason) in &synced.vanished {
        writeln!(out, "run-{run} failed: {reason}")?;
    }
    Ok(exit::OK)
}
