//! The run store: `runs.db` (SQLite, WAL) holding experiments, runs, metrics and checkpoints.
//!
//! This file opens and migrates a store; the run lifecycle's states are in [`state`] and its
//! transitions in [`queue`], typed reads of runs
//! in [`runs`], metrics (the writer thread and reads) in [`metrics`], checkpoint records and
//! retention in [`checkpoints`], space for the last write on a full disk in [`reserve`],
//! merging the journals of workers that cannot reach the store in [`journal`], and `--where`
//! compilation in [`query`].

pub mod checkpoints;
pub mod decisions;
pub mod journal;
pub mod metrics;
pub mod migrations;
pub mod netfs;
pub mod query;
pub mod queue;
pub mod reserve;
pub mod runs;
pub mod state;
pub mod timings;
pub mod trials;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

pub use checkpoints::Checkpoint;
pub use metrics::{MetricRow, MetricWriter};
pub use reserve::Reserve;
pub use runs::{Enqueued, ExperimentCounts, Listed, Provenance, RunFilter, RunRecord, SlurmTask};
pub use state::{Claimant, Lease, Liveness, Outcome, Recovered, RunState, Status};

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
    #[error(
        "{path} has store schema version {found}, older than this xp's {known}, and this reader \
         does not write: any writing xp command (such as `xp status`) upgrades it"
    )]
    Older {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("{path} is not an xp run store (it has tables but no xp marker); it was not modified")]
    Foreign { path: PathBuf },
    #[error("{path} is not a SQLite database, so not an xp run store; it was not modified")]
    NotADatabase { path: PathBuf },
    #[error(
        "{path} has store schema version {found}, which no xp writes (versions run from 0 to \
         {known}); it was not modified"
    )]
    BadVersion {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "{path} is on {fs}, a network filesystem: SQLite's write-ahead log and locks do not \
         work there, so runs.db must be on a local disk (keep the store local and point \
         `executor.dir` at the shared folder)"
    )]
    NetworkFilesystem { path: PathBuf, fs: &'static str },
    #[error("no run `{0}` in the store (runs are named run-N; `xp runs` lists them)")]
    NoRun(String),
    #[error("run-{run}: its stored spec cannot be read ({message}); it was written by another xp")]
    UnreadableSpec { run: i64, message: String },
    #[error(
        "run-{run} is no longer held by this process (it is {now}): another process recovered \
         or claimed it, so this process's result was not recorded"
    )]
    LostClaim { run: i64, now: String },
    #[error(
        "cannot keep {needed} in reserve beside the run store: writing {} failed ({source}){}. \
         Without the reserve, a run that fills the disk would die with its end recorded \
         nowhere, so no run was started: free at least that much there",
        path.display(),
        free.as_ref().map(|f| format!(", and the disk has {f} free")).unwrap_or_default()
    )]
    NoReserve {
        path: PathBuf,
        /// The reserve's size, and the room left, as people read sizes.
        needed: String,
        free: Option<String>,
        source: std::io::Error,
    },
    #[error(
        "experiment {experiment} is a search with other settings or runs ({change}): its \
         decisions hold for the runs it has, so nothing was queued. Give the experiment another \
         name to start a new search, or restore the manifest"
    )]
    SearchChanged { experiment: String, change: String },
    #[error(
        "experiment {experiment} stops runs early with train.steps = {was}; the manifest now asks \
         for {now}. An early-stopped sweep does not grow its budget in place: each run's \
         learning rate decays (cosine) over train.steps, so a run paused at a rung of the \
         {was}-step schedule is not a run of the {now}-step one, and promoting it would mix \
         the two. Nothing was queued: give the experiment another name to search with {now} \
         steps"
    )]
    BudgetChanged {
        experiment: String,
        was: u64,
        now: u64,
    },
    /// Something the store holds that this xp cannot read.
    #[error("{0}")]
    Unreadable(String),
    #[error("run store error: {}", describe(.0))]
    Sqlite(#[from] rusqlite::Error),
}

