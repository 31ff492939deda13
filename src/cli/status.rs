//! `xp status`: per experiment, how many runs are queued, running, done and failed; the
//! running runs with their progress and ETA; the latest failures.

use std::io::{IsTerminal, Write};

use super::output::{ReportFormat, duration, fixed4, or_dash, si, table, write_json};
use super::{Context, Result, context, exit};
use crate::count::Count;
use crate::report::search::Search;
use crate::report::status::{StatusReport, status};
use crate::report::trials::Trials;
use crate::store::{Status, Store};

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

fn render(status: &StatusReport, store: &Store, out: &mut impl Write) -> std::io::Result<()> {
    if status.experiments.is_empty() {
        return writeln!(out, "no runs recorded in {}", store.path().display());
    }
    // The early-stopping states have columns only where some experiment stops runs early.
    let searching = !status.searches.is_empty();
    let shown: Vec<Status> = Status::ALL
        .into_iter()
        .filter(|s| searching || !matches!(s, Status::Paused | Status::Stopped))
        .collect();
    let mut header = vec!["experiment".to_string()];
    header.extend(shown.iter().map(|s| s.to_string()));
    header.push("total".into());
    let mut t = table(header);
    for c in &status.experiments {
        let mut row = vec![c.experiment.clone()];
        for &s in &shown {
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
    for search in &status.searches {
        render_search(search, out)?;
    }
    for trials in &status.trials {
        render_trials(trials, out)?;
    }
    for r in &status.remaining {
        writeln!(
            out,
            "{}: {} to go, about {} left{}{}",
            r.experiment,
            Count::numbered("run", r.runs_left),
            duration(r.eta_s),
            r.range_s.map_or(String::new(), |(lo, hi)| format!(
                " (P10–P90 {} – {})",
                duration(lo),
                duration(hi)
            )),
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
            fixed4(r.train_loss),
            fixed4(r.val_loss)
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
            None => writeln!(out, "  eta {}", or_dash(r.eta_s, duration))?,
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

/// A search's trials: each one's settings, how it ended, its objective and the best so far.
pub fn render_trials(t: &Trials, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: {}; {} of {} trials chosen",
        t.experiment,
        t.method,
        t.rows.len(),
        t.planned
    )?;
    let keys: Vec<String> = t
        .rows
        .first()
        .map(|r| r.settings.iter().map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    let mut header: Vec<String> = ["trial", "run", "status", "step", "objective", "best so far"]
        .map(String::from)
        .to_vec();
    header.extend(keys.iter().cloned());
    let mut table = table(header);
    for r in &t.rows {
        let mut row = vec![
            r.trial.to_string(),
            r.run.clone(),
            r.status.to_string(),
            r.step.to_string(),
            fixed4(r.value),
            fixed4(r.best_so_far),
        ];
        row.extend(r.settings.iter().map(|(_, v)| crate::sweep::short(v)));
        table.add_row(row);
    }
    writeln!(out, "{table}")?;
    if let Some(best) = t.best.and_then(|b| t.rows.iter().find(|r| r.trial == b)) {
        let settings: Vec<String> = best
            .settings
            .iter()
            .map(|(k, v)| format!("{k}={}", crate::sweep::short(v)))
            .collect();
        writeln!(
            out,
            "best: trial {} ({}), {} {}, {}",
            best.trial,
            best.run,
            t.metric,
            fixed4(best.value),
            settings.join(" ")
        )?;
    }
    Ok(())
}

/// An early-stopped experiment's rungs and its best run so far.
fn render_search(s: &Search, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "{}: {}", s.experiment, s.method)?;
    let mut t = table(
        [
            "bracket",
            "rung",
            "step",
            "waiting",
            "promoted",
            "stopped",
            "on the way",
        ]
        .map(String::from)
        .to_vec(),
    );
    let dot = |n: usize| if n == 0 { "·".into() } else { n.to_string() };
    for r in &s.rungs {
        t.add_row(vec![
            r.bracket.to_string(),
            r.rung.to_string(),
            r.step.to_string(),
            dot(r.waiting),
            dot(r.promoted),
            dot(r.stopped),
            dot(r.on_the_way),
        ]);
    }
    writeln!(out, "{t}")?;
    if let Some(b) = &s.best {
        writeln!(
            out,
            "best so far: {} with {} {:.4} at step {} ({})",
            b.run, s.metric, b.value, b.step, b.status
        )?;
    }
    writeln!(
        out,
        "trained {} of the {} steps of every run to its end ({:.0}%)",
        s.steps_trained,
        s.steps_of_full_grid,
        100.0 * s.steps_trained as f64 / s.steps_of_full_grid.max(1) as f64
    )
}

/// The report, after merging what Slurm tasks recorded since the last look (each frame of
/// --watch looks again).
fn gather(store: &mut Store, experiment: Option<&String>) -> Result<StatusReport> {
    context::sync(store);
    Ok(status(store, experiment)?)
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
