//! The queue executor: takes an experiment's queued runs one at a time, trains each, and
//! records what happened. A failing run is recorded and the queue goes on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::store::{self, CheckpointRow, MetricWriter, RunRow, Store, SummaryRow};
use crate::sweep::RunSpec;
use crate::train::{self, Metric, Progress, Recorder, Saved};

/// How one run ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Completed(train::Summary),
    Failed(String),
    Interrupted(u64),
}

/// What the command line shows while the queue runs.
pub trait Observer {
    fn run_started(&mut self, run: &RunRow, index: usize, backend: &str, adapter: &str);
    fn progress(&mut self, run: &RunRow, progress: &Progress);
    fn run_finished(&mut self, run: &RunRow, outcome: &Outcome);
}

/// Where checkpoints of the runs in a store go: `checkpoints/run-N` beside the database.
pub fn checkpoint_root(db: &Path, run_id: i64) -> PathBuf {
    let dir = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    dir.join("checkpoints").join(format!("run-{run_id}"))
}

struct StoreRecorder<'a> {
    store: &'a mut Store,
    writer: &'a MetricWriter,
    run: RunRow,
    index: usize,
    keep_last: usize,
    keep_best: bool,
    stop: &'a AtomicBool,
    observer: &'a mut dyn Observer,
}

impl Recorder for StoreRecorder<'_> {
    fn started(&mut self, backend: &str, adapter: &str, _tokenizer: &serde_json::Value) {
        let executed = serde_json::json!({
            "xp_version": env!("CARGO_PKG_VERSION"),
            "burn_version": train::BURN_VERSION,
            "host": host(),
            "pid": std::process::id(),
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
            "backend": backend,
            "adapter": adapter,
            "attempt": self.run.attempts,
        });
        if let Err(e) = self
            .store
            .set_device(self.run.id, backend, adapter, &executed)
        {
            tracing::warn!("cannot record the device of {}: {e}", self.run.name());
        }
        self.observer
            .run_started(&self.run, self.index, backend, adapter);
    }

    fn metrics(&mut self, metrics: Vec<Metric>) {
        self.writer.send(
            self.run.id,
            metrics
                .into_iter()
                .map(|m| (m.step, m.name, m.value, m.t_ms))
                .collect(),
        );
    }

    fn checkpoint(&mut self, saved: &Saved) -> Vec<PathBuf> {
        let row = CheckpointRow {
            step: saved.step as i64,
            path: saved.dir.to_string_lossy().into_owned(),
            bytes: saved.bytes as i64,
            blake3: saved.blake3.clone(),
            val_loss: saved.val_loss,
        };
        match self
            .store
            .add_checkpoint(self.run.id, &row, self.keep_last, self.keep_best)
        {
            Ok(dropped) => dropped,
            Err(e) => {
                tracing::warn!("cannot record checkpoint {}: {e}", row.path);
                Vec::new()
            }
        }
    }

    fn progress(&mut self, progress: &Progress) {
        if let Err(e) = self.store.heartbeat(self.run.id, progress.step) {
            tracing::warn!("cannot record progress of {}: {e}", self.run.name());
        }
        self.observer.progress(&self.run, progress);
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// Counts of what the queue did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub completed: usize,
    pub failed: usize,
    pub interrupted: usize,
    /// The stop flag ended the queue (Ctrl-C), whether or not a run was under way.
    pub stopped: bool,
}

/// Which runs a queue takes.
#[derive(Debug, Clone)]
pub enum Queue<'a> {
    /// An experiment's queued and interrupted runs, in plan order.
    Experiment(&'a str),
    /// One run, whatever experiment it is in (`xp resume`).
    Run(i64),
}

/// How often a running process marks itself alive.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// A run on another host (or without a pid) whose heartbeat is older than this is dead.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// Whether the process executing a `running` run is still there.
#[derive(Debug, Clone, PartialEq)]
pub enum Liveness {
    Alive,
    /// Dead, with why we think so.
    Dead(String),
}

pub use crate::store::host;

