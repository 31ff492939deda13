//! Faults on purpose, for real: a full disk (a small tmpfs), SIGKILL at random points of a
//! run, closed stdout and stderr, two stores in one folder, resuming from another directory,
//! damaged checkpoints, a truncated write-ahead log, a damaged database that points
//! retention elsewhere, and input that used to crash. After each: SQLite's integrity check,
//! every logged step's metrics once, the run's state saying what happened, and no file
//! outside the store's folders changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};

use crate::common::{
    conn, integrity, metric_steps, metric_values, output, run_row, run_rows, status_of,
    tiny_manifest, wait_for_step, xp,
};

/// The names of a store's own files beside `runs.db`: the only things xp may create.
fn is_store_file(relative: &Path, db_name: &str) -> bool {
    let first = relative
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first == db_name || first.starts_with(&format!("{db_name}-"))
}

/// Every file under `dir` that is not the store's (path → content hash).
fn outside_files(dir: &Path, db_name: &str) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            let relative = path.strip_prefix(dir).unwrap().to_path_buf();
            if is_store_file(&relative, db_name) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(relative, blake3::hash(&bytes).to_hex().to_string());
            }
        }
    }
    out
}

/// Half-written checkpoint folders left anywhere under `dir`.
fn partials(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().ends_with(".partial") {
                out.push(path.clone());
            }
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

/// A seed from `var`, or a fresh one, printed first so a failure can be replayed.
fn seed(test: &str, var: &str) -> u64 {
    let seed = match std::env::var(var) {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("{var} must be a number, not {s:?}")),
        Err(_) => rand::random(),
    };
    eprintln!("{test}: seed {seed} (replay: {var}={seed})");
    seed
}

