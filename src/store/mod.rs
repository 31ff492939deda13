//! The run store: `runs.db` (SQLite, WAL) holding experiments, runs, metrics and checkpoints.

pub mod migrations;
pub mod query;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;

use crate::sweep::Plan;

/// Marks a SQLite file as xp's (`PRAGMA application_id`): ASCII "xpdb".
const APPLICATION_ID: i64 = 0x7870_6462;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open run store {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("no run store at {path}: run `xp run MANIFEST` first, or point --db / XP_DB at one")]
    Missing { path: PathBuf },
    #[error(
        "{path} was written by a newer xp (store schema version {found}; this xp knows up to {known}); \
         it was not modified: upgrade xp to use it"
    )]
    Newer {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("{path} is not an xp run store (it has tables but no xp marker); it was not modified")]
    Foreign { path: PathBuf },
    #[error("no run `{0}` in the store (runs are named run-N; `xp runs` lists them)")]
    NoRun(String),
    #[error("run store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl Error {
    /// Whether the user can fix this by changing what they typed or which file they named.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::Missing { .. } | Error::Newer { .. } | Error::Foreign { .. } | Error::NoRun(_)
        )
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Run states.
pub const STATUSES: [&str; 6] = [
    "queued",
    "running",
    "completed",
    "failed",
    "cancelled",
    "interrupted",
];

/// An open store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// Where a queued run came from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Provenance {
    pub host: Option<String>,
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
    pub xp_version: String,
}

impl Provenance {
    /// This host, and the git state of the folder holding the manifest.
    pub fn detect(manifest_dir: &Path) -> Provenance {
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(manifest_dir)
                .stderr(std::process::Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let git_commit = git(&["rev-parse", "HEAD"]);
        let git_dirty = git_commit
            .as_ref()
            .and_then(|_| git(&["status", "--porcelain"]))
            .map(|s| !s.is_empty());
        Provenance {
            host: host(),
            git_commit,
            git_dirty,
            xp_version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// What enqueueing did with one planned run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Enqueued {
    pub plan_index: usize,
    pub run_id: i64,
    /// `new`, or the status the existing run with the same key already has.
    pub outcome: String,
}

/// A run as stored.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub experiment: String,
    pub key: String,
    pub plan_index: i64,
    pub status: String,
    pub step: i64,
    pub steps_total: i64,
    pub manifest_path: String,
    pub manifest_digest: String,
    pub spec: Value,
    pub provenance: Value,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub host: Option<String>,
    pub pid: Option<i64>,
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
    pub backend: Option<String>,
    pub adapter: Option<String>,
    pub error: Option<String>,
    /// How many times the run was started (claimed); more than one means it was resumed.
    pub attempts: i64,
    pub heartbeat_at: Option<String>,
    pub claimed_at: Option<String>,
}

impl RunRow {
    pub fn name(&self) -> String {
        format!("run-{}", self.id)
    }
}

/// Filters for listing runs.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub experiment: Option<String>,
    pub status: Option<String>,
    /// Newest first (by finish, then id) instead of by id.
    pub newest_first: bool,
    pub limit: Option<usize>,
}

/// Per experiment, how many runs are in each state.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentCounts {
    pub experiment: String,
    pub description: String,
    pub counts: Vec<(String, i64)>,
}

