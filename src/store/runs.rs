//! Runs as stored: queueing a plan, and typed reads of runs, their provenance and summaries.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::state::{Claimant, Lease, RunState, Status};
use super::{Error, Result, Store, now, query};
use crate::summary::{Summary, SummaryMetric};
use crate::sweep::{Plan, RunSpec};

/// Where a run came from and where it executed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Provenance {
    /// The host that queued the run.
    pub host: Option<String>,
    /// The git commit of the folder holding the manifest, and whether it had changes.
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
    /// The xp that queued the run.
    pub xp_version: String,
    /// Per dotted setting, the layer its value came from ("sweep" for swept ones).
    pub origins: BTreeMap<String, String>,
    /// Where the latest attempt executed.
    pub executed: Option<Executed>,
}

/// What executed a run's latest attempt.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Executed {
    pub xp_version: String,
    pub burn_version: String,
    pub host: Option<String>,
    pub pid: u32,
    pub os: String,
    pub arch: String,
    pub backend: String,
    pub adapter: String,
    /// The attention kernel and why; empty in records of an xp before fused attention.
    pub attention: String,
    pub attempt: i64,
    /// The GPU number the worker was given (`--devices`), where it was given one.
    pub device: Option<u32>,
    /// The Slurm array task (`123_4`) the attempt ran as.
    pub slurm_task: Option<String>,
}

/// What enqueueing did with one planned run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Enqueued {
    pub plan_index: usize,
    pub run_id: i64,
    /// `None` for a new run, else the state of the run with the same key that was there.
    pub existing: Option<Status>,
}

/// Where a run was handed to Slurm: its files' folder, its array job and task, and the
/// state Slurm last reported for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlurmTask {
    pub dir: String,
    pub job: Option<String>,
    pub task: Option<i64>,
    pub state: Option<String>,
}

impl SlurmTask {
    /// `123_4`, as Slurm's commands name an array task.
    pub fn id(&self) -> Option<String> {
        Some(format!("{}_{}", self.job.as_ref()?, self.task?))
    }
}

/// A run as stored.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub experiment: String,
    pub key: String,
    pub plan_index: i64,
    #[serde(flatten)]
    pub state: RunState,
    pub step: u64,
    pub steps_total: u64,
    pub manifest_path: String,
    pub manifest_digest: String,
    pub spec: RunSpec,
    pub provenance: Provenance,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub backend: Option<String>,
    pub adapter: Option<String>,
    /// How many times the run was started (claimed); more than one means it was resumed.
    pub attempts: i64,
    /// Set for a run handed to Slurm.
    pub slurm: Option<SlurmTask>,
    /// The rung it trains to next, in an early-stopped sweep (none: its last step).
    pub until_step: Option<u64>,
}

impl RunRecord {
    pub fn name(&self) -> String {
        format!("run-{}", self.id)
    }

    pub fn status(&self) -> Status {
        self.state.status()
    }
}

/// Where a run stands in time, for estimates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunTime {
    pub status: Status,
    pub step: u64,
    pub steps_total: u64,
    /// Its wall time, once it has a summary.
    pub wall_s: Option<f64>,
}

/// Filters for listing runs.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub experiment: Option<String>,
    pub status: Option<Status>,
    /// Newest first (by finish, then id) instead of by id.
    pub newest_first: bool,
    pub limit: Option<usize>,
}

/// Per experiment, how many runs are in each state.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentCounts {
    pub experiment: String,
    pub description: String,
    pub counts: Vec<(Status, i64)>,
}

/// A run listed by a query, with its summary if it has one.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub run: RunRecord,
    pub summary: Option<Summary>,
}

/// Accepts `run-12` or `12`.
pub fn parse_run_ref(text: &str) -> Option<i64> {
    text.strip_prefix("run-").unwrap_or(text).parse().ok()
}

