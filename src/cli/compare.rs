//! `xp compare`: what differs between runs (settings), what it did (summary metrics, loss
//! curves, metrics at aligned steps), as a report, JSON, CSV or a plot file.

use std::io::Write;
use std::path::PathBuf;

use super::chart::{self, Curves, Series};
use super::output::{Format, si, write_csv, write_json, write_table};
use super::{Context, Error, Result, exit};
use crate::report::compare::compare;
use crate::summary::SummaryMetric;
use crate::sweep;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Two or more runs: run-N, N, or content-key prefixes.
    #[arg(required = true, num_args = 2..)]
    runs: Vec<String>,
    /// Metrics for the aligned-steps table (repeatable).
    #[arg(long = "metric", value_name = "NAME", default_values = ["val_loss", "train_loss"])]
    metrics: Vec<String>,
    /// At most this many aligned steps in the table (the last one always included).
    #[arg(long, default_value_t = 8, value_name = "N")]
    points: usize,
    /// Also draw train and val loss against step to this file (.svg or .png).
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Leave out the terminal charts.
    #[arg(long)]
    no_charts: bool,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// A metric's value as the tables show it: counts and speeds in SI units, wall time to a tenth,
/// losses to four decimals; a dash where there is none.
fn metric_cell(v: Option<f64>, metric: &str) -> String {
    let summary = SummaryMetric::parse(metric);
    match v {
        None => "—".into(),
        Some(v)
            if summary.is_some_and(|m| m.is_count() || m == SummaryMetric::MedianTokensPerS) =>
        {
            si(v.round())
        }
        Some(v) if summary == Some(SummaryMetric::WallS) => format!("{v:.1}"),
        Some(v) => format!("{v:.4}"),
    }
}

pub fn run(args: Args, ctx: &Context) -> Result<u8> {
    let store = ctx.open_synced_store()?;
    let runs = args
        .runs
        .iter()
        .map(|r| store.run(r))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let c = compare(&store, &runs, &args.metrics, args.points)?;
    let (train, val) = (&c.train_loss, &c.val_loss);
    if let Some(path) = &args.plot {
        let curves: Vec<Curves<'_>> = runs
            .iter()
            .enumerate()
            .map(|(i, r)| Curves {
                run: r.name(),
                train: &train[i],
                val: &val[i],
            })
            .collect();
        let title = format!("loss: {}", c.runs.join(" vs "));
        chart::plot(path, &title, &curves).map_err(Error::Usage)?;
    }
    let mut out = std::io::stdout().lock();
    let names = c.runs.clone();
    match args.format {
        Format::Json => write_json(&mut out, &c)?,
        Format::Csv => {
            let mut header = vec!["kind".to_string(), "name".to_string()];
            header.extend(names);
            let mut rows = Vec::new();
            for s in &c.settings {
                let mut row = vec!["setting".into(), s.setting.clone()];
                row.extend(
                    s.values
                        .iter()
                        .map(|v| v.as_ref().map(sweep::short).unwrap_or_default()),
                );
                rows.push(row);
            }
            for s in &c.summary {
                let mut row = vec!["summary".into(), s.metric.to_string()];
                row.extend(
                    s.values
                        .iter()
                        .map(|v| v.map(|v| v.to_string()).unwrap_or_default()),
                );
                rows.push(row);
            }
            for a in &c.aligned {
                let mut row = vec!["metric".into(), format!("{}@{}", a.metric, a.step)];
                row.extend(
                    a.values
                        .iter()
                        .map(|v| v.map(|v| v.to_string()).unwrap_or_default()),
                );
                rows.push(row);
            }
            write_csv(&mut out, &header, &rows)?;
        }
        Format::Table => {
            if c.settings.is_empty() {
                writeln!(out, "settings: identical")?;
            } else {
                writeln!(out, "settings that differ")?;
                let mut header = vec!["setting".to_string()];
                header.extend(names.iter().cloned());
                let rows =
                    c.settings
                        .iter()
                        .map(|s| {
                            let mut row = vec![s.setting.clone()];
                            row.extend(s.values.iter().map(|v| {
                                v.as_ref().map(sweep::short).unwrap_or_else(|| "—".into())
                            }));
                            row
                        })
                        .collect();
                write_table(&mut out, header, rows)?;
            }
            writeln!(out, "\nsummary (* the better value)")?;
            let mut header = vec!["metric".to_string()];
            header.extend(names.iter().cloned());
            let rows = c
                .summary
                .iter()
                .map(|s| {
                    let mut row = vec![s.metric.to_string()];
                    row.extend(s.values.iter().enumerate().map(|(i, v)| {
                        let mark = if s.best == Some(i) { " *" } else { "" };
                        format!("{}{mark}", metric_cell(*v, s.metric))
                    }));
                    row
                })
                .collect();
            write_table(&mut out, header, rows)?;
            if !args.no_charts {
                for (name, curves) in [("train_loss", &train), ("val_loss", &val)] {
                    let series: Vec<Series<'_>> = names
                        .iter()
                        .zip(curves.iter())
                        .map(|(n, p)| Series {
                            label: n.clone(),
                            points: p,
                        })
                        .collect();
                    writeln!(out)?;
                    write!(out, "{}", chart::render(name, &series, 64, 16, ctx.color))?;
                }
            }
            if !c.aligned.is_empty() {
                writeln!(out, "\nat aligned steps")?;
                let mut header = vec!["step".to_string()];
                for m in &args.metrics {
                    header.extend(names.iter().map(|n| format!("{m} {n}")));
                }
                let steps: Vec<i64> = c
                    .aligned
                    .iter()
                    .filter(|a| a.metric == args.metrics[0])
                    .map(|a| a.step)
                    .collect();
                let rows = steps
                    .iter()
                    .map(|step| {
                        let mut row = vec![step.to_string()];
                        for m in &args.metrics {
                            if let Some(a) =
                                c.aligned.iter().find(|a| &a.metric == m && a.step == *step)
                            {
                                row.extend(a.values.iter().map(|v| metric_cell(*v, m)));
                            }
                        }
                        row
                    })
                    .collect();
                write_table(&mut out, header, rows)?;
            }
            if c.decisions.iter().any(Option::is_some) {
                writeln!(out, "\nearly stopping")?;
                for (name, d) in names.iter().zip(&c.decisions) {
                    writeln!(
                        out,
                        "  {name}: {}",
                        d.as_deref().unwrap_or("no decision yet")
                    )?;
                }
            }
            if let Some(p) = &args.plot {
                writeln!(out, "\nplot written to {}", p.display())?;
            }
        }
    }
    Ok(exit::OK)
}
