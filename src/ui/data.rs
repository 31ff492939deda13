//! What the dashboard's endpoints answer, read from a read-only store: the runs table, curves,
//! one run's record and two runs' differing settings. Plain functions of a [`Store`], so that
//! they are tested without a server.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

use super::series::{self, Band, Curve, Line, Smoothing, XAxis, XMap};
use crate::count::Count;
use crate::manifest::SETTINGS;
use crate::report::settings::differing_settings;
use crate::store::{self, Checkpoint, Listed, Provenance, RunFilter, RunRecord, Status, Store};
use crate::sweep;

/// At most this many points per series, whatever a request asks for.
pub const MAX_POINTS: usize = 2000;
/// At most this many runs in one curve request.
pub const MAX_CURVE_RUNS: usize = 1000;

/// An answer that is not data: a status code and a message, with the request parameter it is
/// about and, for a query, the 1-based column in it.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    #[serde(skip)]
    pub status: u16,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl ApiError {
    pub fn bad(param: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            message: message.into(),
            param: Some(param),
            column: None,
            text: None,
        }
    }

    fn query(param: &'static str, text: &str, e: store::query::QueryError) -> ApiError {
        ApiError {
            status: 400,
            message: e.message,
            param: Some(param),
            column: Some(e.column),
            text: Some(text.to_string()),
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 404,
            message: message.into(),
            param: None,
            column: None,
            text: None,
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 500,
            message: message.into(),
            param: None,
            column: None,
            text: None,
        }
    }
}

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> ApiError {
        match e {
            store::Error::NoRun(_) => ApiError::not_found(e.to_string()),
            e if e.is_user_error() => ApiError::bad("db", e.to_string()),
            e => ApiError::internal(e.to_string()),
        }
    }
}

pub type Answer<T> = Result<T, ApiError>;

/// Which runs the table lists: the same filters as `xp runs`.
#[derive(Debug, Clone, Default)]
pub struct RunsQuery {
    pub condition: Option<String>,
    pub sort: Option<String>,
    pub experiment: Option<String>,
    pub status: Option<String>,
}

/// One row of the runs table.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub name: String,
    pub experiment: String,
    pub status: Status,
    pub reason: Option<String>,
    pub step: u64,
    pub steps_total: u64,
    /// The swept settings' values, by dotted key.
    pub swept: BTreeMap<String, Value>,
    pub best_val_loss: Option<f64>,
    pub final_val_loss: Option<f64>,
    pub final_train_loss: Option<f64>,
    pub tokens_per_s: Option<f64>,
    pub wall_s: Option<f64>,
    pub params: Option<u64>,
    /// True when the losses are so far (read from the curve of a run without a summary).
    pub partial: bool,
    pub attempts: i64,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

/// The runs table: rows, and the swept settings as columns in the order experiments sweep them.
#[derive(Debug, Clone, Serialize)]
pub struct RunsPage {
    /// The store's path, as the server was given it.
    pub store: String,
    pub columns: Vec<String>,
    pub rows: Vec<RunRow>,
    /// Keys a filter or a sort can use, for the page's hints.
    pub keys: Vec<&'static str>,
}

fn compile_where(text: &str) -> Answer<store::query::Sql> {
    store::query::compile_where(text).map_err(|e| ApiError::query("where", text, e))
}

/// The parameter's text, unless it is missing or blank.
fn non_blank(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

pub fn runs(store: &Store, q: &RunsQuery) -> Answer<RunsPage> {
    let condition = non_blank(&q.condition).map(compile_where).transpose()?;
    let order = non_blank(&q.sort)
        .map(|s| store::query::order_by(s).map_err(|e| ApiError::query("sort", s, e)))
        .transpose()?;
    let status = match non_blank(&q.status) {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            ApiError::bad(
                "status",
                format!(
                    "`{s}` is not a run state; states are {}",
                    Status::names().join(", ")
                ),
            )
        })?),
    };
    let filter = RunFilter {
        experiment: non_blank(&q.experiment).map(String::from),
        status,
        newest_first: false,
        limit: None,
    };
    let listed = store.query(&filter, condition.as_ref(), order.as_ref())?;
    let mut columns: Vec<String> = Vec::new();
    let mut rows = Vec::with_capacity(listed.len());
    for l in listed {
        for (k, _) in &l.run.spec.swept {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
        rows.push(row(store, l)?);
    }
    Ok(RunsPage {
        store: store.path().display().to_string(),
        columns,
        rows,
        keys: store::query::keys(),
    })
}