const RUN_COLUMNS: &str = "r.id, e.name, r.key, r.plan_index, r.status, r.step, r.steps_total,
    r.manifest_path, r.manifest_digest, r.spec, r.provenance, r.created_at, r.started_at,
    r.finished_at, r.host, r.pid, r.backend, r.adapter, r.error, r.attempts, r.heartbeat_at,
    r.claimed_at, r.executor, r.executor_dir, r.slurm_job, r.slurm_task, r.slurm_state,
    r.until_step";
const RUN_COLUMN_COUNT: usize = 28;
const FROM_RUNS: &str = "FROM runs r JOIN experiments e ON e.id = r.experiment_id";

/// A row of [`RUN_COLUMNS`] as a record. A spec or provenance this xp cannot read is an
/// error naming the run, never a silent default.
fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<std::result::Result<RunRecord, Error>> {
    let id: i64 = r.get(0)?;
    let spec_text: String = r.get(9)?;
    let provenance_text: String = r.get(10)?;
    let status: String = r.get(4)?;
    let lease = Lease {
        pid: r.get(15)?,
        host: r.get(14)?,
        claimed_at: r.get(21)?,
        heartbeat_at: r.get(20)?,
    };
    let unreadable = |message: String| Error::UnreadableSpec { run: id, message };
    let state = match RunState::from_columns(&status, r.get(18)?, lease) {
        Ok(s) => s,
        Err(message) => return Ok(Err(unreadable(message))),
    };
    let spec = match serde_json::from_str::<RunSpec>(&spec_text) {
        Ok(s) => s,
        Err(e) => return Ok(Err(unreadable(e.to_string()))),
    };
    let provenance = match serde_json::from_str::<Provenance>(&provenance_text) {
        Ok(p) => p,
        Err(e) => return Ok(Err(unreadable(format!("provenance: {e}")))),
    };
    let count = |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(i)?.max(0) as u64) };
    Ok(Ok(RunRecord {
        id,
        experiment: r.get(1)?,
        key: r.get(2)?,
        plan_index: r.get(3)?,
        state,
        step: count(5)?,
        steps_total: count(6)?,
        manifest_path: r.get(7)?,
        manifest_digest: r.get(8)?,
        spec,
        provenance,
        created_at: r.get(11)?,
        started_at: r.get(12)?,
        finished_at: r.get(13)?,
        backend: r.get(16)?,
        adapter: r.get(17)?,
        attempts: r.get(19)?,
        slurm: match (
            r.get::<_, String>(22)?.as_str(),
            r.get::<_, Option<String>>(23)?,
        ) {
            ("slurm", Some(dir)) => Some(SlurmTask {
                dir,
                job: r.get(24)?,
                task: r.get(25)?,
                state: r.get(26)?,
            }),
            _ => None,
        },
        until_step: r.get::<_, Option<i64>>(27)?.map(|s| s.max(0) as u64),
    }))
}

fn collect<T>(rows: impl Iterator<Item = rusqlite::Result<Result<T>>>) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for row in rows {
        out.push(row??);
    }
    Ok(out)
}

const SUMMARY_COLUMNS: [SummaryMetric; 6] = SummaryMetric::ALL;

