//! Semantic checks of one resolved run config (what the schema cannot say), and how problems
//! found in many sweep points are reported once each, naming the points they occur in.

use std::collections::HashMap;

use super::spec::Memory;
use crate::count::Count;
use crate::manifest::{Config, Diagnostic};

/// Most per-run problems listed before the rest are summed up.
const MAX_RUN_PROBLEMS: usize = 20;

/// Problems of one resolved config, keyed by the setting each concerns; the caller points
/// each at where that setting's value came from.
pub(super) fn check_config(config: &Config) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let m = &config.model;
    if !m.dim.is_multiple_of(m.heads) {
        let divisors: Vec<String> = (1..=m.dim.min(64))
            .filter(|h| m.dim.is_multiple_of(*h))
            .map(|h| h.to_string())
            .collect();
        out.push(
            Diagnostic::at(
                None,
                "model.heads",
                format!(
                    "`model.heads` = {} does not divide `model.dim` = {}",
                    m.heads, m.dim
                ),
            )
            .label("heads must divide dim")
            .help(format!(
                "heads that divide {}: {}",
                m.dim,
                divisors.join(", ")
            )),
        );
    }
    let t = &config.train;
    if t.min_lr > t.lr {
        out.push(
            Diagnostic::at(
                None,
                "train.min_lr",
                format!(
                    "`train.min_lr` = {} is above `train.lr` = {}",
                    t.min_lr, t.lr
                ),
            )
            .label("must be ≤ train.lr"),
        );
    }
    if t.warmup_steps > t.steps {
        out.push(
            Diagnostic::at(
                None,
                "train.warmup_steps",
                format!(
                    "`train.warmup_steps` = {} exceeds `train.steps` = {}",
                    t.warmup_steps, t.steps
                ),
            )
            .label("must be ≤ train.steps"),
        );
    }
    let e = &config.executor;
    if e.kind == crate::manifest::ExecutorKind::Slurm && e.dir.is_none() {
        out.push(
            Diagnostic::at(
                None,
                "executor.kind",
                "`executor.kind` = \"slurm\" needs `executor.dir`",
            )
            .label("no shared folder")
            .help("a folder every node can read and write, e.g. dir = \"/scratch/me/xp\""),
        );
    }
    if config.data.source.is_some() && config.data.path.is_some() {
        out.push(
            Diagnostic::at(
                None,
                "data.path",
                "set either `data.source` or `data.path`, not both",
            )
            .label("conflicts with data.source"),
        );
    }
    out
}

/// The problem of a run whose estimated training memory exceeds its profile's budget.
pub(super) fn check_memory(config: &Config, memory: &Memory) -> Option<Diagnostic> {
    let budget = config.hardware.memory_budget_gb * 1e9;
    if memory.total as f64 <= budget {
        return None;
    }
    let message = format!(
        "estimated training memory {:.2} GB exceeds the {} GB budget of profile `{}`",
        memory.total as f64 / 1e9,
        config.hardware.memory_budget_gb,
        config.hardware.profile
    );
    Some(
        Diagnostic::at(None, "model", message)
            .label("this run is too large")
            .help(
                "lower train.batch_size (raising train.grad_accum keeps the tokens per step), \
                 model.block_size or the model size, or raise hardware.memory_budget_gb",
            ),
    )
}

/// Problems of individual runs, each kept once with the sweep points it occurs in.
#[derive(Default)]
pub(super) struct RunProblems {
    found: HashMap<(String, String), (Diagnostic, Vec<usize>)>,
    order: Vec<(String, String)>,
}

impl RunProblems {
    /// Records `d` (its origin set) as found in sweep point `point`.
    pub(super) fn add(&mut self, d: Diagnostic, point: usize) {
        let id = (d.message.clone(), format!("{:?}", d.origin));
        let entry = self.found.entry(id.clone()).or_insert_with(|| {
            self.order.push(id);
            (d, Vec::new())
        });
        entry.1.push(point);
    }

    /// The problems in the order first found, at most [`MAX_RUN_PROBLEMS`] and a count of the
    /// rest; in a sweep, each says which points it occurs in.
    pub(super) fn into_diagnostics(mut self, swept: bool) -> Vec<Diagnostic> {
        let listed = self.order.len().min(MAX_RUN_PROBLEMS);
        let mut out = Vec::new();
        for id in self.order.iter().take(listed) {
            let Some((mut d, indices)) = self.found.remove(id) else {
                continue;
            };
            if swept {
                let shown: Vec<String> = indices.iter().take(8).map(|i| format!("#{i}")).collect();
                let more = if indices.len() > 8 {
                    format!(" and {} more", indices.len() - 8)
                } else {
                    String::new()
                };
                let note = format!(
                    "in {} {}{more}",
                    Count::noun("sweep point", indices.len()),
                    shown.join(", ")
                );
                d.help = Some(match d.help {
                    Some(h) => format!("{h}; {note}"),
                    None => note,
                });
            }
            out.push(d);
        }
        if self.order.len() > listed {
            out.push(Diagnostic::at(
                None,
                "",
                format!(
                    "… and {} more problems in other sweep points",
                    self.order.len() - listed
                ),
            ));
        }
        out
    }
}
