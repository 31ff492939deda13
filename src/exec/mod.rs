//! The queue executor: recovers runs orphaned by dead processes, takes queued runs one at a
//! time, trains each, and records what happened. A failing run is recorded and the queue goes
//! on. What the terminal shows is up to an [`Observer`].

pub mod events;
pub mod interrupts;
mod policy;
pub mod pool;
pub mod provenance;
pub mod slurm;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::early_stop::Decision;
use crate::store::{
    self, Checkpoint, Claimant, MetricRow, MetricWriter, Outcome, Recovered, Reserve, RunRecord,
    Store,
};
use crate::train::{self, Control, Metric, Placement, Progress, Recorder, Saved, Trained};
pub use policy::{Workers, run_queue};
pub use provenance::host;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// A worker process could not be started or watched.
    #[error("{0}")]
    Worker(String),
    /// Slurm's commands failed, or the shared folder could not be written.
    #[error("{0}")]
    Slurm(String),
    /// The executor's settings cannot work (exit 2).
    #[error("{0}")]
    Usage(String),
    #[error("cannot handle Ctrl-C: {0}")]
    Signals(std::io::Error),
}

/// What the command line shows while the queue runs.
pub trait Observer {
    /// The queue is about to start: how many runs and steps are pending, and the runs found
    /// orphaned (now interrupted, to be resumed).
    fn queue_started(&mut self, pending: Pending, recovered: &[Recovered]);
    /// A run starts training on `backend`/`adapter`, from scratch or from a checkpoint.
    fn run_started(&mut self, run: &RunRecord, started: &Started<'_>);
    /// Something the person watching should know about a run (a checkpoint that failed
    /// verification, a result that could not be recorded).
    fn notice(&mut self, run: &RunRecord, text: &str);
    fn progress(&mut self, run: &RunRecord, progress: &Progress);
    fn run_finished(&mut self, run: &RunRecord, outcome: &Outcome);
    /// Early-stopping decisions taken as a result was recorded.
    fn decided(&mut self, decisions: &[Decision]);
}

/// How a run starts, for the observer.
#[derive(Debug, Clone)]
pub struct Started<'a> {
    /// Its position in this queue, from 1.
    pub index: usize,
    pub backend: &'a str,
    pub adapter: &'a str,
    /// The step of the checkpoint it resumes from.
    pub resumed_from: Option<u64>,
}

/// Counts of what the queue did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub completed: usize,
    pub failed: usize,
    pub interrupted: usize,
    /// Pauses at early-stopping rungs.
    pub paused: usize,
    /// Runs stopped early by a decision.
    pub stopped_early: usize,
    /// Runs found orphaned by a dead process and put back in the queue.
    pub recovered: usize,
    /// The stop flag ended the queue (Ctrl-C), whether or not a run was under way.
    pub stopped: bool,
}

impl Report {
    /// Counts one run's outcome.
    pub fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Completed { .. } => self.completed += 1,
            Outcome::Failed { .. } => self.failed += 1,
            Outcome::Interrupted { .. } => self.interrupted += 1,
            Outcome::Paused { .. } => self.paused += 1,
        }
    }

    /// Counts the runs decisions stopped.
    pub fn count_decisions(&mut self, decisions: &[Decision]) {
        self.stopped_early += decisions
            .iter()
            .filter(|d| d.action == crate::early_stop::Action::Stop)
            .count();
    }
}

/// Which runs a queue takes.
#[derive(Debug, Clone)]
pub enum Queue<'a> {
    /// An experiment's queued and interrupted runs, in plan order.
    Experiment(&'a str),
    /// One run, whatever experiment it is in (`xp resume`).
    Run(i64),
}

/// Options of one queue execution.
pub struct Options<'a> {
    pub fail_fast: bool,
    /// Set (by Ctrl-C) to end the current run at its next step boundary, with a checkpoint.
    pub stop: &'a AtomicBool,
    /// The GPU this process trains on (a worker given one by `--devices`).
    pub device: Option<u32>,
}

/// What a queue has before it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// Runs found running with their process gone, now interrupted (to be resumed).
    pub recovered: Vec<Recovered>,
    /// Early-stopping decisions the store's results allowed and its log lacked (a run
    /// cancelled or failed since, which held them).
    pub decided: Vec<Decision>,
    pub pending: Pending,
}

/// The runs a queue will take and the steps they have left.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Pending {
    pub runs: usize,
    pub steps: u64,
}

/// Before a queue starts: marks runs whose process died as interrupted (so that they are
/// resumed from their last checkpoint), takes the early-stopping decisions the results allow,
/// then counts the runs and steps the queue will take.
pub fn prepare(store: &mut Store, queue: &Queue<'_>) -> Result<Prepared, Error> {
    let recovered = store.recover_stale(provenance::host().as_deref())?;
    let decided = match queue {
        Queue::Experiment(name) => store.decide(name)?,
        Queue::Run(_) => Vec::new(),
    };
    let pending = pending(store, queue)?;
    Ok(Prepared {
        recovered,
        decided,
        pending,
    })
}

