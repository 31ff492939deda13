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
    /// Why the run's process is believed dead, if it is.
    stale: Option<String>,
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
    running: Vec<Running>,
    recent_failures: Vec<Ended>,
    interrupted: Vec<Ended>,
}

fn gather(store: &Store, experiment: Option<&String>) -> Result<Report> {
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
    for r in store.runs(&filter(Status::Running, None))? {
        let RunState::Running(lease) = &r.state else {
            continue;
        };
        let last = |name| store.latest_metric(r.id, name).map(|m| m.map(|(_, v)| v));
        let step_ms = last("step_ms")?;
        running.push(Running {
            run: r.name(),
            experiment: r.experiment.clone(),
            step: r.step,
            steps: r.steps_total,
            train_loss: last("train_loss")?,
            val_loss: last("val_loss")?,
            tokens_per_s: last("tokens_per_s")?,
            eta_s: step_ms.map(|ms| ms / 1e3 * r.steps_total.saturating_sub(r.step) as f64),
            stale: match queue::liveness(lease, here.as_deref()) {
                Liveness::Alive => None,
                Liveness::Dead(why) => Some(why),
            },
            host: lease.host.clone(),
            pid: lease.pid,
        });
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
        running,
        recent_failures: store
            .runs(&filter(Status::Failed, Some(5)))?
            .into_iter()
            .map(ended)
            .collect(),
        interrupted: store
            .runs(&filter(Status::Interrupted, Some(5)))?
            .into_iter()
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
        match &r.stale {
            Some(why) => writeln!(
                out,
                "\n        orphaned: {why}; the next `xp run` (or `xp resume {}`) resumes it",
                r.run
            )?,
            None => writeln!(out, "  eta {}", shown(r.eta_s, duration))?,
        }
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
    let store = ctx.open_existing_store()?;
    let mut out = std::io::stdout().lock();
    let Some(every) = args.watch else {
        let status = gather(&store, args.experiment.as_ref())?;
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
        let status = gather(&store, args.experiment.as_ref())?;
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
