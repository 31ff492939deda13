//! Execution policy: whether a queue trains in this process or is spread over worker
//! processes, with Ctrl-C handled either way.

use std::path::Path;

use super::interrupts::{Interrupts, Signal};
use super::{Error, Observer, Options, Prepared, Queue, Report, execute, pool, prepare};
use crate::store::{Reserve, Store};
use crate::train;

/// How many processes train a queue, and on which GPUs.
pub struct Workers<'a> {
    pub jobs: u32,
    /// The GPUs to spread workers over; empty: every GPU found.
    pub devices: &'a [u32],
}

/// Executes a queue with Ctrl-C handled as [`interrupts`] says: in this process, or, for an
/// experiment with more than one job, by worker processes spread over the GPUs. `db` is the
/// store as this process names it (the workers open it too); `tell` says what a signal did.
pub fn run_queue(
    store: &mut Store,
    db: &Path,
    queue: Queue<'_>,
    fail_fast: bool,
    workers: &Workers<'_>,
    observer: &mut dyn Observer,
    tell: fn(Signal),
) -> Result<Report, Error> {
    let relay = matches!(queue, Queue::Experiment(_)) && workers.jobs > 1;
    let interrupts = Interrupts::install(db.to_path_buf(), relay, tell).map_err(Error::Signals)?;
    if let (Queue::Experiment(name), true) = (&queue, relay) {
        // Taken here, before any worker starts, so that none claims a run it could not record
        // the end of; the workers find it in place.
        Reserve::hold(store.path())?;
        let Prepared {
            recovered,
            decided,
            pending,
        } = prepare(store, &queue)?;
        observer.decided(&decided);
        let pool = pool::Pool {
            db,
            experiment: name,
            jobs: workers.jobs,
            devices: workers.devices,
            fail_fast,
            signals: &interrupts.count,
        };
        let gpus = if workers.devices.is_empty() {
            train::device::gpu_count()
        } else {
            workers.devices.len()
        };
        let mut report = pool.run(store, pending, &recovered, gpus, observer)?;
        report.count_decisions(&decided);
        return Ok(report);
    }
    let options = Options {
        fail_fast,
        stop: &interrupts.stop,
        device: None,
    };
    execute(store, queue, &options, observer)
}
