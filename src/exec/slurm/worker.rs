//! One Slurm array task: trains its run in the shared folder and records the attempt in a
//! journal of its own (never in runs.db). On the time-limit (or preemption) signal it writes a
//! checkpoint, records the run as interrupted and requeues its own task, which then resumes
//! from that checkpoint as `xp resume` would.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::super::{Error, panic_message, provenance};
use super::{TaskSpec, cluster, journals};
use crate::store::Outcome;
use crate::store::checkpoints::retention;
use crate::store::journal::{self, Entry, Journal};
use crate::train::{self, Control, Metric, Placement, Progress, Recorder, Saved};

/// A checkpoint an earlier attempt's journal says it wrote (and retention has not dropped).
struct Written {
    step: u64,
    path: PathBuf,
    bytes: u64,
    blake3: String,
    val_loss: Option<f64>,
}

/// Exit codes of a task: Slurm reads them (and `sacct` shows them).
const OK: u8 = 0;
const FAILED: u8 = 1;

/// The task's place in its array, from Slurm's environment.
struct Task {
    job: String,
    index: usize,
}

impl Task {
    fn from_env() -> Result<Task, Error> {
        let var = |name: &str| {
            std::env::var(name).map_err(|_| {
                Error::Usage(format!(
                    "{name} is not set: `xp worker --slurm` runs inside a Slurm array task"
                ))
            })
        };
        let index = var("SLURM_ARRAY_TASK_ID")?
            .parse()
            .map_err(|e| Error::Usage(format!("SLURM_ARRAY_TASK_ID: {e}")))?;
        Ok(Task {
            job: var("SLURM_ARRAY_JOB_ID")?,
            index,
        })
    }

    /// `123_4`.
    fn id(&self) -> String {
        format!("{}_{}", self.job, self.index)
    }
}

/// Trains the run of this array task; the task's exit code. `log` gets the lines meant for
/// the task's log file.
pub fn run(tasks: &Path, log: &mut dyn FnMut(&str)) -> Result<u8, Error> {
    let task = Task::from_env()?;
    let listing = std::fs::read_to_string(tasks)
        .map_err(|e| Error::Slurm(format!("cannot read {}: {e}", tasks.display())))?;
    let folder = listing
        .lines()
        .nth(task.index)
        .map(PathBuf::from)
        .ok_or_else(|| {
            Error::Usage(format!(
                "{} has no line for task {}",
                tasks.display(),
                task.index
            ))
        })?;
    let spec_path = folder.join("spec.json");
    let spec: TaskSpec = std::fs::read(&spec_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| Error::Slurm(format!("{}: {e}", spec_path.display())))?;

    // Earlier attempts of this run: their journals say which checkpoints exist.
    let earlier = journals(&folder);
    let attempt = earlier.len() as i64 + 1;
    let mut kept: Vec<Written> = Vec::new();
    for path in &earlier {
        let (entries, _) = journal::read_from(path, 0)
            .map_err(|e| Error::Slurm(format!("{}: {e}", path.display())))?;
        for entry in entries {
            if let Entry::Checkpoint {
                step,
                path,
                bytes,
                blake3,
                val_loss,
                dropped,
            } = entry
            {
                kept.retain(|c| c.step != step && !dropped.contains(&c.step));
                kept.push(Written {
                    step,
                    path: PathBuf::from(path),
                    bytes,
                    blake3,
                    val_loss,
                });
            }
        }
    }
    kept.sort_by_key(|c| c.step);
    let resume = kept
        .iter()
        .rev()
        .find(
            |c| match train::verify_checkpoint(&c.path, c.bytes, &c.blake3) {
                Ok(()) => true,
                Err(e) => {
                    log(&format!(
                        "checkpoint at step {} cannot be used: {e}",
                        c.step
                    ));
                    false
                }
            },
        )
        .map(|c| (c.path.clone(), c.step));

    let journal_path = folder.join(format!("attempt-{attempt}.jsonl"));
    let journal = Journal::append(&journal_path)
        .map_err(|e| Error::Slurm(format!("{}: {e}", journal_path.display())))?;
    // USR1 is Slurm's warning before the time limit (or a preemption): checkpoint and come
    // back. TERM and INT (scancel, the end of the grace time): checkpoint and stop.
    let stop = Arc::new(AtomicBool::new(false));
    let requeue = Arc::new(AtomicBool::new(false));
    for (signal, flags) in [
        (
            signal_hook::consts::SIGUSR1,
            vec![stop.clone(), requeue.clone()],
        ),
        (signal_hook::consts::SIGTERM, vec![stop.clone()]),
        (signal_hook::consts::SIGINT, vec![stop.clone()]),
    ] {
        for flag in flags {
            signal_hook::flag::register(signal, flag)
                .map_err(|e| Error::Slurm(format!("cannot handle signal {signal}: {e}")))?;
        }
    }

    let me = provenance::this_process();
    let mut recorder = JournalRecorder {
        journal,
        attempt,
        task: task.id(),
        resumed_from: resume.as_ref().map(|(_, s)| *s),
        me,
        kept: kept.iter().map(|c| (c.step, c.val_loss)).collect(),
        keep_last: spec.spec.config.train.keep_last as usize,
        keep_best: spec.spec.config.train.keep_best,
        checkpoints: folder.join("checkpoints"),
        stop: stop.clone(),
        failed: None,
        log,
    };
    let job = train::Job {
        spec: &spec.spec,
        base_dir: spec.base_dir.clone(),
        checkpoint_dir: folder.join("checkpoints"),
        resume: resume.map(|(dir, _)| dir),
        device: None,
        until: spec.until,
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train::train(&job, &mut recorder)
    }));
    let outcome = match result {
        Ok(Ok(train::Trained::Completed(summary))) => Outcome::Completed { summary },
        Ok(Ok(train::Trained::Paused { step, summary })) => Outcome::Paused { step, summary },
        Ok(Err(train::Error::Interrupted { step })) => Outcome::Interrupted {
            step,
            reason: if requeue.load(Ordering::SeqCst) {
                format!(
                    "interrupted at step {step} by Slurm's time-limit signal; task {} requeued",
                    task.id()
                )
            } else {
                format!("interrupted at step {step}: task {} was stopped", task.id())
            },
        },
        Ok(Err(e)) => Outcome::Failed {
            reason: e.to_string(),
        },
        Err(panic) => Outcome::Failed {
            reason: format!("the backend panicked: {}", panic_message(&*panic)),
        },
    };
    let code = match &outcome {
        Outcome::Failed { .. } => FAILED,
        _ => OK,
    };
    let requeued = matches!(outcome, Outcome::Interrupted { .. }) && requeue.load(Ordering::SeqCst);
    recorder.write(&Entry::Finished {
        at: crate::store::now(),
        outcome,
    });
    let _ = recorder.journal.sync();
    if let Some(e) = recorder.failed.take() {
        (recorder.log)(&format!("the journal could not be written: {e}"));
        return Ok(FAILED);
    }
    if requeued {
        // Everything is on disk: Slurm may end this process now and start the task again.
        cluster::requeue(&task.id())?;
    }
    Ok(code)
}

