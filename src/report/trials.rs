//! A search's trials as a report: each trial's settings, how it was chosen, how it ended and its
//! objective, with the best so far after each (what `xp status`, `xp show` and the dashboard
//! plot against the trial number).

use serde::Serialize;
use serde_json::Value;

use crate::store::{self, Status, Store};

/// One trial.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrialRow {
    pub trial: u64,
    pub run: String,
    pub status: Status,
    /// Its objective where it stands (its last recorded value).
    pub value: Option<f64>,
    /// The step of that value.
    pub step: u64,
    /// The best objective of the trials that completed, up to and including this one.
    pub best_so_far: Option<f64>,
    pub settings: Vec<(String, Value)>,
    pub how: String,
    /// Ended trials it saw.
    pub seen: u64,
}

/// A search's trials so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trials {
    pub experiment: String,
    pub method: String,
    pub metric: String,
    /// Trials the search will choose in all.
    pub planned: u64,
    pub rows: Vec<TrialRow>,
    /// The trial with the best objective among those that completed.
    pub best: Option<u64>,
}

/// The trials of `experiment`, if it runs a search.
pub fn trials(store: &Store, experiment: &str) -> store::Result<Option<Trials>> {
    let Some((search, log)) = store.trials(experiment)? else {
        return Ok(None);
    };
    // The experiment's runs in one read, not one per trial.
    let mut runs: std::collections::HashMap<i64, store::RunRecord> = store
        .runs(&store::RunFilter {
            experiment: Some(experiment.to_string()),
            ..Default::default()
        })?
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
    let mut rows = Vec::with_capacity(log.len());
    let mut best: Option<(u64, f64)> = None;
    for t in log {
        let run = match runs.remove(&t.run) {
            Some(run) => run,
            None => store.run_by_id(t.run)?,
        };
        let latest = store.latest_metric(t.run, &search.metric)?;
        let status = run.status();
        let value = latest.map(|(_, v)| v);
        if let (Status::Completed, Some(v)) = (status, value)
            && best.is_none_or(|(_, b)| search.key(v) < search.key(b))
        {
            best = Some((t.trial, v));
        }
        rows.push(TrialRow {
            trial: t.trial,
            run: run.name(),
            status,
            value,
            step: latest.map_or(0, |(s, _)| s.max(0) as u64),
            best_so_far: best.map(|(_, b)| b),
            settings: t.settings,
            how: t.how,
            seen: t.seen,
        });
    }
    Ok(Some(Trials {
        experiment: experiment.to_string(),
        method: search.describe(),
        metric: format!("{} ({})", search.metric, search.mode.better()),
        planned: search.trials,
        rows,
        best: best.map(|(t, _)| t),
    }))
}
