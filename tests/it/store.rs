//! Queueing into the run store and reading it back, through the real binary.

use crate::common::{output, settings, xp};

fn queue(db: &std::path::Path, manifest: &str) -> (i32, String, String) {
    output(xp(db).args([
        "run",
        "--queue-only",
        manifest,
        "--set",
        "hardware.profile=apple-m4-24gb",
    ]))
}

#[test]
fn run_queues_each_run_once_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("runs.db");
    let (code, first, stderr) = queue(&db, "experiments/gating_sweep.toml");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(first.lines().filter(|l| l.starts_with("+new")).count(), 14);
    let (code, second, _) = queue(&db, "experiments/gating_sweep.toml");
    assert_eq!(code, 0);
    assert_eq!(
        second.lines().filter(|l| l.starts_with("=queued")).count(),
        14
    );
    assert!(!second.contains("+new"));
    settings(Some(dir.path())).bind(|| insta::assert_snapshot!(second));

    // A run that completed is shown as done, never queued again.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE runs SET status = 'completed' WHERE id = 2", [])
        .unwrap();
    let (_, third, _) = queue(&db, "experiments/gating_sweep.toml");
    assert!(
        third.lines().nth(1).unwrap().starts_with("=done"),
        "{third}"
    );
    let count: i64 = conn
        .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 14);
}

#[test]
fn status_runs_show_and_compare_read_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("runs.db");
    assert_eq!(queue(&db, "experiments/gating_sweep.toml").0, 0);
    assert_eq!(queue(&db, "experiments/random_lr.toml").0, 0);
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE runs SET status = 'failed', error = 'diverged at step 40' WHERE id = 3",
        [],
    )
    .unwrap();

    let s = settings(Some(dir.path()));
    let (code, status, _) = output(xp(&db).arg("status"));
    assert_eq!(code, 0);
    s.bind(|| insta::assert_snapshot!(status));

    let (code, runs, _) =
        output(xp(&db).args(["runs", "--experiment", "random_lr", "--format", "csv"]));
    assert_eq!(code, 0);
    assert_eq!(runs.lines().count(), 9);
    let (_, failed, _) = output(xp(&db).args(["runs", "--status", "failed"]));
    s.bind(|| insta::assert_snapshot!(failed));

    let (code, compare, _) = output(xp(&db).args(["compare", "run-1", "run-4"]));
    assert_eq!(code, 0);
    s.bind(|| insta::assert_snapshot!(compare));

    let (code, show, _) = output(xp(&db).args(["show", "run-1"]));
    assert_eq!(code, 0);
    assert!(
        show.contains("model.ffn.unit") && show.contains("sweep"),
        "{show}"
    );
    assert!(show.contains("preset `tiny`"), "{show}");

    let (code, _, stderr) = output(xp(&db).args(["show", "run-99"]));
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "error: no run `run-99` in the store (runs are named run-N; `xp runs` lists them)\n"
    );
}

#[test]
fn a_store_from_a_newer_xp_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("runs.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.pragma_update(None, "application_id", 0x7870_6462)
            .unwrap();
        c.pragma_update(None, "user_version", 999).unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    for args in [
        vec!["status"],
        vec!["run", "--queue-only", "experiments/gating_sweep.toml"],
    ] {
        let (code, _, stderr) = output(xp(&db).args(&args));
        assert_eq!(code, 2);
        settings(Some(dir.path())).bind(|| insta::assert_snapshot!("newer_store", stderr));
    }
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

#[test]
fn reading_commands_need_an_existing_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("none.db");
    let (code, _, stderr) = output(xp(&db).arg("status"));
    assert_eq!(code, 2);
    settings(Some(dir.path())).bind(|| insta::assert_snapshot!(stderr));
    assert!(!db.exists());
}

#[test]
fn profiles_and_completions() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("runs.db");
    let (code, json, _) = output(xp(&db).args(["profiles", "--format", "json"]));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let names: Vec<&str> = v["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "amd",
            "apple-m4-24gb",
            "apple-m4-32gb",
            "apple-m5-32gb",
            "apple-silicon",
            "cpu",
            "gpu",
            "intel",
            "nvidia",
            "nvidia-h100-80gb",
            "nvidia-h200"
        ]
    );
    let (code, table, _) =
        output(xp(&db).args(["profiles", "tests/manifests/valid/everything.toml"]));
    assert_eq!(code, 0);
    assert!(
        table.contains("lab") && table.contains("the lab box"),
        "{table}"
    );
    let (code, bash, _) = output(xp(&db).args(["completions", "bash"]));
    assert_eq!(code, 0);
    assert!(bash.contains("_xp()"));
    let (code, _, _) = output(xp(&db).arg("--version"));
    assert_eq!(code, 0);
    let (code, _, _) = output(xp(&db).arg("frobnicate"));
    assert_eq!(code, 2);
}
