//! The run store: `runs.db` (SQLite, WAL) holding experiments, runs, metrics and checkpoints.

pub mod migrations;

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
            host: sysinfo::System::host_name().ok(),
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
}

/// Per experiment, how many runs are in each state.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentCounts {
    pub experiment: String,
    pub description: String,
    pub counts: Vec<(String, i64)>,
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
        conn.pragma_update(None, "journal_mode", "WAL")?;
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

    const RUN_COLUMNS: &'static str = "r.id, e.name, r.key, r.plan_index, r.status, r.step, r.steps_total,
        r.manifest_path, r.manifest_digest, r.spec, r.provenance, r.created_at, r.started_at, r.finished_at,
        r.host, r.pid, r.git_commit, r.git_dirty, r.backend, r.adapter, r.error";

    fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
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
        })
    }

    /// Runs matching the filter, oldest first.
    pub fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>> {
        let sql = format!(
            "SELECT {} FROM runs r JOIN experiments e ON e.id = r.experiment_id
             WHERE (?1 IS NULL OR r.id IN (SELECT run_id FROM experiment_runs er JOIN experiments x
                                           ON x.id = er.experiment_id WHERE x.name = ?1))
               AND (?2 IS NULL OR r.status = ?2)
             ORDER BY r.id",
            Self::RUN_COLUMNS
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params![filter.experiment, filter.status], Self::row)?;
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
