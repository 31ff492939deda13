//! `xp resume`: go on with one interrupted, failed or orphaned run from its last checkpoint.

use std::io::Write;
use std::path::Path;

use super::{Context, Error, Result, run::code, run::execute};
use crate::exec::{self, Liveness, Queue};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run: run-N, N, or a prefix of its content key.
    run: String,
}

pub fn run(args: Args, ctx: &Context) -> Result<u8> {
    let mut store = ctx.open_existing_store()?;
    let run = store.run(&args.run)?;
    match run.status.as_str() {
        "completed" => {
            return Err(Error::Usage(format!(
                "{} is already completed; nothing to resume",
                run.name()
            )));
        }
        "cancelled" => {
            return Err(Error::Usage(format!(
                "{} was cancelled; queue it again with `xp run MANIFEST`",
                run.name()
            )));
        }
        "running" => {
            if let Liveness::Alive = exec::liveness(&run, exec::host().as_deref()) {
                return Err(Error::Usage(format!(
                    "{} is running (process {} on {}); stop that process first",
                    run.name(),
                    run.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
                    run.host.as_deref().unwrap_or("an unknown host")
                )));
            }
        }
        _ => {}
    }
    // Data paths in a run's config are relative to the manifest it came from.
    let base_dir = Path::new(&run.manifest_path)
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let (report, _) = execute(&mut store, Queue::Run(run.id), &[], &base_dir, false, ctx)?;
    let after = store.run(&run.id.to_string())?;
    writeln!(std::io::stdout(), "{}: {}", after.name(), after.status)?;
    if report.completed + report.failed + report.interrupted == 0 {
        return Err(Error::Usage(format!(
            "{} could not be claimed: it is {} now",
            after.name(),
            after.status
        )));
    }
    Ok(code(&report))
}