impl Error {
    /// Whether the user can fix this by changing what they typed or which file they named.
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Missing { .. }
            | Error::Newer { .. }
            | Error::Foreign { .. }
            | Error::NotADatabase { .. }
            | Error::BadVersion { .. }
            | Error::Older { .. }
            | Error::NetworkFilesystem { .. }
            | Error::SearchChanged { .. }
            | Error::BudgetChanged { .. }
            | Error::NoRun(_) => true,
            // The path names a folder, or a file this user cannot open.
            Error::Open { source, .. } => {
                source.sqlite_error_code() == Some(rusqlite::ErrorCode::CannotOpen)
            }
            _ => false,
        }
    }

    /// Whether this is SQLite saying the disk is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::Sqlite(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// A short, plain cause for a SQLite error: "disk full" rather than SQLite's wording.
pub fn describe(e: &rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => "disk full".into(),
        Some(rusqlite::ErrorCode::ReadOnly) => "the store is read-only".into(),
        Some(rusqlite::ErrorCode::SystemIoFailure) => format!("I/O error ({e})"),
        _ => e.to_string(),
    }
}

/// An open store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// The id of the experiment named `name`, if there is one.
pub(crate) fn experiment_id(conn: &Connection, name: &str) -> Result<Option<i64>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row("SELECT id FROM experiments WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?)
}

