//! Searches end to end: TPE's trials, with and without early stopping, the same with one
//! worker, three, and three killed at seeded random moments; what the reports say. Tiny models
//! on the CPU backend.

use std::path::{Path, PathBuf};

use crate::common::{conn, output, statuses, tiny_manifest, xp};
use crate::early_stop::{SETS, differences, recorded, run_with_seeded_kills};

/// 14 trials over lr and unit (4 at random, lag 2), ASHA with rungs at steps 3 and 9 of 27.
const TPE: &str = "[experiment]\nname = \"tpe\"\n\
    [sweep.search]\nmethod = \"tpe\"\ntrials = 14\nstartup_trials = 4\nlag = 2\nseed = 5\n\
    [sweep.search.space]\n\"train.lr\" = { loguniform = [4e-4, 2e-2] }\n\
    \"model.ffn.unit\" = { choice = [\"glu\", \"swish\", \"gelu\"] }\n\
    [sweep.early_stop]\nmethod = \"asha\"\nmin_steps = 3\neta = 3\n";

fn tpe(dir: &Path) -> (PathBuf, PathBuf) {
    (tiny_manifest(dir, TPE), dir.join("runs.db"))
}

/// The search's log (its trials, then its rung decisions) as `xp export decisions` writes it.
fn log(db: &Path, experiment: &str) -> String {
    output(xp(db).args(["export", "decisions", experiment]))
        .success()
        .stdout
}

