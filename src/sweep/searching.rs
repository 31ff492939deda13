//! A sweep's `[sweep.search]` section as validated settings, and the spec of a trial chosen
//! while the search runs: the first trial's spec with the chosen values set, checked as the
//! plan's runs are.

use serde_json::Value;

use super::checks;
use super::spec::{self, RunSpec};
use crate::early_stop::EarlyStop;
use crate::manifest::SearchSection;
use crate::search::Search;

/// Random trials before TPE takes over, unless the manifest says (Optuna's default).
const STARTUP: u32 = 10;

/// The settings of a search, its space in the order the manifest lists it (`order`: the
/// space's keys in that order).
pub(super) fn settings(section: &SearchSection, order: &[String]) -> Search {
    let mut space: Vec<(String, crate::manifest::Distribution)> = section
        .space
        .iter()
        .map(|(k, d)| (k.clone(), d.clone()))
        .collect();
    space.sort_by_key(|(k, _)| order.iter().position(|o| o == k).unwrap_or(usize::MAX));
    Search {
        method: section.method,
        trials: section.trials as u64,
        startup: section
            .startup_trials
            .unwrap_or(STARTUP.min(section.trials)) as u64,
        seed: section.seed,
        lag: section.lag as u64,
        metric: section.metric.clone(),
        mode: section.mode,
        candidates: section.candidates,
        gamma: section.gamma,
        multivariate: section.multivariate,
        space,
    }
}

/// The key of trial `trial` of a search: its content key with the experiment, the search and
/// its number, so that two trials that drew the same settings are two runs, and a trial is
/// never shared with another experiment.
pub fn trial_key(
    content_key: &str,
    experiment: &str,
    search: &Search,
    early_stop: Option<&EarlyStop>,
    trial: u64,
) -> String {
    let mut bytes = Vec::with_capacity(256);
    let settings = serde_json::to_string(&(search, early_stop)).unwrap_or_default();
    ciborium::into_writer(&(content_key, experiment, settings, trial), &mut bytes)
        .expect("writing to a Vec cannot fail");
    blake3::hash(&bytes).to_hex().to_string()
}

/// The spec of trial `trial`: `first` (the search's first trial) with `values` set, checked
/// and sized as a planned run is; the problem, in words, when the values do not make a run.
pub fn trial_spec(
    first: &RunSpec,
    values: &[(String, Value)],
    trial: u64,
    experiment: &str,
    search: &Search,
    early_stop: Option<&EarlyStop>,
) -> Result<RunSpec, String> {
    let mut config = first.config.clone();
    for (key, value) in values {
        match config.set_leaf(key, value) {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(format!("`{key}` = {value}: {e}")),
            None => return Err(format!("`{key}` is not a setting")),
        }
    }
    let problems: Vec<String> = checks::check_config(&config)
        .into_iter()
        .filter(|d| d.key != "train.warmup_steps")
        .map(|d| d.message)
        .collect();
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let params = spec::param_count(&config, first.vocab_size);
    let memory = spec::memory(&config, params, first.vocab_size);
    if let Some(d) = checks::check_memory(&config, &memory) {
        return Err(d.message);
    }
    let content = spec::content_key(&config, first.corpus.as_deref());
    let rungs = early_stop.map(|e| place(e, trial, config.train.steps));
    Ok(RunSpec {
        index: trial as usize,
        key: trial_key(&content, experiment, search, early_stop, trial),
        tokens: spec::tokens(&config),
        config,
        swept: values.to_vec(),
        vocab_size: first.vocab_size,
        corpus: first.corpus.clone(),
        params,
        memory,
        layers: first.layers,
        early_stop: rungs,
    })
}

/// A trial's place in an early-stopped search: it enters in trial order (its draw is its
/// number), in Hyperband's bracket round robin.
pub(super) fn place(early_stop: &EarlyStop, trial: u64, steps: u64) -> spec::Rungs {
    let bracket = early_stop.bracket_of(trial);
    spec::Rungs {
        draw: trial,
        bracket,
        steps: early_stop.rungs(bracket, steps),
    }
}
