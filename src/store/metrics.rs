//! Metrics: the writer thread a training run records through (which also beats the run's
//! heartbeat), and reads of recorded curves.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::{OptionalExtension, params};

use super::queue;
use super::state::{Claimant, HEARTBEAT_EVERY};
use super::{Result, Store};

/// One metric value of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub step: u64,
    pub name: String,
    pub value: f64,
    /// Milliseconds since the run (or its resumption) started.
    pub t_ms: u64,
}

/// Why the metric writer stopped recording. Training stops at its next step when it sees one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteFailure {
    #[error("{cause} while writing metrics at step {step}")]
    Write { cause: String, step: u64 },
    #[error(
        "run-{run} was taken over while it trained (another process found it silent and \
         recovered it); this process stopped"
    )]
    LostClaim { run: i64 },
    #[error("the metric writer crashed: {0}")]
    Panicked(String),
}

enum Message {
    Rows(Vec<MetricRow>),
    /// The step the run has reached.
    Progress(u64),
    /// Answered once everything sent before it is committed.
    Flush(Sender<()>),
}

/// Writes one run's metric rows and progress in batched transactions on its own connection
/// and thread, so that the training loop never waits for the disk, and beats the run's
/// heartbeat every [`HEARTBEAT_EVERY`] while the run lives (so that a long first step, such
/// as shader compilation, never looks like a dead process).
pub struct MetricWriter {
    tx: Option<Sender<Message>>,
    handle: Option<std::thread::JoinHandle<u64>>,
    failure: Arc<Mutex<Option<WriteFailure>>>,
}

impl MetricWriter {
    /// Starts a writer for `run`, which `by` holds.
    pub fn open(path: &Path, run: i64, by: &Claimant) -> Result<MetricWriter> {
        let store = Store::open_existing(path)?;
        let (tx, rx) = std::sync::mpsc::channel::<Message>();
        let failure = Arc::new(Mutex::new(None));
        let shared = failure.clone();
        let by = by.clone();
        let handle = std::thread::spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                write_loop(store, run, &by, &rx)
            }));
            let (written, failed) = match outcome {
                Ok((written, failed)) => (written, failed),
                Err(panic) => (0, Some(WriteFailure::Panicked(panic_message(&panic)))),
            };
            if let Some(f) = failed {
                // Reported through the run's outcome; here only for the debug log.
                tracing::debug!("run-{run}: {f}");
                *shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
            }
            written
        });
        Ok(MetricWriter {
            tx: Some(tx),
            handle: Some(handle),
            failure,
        })
    }

    pub fn send(&self, rows: Vec<MetricRow>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Message::Rows(rows));
        }
    }

    /// Records the step the run has reached (with a heartbeat).
    pub fn progress(&self, step: u64) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Message::Progress(step));
        }
    }

    /// Waits until every row sent so far is committed (or the writer has stopped): a
    /// checkpoint is recorded only after the metrics up to its step, so that a run resumed
    /// from it after a crash records no step twice and misses none.
    pub fn flush(&self) {
        let (ack, done) = std::sync::mpsc::channel();
        if let Some(tx) = &self.tx
            && tx.send(Message::Flush(ack)).is_ok()
        {
            // An error: the writer ended (it failed, and says why through `failure`).
            let _ = done.recv();
        }
    }

    /// Why the writer stopped recording, if it did.
    pub fn failure(&self) -> Option<WriteFailure> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until every row sent so far is committed; returns how many were written, or why
    /// some were not.
    pub fn close(mut self) -> std::result::Result<u64, WriteFailure> {
        self.tx.take();
        let written = match self.handle.take().map(|h| h.join()) {
            Some(Ok(n)) => n,
            Some(Err(panic)) => return Err(WriteFailure::Panicked(panic_message(&panic))),
            None => 0,
        };
        match self.failure() {
            Some(f) => Err(f),
            None => Ok(written),
        }
    }
}