/// A table row; a run without a summary shows its best and last validation loss so far.
pub fn row(store: &Store, l: Listed) -> Answer<RunRow> {
    let Listed { run, summary } = l;
    let partial = summary.is_none();
    let s = match summary {
        Some(s) => s,
        None => {
            let curve = store.metric_rows(run.id, "val_loss", None)?;
            let train = store.latest_metric(run.id, "train_loss")?;
            crate::summary::Summary {
                best_val_loss: curve
                    .iter()
                    .map(|r| r.1)
                    .filter(|v| v.is_finite())
                    .reduce(f64::min),
                final_val_loss: curve.last().map(|r| r.1),
                final_train_loss: train.map(|t| t.1),
                ..Default::default()
            }
        }
    };
    Ok(RunRow {
        id: run.id,
        name: run.name(),
        experiment: run.experiment.clone(),
        status: run.status(),
        reason: run.state.reason().map(String::from),
        step: run.step,
        steps_total: run.steps_total,
        swept: run.spec.swept.iter().cloned().collect(),
        best_val_loss: s.best_val_loss,
        final_val_loss: s.final_val_loss,
        final_train_loss: s.final_train_loss,
        tokens_per_s: s.median_tokens_per_s,
        wall_s: s.wall_s,
        params: s.params.or(Some(run.spec.params)),
        partial,
        attempts: run.attempts,
        started_at: run.started_at,
        finished_at: run.finished_at,
    })
}

/// The value of a grouping key for a run: a config setting, or experiment or status.
fn group_value(run: &RunRecord, key: &str, config: &BTreeMap<String, Value>) -> Value {
    match key {
        "experiment" => Value::String(run.experiment.clone()),
        "status" => Value::String(run.status().to_string()),
        _ => config.get(key).cloned().unwrap_or(Value::Null),
    }
}

fn check_group_key(key: &str) -> Answer<()> {
    if key == "experiment" || key == "status" || SETTINGS.contains(&key) {
        return Ok(());
    }
    let hint = crate::manifest::check::did_you_mean(key, SETTINGS.iter().copied())
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_else(|| "; group by a config setting, experiment or status".into());
    Err(ApiError::bad(
        "group",
        format!("cannot group by `{key}`{hint}"),
    ))
}

/// What a chart asks for.
#[derive(Debug, Clone)]
pub struct CurvesQuery {
    pub runs: Vec<i64>,
    pub metric: String,
    pub x: XAxis,
    pub smoothing: Smoothing,
    pub group: Option<String>,
    pub points: usize,
}

/// One run's series.
#[derive(Debug, Clone, Serialize)]
pub struct RunSeries {
    pub run: i64,
    pub name: String,
    pub raw: Line,
    /// Absent when smoothing is off.
    pub smooth: Option<Line>,
    /// The last step read: the live stream continues after it.
    pub last_step: Option<i64>,
    /// Recorded points before downsampling.
    pub points: usize,
    /// Where an early-stopped run paused and what was decided there, on this curve.
    pub marks: Vec<Mark>,
}

/// A point of a run's curve where early stopping paused, promoted or stopped it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Mark {
    pub step: u64,
    pub x: f64,
    pub y: f64,
    /// `promoted`, `stopped`, or `paused` (waiting for its decision).
    pub kind: &'static str,
    pub reason: String,
}

/// The early-stopping marks of `run` on curve `c`: at each decision's step (or the last point
/// before it, where the metric is not recorded there), and where it waits now.
fn marks(store: &Store, run: &RunRecord, c: &Curve) -> Answer<Vec<Mark>> {
    if run.spec.early_stop.is_none() {
        return Ok(Vec::new());
    }
    let at = |step: u64| -> Option<(f64, f64)> {
        let i = c.steps.iter().rposition(|&s| s <= step as i64)?;
        Some((*c.raw.x.get(i)?, *c.raw.y.get(i)?))
    };
    let mut out = Vec::new();
    for l in store.decisions_of_run(run.id)? {
        let d = l.decision;
        if let Some((x, y)) = at(d.step) {
            out.push(Mark {
                step: d.step,
                x,
                y,
                kind: d.action.done(),
                reason: d.reason,
            });
        }
    }
    if run.status() == crate::store::Status::Paused
        && !out.iter().any(|m| m.step == run.step)
        && let Some((x, y)) = at(run.step)
    {
        out.push(Mark {
            step: run.step,
            x,
            y,
            kind: "paused",
            reason: "waiting for its early-stopping decision".into(),
        });
    }
    Ok(out)
}

