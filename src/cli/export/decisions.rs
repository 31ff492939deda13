//! `xp export decisions`: an early-stopped experiment's decision log, by bracket and rung, as
//! CSV or JSON Lines: the same bytes for the same decisions, whatever the number of workers.

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
    if store.early_stop(&args.experiment)?.is_none() {
        let known = store
            .counts()?
            .into_iter()
            .map(|e| e.experiment)
            .collect::<Vec<_>>();
        return Err(Error::Usage(if known.contains(&args.experiment) {
            format!(
                "experiment {} does not stop runs early, so it has no decisions (set \
                 [sweep.early_stop] in its manifest)",
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
    let rows = log.iter().map(|l| {
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
    });
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
