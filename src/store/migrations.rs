//! Versioned schema migrations of `runs.db`; `PRAGMA user_version` holds the version applied.

/// Migration N (1-based) takes the database from version N-1 to N.
pub const MIGRATIONS: &[&str] = &[
    // 1: experiments, runs, metrics, checkpoints, summaries.
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
    // 2: how often a run was started, and when the current attempt claimed it (a pid that
    // started after that moment is a different process that reused the number).
    r#"
    ALTER TABLE runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN claimed_at TEXT;
    "#,
];

/// The schema version this build of xp writes.
pub const LATEST: i64 = MIGRATIONS.len() as i64;
