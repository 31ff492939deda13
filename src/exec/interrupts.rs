//! Ctrl-C and SIGTERM while a queue trains. The first signal sets `stop`, so the run under way
//! finishes its step, writes a checkpoint and is recorded as interrupted. A second one, in a
//! process that trains, records its runs as interrupted at once and exits with 130; in a
//! process that relays to workers, it is only counted, and passed on to them.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::store::Store;

/// The exit code of a process stopped at once by a second signal (128 + SIGINT, as shells use).
pub const EXIT_AT_ONCE: u8 = 130;

/// What a signal did, for the person who sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The first: the run under way stops after its step, with a checkpoint.
    Stopping,
    /// A second, in a process that relays: passed on to the workers.
    Relayed,
    /// A second, in a process that trains: its runs are recorded as interrupted and the
    /// process exits with [`EXIT_AT_ONCE`] right after this is told.
    StoppedAtOnce,
}

/// The signals received so far, as the queue reads them.
pub struct Interrupts {
    /// Set by the first signal.
    pub stop: Arc<AtomicBool>,
    /// How many signals came.
    pub count: Arc<AtomicUsize>,
}

impl Interrupts {
    /// Handles SIGINT and SIGTERM from now on, for a queue on the store at `db`; `tell` says
    /// what each signal did (the command line prints it).
    pub fn install(db: PathBuf, relay: bool, tell: fn(Signal)) -> std::io::Result<Interrupts> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let (flag, counter) = (stop.clone(), count.clone());
        std::thread::spawn(move || {
            for _ in signals.forever() {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                if n == 1 {
                    flag.store(true, Ordering::SeqCst);
                    tell(Signal::Stopping);
                    continue;
                }
                if relay {
                    tell(Signal::Relayed);
                    continue;
                }
                // Metrics after the last checkpoint are recorded again when the run resumes.
                if let Ok(store) = Store::open_existing(&db) {
                    let me = super::provenance::this_process();
                    let _ = store.abandon_runs_of(&me, "stopped at once by a second Ctrl-C");
                }
                tell(Signal::StoppedAtOnce);
                std::process::exit(EXIT_AT_ONCE.into());
            }
        });
        Ok(Interrupts { stop, count })
    }
}
