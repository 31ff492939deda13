//! `xp resume`: go on with one interrupted, failed or orphaned run from its last checkpoint.

use std::io::Write;

use super::output::Lossy;
use super::{Context, Error, Result, progress, run::code};
use crate::exec::Queue;
use crate::store::{Liveness, RunState};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run: run-N, N, or a prefix of its content key.
    run: String,
}

pub fn run(args: Args, ctx: &Context) -> Result<u8> {
    let mut store = ctx.open_existing_store()?;
    let run = store.run(&args.run)?;
    match &run.state {
        RunState::Completed => {
            return Err(Error::Usage(format!(
                "{} is already completed; nothing to resume",
                run.name()
            )));
        }
        RunState::Paused => {
            return Err(Error::Usage(format!(
                "{} is paused at step {}, waiting for its early-stopping decision: `xp run` of \
                 its manifest takes the decisions and trains the runs they promote",
                run.name(),
                run.step
            )));
        }
        RunState::Stopped { reason } => {
            return Err(Error::Usage(format!(
                "{} was {reason}; a stopped run is not resumed (its checkpoints are gone)",
                run.name()
            )));
        }
        RunState::Submitted | RunState::Running(_) if run.slurm.is_some() => {
            let task = run.slurm.as_ref().and_then(|s| s.id()).unwrap_or_default();
            return Err(Error::Usage(format!(
                "{} is {} on Slurm (task {task}); `xp cancel {}` first to train it here",
                run.name(),
                run.status(),
                run.name()
            )));
        }
        RunState::Running(lease) => {
            if let Liveness::Alive = lease.liveness_here() {
                return Err(Error::Usage(format!(
                    "{} is running (process {} on {}); stop that process first",
                    run.name(),
                    lease
                        .pid
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "?".into()),
                    lease.host.as_deref().unwrap_or("an unknown host")
                )));
            }
        }
        RunState::Queued
        | RunState::Submitted
        | RunState::Failed { .. }
        | RunState::Cancelled { .. }
        | RunState::Interrupted { .. } => {}
    }
    let one = crate::exec::Workers {
        jobs: 1,
        devices: &[],
    };
    let report = progress::execute(&mut store, Queue::Run(run.id), false, &one, ctx)?;
    let after = store.run_by_id(run.id)?;
    writeln!(
        Lossy(std::io::stdout()),
        "{}: {}",
        after.name(),
        after.status()
    )?;
    if report.completed + report.failed + report.interrupted + report.paused == 0 {
        return Err(Error::Usage(format!(
            "{} could not be claimed: it is {} now",
            after.name(),
            after.status()
        )));
    }
    Ok(code(&report))
}