/// Runs a queue to its end in this process, after [`prepare`].
pub fn execute(
    store: &mut Store,
    queue: Queue<'_>,
    options: &Options<'_>,
    observer: &mut dyn Observer,
) -> Result<Report, Error> {
    let me = provenance::this_process();
    // Taken before anything trains, so that a full disk still leaves room to record how the
    // run it stopped ended.
    let mut reserve = Reserve::hold(store.path())?;
    let Prepared {
        recovered,
        decided,
        pending,
    } = prepare(store, &queue)?;
    observer.queue_started(pending, &recovered);
    let mut report = Report {
        recovered: recovered.len(),
        ..Report::default()
    };
    report.count_decisions(&decided);
    observer.decided(&decided);
    let mut index = 0;
    loop {
        if options.stop.load(Ordering::SeqCst) {
            report.stopped = true;
            break;
        }
        let claimed = match queue {
            Queue::Experiment(name) => store.claim_next(name, &me),
            Queue::Run(id) if index == 0 => store.claim(id, &me),
            Queue::Run(_) => Ok(None),
        };
        let run = match claimed {
            Ok(Some(run)) => run,
            // In an early-stopped sweep, runs that other processes train may still pause and
            // promote runs: this worker waits for them rather than leave their work to fewer.
            Ok(None) if waits_for_others(store, &queue)? => {
                std::thread::sleep(std::time::Duration::from_millis(200));
                // A worker that died holding a run leaves it `running`: taken back here, it is
                // claimed again rather than waited for.
                for r in store.recover_stale(provenance::host().as_deref())? {
                    report.recovered += 1;
                    observer.notice(&store.run_by_id(r.run)?, &r.reason);
                }
                continue;
            }
            Ok(None) => break,
            // Claimed, but its stored spec is unreadable: it fails like any run that cannot
            // train, and the queue goes on.
            Err(store::Error::UnreadableSpec { run, message }) => {
                index += 1;
                let reason = format!("its stored spec cannot be read: {message}");
                let decided = finish(store, &mut reserve, run, &me, &Outcome::Failed { reason })?;
                report.count_decisions(&decided);
                observer.decided(&decided);
                report.failed += 1;
                if options.fail_fast {
                    break;
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        index += 1;
        let outcome = run_one(store, &run, &me, index, options, observer)?;
        let decided = match finish(store, &mut reserve, run.id, &me, &outcome) {
            Ok(decided) => decided,
            // Another process holds the run now; this process's result is not the record.
            Err(e @ store::Error::LostClaim { .. }) => {
                observer.notice(&run, &e.to_string());
                report.failed += 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        report.count(&outcome);
        observer.run_finished(&run, &outcome);
        report.count_decisions(&decided);
        observer.decided(&decided);
        if matches!(outcome, Outcome::Interrupted { .. }) {
            report.stopped = true;
            break;
        }
        if options.fail_fast && matches!(outcome, Outcome::Failed { .. }) {
            break;
        }
    }
    Ok(report)
}

/// Records how a run ended; on a full disk, frees the reserve and tries once more, so that
/// the run's state says what happened rather than staying `running`.
fn finish(
    store: &mut Store,
    reserve: &mut Reserve,
    run: i64,
    me: &Claimant,
    outcome: &Outcome,
) -> Result<Vec<Decision>, store::Error> {
    match store.finish(run, me, outcome) {
        Err(e) if e.is_disk_full() && reserve.release() => {
            tracing::warn!("run-{run}: the disk is full; released the store's reserve");
            store.finish(run, me, outcome)
        }
        other => other,
    }
}

/// Whether a worker that found nothing to claim should wait: its experiment stops runs early
/// or chooses trials, and another process is training one of its runs, whose pause can promote
/// others and whose end can let the next trial be chosen.
fn waits_for_others(store: &Store, queue: &Queue<'_>) -> Result<bool, Error> {
    let Queue::Experiment(name) = queue else {
        return Ok(false);
    };
    Ok((store.early_stop(name)?.is_some() || store.choosing(name)?)
        && store.running_elsewhere(name)?)
}

/// How many runs a queue will take, and their remaining steps: for an experiment, the runs
/// its queue can claim (never those on Slurm); for one run, that run.
fn pending(store: &Store, queue: &Queue<'_>) -> Result<Pending, Error> {
    let (runs, steps) = match queue {
        Queue::Experiment(name) => store.claimable(name)?,
        Queue::Run(id) => {
            let run = store.run_by_id(*id)?;
            (1, run.steps_total.saturating_sub(run.step))
        }
    };
    Ok(Pending { runs, steps })
}

/// Records a run as it trains: metrics and progress through the writer thread, checkpoints and
/// the device through the store, and relays progress to the observer.
struct StoreRecorder<'a> {
    store: &'a mut Store,
    writer: &'a MetricWriter,
    run: &'a RunRecord,
    me: &'a Claimant,
    index: usize,
    resumed_from: Option<u64>,
    options: &'a Options<'a>,
    observer: &'a mut dyn Observer,
}

impl Recorder for StoreRecorder<'_> {
    fn started(&mut self, placement: &Placement) -> Result<(), String> {
        let (backend, adapter) = (placement.backend, placement.adapter);
        let executed =
            provenance::executed(self.me, placement, self.run.attempts, self.options.device);
        self.store
            .record_executed(self.run.id, self.me, &executed)
            .map_err(|e| format!("cannot record where the run executes: {e}"))?;
        let started = Started {
            index: self.index,
            backend,
            adapter,
            resumed_from: self.resumed_from,
        };
        self.observer.run_started(self.run, &started);
        Ok(())
    }

    fn metrics(&mut self, metrics: Vec<Metric>) {
        self.writer.send(
            metrics
                .into_iter()
                .map(|m| MetricRow {
                    step: m.step,
                    name: m.name,
                    value: m.value,
                    t_ms: m.t_ms,
                })
                .collect(),
        );
    }

    fn checkpoint(&mut self, saved: &Saved) -> Result<(), String> {
        // The metrics up to the checkpoint's step are committed before it is: a run resumed
        // from it re-records only what came after.
        self.writer.flush();
        let row = Checkpoint {
            step: saved.step as i64,
            path: self.store.recorded_path(&saved.dir),
            bytes: saved.bytes as i64,
            blake3: saved.blake3.clone(),
            val_loss: saved.val_loss,
        };
        let t = &self.run.spec.config.train;
        self.store
            .add_checkpoint(self.run.id, &row, t.keep_last as usize, t.keep_best)
            .map_err(|e| format!("cannot record checkpoint {}: {e}", row.path))
    }

    fn progress(&mut self, progress: &Progress) {
        self.writer.progress(progress.step);
        self.observer.progress(self.run, progress);
    }

    fn control(&self) -> Control {
        if let Some(failure) = self.writer.failure() {
            return Control::Fail(failure.to_string());
        }
        if self.options.stop.load(Ordering::SeqCst) {
            return Control::Stop;
        }
        Control::Continue
    }
}

/// The folder a run's data paths are relative to: its manifest's.
fn base_dir(run: &RunRecord) -> PathBuf {
    Path::new(&run.manifest_path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// The newest checkpoint of a run that verifies against its record, with its step; each
/// newer one that does not is reported and passed over.
fn resume_point(
    store: &Store,
    run: &RunRecord,
    observer: &mut dyn Observer,
) -> Result<Option<(PathBuf, u64)>, Error> {
    let checkpoints = store.checkpoints(run.id)?;
    for c in checkpoints.iter().rev() {
        let dir = store.checkpoint_path(&c.path);
        match train::verify_checkpoint(&dir, c.bytes.max(0) as u64, &c.blake3) {
            Ok(()) => return Ok(Some((dir, c.step.max(0) as u64))),
            Err(e) => observer.notice(
                run,
                &format!("checkpoint at step {} cannot be used: {e}", c.step),
            ),
        }
    }
    if !checkpoints.is_empty() {
        observer.notice(
            run,
            "no checkpoint verifies: it starts again from step 0, its metrics recorded anew",
        );
    }
    Ok(None)
}

fn run_one(
    store: &mut Store,
    run: &RunRecord,
    me: &Claimant,
    index: usize,
    options: &Options<'_>,
    observer: &mut dyn Observer,
) -> Result<Outcome, Error> {
    let resume = resume_point(store, run, observer)?;
    // Metrics after the checkpoint resumed from (all of them without one) are recorded again.
    store.truncate_metrics(run.id, resume.as_ref().map_or(-1, |(_, step)| *step as i64))?;
    let writer = MetricWriter::open(store.path(), run.id, me)?;
    let job = train::Job {
        spec: &run.spec,
        base_dir: base_dir(run),
        checkpoint_dir: store.checkpoint_dir(run.id),
        resume: resume.as_ref().map(|(dir, _)| dir.clone()),
        device: options.device,
        until: run.until_step,
    };
    let mut recorder = StoreRecorder {
        store,
        writer: &writer,
        run,
        me,
        index,
        resumed_from: resume.map(|(_, step)| step),
        options,
        observer,
    };
    // A panic inside the backend fails this run, not the queue.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train::train(&job, &mut recorder)
    }));
    // Rows the writer could not commit fail the run, whatever training did.
    let written = writer.close();
    Ok(match (result, written) {
        (_, Err(failure)) => Outcome::Failed {
            reason: failure.to_string(),
        },
        (Ok(Ok(Trained::Completed(summary))), Ok(_)) => Outcome::Completed { summary },
        (Ok(Ok(Trained::Paused { step, summary })), Ok(_)) => Outcome::Paused { step, summary },
        (Ok(Err(train::Error::Interrupted { step })), Ok(_)) => Outcome::Interrupted {
            step,
            reason: format!("interrupted at step {step} by the user"),
        },
        (Ok(Err(e)), Ok(_)) => Outcome::Failed {
            reason: e.to_string(),
        },
        (Err(panic), Ok(_)) => Outcome::Failed {
            reason: format!("the backend panicked: {}", panic_message(&*panic)),
        },
    })
}

/// What a caught panic said.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}
