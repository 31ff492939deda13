//! Executors: several workers on this machine (`--jobs`), and sweeps on a real one-node Slurm
//! (`scripts/slurm-local.sh start`; CI starts it). Every run trains a tiny model on the CPU.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{
    CommandOutput, conn, integrity, metric_steps, metric_values, output, run_row,
    status_and_attempts, statuses, tiny_manifest, xp,
};

/// `xp run MANIFEST --jobs 2` with `steps` steps a run.
fn run_jobs_2(db: &Path, manifest: &Path, steps: u64) -> CommandOutput {
    output(xp(db).arg("run").arg(manifest).args([
        "--jobs",
        "2",
        "--set",
        &format!("train.steps={steps}"),
    ]))
}

#[test]
fn jobs_2_trains_each_run_once_two_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(dir.path(), "[sweep.grid]\n\"train.seed\" = [1, 2, 3, 4]\n");
    let db = dir.path().join("runs.db");
    let run = run_jobs_2(&db, &manifest, 200).success();
    assert!(
        run.stdout.contains("4 completed, 0 failed, 0 interrupted"),
        "{run}"
    );
    let runs: Vec<(i64, String, i64, String, String, i64)> = conn(&db)
        .prepare("SELECT id, status, attempts, started_at, finished_at, pid FROM runs ORDER BY id")
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(runs.len(), 4);
    for (id, status, attempts, ..) in &runs {
        assert_eq!((status.as_str(), *attempts), ("completed", 1), "run-{id}");
        assert_eq!(
            metric_steps(&db, *id, "val_loss"),
            [20, 40, 60, 80, 100, 120, 140, 160, 180, 200]
        );
    }
    // Two worker processes, and runs that overlapped in time.
    let mut pids: Vec<i64> = runs.iter().map(|r| r.5).collect();
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 2, "{runs:?}");
    let overlapping = runs
        .iter()
        .enumerate()
        .any(|(i, a)| runs[i + 1..].iter().any(|b| a.3 < b.4 && b.3 < a.4));
    assert!(overlapping, "{runs:?}");
    // Each run records which worker trained it, and where.
    let executed: String = conn(&db)
        .query_row(
            "SELECT json_extract(provenance, '$.executed.backend') FROM runs WHERE id = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(executed, "flex");
    assert_eq!(integrity(&db), "ok");
}

#[test]
fn jobs_start_the_other_workers_after_the_first_ones_first_step() {
    // Run 1 is made slow to step (a batch of 96 at dim 256): the second worker may only start,
    // and so claim run 2, once the first has trained that step and filled the caches.
    let dir = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(
        dir.path(),
        "[sweep.zip]\n\"train.batch_size\" = [96, 8]\n\"model.dim\" = [256, 32]\n",
    );
    let db = dir.path().join("runs.db");
    run_jobs_2(&db, &manifest, 6).success();
    let first_step_ms = metric_values(&db, 1, "step_ms")[0];
    assert_eq!(first_step_ms.0, 1);
    let (pids, gap_ms): (i64, f64) = conn(&db)
        .query_row(
            "SELECT COUNT(DISTINCT pid),
                    (julianday(MAX(started_at)) - julianday(MIN(started_at))) * 86400000.0
             FROM runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(pids, 2, "each worker trained one run");
    assert!(
        gap_ms >= first_step_ms.1,
        "run 2 started {gap_ms:.0} ms after run 1, whose first step took {:.0} ms",
        first_step_ms.1
    );
}

/// Whether a Slurm controller answers here with a node that takes jobs; without one the test
/// says it is skipped, except under `CI=true` (CI starts one). Other tests' tasks pass the node
/// through `completing` and back while this one starts, so a controller that answers is
/// polled for a minute before its node counts as unusable.
fn slurm_available(test: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let Ok(out) = Command::new("sinfo").args(["-h", "-o", "%T"]).output() else {
            break "sinfo is not installed".to_string();
        };
        let states = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            break String::from_utf8_lossy(&out.stderr).trim().to_string();
        }
        if states.lines().any(takes_jobs) {
            return true;
        }
        if Instant::now() > deadline {
            break format!("node states after 60 s: {}", states.trim());
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "{test}: no Slurm node takes jobs ({seen}), and CI=true: CI starts one with scripts/slurm-local.sh start"
    );
    eprintln!(
        "{test}: skipped: no Slurm here ({seen}; `sudo scripts/slurm-local.sh start` runs one)"
    );
    false
}

