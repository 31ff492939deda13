//! `xp compare`: what differs between runs (settings), what it did (summary metrics, loss
//! curves, metrics at aligned steps), as a report, JSON, CSV or a plot file.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use super::chart::{self, Curves, Series};
use super::output::{Format, si, write_csv, write_json, write_table};
use super::{Context, Error, Result, exit};
use crate::manifest::layers::flatten;
use crate::store::{RunRecord, Store};
use crate::summary::{Better, Summary, SummaryMetric};
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

#[derive(Debug, Serialize)]
struct Setting {
    setting: String,
    values: Vec<Option<serde_json::Value>>,
}

#[derive(Debug, Serialize)]
struct SummaryLine {
    metric: &'static str,
    values: Vec<Option<f64>>,
    /// Index of the better run, where the metric has a direction and values differ.
    best: Option<usize>,
}

#[derive(Debug, Serialize)]
struct Aligned {
    metric: String,
    step: i64,
    values: Vec<Option<f64>>,
}

#[derive(Debug, Serialize)]
struct Comparison {
    runs: Vec<String>,
    settings: Vec<Setting>,
    summary: Vec<SummaryLine>,
    aligned: Vec<Aligned>,
}

fn best(values: &[Option<f64>], better: Better) -> Option<usize> {
    let present: Vec<(usize, f64)> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.filter(|v| v.is_finite()).map(|v| (i, v)))
        .collect();
    if better == Better::Neither
        || present.len() < 2
        || present.iter().all(|(_, v)| *v == present[0].1)
    {
        return None;
    }
    let pick = present.into_iter().min_by(|a, b| {
        let (a, b) = if better == Better::Lower {
            (a.1, b.1)
        } else {
            (b.1, a.1)
        };
        a.total_cmp(&b)
    });
    pick.map(|(i, _)| i)
}

/// Steps to show: those every run recorded for the first metric (else any run did), thinned
/// evenly to at most `n`, always keeping the last.
fn aligned_steps(curves: &[Vec<(i64, f64)>], n: usize) -> Vec<i64> {
    let sets: Vec<BTreeSet<i64>> = curves
        .iter()
        .map(|c| c.iter().map(|p| p.0).collect())
        .collect();
    let mut common: Vec<i64> = match sets.split_first() {
        Some((first, rest)) => first
            .iter()
            .copied()
            .filter(|s| rest.iter().all(|r| r.contains(s)))
            .collect(),
        None => Vec::new(),
    };
    if common.is_empty() {
        common = sets
            .iter()
            .flatten()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
    }
    if common.len() <= n || n == 0 {
        return if n == 0 { Vec::new() } else { common };
    }
    let last = common.len() - 1;
    let mut picked: Vec<i64> = (0..n)
        .map(|i| common[(i * last).div_ceil((n - 1).max(1))])
        .collect();
    picked.dedup();
    picked
}

/// A run's curve of one metric: (step, value) by step.
type Curve = Vec<(f64, f64)>;

fn compare(
    store: &Store,
    runs: &[RunRecord],
    args: &Args,
) -> Result<(Comparison, Vec<Curve>, Vec<Curve>)> {
    let configs: Vec<_> = runs
        .iter()
        .map(|r| flatten(&serde_json::to_value(&r.spec.config).expect("config serializes")))
        .collect();
    let mut keys: Vec<&String> = configs.iter().flat_map(|c| c.keys()).collect();
    keys.sort();
    keys.dedup();
    let settings = keys
        .into_iter()
        .filter(|k| {
            // The description is prose, and the name differs whenever experiments do.
            k.as_str() != "experiment.description"
                && configs.iter().any(|c| c.get(*k) != configs[0].get(*k))
        })
        .map(|k| Setting {
            setting: k.clone(),
            values: configs.iter().map(|c| c.get(k).cloned()).collect(),
        })
        .collect();
    let summaries: Vec<Summary> = runs
        .iter()
        .map(|r| store.summary(r.id).map(Option::unwrap_or_default))
        .collect::<std::result::Result<_, _>>()?;
    let summary = SummaryMetric::ALL
        .iter()
        .map(|&metric| {
            let values: Vec<Option<f64>> = summaries.iter().map(|s| s.get(metric)).collect();
            SummaryLine {
                metric: metric.name(),
                best: best(&values, metric.better()),
                values,
            }
        })
        .collect();
    // Each curve is read once, whether the table, the charts or the plot use it.
    let mut curves: std::collections::HashMap<&str, Vec<Vec<(i64, f64)>>> =
        std::collections::HashMap::new();
    for name in args
        .metrics
        .iter()
        .map(String::as_str)
        .chain(["train_loss", "val_loss"])
    {
        if !curves.contains_key(name) {
            let per_run = runs
                .iter()
                .map(|r| store.metric(r.id, name))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            curves.insert(name, per_run);
        }
    }
    let mut aligned = Vec::new();
    let mut steps: Option<Vec<i64>> = None;
    for metric in &args.metrics {
        let per_run = &curves[metric.as_str()];
        let steps = steps.get_or_insert_with(|| aligned_steps(per_run, args.points));
        for step in steps.iter() {
            aligned.push(Aligned {
                metric: metric.clone(),
                step: *step,
                values: per_run
                    .iter()
                    .map(|c| c.binary_search_by_key(step, |p| p.0).ok().map(|i| c[i].1))
                    .collect(),
            });
        }
    }
    let curve = |name: &str| -> Vec<Curve> {
        curves[name]
            .iter()
            .map(|c| c.iter().map(|&(s, v)| (s as f64, v)).collect())
            .collect()
    };
    let comparison = Comparison {
        runs: runs.iter().map(RunRecord::name).collect(),
        settings,
        summary,
        aligned,
    };
    Ok((comparison, curve("train_loss"), curve("val_loss")))
}

fn number(v: Option<f64>, metric: &str) -> String {
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
    let (c, train, val) = compare(&store, &runs, &args)?;
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
                        format!("{}{mark}", number(*v, s.metric))
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
                                row.extend(a.values.iter().map(|v| number(*v, m)));
                            }
                        }
                        row
                    })
                    .collect();
                write_table(&mut out, header, rows)?;
            }
            if let Some(p) = &args.plot {
                writeln!(out, "\nplot written to {}", p.display())?;
            }
        }
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_steps_are_common_thinned_and_keep_the_last() {
        let a: Vec<(i64, f64)> = (1..=10).map(|s| (s * 10, 0.0)).collect();
        let b: Vec<(i64, f64)> = (1..=5).map(|s| (s * 20, 0.0)).collect();
        assert_eq!(
            aligned_steps(&[a.clone(), b.clone()], 8),
            [20, 40, 60, 80, 100]
        );
        assert_eq!(aligned_steps(&[a.clone(), b], 3), [20, 60, 100]);
        assert_eq!(aligned_steps(&[a.clone(), vec![(5, 0.0)]], 2), [5, 100]);
        assert!(aligned_steps(&[a], 0).is_empty());
    }

    #[test]
    fn the_better_value_follows_the_direction() {
        let v = [Some(2.0), Some(1.5), None];
        assert_eq!(best(&v, Better::Lower), Some(1));
        assert_eq!(best(&v, Better::Higher), Some(0));
        assert_eq!(best(&v, Better::Neither), None);
        assert_eq!(best(&[Some(1.0), Some(1.0)], Better::Lower), None);
        assert_eq!(best(&[Some(1.0), None], Better::Lower), None);
    }
}
