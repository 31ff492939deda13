//! `xp status`'s report: per experiment, how many runs are in each state and how long the
//! rest will take; the running runs with their progress and ETA; the runs Slurm holds; the
//! latest failures and interruptions.

use serde::Serialize;

use super::eta::Pace;
use super::search::{Search, search};
use crate::forecast::{self, Speeds, Sweep, Work};
use crate::store::{
    self, ExperimentCounts, Liveness, RunFilter, RunRecord, RunState, Status, Store,
};

/// A running run as status reports it.
#[derive(Debug, Serialize)]
pub struct Running {
    pub run: String,
    pub experiment: String,
    pub step: u64,
    pub steps: u64,
    pub train_loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub tokens_per_s: Option<f64>,
    pub eta_s: Option<f64>,
    pub host: Option<String>,
    pub pid: Option<i64>,
    /// Why the run's process is believed dead, if it is (local runs).
    pub stale: Option<String>,
    /// Its Slurm array task and the state Slurm last reported (runs on Slurm).
    pub slurm: Option<String>,
}

/// A run handed to Slurm that is not training now: waiting, or requeued after its
/// time-limit signal.
#[derive(Debug, Serialize)]
pub struct OnSlurm {
    pub run: String,
    pub experiment: String,
    pub status: Status,
    pub task: Option<String>,
    pub slurm_state: Option<String>,
}

/// How long an experiment has left: the forecast's (`crate::forecast`) from the speeds measured
/// on this machine, else by the pace of its runs so far.
#[derive(Debug, Serialize)]
pub struct Remaining {
    pub experiment: String,
    pub runs_left: usize,
    pub workers: usize,
    pub eta_s: f64,
    /// P10 and P90 of the time left, where decisions or trials to come make it uncertain.
    pub range_s: Option<(f64, f64)>,
}

/// A run that ended badly, with the first line of its error.
#[derive(Debug, Serialize)]
pub struct Ended {
    pub run: String,
    pub experiment: String,
    pub status: Status,
    pub step: u64,
    pub error: String,
}

/// Everything `xp status` shows (and prints as JSON with `--format json`).
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub experiments: Vec<ExperimentCounts>,
    pub remaining: Vec<Remaining>,
    pub running: Vec<Running>,
    pub on_slurm: Vec<OnSlurm>,
    pub recent_failures: Vec<Ended>,
    pub interrupted: Vec<Ended>,
    /// The experiments that stop runs early, as searches: their rungs and best run.
    pub searches: Vec<Search>,
    /// The experiments that choose their runs: their trials so far.
    pub trials: Vec<super::trials::Trials>,
}

/// The remaining time of an experiment: the steps its unfinished runs have left, at the
/// pace its runs have shown (finished runs' wall time, else running runs' step time), over the
/// runs training it now (at least one).
fn remaining(
    store: &Store,
    experiment: &str,
    running: &[Running],
    live: &[Pace],
    speeds: &Speeds,
) -> store::Result<Option<Remaining>> {
    let workers = running
        .iter()
        .filter(|r| r.experiment == experiment && r.stale.is_none())
        .count()
        .max(1);
    if let Some(r) = forecast_left(store, experiment, workers, speeds)? {
        return Ok(Some(r));
    }
    let runs = store.run_times(experiment)?;
    let finished: Vec<Pace> = runs
        .iter()
        .filter(|r| r.status == Status::Completed)
        .filter_map(|r| r.wall_s.and_then(|w| Pace::of_finished(w, r.steps_total)))
        .collect();
    let Some(pace) = Pace::mean(&finished).or_else(|| Pace::mean(live)) else {
        return Ok(None);
    };
    let left: Vec<u64> = runs
        .iter()
        .filter(|r| r.status.is_unfinished())
        .map(|r| r.steps_total.saturating_sub(r.step))
        .collect();
    if left.is_empty() {
        return Ok(None);
    }
    Ok(Some(Remaining {
        experiment: experiment.to_string(),
        runs_left: left.len(),
        workers,
        eta_s: pace.eta(left.iter().sum(), workers),
        range_s: None,
    }))
}

/// Where `xp plan --measure` keeps its probe runs: a store in the cache folder, shared by every
/// manifest, so that a shape is measured once per machine and number of runs at once.
pub fn probe_store() -> std::path::PathBuf {
    crate::data::cache_dir().join("probes.db")
}

/// The speeds this machine's runs in `store` show.
pub fn own_speeds(store: &Store) -> store::Result<Speeds> {
    let host = crate::exec::provenance::host().unwrap_or_default();
    Ok(Speeds::fit(&store.speed_samples(&host)?))
}

/// `own` with the speeds of this machine's probes in `probes` added, unless `probes` is the
/// store `own` came from (`own_path`), whose runs `own` already counts.
pub fn with_probes(
    own: &Speeds,
    probes: &Store,
    own_path: Option<&std::path::Path>,
) -> store::Result<Speeds> {
    let mut speeds = own.clone();
    if own_path != Some(probes.path()) {
        speeds.merge(own_speeds(probes)?);
    }
    Ok(speeds)
}

/// The speeds measured on this machine: its runs in `store`, and `xp plan --measure`'s probes.
pub fn speeds(store: &Store) -> store::Result<Speeds> {
    let own = own_speeds(store)?;
    let probes = probe_store();
    if !probes.exists() {
        return Ok(own);
    }
    with_probes(&own, &Store::open_existing(&probes)?, Some(store.path()))
}