/// Whether a node in this `sinfo %T` state runs a job submitted now or once its running tasks
/// end; `*` marks a node that does not respond.
fn takes_jobs(state: &str) -> bool {
    let state = state.trim();
    let base = state
        .split(['+', '*', '~', '#', '%', '$', '@', '^', '!', '-'])
        .next();
    !state.contains('*')
        && matches!(
            base,
            Some("idle" | "mixed" | "allocated" | "completing" | "planned")
        )
}

/// Polls `xp status` (which syncs) until every run of the store has ended, or panics.
fn wait_until_ended(db: &Path, runs: usize) {
    let start = Instant::now();
    loop {
        let status = output(xp(db).arg("status")).success();
        let ended = statuses(db)
            .iter()
            .filter(|s| matches!(s.as_str(), "completed" | "failed" | "cancelled"))
            .count();
        if ended == runs {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "runs did not end:\n{status}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Syncs until `condition` (SQL over `runs` and `checkpoints`) holds, or panics.
fn wait_for(db: &Path, condition: &str) {
    let start = Instant::now();
    loop {
        output(xp(db).arg("sync")).success();
        let holds: bool = conn(db)
            .query_row(&format!("SELECT {condition}"), [], |r| r.get(0))
            .unwrap();
        if holds {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "never: {condition}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Trains `manifest` here (`here.db` in `dir`: the reference), then submits it to Slurm
/// (`runs.db`, with `shared/` as the executor's folder); returns both stores, the folder and
/// the submission's output.
fn here_then_on_slurm(
    dir: &Path,
    manifest: &Path,
    sets: &[&str],
) -> (PathBuf, PathBuf, PathBuf, CommandOutput) {
    let here = dir.join("here.db");
    output(xp(&here).arg("run").arg(manifest).args(sets)).success();
    let (db, shared) = (dir.join("runs.db"), dir.join("shared"));
    let run = output(
        xp(&db)
            .arg("run")
            .arg(manifest)
            .args(slurm_sets(&shared))
            .args(sets),
    )
    .success();
    (here, db, shared, run)
}

fn slurm_sets(shared: &Path) -> Vec<String> {
    [
        "--executor".to_string(),
        "slurm".to_string(),
        "--set".to_string(),
        format!("executor.dir={}", shared.display()),
        "--set".to_string(),
        "executor.max_parallel=2".to_string(),
        "--set".to_string(),
        "executor.cpus_per_task=1".to_string(),
    ]
    .to_vec()
}

/// Every row of the store that a sync could touch, in a stable order.
fn dump(db: &Path) -> Vec<String> {
    let c = conn(db);
    let mut out = Vec::new();
    for table in [
        "SELECT * FROM runs ORDER BY id",
        "SELECT * FROM metrics ORDER BY run_id, name_id, step",
        "SELECT * FROM checkpoints ORDER BY run_id, step",
        "SELECT * FROM summaries ORDER BY run_id",
        "SELECT * FROM journal_offsets ORDER BY path",
    ] {
        let mut stmt = c.prepare(table).unwrap();
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                let cells: Vec<String> = (0..n)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect();
                Ok(cells.join("|"))
            })
            .unwrap();
        out.extend(rows.map(Result::unwrap));
    }
    out
}

#[test]
fn a_sweep_on_slurm_runs_at_most_two_tasks_at_once_and_syncs_every_step_once() {
    if !slurm_available("a_sweep_on_slurm_runs_at_most_two_tasks_at_once_and_syncs_every_step_once")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(dir.path(), "[sweep.grid]\n\"train.seed\" = [1, 2, 3]\n");
    let db = dir.path().join("runs.db");
    let shared = dir.path().join("shared");
    let run = output(
        xp(&db)
            .arg("run")
            .arg(&manifest)
            .args(slurm_sets(&shared))
            .args(["--set", "train.steps=100"]),
    )
    .success();
    assert!(run.stdout.contains("3 runs submitted to Slurm"), "{run}");
    let script = std::fs::read_dir(shared.join("jobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "sbatch"))
        .unwrap();
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("#SBATCH --array=0-2%2\n"), "{text}");
    wait_until_ended(&db, 3);
    let expected: Vec<i64> = std::iter::once(1).chain((1..=20).map(|i| i * 5)).collect();
    for id in 1..=3 {
        assert_eq!(
            status_and_attempts(&db, id),
            ("completed".into(), 1),
            "run-{id}"
        );
        assert_eq!(metric_steps(&db, id, "train_loss"), expected, "run-{id}");
    }
    // At most two at once: no moment has three runs between their start and their end.
    let spans: Vec<(String, String)> = conn(&db)
        .prepare("SELECT started_at, finished_at FROM runs")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (start, _) in &spans {
        let at_once = spans
            .iter()
            .filter(|(s, f)| s <= start && start < f)
            .count();
        assert!(at_once <= 2, "{spans:?}");
    }
    let compare = output(xp(&db).args(["compare", "run-1", "run-2", "run-3"])).success();
    assert!(compare.stdout.contains("train.seed"), "{compare}");
    // A second sync changes nothing.
    let before = dump(&db);
    let sync = output(xp(&db).arg("sync")).success();
    assert_eq!(sync.stdout, "merged 0 journal entries\n", "{sync}");
    assert_eq!(dump(&db), before);
    assert_eq!(integrity(&db), "ok");
}

/// The train losses of run-1 trained here without interruption, for the same manifest.
fn local_losses(manifest: &Path, sets: &[&str]) -> Vec<(i64, f64)> {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("runs.db");
    output(xp(&db).arg("run").arg(manifest).args(sets)).success();
    metric_values(&db, 1, "train_loss")
}

const LONG: [&str; 6] = [
    "--set",
    "train.steps=600",
    "--set",
    "train.checkpoint_every=100",
    "--set",
    "train.eval_every=200",
];

fn log_of(shared: &Path) -> PathBuf {
    std::fs::read_dir(shared.join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap()
}

#[test]
fn the_time_limit_signal_requeues_a_task_that_resumes_with_the_same_losses() {
    if !slurm_available("the_time_limit_signal_requeues_a_task_that_resumes_with_the_same_losses") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(dir.path(), "");
    let expected = local_losses(&manifest, &LONG);
    let db = dir.path().join("runs.db");
    let shared = dir.path().join("shared");
    output(
        xp(&db)
            .arg("run")
            .arg(&manifest)
            .args(slurm_sets(&shared))
            .args(LONG),
    )
    .success();
    wait_for(&db, "(SELECT count(*) FROM checkpoints) >= 1");
    let task: String = conn(&db)
        .query_row("SELECT slurm_job || '_' || slurm_task FROM runs", [], |r| {
            r.get(0)
        })
        .unwrap();
    // What Slurm sends before a time limit (or a preemption), to the batch shell: xp.
    output(Command::new("scancel").args(["--batch", "--signal=USR1", &task])).success();
    wait_until_ended(&db, 1);
    let row = run_row(&db, 1);
    assert_eq!(
        (row.status.as_str(), row.attempts, row.step),
        ("completed", 2, 600),
        "{row:?}"
    );
    assert_eq!(metric_values(&db, 1, "train_loss"), expected);
    let log = std::fs::read_to_string(log_of(&shared)).unwrap();
    assert!(log.contains(&format!("{task} attempt 1 on flex")), "{log}");
    assert!(
        log.contains(&format!("{task} attempt 2 on flex (CPU")),
        "{log}"
    );
    assert!(log.contains(", resuming from step "), "{log}");
    assert_eq!(integrity(&db), "ok");
}

#[test]
fn a_killed_task_fails_after_sync_and_retry_failed_resubmits_it() {
    if !slurm_available("a_killed_task_fails_after_sync_and_retry_failed_resubmits_it") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(dir.path(), "");
    let db = dir.path().join("runs.db");
    let shared = dir.path().join("shared");
    let run = |extra: &[&str]| {
        output(
            xp(&db)
                .arg("run")
                .arg(&manifest)
                .args(slurm_sets(&shared))
                .args(LONG)
                .args(extra),
        )
    };
    run(&[]).success();
    wait_for(
        &db,
        "(SELECT count(*) FROM runs WHERE status = 'running') = 1",
    );
    let task: String = conn(&db)
        .query_row("SELECT slurm_job || '_' || slurm_task FROM runs", [], |r| {
            r.get(0)
        })
        .unwrap();
    output(Command::new("scancel").args(["-s", "KILL", &task])).success();
    wait_until_ended(&db, 1);
    let row = run_row(&db, 1);
    assert_eq!(row.status, "failed", "{row:?}");
    let error = row.error.expect("a failed run records why");
    // Slurm may send SIGTERM before the KILL, which the task records as an interruption;
    // either way it left the queue without an outcome or a requeue.
    let ended = format!("Slurm task {task} ended without recording how (");
    let interrupted =
        format!("Slurm task {task} was interrupted and left the queue without being requeued (");
    assert!(
        error.starts_with(&ended) || error.starts_with(&interrupted),
        "{error}"
    );
    let retry = run(&["--retry-failed"]).success();
    assert!(retry.stdout.contains("re-queued 1 failed run"), "{retry}");
    assert!(retry.stdout.contains("1 run submitted to Slurm"), "{retry}");
    wait_until_ended(&db, 1);
    assert_eq!(status_and_attempts(&db, 1), ("completed".into(), 2));
    assert_eq!(metric_steps(&db, 1, "train_loss").last(), Some(&600));
}

#[test]
fn cancel_stops_the_slurm_tasks_and_records_the_runs_as_cancelled() {
    if !slurm_available("cancel_stops_the_slurm_tasks_and_records_the_runs_as_cancelled") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(dir.path(), "[sweep.grid]\n\"train.seed\" = [1, 2]\n");
    let db = dir.path().join("runs.db");
    let shared = dir.path().join("shared");
    output(
        xp(&db)
            .arg("run")
            .arg(&manifest)
            .args(slurm_sets(&shared))
            .args(["--set", "train.steps=20000"]),
    )
    .success();
    let cancel = output(xp(&db).args(["cancel", "--experiment", "tiny"])).success();
    assert_eq!(
        cancel.stdout, "run-1: cancelled\nrun-2: cancelled\n",
        "{cancel}"
    );
    let jobs: String = conn(&db)
        .query_row("SELECT slurm_job FROM runs WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    let start = Instant::now();
    loop {
        // Its exit code is not checked (as before): squeue may refuse the id of a job that
        // Slurm no longer knows, which has left the queue too.
        let q = output(Command::new("squeue").args(["-h", "-j", &jobs]));
        if q.stdout.trim().is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "tasks still queued:\n{q}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    output(xp(&db).arg("status")).success();
    assert_eq!(statuses(&db), ["cancelled", "cancelled"]);
}

#[test]
fn an_early_stopped_sweep_on_slurm_pauses_in_journals_and_sync_submits_what_is_promoted() {
    if !slurm_available(
        "an_early_stopped_sweep_on_slurm_pauses_in_journals_and_sync_submits_what_is_promoted",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(
        dir.path(),
        "[experiment]\nname = \"es\"\n[sweep.grid]\n\"train.lr\" = [1e-3, 3e-3, 1e-2]\n\
         [sweep.early_stop]\nmethod = \"asha\"\nmin_steps = 10\neta = 3\nmin_peers = 1\n",
    );
    let sets = [
        "--set",
        "train.eval_every=10",
        "--set",
        "train.checkpoint_every=0",
    ];
    // The same search trained here, for its decisions.
    let (here, db, shared, run) = here_then_on_slurm(dir.path(), &manifest, &sets);
    assert!(run.stdout.contains("3 runs submitted to Slurm"), "{run}");
    // Rungs at steps 10 and 30 of 40: each task pauses into its journal; each sync takes the
    // decisions and submits the promoted run again, until one completes and two are stopped.
    let start = Instant::now();
    let mut resubmitted = 0;
    loop {
        let sync = output(xp(&db).arg("sync")).success();
        resubmitted += sync.stdout.matches("promoted by early stopping").count();
        let states = statuses(&db);
        if states.iter().all(|s| s == "completed" || s == "stopped") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "{states:?}\n{sync}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(resubmitted, 2, "promoted at step 10, then at step 30");
    let mut states = statuses(&db);
    states.sort();
    assert_eq!(states, ["completed", "stopped", "stopped"]);
    let log = |db: &Path| {
        output(xp(db).args(["export", "decisions", "es"]))
            .success()
            .stdout
    };
    assert_eq!(
        log(&db),
        log(&here),
        "Slurm decided otherwise than one process"
    );
    // The stopped runs' checkpoints in the shared folder are gone; the winner's are kept.
    let left: i64 = conn(&db)
        .query_row(
            "SELECT count(*) FROM checkpoints c JOIN runs r ON r.id = c.run_id
             WHERE r.status = 'stopped'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
    let on_disk = |status: &str| -> usize {
        let ids: Vec<i64> = conn(&db)
            .prepare("SELECT id FROM runs WHERE status = ?1")
            .unwrap()
            .query_map([status], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        std::fs::read_dir(shared.join("runs"))
            .unwrap()
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                ids.iter().any(|id| name.starts_with(&format!("run-{id}-")))
            })
            .flat_map(|e| {
                std::fs::read_dir(e.path().join("checkpoints"))
                    .into_iter()
                    .flatten()
            })
            .count()
    };
    assert_eq!(on_disk("stopped"), 0, "stopped runs' checkpoint folders");
    assert!(on_disk("completed") > 0, "the winner keeps its checkpoints");
    assert_eq!(integrity(&db), "ok");
}

#[test]
fn a_search_on_slurm_chooses_its_trials_as_journals_are_merged_and_sync_submits_them() {
    if !slurm_available("a_search_on_slurm_chooses_its_trials_as_journals_are_merged") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(
        dir.path(),
        "[experiment]\nname = \"tpe\"\n[sweep.search]\nmethod = \"tpe\"\ntrials = 5\n\
         startup_trials = 2\nlag = 0\n[sweep.search.space]\n\
         \"train.lr\" = { loguniform = [3e-4, 3e-2] }\n\
         \"model.ffn.unit\" = { choice = [\"glu\", \"gelu\"] }\n",
    );
    let sets = ["--set", "train.steps=10", "--set", "train.eval_every=5"];
    // The same search trained here, for its trials.
    let (here, db, _, run) = here_then_on_slurm(dir.path(), &manifest, &sets);
    assert!(run.stdout.contains("2 runs submitted to Slurm"), "{run}");
    // With lag 0 each later trial waits for every one before it: each sync that merges the
    // last one's journal chooses the next, and submits it.
    let start = Instant::now();
    let mut submitted = 0;
    loop {
        let sync = output(xp(&db).arg("sync")).success();
        submitted += sync.stdout.matches("chosen by a search").count();
        let states = statuses(&db);
        if states.len() == 5 && states.iter().all(|s| s == "completed") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "{states:?}\n{sync}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(submitted, 3, "trials 2, 3 and 4, one at a time");
    let log = |db: &Path| {
        output(xp(db).args(["export", "decisions", "tpe"]))
            .success()
            .stdout
    };
    assert_eq!(
        log(&db),
        log(&here),
        "Slurm chose otherwise than one process"
    );
}
