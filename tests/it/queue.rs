//! The queue under stress: a process killed mid-run, Ctrl-C, and two processes sharing one
//! store. Every test trains tiny models on the CPU backend.

use std::path::Path;
use std::process::{Child, Stdio};

use crate::common::{
    conn, integrity, metric_steps, output, output_of_child, status_and_attempts, status_of,
    tiny_manifest, wait_for_step, xp,
};

const LONG: &str = "[experiment]\nname = \"long\"\n";
const SETS: [&str; 8] = [
    "--set",
    "train.steps=3000",
    "--set",
    "train.checkpoint_every=250",
    "--set",
    "train.eval_every=500",
    "--set",
    "train.log_every=25",
];

/// Starts `xp run` on a 3000-step run in the background, its output captured.
fn start_long_run(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, Child) {
    let path = tiny_manifest(dir, LONG);
    let db = dir.join("runs.db");
    let child = xp(&db)
        .arg("run")
        .arg(&path)
        .args(SETS)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (path, db, child)
}

#[test]
fn a_killed_run_is_resumed_with_every_step_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let (path, db, mut child) = start_long_run(dir.path());
    let reached = wait_for_step(&db, &mut child, 300);
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    assert!(reached < 3000, "the run finished before it was killed");
    assert_eq!(status_and_attempts(&db, 1), ("running".into(), 1));

    // `xp status` sees at once that the process is gone.
    let status = output(xp(&db).arg("status")).success();
    assert!(status.stdout.contains("orphaned: its process"), "{status}");

    let run = output(xp(&db).arg("run").arg(&path).args(SETS)).success();
    assert!(
        run.stderr
            .contains("run-1 was left running: interrupted at step"),
        "{run}"
    );
    assert!(
        run.stderr.contains("(attempt 2, resuming from step "),
        "{run}"
    );
    assert!(
        run.stdout
            .contains("1 completed, 0 failed, 0 interrupted (1 orphaned"),
        "{run}"
    );
    assert_eq!(status_and_attempts(&db, 1), ("completed".into(), 2));
    assert_eq!(
        metric_steps(&db, 1, "train_loss"),
        std::iter::once(1)
            .chain((1..=120).map(|i| i * 25))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        metric_steps(&db, 1, "val_loss"),
        [500, 1000, 1500, 2000, 2500, 3000]
    );
    assert_eq!(integrity(&db), "ok");
}

#[test]
fn ctrl_c_checkpoints_marks_interrupted_and_exits_130_then_resume_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let (_, db, mut child) = start_long_run(dir.path());
    wait_for_step(&db, &mut child, 300);
    // Readers never wait for the writer, nor see a locked database.
    for args in [
        vec!["status"],
        vec!["runs"],
        vec!["show", "run-1"],
        vec!["compare", "run-1", "run-1"],
        vec!["export", "metrics"],
    ] {
        let read = output(xp(&db).args(&args)).success();
        assert_eq!(read.stderr, "", "{args:?}:\n{read}");
    }
    output(std::process::Command::new("kill").args(["-INT", &child.id().to_string()])).success();
    let out = output_of_child(child, "xp run (the long run)").code(130);
    assert!(out.stderr.contains("stopping after this step"), "{out}");
    assert_eq!(status_of(&db, 1), "interrupted");
    let (stopped_at, newest): (i64, i64) = conn(&db)
        .query_row(
            "SELECT r.step, (SELECT max(step) FROM checkpoints WHERE run_id = 1) FROM runs r WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(stopped_at < 3000);
    assert_eq!(
        newest, stopped_at,
        "a checkpoint is written where the run stopped"
    );

    let resumed = output(xp(&db).args(["resume", "run-1"])).success();
    assert_eq!(resumed.stdout.trim(), "run-1: completed", "{resumed}");
    assert_eq!(metric_steps(&db, 1, "train_loss").len(), 121);
    assert_eq!(integrity(&db), "ok");

    let again = output(xp(&db).args(["resume", "run-1"])).code(2);
    assert_eq!(
        again.stderr, "error: run-1 is already completed; nothing to resume\n",
        "{again}"
    );
}

#[test]
fn two_processes_share_a_queue_without_running_anything_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_manifest(
        dir.path(),
        "[experiment]\nname = \"shared\"\n[sweep.grid]\n\"train.seed\" = [1, 2, 3, 4, 5, 6]\n",
    );
    let db = dir.path().join("runs.db");
    // Create the store first so that both processes find the same schema.
    output(xp(&db).arg("run").arg(&path).arg("--queue-only")).success();
    let spawn = || {
        xp(&db)
            .arg("run")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let mut started: Vec<String> = Vec::new();
    for (child, name) in [(a, "xp run (a)"), (b, "xp run (b)")] {
        let out = output_of_child(child, name).success();
        assert!(!out.stderr.contains("locked"), "{out}");
        started.extend(
            out.stderr
                .lines()
                .filter(|l| l.contains(" started on "))
                .filter_map(|l| l.split_whitespace().nth(1).map(String::from)),
        );
    }
    started.sort();
    assert_eq!(
        started,
        ["run-1", "run-2", "run-3", "run-4", "run-5", "run-6"]
    );
    for id in 1..=6 {
        assert_eq!(status_and_attempts(&db, id), ("completed".into(), 1));
    }
    assert_eq!(integrity(&db), "ok");
}

#[test]
fn fail_fast_stops_the_queue_and_retry_failed_requeues() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_manifest(
        dir.path(),
        "[experiment]\nname = \"flaky\"\n[sweep.grid]\n\"train.seed\" = [1, 2]\n",
    );
    let db = dir.path().join("runs.db");
    // A file where the checkpoint folder goes: the first checkpoint fails, like a full disk.
    std::fs::write(dir.path().join("runs.db-checkpoints"), "in the way").unwrap();
    let run = output(xp(&db).arg("run").arg(&path).arg("--fail-fast")).code(1);
    assert!(
        run.stdout
            .contains("experiment flaky: 0 completed, 1 failed, 0 interrupted"),
        "{run}"
    );
    assert_eq!(status_of(&db, 1), "failed");
    assert_eq!(status_and_attempts(&db, 2), ("queued".into(), 0));

    std::fs::remove_file(dir.path().join("runs.db-checkpoints")).unwrap();
    let retry = output(xp(&db).arg("run").arg(&path).arg("--retry-failed")).success();
    assert!(retry.stdout.contains("re-queued 1 failed run\n"), "{retry}");
    assert!(retry.stdout.contains("2 completed, 0 failed"), "{retry}");
    assert_eq!(status_and_attempts(&db, 1), ("completed".into(), 2));
    assert_eq!(status_and_attempts(&db, 2), ("completed".into(), 1));
}
