//! An early-stopped sweep as a search: per bracket and rung, how many runs reached it, wait
//! there, were promoted or stopped, and are on their way; and the best run so far.

use serde::Serialize;

use crate::early_stop::{Action, ObjectiveMode};
use crate::store::{self, RunFilter, Status, Store};

/// One rung of one bracket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RungRow {
    pub bracket: u32,
    pub rung: u32,
    pub step: u64,
    /// Runs paused here, waiting for their decision.
    pub waiting: usize,
    pub promoted: usize,
    pub stopped: usize,
    /// Runs queued or training towards this rung.
    pub on_the_way: usize,
}

/// The run with the best objective at the furthest step any run has reached.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Best {
    pub run: String,
    pub step: u64,
    pub value: f64,
    pub status: Status,
}

/// An early-stopped experiment's search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Search {
    pub experiment: String,
    pub method: String,
    pub metric: String,
    pub rungs: Vec<RungRow>,
    pub best: Option<Best>,
    /// Steps trained so far by all its runs, and what training every run to the end costs.
    pub steps_trained: u64,
    pub steps_of_full_grid: u64,
}

/// The search of `experiment`, if its runs stop early.
pub fn search(store: &Store, experiment: &str) -> store::Result<Option<Search>> {
    let Some(settings) = store.early_stop(experiment)? else {
        return Ok(None);
    };
    let runs = store.runs(&RunFilter {
        experiment: Some(experiment.to_string()),
        ..RunFilter::default()
    })?;
    let log = store.decisions(experiment)?;
    let mut rows: Vec<RungRow> = Vec::new();
    for run in &runs {
        let Some(place) = &run.spec.early_stop else {
            continue;
        };
        for (k, &step) in place.steps.iter().enumerate() {
            if !rows
                .iter()
                .any(|r| r.bracket == place.bracket && r.rung == k as u32)
            {
                rows.push(RungRow {
                    bracket: place.bracket,
                    rung: k as u32,
                    step,
                    waiting: 0,
                    promoted: 0,
                    stopped: 0,
                    on_the_way: 0,
                });
            }
            let row = rows
                .iter_mut()
                .find(|r| r.bracket == place.bracket && r.rung == k as u32)
                .expect("added above");
            let decided = log
                .iter()
                .any(|l| l.decision.run == run.id && l.decision.rung == k as u32);
            match run.status() {
                Status::Paused if run.step == step && !decided => row.waiting += 1,
                Status::Queued | Status::Running | Status::Interrupted | Status::Submitted
                    if run.until_step == Some(step) =>
                {
                    row.on_the_way += 1
                }
                _ => {}
            }
        }
    }
    for l in &log {
        if let Some(row) = rows
            .iter_mut()
            .find(|r| r.bracket == l.decision.bracket && r.rung == l.decision.rung)
        {
            match l.decision.action {
                Action::Promote => row.promoted += 1,
                Action::Stop => row.stopped += 1,
            }
        }
    }
    rows.sort_by_key(|r| (r.bracket, r.rung));
    let mut best: Option<Best> = None;
    let better = |a: f64, b: f64| match settings.mode {
        ObjectiveMode::Min => a < b,
        ObjectiveMode::Max => a > b,
    };
    for run in &runs {
        let Some((step, value)) = store.latest_metric(run.id, &settings.metric)? else {
            continue;
        };
        let step = step.max(0) as u64;
        let replace = match &best {
            None => true,
            Some(b) => step > b.step || (step == b.step && better(value, b.value)),
        };
        if replace {
            best = Some(Best {
                run: run.name(),
                step,
                value,
                status: run.status(),
            });
        }
    }
    Ok(Some(Search {
        experiment: experiment.to_string(),
        method: settings.describe(),
        metric: settings.metric.clone(),
        rungs: rows,
        best,
        steps_trained: runs.iter().map(|r| r.step).sum(),
        steps_of_full_grid: runs.iter().map(|r| r.steps_total).sum(),
    }))
}