fn seconds_since(stamp: Option<&str>) -> Option<f64> {
    let t = chrono::DateTime::parse_from_rfc3339(stamp?).ok()?;
    Some((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1e3)
}

/// Judges a `running` run: on this host by its pid (a pid that started after the run was
/// claimed is another process that reused the number), elsewhere by its heartbeat.
pub fn liveness(run: &RunRow, this_host: Option<&str>) -> Liveness {
    let silent = seconds_since(run.heartbeat_at.as_deref());
    let same_host = run.host.is_some() && run.host.as_deref() == this_host;
    // Where processes cannot be listed, the heartbeat alone decides.
    let processes = sysinfo::System::new().ok().filter(|_| same_host);
    if let (Some(pid), Some(mut sys)) = (run.pid, processes) {
        use sysinfo::{Pid, ProcessStatus, ProcessesToUpdate};
        let pid32 = Pid::from_u32(pid as u32);
        sys.refresh_processes(ProcessesToUpdate::Some(&[pid32]), true);
        let claimed = run
            .claimed_at
            .as_deref()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.timestamp());
        let alive = sys.process(pid32).is_some_and(|p| {
            !matches!(p.status(), ProcessStatus::Zombie | ProcessStatus::Dead)
                && claimed.is_none_or(|c| p.start_time() as i64 <= c + 1)
        });
        return if alive {
            Liveness::Alive
        } else {
            Liveness::Dead(format!(
                "its process {pid} on {} is gone",
                run.host.as_deref().unwrap_or("this host")
            ))
        };
    }
    match silent {
        Some(s) if s > STALE_AFTER.as_secs_f64() => Liveness::Dead(format!(
            "no heartbeat from {} for {:.0} s",
            run.host.as_deref().unwrap_or("its host"),
            s
        )),
        None => Liveness::Dead("it never sent a heartbeat".into()),
        _ => Liveness::Alive,
    }
}

/// Marks every `running` run whose process died as interrupted, so that it is resumed from
/// its last checkpoint; returns the runs recovered with the reason.
pub fn recover_stale(store: &Store) -> Result<Vec<(RunRow, String)>, store::Error> {
    let here = host();
    let mut out = Vec::new();
    for run in store.running()? {
        if let Liveness::Dead(why) = liveness(&run, here.as_deref()) {
            let reason = format!("interrupted at step {}: {why}", run.step);
            if store.recover(&run, &reason)? {
                tracing::info!("{} recovered: {reason}", run.name());
                out.push((run, reason));
            }
        }
    }
    Ok(out)
}

/// Options of one queue execution.
pub struct Options<'a> {
    pub fail_fast: bool,
    /// Set (by Ctrl-C) to end the current run at its next step boundary, with a checkpoint.
    pub stop: &'a AtomicBool,
}

/// Runs a queue to its end. `specs` are the validated specs of the plan just made; a queued
/// run not among them (left by an earlier manifest) uses its stored spec. Call
/// [`recover_stale`] first, so that runs orphaned by a dead process are in the queue again.
pub fn execute(
    store: &mut Store,
    queue: Queue<'_>,
    specs: &[RunSpec],
    base_dir: &Path,
    options: &Options<'_>,
    observer: &mut dyn Observer,
) -> Result<Report, store::Error> {
    let mut report = Report::default();
    let host = host();
    let mut index = 0;
    loop {
        if options.stop.load(Ordering::SeqCst) {
            report.stopped = true;
            break;
        }
        let claimed = match queue {
            Queue::Experiment(name) => store.claim_next(name, host.as_deref())?,
            Queue::Run(id) if index == 0 => store.claim(id, host.as_deref())?,
            Queue::Run(_) => None,
        };
        let Some(run) = claimed else { break };
        index += 1;
        let spec = match specs.iter().find(|s| s.key == run.key) {
            Some(s) => Ok(s.clone()),
            None => serde_json::from_value::<RunSpec>(run.spec.clone())
                .map_err(|e| format!("stored spec unreadable: {e}")),
        };
        let outcome = match &spec {
            Ok(spec) => run_one(store, &run, spec, base_dir, index, options.stop, observer)?,
            Err(e) => Outcome::Failed(e.clone()),
        };
        match &outcome {
            Outcome::Completed(summary) => {
                store.set_summary(
                    run.id,
                    &SummaryRow {
                        best_val_loss: summary.best_val_loss,
                        final_val_loss: summary.final_val_loss,
                        final_train_loss: summary.final_train_loss,
                        median_tokens_per_s: summary.median_tokens_per_s,
                        wall_s: Some(summary.wall_s),
                        params: Some(summary.params as i64),
                    },
                )?;
                store.heartbeat(run.id, run.steps_total.max(0) as u64)?;
                store.finish(run.id, "completed", None)?;
                report.completed += 1;
            }
            Outcome::Failed(error) => {
                store.finish(run.id, "failed", Some(error))?;
                report.failed += 1;
            }
            Outcome::Interrupted(step) => {
                store.heartbeat(run.id, *step)?;
                store.finish(
                    run.id,
                    "interrupted",
                    Some(&format!("interrupted at step {step} by the user")),
                )?;
                report.interrupted += 1;
            }
        }
        observer.run_finished(&run, &outcome);
        if matches!(outcome, Outcome::Interrupted(_)) {
            report.stopped = true;
            break;
        }
        if options.fail_fast && matches!(outcome, Outcome::Failed(_)) {
            break;
        }
    }
    Ok(report)
}

