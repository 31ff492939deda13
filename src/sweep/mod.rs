//! Sweep expansion: a checked manifest → a plan of fully resolved, validated run specs.
//!
//! [`axes`] reads the sweep's axes and `where`, [`points`] enumerates the runs they describe,
//! [`resolve`] turns each point into a run's config and spec, and [`checks`] holds the checks
//! of a resolved config. This file ties them together.

mod axes;
mod checks;
pub mod expr;
mod planner;
mod points;
mod resolve;
pub mod searching;
pub mod spec;
mod stopping;

use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::manifest::check::show;
use crate::manifest::layers::Layer;
use crate::manifest::profiles::{self, Machine};
use crate::manifest::source::escape;
use crate::manifest::{Config, Diagnostic, Diagnostics, ExperimentMeta, Loaded, Override};
pub use expr::Expr;
use planner::Planner;
pub use spec::{Memory, RunSpec};

/// Most runs one manifest may expand to.
pub const MAX_RUNS: u64 = 10_000_000;

/// The runs a manifest asks for, in order, and what was left out.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub experiment: ExperimentMeta,
    pub manifest: PathBuf,
    pub manifest_digest: String,
    pub runs: Vec<RunSpec>,
    /// Swept keys, in axis order.
    pub axes: Vec<String>,
    /// The axes whose values differ between runs.
    pub varying: Vec<String>,
    /// Points removed by `sweep.where`.
    #[serde(serialize_with = "count")]
    pub excluded: Vec<Vec<(String, Value)>>,
    /// Points identical to an earlier run (same content key), merged into it.
    pub merged: usize,
    /// The layers of the first run, for `--explain`.
    #[serde(skip)]
    pub layers: Vec<Layer>,
    /// Each distinct layer stack; `RunSpec::layers` indexes it.
    #[serde(skip)]
    pub layer_sets: Vec<Vec<Layer>>,
    /// How runs are stopped early, if they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_stop: Option<crate::early_stop::EarlyStop>,
    /// The search that chooses the runs after `runs` (its first trials), if one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<crate::search::Search>,
}

fn count<S: serde::Serializer, T>(items: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(items.len() as u64)
}

/// Expands a checked manifest into its plan, or every problem found on the way.
pub fn plan(
    loaded: &Loaded,
    overrides: &[Override],
    machine: &Machine,
) -> Result<Plan, Diagnostics> {
    let profiles = match profiles::all(&loaded.manifest.profiles, machine) {
        Ok(p) => p,
        Err(e) => {
            let mut d = loaded.diagnostics();
            let pointer = format!("/profiles/{}/extends", escape(&e.profile));
            d.push(
                Diagnostic::at(
                    loaded.doc.value_span(&pointer),
                    format!("profiles.{}.extends", e.profile),
                    e.to_string(),
                )
                .label("unknown profile")
                .help(format!(
                    "built-in profiles: {}",
                    profiles::builtin_names().join(", ")
                )),
            );
            return Err(d);
        }
    };
    let mut p = Planner {
        loaded,
        overrides,
        machine,
        profiles,
        diagnostics: loaded.diagnostics(),
        axes: Vec::new(),
    };
    p.collect_axes();
    p.check_overrides_against_axes();
    let filter = p.parse_where();
    if !p.diagnostics.is_empty() {
        p.diagnostics.sort();
        return Err(p.diagnostics);
    }

    let Some(points) = p.points() else {
        p.diagnostics.sort();
        return Err(p.diagnostics);
    };
    p.resolve(points, filter)
}

impl Plan {
    /// Per run, which layer gave each setting (swept settings say so).
    pub fn origins(&self) -> Vec<std::collections::BTreeMap<String, String>> {
        let mut per_set: Vec<Option<std::collections::BTreeMap<String, String>>> =
            vec![None; self.layer_sets.len()];
        self.runs
            .iter()
            .map(|run| {
                let base = per_set[run.layers].get_or_insert_with(|| {
                    let resolved = serde_json::to_value(&run.config).expect("config serializes");
                    crate::manifest::layers::origins(&self.layer_sets[run.layers], &resolved)
                });
                let mut map = base.clone();
                for (key, _) in &run.swept {
                    for (k, v) in map.iter_mut() {
                        if k == key || k.starts_with(&format!("{key}.")) {
                            *v = "sweep".into();
                        }
                    }
                }
                map
            })
            .collect()
    }

    /// How the plan's runs execute: the same for every run, since no sweep may vary it.
    pub fn executor(&self) -> &crate::manifest::ExecutorConfig {
        &self.runs[0].config.executor
    }
}

/// A value as shown in plan tables.
pub fn short(value: &Value) -> String {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f != 0.0 && (f.abs() < 1e-3 || f.abs() >= 1e6) => {
                format!("{f:.3e}")
            }
            Some(f) if n.is_f64() => {
                let s = format!("{f:.4}");
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            }
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        other => show(other),
    }
}

/// Reads a dotted key from a resolved config.
pub fn get(config: &Config, key: &str) -> Option<Value> {
    let json = serde_json::to_value(config).ok()?;
    key.split('.')
        .try_fold(&json, |node, s| node.get(s))
        .cloned()
}
