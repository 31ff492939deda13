//! `xp status`: per experiment, how many runs are queued, running, done and failed; the
//! running runs with their progress and ETA; the latest failures.

use std::io::{IsTerminal, Write};

use serde::Serialize;

use super::output::{ReportFormat, duration, figure, shown, si, table, write_json};
use super::{Context, Result, exit};
use crate::exec;
use crate::store::{
    ExperimentCounts, Liveness, RunFilter, RunRecord, RunState, Status, Store, queue,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this experiment.
    #[arg(long)]
    experiment: Option<String>,
    /// Redraw every N seconds (default 2) until Ctrl-C.
    #[arg(
        long,
        value_name = "SECONDS",
        num_args = 0..=1,
        default_missing_value = "2",
        value_parser = super::output::interval
    )]
    watch: Option<f64>,
    #[arg(long, value_enum, default_value = "table")]
    format: ReportFormat,
}

/// A running run as status reports it.
#[derive(Debug, Serialize)]
struct Running {
    run: String,
    experiment: String,
    step: u64,
    steps: u64,
    train_loss: Option<f64>,
    val_loss: Option<f64>,
    tokens_per_s: Option<f64>,
    eta_s: Option<f64>,
    host: Option<String>,
    pid: Option<i64>,
    /// Why the run's process is believed dead, if it is (local runs).
    stale: Option<String>,
    /// Its Slurm array task and the state Slurm last reported (runs on Slurm).
    slurm: Option<String>,
}

/// A run handed to Slurm that is not training now: waiting, or requeued after its
/// time-limit signal.
#[derive(Debug, Serialize)]
struct OnSlurm {
    run: String,
    experiment: String,
    status: Status,
    task: Option<String>,
    slurm_state: Option<String>,
}

/// How long an experiment has left, by the pace of its runs so far.
#[derive(Debug, Serialize)]
struct Remaining {
    experiment: String,
    runs_left: usize,
    workers: usize,
    eta_s: f64,
}

/// A run that ended badly, with the first line of its error.
#[derive(Debug, Serialize)]
struct Ended {
    run: String,
    experiment: String,
    status: Status,
    step: u64,
    error: String,
}

#[derive(Debug, Serialize)]
struct Report {
    experiments: Vec<ExperimentCounts>,
    remaining: Vec<Remaining>,
    running: Vec<Running>,
    on_slurm: Vec<OnSlurm>,
    recent_failures: Vec<Ended>,
    interrupted: Vec<Ended>,
}

/// The remaining time of an experiment: the steps its unfinished runs have left, at the
/// seconds per step its runs have shown (finished runs' wall time, else running runs' step
/// time), divided over the workers training it now (at least one).
fn remaining(
    store: &Store,
    experiment: &str,
    running: &[Running],
    step_s: &[f64],
) -> Result<Option<Remaining>> {
    let runs = store.run_times(experiment)?;
    let finished: Vec<f64> = runs
        .iter()
        .filter(|r| r.status == Status::Completed && r.steps_total > 0)
        .filter_map(|r| r.wall_s.map(|w| w / r.steps_total as f64))
        .collect();
    let pace = if finished.is_empty() {
        (!step_s.is_empty()).then(|| step_s.iter().sum::<f64>() / step_s.len() as f64)
    } else {
        Some(finished.iter().sum::<f64>() / finished.len() as f64)
    };
    let Some(pace) = pace else { return Ok(None) };
    let left: Vec<u64> = runs
        .iter()
        .filter(|r| {
            matches!(
                r.status,
                Status::Queued | Status::Submitted | Status::Running | Status::Interrupted
            )
        })
        .map(|r| r.steps_total.saturating_sub(r.step))
        .collect();
    if left.is_empty() {
        return Ok(None);
    }
    let workers = running
        .iter()
        .filter(|r| r.experiment == experiment && r.stale.is_none())
        .count()
        .max(1);
    Ok(Some(Remaining {
        experiment: experiment.to_string(),
        runs_left: left.len(),
        workers,
        eta_s: left.iter().sum::<u64>() as f64 * pace / workers as f64,
    }))
}