impl Drop for MetricWriter {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

/// The writer thread: batches whatever is waiting into one transaction; beats the heartbeat
/// when nothing arrives for a while. Returns the rows written and why it stopped early.
fn write_loop(
    store: Store,
    run: i64,
    by: &Claimant,
    rx: &Receiver<Message>,
) -> (u64, Option<WriteFailure>) {
    let mut conn = store.conn;
    let mut names: HashMap<String, i64> = HashMap::new();
    let mut written = 0;
    let mut last_beat = Instant::now();
    // The furthest step reported so far: what a failure is reported at, even when the
    // batch that failed was only a heartbeat.
    let mut reached = 0;
    loop {
        let wait = HEARTBEAT_EVERY.saturating_sub(last_beat.elapsed());
        let first = match rx.recv_timeout(wait) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return (written, None),
        };
        let mut rows = Vec::new();
        let mut step = None;
        let mut flushes = Vec::new();
        for message in first.into_iter().chain(rx.try_iter()) {
            match message {
                Message::Rows(r) => rows.extend(r),
                Message::Progress(s) => step = step.max(Some(s)),
                Message::Flush(ack) => {
                    // Later messages wait for the next batch: this one ends here.
                    flushes.push(ack);
                    break;
                }
            }
        }
        reached = rows
            .iter()
            .map(|r| r.step)
            .chain(step)
            .fold(reached, u64::max);
        let at = reached;
        let fail = |e: rusqlite::Error| WriteFailure::Write {
            cause: super::describe(&e),
            step: at,
        };
        let result = (|| -> rusqlite::Result<(u64, bool)> {
            let t = conn.transaction()?;
            // Rows of a run this process no longer holds would mix with its new holder's.
            if !queue::beat(&t, run, by, step)? {
                return Ok((0, false));
            }
            let n = write_rows(&t, run, &rows, &mut names)?;
            t.commit()?;
            Ok((n, true))
        })();
        last_beat = Instant::now();
        for ack in flushes {
            let _ = ack.send(());
        }
        match result {
            Ok((n, true)) => written += n,
            Ok((_, false)) => return (written, Some(WriteFailure::LostClaim { run })),
            Err(e) => return (written, Some(fail(e))),
        }
    }
}

/// Rows per multi-row INSERT: one statement per 128 rows costs a fraction of 128 statements.
const ROWS_PER_INSERT: usize = 128;

pub(super) fn write_rows(
    t: &rusqlite::Transaction<'_>,
    run: i64,
    rows: &[MetricRow],
    names: &mut HashMap<String, i64>,
) -> rusqlite::Result<u64> {
    let mut resolved: Vec<(i64, i64, f64, i64)> = Vec::with_capacity(rows.len());
    for row in rows {
        let name_id = match names.get(&row.name) {
            Some(id) => *id,
            None => {
                t.execute(
                    "INSERT OR IGNORE INTO metric_names (name) VALUES (?1)",
                    [&row.name],
                )?;
                let id: i64 = t.query_row(
                    "SELECT id FROM metric_names WHERE name = ?1",
                    [&row.name],
                    |r| r.get(0),
                )?;
                names.insert(row.name.clone(), id);
                id
            }
        };
        resolved.push((name_id, row.step as i64, row.value, row.t_ms as i64));
    }
    // In key order, each insert lands beside the previous one in the b-tree.
    resolved.sort_unstable_by_key(|r| (r.0, r.1));
    let sql = |n: usize| {
        let mut sql = String::from(
            "INSERT OR REPLACE INTO metrics (run_id, name_id, step, value, t_ms) VALUES ",
        );
        sql.push_str(&vec!["(?, ?, ?, ?, ?)"; n].join(", "));
        sql
    };
    let mut chunks = resolved.chunks_exact(ROWS_PER_INSERT);
    if chunks.len() > 0 {
        let mut many = t.prepare_cached(&sql(ROWS_PER_INSERT))?;
        for chunk in &mut chunks {
            let mut i = 1;
            for &(name, step, value, t_ms) in chunk {
                many.raw_bind_parameter(i, run)?;
                many.raw_bind_parameter(i + 1, name)?;
                many.raw_bind_parameter(i + 2, step)?;
                many.raw_bind_parameter(i + 3, value)?;
                many.raw_bind_parameter(i + 4, t_ms)?;
                i += 5;
            }
            many.raw_execute()?;
        }
    }
    let mut one = t.prepare_cached(&sql(1))?;
    for &(name, step, value, t_ms) in chunks.remainder() {
        one.execute(params![run, name, step, value, t_ms])?;
    }
    Ok(rows.len() as u64)
}

