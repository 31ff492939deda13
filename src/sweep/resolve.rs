//! Resolution: each sweep point becomes a run's full config (defaults < profile < preset <
//! manifest < sweep < overrides), filtered by `sweep.where`, checked, sized, keyed by content
//! and merged with identical runs.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::Plan;
use super::checks::{self, RunProblems};
use super::expr::{self, Expr};
use super::planner::{Planner, located};
use super::points::Point;
use super::spec::{self, RunSpec};
use super::stopping;
use crate::data;
use crate::early_stop::EarlyStop;
use crate::manifest::layers::{self, Layer};
use crate::manifest::profiles::{self, HardwareProfile};
use crate::manifest::{Config, DataConfig, Diagnostic, Diagnostics, Origin, Preset, presets};

/// A resolved config below the sweep, and the index of its layer stack in `layer_sets`.
type Base = Option<(Config, usize)>;

/// What resolution has found so far.
struct Resolver<'p, 'a> {
    p: &'p mut Planner<'a>,
    filter: Option<Expr>,
    /// Per (profile, preset) in force: the config below the sweep (`None`: it has a problem).
    bases: HashMap<(String, Option<Preset>), Base>,
    layer_sets: Vec<Vec<Layer>>,
    /// Corpus facts per data config (`None`: the corpus cannot be read).
    facts: Vec<(DataConfig, Option<data::Facts>)>,
    problems: RunProblems,
    runs: Vec<RunSpec>,
    excluded: Vec<Vec<(String, Value)>>,
    keys_seen: HashSet<String>,
    merged: usize,
    where_failed: bool,
    /// The early-stopping settings of the first run that has them, and its sweep point.
    early_stop: Option<(EarlyStop, usize)>,
    /// The early-stopping problems told so far.
    early_stop_problems: HashSet<String>,
    /// The search whose first trials the points are, if they are.
    search: Option<crate::search::Search>,
}

impl Planner<'_> {
    /// Resolves every point into a run spec; the plan, or every problem found.
    pub(super) fn resolve(
        mut self,
        points: Vec<Point>,
        filter: Option<Expr>,
    ) -> Result<Plan, Diagnostics> {
        let search = self.search();
        let mut r = Resolver {
            p: &mut self,
            filter,
            bases: HashMap::new(),
            layer_sets: Vec::new(),
            facts: Vec::new(),
            problems: RunProblems::default(),
            runs: Vec::with_capacity(points.len()),
            excluded: Vec::new(),
            keys_seen: HashSet::new(),
            merged: 0,
            where_failed: false,
            early_stop: None,
            early_stop_problems: HashSet::new(),
            search,
        };
        for (index, point) in points.into_iter().enumerate() {
            r.resolve(index, point);
        }
        r.finish()
    }

    /// The layers of a run with this profile and preset, lowest first.
    fn layers_for(&self, profile: &HardwareProfile, preset: Option<Preset>) -> Vec<Layer> {
        let mut defaults = serde_json::to_value(Config::default()).expect("config serializes");
        layers::set(
            &mut defaults,
            "experiment.name",
            &Value::from(self.loaded.manifest.experiment.name.clone()),
        );
        let mut out = vec![
            Layer::new("built-in defaults", defaults),
            Layer::new(
                format!("hardware profile `{}`", profile.name),
                profile.layer(),
            ),
        ];
        if let Some(p) = preset {
            let name = serde_json::to_value(p)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            out.push(Layer::new(format!("preset `{name}`"), presets::layer(p)));
        }
        let mut manifest = self.loaded.doc.value.clone();
        if let Some(map) = manifest.as_object_mut() {
            map.remove("profiles");
            map.remove("sweep");
        }
        out.push(Layer::new(
            format!("manifest {}", self.loaded.display),
            manifest,
        ));
        for o in self.overrides {
            let name = match &o.origin {
                Origin::Env(var) => format!("environment {var}"),
                Origin::Flag(flag) => format!("--set {flag}"),
                Origin::File(_) => "override".into(),
            };
            let path: Vec<&str> = o.key.split('.').collect();
            out.push(Layer::new(
                name,
                crate::manifest::check::nest(&path, o.value.clone()),
            ));
        }
        out
    }
}