/// Keeps a run's heartbeat fresh from its own thread and connection while it trains, so
/// that a long first step (shader compilation) never looks like a dead process.
struct Heartbeat {
    stop: Option<std::sync::mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    fn start(db: &Path, run: i64) -> Heartbeat {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let db = db.to_path_buf();
        let handle = std::thread::spawn(move || {
            let store = match Store::open_existing(&db) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("heartbeat of run-{run} cannot open the store: {e}");
                    return;
                }
            };
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                rx.recv_timeout(HEARTBEAT_EVERY)
            {
                if let Err(e) = store.touch(run) {
                    tracing::warn!("heartbeat of run-{run}: {e}");
                }
            }
        });
        Heartbeat {
            stop: Some(tx),
            handle: Some(handle),
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run_one(
    store: &mut Store,
    run: &RunRow,
    spec: &RunSpec,
    base_dir: &Path,
    index: usize,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<Outcome, store::Error> {
    // Resume from the newest checkpoint; metrics recorded after it are recorded again.
    let resume = store
        .checkpoints(run.id)?
        .into_iter()
        .last()
        .filter(|c| Path::new(&c.path).join("state.json").exists());
    // Metrics after the checkpoint resumed from (all of them without one) are recorded again.
    store.truncate_metrics(run.id, resume.as_ref().map_or(-1, |c| c.step))?;
    let _heartbeat = Heartbeat::start(store.path(), run.id);
    let writer = MetricWriter::open(store.path())?;
    let job = train::Job {
        spec,
        base_dir: base_dir.to_path_buf(),
        checkpoint_dir: checkpoint_root(store.path(), run.id),
        resume: resume.map(|c| PathBuf::from(c.path)),
    };
    let mut recorder = StoreRecorder {
        store,
        writer: &writer,
        run: run.clone(),
        index,
        keep_last: spec.config.train.keep_last as usize,
        keep_best: spec.config.train.keep_best,
        stop,
        observer,
    };
    // A panic inside the backend fails this run, not the queue.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train::train(&job, &mut recorder)
    }));
    writer.close()?;
    Ok(match result {
        Ok(Ok(summary)) => Outcome::Completed(summary),
        Ok(Err(train::Error::Interrupted { step })) => Outcome::Interrupted(step),
        Ok(Err(e)) => Outcome::Failed(e.to_string()),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Outcome::Failed(format!("the backend panicked: {message}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(host: Option<&str>, pid: Option<i64>, beat_s_ago: i64) -> RunRow {
        let stamp = |ago: i64| {
            (chrono::Utc::now() - chrono::Duration::seconds(ago))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        RunRow {
            id: 1,
            experiment: "e".into(),
            key: "k".into(),
            plan_index: 0,
            status: "running".into(),
            step: 10,
            steps_total: 100,
            manifest_path: "m.toml".into(),
            manifest_digest: "d".into(),
            spec: serde_json::Value::Null,
            provenance: serde_json::Value::Null,
            created_at: stamp(600),
            started_at: Some(stamp(500)),
            finished_at: None,
            host: host.map(String::from),
            pid,
            git_commit: None,
            git_dirty: None,
            backend: None,
            adapter: None,
            error: None,
            attempts: 1,
            heartbeat_at: Some(stamp(beat_s_ago)),
            claimed_at: Some(stamp(0)),
        }
    }

    #[test]
    fn judges_by_pid_here_and_by_heartbeat_elsewhere() {
        let here = Some("this-host");
        let me = std::process::id() as i64;
        assert_eq!(liveness(&running(here, Some(me), 0), here), Liveness::Alive);

        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id() as i64;
        child.wait().unwrap();
        assert!(matches!(
            liveness(&running(here, Some(gone), 0), here),
            Liveness::Dead(why) if why == format!("its process {gone} on this-host is gone")
        ));

        // A live pid that started after the run was claimed is another process.
        let mut old = running(here, Some(me), 0);
        old.claimed_at = Some("2001-01-01T00:00:00.000Z".into());
        assert!(matches!(liveness(&old, here), Liveness::Dead(_)));

        let elsewhere = running(Some("other"), Some(me), 5);
        assert_eq!(liveness(&elsewhere, here), Liveness::Alive);
        let silent = running(Some("other"), Some(me), 120);
        assert!(matches!(
            liveness(&silent, here),
            Liveness::Dead(why) if why == "no heartbeat from other for 120 s"
        ));
    }
}
