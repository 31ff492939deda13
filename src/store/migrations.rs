//! Versioned schema migrations of `runs.db`; `PRAGMA user_version` holds the version applied.

use rusqlite::Transaction;

/// One migration: SQL, or code for what SQL cannot say.
pub enum Migration {
    Sql(&'static str),
    Code(fn(&Transaction<'_>) -> rusqlite::Result<()>),
}

/// Migration N (1-based) takes the database from version N-1 to N.
pub const MIGRATIONS: &[Migration] = &[
    // 1: experiments, runs, metrics, checkpoints, summaries.
    Migration::Sql(
        r#"
    CREATE TABLE experiments (
        id              INTEGER PRIMARY KEY,
        name            TEXT NOT NULL UNIQUE,
        description     TEXT NOT NULL DEFAULT '',
        manifest_path   TEXT NOT NULL,
        manifest_digest TEXT NOT NULL,
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL
    );

    CREATE TABLE runs (
        id              INTEGER PRIMARY KEY,
        experiment_id   INTEGER NOT NULL REFERENCES experiments(id),
        key             TEXT NOT NULL UNIQUE,
        plan_index      INTEGER NOT NULL,
        manifest_path   TEXT NOT NULL,
        manifest_digest TEXT NOT NULL,
        spec            TEXT NOT NULL,
        provenance      TEXT NOT NULL DEFAULT '{}',
        status          TEXT NOT NULL CHECK (status IN
                            ('queued', 'running', 'completed', 'failed', 'cancelled', 'interrupted')),
        steps_total     INTEGER NOT NULL,
        step            INTEGER NOT NULL DEFAULT 0,
        created_at      TEXT NOT NULL,
        started_at      TEXT,
        finished_at     TEXT,
        heartbeat_at    TEXT,
        host            TEXT,
        pid             INTEGER,
        git_commit      TEXT,
        git_dirty       INTEGER,
        backend         TEXT,
        adapter         TEXT,
        error           TEXT
    );
    CREATE INDEX runs_by_status ON runs(status, id);
    CREATE INDEX runs_by_experiment ON runs(experiment_id, plan_index);

    -- A run shared by several experiments (same content key) is listed under each.
    CREATE TABLE experiment_runs (
        experiment_id INTEGER NOT NULL REFERENCES experiments(id),
        run_id        INTEGER NOT NULL REFERENCES runs(id),
        plan_index    INTEGER NOT NULL,
        PRIMARY KEY (experiment_id, run_id)
    ) WITHOUT ROWID;

    CREATE TABLE metric_names (
        id   INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );

    -- Narrow rows clustered by (run, metric, step): a run's curve of one metric is one range
    -- scan, and a row costs about 30 bytes. t_ms is milliseconds since the run started.
    CREATE TABLE metrics (
        run_id  INTEGER NOT NULL,
        name_id INTEGER NOT NULL,
        step    INTEGER NOT NULL,
        value   REAL NOT NULL,
        t_ms    INTEGER NOT NULL,
        PRIMARY KEY (run_id, name_id, step)
    ) WITHOUT ROWID;

    CREATE TABLE checkpoints (
        id         INTEGER PRIMARY KEY,
        run_id     INTEGER NOT NULL REFERENCES runs(id),
        step       INTEGER NOT NULL,
        path       TEXT NOT NULL,
        bytes      INTEGER NOT NULL,
        blake3     TEXT NOT NULL,
        val_loss   REAL,
        created_at TEXT NOT NULL,
        UNIQUE (run_id, step)
    );

    CREATE TABLE summaries (
        run_id           INTEGER PRIMARY KEY REFERENCES runs(id),
        best_val_loss    REAL,
        final_val_loss   REAL,
        final_train_loss REAL,
        median_tokens_per_s REAL,
        wall_s           REAL,
        params           INTEGER
    );
    "#,
    ),
    // 2: how often a run was started, and when the current attempt claimed it (a pid that
    // started after that moment is a different process that reused the number).
    Migration::Sql(
        r#"
    ALTER TABLE runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN claimed_at TEXT;
    "#,
    ),
    // 3: checkpoint paths relative to the store's folder, so that a store and its checkpoints
    // move together and resume works from any working directory.
    Migration::Code(relative_checkpoint_paths),
    // 4: runs that execute elsewhere: submitted to Slurm (job and task, its last state seen)
    // and cancelled. SQLite cannot change a CHECK constraint in place, so the table is rebuilt
    // (foreign keys are off while migrations run); and how far each worker journal is merged.
    Migration::Sql(
        r#"
    CREATE TABLE runs_new (
        id              INTEGER PRIMARY KEY,
        experiment_id   INTEGER NOT NULL REFERENCES experiments(id),
        key             TEXT NOT NULL UNIQUE,
        plan_index      INTEGER NOT NULL,
        manifest_path   TEXT NOT NULL,
        manifest_digest TEXT NOT NULL,
        spec            TEXT NOT NULL,
        provenance      TEXT NOT NULL DEFAULT '{}',
        status          TEXT NOT NULL CHECK (status IN
                            ('queued', 'submitted', 'running', 'completed', 'failed', 'cancelled',
                             'interrupted')),
        steps_total     INTEGER NOT NULL,
        step            INTEGER NOT NULL DEFAULT 0,
        created_at      TEXT NOT NULL,
        started_at      TEXT,
        finished_at     TEXT,
        heartbeat_at    TEXT,
        host            TEXT,
        pid             INTEGER,
        git_commit      TEXT,
        git_dirty       INTEGER,
        backend         TEXT,
        adapter         TEXT,
        error           TEXT,
        attempts        INTEGER NOT NULL DEFAULT 0,
        claimed_at      TEXT,
        executor        TEXT NOT NULL DEFAULT 'local' CHECK (executor IN ('local', 'slurm')),
        executor_dir    TEXT,
        slurm_job       TEXT,
        slurm_task      INTEGER,
        slurm_state     TEXT
    );
    INSERT INTO runs_new (id, experiment_id, key, plan_index, manifest_path, manifest_digest,
        spec, provenance, status, steps_total, step, created_at, started_at, finished_at,
        heartbeat_at, host, pid, git_commit, git_dirty, backend, adapter, error, attempts,
        claimed_at)
    SELECT id, experiment_id, key, plan_index, manifest_path, manifest_digest, spec, provenance,
        status, steps_total, step, created_at, started_at, finished_at, heartbeat_at, host, pid,
        git_commit, git_dirty, backend, adapter, error, attempts, claimed_at FROM runs;
    DROP TABLE runs;
    ALTER TABLE runs_new RENAME TO runs;
    CREATE INDEX runs_by_status ON runs(status, id);
    CREATE INDEX runs_by_experiment ON runs(experiment_id, plan_index);

    CREATE TABLE journal_offsets (
        path   TEXT PRIMARY KEY,
        offset INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    ),
    // 5: early stopping. Runs pause at rungs (`paused`, with `until_step` the step they train
    // to next, and `draw` their place in the search's order) and end `stopped` by a decision;
    // an experiment keeps its early-stopping settings and the digest of its search (settings
    // and runs), and the decisions an append-only log, each with what it saw.
    Migration::Sql(
        r#"
    CREATE TABLE runs_new (
        id              INTEGER PRIMARY KEY,
        experiment_id   INTEGER NOT NULL REFERENCES experiments(id),
        key             TEXT NOT NULL UNIQUE,
        plan_index      INTEGER NOT NULL,
        manifest_path   TEXT NOT NULL,
        manifest_digest TEXT NOT NULL,
        spec            TEXT NOT NULL,
        provenance      TEXT NOT NULL DEFAULT '{}',
        status          TEXT NOT NULL CHECK (status IN
                            ('queued', 'submitted', 'running', 'paused', 'completed', 'stopped',
                             'failed', 'cancelled', 'interrupted')),
        steps_total     INTEGER NOT NULL,
        step            INTEGER NOT NULL DEFAULT 0,
        created_at      TEXT NOT NULL,
        started_at      TEXT,
        finished_at     TEXT,
        heartbeat_at    TEXT,
        host            TEXT,
        pid             INTEGER,
        git_commit      TEXT,
        git_dirty       INTEGER,
        backend         TEXT,
        adapter         TEXT,
        error           TEXT,
        attempts        INTEGER NOT NULL DEFAULT 0,
        claimed_at      TEXT,
        executor        TEXT NOT NULL DEFAULT 'local' CHECK (executor IN ('local', 'slurm')),
        executor_dir    TEXT,
        slurm_job       TEXT,
        slurm_task      INTEGER,
        slurm_state     TEXT,
        until_step      INTEGER,
        draw            INTEGER
    );
    INSERT INTO runs_new (id, experiment_id, key, plan_index, manifest_path, manifest_digest,
        spec, provenance, status, steps_total, step, created_at, started_at, finished_at,
        heartbeat_at, host, pid, git_commit, git_dirty, backend, adapter, error, attempts,
        claimed_at, executor, executor_dir, slurm_job, slurm_task, slurm_state)
    SELECT id, experiment_id, key, plan_index, manifest_path, manifest_digest, spec, provenance,
        status, steps_total, step, created_at, started_at, finished_at, heartbeat_at, host, pid,
        git_commit, git_dirty, backend, adapter, error, attempts, claimed_at, executor,
        executor_dir, slurm_job, slurm_task, slurm_state FROM runs;
    DROP TABLE runs;
    ALTER TABLE runs_new RENAME TO runs;
    CREATE INDEX runs_by_status ON runs(status, id);
    CREATE INDEX runs_by_experiment ON runs(experiment_id, plan_index);

    ALTER TABLE experiments ADD COLUMN early_stop TEXT;
    ALTER TABLE experiments ADD COLUMN search TEXT;

    CREATE TABLE decisions (
        seq           INTEGER PRIMARY KEY,
        experiment_id INTEGER NOT NULL REFERENCES experiments(id),
        run_id        INTEGER NOT NULL REFERENCES runs(id),
        bracket       INTEGER NOT NULL,
        rung          INTEGER NOT NULL,
        step          INTEGER NOT NULL,
        action        TEXT NOT NULL CHECK (action IN ('promote', 'stop')),
        value         REAL NOT NULL,
        rank          INTEGER NOT NULL,
        peers         INTEGER NOT NULL,
        cutoff        REAL,
        reason        TEXT NOT NULL,
        decided_at    TEXT NOT NULL,
        UNIQUE (run_id, rung)
    );
    CREATE INDEX decisions_by_experiment ON decisions(experiment_id, bracket, rung, seq);
    CREATE TRIGGER decisions_are_kept BEFORE UPDATE ON decisions
        BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END;
    CREATE TRIGGER decisions_are_not_deleted BEFORE DELETE ON decisions
        BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END;
    "#,
    ),
    // 6: searches. An experiment keeps its search (settings and first trial's spec, from
    // which later trials are made), and each trial chosen is logged, append-only, with what
    // it saw and how it was chosen.
    Migration::Sql(
        r#"
    ALTER TABLE experiments ADD COLUMN trials TEXT;

    CREATE TABLE trials (
        experiment_id INTEGER NOT NULL REFERENCES experiments(id),
        trial         INTEGER NOT NULL,
        run_id        INTEGER NOT NULL REFERENCES runs(id),
        seen          INTEGER NOT NULL,
        how           TEXT NOT NULL,
        settings      TEXT NOT NULL,
        decided_at    TEXT NOT NULL,
        PRIMARY KEY (experiment_id, trial)
    );
    CREATE TRIGGER trials_are_kept BEFORE UPDATE ON trials
        BEGIN SELECT RAISE(ABORT, 'the trial log is append-only'); END;
    CREATE TRIGGER trials_are_not_deleted BEFORE DELETE ON trials
        BEGIN SELECT RAISE(ABORT, 'the trial log is append-only'); END;
    "#,
    ),
];

/// Earlier stores recorded checkpoints as `<store folder>/checkpoints/run-N/step-S`, spelled
/// relative to the working directory of the process that wrote them (or absolute). That layout
/// is fixed relative to the store, so each such path becomes `checkpoints/run-N/step-S`,
/// relative to the store's folder; the files stay where they are. Other paths are kept.
fn relative_checkpoint_paths(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let rows: Vec<(i64, i64, String)> = {
        let mut stmt = tx.prepare("SELECT id, run_id, path FROM checkpoints")?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    for (id, run, path) in rows {
        if let Some(relative) = legacy_relative(run, &path) {
            tx.execute(
                "UPDATE checkpoints SET path = ?2 WHERE id = ?1",
                rusqlite::params![id, relative],
            )?;
        }
    }
    Ok(())
}

/// `…/checkpoints/run-N/step-S` (N the row's run) → `checkpoints/run-N/step-S`.
fn legacy_relative(run: i64, path: &str) -> Option<String> {
    let parts: Vec<&str> = std::path::Path::new(path)
        .components()
        .filter_map(|c| c.as_os_str().to_str())
        .collect();
    match parts[..] {
        [.., "checkpoints", dir, step]
            if dir == format!("run-{run}") && step.starts_with("step-") =>
        {
            Some(format!("checkpoints/{dir}/{step}"))
        }
        _ => None,
    }
}

/// The schema version this build of xp writes.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_checkpoint_paths_become_relative_to_the_store() {
        for path in [
            "./checkpoints/run-3/step-0000020",
            "checkpoints/run-3/step-0000020",
            "/home/u/exp/checkpoints/run-3/step-0000020",
            "sub/dir/checkpoints/run-3/step-0000020",
        ] {
            assert_eq!(
                legacy_relative(3, path).as_deref(),
                Some("checkpoints/run-3/step-0000020"),
                "{path}"
            );
        }
        assert_eq!(legacy_relative(4, "checkpoints/run-3/step-0000020"), None);
        assert_eq!(legacy_relative(3, "/elsewhere/step-0000020"), None);
    }
}