/// Sets a swept value on a config: leaves directly, tables through JSON (merging, as layers do).
fn apply(config: &mut Config, key: &str, value: &Value) -> Result<(), serde_json::Error> {
    match config.set_leaf(key, value) {
        Some(result) => result,
        None => {
            let mut tree = serde_json::to_value(&*config)?;
            layers::set(&mut tree, key, value);
            *config = serde_json::from_value(tree)?;
            Ok(())
        }
    }
}

impl Resolver<'_, '_> {
    fn resolve(&mut self, index: usize, point: Point) {
        let Some((config, layers)) = self.configure(&point) else {
            return;
        };
        if !self.keep(&config, &point) {
            return;
        }
        let mut ok = true;
        for d in checks::check_config(&config) {
            // A default warm-up longer than a short smoke run is fine; a chosen one is a mistake.
            if d.key == "train.warmup_steps" && !self.p.explicit(&d.key, &point.refs) {
                continue;
            }
            let origin = self.p.origin_of(&d.key, &point.refs);
            self.problems.add(d.origin(origin), index);
            ok = false;
        }
        let section = self.p.loaded.manifest.sweep.early_stop.clone();
        let settings = section.as_ref().map(|section| EarlyStop {
            on_arrival: self.search.is_some(),
            ..stopping::settings(section, &config)
        });
        if let (Some(section), Some(s)) = (&section, &settings) {
            for (d, pointer) in stopping::check(section, s, &config) {
                ok = false;
                // The section is the sweep's, not a point's: each problem is told once.
                if self.early_stop_problems.insert(d.message.clone()) {
                    let origin = located(self.p.doc(), &pointer, false);
                    self.p.diagnostics.push(d.origin(origin));
                }
            }
            if let Some((first, at)) = &self.early_stop
                && first != s
            {
                let origin = located(self.p.doc(), "/sweep/early_stop", true);
                let d = Diagnostic::at(
                    None,
                    "sweep.early_stop",
                    format!(
                        "sweep points #{at} and #{index} would stop early with different \
                         settings (rungs from step {} and {})",
                        first.min_steps, s.min_steps
                    ),
                )
                .label("one search needs one set of rungs")
                .help("set min_steps (and, for hyperband, brackets) in [sweep.early_stop]");
                self.problems.add(d.origin(origin), index);
                ok = false;
            }
        }
        if !ok {
            return;
        }
        let Some((vocab_size, corpus)) = self.facts(&config, &point) else {
            return;
        };
        let params = spec::param_count(&config, vocab_size);
        let memory = spec::memory(&config, params, vocab_size);
        if let Some(d) = checks::check_memory(&config, &memory) {
            let origin = self.p.origin_of("model.dim", &point.refs);
            self.problems.add(d.origin(origin), index);
            return;
        }
        let mut key = spec::content_key(&config, corpus.as_deref());
        if let Some(search) = &self.search {
            let name = &self.p.loaded.manifest.experiment.name;
            key = super::searching::trial_key(&key, name, search, settings.as_ref(), index as u64);
        }
        if !self.keys_seen.insert(key.clone()) {
            self.merged += 1;
            return;
        }
        if let Some(s) = settings {
            self.early_stop.get_or_insert((s, index));
        }
        self.runs.push(RunSpec {
            // Set once every run is known (`place_in_search`).
            early_stop: None,
            index: self.runs.len(),
            key,
            tokens: spec::tokens(&config),
            config,
            swept: point.values,
            vocab_size,
            corpus,
            params,
            memory,
            layers,
        });
    }