fn gather(store: &mut Store, experiment: Option<&String>) -> Result<Report> {
    // What Slurm tasks recorded since the last look (each frame of --watch looks again).
    if let Err(e) = crate::exec::slurm::sync_before_reading(store) {
        tracing::warn!("the store may be behind what Slurm tasks recorded: {e}");
    }
    let store = &*store;
    let experiments: Vec<_> = store
        .counts()?
        .into_iter()
        .filter(|c| experiment.is_none_or(|e| *e == c.experiment))
        .collect();
    let here = exec::host();
    let filter = |status, limit| RunFilter {
        experiment: experiment.cloned(),
        status: Some(status),
        newest_first: true,
        limit,
    };
    let mut running = Vec::new();
    let mut step_s: std::collections::HashMap<String, Vec<f64>> = Default::default();
    for r in store.runs(&filter(Status::Running, None))? {
        let RunState::Running(lease) = &r.state else {
            continue;
        };
        let last = |name| store.latest_metric(r.id, name).map(|m| m.map(|(_, v)| v));
        let step_ms = last("step_ms")?;
        if let Some(ms) = step_ms {
            step_s
                .entry(r.experiment.clone())
                .or_default()
                .push(ms / 1e3);
        }
        let slurm = r.slurm.as_ref().map(|s| {
            format!(
                "{} {}",
                s.id().unwrap_or_default(),
                s.state.as_deref().unwrap_or("")
            )
            .trim()
            .to_string()
        });
        running.push(Running {
            run: r.name(),
            experiment: r.experiment.clone(),
            step: r.step,
            steps: r.steps_total,
            train_loss: last("train_loss")?,
            val_loss: last("val_loss")?,
            tokens_per_s: last("tokens_per_s")?,
            eta_s: step_ms.map(|ms| ms / 1e3 * r.steps_total.saturating_sub(r.step) as f64),
            // Slurm says whether a task is alive; `xp sync` acts on it.
            stale: match (&slurm, queue::liveness(lease, here.as_deref())) {
                (None, Liveness::Dead(why)) => Some(why),
                _ => None,
            },
            host: lease.host.clone(),
            pid: lease.pid,
            slurm,
        });
    }
    let mut on_slurm = Vec::new();
    for status in [Status::Submitted, Status::Interrupted] {
        for r in store.runs(&filter(status, None))? {
            if let Some(s) = &r.slurm {
                on_slurm.push(OnSlurm {
                    run: r.name(),
                    experiment: r.experiment.clone(),
                    status,
                    task: s.id(),
                    slurm_state: s.state.clone(),
                });
            }
        }
    }
    let mut remaining_time = Vec::new();
    for e in &experiments {
        let paces = step_s.get(&e.experiment).map(Vec::as_slice).unwrap_or(&[]);
        if let Some(r) = remaining(store, &e.experiment, &running, paces)? {
            remaining_time.push(r);
        }
    }
    let ended = |r: RunRecord| Ended {
        run: r.name(),
        status: r.status(),
        step: r.step,
        error: r
            .state
            .reason()
            .and_then(|e| e.lines().next())
            .unwrap_or("no error recorded")
            .to_string(),
        experiment: r.experiment,
    };
    Ok(Report {
        experiments,
        remaining: remaining_time,
        running,
        on_slurm,
        recent_failures: store
            .runs(&filter(Status::Failed, Some(5)))?
            .into_iter()
            .map(ended)
            .collect(),
        // Interrupted runs on Slurm are its to start again: they are listed above.
        interrupted: store
            .runs(&filter(Status::Interrupted, Some(5)))?
            .into_iter()
            .filter(|r| r.slurm.is_none())
            .map(ended)
            .collect(),
    })
}

