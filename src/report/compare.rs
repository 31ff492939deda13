//! `xp compare`'s report: what differs between runs (settings) and what it did (summary
//! figures with the better run marked, loss curves, metrics at the steps the runs share).

use std::collections::BTreeSet;

use serde::Serialize;

use super::settings::{Differing, differing_settings};
use crate::store::{self, RunRecord, Store};
use crate::summary::{Better, Summary, SummaryMetric};

/// One summary figure of every run.
#[derive(Debug, Serialize)]
pub struct SummaryLine {
    pub metric: &'static str,
    pub values: Vec<Option<f64>>,
    /// Index of the better run, where the metric has a direction and values differ.
    pub best: Option<usize>,
}

/// One metric of every run at one step that they share.
#[derive(Debug, Serialize)]
pub struct Aligned {
    pub metric: String,
    pub step: i64,
    pub values: Vec<Option<f64>>,
}

/// What differs between runs and what it did.
#[derive(Debug, Serialize)]
pub struct Comparison {
    pub runs: Vec<String>,
    /// Per run, the early-stopping decision that ended its training or sent it on last
    /// ("stopped at step 9: rank 4 of 9 …"), for runs of an early-stopped sweep.
    pub decisions: Vec<Option<String>>,
    pub settings: Vec<Differing>,
    pub summary: Vec<SummaryLine>,
    pub aligned: Vec<Aligned>,
    /// Each run's train and val loss curves, for charts and plots.
    #[serde(skip)]
    pub train_loss: Vec<Curve>,
    #[serde(skip)]
    pub val_loss: Vec<Curve>,
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
pub type Curve = Vec<(f64, f64)>;

/// Compares runs: the settings that differ, every summary figure with the better run marked,
/// and `metrics` at no more than `points` steps the runs share.
pub fn compare(
    store: &Store,
    runs: &[RunRecord],
    metrics: &[String],
    points: usize,
) -> store::Result<Comparison> {
    let (settings, _) = differing_settings(&runs.iter().collect::<Vec<_>>());
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
    for name in metrics
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
    for metric in metrics {
        let per_run = &curves[metric.as_str()];
        let steps = steps.get_or_insert_with(|| aligned_steps(per_run, points));
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
    let mut decisions = Vec::with_capacity(runs.len());
    for run in runs {
        decisions.push(
            store
                .decisions_of_run(run.id)?
                .last()
                .map(|l| l.decision.describe()),
        );
    }
    Ok(Comparison {
        decisions,
        runs: runs.iter().map(RunRecord::name).collect(),
        settings,
        summary,
        aligned,
        train_loss: curve("train_loss"),
        val_loss: curve("val_loss"),
    })
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