/// The current time as the store records it (RFC 3339, milliseconds, UTC).
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Store {
    /// Opens (creating it if needed) the store at `path`, migrating it to this xp's schema.
    pub fn open(path: &Path) -> Result<Store> {
        Self::refuse_network(path)?;
        let conn = Connection::open(path).map_err(|source| Error::Open {
            path: path.into(),
            source,
        })?;
        Self::prepare(conn, path, true)
    }

    /// Opens an existing store without creating one.
    pub fn open_existing(path: &Path) -> Result<Store> {
        let conn = Self::connect_existing(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        Self::prepare(conn, path, false)
    }

    /// A connection to a store that must already exist, on a local filesystem, opened with
    /// `access` (read-write or read-only).
    fn connect_existing(path: &Path, access: OpenFlags) -> Result<Connection> {
        if !path.exists() {
            return Err(Error::Missing { path: path.into() });
        }
        Self::refuse_network(path)?;
        let flags = access | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        Connection::open_with_flags(path, flags).map_err(|source| Error::Open {
            path: path.into(),
            source,
        })
    }

    /// Opens an existing store for reading only: SQLite refuses every write on this connection,
    /// and in WAL mode its reads never block a writer. The store must be at this xp's schema
    /// version (a writing command upgrades it).
    pub fn open_read_only(path: &Path) -> Result<Store> {
        let conn = Self::connect_existing(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::NotADatabase) => {
                    Error::NotADatabase { path: path.into() }
                }
                _ => Error::Sqlite(e),
            })?;
        let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
        if app != APPLICATION_ID {
            return Err(Error::Foreign { path: path.into() });
        }
        if version != migrations::LATEST {
            return Err(if version > migrations::LATEST {
                Error::Newer {
                    path: path.into(),
                    found: version,
                    known: migrations::LATEST,
                }
            } else {
                Error::Older {
                    path: path.into(),
                    found: version,
                    known: migrations::LATEST,
                }
            });
        }
        Ok(Store {
            conn,
            path: path.into(),
        })
    }

    /// A number that changes whenever another connection commits to the store: a cheap
    /// "anything new?" for readers that poll.
    pub fn data_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    /// Refuses a store whose folder is on a network filesystem, before SQLite touches it.
    fn refuse_network(path: &Path) -> Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        match netfs::network_filesystem(dir) {
            Some(fs) => Err(Error::NetworkFilesystem {
                path: path.into(),
                fs,
            }),
            None => Ok(()),
        }
    }

    fn prepare(conn: Connection, path: &Path, create: bool) -> Result<Store> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // Read the version before anything writes: a newer store must stay untouched.
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::NotADatabase) => {
                    Error::NotADatabase { path: path.into() }
                }
                _ => Error::Sqlite(e),
            })?;
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
        if version < 0 {
            return Err(Error::BadVersion {
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
        let mut store = Store {
            conn,
            path: path.into(),
        };
        if version < migrations::LATEST || (create && tables == 0) {
            // Off while tables are rebuilt (it cannot change inside a transaction).
            store.conn.pragma_update(None, "foreign_keys", "OFF")?;
            store.migrate(version)?;
        }
        store.conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(store)
    }

    fn migrate(&mut self, from: i64) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Another process may have migrated while we waited for the write lock.
        let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, migration) in migrations::MIGRATIONS
            .iter()
            .enumerate()
            .skip(current.max(from).max(0) as usize)
        {
            match migration {
                migrations::Migration::Sql(sql) => tx.execute_batch(sql)?,
                migrations::Migration::Code(f) => f(&tx)?,
            }
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        // A rebuilt table must still satisfy every reference to it.
        let broken: i64 =
            tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })?;
        if broken > 0 {
            return Err(Error::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
                Some(format!("migration left {broken} broken references")),
            )));
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

    /// The folder holding the database: where the store's own files live.
    pub fn dir(&self) -> &Path {
        self.path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
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

    #[test]
    fn refuses_unusable_versions_and_files_that_are_not_databases_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let negative = dir.path().join("negative.db");
        {
            let c = Connection::open(&negative).unwrap();
            c.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            c.pragma_update(None, "user_version", -3).unwrap();
        }
        let before = std::fs::read(&negative).unwrap();
        let e = Store::open(&negative).err().unwrap();
        assert!(matches!(e, Error::BadVersion { found: -3, .. }), "{e}");
        assert!(e.is_user_error());
        assert_eq!(std::fs::read(&negative).unwrap(), before);

        let text = dir.path().join("notes.db");
        std::fs::write(&text, "these are my notes, not a database\n".repeat(200)).unwrap();
        let before = std::fs::read(&text).unwrap();
        for e in [
            Store::open(&text).err().unwrap(),
            Store::open_existing(&text).err().unwrap(),
        ] {
            assert!(matches!(e, Error::NotADatabase { .. }), "{e}");
            assert!(e.is_user_error());
        }
        assert_eq!(std::fs::read(&text).unwrap(), before);
        assert!(!dir.path().join("notes.db-wal").exists());
    }

    #[test]
    fn a_version_2_store_gets_checkpoint_paths_relative_to_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            // What xp wrote before migration 3, with a checkpoint recorded relative to the
            // working directory of the process that trained it.
            let c = Connection::open(&path).unwrap();
            for m in &migrations::MIGRATIONS[..2] {
                let migrations::Migration::Sql(sql) = m else {
                    panic!("migrations 1 and 2 are SQL")
                };
                c.execute_batch(sql).unwrap();
            }
            c.pragma_update(None, "user_version", 2).unwrap();
            c.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            c.execute_batch(
                "INSERT INTO experiments VALUES (1, 'e', '', 'm.toml', 'd', 't', 't');
                 INSERT INTO runs (id, experiment_id, key, plan_index, manifest_path,
                     manifest_digest, spec, status, steps_total, created_at)
                     VALUES (7, 1, 'k', 0, 'm.toml', 'd', '{}', 'interrupted', 10, 't');
                 INSERT INTO checkpoints (run_id, step, path, bytes, blake3, created_at)
                     VALUES (7, 5, 'sub/checkpoints/run-7/step-0000005', 1, 'h', 't'),
                            (7, 6, '/elsewhere/step-0000006', 1, 'h', 't');",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let paths: Vec<String> = store
            .checkpoints(7)
            .unwrap()
            .into_iter()
            .map(|c| c.path)
            .collect();
        assert_eq!(
            paths,
            ["checkpoints/run-7/step-0000005", "/elsewhere/step-0000006"]
        );
        // Whatever the working directory, the first resolves beside the store.
        assert_eq!(
            store.checkpoint_path(&paths[0]),
            dir.path().join("checkpoints/run-7/step-0000005")
        );
        assert_eq!(
            store.checkpoint_dir(7),
            dir.path().join("old.db-checkpoints").join("run-7")
        );
    }
}
