//! `xp runs`: list runs, filtered by experiment and status.

use std::io::Write;

use super::{Context, Format, Result, exit, write_csv, write_table};
use crate::store::{RunFilter, RunRow, STATUSES};
use crate::sweep;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only runs of this experiment.
    #[arg(long)]
    experiment: Option<String>,
    /// Only runs in this state.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(STATUSES))]
    status: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

fn swept(run: &RunRow) -> String {
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
    let runs = store.runs(&RunFilter {
        experiment: args.experiment,
        status: args.status,
    })?;
    let mut out = std::io::stdout().lock();
    let header: Vec<String> = ["run", "experiment", "status", "step", "key", "swept"]
        .map(String::from)
        .to_vec();
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.name(),
                r.experiment.clone(),
                r.status.clone(),
                format!("{}/{}", r.step, r.steps_total),
                r.key[..10].to_string(),
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
            write_table(&mut out, header, rows)?;
        }
    }
    Ok(exit::OK)
}
