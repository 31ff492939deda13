//! Early stopping end to end: the same decisions with one worker, three, and three killed at
//! seeded random moments; a promoted run's losses equal an uninterrupted run's; what the
//! reports say. Tiny models on the CPU backend.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::common::{conn, output, statuses, tiny_manifest, xp};

/// 27 configurations (9 learning rates × 3 units), rungs at steps 3 and 9 of 27.
const SEARCH: &str = "[experiment]\nname = \"search\"\n\
    [sweep.grid]\n\"train.lr\" = [4e-4, 7e-4, 1e-3, 2e-3, 3e-3, 5e-3, 8e-3, 1.2e-2, 2e-2]\n\
    \"model.ffn.unit\" = [\"glu\", \"swish\", \"gelu\"]\n\
    [sweep.early_stop]\nmethod = \"asha\"\nmin_steps = 3\neta = 3\n";

/// Two runs, rungs at steps 3 and 9 of 27.
const PAIR: &str = "[experiment]\nname = \"pair\"\n[sweep.grid]\n\"train.lr\" = [1e-3, 3e-3]\n\
    [sweep.early_stop]\nmethod = \"asha\"\nmin_steps = 3\neta = 3\n";

pub(crate) const SETS: [&str; 14] = [
    "--set",
    "train.steps=27",
    "--set",
    "train.eval_every=3",
    "--set",
    "train.log_every=3",
    "--set",
    "train.checkpoint_every=0",
    "--set",
    "train.warmup_steps=2",
    "--set",
    "train.min_lr=1e-5",
    "--set",
    "train.eval_batches=2",
];

/// Metrics that measure the machine rather than the training.
pub(crate) const TIMINGS: [&str; 4] = ["tokens_per_s", "step_ms", "rss_mb", "device_peak_mb"];

fn search(dir: &Path) -> (PathBuf, PathBuf) {
    (tiny_manifest(dir, SEARCH), dir.join("runs.db"))
}

/// The decision log as `xp export decisions` writes it.
fn log(db: &Path) -> String {
    log_of(db, "search")
}

fn log_of(db: &Path, experiment: &str) -> String {
    output(xp(db).args(["export", "decisions", experiment]))
        .success()
        .stdout
}

/// One recorded value: (run, metric, step, the value's bits).
pub(crate) type Value = (i64, String, i64, u64);

