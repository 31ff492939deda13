//! `xp sync`: merges what Slurm tasks recorded in their journals into runs.db, fails the runs
//! whose task left Slurm's queue without an outcome, and submits the runs early stopping
//! promoted. Reading commands merge first too (and leave submitting to `xp sync`).

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
    // What early stopping promoted since the last sync goes back to Slurm.
    for a in slurm::submit_promoted(&mut store)? {
        writeln!(
            out,
            "submitted Slurm job {} for {} promoted by early stopping or chosen by a search: {}",
            a.job,
            crate::count::Count::numbered("run", a.runs.len()),
            a.runs
                .iter()
                .map(|r| format!("run-{r}"))
                .collect::<Vec<_>>()
                .join(" ")
        )?;
    }
    Ok(exit::OK)
}
