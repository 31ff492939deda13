//! `xp compare`: the settings that differ between runs.

use std::io::Write;

use super::{Context, Format, Result, exit, write_csv, write_json, write_table};
use crate::manifest::layers::flatten;
use crate::sweep;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Two or more runs: run-N, N, or content-key prefixes.
    #[arg(required = true, num_args = 2..)]
    runs: Vec<String>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

pub fn run(args: Args, ctx: &Context) -> Result<u8> {
    let store = ctx.open_existing_store()?;
    let runs = args
        .runs
        .iter()
        .map(|r| store.run(r))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let configs: Vec<_> = runs.iter().map(|r| flatten(&r.spec["config"])).collect();
    let mut keys: Vec<&String> = configs.iter().flat_map(|c| c.keys()).collect();
    keys.sort();
    keys.dedup();
    let differing: Vec<&String> = keys
        .into_iter()
        .filter(|k| {
            k.as_str() != "experiment.description"
                && configs.iter().any(|c| c.get(*k) != configs[0].get(*k))
        })
        .collect();
    let mut header = vec!["setting".to_string()];
    header.extend(runs.iter().map(|r| r.name()));
    let rows: Vec<Vec<String>> = differing
        .iter()
        .map(|k| {
            let mut row = vec![k.to_string()];
            row.extend(
                configs
                    .iter()
                    .map(|c| c.get(*k).map(sweep::short).unwrap_or_else(|| "—".into())),
            );
            row
        })
        .collect();
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            let value: Vec<_> = differing
                .iter()
                .map(|k| serde_json::json!({ "setting": k, "values": configs.iter().map(|c| c.get(*k).cloned()).collect::<Vec<_>>() }))
                .collect();
            write_json(&mut out, &value)?;
        }
        Format::Csv => write_csv(&mut out, &header, &rows)?,
        Format::Table => {
            if rows.is_empty() {
                writeln!(out, "the runs have identical settings")?;
            } else {
                write_table(&mut out, header, rows)?;
            }
        }
    }
    Ok(exit::OK)
}
