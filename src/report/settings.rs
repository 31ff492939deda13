//! The settings that differ between runs (each run's settings by dotted key are
//! `RunSpec::settings`): what `xp compare`, `xp export`'s summaries and the dashboard's diff
//! page list.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::store::RunRecord;

/// A setting whose value is not the same in every run: each run's value, in the runs' order
/// (`None` where a run has no such setting).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Differing {
    pub setting: String,
    pub values: Vec<Option<Value>>,
}

/// The settings that differ between runs, by key, and how many settings were compared. The
/// experiment's description is prose, and left out.
pub fn differing_settings(runs: &[&RunRecord]) -> (Vec<Differing>, usize) {
    let configs: Vec<_> = runs.iter().map(|r| r.spec.settings()).collect();
    differing(&configs)
}

fn differing(configs: &[BTreeMap<String, Value>]) -> (Vec<Differing>, usize) {
    let mut keys: Vec<&String> = configs.iter().flat_map(|c| c.keys()).collect();
    keys.sort();
    keys.dedup();
    let compared = keys.len();
    let differing = keys
        .into_iter()
        .filter(|k| {
            k.as_str() != "experiment.description"
                && configs.iter().any(|c| c.get(*k) != configs[0].get(*k))
        })
        .map(|k| Differing {
            setting: k.clone(),
            values: configs.iter().map(|c| c.get(k).cloned()).collect(),
        })
        .collect();
    (differing, compared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn only_settings_that_differ_are_listed_and_the_description_never() {
        let a = config(&[
            ("train.lr", 1e-3.into()),
            ("train.steps", 100.into()),
            ("experiment.description", "a".into()),
        ]);
        let b = config(&[
            ("train.lr", 3e-3.into()),
            ("train.steps", 100.into()),
            ("experiment.description", "b".into()),
            ("model.bias", true.into()),
        ]);
        let (d, compared) = differing(&[a, b]);
        assert_eq!(compared, 4);
        assert_eq!(
            d,
            [
                Differing {
                    setting: "model.bias".into(),
                    values: vec![None, Some(true.into())],
                },
                Differing {
                    setting: "train.lr".into(),
                    values: vec![Some(1e-3.into()), Some(3e-3.into())],
                },
            ]
        );
    }
}