/// The time an experiment has left by the forecast's model: its runs from where each stands,
/// the decisions and trials still to come simulated; `None` without speeds for its shapes.
fn forecast_left(
    store: &Store,
    experiment: &str,
    workers: usize,
    speeds: &Speeds,
) -> store::Result<Option<Remaining>> {
    let runs = store.runs(&RunFilter {
        experiment: Some(experiment.to_string()),
        ..RunFilter::default()
    })?;
    let trials = store.trials(experiment)?;
    let chosen = trials.as_ref().map_or(0, |(_, t)| t.len() as u64);
    let to_choose = trials
        .as_ref()
        .map_or(0, |(s, _)| s.trials.saturating_sub(chosen)) as usize;
    let left = runs.iter().filter(|r| r.status().is_unfinished()).count() + to_choose;
    if left == 0 {
        return Ok(None);
    }
    let Some(first) = runs.iter().min_by_key(|r| (r.plan_index, r.id)) else {
        return Ok(None);
    };
    let early_stop = store.early_stop(experiment)?;
    let work: Vec<Work> = runs
        .iter()
        .map(|r| Work {
            done: r.step,
            ended: !r.status().is_unfinished(),
            ..forecast::work(&r.spec)
        })
        .collect();
    let sweep = Sweep {
        experiment,
        first: &first.spec,
        early_stop: early_stop.as_ref(),
        search: trials.as_ref().map(|(s, _)| s),
    };
    let Some(f) = sweep.forecast(&work, speeds, workers as u32) else {
        return Ok(None);
    };
    Ok(Some(Remaining {
        experiment: experiment.to_string(),
        runs_left: left,
        workers,
        eta_s: f.p50,
        range_s: (f.simulations > 1).then_some((f.p10, f.p90)),
    }))
}

/// Per experiment (or only `experiment`), how many runs are in each state, how long the rest
/// will take, the running runs with their progress, the runs Slurm holds, and the latest
/// failures and interruptions.
pub fn status(store: &Store, experiment: Option<&String>) -> store::Result<StatusReport> {
    let experiments: Vec<_> = store
        .counts()?
        .into_iter()
        .filter(|c| experiment.is_none_or(|e| *e == c.experiment))
        .collect();
    let filter = |status, limit| RunFilter {
        experiment: experiment.cloned(),
        status: Some(status),
        newest_first: true,
        limit,
    };
    let mut running = Vec::new();
    let mut live: std::collections::HashMap<String, Vec<Pace>> = Default::default();
    for r in store.runs(&filter(Status::Running, None))? {
        let RunState::Running(lease) = &r.state else {
            continue;
        };
        let last = |name| store.latest_metric(r.id, name).map(|m| m.map(|(_, v)| v));
        let step_ms = last("step_ms")?;
        if let Some(ms) = step_ms {
            live.entry(r.experiment.clone())
                .or_default()
                .push(Pace::of_step_ms(ms));
        }
        let slurm = r.slurm.as_ref().map(|s| {
            format!(
                "{} {}",
                s.id().unwrap_or_default(),
                s.state.as_deref().unwrap_or("")
            )
            .trim()
            .to_string()
        });
        running.push(Running {
            run: r.name(),
            experiment: r.experiment.clone(),
            step: r.step,
            steps: r.steps_total,
            train_loss: last("train_loss")?,
            val_loss: last("val_loss")?,
            tokens_per_s: last("tokens_per_s")?,
            eta_s: step_ms
                .map(|ms| Pace::of_step_ms(ms).eta(r.steps_total.saturating_sub(r.step), 1)),
            // Slurm says whether a task is alive; `xp sync` acts on it.
            stale: match (&slurm, lease.liveness_here()) {
                (None, Liveness::Dead(why)) => Some(why),
                _ => None,
            },
            host: lease.host.clone(),
            pid: lease.pid,
            slurm,
        });
    }
    let mut on_slurm = Vec::new();
    for status in [Status::Submitted, Status::Interrupted] {
        for r in store.runs(&filter(status, None))? {
            if let Some(s) = &r.slurm {
                on_slurm.push(OnSlurm {
                    run: r.name(),
                    experiment: r.experiment.clone(),
                    status,
                    task: s.id(),
                    slurm_state: s.state.clone(),
                });
            }
        }
    }
    let mut remaining_time = Vec::new();
    // Fitted once for every experiment: each reads the same samples.
    let speeds = speeds(store)?;
    for e in &experiments {
        let paces = live.get(&e.experiment).map(Vec::as_slice).unwrap_or(&[]);
        if let Some(r) = remaining(store, &e.experiment, &running, paces, &speeds)? {
            remaining_time.push(r);
        }
    }
    let ended = |r: RunRecord| Ended {
        run: r.name(),
        status: r.status(),
        step: r.step,
        error: r
            .state
            .reason()
            .and_then(|e| e.lines().next())
            .unwrap_or("no error recorded")
            .to_string(),
        experiment: r.experiment,
    };
    let mut searches = Vec::new();
    let mut trials = Vec::new();
    for e in &experiments {
        searches.extend(search(store, &e.experiment)?);
        trials.extend(super::trials::trials(store, &e.experiment)?);
    }
    Ok(StatusReport {
        searches,
        trials,
        experiments,
        remaining: remaining_time,
        running,
        on_slurm,
        recent_failures: store
            .runs(&filter(Status::Failed, Some(5)))?
            .into_iter()
            .map(ended)
            .collect(),
        // Interrupted runs on Slurm are its to start again: they are listed above.
        interrupted: store
            .runs(&filter(Status::Interrupted, Some(5)))?
            .into_iter()
            .filter(|r| r.slurm.is_none())
            .map(ended)
            .collect(),
    })
}