/// A tmpfs of a few MiB on a fresh folder, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts one, or says why it cannot (mounting needs root).
    fn mount(bytes: u64, test: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallDisk { dir }),
            Ok(o) => {
                eprintln!(
                    "{test}: skipped: cannot mount a tmpfs here ({})",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("{test}: skipped: cannot run mount ({e})");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk so that only about `free` bytes stay free.
    fn fill_leaving(&self, free: usize) {
        use std::io::Write;
        let gap = self.path().join("gap");
        std::fs::write(&gap, vec![1u8; free]).unwrap();
        let mut ballast = std::fs::File::create(self.path().join("ballast")).unwrap();
        let chunk = vec![0u8; 4096];
        while ballast.write_all(&chunk).is_ok() {}
        let _ = ballast.sync_all();
        std::fs::remove_file(gap).unwrap();
    }

    /// Frees what [`SmallDisk::fill_leaving`] took.
    fn empty(&self) {
        std::fs::remove_file(self.path().join("ballast")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_under_sqlite_fails_the_run_with_its_cause_and_loses_nothing_recorded() {
    let test = "a_full_disk_under_sqlite_fails_the_run_with_its_cause_and_loses_nothing_recorded";
    let Some(disk) = SmallDisk::mount(16 << 20, test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(dir.path(), "");
    let db = disk.path().join("runs.db");
    let sets = [
        "--set",
        "train.steps=300",
        "--set",
        "train.log_every=1",
        "--set",
        "train.checkpoint_every=0",
        "--set",
        "train.eval_every=300",
    ];
    let run = |extra: &[&str]| output(xp(&db).arg("run").arg(&manifest).args(sets).args(extra));
    run(&["--queue-only"]).success();
    // Room for the store's reserve (1 MiB) and a few dozen of the writer's transactions.
    disk.fill_leaving((1 << 20) + (96 << 10));
    let failed = run(&[]).code(1);
    assert!(
        failed
            .stdout
            .contains("0 completed, 1 failed, 0 interrupted"),
        "{failed}"
    );
    let row = run_row(&db, 1);
    let (status, error) = (row.status, row.error.unwrap());
    let step: u64 = error
        .strip_prefix("disk full while writing metrics at step ")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{status}: {error}"));
    assert_eq!(status, "failed");
    assert!(step < 300, "training stopped at the next step, not the end");
    assert_eq!(integrity(&db), "ok");
    // What was committed is there, every step once, with no gap.
    let recorded = metric_steps(&db, 1, "train_loss");
    assert!(!recorded.is_empty());
    assert_eq!(recorded, (1..=recorded.len() as i64).collect::<Vec<_>>());
    assert!(recorded.len() as u64 <= step, "{recorded:?} {step}");

    disk.empty();
    run(&["--retry-failed"]).success();
    assert_eq!(status_of(&db, 1), "completed");
    assert_eq!(
        metric_steps(&db, 1, "train_loss"),
        (1..=300).collect::<Vec<_>>()
    );
    assert_eq!(integrity(&db), "ok");
}

#[test]
fn a_full_disk_under_a_checkpoint_fails_the_run_and_leaves_no_partial_folder() {
    let test = "a_full_disk_under_a_checkpoint_fails_the_run_and_leaves_no_partial_folder";
    let Some(disk) = SmallDisk::mount(16 << 20, test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(dir.path(), "");
    let db = disk.path().join("runs.db");
    output(xp(&db).arg("run").arg(&manifest).arg("--queue-only")).success();
    // The store's reserve and its metrics fit; a checkpoint (about 330 kB) does not.
    disk.fill_leaving((1 << 20) + (200 << 10));
    output(xp(&db).arg("run").arg(&manifest)).code(1);
    let row = run_row(&db, 1);
    let (status, error) = (row.status, row.error.unwrap());
    assert_eq!(status, "failed");
    let folder = disk.path().join("runs.db-checkpoints/run-1");
    assert!(
        error.starts_with(&format!(
            "checkpoint {}/.step-0000020.partial",
            folder.display()
        )) && error.contains("No space left on device"),
        "{error}"
    );
    assert_eq!(partials(disk.path()), Vec::<PathBuf>::new());
    assert_eq!(integrity(&db), "ok");
    assert_eq!(metric_steps(&db, 1, "train_loss"), [1, 5, 10, 15, 20]);

    disk.empty();
    output(xp(&db).arg("run").arg(&manifest).arg("--retry-failed")).success();
    assert_eq!(status_of(&db, 1), "completed");
}

/// The tiny run the kill tests interrupt: 40 steps, a checkpoint every 10.
const KILLED: [&str; 4] = [
    "--set",
    "train.checkpoint_every=10",
    "--set",
    "train.keep_last=4",
];

/// A metric's values by step.
type Curve = Vec<(i64, f64)>;

/// train_loss and val_loss of run-1, by step.
fn losses(db: &Path) -> (Curve, Curve) {
    (
        metric_values(db, 1, "train_loss"),
        metric_values(db, 1, "val_loss"),
    )
}

#[test]
fn sigkill_at_twenty_random_points_then_xp_run_records_every_step_once_with_the_same_losses() {
    let test =
        "sigkill_at_twenty_random_points_then_xp_run_records_every_step_once_with_the_same_losses";
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed(test, "XP_FAULT_SEED"));
    // The uninterrupted run, and how long its process takes.
    let reference = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(reference.path(), "");
    let db = reference.path().join("runs.db");
    let started = Instant::now();
    output(xp(&db).arg("run").arg(&manifest).args(KILLED)).success();
    let whole = started.elapsed();
    let expected = losses(&db);
    assert_eq!(expected.0.len(), 9);

    for point in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let manifest = tiny_manifest(dir.path(), "");
        let before = outside_files(dir.path(), "runs.db");
        let db = dir.path().join("runs.db");
        let delay = whole.mul_f64(rng.random_range(0.0..1.1));
        let mut child = xp(&db)
            .arg("run")
            .arg(&manifest)
            .args(KILLED)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL: no chance to clean up
        child.wait().unwrap();

        let at = format!("point {point} (killed after {delay:?} of {whole:?})");
        let out = output(xp(&db).arg("run").arg(&manifest).args(KILLED));
        assert_eq!(out.status, 0, "{at}:\n{out}");
        assert_eq!(integrity(&db), "ok", "{at}");
        assert_eq!(status_of(&db, 1), "completed", "{at}");
        assert_eq!(losses(&db), expected, "{at}:\n{out}");
        assert_eq!(partials(dir.path()), Vec::<PathBuf>::new(), "{at}");
        assert_eq!(outside_files(dir.path(), "runs.db"), before, "{at}");
    }
}

#[test]
fn closed_or_broken_stdout_and_stderr_never_change_how_a_run_ends() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(dir.path(), "[sweep.grid]\n\"train.seed\" = [1, 2]\n");
    let db = dir.path().join("runs.db");
    // Pipes whose reader has gone (`xp run m.toml 2>&1 | head -1` once head has exited).
    let mut child = xp(&db)
        .arg("run")
        .arg(&manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    // Nothing it wrote can be read: the store says how it ended.
    assert_eq!(child.wait().unwrap().code(), Some(0), "{:?}", run_rows(&db));
    assert_eq!(status_of(&db, 1), "completed");
    // Descriptors closed outright.
    let closed = Command::new("sh")
        .arg("-c")
        .arg("exec \"$0\" run \"$1\" --set train.steps=41 >&- 2>&-")
        .arg(assert_cmd::cargo::cargo_bin("xp"))
        .arg(&manifest)
        .env("XP_DB", &db)
        .env("NO_COLOR", "1")
        .status()
        .unwrap();
    assert_eq!(closed.code(), Some(0), "{:?}", run_rows(&db));
    for id in 1..=4 {
        let row = run_row(&db, id);
        assert_eq!(
            (row.status.as_str(), row.error.as_deref(), row.attempts),
            ("completed", None, 1),
            "run-{id}"
        );
    }
    assert_eq!(integrity(&db), "ok");
}

#[test]
fn two_stores_in_one_folder_keep_their_checkpoints_apart() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(dir.path(), "");
    let sets = [
        "--set",
        "train.keep_last=1",
        "--set",
        "train.keep_best=false",
    ];
    for name in ["a.db", "b.db"] {
        let db = dir.path().join(name);
        output(xp(&db).arg("run").arg(&manifest).args(sets)).success();
    }
    for name in ["a.db", "b.db"] {
        let db = dir.path().join(name);
        let kept: Vec<String> =
            std::fs::read_dir(dir.path().join(format!("{name}-checkpoints/run-1")))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
        assert_eq!(kept, ["step-0000040"], "{name}");
        let sample = output(xp(&db).args(["sample", "run-1", "--tokens", "5"]));
        assert_eq!(sample.status, 0, "{name}:\n{sample}");
        assert!(!sample.stdout.is_empty(), "{name}:\n{sample}");
    }
    assert!(!dir.path().join("checkpoints").exists());
}

#[test]
fn resume_from_another_directory_goes_on_from_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(dir.path(), "");
    std::fs::create_dir_all(dir.path().join("store")).unwrap();
    let sets = [
        "--set",
        "train.steps=600",
        "--set",
        "train.checkpoint_every=100",
        "--set",
        "train.eval_every=200",
    ];
    let mut child = xp(Path::new("store/runs.db"))
        .current_dir(dir.path())
        .arg("run")
        .arg(&manifest)
        .args(sets)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let db = dir.path().join("store/runs.db");
    wait_for_step(&db, &mut child, 150);
    output(Command::new("kill").args(["-INT", &child.id().to_string()])).success();
    assert_eq!(
        child.wait().unwrap().code(),
        Some(130),
        "{:?}",
        run_row(&db, 1)
    );
    let row = run_row(&db, 1);
    assert_eq!(row.status, "interrupted", "{row:?}");
    let stopped = row.step;
    let kept: Vec<(i64, f64)> = metric_values(&db, 1, "train_loss");

    // From somewhere else entirely, with a --db relative to there.
    let elsewhere = dir.path().join("store/deeper/still");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let resumed = output(
        xp(Path::new("../../runs.db"))
            .current_dir(&elsewhere)
            .args(["resume", "run-1"]),
    )
    .success();
    assert!(
        resumed
            .stderr
            .contains(&format!("(attempt 2, resuming from step {stopped})")),
        "{resumed}"
    );
    let after = metric_values(&db, 1, "train_loss");
    let before_stop: Vec<(i64, f64)> = after.iter().copied().filter(|m| m.0 <= stopped).collect();
    assert_eq!(
        before_stop, kept,
        "the metrics up to the checkpoint are kept"
    );
    assert_eq!(after.last().map(|m| m.0), Some(600));
    assert_eq!(integrity(&db), "ok");
}

/// Runs `xp run` on a 600-step run and kills it once two checkpoints are recorded.
fn killed_after_two_checkpoints(dir: &Path) -> (PathBuf, PathBuf) {
    let manifest = tiny_manifest(dir, "");
    let db = dir.join("runs.db");
    let mut child = xp(&db)
        .arg("run")
        .arg(&manifest)
        .args(LONG)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let n: i64 = if db.exists() {
            conn(&db)
                .query_row("SELECT count(*) FROM checkpoints", [], |r| r.get(0))
                .unwrap_or(0)
        } else {
            0
        };
        if n >= 2 {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "xp ended early");
        assert!(start.elapsed() < Duration::from_secs(300));
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    (manifest, db)
}

const LONG: [&str; 6] = [
    "--set",
    "train.steps=600",
    "--set",
    "train.checkpoint_every=100",
    "--set",
    "train.eval_every=200",
];

/// The losses of the 600-step run trained without interruption.
fn long_reference() -> (Curve, Curve) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(dir.path(), "");
    let db = dir.path().join("runs.db");
    output(xp(&db).arg("run").arg(&manifest).args(LONG)).success();
    losses(&db)
}

#[test]
fn a_flipped_byte_in_any_checkpoint_file_is_named_and_resume_falls_back_to_one_that_verifies() {
    let expected = long_reference();
    let files = [
        "model.safetensors",
        "model.bpk",
        "optimizer.bpk",
        "state.json",
        "tokenizer.json",
        "checksums.json",
    ];
    for file in files {
        let dir = tempfile::tempdir().unwrap();
        let (manifest, db) = killed_after_two_checkpoints(dir.path());
        let newest: (i64, String, String) = conn(&db)
            .query_row(
                "SELECT step, path, blake3 FROM checkpoints ORDER BY step DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        let folder = dir.path().join(&newest.1);
        let path = folder.join(file);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let found = blake3::hash(&bytes).to_hex().to_string();
        let recorded = if file == "checksums.json" {
            newest.2.clone()
        } else {
            let listing: serde_json::Value =
                serde_json::from_slice(&std::fs::read(folder.join("checksums.json")).unwrap())
                    .unwrap();
            listing
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == file)
                .unwrap()["blake3"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let named = format!(
            "checkpoint {}: blake3 {} does not match the recorded {}",
            path.display(),
            &found[..12],
            &recorded[..12]
        );
        // Sampling from it refuses, naming the file.
        let sample =
            output(xp(&db).args(["sample", "run-1", "--checkpoint", &newest.0.to_string()]));
        assert_eq!(sample.status, 1, "{file}:\n{sample}");
        assert_eq!(
            sample.stderr,
            format!("error: run-1: {named}\n"),
            "{file}:\n{sample}"
        );
        // Resuming passes over it to the newest that verifies, and ends as if never stopped.
        let run = output(xp(&db).arg("run").arg(&manifest).args(LONG));
        assert_eq!(run.status, 0, "{file}:\n{run}");
        assert!(
            run.stderr.contains(&format!(
                "run-1: checkpoint at step {} cannot be used: {named}\n",
                newest.0
            )),
            "{file}:\n{run}"
        );
        assert!(
            run.stderr.contains(&format!(
                "(attempt 2, resuming from step {})",
                newest.0 - 100
            )),
            "{file}:\n{run}"
        );
        assert_eq!(losses(&db), expected, "{file}");
        assert_eq!(integrity(&db), "ok");
    }
}

#[test]
fn a_truncated_write_ahead_log_loses_only_unfinished_work() {
    let test = "a_truncated_write_ahead_log_loses_only_unfinished_work";
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed(test, "XP_FAULT_SEED"));
    let expected = long_reference();
    for cut in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let (manifest, db) = killed_after_two_checkpoints(dir.path());
        let wal = dir.path().join("runs.db-wal");
        let len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        let keep = if len == 0 {
            0
        } else {
            rng.random_range(0..len)
        };
        std::fs::OpenOptions::new()
            .write(true)
            .open(&wal)
            .and_then(|f| f.set_len(keep))
            .unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        let at = format!("cut {cut}: WAL of {len} bytes cut to {keep}");
        let run = output(xp(&db).arg("run").arg(&manifest).args(LONG));
        assert_eq!(run.status, 0, "{at}:\n{run}");
        assert_eq!(integrity(&db), "ok", "{at}");
        assert_eq!(status_of(&db, 1), "completed", "{at}");
        assert_eq!(losses(&db), expected, "{at}");
    }
}

#[test]
fn retention_deletes_nothing_outside_the_stores_checkpoint_folder_whatever_the_database_says() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(dir.path(), "");
    let db = dir.path().join("runs.db");
    let sets = [
        "--set",
        "train.keep_last=1",
        "--set",
        "train.keep_best=false",
    ];
    output(
        xp(&db)
            .arg("run")
            .arg(&manifest)
            .args(sets)
            .arg("--queue-only"),
    )
    .success();
    // Folders a damaged or foreign runs.db could name: elsewhere on the disk, relative to
    // the store's folder, and beside it with a checkpoint's name.
    let victim = tempfile::tempdir().unwrap();
    let targets = [
        victim.path().join("step-0000001"),
        dir.path().join("step-0000002"),
        dir.path().join("runs.db-checkpoints/run-2/step-0000003"),
    ];
    for t in &targets {
        std::fs::create_dir_all(t).unwrap();
        std::fs::write(t.join("precious.txt"), "keep me").unwrap();
    }
    let recorded = [
        targets[0].display().to_string(),
        "step-0000002".to_string(),
        "runs.db-checkpoints/run-2/step-0000003".to_string(),
    ];
    for (i, path) in recorded.iter().enumerate() {
        conn(&db)
            .execute(
                "INSERT INTO checkpoints (run_id, step, path, bytes, blake3, created_at)
                 VALUES (1, ?1, ?2, 1, 'x', 't')",
                rusqlite::params![i as i64 + 1, path],
            )
            .unwrap();
    }
    output(xp(&db).arg("run").arg(&manifest).args(sets)).success();
    for t in &targets {
        assert_eq!(
            std::fs::read_to_string(t.join("precious.txt")).unwrap(),
            "keep me",
            "{}",
            t.display()
        );
    }
    let steps: Vec<i64> = conn(&db)
        .prepare("SELECT step FROM checkpoints WHERE run_id = 1")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(steps, [40], "retention dropped the rows, and only the rows");
}