/// Records an attempt in its journal; retention of the run's checkpoints is its own.
struct JournalRecorder<'l> {
    journal: Journal,
    attempt: i64,
    task: String,
    resumed_from: Option<u64>,
    me: crate::store::Claimant,
    /// Checkpoints kept: (step, validation loss).
    kept: Vec<(u64, Option<f64>)>,
    keep_last: usize,
    keep_best: bool,
    checkpoints: PathBuf,
    stop: Arc<AtomicBool>,
    /// The first error writing the journal: training stops rather than go on unrecorded.
    failed: Option<String>,
    log: &'l mut dyn FnMut(&str),
}

impl JournalRecorder<'_> {
    fn write(&mut self, entry: &Entry) {
        if let Err(e) = self.journal.write(entry)
            && self.failed.is_none()
        {
            self.failed = Some(e.to_string());
        }
    }
}

impl Recorder for JournalRecorder<'_> {
    fn started(&mut self, placement: &Placement) -> Result<(), String> {
        let (backend, adapter) = (placement.backend, placement.adapter);
        let mut executed = provenance::executed(&self.me, placement, self.attempt, None);
        executed.slurm_task = Some(self.task.clone());
        self.write(&Entry::Started {
            at: crate::store::now(),
            attempt: self.attempt,
            resumed_from: self.resumed_from,
            executed,
        });
        (self.log)(&format!(
            "{} attempt {} on {backend} ({adapter}){}",
            self.task,
            self.attempt,
            self.resumed_from
                .map(|s| format!(", resuming from step {s}"))
                .unwrap_or_default()
        ));
        Ok(())
    }

    fn metrics(&mut self, metrics: Vec<Metric>) {
        let rows = metrics
            .into_iter()
            .map(|m| (m.step, m.name, m.value, m.t_ms))
            .collect();
        self.write(&Entry::Metrics { rows });
    }

    fn checkpoint(&mut self, saved: &Saved) -> Result<(), String> {
        self.kept.retain(|(s, _)| *s != saved.step);
        self.kept.push((saved.step, saved.val_loss));
        let as_i64: Vec<(i64, Option<f64>)> =
            self.kept.iter().map(|(s, v)| (*s as i64, *v)).collect();
        let dropped: Vec<u64> = retention(&as_i64, self.keep_last, self.keep_best)
            .into_iter()
            .map(|s| s as u64)
            .collect();
        self.kept.retain(|(s, _)| !dropped.contains(s));
        let path = std::path::absolute(&saved.dir).unwrap_or_else(|_| saved.dir.clone());
        self.write(&Entry::Checkpoint {
            step: saved.step,
            path: path.to_string_lossy().into_owned(),
            bytes: saved.bytes,
            blake3: saved.blake3.clone(),
            val_loss: saved.val_loss,
            dropped: dropped.clone(),
        });
        self.journal.sync().map_err(|e| format!("journal: {e}"))?;
        for step in dropped {
            let _ = std::fs::remove_dir_all(self.checkpoints.join(format!("step-{step:07}")));
        }
        Ok(())
    }

    fn progress(&mut self, progress: &Progress) {
        self.write(&Entry::Progress {
            at: crate::store::now(),
            step: progress.step,
        });
        (self.log)(&format!(
            "{} step {}/{}{}",
            self.task,
            progress.step,
            progress.steps,
            progress
                .train_loss
                .map(|l| format!("  loss {l:.4}"))
                .unwrap_or_default()
        ));
    }

    fn control(&self) -> Control {
        if let Some(e) = &self.failed {
            return Control::Fail(format!("the journal could not be written: {e}"));
        }
        if self.stop.load(Ordering::SeqCst) {
            return Control::Stop;
        }
        Control::Continue
    }
}
