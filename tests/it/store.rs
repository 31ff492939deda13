//! Queueing into the run store and reading it back, through the real binary.

use xp::store::Outcome;
use xp::summary::Summary;

use crate::common::{CommandOutput, conn, finish_run, output, parse_json, settings, xp};

fn queue(db: &std::path::Path, manifest: &str) -> CommandOutput {
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
    let first = queue(&db, "experiments/gating_sweep.toml").success();
    assert_eq!(
        first
            .stdout
            .lines()
            .filter(|l| l.starts_with("+new"))
            .count(),
        14,
        "{first}"
    );
    let second = queue(&db, "experiments/gating_sweep.toml").success();
    assert_eq!(
        second
            .stdout
            .lines()
            .filter(|l| l.starts_with("=queued"))
            .count(),
        14,
        "{second}"
    );
    assert!(!second.stdout.contains("+new"), "{second}");
    let second = second.stdout;
    settings(Some(dir.path())).bind(|| insta::assert_snapshot!(second));

    // A run that completed is shown as done, never queued again.
    finish_run(
        &db,
        2,
        Outcome::Completed {
            summary: Summary::default(),
        },
    );
    let third = queue(&db, "experiments/gating_sweep.toml").success();
    assert!(
        third.stdout.lines().nth(1).unwrap().starts_with("=done"),
        "{third}"
    );
    let count: i64 = conn(&db)
        .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 14);
}

#[test]
fn status_runs_show_and_compare_read_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("runs.db");
    queue(&db, "experiments/gating_sweep.toml").success();
    queue(&db, "experiments/random_lr.toml").success();
    finish_run(
        &db,
        3,
        Outcome::Failed {
            reason: "diverged at step 40".into(),
        },
    );

    let s = settings(Some(dir.path()));
    let status = output(xp(&db).arg("status")).success().stdout;
    s.bind(|| insta::assert_snapshot!(status));

    let runs =
        output(xp(&db).args(["runs", "--experiment", "random_lr", "--format", "csv"])).success();
    assert_eq!(runs.stdout.lines().count(), 9, "{runs}");
    let failed = output(xp(&db).args(["runs", "--status", "failed"]))
        .success()
        .stdout;
    s.bind(|| insta::assert_snapshot!(failed));

    let compare = output(xp(&db).args(["compare", "run-1", "run-4"]))
        .success()
        .stdout;
    s.bind(|| insta::assert_snapshot!(compare));

    let show = output(xp(&db).args(["show", "run-1"])).success();
    assert!(
        show.stdout.contains("model.ffn.unit") && show.stdout.contains("sweep"),
        "{show}"
    );
    assert!(show.stdout.contains("preset `tiny`"), "{show}");

    let missing = output(xp(&db).args(["show", "run-99"])).code(2);
    assert_eq!(
        missing.stderr,
        "error: no run `run-99` in the store (runs are named run-N; `xp runs` lists them)\n",
        "{missing}"
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
        let stderr = output(xp(&db).args(&args)).code(2).stderr;
        settings(Some(dir.path())).bind(|| insta::assert_snapshot!("newer_store", stderr));
    }
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

#[test]
fn reading_commands_need_an_existing_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("none.db");
    let stderr = output(xp(&db).arg("status")).code(2).stderr;
    settings(Some(dir.path())).bind(|| insta::assert_snapshot!(stderr));
    assert!(!db.exists());
}

#[test]
fn profiles_and_completions() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("runs.db");
    let json = output(xp(&db).args(["profiles", "--format", "json"])).success();
    let v = parse_json(&json);
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
    let table =
        output(xp(&db).args(["profiles", "tests/manifests/valid/everything.toml"])).success();
    assert!(
        table.stdout.contains("lab") && table.stdout.contains("the lab box"),
        "{table}"
    );
    let bash = output(xp(&db).args(["completions", "bash"])).success();
    assert!(bash.stdout.contains("_xp()"), "{bash}");
    output(xp(&db).arg("--version")).success();
    output(xp(&db).arg("frobnicate")).code(2);
}