impl Store {
    /// Removes a run's metrics after `step` (they are recorded again when it resumes from there).
    pub fn truncate_metrics(&self, id: i64, step: i64) -> Result<usize> {
        Ok(self.conn.execute(
            "DELETE FROM metrics WHERE run_id = ?1 AND step > ?2",
            params![id, step],
        )?)
    }

    /// The last recorded value of a metric: (step, value).
    pub fn latest_metric(&self, id: i64, name: &str) -> Result<Option<(i64, f64)>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT m.step, m.value FROM metrics m
                 WHERE m.run_id = ?1 AND m.name_id = (SELECT id FROM metric_names WHERE name = ?2)
                 ORDER BY m.step DESC LIMIT 1",
            )?
            .query_row(params![id, name], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// The names of the metrics a run recorded.
    pub fn metric_names(&self, id: i64) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT n.name FROM metric_names n WHERE EXISTS
                 (SELECT 1 FROM metrics m WHERE m.run_id = ?1 AND m.name_id = n.id) ORDER BY n.name",
        )?;
        let rows = stmt.query_map([id], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One metric's values for a run: (step, value), by step.
    pub fn metric(&self, id: i64, name: &str) -> Result<Vec<(i64, f64)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT step, value FROM metrics
             WHERE run_id = ?1 AND name_id = (SELECT id FROM metric_names WHERE name = ?2)
             ORDER BY step",
        )?;
        let rows = stmt.query_map(params![id, name], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One metric's rows for a run after `after` (all of them for `None`): (step, value,
    /// t_ms), by step.
    pub fn metric_rows(
        &self,
        id: i64,
        name: &str,
        after: Option<i64>,
    ) -> Result<Vec<(i64, f64, i64)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT step, value, t_ms FROM metrics
             WHERE run_id = ?1 AND name_id = (SELECT id FROM metric_names WHERE name = ?2)
               AND step > ?3
             ORDER BY step",
        )?;
        let rows = stmt.query_map(params![id, name, after.unwrap_or(i64::MIN)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The names of the metrics any of the given runs recorded.
    pub fn metric_names_of(&self, ids: &[i64]) -> Result<Vec<String>> {
        let mut names = std::collections::BTreeSet::new();
        for &id in ids {
            names.extend(self.metric_names(id)?);
        }
        Ok(names.into_iter().collect())
    }

    /// Streams the metrics of the given runs, by run, name and step: (run, name, step, value, t_ms).
    pub fn each_metric(
        &self,
        runs: &[i64],
        mut f: impl FnMut(i64, &str, i64, f64, i64) -> std::io::Result<()>,
    ) -> Result<std::io::Result<()>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT n.name, m.step, m.value, m.t_ms FROM metrics m JOIN metric_names n ON n.id = m.name_id
             WHERE m.run_id = ?1 ORDER BY m.name_id, m.step",
        )?;
        for &run in runs {
            let mut rows = stmt.query([run])?;
            while let Some(r) = rows.next()? {
                let name: String = r.get(0)?;
                if let Err(e) = f(run, &name, r.get(1)?, r.get(2)?, r.get(3)?) {
                    return Ok(Err(e));
                }
            }
        }
        Ok(Ok(()))
    }
}