    /// The point's config: its profile's and preset's base with the swept values set; `None`
    /// (with a problem recorded) when they do not form one.
    fn configure(&mut self, point: &Point) -> Option<(Config, usize)> {
        let p = &*self.p;
        let override_of = |key: &str| {
            p.overrides
                .iter()
                .rev()
                .find(|o| o.key == key)
                .map(|o| o.value.clone())
        };
        let swept = |key: &str| {
            point
                .values
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let profile = override_of("hardware.profile")
            .or_else(|| swept("hardware.profile"))
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_else(|| p.loaded.manifest.hardware.profile.clone());
        let preset: Option<Preset> = override_of("model.preset")
            .or_else(|| swept("model.preset"))
            .and_then(|v| serde_json::from_value(v).ok())
            .or(p.loaded.manifest.model.preset);
        let profile = if profile == "auto" {
            profiles::auto(p.machine).0.to_string()
        } else {
            profile
        };
        let (base, layers) = self.base(&profile, preset, point)?;
        let mut config = base;
        let applied = point
            .values
            .iter()
            .try_for_each(|(key, value)| apply(&mut config, key, value));
        config.hardware.profile = profile;
        if let Err(e) = applied {
            let origin = point
                .refs
                .first()
                .map(|(_, ptr)| located(&self.p.loaded.doc, ptr, false))
                .unwrap_or(Origin::File(None));
            self.p.problem(
                origin,
                "",
                format!("these sweep values do not form a valid config: {e}"),
                String::new(),
                None,
            );
            return None;
        }
        if config.data.path.is_none() && config.data.source.is_none() {
            config.data.source = Some(crate::manifest::Dataset::Tinyshakespeare);
        }
        Some((config, layers))
    }

    /// The config below the sweep for a profile and preset, resolved once per pair.
    fn base(
        &mut self,
        profile: &str,
        preset: Option<Preset>,
        point: &Point,
    ) -> Option<(Config, usize)> {
        let key = (profile.to_string(), preset);
        if let Some(base) = self.bases.get(&key) {
            return base.clone();
        }
        let found = self
            .p
            .profiles
            .iter()
            .find(|pr| pr.name == profile)
            .cloned();
        let base = match found {
            None => {
                let mut names: Vec<String> =
                    self.p.profiles.iter().map(|pr| pr.name.clone()).collect();
                names.insert(0, "auto".into());
                let help = match crate::manifest::check::did_you_mean(
                    profile,
                    names.iter().map(String::as_str),
                ) {
                    Some(best) => format!("did you mean \"{best}\"?"),
                    None => format!(
                        "profiles: {} (or define [profiles.{profile}])",
                        names.join(", ")
                    ),
                };
                let origin = self.p.origin_of("hardware.profile", &point.refs);
                self.p.problem(
                    origin,
                    "hardware.profile",
                    format!("unknown hardware profile \"{profile}\""),
                    "no such profile".into(),
                    Some(help),
                );
                None
            }
            Some(found) => {
                let layers = self.p.layers_for(&found, preset);
                match layers::resolve(&layers) {
                    Ok(mut config) => {
                        config.hardware.profile = found.name.clone();
                        self.layer_sets.push(layers);
                        Some((config, self.layer_sets.len() - 1))
                    }
                    Err(e) => {
                        self.p.problem(
                            Origin::File(None),
                            "",
                            format!("internal error: layers do not resolve: {e}"),
                            String::new(),
                            None,
                        );
                        None
                    }
                }
            }
        };
        self.bases.insert(key, base.clone());
        base
    }

    /// Whether `sweep.where` keeps the run (a failing expression is reported once).
    fn keep(&mut self, config: &Config, point: &Point) -> bool {
        let Some(filter) = &self.filter else {
            return true;
        };
        let json = serde_json::to_value(config).expect("config serializes");
        let lookup = |key: &str| {
            key.split('.')
                .try_fold(&json, |node, s| node.get(s))
                .and_then(expr::Val::from_json)
        };
        match filter
            .eval(&lookup)
            .and_then(|v| v.truthy("value of `sweep.where`"))
        {
            Ok(true) => true,
            Ok(false) => {
                self.excluded.push(point.values.clone());
                false
            }
            Err(message) => {
                if !self.where_failed {
                    self.where_failed = true;
                    let origin = located(&self.p.loaded.doc, "/sweep/where", false);
                    self.p.problem(
                        origin,
                        "sweep.where",
                        format!("`sweep.where` cannot be evaluated: {message}"),
                        "in this expression".into(),
                        None,
                    );
                }
                false
            }
        }
    }

    /// The vocabulary size and fingerprint of the run's corpus, read once per data config.
    fn facts(&mut self, config: &Config, point: &Point) -> Option<(usize, Option<String>)> {
        let known = |f: &data::Facts| (f.vocab_size, f.fingerprint.clone());
        if let Some((_, facts)) = self.facts.iter().find(|(d, _)| *d == config.data) {
            return facts.as_ref().map(known);
        }
        let got = match data::facts(&self.p.loaded.base_dir(), &config.data) {
            Ok(f) => Some(f),
            Err(e) => {
                let origin = self.p.origin_of("data.path", &point.refs);
                self.p.problem(
                    origin,
                    "data.path",
                    e.to_string(),
                    "no corpus here".into(),
                    Some("paths are relative to the manifest's folder".into()),
                );
                None
            }
        };
        let out = got.as_ref().map(known);
        self.facts.push((config.data.clone(), got));
        out
    }

    fn finish(self) -> Result<Plan, Diagnostics> {
        let p = self.p;
        let axis_keys: Vec<String> = p.axes.iter().map(|a| a.key.clone()).collect();
        p.diagnostics
            .extend(self.problems.into_diagnostics(!axis_keys.is_empty()));
        if !p.diagnostics.is_empty() {
            p.diagnostics.sort();
            return Err(std::mem::replace(
                &mut p.diagnostics,
                p.loaded.diagnostics(),
            ));
        }
        let runs = self.runs;
        let excluded = self.excluded;
        let Some(first) = runs.first() else {
            let origin = located(&p.loaded.doc, "/sweep/where", false);
            p.problem(
                origin,
                "sweep.where",
                format!(
                    "`sweep.where` removes every run ({} of {})",
                    excluded.len(),
                    excluded.len()
                ),
                "nothing left to run".into(),
                None,
            );
            return Err(std::mem::replace(
                &mut p.diagnostics,
                p.loaded.diagnostics(),
            ));
        };
        let value_of = |run: &RunSpec, key: &str| {
            run.swept
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let varying = axis_keys
            .iter()
            .filter(|k| runs.iter().any(|r| value_of(r, k) != value_of(first, k)))
            .cloned()
            .collect();
        if let Some(axis) = p.axes.iter().find(|a| a.key == "train.steps")
            && self.early_stop.is_some()
        {
            let origin = located(&p.loaded.doc, &axis.pointer, true);
            p.problem(
                origin,
                "train.steps",
                "`train.steps` cannot be swept in a sweep that stops runs early".into(),
                "every run's last rung".into(),
                Some(
                    "early stopping compares runs at the same steps up to one train.steps; \
                     set it once"
                        .into(),
                ),
            );
            return Err(std::mem::replace(
                &mut p.diagnostics,
                p.loaded.diagnostics(),
            ));
        }
        let first_layers = self.layer_sets[first.layers].clone();
        let mut experiment = first.config.experiment.clone();
        experiment.name = p.loaded.manifest.experiment.name.clone();
        let mut runs = runs;
        match (&self.early_stop, &self.search) {
            (Some((settings, _)), Some(_)) => {
                for run in &mut runs {
                    let steps = run.config.train.steps;
                    run.early_stop =
                        Some(super::searching::place(settings, run.index as u64, steps));
                }
            }
            (Some((settings, _)), None) => place_in_search(&mut runs, settings, &experiment.name),
            _ => {}
        }
        Ok(Plan {
            experiment,
            manifest: p.loaded.path.clone(),
            manifest_digest: p.loaded.digest.clone(),
            runs,
            axes: axis_keys,
            varying,
            excluded,
            merged: self.merged,
            layers: first_layers,
            layer_sets: self.layer_sets,
            early_stop: self.early_stop.map(|(s, _)| s),
            search: self.search,
        })
    }
}

/// Gives each run of an early-stopped sweep its draw (a seeded shuffle of the plan), its
/// bracket and rungs, and a key of its own: decisions belong to one search, and a run shared
/// with another experiment would be paused and stopped by both.
fn place_in_search(runs: &mut [RunSpec], settings: &EarlyStop, experiment: &str) {
    let draws = settings.draws(runs.len());
    for (run, draw) in runs.iter_mut().zip(draws) {
        let bracket = settings.bracket_of(draw);
        run.key = spec::search_key(&run.key, experiment, settings, bracket);
        run.early_stop = Some(spec::Rungs {
            draw,
            bracket,
            steps: settings.rungs(bracket, run.config.train.steps),
        });
    }
}
