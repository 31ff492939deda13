//! `xp export metrics` and `xp export summaries`: metrics (long format) or run summaries (one
//! row per run) as CSV or JSON Lines, for pandas and polars.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use super::super::load::Selection;
use super::super::output::write_csv;
use super::super::{Context, Error, Result, exit};
use crate::report::settings::differing_settings;
use crate::store::{Listed, RunRecord};
use crate::summary::SummaryMetric;

/// What each exported row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// One row per (run, metric, step).
    Metrics,
    /// One row per run.
    Summaries,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum ExportFormat {
    Csv,
    Jsonl,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these runs (run-N, N or key prefixes); default all that match the filters.
    runs: Vec<String>,
    #[command(flatten)]
    selection: Selection,
    #[arg(long, value_enum, default_value = "csv")]
    format: ExportFormat,
    /// Write here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// A finite number as JSON, else null (JSON has no NaN or infinity).
fn json_number(v: Option<f64>) -> serde_json::Value {
    v.filter(|v| v.is_finite())
        .map(serde_json::Value::from)
        .unwrap_or(serde_json::Value::Null)
}

fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn run(what: Rows, args: Args, ctx: &Context) -> Result<u8> {
    let store = ctx.open_synced_store()?;
    let mut runs: Vec<Listed> = args.selection.query(&store, None, None)?;
    if !args.runs.is_empty() {
        let wanted = args
            .runs
            .iter()
            .map(|r| store.run(r).map(|r| r.id))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        runs.retain(|l| wanted.contains(&l.run.id));
    }
    let sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .map_err(|e| Error::Usage(format!("cannot write {}: {e}", path.display())))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 16, sink);
    match what {
        Rows::Metrics => {
            let names: BTreeMap<i64, (String, String)> = runs
                .iter()
                .map(|l| (l.run.id, (l.run.name(), l.run.experiment.clone())))
                .collect();
            let ids: Vec<i64> = runs.iter().map(|l| l.run.id).collect();
            match args.format {
                ExportFormat::Csv => {
                    let mut w = csv::Writer::from_writer(&mut out);
                    w.write_record(["run", "experiment", "metric", "step", "value", "t_ms"])
                        .map_err(std::io::Error::from)?;
                    store.each_metric(&ids, |run, metric, step, value, t_ms| {
                        let (name, experiment) = &names[&run];
                        w.write_record([
                            name.as_str(),
                            experiment,
                            metric,
                            &step.to_string(),
                            &value.to_string(),
                            &t_ms.to_string(),
                        ])
                        .map_err(std::io::Error::from)
                    })??;
                    w.flush()?;
                }
                ExportFormat::Jsonl => {
                    store.each_metric(&ids, |run, metric, step, value, t_ms| {
                        let (name, experiment) = &names[&run];
                        let row = serde_json::json!({
                            "run": name, "experiment": experiment, "metric": metric,
                            "step": step, "value": json_number(Some(value)), "t_ms": t_ms,
                        });
                        writeln!(out, "{row}")
                    })??;
                }
            }
        }
        Rows::Summaries => {
            let records: Vec<&RunRecord> = runs.iter().map(|l| &l.run).collect();
            let (varying, _) = differing_settings(&records);
            let rows: Vec<serde_json::Map<String, serde_json::Value>> = runs
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let r = &l.run;
                    let s = l.summary.clone().unwrap_or_default();
                    let mut m = serde_json::Map::new();
                    m.insert("run".into(), r.name().into());
                    m.insert("experiment".into(), r.experiment.clone().into());
                    m.insert("status".into(), r.status().name().into());
                    m.insert("key".into(), r.key.clone().into());
                    m.insert("step".into(), r.step.into());
                    m.insert("steps_total".into(), r.steps_total.into());
                    for d in &varying {
                        m.insert(d.setting.clone(), d.values[i].clone().unwrap_or_default());
                    }
                    for metric in SummaryMetric::ALL {
                        let value = match metric {
                            SummaryMetric::Params => s.params.map(Into::into).unwrap_or_default(),
                            _ => json_number(s.get(metric)),
                        };
                        m.insert(metric.name().into(), value);
                    }
                    m
                })
                .collect();
            match args.format {
                ExportFormat::Jsonl => {
                    for (mut row, l) in rows.into_iter().zip(&runs) {
                        // JSON keeps the whole resolved config too, nested as it was given.
                        let tree = serde_json::to_value(&l.run.spec.config).unwrap_or_default();
                        row.insert("config".into(), tree);
                        writeln!(out, "{}", serde_json::Value::Object(row))?;
                    }
                }
                ExportFormat::Csv => {
                    // serde_json's map sorts its keys; a CSV keeps the natural order.
                    let mut header: Vec<String> =
                        ["run", "experiment", "status", "key", "step", "steps_total"]
                            .map(String::from)
                            .to_vec();
                    header.extend(varying.iter().map(|d| d.setting.clone()));
                    header.extend(SummaryMetric::ALL.map(|m| m.name().to_string()));
                    let table: Vec<Vec<String>> = rows
                        .iter()
                        .map(|r| header.iter().map(|h| cell(&r[h])).collect())
                        .collect();
                    write_csv(&mut out, &header, &table)?;
                }
            }
        }
    }
    out.flush()?;
    Ok(exit::OK)
}
