//! Sweep expansion: a checked manifest → a plan of fully resolved, validated run specs.

pub mod expr;
pub mod spec;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::Value;

use crate::data;
use crate::manifest::check::{check_setting, show};
use crate::manifest::layers::{self, Layer};
use crate::manifest::profiles::{self, HardwareProfile, Machine};
use crate::manifest::source::escape;
use crate::manifest::{
    AxisValues, Config, Diagnostic, Diagnostics, Distribution, ExperimentMeta, Loaded, Origin,
    Override, Preset, presets,
};
pub use expr::Expr;
pub use spec::{Memory, RunSpec};

/// Most runs one manifest may expand to.
pub const MAX_RUNS: u64 = 10_000_000;
/// Most per-run problems listed before the rest are summed up.
const MAX_RUN_PROBLEMS: usize = 20;

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
}

fn count<S: serde::Serializer, T>(items: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(items.len() as u64)
}

#[derive(Debug, Clone)]
struct Axis {
    key: String,
    /// Pointer to the axis in the manifest document, for spans.
    pointer: String,
    kind: AxisKind,
}

#[derive(Debug, Clone)]
enum AxisKind {
    /// Values with the pointer each came from.
    Values(Vec<(Value, String)>),
    Random(Distribution),
}

fn located(doc: &crate::manifest::Document, pointer: &str, key_span: bool) -> Origin {
    Origin::File(if key_span {
        doc.key_span(pointer)
    } else {
        doc.value_span(pointer)
    })
}

/// Numbers from sugar: integral values become JSON integers so that integer keys accept them.
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        Value::from(x as i64)
    } else {
        serde_json::Number::from_f64(x)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

fn expand(values: &AxisValues) -> Result<Vec<Value>, String> {
    const MAX: f64 = 1_000_000.0;
    match values {
        AxisValues::List(list) if list.is_empty() => Err("an axis needs at least one value".into()),
        AxisValues::List(list) => Ok(list.clone()),
        AxisValues::Linspace(l) => {
            let (a, b, n) = l.linspace;
            match n {
                0 => Err("linspace needs n ≥ 1".into()),
                1 => Ok(vec![number(a)]),
                _ => Ok((0..n)
                    .map(|i| number(a + (b - a) * i as f64 / (n - 1) as f64))
                    .collect()),
            }
        }
        AxisValues::Logspace(l) => {
            let (a, b, n) = l.logspace;
            match n {
                0 => Err("logspace needs n ≥ 1".into()),
                1 => Ok(vec![number(10f64.powf(a))]),
                _ => Ok((0..n)
                    .map(|i| {
                        let x = 10f64.powf(a + (b - a) * i as f64 / (n - 1) as f64);
                        // Trim float noise such as 0.0010000000000000002.
                        number(format!("{x:.12e}").parse().unwrap_or(x))
                    })
                    .collect()),
            }
        }
        AxisValues::Range(r) => {
            let (start, stop, step) = r.range;
            if step == 0.0 || !step.is_finite() {
                return Err("range needs a non-zero step".into());
            }
            let count = ((stop - start) / step).ceil();
            if count <= 0.0 {
                return Err(format!("range [{start}, {stop}, {step}] is empty"));
            }
            if count > MAX {
                return Err(format!(
                    "range [{start}, {stop}, {step}] has over {MAX} values"
                ));
            }
            Ok((0..count as u64)
                .map(|i| number(start + step * i as f64))
                .collect())
        }
    }
}

struct Planner<'a> {
    loaded: &'a Loaded,
    overrides: &'a [Override],
    machine: &'a Machine,
    profiles: Vec<HardwareProfile>,
    diagnostics: Diagnostics,
    axes: Vec<Axis>,
}

