//! Helpers shared by the integration tests: run the real `xp` binary and tidy its output.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::process::{Child, Command};
use xp::store::{Claimant, Outcome, Store};

/// The repository root (integration tests run with it as the working directory).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An `xp` command with a clean environment: no colour, no `XP_…` settings of the caller,
/// and the given store. Run it with [`output`], or spawn and signal it.
pub fn xp(db: &Path) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("xp"));
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

/// What a finished command did: its exit code, stdout and stderr, and the command line.
///
/// Displayed, it shows all of them, in labelled sections; every assertion on a command's
/// result prints it, so that a failure says what the command wrote (after jj's
/// `CommandOutput` and just's tests).
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// The command as a shell would spell it, with the variables it was given.
    pub command: String,
    /// The exit code, or -1 when the process was ended by a signal.
    pub status: i32,
    /// The signal that ended the process, if one did.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    /// The result of a finished process, `command` describing what ran.
    pub fn new(command: String, out: std::process::Output) -> CommandOutput {
        use std::os::unix::process::ExitStatusExt;
        CommandOutput {
            command,
            status: out.status.code().unwrap_or(-1),
            signal: out.status.signal(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts that the command exited with code 0.
    #[track_caller]
    pub fn success(self) -> Self {
        self.code(0)
    }

    /// Asserts that the command exited with `code`.
    #[track_caller]
    pub fn code(self, code: i32) -> Self {
        assert!(
            self.status == code && self.signal.is_none(),
            "expected exit code {code}, got {}:\n{self}",
            self.exit()
        );
        self
    }

    fn exit(&self) -> String {
        match self.signal {
            Some(signal) => format!("signal {signal}"),
            None => format!("exit code {}", self.status),
        }
    }
}

impl std::fmt::Display for CommandOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "$ {}", self.command)?;
        writeln!(f, "[{}]", self.exit())?;
        for (name, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            if text.is_empty() {
                writeln!(f, "------- {name}: empty -------")?;
            } else {
                writeln!(f, "------- {name} -------")?;
                f.write_str(text)?;
                if !text.ends_with('\n') {
                    writeln!(f, "[no newline at the end of {name}]")?;
                }
            }
        }
        write!(f, "------- end -------")
    }
}

/// A command's stdout as one JSON value; panics with the whole output when it is not one.
#[track_caller]
pub fn parse_json(out: &CommandOutput) -> serde_json::Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{out}"))
}

/// A command's stdout as JSON Lines; panics with the whole output at a line that is not JSON.
#[track_caller]
pub fn parse_json_lines(out: &CommandOutput) -> Vec<serde_json::Value> {
    out.stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("a line of stdout is not JSON: {e}\n{out}"))
        })
        .collect()
}

/// Runs a command (`xp`, or `kill`, `scancel`, `squeue` …) to its end and captures what it
/// did.
pub fn output(cmd: &mut Command) -> CommandOutput {
    let command = command_line(
        cmd.get_program(),
        cmd.get_args(),
        cmd.get_envs(),
        cmd.get_current_dir(),
    );
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
    CommandOutput::new(command, out)
}

/// Waits for a spawned process (its stdout and stderr piped, or not captured) and captures
/// what it did.
pub fn output_of_child(child: Child, command: &str) -> CommandOutput {
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("cannot wait for {command}: {e}"));
    CommandOutput::new(command.to_string(), out)
}

/// A command as a shell would spell it: the variables it sets (not `NO_COLOR`), the program's
/// file name and its arguments, and the folder it runs in when that is not the repository.
fn command_line<'a>(
    program: &OsStr,
    args: impl Iterator<Item = &'a OsStr>,
    envs: impl Iterator<Item = (&'a OsStr, Option<&'a OsStr>)>,
    dir: Option<&Path>,
) -> String {
    let mut words: Vec<String> = envs
        .filter_map(|(k, v)| Some((k, v?)))
        .filter(|(k, _)| *k != "NO_COLOR")
        .map(|(k, v)| format!("{}={}", k.to_string_lossy(), quoted(v)))
        .collect();
    words.push(quoted(Path::new(program).file_name().unwrap_or(program)));
    words.extend(args.map(quoted));
    let mut line = words.join(" ");
    if let Some(dir) = dir.filter(|d| *d != repo()) {
        line.push_str(&format!("    (in {})", dir.display()));
    }
    line
}