fn render(status: &Report, store: &Store, out: &mut impl Write) -> std::io::Result<()> {
    if status.experiments.is_empty() {
        return writeln!(out, "no runs recorded in {}", store.path().display());
    }
    let mut header = vec!["experiment".to_string()];
    header.extend(Status::ALL.iter().map(|s| s.to_string()));
    header.push("total".into());
    let mut t = table(header);
    for c in &status.experiments {
        let mut row = vec![c.experiment.clone()];
        for s in Status::ALL {
            row.push(
                c.counts
                    .iter()
                    .find(|(st, _)| *st == s)
                    .map(|(_, n)| n.to_string())
                    .unwrap_or_else(|| "·".into()),
            );
        }
        row.push(c.counts.iter().map(|(_, n)| n).sum::<i64>().to_string());
        t.add_row(row);
    }
    writeln!(out, "{t}")?;
    for r in &status.remaining {
        writeln!(
            out,
            "{}: {} run{} to go, about {} left{}",
            r.experiment,
            r.runs_left,
            if r.runs_left == 1 { "" } else { "s" },
            duration(r.eta_s),
            if r.workers > 1 {
                format!(" over {} workers", r.workers)
            } else {
                String::new()
            }
        )?;
    }
    for r in &status.running {
        let pct = if r.steps > 0 {
            100.0 * r.step as f64 / r.steps as f64
        } else {
            0.0
        };
        write!(
            out,
            "running {} ({}): step {}/{} ({pct:.0}%)  train {}  val {}",
            r.run,
            r.experiment,
            r.step,
            r.steps,
            figure(r.train_loss),
            figure(r.val_loss)
        )?;
        if let Some(s) = r.tokens_per_s {
            write!(out, "  {} tok/s", si(s.round()))?;
        }
        if let Some(task) = &r.slurm {
            write!(out, "  on Slurm {task}")?;
        }
        match &r.stale {
            Some(why) => writeln!(
                out,
                "\n        orphaned: {why}; the next `xp run` (or `xp resume {}`) resumes it",
                r.run
            )?,
            None => writeln!(out, "  eta {}", shown(r.eta_s, duration))?,
        }
    }
    for r in &status.on_slurm {
        writeln!(
            out,
            "{} {} ({}): Slurm task {} {}",
            r.status,
            r.run,
            r.experiment,
            r.task.as_deref().unwrap_or("?"),
            r.slurm_state.as_deref().unwrap_or("")
        )?;
    }
    for r in &status.interrupted {
        writeln!(
            out,
            "interrupted {} ({}) at step {}: {}; `xp resume {}` goes on",
            r.run, r.experiment, r.step, r.error, r.run
        )?;
    }
    for r in &status.recent_failures {
        writeln!(out, "failed {} ({}): {}", r.run, r.experiment, r.error)?;
    }
    Ok(())
}

pub fn run(args: Args, ctx: &Context) -> Result<u8> {
    let mut store = ctx.open_existing_store()?;
    let mut out = std::io::stdout().lock();
    let Some(every) = args.watch else {
        let status = gather(&mut store, args.experiment.as_ref())?;
        match args.format {
            ReportFormat::Json => write_json(&mut out, &status)?,
            ReportFormat::Table => render(&status, &store, &mut out)?,
        }
        return Ok(exit::OK);
    };
    let every = std::time::Duration::from_secs_f64(every);
    let terminal = std::io::stdout().is_terminal() && args.format == ReportFormat::Table;
    if terminal {
        out.write_all(b"\x1b[2J")?;
    }
    loop {
        let status = gather(&mut store, args.experiment.as_ref())?;
        if args.format == ReportFormat::Json {
            // A stream of reports, one JSON document per line, for a program to follow.
            serde_json::to_writer(&mut out, &status).map_err(std::io::Error::from)?;
            writeln!(out)?;
            out.flush()?;
            std::thread::sleep(every);
            continue;
        }
        let mut frame = Vec::new();
        render(&status, &store, &mut frame)?;
        if terminal {
            // Home and clear-to-end, so the frame is redrawn in place without flicker.
            out.write_all(b"\x1b[H")?;
            let text = String::from_utf8_lossy(&frame).replace('\n', "\x1b[K\n");
            out.write_all(text.as_bytes())?;
            out.write_all(b"\x1b[J")?;
        } else {
            out.write_all(&frame)?;
            writeln!(out)?;
        }
        out.flush()?;
        std::thread::sleep(every);
    }
}