/// The trial log: (trial, run, ended trials seen).
fn trials(db: &Path) -> Vec<(i64, i64, i64)> {
    let c = conn(db);
    let mut stmt = c
        .prepare("SELECT trial, run_id, seen FROM trials ORDER BY trial")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn trials_are_the_same_with_one_worker_three_and_three_killed_at_random() {
    let seed: u64 = std::env::var("XP_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(23);
    let one = tempfile::tempdir().unwrap();
    let (path, db1) = tpe(one.path());
    let first = output(xp(&db1).arg("run").arg(&path).args(SETS)).success();
    let expected_log = log(&db1, "tpe");
    let expected = recorded(&db1);
    // 14 trials, each a run that completed or was stopped; trial k (from 4 on) saw every
    // trial before k − 2, all of them ended.
    let states = statuses(&db1);
    assert_eq!(states.len(), 14, "{first}");
    assert!(
        states.iter().all(|s| s == "completed" || s == "stopped"),
        "{states:?}"
    );
    let seen: Vec<i64> = trials(&db1).iter().map(|t| t.2).collect();
    assert_eq!(seen, [0, 0, 0, 0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    let trial_rows: Vec<&str> = expected_log
        .lines()
        .filter(|l| l.contains(",trial,"))
        .collect();
    assert_eq!(trial_rows.len(), 14, "{expected_log}");
    assert!(
        trial_rows[3].contains("drawn at random (startup trial 4 of 4)")
            && trial_rows[4].contains(
                "TPE on 2 trials that ended, ranked by how far they got (none reached by 3)"
            )
            && trial_rows[5].contains("TPE on the 3 trials that completed"),
        "{expected_log}"
    );
    assert!(
        first.stdout.contains("experiment tpe: ") && first.stdout.contains(" stopped early"),
        "{first}"
    );

    let three = tempfile::tempdir().unwrap();
    let (path, db3) = tpe(three.path());
    output(
        xp(&db3)
            .arg("run")
            .arg(&path)
            .args(SETS)
            .args(["--jobs", "3"]),
    )
    .success();
    assert_eq!(
        blake3::hash(log(&db3, "tpe").as_bytes()),
        blake3::hash(expected_log.as_bytes()),
        "--jobs 3 chose or decided otherwise:\n{}\n---- --jobs 1:\n{expected_log}",
        log(&db3, "tpe")
    );
    let got = recorded(&db3);
    assert!(
        got == expected,
        "--jobs 3 recorded other values: {:?}",
        differences(&got, &expected)
    );

    let killed = tempfile::tempdir().unwrap();
    let (path, dbk) = tpe(killed.path());
    let kills = run_with_seeded_kills(&path, &dbk, &SETS, seed);
    let after = statuses(&dbk);
    assert!(
        after.len() == 14 && after.iter().all(|s| s == "completed" || s == "stopped"),
        "seed {seed}, {kills:?}: {after:?}"
    );
    assert_eq!(
        log(&dbk, "tpe"),
        expected_log,
        "seed {seed}: after {kills:?} the log differs"
    );
    let got = recorded(&dbk);
    let unique: std::collections::HashSet<(i64, &str, i64)> = got
        .iter()
        .map(|(run, name, step, _)| (*run, name.as_str(), *step))
        .collect();
    assert_eq!(unique.len(), got.len(), "a step recorded twice");
    assert!(
        got == expected,
        "seed {seed}: after {kills:?} other values: {:?}",
        differences(&got, &expected)
    );
}

#[test]
fn a_search_without_early_stopping_trains_every_trial_and_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = TPE.replace("trials = 14", "trials = 7").replace(
        "[sweep.early_stop]\nmethod = \"asha\"\nmin_steps = 3\neta = 3\n",
        "",
    );
    let path = tiny_manifest(dir.path(), &manifest);
    let db = dir.path().join("runs.db");
    let plan = output(xp(&db).arg("plan").arg(&path).args(SETS)).success();
    assert!(
        plan.stdout.contains(
            "search: TPE over train.lr, model.ffn.unit: 7 trials (4 at random first), lag 2, \
             val_loss (min); these 4 trials are chosen before any trial ends, the other 3 as \
             trials end"
        ),
        "{plan}"
    );
    let run = output(xp(&db).arg("run").arg(&path).args(SETS)).success();
    assert!(
        run.stdout
            .contains("experiment tpe: 7 completed, 0 failed, 0 interrupted"),
        "{run}"
    );
    assert_eq!(
        trials(&db).iter().map(|t| t.2).collect::<Vec<_>>(),
        [0, 0, 0, 0, 2, 3, 4]
    );
    // Running it again chooses nothing more and trains nothing.
    let again = output(xp(&db).arg("run").arg(&path).args(SETS)).success();
    assert_eq!(trials(&db).len(), 7, "{again}");
    assert_eq!(statuses(&db).len(), 7);
}

#[test]
fn plan_forecasts_from_a_measured_probe_then_from_the_store_and_status_counts_down() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let path = tpe(dir.path()).0;
    let db = dir.path().join("runs.db");
    let plan = |extra: &[&str]| {
        output(
            xp(&db)
                .env("XP_CACHE", &cache)
                .arg("plan")
                .arg(&path)
                .args(SETS)
                .args(extra),
        )
        .success()
    };
    let forecast = |out: &crate::common::CommandOutput| -> String {
        out.stdout
            .lines()
            .find(|l| l.starts_with("forecast"))
            .unwrap_or_else(|| panic!("no forecast line\n{out}"))
            .to_string()
    };
    // Nothing measured: no figure, and what would give one.
    let none = plan(&[]);
    assert_eq!(
        forecast(&none),
        "forecast: none — 3 model shapes never trained on this machine; `xp plan --measure` \
         measures them (a short run of each)"
    );
    // Measured: two short runs of each of the search's 3 shapes (one per unit), kept.
    let measured = plan(&["--measure"]);
    assert!(
        measured
            .stderr
            .contains("measuring 3 model shapes on this machine (1 at once, 10 steps each)"),
        "{measured}"
    );
    let line = forecast(&measured);
    assert!(
        line.starts_with("forecast (1 at once): ") && line.contains("P10–P90"),
        "{measured}"
    );
    assert!(
        measured.stdout.contains("tokens ┆ time"),
        "each run's time\n{measured}"
    );
    let probes = conn(&cache.join("probes.db"));
    let n: i64 = probes
        .query_row(
            "SELECT count(*) FROM runs WHERE status = 'completed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 6);
    let again = plan(&["--measure"]);
    assert!(
        !again.stderr.contains("measuring"),
        "measured once\n{again}"
    );
    assert_eq!(forecast(&again), line, "the same speeds, the same forecast");
    // Queued, not trained: status forecasts the rest from the same model.
    output(
        xp(&db)
            .env("XP_CACHE", &cache)
            .arg("run")
            .arg(&path)
            .args(SETS)
            .arg("--queue-only"),
    )
    .success();
    let status = output(xp(&db).env("XP_CACHE", &cache).arg("status")).success();
    let left = status
        .stdout
        .lines()
        .find(|l| l.starts_with("tpe: 14 runs to go, about "))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(left.contains("(P10–P90 "), "{status}");
    // Trained: the store's own runs are speeds too.
    output(
        xp(&db)
            .env("XP_CACHE", &cache)
            .arg("run")
            .arg(&path)
            .args(SETS),
    )
    .success();
    std::fs::remove_file(cache.join("probes.db")).unwrap();
    let from_store = plan(&[]);
    assert!(
        forecast(&from_store).starts_with("forecast (1 at once): "),
        "{from_store}"
    );
    let status = output(xp(&db).arg("status")).success();
    assert!(!status.stdout.contains("to go"), "{status}");
    assert!(status.stdout.contains("14 of 14 trials chosen"), "{status}");
}
