//! `xp export decisions`: a search's trials and an early-stopped experiment's decisions (by
//! bracket and rung), as CSV or JSON Lines: the same bytes for the same decisions, whatever the number of workers.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use super::super::{Context, Error, Result, exit};
use super::rows::ExportFormat;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The experiment.
    experiment: String,
    #[arg(long, value_enum, default_value = "csv")]
    format: ExportFormat,
    /// Write here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// The columns, without when each decision was taken (the one thing that differs between
/// two executions that decide alike).
const HEADER: [&str; 11] = [
    "experiment",
    "bracket",
    "rung",
    "step",
    "run",
    "action",
    "value",
    "rank",
    "peers",
    "cutoff",
    "reason",
];

pub fn run(args: Args, ctx: &Context) -> Result<u8> {
    let store = ctx.open_synced_store()?;
    let trials = store.trials(&args.experiment)?;
    if store.early_stop(&args.experiment)?.is_none() && trials.is_none() {
        let known = store
            .counts()?
            .into_iter()
            .map(|e| e.experiment)
            .collect::<Vec<_>>();
        return Err(Error::Usage(if known.contains(&args.experiment) {
            format!(
                "experiment {} neither stops runs early nor searches, so it has no \
                 decisions (set [sweep.early_stop] or [sweep.search] in its manifest)",
                args.experiment
            )
        } else {
            format!(
                "no experiment {} in the store; experiments: {}",
                args.experiment,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        }));
    }
    let log = store.decisions(&args.experiment)?;
    let sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .map_err(|e| Error::Usage(format!("cannot write {}: {e}", path.display())))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(sink);
    // A search's trials first, in trial order (bracket and rung empty, action `trial`, rank
    // the trial's number, peers the ended trials it saw, reason how it was chosen and its
    // settings), then the rung decisions.
    let trial_rows = trials.iter().flat_map(|(_, t)| t.iter()).map(|t| {
        let settings: Vec<String> = t
            .settings
            .iter()
            .map(|(k, v)| format!("{k}={}", crate::sweep::short(v)))
            .collect();
        [
            args.experiment.clone(),
            String::new(),
            String::new(),
            "0".to_string(),
            format!("run-{}", t.run),
            "trial".to_string(),
            String::new(),
            t.trial.to_string(),
            t.seen.to_string(),
            String::new(),
            format!("{}: {}", t.how, settings.join(", ")),
        ]
    });
    let rows = trial_rows.chain(log.iter().map(|l| {
        let d = &l.decision;
        [
            args.experiment.clone(),
            d.bracket.to_string(),
            d.rung.to_string(),
            d.step.to_string(),
            format!("run-{}", d.run),
            d.action.name().to_string(),
            d.value.to_string(),
            d.rank.to_string(),
            d.peers.to_string(),
            d.cutoff.map(|c| c.to_string()).unwrap_or_default(),
            d.reason.clone(),
        ]
    }));
    match args.format {
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(&mut out);
            w.write_record(HEADER).map_err(std::io::Error::from)?;
            for row in rows {
                w.write_record(&row).map_err(std::io::Error::from)?;
            }
            w.flush()?;
        }
        ExportFormat::Jsonl => {
            for t in trials.iter().flat_map(|(_, t)| t.iter()) {
                let settings: serde_json::Map<String, serde_json::Value> =
                    t.settings.iter().cloned().collect();
                let row = serde_json::json!({
                    "experiment": args.experiment, "trial": t.trial,
                    "run": format!("run-{}", t.run), "action": "trial", "seen": t.seen,
                    "reason": t.how, "settings": settings,
                });
                writeln!(out, "{row}")?;
            }
            for l in &log {
                let d = &l.decision;
                let row = serde_json::json!({
                    "experiment": args.experiment, "bracket": d.bracket, "rung": d.rung,
                    "step": d.step, "run": format!("run-{}", d.run), "action": d.action,
                    "value": d.value, "rank": d.rank, "peers": d.peers, "cutoff": d.cutoff,
                    "reason": d.reason,
                });
                writeln!(out, "{row}")?;
            }
        }
    }
    out.flush()?;
    Ok(exit::OK)
}