/// This machine's name as runs record it.
pub fn host() -> Option<String> {
    sysinfo::System::host_name().ok()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Accepts `run-12`, `12`, or a prefix of a content key.
pub fn parse_run_ref(text: &str) -> Option<i64> {
    text.strip_prefix("run-").unwrap_or(text).parse().ok()
}

impl Store {
    /// Opens (creating it if needed) the store at `path`, migrating it to this xp's schema.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path).map_err(|source| Error::Open {
            path: path.into(),
            source,
        })?;
        Self::prepare(conn, path, true)
    }

    /// Opens an existing store without creating one.
    pub fn open_existing(path: &Path) -> Result<Store> {
        if !path.exists() {
            return Err(Error::Missing { path: path.into() });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags).map_err(|source| Error::Open {
            path: path.into(),
            source,
        })?;
        Self::prepare(conn, path, false)
    }

    fn prepare(conn: Connection, path: &Path, create: bool) -> Result<Store> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // Read the version before anything writes: a newer store must stay untouched.
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
        let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        if app != APPLICATION_ID && (app != 0 || tables > 0) {
            return Err(Error::Foreign { path: path.into() });
        }
        if version > migrations::LATEST {
            return Err(Error::Newer {
                path: path.into(),
                found: version,
                known: migrations::LATEST,
            });
        }
        // Switching an existing WAL store to WAL again is skipped: readers never ask for a lock.
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            conn.pragma_update(None, "journal_mode", "WAL")?;
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut store = Store {
            conn,
            path: path.into(),
        };
        if version < migrations::LATEST || (create && tables == 0) {
            store.migrate(version)?;
        }
        Ok(store)
    }

    fn migrate(&mut self, from: i64) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Another process may have migrated while we waited for the write lock.
        let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, sql) in migrations::MIGRATIONS
            .iter()
            .enumerate()
            .skip(current.max(from) as usize)
        {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.commit()?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Queues every run of the plan that the store does not already have (by content key),
    /// in one transaction, so re-running a manifest is idempotent.
    pub fn enqueue(
        &mut self,
        plan: &Plan,
        provenance: &Provenance,
        origins: &[Value],
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
        let mut out = Vec::with_capacity(plan.runs.len());
        {
            let mut find = tx.prepare_cached("SELECT id, status FROM runs WHERE key = ?1")?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO runs (experiment_id, key, plan_index, manifest_path, manifest_digest, spec, provenance,
                                   status, steps_total, created_at, host, git_commit, git_dirty)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8, ?9, ?10, ?11, ?12)",
            )?;
            let mut link = tx.prepare_cached(
                "INSERT INTO experiment_runs (experiment_id, run_id, plan_index) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO UPDATE SET plan_index = excluded.plan_index",
            )?;
            for (i, run) in plan.runs.iter().enumerate() {
                let existing: Option<(i64, String)> = find
                    .query_row([&run.key], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let (run_id, outcome) = match existing {
                    Some((id, status)) => (id, status),
                    None => {
                        let spec = serde_json::to_string(run).expect("run specs serialize");
                        let mut prov =
                            serde_json::to_value(provenance).expect("provenance serializes");
                        if let (Some(map), Some(o)) = (prov.as_object_mut(), origins.get(i)) {
                            map.insert("origins".into(), o.clone());
                        }
                        insert.execute(params![
                            experiment_id,
                            run.key,
                            run.index as i64,
                            manifest_path,
                            plan.manifest_digest,
                            spec,
                            prov.to_string(),
                            run.config.train.steps as i64,
                            stamp,
                            provenance.host,
                            provenance.git_commit,
                            provenance.git_dirty,
                        ])?;
                        (tx.last_insert_rowid(), "new".to_string())
                    }
                };
                link.execute(params![experiment_id, run_id, run.index as i64])?;
                out.push(Enqueued {
                    plan_index: run.index,
                    run_id,
                    outcome,
                });
            }
        }
        tx.commit()?;
        Ok(out)
    }

    pub(crate) const RUN_COLUMNS: &'static str = "r.id, e.name, r.key, r.plan_index, r.status, r.step, r.steps_total,
        r.manifest_path, r.manifest_digest, r.spec, r.provenance, r.created_at, r.started_at, r.finished_at,
        r.host, r.pid, r.git_commit, r.git_dirty, r.backend, r.adapter, r.error, r.attempts, r.heartbeat_at,
        r.claimed_at";

    pub(crate) fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
        let json = |i: usize| -> rusqlite::Result<Value> {
            let text: String = r.get(i)?;
            Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
        };
        Ok(RunRow {
            id: r.get(0)?,
            experiment: r.get(1)?,
            key: r.get(2)?,
            plan_index: r.get(3)?,
            status: r.get(4)?,
            step: r.get(5)?,
            steps_total: r.get(6)?,
            manifest_path: r.get(7)?,
            manifest_digest: r.get(8)?,
            spec: json(9)?,
            provenance: json(10)?,
            created_at: r.get(11)?,
            started_at: r.get(12)?,
            finished_at: r.get(13)?,
            host: r.get(14)?,
            pid: r.get(15)?,
            git_commit: r.get(16)?,
            git_dirty: r.get(17)?,
            backend: r.get(18)?,
            adapter: r.get(19)?,
            error: r.get(20)?,
            attempts: r.get(21)?,
            heartbeat_at: r.get(22)?,
            claimed_at: r.get(23)?,
        })
    }

    /// Runs matching the filter, oldest first.
    pub fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>> {
        let sql = format!(
            "SELECT {} FROM runs r JOIN experiments e ON e.id = r.experiment_id
             WHERE (?1 IS NULL OR r.id IN (SELECT run_id FROM experiment_runs er JOIN experiments x
                                           ON x.id = er.experiment_id WHERE x.name = ?1))
               AND (?2 IS NULL OR r.status = ?2)
             ORDER BY {} LIMIT ?3",
            Self::RUN_COLUMNS,
            if filter.newest_first {
                "coalesce(r.finished_at, r.heartbeat_at, r.created_at) DESC, r.id DESC"
            } else {
                "r.id"
            }
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let limit = filter.limit.map_or(-1, |l| l as i64);
        let rows = stmt.query_map(params![filter.experiment, filter.status, limit], Self::row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// One run, by `run-N`, `N` or a unique prefix (at least 6 characters) of its content key.
    pub fn run(&self, reference: &str) -> Result<RunRow> {
        let sql = format!(
            "SELECT {} FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE r.id = ?1",
            Self::RUN_COLUMNS
        );
        if let Some(id) = parse_run_ref(reference) {
            return self
                .conn
                .query_row(&sql, [id], Self::row)
                .optional()?
                .ok_or_else(|| Error::NoRun(reference.into()));
        }
        if reference.len() >= 6 && reference.chars().all(|c| c.is_ascii_hexdigit()) {
            let sql = format!(
                "SELECT {} FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE r.key LIKE ?1 || '%' LIMIT 2",
                Self::RUN_COLUMNS
            );
            let mut stmt = self.conn.prepare(&sql)?;
            let rows: Vec<RunRow> = stmt
                .query_map([reference.to_lowercase()], Self::row)?
                .collect::<rusqlite::Result<_>>()?;
            if rows.len() == 1 {
                return Ok(rows.into_iter().next().expect("one row"));
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
            e.counts
                .sort_by_key(|(s, _)| STATUSES.iter().position(|x| x == s));
        }
        Ok(out)
    }
}

/// A run listed by a query, with its summary if it has one.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub run: RunRow,
    pub summary: Option<SummaryRow>,
}

impl Store {
    /// Runs matching the filter and an optional compiled `--where` condition, in the order of
    /// an optional compiled `--sort` key (then by id).
    pub fn query(
        &self,
        filter: &RunFilter,
        condition: Option<&query::Sql>,
        order: Option<&query::Sql>,
    ) -> Result<Vec<Listed>> {
        let mut sql = format!(
            "SELECT {}, s.run_id, s.best_val_loss, s.final_val_loss, s.final_train_loss,
                    s.median_tokens_per_s, s.wall_s, s.params
             FROM runs r JOIN experiments e ON e.id = r.experiment_id
             LEFT JOIN summaries s ON s.run_id = r.id
             WHERE (? IS NULL OR r.id IN (SELECT run_id FROM experiment_runs er JOIN experiments x
                                          ON x.id = er.experiment_id WHERE x.name = ?))
               AND (? IS NULL OR r.status = ?)",
            Self::RUN_COLUMNS
        );
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        let text = |v: &Option<String>| match v {
            Some(s) => rusqlite::types::Value::Text(s.clone()),
            None => rusqlite::types::Value::Null,
        };
        values.extend([text(&filter.experiment), text(&filter.experiment)]);
        values.extend([text(&filter.status), text(&filter.status)]);
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
        let n = Self::RUN_COLUMNS.split(',').count();
        let rows = stmt.query_map(rusqlite::params_from_iter(values), |r| {
            let summary = match r.get::<_, Option<i64>>(n)? {
                Some(_) => Some(SummaryRow {
                    best_val_loss: r.get(n + 1)?,
                    final_val_loss: r.get(n + 2)?,
                    final_train_loss: r.get(n + 3)?,
                    median_tokens_per_s: r.get(n + 4)?,
                    wall_s: r.get(n + 5)?,
                    params: r.get(n + 6)?,
                }),
                None => None,
            };
            Ok(Listed {
                run: Self::row(r)?,
                summary,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Streams the metrics of the given runs, by run, name and step: (run, name, step, value, t_ms).
    pub fn each_metric(
        &self,
        runs: &[i64],
        mut f: impl FnMut(i64, &str, i64, f64, i64) -> std::io::Result<()>,
    ) -> Result<std::io::Result<()>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT n.name, m.step, m.value, m.t_ms FROM metrics m JOIN metric_names n ON n.id = m.name_id
             WHERE m.run_id = ?1 ORDER BY m.name_id, m.step",
        )?;
        for &run in runs {
            let mut rows = stmt.query([run])?;
            while let Some(r) = rows.next()? {
                let name: String = r.get(0)?;
                if let Err(e) = f(run, &name, r.get(1)?, r.get(2)?, r.get(3)?) {
                    return Ok(Err(e));
                }
            }
        }
        Ok(Ok(()))
    }
}

/// A checkpoint as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointRow {
    pub step: i64,
    pub path: String,
    pub bytes: i64,
    pub blake3: String,
    pub val_loss: Option<f64>,
}

/// A run's summary metrics.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SummaryRow {
    pub best_val_loss: Option<f64>,
    pub final_val_loss: Option<f64>,
    pub final_train_loss: Option<f64>,
    pub median_tokens_per_s: Option<f64>,
    pub wall_s: Option<f64>,
    pub params: Option<i64>,
}

impl Store {
    /// Atomically takes the next queued (or interrupted) run of an experiment, in plan order,
    /// and marks it running for this process; `None` when nothing is left.
    pub fn claim_next(&mut self, experiment: &str, host: Option<&str>) -> Result<Option<RunRow>> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let id: Option<i64> = tx
            .query_row(
                "SELECT r.id FROM runs r JOIN experiment_runs er ON er.run_id = r.id
                 JOIN experiments e ON e.id = er.experiment_id
                 WHERE e.name = ?1 AND r.status IN ('queued', 'interrupted')
                 ORDER BY er.plan_index LIMIT 1",
                [experiment],
                |r| r.get(0),
            )
            .optional()?;
        let Some(id) = id else { return Ok(None) };
        Self::mark_claimed(&tx, id, host)?;
        tx.commit()?;
        Ok(Some(self.run(&id.to_string())?))
    }

    fn mark_claimed(tx: &rusqlite::Transaction<'_>, id: i64, host: Option<&str>) -> Result<()> {
        let stamp = now();
        tx.execute(
            "UPDATE runs SET status = 'running', started_at = coalesce(started_at, ?2), heartbeat_at = ?2,
                 claimed_at = ?2, attempts = attempts + 1, pid = ?3, host = ?4, error = NULL,
                 finished_at = NULL
             WHERE id = ?1",
            params![id, stamp, std::process::id() as i64, host],
        )?;
        Ok(())
    }

    /// Atomically takes one particular run (for `xp resume`) if it is queued, interrupted or
    /// failed; `None` when it is in another state by the time the write lock is held.
    pub fn claim(&mut self, id: i64, host: Option<&str>) -> Result<Option<RunRow>> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let status: Option<String> = tx
            .query_row("SELECT status FROM runs WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        if !matches!(status.as_deref(), Some("queued" | "interrupted" | "failed")) {
            return Ok(None);
        }
        Self::mark_claimed(&tx, id, host)?;
        tx.commit()?;
        Ok(Some(self.run(&id.to_string())?))
    }

    /// Runs whose state is `running` (alive or not: the caller judges).
    pub fn running(&self) -> Result<Vec<RunRow>> {
        self.runs(&RunFilter {
            status: Some("running".into()),
            ..RunFilter::default()
        })
    }

    /// Marks a run whose process died as interrupted, unless it changed since it was read
    /// (another process recovered it, or it is alive after all and beat since).
    pub fn recover(&self, run: &RunRow, reason: &str) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE runs SET status = 'interrupted', error = ?2, finished_at = ?3
             WHERE id = ?1 AND status = 'running' AND pid IS ?4 AND heartbeat_at IS ?5",
            params![run.id, reason, now(), run.pid, run.heartbeat_at],
        )?;
        Ok(n == 1)
    }

    /// Marks the runs this process is executing as interrupted (on the way out after a
    /// second Ctrl-C); waits at most two seconds for the write lock.
    pub fn abandon_own_runs(&self, reason: &str) -> Result<usize> {
        self.conn.busy_timeout(std::time::Duration::from_secs(2))?;
        Ok(self.conn.execute(
            "UPDATE runs SET status = 'interrupted', error = ?1, finished_at = ?2
             WHERE status = 'running' AND pid = ?3 AND host IS ?4",
            params![reason, now(), std::process::id() as i64, host()],
        )?)
    }

    /// Puts an experiment's failed runs back in the queue; returns how many.
    pub fn requeue_failed(&self, experiment: &str) -> Result<usize> {
        Ok(self.conn.execute(
            "UPDATE runs SET status = 'queued', finished_at = NULL
             WHERE status = 'failed' AND id IN (SELECT er.run_id FROM experiment_runs er
                 JOIN experiments e ON e.id = er.experiment_id WHERE e.name = ?1)",
            [experiment],
        )?)
    }

    /// Liveness only: the run's process is still there (step progress goes through `heartbeat`).
    pub fn touch(&self, id: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET heartbeat_at = ?2 WHERE id = ?1 AND status = 'running' AND pid = ?3",
            params![id, now(), std::process::id() as i64],
        )?;
        Ok(())
    }

    /// Records the device a run got and what executed it (`provenance.executed`).
    pub fn set_device(
        &self,
        id: i64,
        backend: &str,
        adapter: &str,
        executed: &Value,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET backend = ?2, adapter = ?3,
                 provenance = json_set(provenance, '$.executed', json(?4)) WHERE id = ?1",
            params![id, backend, adapter, executed.to_string()],
        )?;
        Ok(())
    }

    /// Marks progress and liveness.
    pub fn heartbeat(&self, id: i64, step: u64) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET step = ?2, heartbeat_at = ?3 WHERE id = ?1",
            params![id, step as i64, now()],
        )?;
        Ok(())
    }

    /// Ends a run in `status` (completed, failed, interrupted, cancelled), with its error.
    pub fn finish(&self, id: i64, status: &str, error: Option<&str>) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET status = ?2, error = ?3, finished_at = ?4, heartbeat_at = ?4 WHERE id = ?1",
            params![id, status, error, now()],
        )?;
        Ok(())
    }

    pub fn set_summary(&self, id: i64, s: &SummaryRow) -> Result<()> {
        self.conn.execute(
            "INSERT INTO summaries (run_id, best_val_loss, final_val_loss, final_train_loss, median_tokens_per_s, wall_s, params)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(run_id) DO UPDATE SET best_val_loss = excluded.best_val_loss,
                final_val_loss = excluded.final_val_loss, final_train_loss = excluded.final_train_loss,
                median_tokens_per_s = excluded.median_tokens_per_s, wall_s = excluded.wall_s, params = excluded.params",
            params![id, s.best_val_loss, s.final_val_loss, s.final_train_loss, s.median_tokens_per_s, s.wall_s, s.params],
        )?;
        Ok(())
    }

    pub fn summary(&self, id: i64) -> Result<Option<SummaryRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT best_val_loss, final_val_loss, final_train_loss, median_tokens_per_s, wall_s, params
                 FROM summaries WHERE run_id = ?1",
                [id],
                |r| {
                    Ok(SummaryRow {
                        best_val_loss: r.get(0)?,
                        final_val_loss: r.get(1)?,
                        final_train_loss: r.get(2)?,
                        median_tokens_per_s: r.get(3)?,
                        wall_s: r.get(4)?,
                        params: r.get(5)?,
                    })
                },
            )
            .optional()?)
    }

    /// Registers a checkpoint and applies retention: the `keep_last` newest and, if asked, the
    /// best by validation loss survive. Returns the folders of the ones dropped, to delete.
    pub fn add_checkpoint(
        &mut self,
        id: i64,
        c: &CheckpointRow,
        keep_last: usize,
        keep_best: bool,
    ) -> Result<Vec<PathBuf>> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO checkpoints (run_id, step, path, bytes, blake3, val_loss, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(run_id, step) DO UPDATE SET path = excluded.path, bytes = excluded.bytes,
                blake3 = excluded.blake3, val_loss = coalesce(excluded.val_loss, val_loss)",
            params![id, c.step, c.path, c.bytes, c.blake3, c.val_loss, now()],
        )?;
        let all: Vec<(i64, String, Option<f64>)> = {
            let mut stmt = tx.prepare(
                "SELECT step, path, val_loss FROM checkpoints WHERE run_id = ?1 ORDER BY step DESC",
            )?;
            stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        let best = all
            .iter()
            .filter_map(|(step, _, v)| v.map(|v| (*step, v)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(step, _)| step);
        let mut dropped = Vec::new();
        for (i, (step, path, _)) in all.iter().enumerate() {
            if i < keep_last.max(1) || (keep_best && Some(*step) == best) {
                continue;
            }
            tx.execute(
                "DELETE FROM checkpoints WHERE run_id = ?1 AND step = ?2",
                params![id, step],
            )?;
            dropped.push(PathBuf::from(path));
        }
        tx.commit()?;
        Ok(dropped)
    }

    /// A run's checkpoints, oldest first.
    pub fn checkpoints(&self, id: i64) -> Result<Vec<CheckpointRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT step, path, bytes, blake3, val_loss FROM checkpoints WHERE run_id = ?1 ORDER BY step",
        )?;
        let rows = stmt.query_map([id], |r| {
            Ok(CheckpointRow {
                step: r.get(0)?,
                path: r.get(1)?,
                bytes: r.get(2)?,
                blake3: r.get(3)?,
                val_loss: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Removes a run's metrics after `step` (they are recorded again when it resumes from there).
    pub fn truncate_metrics(&self, id: i64, step: i64) -> Result<usize> {
        Ok(self.conn.execute(
            "DELETE FROM metrics WHERE run_id = ?1 AND step > ?2",
            params![id, step],
        )?)
    }

    /// The last recorded value of a metric: (step, value).
    pub fn latest_metric(&self, id: i64, name: &str) -> Result<Option<(i64, f64)>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT m.step, m.value FROM metrics m
                 WHERE m.run_id = ?1 AND m.name_id = (SELECT id FROM metric_names WHERE name = ?2)
                 ORDER BY m.step DESC LIMIT 1",
            )?
            .query_row(params![id, name], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// The names of the metrics a run recorded.
    pub fn metric_names(&self, id: i64) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT n.name FROM metric_names n WHERE EXISTS
                 (SELECT 1 FROM metrics m WHERE m.run_id = ?1 AND m.name_id = n.id) ORDER BY n.name",
        )?;
        let rows = stmt.query_map([id], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One metric's values for a run: (step, value), by step.
    pub fn metric(&self, id: i64, name: &str) -> Result<Vec<(i64, f64)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT step, value FROM metrics
             WHERE run_id = ?1 AND name_id = (SELECT id FROM metric_names WHERE name = ?2)
             ORDER BY step",
        )?;
        let rows = stmt.query_map(params![id, name], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// Rows per multi-row INSERT: one statement per 128 rows costs a fraction of 128 statements.
const ROWS_PER_INSERT: usize = 128;

fn write_metric_rows(
    t: &rusqlite::Transaction<'_>,
    rows: &[(i64, i64, i64, f64, i64)],
) -> Result<u64> {
    let sql = |n: usize| {
        let mut sql = String::from(
            "INSERT OR REPLACE INTO metrics (run_id, name_id, step, value, t_ms) VALUES ",
        );
        sql.push_str(&vec!["(?, ?, ?, ?, ?)"; n].join(", "));
        sql
    };
    let mut chunks = rows.chunks_exact(ROWS_PER_INSERT);
    if chunks.len() > 0 {
        let mut many = t.prepare_cached(&sql(ROWS_PER_INSERT))?;
        for chunk in &mut chunks {
            let mut i = 1;
            for &(run, name, step, value, t_ms) in chunk {
                many.raw_bind_parameter(i, run)?;
                many.raw_bind_parameter(i + 1, name)?;
                many.raw_bind_parameter(i + 2, step)?;
                many.raw_bind_parameter(i + 3, value)?;
                many.raw_bind_parameter(i + 4, t_ms)?;
                i += 5;
            }
            many.raw_execute()?;
        }
    }
    let mut one = t.prepare_cached(&sql(1))?;
    for &(run, name, step, value, t_ms) in chunks.remainder() {
        one.execute(params![run, name, step, value, t_ms])?;
    }
    Ok(rows.len() as u64)
}

/// Writes metric rows in batched transactions on its own connection and thread, so that the
/// training loop never waits for the disk.
/// One run's metric rows: (step, name, value, t_ms).
pub type MetricRows = Vec<(u64, String, f64, u64)>;

pub struct MetricWriter {
    tx: Option<std::sync::mpsc::Sender<(i64, MetricRows)>>,
    handle: Option<std::thread::JoinHandle<Result<u64>>>,
}

impl MetricWriter {
    pub fn open(path: &Path) -> Result<MetricWriter> {
        let store = Store::open_existing(path)?;
        let (tx, rx) = std::sync::mpsc::channel::<(i64, MetricRows)>();
        let handle = std::thread::spawn(move || -> Result<u64> {
            let mut conn = store.conn;
            let mut names: std::collections::HashMap<String, i64> =
                std::collections::HashMap::new();
            let mut written = 0;
            while let Ok(first) = rx.recv() {
                // Whatever else is waiting goes into the same transaction.
                let mut batches = vec![first];
                batches.extend(rx.try_iter());
                let t = conn.transaction()?;
                let mut resolved: Vec<(i64, i64, i64, f64, i64)> = Vec::new();
                for (run, rows) in batches {
                    for (step, name, value, t_ms) in rows {
                        let name_id = match names.get(&name) {
                            Some(id) => *id,
                            None => {
                                t.execute(
                                    "INSERT OR IGNORE INTO metric_names (name) VALUES (?1)",
                                    [&name],
                                )?;
                                let id: i64 = t.query_row(
                                    "SELECT id FROM metric_names WHERE name = ?1",
                                    [&name],
                                    |r| r.get(0),
                                )?;
                                names.insert(name, id);
                                id
                            }
                        };
                        resolved.push((run, name_id, step as i64, value, t_ms as i64));
                    }
                }
                // In key order, each insert lands beside the previous one in the b-tree.
                resolved.sort_unstable_by_key(|r| (r.0, r.1, r.2));
                written += write_metric_rows(&t, &resolved)?;
                t.commit()?;
            }
            Ok(written)
        });
        Ok(MetricWriter {
            tx: Some(tx),
            handle: Some(handle),
        })
    }

    pub fn send(&self, run: i64, rows: MetricRows) {
        if let Some(tx) = &self.tx {
            let _ = tx.send((run, rows));
        }
    }

    /// Waits until every row sent so far is committed; returns how many were written.
    pub fn close(mut self) -> Result<u64> {
        self.tx.take();
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::Sqlite(rusqlite::Error::ExecuteReturnedResults)),
            None => Ok(0),
        }
    }
}

impl Drop for MetricWriter {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_newer_and_foreign_databases_without_touching_them() {
        let dir = tempfile::tempdir().unwrap();
        let newer = dir.path().join("newer.db");
        {
            let c = Connection::open(&newer).unwrap();
            c.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            c.pragma_update(None, "user_version", migrations::LATEST + 1)
                .unwrap();
        }
        let before = std::fs::read(&newer).unwrap();
        assert!(matches!(Store::open(&newer), Err(Error::Newer { .. })));
        assert_eq!(std::fs::read(&newer).unwrap(), before);
        assert!(!dir.path().join("newer.db-wal").exists());

        let foreign = dir.path().join("foreign.db");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        assert!(matches!(Store::open(&foreign), Err(Error::Foreign { .. })));
    }

    #[test]
    fn migrates_once_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.db");
        Store::open(&path).unwrap();
        let store = Store::open(&path).unwrap();
        let v: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, migrations::LATEST);
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert!(matches!(
            Store::open_existing(&dir.path().join("none.db")),
            Err(Error::Missing { .. })
        ));
    }
}