/// Every recorded training value of every run.
pub(crate) fn recorded(db: &Path) -> Vec<Value> {
    let c = conn(db);
    let mut stmt = c
        .prepare(
            "SELECT m.run_id, n.name, m.step, m.value FROM metrics m
             JOIN metric_names n ON n.id = m.name_id ORDER BY 1, 2, 3",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, f64>(3)?.to_bits(),
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .filter(|(_, name, _, _)| !TIMINGS.contains(&name.as_str()))
    .collect()
}

/// The rows of `got` and `want` that differ (at most ten of each), for a readable failure.
pub(crate) fn differences(got: &[Value], want: &[Value]) -> [Vec<(i64, String, i64, f64)>; 2] {
    let only = |a: &[Value], b: &[Value]| {
        let b: std::collections::HashSet<_> = b.iter().collect();
        a.iter()
            .filter(|r| !b.contains(r))
            .take(10)
            .map(|(run, n, s, v)| (*run, n.clone(), *s, f64::from_bits(*v)))
            .collect::<Vec<_>>()
    };
    [only(got, want), only(want, got)]
}

/// The pids of the processes training runs now (the workers).
fn training_pids(db: &Path) -> Vec<i64> {
    let c = conn(db);
    let mut stmt = c
        .prepare("SELECT pid FROM runs WHERE status = 'running' AND pid IS NOT NULL")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Waits until no process has `db` on its command line (workers orphaned by a killed parent
/// finish what they hold and end).
fn wait_for_orphans(db: &Path) {
    let needle = db.to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let alive = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .any(|cmd| String::from_utf8_lossy(&cmd).contains(&needle));
        if !alive {
            return;
        }
        assert!(Instant::now() < deadline, "workers of {needle} still run");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs the manifest at `path` with `--jobs 3`, killing (seeded by `seed`) a worker, then the
/// parent, whose other workers go on as orphans, or (every other round, as a machine going
/// down would) the parent and every worker, for up to eight rounds, `xp run` again each time;
/// then runs it to its end. Returns the kills that landed (at least three).
pub(crate) fn run_with_seeded_kills(
    path: &Path,
    dbk: &Path,
    sets: &[&str],
    seed: u64,
) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut kills = Vec::new();
    for round in 0..8 {
        if dbk.exists()
            && statuses(dbk)
                .iter()
                .all(|s| s == "completed" || s == "stopped")
        {
            break;
        }
        let mut child = xp(dbk)
            .arg("run")
            .arg(path)
            .args(sets)
            .args(["--jobs", "3"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(150..700)));
        if let Some(&pid) = training_pids(dbk).first() {
            kill9(pid);
            kills.push(format!("round {round}: worker {pid}"));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(50..400)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills.push(format!("round {round}: parent"));
        }
        child.wait().unwrap();
        if rng.random_bool(0.5) {
            for pid in training_pids(dbk) {
                kill9(pid);
                kills.push(format!("round {round}: orphan {pid}"));
            }
        }
    }
    assert!(
        kills.len() >= 3,
        "seed {seed}: too few kills landed: {kills:?}"
    );
    output(
        xp(dbk)
            .arg("run")
            .arg(path)
            .args(sets)
            .args(["--jobs", "3"]),
    )
    .success();
    wait_for_orphans(dbk);
    // Orphaned workers may have ended last: one more pass finds nothing left.
    output(xp(dbk).arg("run").arg(path).args(sets)).success();
    kills
}

/// Replaces `from` with `to` in the file at `path`.
fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, text.replace(from, to)).unwrap();
}

fn kill9(pid: i64) {
    // SAFETY: kill(2) on a pid read from the store or a child of this test.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

#[test]
fn decisions_are_the_same_with_one_worker_three_and_three_killed_at_random() {
    let seed: u64 = std::env::var("XP_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(22);
    let one = tempfile::tempdir().unwrap();
    let (path, db1) = search(one.path());
    let first = output(xp(&db1).arg("run").arg(&path).args(SETS)).success();
    let expected_log = log(&db1);
    let expected = recorded(&db1);
    // Every run ended completed or stopped, at least the top ninth completed, and each run
    // has one decision at each rung it reached.
    let states = statuses(&db1);
    let completed = states.iter().filter(|s| *s == "completed").count();
    assert!(completed >= 3, "{states:?}");
    assert_eq!(
        states.iter().filter(|s| *s == "stopped").count(),
        27 - completed
    );
    assert!(
        first.stdout.contains(&format!(
            "experiment search: {completed} completed, 0 failed, 0 interrupted, {} stopped early",
            27 - completed
        )),
        "{first}"
    );
    let promoted_at_3 = expected_log
        .lines()
        .filter(|l| l.starts_with("search,0,0,3,") && l.contains(",promote,"))
        .count();
    assert_eq!(
        expected_log.lines().count(),
        1 + 27 + promoted_at_3,
        "{expected_log}"
    );

    let three = tempfile::tempdir().unwrap();
    let (path, db3) = search(three.path());
    output(
        xp(&db3)
            .arg("run")
            .arg(&path)
            .args(SETS)
            .args(["--jobs", "3"]),
    )
    .success();
    assert_eq!(log(&db3), expected_log, "--jobs 3 decided otherwise");
    let got = recorded(&db3);
    assert!(
        got == expected,
        "--jobs 3 recorded other values (only there, only with --jobs 1): {:?}",
        differences(&got, &expected)
    );

    // Seeded kills: a worker, then the parent, at random moments; `xp run` again each time.
    let killed = tempfile::tempdir().unwrap();
    let (path, dbk) = search(killed.path());
    let kills = run_with_seeded_kills(&path, &dbk, &SETS, seed);
    let after = statuses(&dbk);
    assert!(
        after.iter().all(|s| s == "completed" || s == "stopped"),
        "seed {seed}, {kills:?}: {after:?}"
    );
    assert_eq!(
        log(&dbk),
        expected_log,
        "seed {seed}: after {kills:?} the log differs"
    );
    let got = recorded(&dbk);
    assert!(
        got == expected,
        "seed {seed}: after {kills:?} a recorded value differs, or a step is missing or extra \
         (only after the kills, only without them): {:?}",
        differences(&got, &expected)
    );
    assert_eq!(crate::common::integrity(&dbk), "ok");
}

#[test]
fn a_promoted_run_trains_as_an_uninterrupted_one_and_reports_say_why_runs_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (path, db) = search(dir.path());
    output(xp(&db).arg("run").arg(&path).args(SETS)).success();
    let c = conn(&db);
    let (winner, spec): (i64, String) = c
        .query_row(
            "SELECT id, spec FROM runs WHERE status = 'completed' ORDER BY id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
    let lr = spec["config"]["train"]["lr"].as_f64().unwrap();
    let unit = spec["config"]["model"]["ffn"]["unit"].as_str().unwrap();
    // Paused at steps 3 and 9, promoted twice: the same values as the same run trained in one
    // go, in another experiment of the same store.
    let plain = tiny_manifest(dir.path(), "[experiment]\nname = \"plain\"\n");
    output(
        xp(&db)
            .arg("run")
            .arg(&plain)
            .args(SETS)
            .args(["--set", &format!("train.lr={lr}")])
            .args(["--set", &format!("model.ffn.unit={unit}")]),
    )
    .success();
    let plain_id: i64 = c
        .query_row(
            "SELECT r.id FROM runs r JOIN experiments e ON e.id = r.experiment_id
             WHERE e.name = 'plain'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let of = |run: i64| -> Vec<(String, i64, u64)> {
        recorded(&db)
            .into_iter()
            .filter(|r| r.0 == run)
            .map(|(_, n, s, v)| (n, s, v))
            .collect()
    };
    assert_eq!(of(winner).len(), of(plain_id).len());
    assert_eq!(
        of(winner),
        of(plain_id),
        "run-{winner} against run-{plain_id}"
    );

    // `xp show` of a stopped run says which decision stopped it, and why.
    let stopped: i64 = c
        .query_row(
            "SELECT run_id FROM decisions WHERE action = 'stop' ORDER BY seq LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let show = output(xp(&db).args(["show", &format!("run-{stopped}")])).success();
    assert!(show.stdout.contains("stopped at step"), "{show}");
    assert!(show.stdout.contains("early stopping"), "{show}");
    // `xp compare` says how each ended.
    let compare = output(xp(&db).args([
        "compare",
        &format!("run-{winner}"),
        &format!("run-{stopped}"),
    ]))
    .success();
    assert!(
        compare.stdout.contains(&format!(
            "\nearly stopping\n  run-{winner}: promoted at step 9: "
        )),
        "{compare}"
    );
    assert!(
        compare
            .stdout
            .contains(&format!("  run-{stopped}: stopped at step ")),
        "{compare}"
    );
    // `xp runs --status stopped` lists the stopped runs, and `xp status` the rung table.
    let runs = output(xp(&db).args(["runs", "--status", "stopped", "--format", "json"])).success();
    let listed: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    let stopped_runs = statuses(&db).iter().filter(|s| *s == "stopped").count();
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(stopped_runs),
        "{runs}"
    );
    let status = output(xp(&db).args(["status", "--experiment", "search"])).success();
    assert!(
        status.stdout.contains("search: ASHA on val_loss"),
        "{status}"
    );
    assert!(status.stdout.contains("best so far: run-"), "{status}");
}

#[test]
fn the_log_is_append_only_and_a_search_changed_under_it_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, db) = search(dir.path());
    output(xp(&db).arg("run").arg(&path).args(SETS)).success();
    let c = conn(&db);
    for sql in [
        "UPDATE decisions SET action = 'promote'",
        "DELETE FROM decisions",
    ] {
        let refused = c.execute(sql, []).unwrap_err().to_string();
        assert!(
            refused.contains("the decision log is append-only"),
            "{refused}"
        );
    }
    let before = log(&db);
    // Other settings: refused before anything is queued, the log untouched.
    edit(&path, "eta = 3", "eta = 2");
    let changed = output(xp(&db).arg("run").arg(&path).args(SETS)).code(2);
    assert_eq!(
        changed.stderr,
        "error: experiment search is a search with other settings or runs (ASHA on val_loss \
         (lower is better), eta 3, first rung at step 3, min_peers 3; the manifest now asks for \
         ASHA on val_loss (lower is better), eta 2, first rung at step 3, min_peers 3): its \
         decisions hold for the runs it has, so nothing was queued. Give the experiment another \
         name to start a new search, or restore the manifest\n"
    );
    // A larger budget: refused, saying why (the cosine schedule spans train.steps).
    edit(&path, "eta = 2", "eta = 3");
    let grown = output(
        xp(&db)
            .arg("run")
            .arg(&path)
            .args(SETS)
            .args(["--set", "train.steps=81"]),
    )
    .code(2);
    assert_eq!(
        grown.stderr,
        "error: experiment search stops runs early with train.steps = 27; the manifest now asks \
         for 81. An early-stopped sweep does not grow its budget in place: each run's learning \
         rate decays (cosine) over train.steps, so a run paused at a rung of the 27-step \
         schedule is not a run of the 81-step one, and promoting it would mix the two. Nothing \
         was queued: give the experiment another name to search with 81 steps\n"
    );
    assert_eq!(log(&db), before);
    // The same manifest again: nothing to do, nothing decided anew.
    let again = output(xp(&db).arg("run").arg(&path).args(SETS)).success();
    assert!(again.stdout.contains("0 newly queued"), "{again}");
    assert_eq!(log(&db), before);
}

#[test]
fn a_run_killed_between_its_rung_checkpoint_and_its_pause_pauses_there_again_training_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_manifest(dir.path(), PAIR);
    let db = dir.path().join("runs.db");
    output(xp(&db).arg("run").arg(&path).args(SETS).arg("--queue-only")).success();
    // The run that enters the rung second waits there for the first: train it alone to its
    // rung, then make the store look as if its process died after the checkpoint at step 3
    // was recorded and before the pause was.
    let c = conn(&db);
    let second: i64 = c
        .query_row("SELECT id FROM runs ORDER BY draw DESC LIMIT 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    output(xp(&db).args(["resume", &format!("run-{second}")])).success();
    let (status, step): (String, i64) = c
        .query_row(
            "SELECT status, step FROM runs WHERE id = ?1",
            [second],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((status.as_str(), step), ("paused", 3));
    c.execute(
        "UPDATE runs SET status = 'interrupted', error = 'its process died' WHERE id = ?1",
        [second],
    )
    .unwrap();
    let again = output(xp(&db).arg("run").arg(&path).args(SETS)).success();
    assert!(
        again.stderr.contains("(attempt 2, resuming from step 3)"),
        "{again}"
    );
    assert!(
        again.stderr.contains(&format!(
            "run-{second} paused at step 3 for its early-stopping decision"
        )),
        "{again}"
    );
    // The same values as the same search trained without the crash, each step once.
    let clean = tempfile::tempdir().unwrap();
    let clean_path = tiny_manifest(clean.path(), PAIR);
    let clean_db = clean.path().join("runs.db");
    output(xp(&clean_db).arg("run").arg(&clean_path).args(SETS)).success();
    let got = recorded(&db);
    let want = recorded(&clean_db);
    assert!(got == want, "{:?}", differences(&got, &want));
    assert_eq!(log_of(&db, "pair"), log_of(&clean_db, "pair"));
}
