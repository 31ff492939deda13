//! `xp cancel`: cancels runs that have not ended — their Slurm tasks through `scancel` — and
//! records them as cancelled.

use std::io::Write;

use super::{Context, Error, Result, exit};
use crate::exec::slurm;
use crate::store::{RunFilter, RunRecord, Status};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The runs: run-N, N, or prefixes of content keys.
    #[arg(required_unless_present = "experiment")]
    runs: Vec<String>,
    /// Every run of this experiment that has not ended.
    #[arg(long, conflicts_with = "runs")]
    experiment: Option<String>,
}

pub fn run(args: Args, ctx: &Context) -> Result<u8> {
    let mut store = ctx.open_existing_store()?;
    slurm::sync_before_reading(&mut store)?;
    let runs: Vec<RunRecord> = match &args.experiment {
        Some(e) => store
            .runs(&RunFilter {
                experiment: Some(e.clone()),
                ..RunFilter::default()
            })?
            .into_iter()
            .filter(|r| !r.status().is_final())
            .collect(),
        None => args
            .runs
            .iter()
            .map(|r| store.run(r))
            .collect::<std::result::Result<_, _>>()?,
    };
    // A local process records how its own run ends; it is stopped where it runs.
    if let Some(r) = runs
        .iter()
        .find(|r| r.status() == Status::Running && r.slurm.is_none())
    {
        let (pid, host) = r
            .state
            .lease()
            .map(|l| {
                (
                    l.pid.unwrap_or_default(),
                    l.host.clone().unwrap_or_default(),
                )
            })
            .unwrap_or_default();
        return Err(Error::Usage(format!(
            "{} is training in process {pid} on {host}: stop it there with Ctrl-C (it is \
             checkpointed and marked interrupted); nothing was cancelled",
            r.name()
        )));
    }
    let mut out = std::io::stdout().lock();
    for (id, cancelled) in slurm::cancel(&store, &runs)? {
        let now = store.run_by_id(id)?;
        if cancelled {
            writeln!(out, "run-{id}: cancelled")?;
        } else {
            writeln!(out, "run-{id}: not cancelled: it is {}", now.status())?;
        }
    }
    Ok(exit::OK)
}