/// Reads the summary columns starting at `first`; `None` when the run has no summary row.
fn summary_at(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Option<Summary>> {
    if r.get::<_, Option<i64>>(first)?.is_none() {
        return Ok(None);
    }
    let mut s = Summary::default();
    for (i, m) in SUMMARY_COLUMNS.into_iter().enumerate() {
        s.set(m, r.get::<_, Option<f64>>(first + 1 + i)?);
    }
    Ok(Some(s))
}

fn summary_select() -> String {
    let cols: Vec<String> = SUMMARY_COLUMNS
        .iter()
        .map(|m| format!("s.{}", m.name()))
        .collect();
    format!("s.run_id, {}", cols.join(", "))
}

/// Writes (or replaces) a run's summary.
pub(super) fn write_summary(conn: &rusqlite::Connection, run: i64, s: &Summary) -> Result<()> {
    let names: Vec<&str> = SUMMARY_COLUMNS.iter().map(|m| m.name()).collect();
    let marks: Vec<String> = (2..2 + names.len()).map(|i| format!("?{i}")).collect();
    let updates: Vec<String> = names
        .iter()
        .map(|n| format!("{n} = excluded.{n}"))
        .collect();
    let sql = format!(
        "INSERT INTO summaries (run_id, {}) VALUES (?1, {})
         ON CONFLICT(run_id) DO UPDATE SET {}",
        names.join(", "),
        marks.join(", "),
        updates.join(", ")
    );
    let mut values: Vec<rusqlite::types::Value> = vec![run.into()];
    for m in SUMMARY_COLUMNS {
        values.push(match s.get(m) {
            Some(v) if m.is_count() => rusqlite::types::Value::Integer(v as i64),
            Some(v) => rusqlite::types::Value::Real(v),
            None => rusqlite::types::Value::Null,
        });
    }
    conn.execute(&sql, rusqlite::params_from_iter(values))?;
    Ok(())
}

impl Store {
    /// Queues every run of the plan that the store does not already have (by content key),
    /// in one transaction, so re-running a manifest is idempotent. `origins` gives, per run,
    /// the layer of each setting.
    pub fn enqueue(
        &mut self,
        plan: &Plan,
        provenance: &Provenance,
        origins: &[BTreeMap<String, String>],
    ) -> Result<Vec<Enqueued>> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let stamp = now();
        let manifest_path =
            std::path::absolute(&plan.manifest).unwrap_or_else(|_| plan.manifest.clone());
        let manifest_path = manifest_path.to_string_lossy().into_owned();
        tx.execute(
            "INSERT INTO experiments (name, description, manifest_path, manifest_digest, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT(name) DO UPDATE SET description = excluded.description,
                manifest_path = excluded.manifest_path, manifest_digest = excluded.manifest_digest,
                updated_at = excluded.updated_at",
            params![plan.experiment.name, plan.experiment.description, manifest_path, plan.manifest_digest, stamp],
        )?;
        let experiment_id: i64 = tx.query_row(
            "SELECT id FROM experiments WHERE name = ?1",
            [&plan.experiment.name],
            |r| r.get(0),
        )?;
        // An early-stopped experiment's decisions were taken with its settings: other
        // settings would be another search, whose decisions the log cannot mix with these.
        let early_stop = plan
            .early_stop
            .as_ref()
            .map(|e| serde_json::to_string(e).expect("settings serialize"));
        // The search: its settings and its runs. Once set, another is another experiment.
        let chooser = plan
            .search
            .as_ref()
            .map(|s| serde_json::to_string(s).expect("settings serialize"));
        let search = (early_stop.is_some() || chooser.is_some()).then(|| {
            let mut h = blake3::Hasher::new();
            h.update(early_stop.as_deref().unwrap_or("").as_bytes());
            if let Some(chooser) = &chooser {
                h.update(b"\0search\0");
                h.update(chooser.as_bytes());
            }
            for run in &plan.runs {
                h.update(run.key.as_bytes());
            }
            h.finalize().to_hex().to_string()
        });
        let (was, was_search, was_trials): (Option<String>, Option<String>, Option<String>) = tx
            .query_row(
                "SELECT early_stop, search, trials FROM experiments WHERE id = ?1",
                [experiment_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
        // What the store ran (its search as stored) and what the manifest asks for now.
        let was_search_settings = was_trials
            .as_deref()
            .and_then(|t| serde_json::from_str::<super::trials::Stored>(t).ok())
            .map(|s| s.search);
        let describe = |text: &Option<String>, search: Option<&crate::search::Search>| {
            let stop = text
                .as_deref()
                .and_then(|t| serde_json::from_str::<crate::early_stop::EarlyStop>(t).ok())
                .map_or("no early stopping".to_string(), |e| e.describe());
            match search {
                Some(s) => format!("{}; {stop}", s.describe()),
                None => stop,
            }
        };
        if was_search.is_some() && was_search != search {
            let steps: Vec<i64> = {
                let mut stmt =
                    tx.prepare("SELECT DISTINCT steps_total FROM runs WHERE experiment_id = ?1")?;
                stmt.query_map([experiment_id], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?
            };
            let now_steps = plan.runs.first().map(|r| r.config.train.steps as i64);
            if let ([was_steps], Some(now_steps)) = (&steps[..], now_steps)
                && *was_steps != now_steps
            {
                return Err(Error::BudgetChanged {
                    experiment: plan.experiment.name.clone(),
                    was: *was_steps as u64,
                    now: now_steps as u64,
                });
            }
            let (was, now) = (
                describe(&was, was_search_settings.as_ref()),
                describe(&early_stop, plan.search.as_ref()),
            );
            return Err(Error::SearchChanged {
                experiment: plan.experiment.name.clone(),
                change: if was == now {
                    format!("{now}, over other runs")
                } else {
                    format!("{was}; the manifest now asks for {now}")
                },
            });
        }
        if was_search.is_none() && search.is_some() {
            let runs: i64 = tx.query_row(
                "SELECT count(*) FROM experiment_runs WHERE experiment_id = ?1",
                [experiment_id],
                |r| r.get(0),
            )?;
            if runs > 0 {
                return Err(Error::SearchChanged {
                    experiment: plan.experiment.name.clone(),
                    change: format!(
                        "{} run(s) that do not stop early; the manifest now asks for {}",
                        runs,
                        describe(&early_stop, plan.search.as_ref())
                    ),
                });
            }
        }
        tx.execute(
            "UPDATE experiments SET early_stop = ?2, search = ?3 WHERE id = ?1",
            params![experiment_id, early_stop, search],
        )?;
        let mut out = Vec::with_capacity(plan.runs.len());
        {
            let mut find = tx.prepare_cached("SELECT id, status FROM runs WHERE key = ?1")?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO runs (experiment_id, key, plan_index, manifest_path, manifest_digest, spec, provenance,
                                   status, steps_total, created_at, host, git_commit, git_dirty, until_step,
                                   draw)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            )?;
            let mut link = tx.prepare_cached(
                "INSERT INTO experiment_runs (experiment_id, run_id, plan_index) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO UPDATE SET plan_index = excluded.plan_index",
            )?;
            for (i, run) in plan.runs.iter().enumerate() {
                let found: Option<(i64, String)> = find
                    .query_row([&run.key], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let (run_id, existing) = match found {
                    Some((id, status)) => (id, Status::parse(&status)),
                    None => {
                        let spec = serde_json::to_string(run).expect("run specs serialize");
                        let mut prov = provenance.clone();
                        if let Some(o) = origins.get(i) {
                            prov.origins = o.clone();
                        }
                        let prov = serde_json::to_string(&prov).expect("provenance serializes");
                        insert.execute(params![
                            experiment_id,
                            run.key,
                            run.index as i64,
                            manifest_path,
                            plan.manifest_digest,
                            spec,
                            prov,
                            Status::Queued.name(),
                            run.config.train.steps as i64,
                            stamp,
                            provenance.host,
                            provenance.git_commit,
                            provenance.git_dirty,
                            run.early_stop
                                .as_ref()
                                .and_then(|r| r.steps.first())
                                .map(|&s| s as i64),
                            run.early_stop.as_ref().map(|r| r.draw as i64),
                        ])?;
                        (tx.last_insert_rowid(), None)
                    }
                };
                link.execute(params![experiment_id, run_id, run.index as i64])?;
                out.push(Enqueued {
                    plan_index: run.index,
                    run_id,
                    existing,
                });
            }
        }
        if let (Some(search), Some(first)) = (&plan.search, plan.runs.first()) {
            let stored = super::trials::Stored {
                experiment: plan.experiment.name.clone(),
                search: search.clone(),
                early_stop: plan.early_stop.clone(),
                first: first.clone(),
            };
            let runs: Vec<(u64, i64)> = out
                .iter()
                .map(|e| (e.plan_index as u64, e.run_id))
                .collect();
            super::trials::begin(&tx, experiment_id, &stored, &runs)?;
        }
        tx.commit()?;
        Ok(out)
    }

    /// Runs matching the filter, oldest first (or newest first, as the filter says).
    pub fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} {FROM_RUNS}
             WHERE (?1 IS NULL OR r.id IN (SELECT run_id FROM experiment_runs er JOIN experiments x
                                           ON x.id = er.experiment_id WHERE x.name = ?1))
               AND (?2 IS NULL OR r.status = ?2)
             ORDER BY {} LIMIT ?3",
            if filter.newest_first {
                "coalesce(r.finished_at, r.heartbeat_at, r.created_at) DESC, r.id DESC"
            } else {
                "r.id"
            }
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let limit = filter.limit.map_or(-1, |l| l as i64);
        let status = filter.status.map(Status::name);
        let rows = stmt.query_map(params![filter.experiment, status, limit], record)?;
        collect(rows)
    }

    /// One run by id.
    pub fn run_by_id(&self, id: i64) -> Result<RunRecord> {
        self.conn
            .query_row(
                &format!("SELECT {RUN_COLUMNS} {FROM_RUNS} WHERE r.id = ?1"),
                [id],
                record,
            )
            .optional()?
            .ok_or_else(|| Error::NoRun(format!("run-{id}")))?
    }

    /// One run, by `run-N`, `N` or a unique prefix (at least 6 characters) of its content key.
    pub fn run(&self, reference: &str) -> Result<RunRecord> {
        if let Some(id) = parse_run_ref(reference) {
            return self.run_by_id(id).map_err(|e| match e {
                Error::NoRun(_) => Error::NoRun(reference.into()),
                other => other,
            });
        }
        if reference.len() >= 6 && reference.chars().all(|c| c.is_ascii_hexdigit()) {
            let mut stmt = self.conn.prepare(&format!(
                "SELECT r.id {FROM_RUNS} WHERE r.key LIKE ?1 || '%' LIMIT 2"
            ))?;
            let ids: Vec<i64> = stmt
                .query_map([reference.to_lowercase()], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            if let [id] = ids[..] {
                return self.run_by_id(id);
            }
        }
        Err(Error::NoRun(reference.into()))
    }

    /// Per experiment, the number of runs in each state (zero counts omitted).
    pub fn counts(&self) -> Result<Vec<ExperimentCounts>> {
        let mut stmt = self.conn.prepare(
            "SELECT e.name, e.description, r.status, count(*)
             FROM experiments e JOIN experiment_runs er ON er.experiment_id = e.id JOIN runs r ON r.id = er.run_id
             GROUP BY e.id, r.status ORDER BY e.name",
        )?;
        let mut out: Vec<ExperimentCounts> = Vec::new();
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (name, description, status, count) = row?;
            let Some(status) = Status::parse(&status) else {
                continue;
            };
            match out.last_mut() {
                Some(last) if last.experiment == name => last.counts.push((status, count)),
                _ => out.push(ExperimentCounts {
                    experiment: name,
                    description,
                    counts: vec![(status, count)],
                }),
            }
        }
        for e in &mut out {
            e.counts.sort_by_key(|(s, _)| *s);
        }
        Ok(out)
    }

    /// Records what executes the latest attempt of a run `by` holds.
    pub fn record_executed(&self, id: i64, by: &Claimant, executed: &Executed) -> Result<()> {
        let json = serde_json::to_string(executed).expect("plain data serializes");
        self.conn.execute(
            "UPDATE runs SET backend = ?2, adapter = ?3,
                 provenance = json_set(provenance, '$.executed', json(?4))
             WHERE id = ?1 AND pid = ?5 AND host IS ?6",
            params![
                id,
                executed.backend,
                executed.adapter,
                json,
                by.pid as i64,
                by.host
            ],
        )?;
        Ok(())
    }

    /// Every run's id, state and step: what a live view polls to see what moved.
    pub fn progress(&self) -> Result<Vec<(i64, Status, u64)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, status, step FROM runs ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, status, step) = row?;
            if let Some(status) = Status::parse(&status) {
                out.push((id, status, step.max(0) as u64));
            }
        }
        Ok(out)
    }

    /// What an experiment's remaining-time estimate needs: each run's state, step, total
    /// steps and, for a finished one, its wall time.
    pub fn run_times(&self, experiment: &str) -> Result<Vec<RunTime>> {
        let mut stmt = self.conn.prepare(
            "SELECT r.status, r.step, r.steps_total, s.wall_s FROM runs r
             JOIN experiment_runs er ON er.run_id = r.id
             JOIN experiments e ON e.id = er.experiment_id
             LEFT JOIN summaries s ON s.run_id = r.id
             WHERE e.name = ?1",
        )?;
        let rows = stmt.query_map([experiment], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<f64>>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (status, step, total, wall) = row?;
            if let Some(status) = Status::parse(&status) {
                out.push(RunTime {
                    status,
                    step: step.max(0) as u64,
                    steps_total: total.max(0) as u64,
                    wall_s: wall,
                });
            }
        }
        Ok(out)
    }

    /// A run's summary, if it has one.
    pub fn summary(&self, id: i64) -> Result<Option<Summary>> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {} FROM summaries s WHERE s.run_id = ?1",
                    summary_select()
                ),
                [id],
                |r| summary_at(r, 0),
            )
            .optional()?
            .flatten())
    }

    /// Runs matching the filter and an optional compiled `--where` condition, in the order of
    /// an optional compiled `--sort` key (then by id).
    pub fn query(
        &self,
        filter: &RunFilter,
        condition: Option<&query::Sql>,
        order: Option<&query::Sql>,
    ) -> Result<Vec<Listed>> {
        let mut sql = format!(
            "SELECT {RUN_COLUMNS}, {} {FROM_RUNS}
             LEFT JOIN summaries s ON s.run_id = r.id
             WHERE (? IS NULL OR r.id IN (SELECT run_id FROM experiment_runs er JOIN experiments x
                                          ON x.id = er.experiment_id WHERE x.name = ?))
               AND (? IS NULL OR r.status = ?)",
            summary_select()
        );
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        let text = |v: Option<&str>| match v {
            Some(s) => rusqlite::types::Value::Text(s.to_string()),
            None => rusqlite::types::Value::Null,
        };
        let status = filter.status.map(Status::name);
        values.extend([
            text(filter.experiment.as_deref()),
            text(filter.experiment.as_deref()),
        ]);
        values.extend([text(status), text(status)]);
        if let Some(c) = condition {
            sql.push_str(" AND ");
            sql.push_str(&c.text);
            values.extend(c.params.iter().cloned());
        }
        sql.push_str(" ORDER BY ");
        if let Some(o) = order {
            sql.push_str(&o.text);
            sql.push_str(", ");
            values.extend(o.params.iter().cloned());
        }
        sql.push_str("r.id LIMIT ?");
        values.push(rusqlite::types::Value::Integer(
            filter.limit.map_or(-1, |l| l as i64),
        ));
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(values), |r| {
            let summary = summary_at(r, RUN_COLUMN_COUNT)?;
            Ok(record(r)?.map(|run| Listed { run, summary }))
        })?;
        collect(rows)
    }
}
