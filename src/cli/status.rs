//! `xp status`: per experiment, how many runs are queued, running, done and failed.

use std::io::Write;

use super::{Context, Result, exit, table};
use crate::store::{RunFilter, STATUSES};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this experiment.
    #[arg(long)]
    experiment: Option<String>,
}

pub fn run(args: Args, ctx: &Context) -> Result<u8> {
    let store = ctx.open_existing_store()?;
    let mut out = std::io::stdout().lock();
    let counts: Vec<_> = store
        .counts()?
        .into_iter()
        .filter(|c| args.experiment.as_ref().is_none_or(|e| *e == c.experiment))
        .collect();
    if counts.is_empty() {
        writeln!(out, "no runs recorded in {}", store.path().display())?;
        return Ok(exit::OK);
    }
    let mut header = vec!["experiment".to_string()];
    header.extend(STATUSES.iter().map(|s| s.to_string()));
    header.push("total".into());
    let mut t = table(header);
    for c in &counts {
        let mut row = vec![c.experiment.clone()];
        for s in STATUSES {
            row.push(
                c.counts
                    .iter()
                    .find(|(st, _)| st == s)
                    .map(|(_, n)| n.to_string())
                    .unwrap_or_else(|| "·".into()),
            );
        }
        row.push(c.counts.iter().map(|(_, n)| n).sum::<i64>().to_string());
        t.add_row(row);
    }
    writeln!(out, "{t}")?;
    let filter = RunFilter {
        experiment: args.experiment.clone(),
        status: None,
    };
    let runs = store.runs(&filter)?;
    for r in runs.iter().filter(|r| r.status == "running") {
        writeln!(
            out,
            "running {} ({}): step {}/{}",
            r.name(),
            r.experiment,
            r.step,
            r.steps_total
        )?;
    }
    let failed: Vec<_> = runs.iter().filter(|r| r.status == "failed").collect();
    for r in failed.iter().rev().take(5) {
        let error = r.error.as_deref().unwrap_or("no error recorded");
        writeln!(
            out,
            "failed  {} ({}): {}",
            r.name(),
            r.experiment,
            error.lines().next().unwrap_or_default()
        )?;
    }
    Ok(exit::OK)
}