#[test]
fn input_that_used_to_crash_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(dir.path(), "");
    let db = dir.path().join("runs.db");
    output(xp(&db).arg("run").arg(&manifest).arg("--queue-only")).success();
    let limit = "the expression nests deeper than 256 levels (parentheses, `not`, `-` and each \
                 chained operator add one)";
    // Deep nesting overflowed the stack (exit 134); 1,200 `not`s reached SQLite's limit (1).
    for (text, column) in [
        (format!("{}x = 1", "(".repeat(100_000)), 257),
        (format!("{}status = 'queued'", "not ".repeat(1_200)), 1025),
    ] {
        let refused = output(xp(&db).args(["runs", "--where", &text])).code(2);
        assert_eq!(refused.stdout, "", "{refused}");
        assert_eq!(
            refused.stderr.lines().next(),
            Some(format!("error: --where: column {column}: {limit}").as_str()),
            "{refused}"
        );
    }
    let deep = dir.path().join("deep.toml");
    std::fs::write(
        &deep,
        format!(
            "{}[sweep]\nwhere = \"{}train.lr > 0\"\n",
            std::fs::read_to_string(&manifest).unwrap(),
            "not ".repeat(50_000)
        ),
    )
    .unwrap();
    let refused = output(xp(&db).arg("validate").arg(&deep)).code(2);
    // The diagnostic as rendered for a person (wrapped at 100 columns), pointing into the file.
    assert!(
        refused.stderr.starts_with(
            "  × cannot parse `sweep.where`: the expression nests deeper than 256 levels \
             (parentheses, `not`,\n  │ `-` and each chained operator add one)\n"
        ),
        "{refused}"
    );
    assert!(refused.stderr.contains("deep.toml:24:1034]"), "{refused}");

    for (args, expected) in [
        (
            vec!["sample", "run-1", "--temperature", "nan"],
            "error: invalid value 'nan' for '--temperature <TEMPERATURE>': must be a finite \
             number, 0 or more",
        ),
        (
            vec!["status", "--watch", "inf"],
            "error: invalid value 'inf' for '--watch [<SECONDS>]': must be a number of seconds \
             from 0.2 to 3600",
        ),
    ] {
        let refused = output(xp(&db).args(&args)).code(2);
        assert_eq!(
            refused.stderr.lines().next(),
            Some(expected),
            "{args:?}:\n{refused}"
        );
    }

    // Stores this xp cannot use: refused with exit 2 and left as they were.
    let negative = dir.path().join("negative.db");
    std::fs::copy(&db, &negative).unwrap();
    conn(&negative)
        .pragma_update(None, "user_version", -1)
        .unwrap();
    let text = dir.path().join("notes.db");
    std::fs::write(&text, "not a database\n".repeat(100)).unwrap();
    for (path, expected) in [
        (
            &negative,
            format!(
                "error: {} has store schema version -1, which no xp writes (versions run from \
                 0 to 6); it was not modified\n",
                negative.display()
            ),
        ),
        (
            &text,
            format!(
                "error: {} is not a SQLite database, so not an xp run store; it was not \
                 modified\n",
                text.display()
            ),
        ),
    ] {
        let before = std::fs::read(path).unwrap();
        let refused = output(xp(path).arg("status")).code(2);
        assert_eq!(refused.stderr, expected, "{refused}");
        assert_eq!(std::fs::read(path).unwrap(), before);
    }
}

