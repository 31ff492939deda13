//! The queue executor: takes an experiment's queued runs one at a time, trains each, and
//! records what happened. A failing run is recorded and the queue goes on.

use std::path::{Path, PathBuf};

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
    observer: &'a mut dyn Observer,
}

impl Recorder for StoreRecorder<'_> {
    fn started(&mut self, backend: &str, adapter: &str, _tokenizer: &serde_json::Value) {
        if let Err(e) = self.store.set_device(self.run.id, backend, adapter) {
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
}

/// Counts of what the queue did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub completed: usize,
    pub failed: usize,
    pub interrupted: usize,
}

/// Runs the experiment's queue to its end. `specs` are the validated specs of the plan just
/// made; a queued run not among them (left by an earlier manifest) uses its stored spec.
pub fn execute(
    store: &mut Store,
    experiment: &str,
    specs: &[RunSpec],
    base_dir: &Path,
    fail_fast: bool,
    observer: &mut dyn Observer,
) -> Result<Report, store::Error> {
    let mut report = Report::default();
    let host = sysinfo::System::host_name().ok();
    let mut index = 0;
    while let Some(run) = store.claim_next(experiment, host.as_deref())? {
        index += 1;
        let spec = match specs.iter().find(|s| s.key == run.key) {
            Some(s) => s.clone(),
            None => match serde_json::from_value::<RunSpec>(run.spec.clone()) {
                Ok(s) => s,
                Err(e) => {
                    store.finish(
                        run.id,
                        "failed",
                        Some(&format!("stored spec unreadable: {e}")),
                    )?;
                    report.failed += 1;
                    continue;
                }
            },
        };
        let outcome = run_one(store, &run, &spec, base_dir, index, observer)?;
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
                store.heartbeat(run.id, spec.config.train.steps)?;
                store.finish(run.id, "completed", None)?;
                report.completed += 1;
            }
            Outcome::Failed(error) => {
                store.finish(run.id, "failed", Some(error))?;
                report.failed += 1;
            }
            Outcome::Interrupted(_) => {
                store.finish(run.id, "interrupted", None)?;
                report.interrupted += 1;
            }
        }
        observer.run_finished(&run, &outcome);
        if matches!(outcome, Outcome::Interrupted(_))
            || (fail_fast && matches!(outcome, Outcome::Failed(_)))
        {
            break;
        }
    }
    Ok(report)
}

fn run_one(
    store: &mut Store,
    run: &RunRow,
    spec: &RunSpec,
    base_dir: &Path,
    index: usize,
    observer: &mut dyn Observer,
) -> Result<Outcome, store::Error> {
    // Resume from the newest checkpoint; metrics recorded after it are recorded again.
    let resume = store
        .checkpoints(run.id)?
        .into_iter()
        .last()
        .filter(|c| Path::new(&c.path).join("state.json").exists());
    if let Some(c) = &resume {
        store.truncate_metrics(run.id, c.step)?;
    }
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
