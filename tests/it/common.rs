//! Helpers shared by the integration tests: run the real `xp` binary and tidy its output.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use assert_cmd::Command;

/// The repository root (integration tests run with it as the working directory).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An `xp` command with a clean environment: no colour, no `XP_…` settings of the caller,
/// and the given store.
pub fn xp(db: &Path) -> Command {
    Command::from_std(xp_process(db))
}

/// The same clean `xp`, as a std command that can be spawned and signalled.
pub fn xp_process(db: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("xp"));
    for (key, _) in std::env::vars() {
        if key.starts_with("XP_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(repo())
        .env("NO_COLOR", "1")
        .env("XP_DB", db);
    cmd
}

/// Exit code, stdout and stderr of a finished command.
pub fn output(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("xp starts");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Insta settings that hide what differs between machines: the repository path,
/// temporary folders, timestamps, host names and durations.
pub fn settings(temp: Option<&Path>) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(&regex_escape(&repo().display().to_string()), "[REPO]");
    if let Some(t) = temp {
        s.add_filter(&regex_escape(&t.display().to_string()), "[TMP]");
    }
    s.add_filter(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "[TIME]");
    s.add_filter(r"\b\d+(\.\d+)?\s?(ms|s)\b", "[DURATION]");
    s.set_prepend_module_to_snapshot(false);
    s
}

/// A small, repetitive corpus: enough for the loss to fall within a few dozen steps.
pub fn corpus(dir: &Path) -> PathBuf {
    let lines = [
        "First Citizen:\nBefore we proceed any further, hear me speak.\n\n",
        "All:\nSpeak, speak.\n\n",
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\n",
        "All:\nResolved. resolved.\n\n",
    ];
    let text: String = (0..60).map(|i| lines[i % lines.len()]).collect();
    let path = dir.join("corpus.txt");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn tiny_manifest(dir: &Path, extra: &str) -> PathBuf {
    corpus(dir);
    let text = format!(
        "[model]\npreset = \"tiny\"\nlayers = 1\ndim = 32\nheads = 2\nblock_size = 32\ndropout = 0.1\n\
         ffn = {{ unit = \"glu\", alpha = \"learnable\" }}\n\
         [data]\npath = \"corpus.txt\"\n\
         [train]\nsteps = 40\nbatch_size = 8\nlr = 3e-3\nmin_lr = 3e-4\nwarmup_steps = 4\n\
         eval_every = 20\neval_batches = 4\ncheckpoint_every = 20\nlog_every = 5\n\
         [hardware]\nprofile = \"cpu\"\n{extra}"
    );
    let path = dir.join("tiny.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '-' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

/// Whether this machine has a Vulkan driver for the wgpu tests. Without one the test says it
/// is skipped and why, except under `CI=true`, where a missing driver fails it: CI installs
/// one (Mesa's lavapipe), so its absence there is a broken set-up, not a missing GPU.
pub fn vulkan_available(test: &str) -> bool {
    let adapters = xp::train::device::vulkan_adapters();
    if !adapters.is_empty() {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "{test}: no Vulkan driver found, and CI=true: CI installs mesa-vulkan-drivers"
    );
    eprintln!(
        "{test}: skipped: no Vulkan driver found (on Linux, `apt-get install \
         mesa-vulkan-drivers` gives a software one; on a Mac wgpu uses Metal)"
    );
    false
}

/// A connection to a store for the tests' own reads, waiting for writers as xp does.
pub fn conn(db: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

/// SQLite's own check of the whole file: "ok" when nothing is damaged.
pub fn integrity(db: &Path) -> String {
    conn(db)
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// A run's recorded values of one metric, by step.
pub fn metric_values(db: &Path, run: i64, name: &str) -> Vec<(i64, f64)> {
    conn(db)
        .prepare(
            "SELECT m.step, m.value FROM metrics m JOIN metric_names n ON n.id = m.name_id
             WHERE m.run_id = ?1 AND n.name = ?2 ORDER BY m.step",
        )
        .unwrap()
        .query_map(rusqlite::params![run, name], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The steps at which a run recorded a metric, in order.
pub fn metric_steps(db: &Path, run: i64, name: &str) -> Vec<i64> {
    metric_values(db, run, name)
        .into_iter()
        .map(|(s, _)| s)
        .collect()
}

/// Waits until run-1 is running at step `step` or later; panics if the process ends first.
pub fn wait_for_step(db: &Path, child: &mut Child, step: i64) -> i64 {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("xp ended ({status}) before run-1 reached step {step}");
        }
        if db.exists() {
            let now: Option<i64> = conn(db)
                .query_row(
                    "SELECT step FROM runs WHERE id = 1 AND status = 'running'",
                    [],
                    |r| r.get(0),
                )
                .ok();
            if let Some(now) = now.filter(|s| *s >= step) {
                return now;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "run-1 never reached step {step}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