/// Every early-stopped experiment's search (rungs and best run), for the dashboard's panel.
pub fn searches(store: &Store) -> Answer<Vec<crate::report::search::Search>> {
    let mut out = Vec::new();
    for e in store.counts()? {
        out.extend(crate::report::search::search(store, &e.experiment)?);
    }
    Ok(out)
}

/// Every search's trials (settings, objective, best so far), for the dashboard's panel.
pub fn trials(store: &Store) -> Answer<Vec<crate::report::trials::Trials>> {
    let mut out = Vec::new();
    for e in store.counts()? {
        out.extend(crate::report::trials::trials(store, &e.experiment)?);
    }
    Ok(out)
}

/// One group's mean and band.
#[derive(Debug, Clone, Serialize)]
pub struct GroupSeries {
    pub label: String,
    pub value: Value,
    pub runs: Vec<i64>,
    pub band: Band,
}

#[derive(Debug, Clone, Serialize)]
pub struct CurvesPage {
    pub metric: String,
    pub series: Vec<RunSeries>,
    pub groups: Vec<GroupSeries>,
}

/// Tokens a run trains on per step.
pub fn tokens_per_step(run: &RunRecord) -> f64 {
    let steps = run.spec.config.train.steps.max(1);
    run.spec.tokens as f64 / steps as f64
}

/// A run's full curve of one metric, raw and smoothed.
pub fn curve(
    store: &Store,
    run: &RunRecord,
    metric: &str,
    x: XAxis,
    smoothing: Smoothing,
) -> Answer<Curve> {
    let mut c = Curve::new(XMap::new(x, tokens_per_step(run)), smoothing);
    c.extend(store.metric_rows(run.id, metric, None)?);
    Ok(c)
}

pub fn curves(store: &Store, q: &CurvesQuery) -> Answer<CurvesPage> {
    if q.runs.len() > MAX_CURVE_RUNS {
        return Err(ApiError::bad(
            "runs",
            format!(
                "{} runs asked for; a chart takes at most {MAX_CURVE_RUNS} (narrow the table or group it)",
                q.runs.len()
            ),
        ));
    }
    if let Some(g) = &q.group {
        check_group_key(g)?;
    }
    let points = q.points.clamp(4, MAX_POINTS);
    let mut page = CurvesPage {
        metric: q.metric.clone(),
        series: Vec::new(),
        groups: Vec::new(),
    };
    let mut groups: Vec<(Value, Vec<i64>, Vec<Curve>)> = Vec::new();
    for &id in &q.runs {
        let run = store.run_by_id(id)?;
        let c = curve(store, &run, &q.metric, q.x, q.smoothing)?;
        match &q.group {
            Some(key) => {
                let config = run.spec.settings();
                let value = group_value(&run, key, &config);
                match groups.iter_mut().find(|g| g.0 == value) {
                    Some(g) => {
                        g.1.push(id);
                        g.2.push(c);
                    }
                    None => groups.push((value, vec![id], vec![c])),
                }
            }
            None => page.series.push(RunSeries {
                marks: marks(store, &run, &c)?,
                run: id,
                name: run.name(),
                raw: series::downsample(&c.raw, points),
                smooth: (q.smoothing != Smoothing::None)
                    .then(|| series::downsample(&c.smooth, points)),
                last_step: c.last_step(),
                points: c.steps.len(),
            }),
        }
    }
    for (value, runs, curves) in groups {
        let band = series::band(&curves.iter().collect::<Vec<_>>());
        page.groups.push(GroupSeries {
            label: format!(
                "{} = {} ({})",
                q.group.as_deref().unwrap_or_default(),
                sweep::short(&value),
                Count::numbered("run", runs.len())
            ),
            value,
            runs,
            band: series::downsample_band(&band, points),
        });
    }
    Ok(page)
}

/// A setting of a run: its value and the layer that gave it.
#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    pub key: String,
    pub value: Value,
    pub layer: Option<String>,
}

/// Everything the run page shows.
#[derive(Debug, Clone, Serialize)]
pub struct RunPage {
    #[serde(flatten)]
    pub row: RunRow,
    pub key: String,
    pub manifest_path: String,
    pub backend: Option<String>,
    pub adapter: Option<String>,
    pub settings: Vec<Setting>,
    pub provenance: Provenance,
    pub checkpoints: Vec<CheckpointRow>,
    pub metrics: Vec<String>,
}