impl Planner<'_> {
    fn doc(&self) -> &crate::manifest::Document {
        &self.loaded.doc
    }

    /// Whether the user set `key` for this run (manifest, sweep or override), rather than a
    /// default, preset or profile.
    fn explicit(&self, key: &str, point: &[(usize, String)]) -> bool {
        let pointer: String = key.split('.').map(|s| format!("/{}", escape(s))).collect();
        self.overrides.iter().any(|o| o.key == key)
            || point.iter().any(|(axis, _)| self.axes[*axis].key == key)
            || self.doc().has(&pointer)
    }

    /// Where the value of `key` for a run comes from, for pointing at it.
    fn origin_of(&self, key: &str, point: &[(usize, String)]) -> Origin {
        let related = |a: &str| {
            a == key || key.starts_with(&format!("{a}.")) || a.starts_with(&format!("{key}."))
        };
        if let Some(o) = self.overrides.iter().rev().find(|o| related(&o.key)) {
            return o.origin.clone();
        }
        if let Some((_, pointer)) = point
            .iter()
            .find(|(axis, _)| related(&self.axes[*axis].key))
        {
            return located(self.doc(), pointer, false);
        }
        let pointer: String = key.split('.').map(|s| format!("/{}", escape(s))).collect();
        if self.doc().has(&pointer) {
            return located(self.doc(), &pointer, false);
        }
        // Values from a preset or profile: point at the line that chose it.
        let chooser = if key.starts_with("model.") {
            "/model/preset"
        } else {
            "/hardware/profile"
        };
        if self.doc().has(chooser) {
            return located(self.doc(), chooser, false);
        }
        Origin::File(None)
    }

    fn problem(
        &mut self,
        origin: Origin,
        key: &str,
        message: String,
        label: String,
        help: Option<String>,
    ) {
        let mut d = Diagnostic::at(None, key, message)
            .origin(origin)
            .label(label);
        d.help = help;
        self.diagnostics.push(d);
    }

    fn collect_axes(&mut self) {
        let sweep = &self.loaded.manifest.sweep;
        let mut axes: Vec<Axis> = Vec::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        // Each section's entries: (key, values for grid and zip, distribution for random).
        type Entries<'m> = Vec<(&'m String, Option<&'m AxisValues>, Option<&'m Distribution>)>;
        let sections: [(&str, Entries<'_>); 3] = [
            (
                "grid",
                sweep.grid.iter().map(|(k, v)| (k, Some(v), None)).collect(),
            ),
            (
                "zip",
                sweep.zip.iter().map(|(k, v)| (k, Some(v), None)).collect(),
            ),
            (
                "random",
                sweep
                    .random
                    .axes
                    .iter()
                    .map(|(k, d)| (k, None, Some(d)))
                    .collect(),
            ),
        ];
        for (section, entries) in sections {
            let mut entries: Vec<_> = entries
                .into_iter()
                .map(|(k, v, d)| {
                    let pointer = format!("/sweep/{section}/{}", escape(k));
                    (
                        self.doc().key_span(&pointer).map(|s| s.start).unwrap_or(0),
                        k,
                        v,
                        d,
                        pointer,
                    )
                })
                .collect();
            entries.sort_by_key(|e| e.0);
            for (_, key, values, dist, pointer) in entries {
                let key_origin = located(self.doc(), &pointer, true);
                if let Err(help) = check_setting(key, &Value::Null) {
                    self.problem(
                        key_origin,
                        key,
                        format!("sweep axis `{key}` names no setting"),
                        "unknown key".into(),
                        Some(help),
                    );
                    continue;
                }
                if let Some(previous) = seen.iter().find_map(|(k, s)| {
                    (k == key
                        || key.starts_with(&format!("{k}."))
                        || k.starts_with(&format!("{key}.")))
                    .then(|| format!("`{k}` in [sweep.{s}]"))
                }) {
                    self.problem(
                        key_origin,
                        key,
                        format!("sweep axis `{key}` overlaps {previous}"),
                        "swept twice".into(),
                        Some("sweep each setting in one place".into()),
                    );
                    continue;
                }
                seen.insert(key.clone(), section.to_string());
                let kind = match (values, dist) {
                    (Some(values), _) => match expand(values) {
                        Ok(list) => {
                            let pointers: Vec<String> = match values {
                                AxisValues::List(_) => {
                                    (0..list.len()).map(|i| format!("{pointer}/{i}")).collect()
                                }
                                _ => vec![pointer.clone(); list.len()],
                            };
                            AxisKind::Values(list.into_iter().zip(pointers).collect())
                        }
                        Err(message) => {
                            self.problem(
                                located(self.doc(), &pointer, false),
                                key,
                                message,
                                "here".into(),
                                None,
                            );
                            continue;
                        }
                    },
                    (None, Some(dist)) => AxisKind::Random(dist.clone()),
                    (None, None) => continue,
                };
                axes.push(Axis {
                    key: key.clone(),
                    pointer,
                    kind,
                });
            }
        }
        self.axes = axes;
        self.check_axis_values();
        self.check_zip_and_random();
    }

    fn check_axis_values(&mut self) {
        let mut found = Vec::new();
        for axis in &self.axes {
            let samples: Vec<(Value, String)> = match &axis.kind {
                AxisKind::Values(values) => values.clone(),
                AxisKind::Random(dist) => {
                    let p = &axis.pointer;
                    match dist {
                        Distribution::Uniform(u) => vec![
                            (number(u.uniform.0), p.clone()),
                            (number(u.uniform.1), p.clone()),
                        ],
                        Distribution::LogUniform(u) => {
                            vec![
                                (number(u.loguniform.0), p.clone()),
                                (number(u.loguniform.1), p.clone()),
                            ]
                        }
                        Distribution::IntUniform(u) => {
                            vec![
                                (Value::from(u.randint.0), p.clone()),
                                (Value::from(u.randint.1), p.clone()),
                            ]
                        }
                        Distribution::Choice(c) => c
                            .choice
                            .iter()
                            .enumerate()
                            .map(|(i, v)| (v.clone(), format!("{p}/choice/{i}")))
                            .collect(),
                    }
                }
            };
            for (value, pointer) in samples {
                if let Ok(violations) = check_setting(&axis.key, &value) {
                    for v in violations {
                        found.push((located(self.doc(), &pointer, false), axis.key.clone(), v));
                    }
                }
            }
            if let AxisKind::Random(dist) = &axis.kind {
                let bad = match dist {
                    Distribution::Uniform(u) if u.uniform.0 > u.uniform.1 => {
                        Some("uniform needs low ≤ high")
                    }
                    Distribution::LogUniform(u)
                        if !(u.loguniform.0 > 0.0 && u.loguniform.0 <= u.loguniform.1) =>
                    {
                        Some("loguniform needs 0 < low ≤ high")
                    }
                    Distribution::IntUniform(u) if u.randint.0 > u.randint.1 => {
                        Some("randint needs low ≤ high")
                    }
                    _ => None,
                };
                if let Some(message) = bad {
                    let origin = located(self.doc(), &axis.pointer, false);
                    found.push((
                        origin,
                        axis.key.clone(),
                        crate::manifest::check::Violation {
                            pointer: axis.pointer.clone(),
                            unknown_key: false,
                            message: format!("invalid distribution for sweep axis `{}`", axis.key),
                            label: message.into(),
                            help: None,
                        },
                    ));
                }
            }
        }
        for (origin, key, v) in found {
            let message = v
                .message
                .replacen("invalid value for", "invalid sweep value for", 1);
            self.problem(origin, &key, message, v.label, v.help);
        }
    }

    fn check_zip_and_random(&mut self) {
        let zip: Vec<(String, usize, String)> = self
            .axes
            .iter()
            .filter(|a| a.pointer.starts_with("/sweep/zip/"))
            .filter_map(|a| match &a.kind {
                AxisKind::Values(v) => Some((a.key.clone(), v.len(), a.pointer.clone())),
                AxisKind::Random(_) => None,
            })
            .collect();
        if let Some((first_key, first_len, _)) = zip.first().cloned() {
            let lengths: Vec<String> = zip
                .iter()
                .map(|(k, n, _)| format!("`{k}` has {n}"))
                .collect();
            for (key, len, pointer) in &zip {
                if *len != first_len {
                    let origin = located(self.doc(), pointer, false);
                    self.problem(
                        origin,
                        key,
                        format!("zip axes must have equal lengths, but `{key}` has {len} values and `{first_key}` has {first_len}"),
                        format!("{len} values"),
                        Some(format!("linked axes advance together: {}", lengths.join(", "))),
                    );
                }
            }
        }
        let random = &self.loaded.manifest.sweep.random;
        let has_random_axes = !random.axes.is_empty();
        match (random.samples, has_random_axes) {
            (None, true) => {
                let origin = located(self.doc(), "/sweep/random", true);
                self.problem(
                    origin,
                    "sweep.random.samples",
                    "[sweep.random] has axes but no `samples`".into(),
                    "how many runs to draw?".into(),
                    Some("add e.g. samples = 8".into()),
                );
            }
            (Some(_), false) => {
                let origin = located(self.doc(), "/sweep/random/samples", false);
                self.problem(
                    origin,
                    "sweep.random.samples",
                    "[sweep.random] sets `samples` but has no axes".into(),
                    "nothing to sample".into(),
                    Some("add an axis, e.g. \"train.lr\" = { loguniform = [1e-4, 3e-3] }".into()),
                );
            }
            _ => {}
        }
    }

    fn check_overrides_against_axes(&mut self) {
        for o in self.overrides {
            if let Some(axis) = self.axes.iter().find(|a| {
                a.key == o.key
                    || a.key.starts_with(&format!("{}.", o.key))
                    || o.key.starts_with(&format!("{}.", a.key))
            }) {
                let d = Diagnostic::at(
                    None,
                    o.key.clone(),
                    format!(
                        "`{}` is swept by the manifest and cannot also be overridden",
                        o.key
                    ),
                )
                .origin(o.origin.clone())
                .help(format!(
                    "remove the override, or the sweep axis `{}`",
                    axis.key
                ));
                self.diagnostics.push(d);
            }
        }
    }

    fn parse_where(&mut self) -> Option<Expr> {
        let text = self.loaded.manifest.sweep.where_.as_ref()?;
        let pointer = "/sweep/where";
        let span = self.doc().value_span(pointer);
        let at_column = |column: usize, len: usize| {
            span.clone().map(|s| {
                // Columns count characters of the string's content, after its opening quote.
                let offset: usize = text
                    .chars()
                    .take(column.saturating_sub(1))
                    .map(char::len_utf8)
                    .sum();
                let start = (s.start + 1 + offset).min(s.end.saturating_sub(1));
                start..(start + len).min(s.end)
            })
        };
        match Expr::parse(text) {
            Err(e) => {
                let d = Diagnostic::at(
                    at_column(e.column, 1),
                    "sweep.where",
                    format!("cannot parse `sweep.where`: {}", e.message),
                )
                .label(format!("column {}", e.column));
                self.diagnostics.push(d);
                None
            }
            Ok(expr) => {
                let mut ok = true;
                for (key, column) in expr.keys() {
                    if let Err(help) = check_setting(key, &Value::Null) {
                        let d = Diagnostic::at(
                            at_column(column, key.len()),
                            "sweep.where",
                            format!("`sweep.where` names unknown key `{key}`"),
                        )
                        .label("not a setting")
                        .help(help);
                        self.diagnostics.push(d);
                        ok = false;
                    }
                }
                ok.then_some(expr)
            }
        }
    }

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

