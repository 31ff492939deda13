//! Sweep axes: reading `[sweep.grid]`, `[sweep.zip]` and `[sweep.random]` into axes (sugar
//! expanded), checking their values, and parsing `sweep.where`.

use std::collections::HashMap;

use serde_json::Value;

use super::expr::Expr;
use super::planner::{Axis, AxisKind, Planner, located};
use crate::manifest::check::check_setting;
use crate::manifest::source::escape;
use crate::manifest::{AxisValues, Diagnostic, Distribution};

/// Numbers from sugar: integral values become JSON integers so that integer keys accept them.
pub(super) fn number(x: f64) -> Value {
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

/// Why a key cannot be searched, if it cannot: a search samples one base config's model and
/// training settings.
fn unsearchable(key: &str) -> Option<&'static str> {
    if key == "model.preset" {
        Some("a preset sets many keys at once; search the keys themselves")
    } else if key == "train.steps" {
        Some("the trials of one search share one budget of steps")
    } else if key.starts_with("model.") || key.starts_with("train.") {
        None
    } else {
        Some("it is not a setting of the model or its training")
    }
}

/// What makes a distribution unusable for a search, with help: TPE models a range that has
/// room in it (in log space, above 0) and a choice between at least two values. (NaN bounds,
/// which TOML can spell, compare as neither, and are refused.)
fn search_problem(dist: &Distribution) -> Option<(&'static str, &'static str)> {
    use std::cmp::Ordering::{Greater, Less};
    match dist {
        Distribution::Uniform(u) if u.uniform.0.partial_cmp(&u.uniform.1) != Some(Less) => Some((
            "an empty range: low must be below high",
            "write { uniform = [low, high] } with low < high, or set the key once outside the search",
        )),
        Distribution::LogUniform(u) if u.loguniform.0.partial_cmp(&0.0) != Some(Greater) => Some((
            "a log range must stay above 0",
            "log-uniform draws ln(x): use a low above 0, e.g. { loguniform = [1e-5, 1e-2] }",
        )),
        Distribution::LogUniform(u)
            if u.loguniform.0.partial_cmp(&u.loguniform.1) != Some(Less) =>
        {
            Some((
                "an empty range: low must be below high",
                "write { loguniform = [low, high] } with 0 < low < high",
            ))
        }
        Distribution::IntUniform(u) if u.randint.0 >= u.randint.1 => Some((
            "an empty range: low must be below high",
            "write { randint = [low, high] } with low < high (both included)",
        )),
        Distribution::Choice(c) if c.choice.len() < 2 => Some((
            "a choice of one value leaves nothing to search",
            "give at least two values, or set the key once outside the search",
        )),
        _ => None,
    }
}

impl Planner<'_> {
    pub(super) fn collect_axes(&mut self) {
        let sweep = &self.loaded.manifest.sweep;
        let mut axes: Vec<Axis> = Vec::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        // Each section's entries: (key, values for grid and zip, distribution for random).
        type Entries<'m> = Vec<(&'m String, Option<&'m AxisValues>, Option<&'m Distribution>)>;
        let search_space = sweep.search.as_ref().map(|s| &s.space);
        let sections: [(&str, Entries<'_>); 4] = [
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
            (
                "search/space",
                search_space
                    .into_iter()
                    .flatten()
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
                if section == "search/space"
                    && let Some(why) = unsearchable(key)
                {
                    self.problem(
                        key_origin,
                        key,
                        format!("`{key}` cannot be searched: {why}"),
                        "not searchable".into(),
                        Some(
                            "a search samples settings of the model and its training \
                             (model.*, train.* but train.steps); set the others once"
                                .into(),
                        ),
                    );
                    continue;
                }
                if key == "executor" || key.starts_with("executor.") {
                    self.problem(
                        key_origin,
                        key,
                        format!("sweep axis `{key}` sets where runs execute, not what they are"),
                        "not sweepable".into(),
                        Some("set it in [executor], or with --set or --jobs/--executor".into()),
                    );
                    continue;
                }
                if let Some(previous) = seen.iter().find_map(|(k, s)| {
                    (k == key
                        || key.starts_with(&format!("{k}."))
                        || k.starts_with(&format!("{key}.")))
                    .then(|| format!("`{k}` in [sweep.{}]", s.replace('/', ".")))
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
        self.check_search();
    }

    /// A search chooses its own runs: no other axes beside it, a known objective, and no more
    /// random startup trials than trials.
    fn check_search(&mut self) {
        let Some(search) = self.loaded.manifest.sweep.search.clone() else {
            return;
        };
        let others: Vec<(String, String)> = self
            .axes
            .iter()
            .filter(|a| !a.pointer.starts_with("/sweep/search/"))
            .map(|a| (a.key.clone(), a.pointer.clone()))
            .collect();
        for (key, pointer) in others {
            let origin = located(self.doc(), &pointer, true);
            self.problem(
                origin,
                &key,
                format!("sweep axis `{key}` beside [sweep.search]: a search chooses its own runs"),
                "not part of the search".into(),
                Some(format!(
                    "move it into [sweep.search.space], e.g. \"{key}\" = {{ choice = [...] }}, \
                     or run it as its own experiment"
                )),
            );
        }
        if self.loaded.manifest.sweep.where_.is_some() {
            let origin = located(self.doc(), "/sweep/where", true);
            self.problem(
                origin,
                "sweep.where",
                "`sweep.where` beside [sweep.search]: a search chooses its own runs".into(),
                "not part of the search".into(),
                Some("narrow the ranges of [sweep.search.space] instead".into()),
            );
        }
        if !crate::early_stop::OBJECTIVES.contains(&search.metric.as_str()) {
            let help = match crate::manifest::check::did_you_mean(
                &search.metric,
                crate::early_stop::OBJECTIVES,
            ) {
                Some(best) => format!("did you mean \"{best}\"?"),
                None => format!("objectives: {}", crate::early_stop::OBJECTIVES.join(", ")),
            };
            let origin = located(self.doc(), "/sweep/search/metric", false);
            self.problem(
                origin,
                "sweep.search.metric",
                format!(
                    "unknown objective metric `{}` in `sweep.search.metric`",
                    search.metric
                ),
                "not a metric every run records".into(),
                Some(help),
            );
        }
        if let Some(startup) = search.startup_trials
            && startup > search.trials
        {
            let origin = located(self.doc(), "/sweep/search/startup_trials", false);
            self.problem(
                origin,
                "sweep.search.startup_trials",
                format!(
                    "`sweep.search.startup_trials` = {startup} is more than `trials` = {}",
                    search.trials
                ),
                "more random trials than trials".into(),
                Some(format!("use at most {}", search.trials)),
            );
        }
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
            let searched = axis.pointer.starts_with("/sweep/search/");
            if let AxisKind::Random(dist) = &axis.kind
                && searched
                && let Some((label, help)) = search_problem(dist)
            {
                found.push((
                    located(self.doc(), &axis.pointer, false),
                    axis.key.clone(),
                    crate::manifest::check::Violation {
                        pointer: axis.pointer.clone(),
                        unknown_key: false,
                        message: format!("the search space of `{}` is unusable", axis.key),
                        label: label.into(),
                        help: Some(help.into()),
                    },
                ));
            } else if let AxisKind::Random(dist) = &axis.kind {
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

    pub(super) fn check_overrides_against_axes(&mut self) {
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

    pub(super) fn parse_where(&mut self) -> Option<Expr> {
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
}
