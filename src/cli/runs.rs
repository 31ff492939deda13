//! `xp runs`: list runs, filtered by experiment, state and a `--where` expression, sorted by
//! any config key or summary metric.

use std::io::Write;

use super::load::Selection;
use super::output::{ListFormat, si, write_csv, write_json, write_table};
use super::{Context, Result, exit};
use crate::store::{Listed, RunRecord};
use crate::sweep;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    selection: Selection,
    /// Sort by a key (as in --where), ascending; KEY:desc for descending. Runs without a
    /// value come last.
    #[arg(long, value_name = "KEY[:desc]")]
    sort: Option<String>,
    /// At most this many runs.
    #[arg(long)]
    limit: Option<usize>,
    /// table; csv; json (one array); jsonl (one run per line).
    #[arg(long, value_enum, default_value = "table")]
    format: ListFormat,
}

/// The swept settings of a run, as `key=value` pairs.
pub fn swept(run: &RunRecord) -> String {
    run.spec
        .swept
        .iter()
        .map(|(k, v)| format!("{k}={}", sweep::short(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn run(args: Args, ctx: &Context) -> Result<u8> {
    let store = ctx.open_synced_store()?;
    let runs: Vec<Listed> = args
        .selection
        .query(&store, args.sort.as_deref(), args.limit)?;
    let mut out = std::io::stdout().lock();
    match args.format {
        ListFormat::Json => return Ok(write_json(&mut out, &runs).map(|_| exit::OK)?),
        ListFormat::Jsonl => {
            for r in &runs {
                serde_json::to_writer(&mut out, r).map_err(std::io::Error::from)?;
                writeln!(out)?;
            }
            return Ok(exit::OK);
        }
        ListFormat::Csv | ListFormat::Table => {}
    }
    let header: Vec<String> = [
        "run",
        "experiment",
        "status",
        "step",
        "best val",
        "tok/s",
        "key",
        "swept",
    ]
    .map(String::from)
    .to_vec();
    // Tables round for the eye; CSV keeps full precision for whoever reads it next.
    let csv = args.format == ListFormat::Csv;
    let number = |v: Option<f64>, table: fn(f64) -> String| match v {
        Some(v) if csv => v.to_string(),
        Some(v) => table(v),
        None if csv => String::new(),
        None => "—".into(),
    };
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|l| {
            let r = &l.run;
            let s = l.summary.clone().unwrap_or_default();
            vec![
                r.name(),
                r.experiment.clone(),
                r.status().to_string(),
                format!("{}/{}", r.step, r.steps_total),
                number(s.best_val_loss, |v| format!("{v:.4}")),
                number(s.median_tokens_per_s, |v| si(v.round())),
                if csv {
                    r.key.clone()
                } else {
                    r.key[..10.min(r.key.len())].to_string()
                },
                swept(r),
            ]
        })
        .collect();
    if csv {
        write_csv(&mut out, &header, &rows)?;
    } else if rows.is_empty() {
        writeln!(out, "no runs match")?;
    } else {
        write_table(&mut out, header, rows)?;
    }
    Ok(exit::OK)
}