/// A recorded checkpoint, and whether its folder is on this machine (a store copied without
/// its checkpoint folder, as the shipped example, keeps the records).
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointRow {
    #[serde(flatten)]
    pub checkpoint: Checkpoint,
    pub present: bool,
}

pub fn run_page(store: &Store, id: i64) -> Answer<RunPage> {
    let run = store.run_by_id(id)?;
    let summary = store.summary(id)?;
    let origins = run.provenance.origins.clone();
    let settings = run
        .spec
        .settings()
        .into_iter()
        .map(|(key, value)| Setting {
            layer: origins.get(&key).cloned(),
            key,
            value,
        })
        .collect();
    Ok(RunPage {
        key: run.key.clone(),
        manifest_path: run.manifest_path.clone(),
        backend: run.backend.clone(),
        adapter: run.adapter.clone(),
        settings,
        provenance: run.provenance.clone(),
        checkpoints: store
            .checkpoints(id)?
            .into_iter()
            .map(|c| CheckpointRow {
                present: store.checkpoint_path(&c.path).is_dir(),
                checkpoint: c,
            })
            .collect(),
        metrics: store.metric_names(id)?,
        row: row(store, Listed { run, summary })?,
    })
}

/// A setting whose value differs between two runs.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub key: String,
    pub a: Option<Value>,
    pub b: Option<Value>,
    pub a_layer: Option<String>,
    pub b_layer: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiffPage {
    pub a: String,
    pub b: String,
    pub differences: Vec<Difference>,
    /// How many settings were compared.
    pub compared: usize,
}

/// The settings that differ between two runs ([`differing_settings`], as `xp compare` lists
/// them), with the layer each value came from.
pub fn diff(store: &Store, a: i64, b: i64) -> Answer<DiffPage> {
    let (ra, rb) = (store.run_by_id(a)?, store.run_by_id(b)?);
    let (differing, compared) = differing_settings(&[&ra, &rb]);
    let differences = differing
        .into_iter()
        .map(|mut d| Difference {
            a_layer: ra.provenance.origins.get(&d.setting).cloned(),
            b_layer: rb.provenance.origins.get(&d.setting).cloned(),
            b: d.values.pop().flatten(),
            a: d.values.pop().flatten(),
            key: d.setting,
        })
        .collect();
    Ok(DiffPage {
        a: ra.name(),
        b: rb.name(),
        differences,
        compared,
    })
}

/// The metrics the given runs recorded.
pub fn metrics(store: &Store, runs: &[i64]) -> Answer<Vec<String>> {
    Ok(store.metric_names_of(runs)?)
}

/// Parses `1,2,run-3` into run ids.
pub fn parse_runs(text: &str) -> Answer<Vec<i64>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            store::runs::parse_run_ref(s).ok_or_else(|| {
                ApiError::bad("runs", format!("`{s}` is not a run (use run-N or N)"))
            })
        })
        .collect()
}

/// What moved since the last poll of a live view.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    states: HashMap<i64, (Status, u64)>,
    taken: bool,
}

impl Snapshot {
    /// Runs whose state or step changed since the last call (every run on the first), and
    /// whether a run appeared.
    pub fn changes(&mut self, store: &Store) -> Answer<(Vec<i64>, bool)> {
        let now = store.progress()?;
        let first = !std::mem::replace(&mut self.taken, true);
        let mut changed = Vec::new();
        let mut appeared = false;
        for &(id, status, step) in &now {
            match self.states.insert(id, (status, step)) {
                Some(old) if old == (status, step) => {}
                Some(_) => changed.push(id),
                None => {
                    appeared |= !first;
                    if !first {
                        changed.push(id);
                    }
                }
            }
        }
        Ok((changed, appeared))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_lists_parse_or_name_the_bad_one() {
        assert_eq!(parse_runs("1, run-2,,3").unwrap(), vec![1, 2, 3]);
        let e = parse_runs("1,x").unwrap_err();
        assert_eq!(e.message, "`x` is not a run (use run-N or N)");
        assert_eq!(e.param, Some("runs"));
    }

    #[test]
    fn group_keys_are_settings_experiment_or_status() {
        assert!(check_group_key("model.ffn.unit").is_ok());
        assert!(check_group_key("experiment").is_ok());
        let e = check_group_key("model.ffn.unti").unwrap_err();
        assert_eq!(
            e.message,
            "cannot group by `model.ffn.unti`; did you mean `model.ffn.unit`?"
        );
    }
}