/// What a point of the sweep sets: (axis index, pointer of the value) and the values.
struct Point {
    refs: Vec<(usize, String)>,
    values: Vec<(String, Value)>,
}

fn draw(dist: &Distribution, rng: &mut ChaCha8Rng) -> Value {
    match dist {
        Distribution::Uniform(u) => number(if u.uniform.0 == u.uniform.1 {
            u.uniform.0
        } else {
            rng.random_range(u.uniform.0..u.uniform.1)
        }),
        Distribution::LogUniform(u) => {
            let (a, b) = (u.loguniform.0.ln(), u.loguniform.1.ln());
            number(if a == b {
                u.loguniform.0
            } else {
                rng.random_range(a..b).exp()
            })
        }
        Distribution::IntUniform(u) => Value::from(rng.random_range(u.randint.0..=u.randint.1)),
        Distribution::Choice(c) => c.choice[rng.random_range(0..c.choice.len())].clone(),
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

/// Semantic checks of one resolved config: (keys involved, message, label, help).
fn check_config(config: &Config) -> Vec<(&'static str, String, String, Option<String>)> {
    let mut out = Vec::new();
    let m = &config.model;
    if !m.dim.is_multiple_of(m.heads) {
        let divisors: Vec<String> = (1..=m.dim.min(64))
            .filter(|h| m.dim.is_multiple_of(*h))
            .map(|h| h.to_string())
            .collect();
        out.push((
            "model.heads",
            format!(
                "`model.heads` = {} does not divide `model.dim` = {}",
                m.heads, m.dim
            ),
            "heads must divide dim".into(),
            Some(format!(
                "heads that divide {}: {}",
                m.dim,
                divisors.join(", ")
            )),
        ));
    }
    let t = &config.train;
    if t.min_lr > t.lr {
        out.push((
            "train.min_lr",
            format!(
                "`train.min_lr` = {} is above `train.lr` = {}",
                t.min_lr, t.lr
            ),
            "must be ≤ train.lr".into(),
            None,
        ));
    }
    if t.warmup_steps > t.steps {
        out.push((
            "train.warmup_steps",
            format!(
                "`train.warmup_steps` = {} exceeds `train.steps` = {}",
                t.warmup_steps, t.steps
            ),
            "must be ≤ train.steps".into(),
            None,
        ));
    }
    if config.data.source.is_some() && config.data.path.is_some() {
        out.push((
            "data.path",
            "set either `data.source` or `data.path`, not both".into(),
            "conflicts with data.source".into(),
            None,
        ));
    }
    out
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

    // The points: grid (first axis slowest) × zip × random samples.
    let grid: Vec<usize> = (0..p.axes.len())
        .filter(|&i| p.axes[i].pointer.starts_with("/sweep/grid/"))
        .collect();
    let zip: Vec<usize> = (0..p.axes.len())
        .filter(|&i| p.axes[i].pointer.starts_with("/sweep/zip/"))
        .collect();
    let random: Vec<usize> = (0..p.axes.len())
        .filter(|&i| matches!(p.axes[i].kind, AxisKind::Random(_)))
        .collect();
    let len = |i: usize| match &p.axes[i].kind {
        AxisKind::Values(v) => v.len() as u64,
        AxisKind::Random(_) => 1,
    };
    let grid_count: u64 = grid
        .iter()
        .map(|&i| len(i))
        .try_fold(1u64, |acc, n| acc.checked_mul(n))
        .unwrap_or(u64::MAX);
    let zip_count = zip.first().map(|&i| len(i)).unwrap_or(1);
    let samples = if random.is_empty() {
        1
    } else {
        loaded.manifest.sweep.random.samples.unwrap_or(1)
    };
    let total = grid_count.saturating_mul(zip_count).saturating_mul(samples);
    if total > MAX_RUNS {
        let origin = located(&loaded.doc, "/sweep", true);
        p.problem(
            origin,
            "sweep",
            format!("the sweep expands to {total} runs; at most {MAX_RUNS} are allowed"),
            "too many runs".into(),
            Some("narrow an axis, or use [sweep.random] with fewer samples".into()),
        );
        p.diagnostics.sort();
        return Err(p.diagnostics);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(loaded.manifest.sweep.random.seed);
    let drawn: Vec<Vec<Value>> = (0..samples)
        .map(|_| {
            random
                .iter()
                .map(|&i| match &p.axes[i].kind {
                    AxisKind::Random(d) => draw(d, &mut rng),
                    AxisKind::Values(_) => Value::Null,
                })
                .collect()
        })
        .collect();

    let axis_keys: Vec<String> = p.axes.iter().map(|a| a.key.clone()).collect();
    let mut points: Vec<Point> = Vec::with_capacity(total as usize);
    let mut counter = vec![0usize; grid.len()];
    for _ in 0..grid_count {
        for z in 0..zip_count as usize {
            for sample in &drawn {
                let mut refs = Vec::with_capacity(p.axes.len());
                let mut values = Vec::with_capacity(p.axes.len());
                for (slot, &axis) in grid.iter().enumerate() {
                    if let AxisKind::Values(v) = &p.axes[axis].kind {
                        let (value, pointer) = &v[counter[slot]];
                        refs.push((axis, pointer.clone()));
                        values.push((axis_keys[axis].clone(), value.clone()));
                    }
                }
                for &axis in &zip {
                    if let AxisKind::Values(v) = &p.axes[axis].kind {
                        let (value, pointer) = &v[z];
                        refs.push((axis, pointer.clone()));
                        values.push((axis_keys[axis].clone(), value.clone()));
                    }
                }
                for (slot, &axis) in random.iter().enumerate() {
                    refs.push((axis, p.axes[axis].pointer.clone()));
                    values.push((axis_keys[axis].clone(), sample[slot].clone()));
                }
                points.push(Point { refs, values });
            }
        }
        for slot in (0..grid.len()).rev() {
            counter[slot] += 1;
            if (counter[slot] as u64) < len(grid[slot]) {
                break;
            }
            counter[slot] = 0;
        }
    }

    resolve_points(p, points, axis_keys, filter)
}

fn resolve_points(
    mut p: Planner<'_>,
    points: Vec<Point>,
    axis_keys: Vec<String>,
    filter: Option<Expr>,
) -> Result<Plan, Diagnostics> {
    let loaded = p.loaded;
    let override_of = |key: &str| {
        p.overrides
            .iter()
            .rev()
            .find(|o| o.key == key)
            .map(|o| o.value.clone())
    };
    let manifest_profile = loaded.manifest.hardware.profile.clone();
    let manifest_preset = loaded.manifest.model.preset;

    // Per (profile, preset): the resolved config below the sweep, and its layer stack's index.
    type Bases = HashMap<(String, Option<Preset>), Option<(Config, usize)>>;
    let mut bases: Bases = HashMap::new();
    let mut layer_sets: Vec<Vec<Layer>> = Vec::new();
    let mut facts: Vec<(crate::manifest::DataConfig, Option<data::Facts>)> = Vec::new();
    let mut run_problems: HashMap<(String, String), (Diagnostic, Vec<usize>)> = HashMap::new();
    let mut problem_order: Vec<(String, String)> = Vec::new();
    let mut runs: Vec<RunSpec> = Vec::with_capacity(points.len());
    let mut excluded = Vec::new();
    let mut keys_seen: HashSet<String> = HashSet::new();
    let mut merged = 0;
    let mut where_failed = false;
    let base_dir = loaded.base_dir();

    for (point_index, point) in points.into_iter().enumerate() {
        let lookup = |key: &str| {
            point
                .values
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let profile_name = override_of("hardware.profile")
            .or_else(|| lookup("hardware.profile"))
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_else(|| manifest_profile.clone());
        let preset: Option<Preset> = override_of("model.preset")
            .or_else(|| lookup("model.preset"))
            .and_then(|v| serde_json::from_value(v).ok())
            .or(manifest_preset);
        let resolved_profile = if profile_name == "auto" {
            profiles::auto(p.machine).0.to_string()
        } else {
            profile_name.clone()
        };

        let base_key = (resolved_profile.clone(), preset);
        if !bases.contains_key(&base_key) {
            let entry = match p
                .profiles
                .iter()
                .find(|pr| pr.name == resolved_profile)
                .cloned()
            {
                None => {
                    let mut names: Vec<String> =
                        p.profiles.iter().map(|pr| pr.name.clone()).collect();
                    names.insert(0, "auto".into());
                    let help = match crate::manifest::check::did_you_mean(
                        &resolved_profile,
                        names.iter().map(String::as_str),
                    ) {
                        Some(best) => format!("did you mean \"{best}\"?"),
                        None => format!(
                            "profiles: {} (or define [profiles.{resolved_profile}])",
                            names.join(", ")
                        ),
                    };
                    let origin = p.origin_of("hardware.profile", &point.refs);
                    p.problem(
                        origin,
                        "hardware.profile",
                        format!("unknown hardware profile \"{resolved_profile}\""),
                        "no such profile".into(),
                        Some(help),
                    );
                    None
                }
                Some(profile) => {
                    let layers = p.layers_for(&profile, preset);
                    match layers::resolve(&layers) {
                        Ok(mut config) => {
                            config.hardware.profile = profile.name.clone();
                            layer_sets.push(layers);
                            Some((config, layer_sets.len() - 1))
                        }
                        Err(e) => {
                            p.problem(
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
            bases.insert(base_key.clone(), entry);
        }
        let Some((base, layer_set)) = bases.get(&base_key).and_then(Option::as_ref) else {
            continue;
        };
        let layer_set = *layer_set;

        let mut config = base.clone();
        let applied = point
            .values
            .iter()
            .try_for_each(|(key, value)| apply(&mut config, key, value));
        config.hardware.profile.clone_from(&resolved_profile);
        match applied {
            Ok(()) => {}
            Err(e) => {
                let origin = point
                    .refs
                    .first()
                    .map(|(_, ptr)| located(&loaded.doc, ptr, false))
                    .unwrap_or(Origin::File(None));
                p.problem(
                    origin,
                    "",
                    format!("these sweep values do not form a valid config: {e}"),
                    String::new(),
                    None,
                );
                continue;
            }
        }
        if config.data.path.is_none() && config.data.source.is_none() {
            config.data.source = Some(crate::manifest::Dataset::Tinyshakespeare);
        }

        if let Some(expr) = &filter {
            let json = serde_json::to_value(&config).expect("config serializes");
            let lookup_config = |key: &str| {
                key.split('.')
                    .try_fold(&json, |node, s| node.get(s))
                    .and_then(expr::Val::from_json)
            };
            match expr
                .eval(&lookup_config)
                .and_then(|v| v.truthy("value of `sweep.where`"))
            {
                Ok(true) => {}
                Ok(false) => {
                    excluded.push(point.values.clone());
                    continue;
                }
                Err(message) => {
                    if !where_failed {
                        where_failed = true;
                        let origin = located(&loaded.doc, "/sweep/where", false);
                        p.problem(
                            origin,
                            "sweep.where",
                            format!("`sweep.where` cannot be evaluated: {message}"),
                            "in this expression".into(),
                            None,
                        );
                    }
                    continue;
                }
            }
        }

        let mut run_ok = true;
        for (key, message, label, help) in check_config(&config) {
            // A default warm-up longer than a short smoke run is fine; a chosen one is a mistake.
            if key == "train.warmup_steps" && !p.explicit(key, &point.refs) {
                continue;
            }
            let origin = p.origin_of(key, &point.refs);
            let id = (message.clone(), format!("{origin:?}"));
            let entry = run_problems.entry(id.clone()).or_insert_with(|| {
                problem_order.push(id);
                let mut d = Diagnostic::at(None, key, message)
                    .origin(origin)
                    .label(label);
                d.help = help;
                (d, Vec::new())
            });
            entry.1.push(point_index);
            run_ok = false;
        }
        if !run_ok {
            continue;
        }

        let known = facts.iter().position(|(d, _)| *d == config.data);
        let slot = match known {
            Some(i) => i,
            None => {
                let got = match data::facts(&base_dir, &config.data) {
                    Ok(f) => Some(f),
                    Err(e) => {
                        let origin = p.origin_of("data.path", &point.refs);
                        p.problem(
                            origin,
                            "data.path",
                            e.to_string(),
                            "no corpus here".into(),
                            Some("paths are relative to the manifest's folder".into()),
                        );
                        None
                    }
                };
                facts.push((config.data.clone(), got));
                facts.len() - 1
            }
        };
        let Some(facts) = facts[slot].1.as_ref() else {
            continue;
        };

        let params = spec::param_count(&config, facts.vocab_size);
        let memory = spec::memory(&config, params, facts.vocab_size);
        let budget = config.hardware.memory_budget_gb * 1e9;
        if memory.total as f64 > budget {
            let origin = p.origin_of("model.dim", &point.refs);
            let message = format!(
                "estimated training memory {:.2} GB exceeds the {} GB budget of profile `{}`",
                memory.total as f64 / 1e9,
                config.hardware.memory_budget_gb,
                config.hardware.profile
            );
            let id = (message.clone(), format!("{origin:?}"));
            let entry = run_problems.entry(id.clone()).or_insert_with(|| {
                problem_order.push(id);
                let d = Diagnostic::at(None, "model", message).origin(origin).label("this run is too large").help(
                    "lower train.batch_size (raising train.grad_accum keeps the tokens per step), model.block_size or the model size, or raise hardware.memory_budget_gb",
                );
                (d, Vec::new())
            });
            entry.1.push(point_index);
            continue;
        }
        let key = spec::content_key(&config, facts.fingerprint.as_deref());
        if !keys_seen.insert(key.clone()) {
            merged += 1;
            continue;
        }
        runs.push(RunSpec {
            index: runs.len(),
            key,
            tokens: spec::tokens(&config),
            config,
            swept: point.values,
            vocab_size: facts.vocab_size,
            corpus: facts.fingerprint.clone(),
            params,
            memory,
            layers: layer_set,
        });
    }

    let swept = !axis_keys.is_empty();
    let listed = problem_order.len().min(MAX_RUN_PROBLEMS);
    for id in problem_order.iter().take(listed) {
        let Some((mut d, indices)) = run_problems.remove(id) else {
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
                "in sweep point{} {}{more}",
                if indices.len() == 1 { "" } else { "s" },
                shown.join(", ")
            );
            d.help = Some(match d.help {
                Some(h) => format!("{h}; {note}"),
                None => note,
            });
        }
        p.diagnostics.push(d);
    }
    if problem_order.len() > listed {
        p.diagnostics.push(Diagnostic::at(
            None,
            "",
            format!(
                "… and {} more problems in other sweep points",
                problem_order.len() - listed
            ),
        ));
    }
    if !p.diagnostics.is_empty() {
        p.diagnostics.sort();
        return Err(p.diagnostics);
    }
    if runs.is_empty() {
        let origin = located(&loaded.doc, "/sweep/where", false);
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
        return Err(p.diagnostics);
    }

    let varying = axis_keys
        .iter()
        .filter(|k| {
            let first = runs[0]
                .swept
                .iter()
                .find(|(key, _)| key == *k)
                .map(|(_, v)| v);
            runs.iter()
                .any(|r| r.swept.iter().find(|(key, _)| key == *k).map(|(_, v)| v) != first)
        })
        .cloned()
        .collect();
    let first_layers = layer_sets[runs[0].layers].clone();
    let mut experiment = runs[0].config.experiment.clone();
    experiment.name = loaded.manifest.experiment.name.clone();
    Ok(Plan {
        experiment,
        manifest: loaded.path.clone(),
        manifest_digest: loaded.digest.clone(),
        runs,
        axes: axis_keys,
        varying,
        excluded,
        merged,
        layers: first_layers,
        layer_sets,
    })
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
