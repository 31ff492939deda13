//! `xp worker` (started by xp, not by people): trains runs for an `xp run --jobs N` on this
//! machine, reporting to it on standard output, or one Slurm array task's run.

use std::path::PathBuf;

use super::output::say;
use super::{Context, Result, progress, run::code};
use crate::exec::interrupts::Interrupts;
use crate::exec::{self, Queue, events::EventWriter};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Take this experiment's queued runs (a local worker).
    #[arg(long, conflicts_with = "slurm")]
    experiment: Option<String>,
    /// The GPU number to train on.
    #[arg(long)]
    device: Option<u32>,
    /// Stop at the first failed run.
    #[arg(long)]
    fail_fast: bool,
    /// Train the run of this Slurm array task: the tasks file of its array (`SLURM_ARRAY_TASK_ID`
    /// picks the line).
    #[arg(long, value_name = "TASKS")]
    slurm: Option<PathBuf>,
}

pub fn run(args: Args, ctx: &Context) -> Result<u8> {
    if let Some(tasks) = &args.slurm {
        return Ok(exec::slurm::worker::run(tasks, &mut |line: &str| {
            say(line)
        })?);
    }
    let Some(experiment) = &args.experiment else {
        return Err(super::Error::Usage(
            "xp worker needs --experiment NAME or --slurm TASKS".into(),
        ));
    };
    let mut store = ctx.open_existing_store()?;
    let interrupts = Interrupts::install(ctx.db.clone(), false, progress::tell)?;
    let options = exec::Options {
        fail_fast: args.fail_fast,
        stop: &interrupts.stop,
        device: args.device,
    };
    let mut events = EventWriter::new(std::io::stdout());
    let report = exec::execute(
        &mut store,
        Queue::Experiment(experiment),
        &options,
        &mut events,
    )?;
    Ok(code(&report))
}