fn quoted(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./=:,@%+".contains(c));
    if plain {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
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

/// The cache folder `xp` uses when `XP_CACHE` is unset (as [`xp`] leaves it): where the
/// corpus is.
pub fn default_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("xp")
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

/// A run's state as the store records it: the columns its lifecycle sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub status: String,
    /// Why it failed, was cancelled or was interrupted.
    pub error: Option<String>,
    pub attempts: i64,
    /// The step it reached.
    pub step: i64,
}

/// A [`RunRow`] from the columns status, error, attempts and step.
fn run_row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        status: r.get(0)?,
        error: r.get(1)?,
        attempts: r.get(2)?,
        step: r.get(3)?,
    })
}

fn read_run_row(db: &Path, id: i64) -> rusqlite::Result<RunRow> {
    conn(db).query_row(
        "SELECT status, error, attempts, step FROM runs WHERE id = ?1",
        [id],
        run_row_of,
    )
}

/// Run `id`'s state; panics when the store has no such run.
#[track_caller]
pub fn run_row(db: &Path, id: i64) -> RunRow {
    read_run_row(db, id).unwrap_or_else(|e| panic!("run-{id} in {}: {e}", db.display()))
}

/// Run `id`'s status (`queued`, `running`, `completed` …).
#[track_caller]
pub fn status_of(db: &Path, id: i64) -> String {
    run_row(db, id).status
}

/// Run `id`'s status and how many times it was started.
#[track_caller]
pub fn status_and_attempts(db: &Path, id: i64) -> (String, i64) {
    let row = run_row(db, id);
    (row.status, row.attempts)
}

/// Every run's state, by id.
pub fn run_rows(db: &Path) -> Vec<RunRow> {
    conn(db)
        .prepare("SELECT status, error, attempts, step FROM runs ORDER BY id")
        .unwrap()
        .query_map([], run_row_of)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Every run's status, by id.
pub fn statuses(db: &Path) -> Vec<String> {
    run_rows(db).into_iter().map(|r| r.status).collect()
}

/// Takes run `id` to `outcome` through the store's own lifecycle, as `xp run` does: this test
/// process claims it (it must be queued, interrupted, failed or cancelled), then finishes it.
#[track_caller]
pub fn finish_run(db: &Path, id: i64, outcome: Outcome) {
    let by = Claimant {
        pid: std::process::id(),
        host: xp::exec::host(),
    };
    let mut store = Store::open_existing(db).unwrap();
    let claimed = store.claim(id, &by).unwrap();
    assert!(
        claimed.is_some(),
        "run-{id} cannot be claimed: {:?}",
        run_row(db, id)
    );
    store.finish(id, &by, &outcome).unwrap();
}

/// Waits until run-1 is running at step `step` or later; panics, with what the process wrote
/// where it was piped, if it ends first.
pub fn wait_for_step(db: &Path, child: &mut Child, step: i64) -> i64 {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            let mut out = std::process::Output {
                status: child.wait().unwrap(),
                stdout: Vec::new(),
                stderr: Vec::new(),
            };
            if let Some(mut pipe) = child.stdout.take() {
                pipe.read_to_end(&mut out.stdout).unwrap();
            }
            if let Some(mut pipe) = child.stderr.take() {
                pipe.read_to_end(&mut out.stderr).unwrap();
            }
            let out = CommandOutput::new(format!("xp (process {})", child.id()), out);
            panic!("xp ended before run-1 reached step {step}:\n{out}");
        }
        if db.exists() {
            let now = read_run_row(db, 1)
                .ok()
                .filter(|r| r.status == "running" && r.step >= step);
            if let Some(now) = now {
                return now.step;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "run-1 never reached step {step}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