#[test]
fn a_disk_without_room_for_the_reserve_starts_no_run_and_says_how_much_is_needed() {
    let test = "a_disk_without_room_for_the_reserve_starts_no_run_and_says_how_much_is_needed";
    let Some(disk) = SmallDisk::mount(8 << 20, test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(dir.path(), "");
    let db = disk.path().join("runs.db");
    let run = || output(xp(&db).arg("run").arg(&manifest));
    output(xp(&db).arg("run").arg(&manifest).arg("--queue-only")).success();
    // Room for the store's own writes, not for its 1 MiB reserve.
    disk.fill_leaving(320 << 10);
    let refused = run().code(1);
    let stderr = refused.stderr.clone();
    // The free room varies by a page or two with the filesystem's own bookkeeping.
    let stderr = match (stderr.find("disk has "), stderr.find(" KiB free.")) {
        (Some(a), Some(b)) if a < b => format!("{}[SIZE]{}", &stderr[..a + 9], &stderr[b + 4..]),
        _ => stderr,
    };
    assert_eq!(
        stderr.replace(&disk.path().display().to_string(), "[DISK]"),
        "error: cannot keep 1 MiB in reserve beside the run store: writing \
             [DISK]/runs.db-reserve failed (No space left on device (os error 28)), and the \
             disk has [SIZE] free. Without the reserve, a run that fills the disk would die \
             with its end recorded nowhere, so no run was started: free at least that much \
             there\n",
        "{refused}"
    );
    assert_eq!(status_of(&db, 1), "queued");
    assert!(!disk.path().join("runs.db-reserve").exists());
    assert_eq!(integrity(&db), "ok");
    // With room again, the same command trains the run.
    disk.empty();
    run().success();
    assert_eq!(status_of(&db, 1), "completed");
}
