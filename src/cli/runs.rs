//! `xp runs`: list runs, filtered by experiment, state and a `--where` expression, sorted by
//! any config key or summary metric.

use std::io::Write;

use super::{Context, Format, Result, Selection, exit, si, write_csv, write_table};
use crate::store::{Listed, RunRow};
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
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// The swept settings of a run, as `key=value` pairs.
pub fn swept(run: &RunRow) -> String {
    run.spec["swept"]
        .as_array()
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|p| {
                    Some(format!(
                        "{}={}",
                        p.get(0)?.as_str()?,
                        sweep::short(p.get(1)?)
                    ))
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

pub fn run(args: Args, ctx: &Context) -> Result<u8> {
    let store = ctx.open_existing_store()?;
    let runs: Vec<Listed> = args
        .selection
        .query(&store, args.sort.as_deref(), args.limit)?;
    let mut out = std::io::stdout().lock();
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
    let csv = args.format == Format::Csv;
    let f = |v: Option<f64>| match v {
        Some(v) if csv => v.to_string(),
        Some(v) => format!("{v:.4}"),
        None if csv => String::new(),
        None => "—".into(),
    };
    let speed = |v: Option<f64>| match v {
        Some(v) if csv => v.to_string(),
        Some(v) => si(v.round()),
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
                r.status.clone(),
                format!("{}/{}", r.step, r.steps_total),
                f(s.best_val_loss),
                speed(s.median_tokens_per_s),
                if csv {
                    r.key.clone()
                } else {
                    r.key[..10].to_string()
                },
                swept(r),
            ]
        })
        .collect();
    match args.format {
        Format::Json => {
            for r in &runs {
                writeln!(out, "{}", serde_json::to_string(r).expect("serializes"))?;
            }
        }
        Format::Csv => write_csv(&mut out, &header, &rows)?,
        Format::Table => {
            if rows.is_empty() {
                writeln!(out, "no runs match")?;
            } else {
                write_table(&mut out, header, rows)?;
            }
        }
    }
    Ok(exit::OK)
}
