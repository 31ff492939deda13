//! Several workers on one machine: `xp run --jobs N` starts N `xp worker` processes that take
//! runs from the store's queue (a claim is a write transaction, so a run goes to exactly one),
//! spreads them over the machine's GPUs, relays what they report to one observer, and passes
//! Ctrl-C on to them.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::time::Duration;

use super::events::Event;
use super::{Error, Observer, Pending, Report, Started};
use crate::store::{Outcome, Recovered, RunRecord, Store};

/// How a pool runs.
pub struct Pool<'a> {
    /// The store the workers open (as this process names it).
    pub db: &'a Path,
    pub experiment: &'a str,
    pub jobs: u32,
    /// The GPUs to spread workers over; empty: every GPU found.
    pub devices: &'a [u32],
    pub fail_fast: bool,
    /// Ctrl-C (or SIGTERM) signals received so far; each is passed on to the workers.
    pub signals: &'a AtomicUsize,
}

/// Which GPU each of `jobs` workers gets: round robin over `devices`, or over the `gpus`
/// found when none are named; none where there is at most one GPU (each worker then takes the
/// first, as a single process would).
pub fn assign(jobs: u32, devices: &[u32], gpus: usize) -> Vec<Option<u32>> {
    (0..jobs as usize)
        .map(|i| match devices {
            [] if gpus > 1 => Some((i % gpus) as u32),
            [] => None,
            named => Some(named[i % named.len()]),
        })
        .collect()
}

/// The longest the other workers wait for the first one's first step: a cold start on an H200
/// took 59 s (docs/benchmarks.md); past this the cache it fills is not worth more waiting.
const WARM_UP: Duration = Duration::from_secs(180);

enum Message {
    Line(usize, String),
    Closed(usize),
}

/// A started worker and what it has told.
struct Worker {
    child: Child,
    closed: bool,
}

impl Pool<'_> {
    /// Starts the workers, relays their reports until every one has ended, and adds up what
    /// the queue did. `gpus` is how many GPUs this machine has, for spreading workers.
    pub fn run(
        &self,
        store: &Store,
        pending: Pending,
        recovered: &[Recovered],
        gpus: usize,
        observer: &mut dyn Observer,
    ) -> Result<Report, Error> {
        observer.queue_started(pending, recovered);
        let mut report = Report {
            recovered: recovered.len(),
            ..Report::default()
        };
        let count = (self.jobs as usize).min(pending.runs);
        if count == 0 {
            return Ok(report);
        }
        let devices = assign(count as u32, self.devices, gpus);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut workers: Vec<Option<Worker>> = (0..count).map(|_| None).collect();
        // On each GPU its first worker starts at once and the others once it has trained its
        // first step (or ended, or WARM_UP has passed): that step fills CubeCL's kernel and
        // autotune caches and the GPU driver's shader cache for that GPU, so that the others
        // read them rather than compile and tune the same kernels at the same moment. On
        // 2 × H200, two workers started together on a GPU that had not run the configuration
        // took 51 s each over their first run against 13 s (docs/benchmarks.md, "Two GPUs").
        let waiting = &mut Stagger::new(&devices);
        // The relay's last sender, dropped once no worker waits (`start`), so that the relay
        // ends when every started worker has.
        let tx = &mut Some(tx);
        self.start(
            &mut workers,
            waiting.leaders(),
            &devices,
            tx,
            waiting,
            false,
        )?;
        let mut runs: HashMap<i64, RunRecord> = HashMap::new();
        let mut started = 0;
        let mut forwarded = 0;
        let mut failing = false;
        while workers.iter().flatten().any(|w| !w.closed) || waiting.any() {
            let received = self.signals.load(Ordering::SeqCst);
            if received > forwarded {
                forwarded = received;
                signal_all(&workers);
            }
            if waiting.timed_out() {
                let late = waiting.release_all();
                let stopping = forwarded > 0 || failing;
                self.start(&mut workers, late, &devices, tx, waiting, stopping)?;
            }
            let message = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let (i, line) = match message {
                Message::Closed(i) => {
                    if let Some(w) = workers[i].as_mut() {
                        w.closed = true;
                    }
                    let followers = waiting.release(i);
                    let stopping = forwarded > 0 || failing;
                    self.start(&mut workers, followers, &devices, tx, waiting, stopping)?;
                    continue;
                }
                Message::Line(i, line) => (i, line),
            };
            let Some(event) = Event::parse(&line) else {
                tracing::info!("worker {i}: {line}");
                continue;
            };
            // A GPU's first worker's first step, or the end of its run, releases the others on
            // that GPU; a failure that stops the queue (--fail-fast) releases nothing.
            if matches!(event, Event::Progress { .. } | Event::RunFinished { .. }) {
                let failed = matches!(
                    &event,
                    Event::RunFinished {
                        outcome: Outcome::Failed { .. },
                        ..
                    }
                );
                let stopping = forwarded > 0 || failing || (failed && self.fail_fast);
                let followers = waiting.release(i);
                self.start(&mut workers, followers, &devices, tx, waiting, stopping)?;
            }
            match event {
                Event::QueueStarted { recovered } => {
                    report.recovered += recovered.len();
                    observer.queue_started(Pending::default(), &recovered);
                }
                Event::RunStarted {
                    run,
                    backend,
                    adapter,
                    resumed_from,
                } => {
                    started += 1;
                    let record = store.run_by_id(run)?;
                    observer.run_started(
                        &record,
                        &Started {
                            index: started,
                            backend: &backend,
                            adapter: &adapter,
                            resumed_from,
                        },
                    );
                    runs.insert(run, record);
                }
                Event::Progress { run, progress } => {
                    if let Some(record) = runs.get(&run) {
                        observer.progress(record, &progress);
                    }
                }
                Event::Notice { run, text } => {
                    let record = match runs.get(&run) {
                        Some(r) => r.clone(),
                        None => store.run_by_id(run)?,
                    };
                    observer.notice(&record, &text);
                }
                Event::Decided { decisions } => {
                    report.count_decisions(&decisions);
                    observer.decided(&decisions);
                }
                Event::RunFinished { run, outcome } => {
                    let record = match runs.remove(&run) {
                        Some(r) => r,
                        None => store.run_by_id(run)?,
                    };
                    report.count(&outcome);
                    observer.run_finished(&record, &outcome);
                    // The queue stops at its first failure: the other workers checkpoint and
                    // stop as on Ctrl-C.
                    if self.fail_fast && matches!(outcome, Outcome::Failed { .. }) && !failing {
                        failing = true;
                        signal_all(&workers);
                    }
                }
            }
        }
        for (i, w) in workers.iter_mut().enumerate() {
            let Some(w) = w else { continue };
            let status = w
                .child
                .wait()
                .map_err(|e| Error::Worker(format!("cannot wait for worker {i}: {e}")))?;
            if !matches!(status.code(), Some(0 | 1 | 130)) {
                // A worker that died outside a run: the run it held is recovered as an orphan
                // by the next `xp run`.
                tracing::warn!("worker {i} ended with {status}");
                report.failed += 1;
            }
        }
        report.stopped = forwarded > 0;
        Ok(report)
    }

    /// Starts the workers `ids` that [`Stagger`] released, unless the queue is already
    /// stopping; then drops the relay's last sender if no worker waits any more, so that the
    /// relay ends when every started worker has.
    fn start(
        &self,
        workers: &mut [Option<Worker>],
        ids: Vec<usize>,
        devices: &[Option<u32>],
        tx: &mut Option<Sender<Message>>,
        waiting: &Stagger,
        stopping: bool,
    ) -> Result<(), Error> {
        if let Some(sender) = tx.as_ref().filter(|_| !stopping) {
            for i in ids {
                workers[i] = Some(self.spawn(i, devices[i], sender.clone())?);
            }
        }
        if !waiting.any() {
            *tx = None;
        }
        Ok(())
    }

    /// Starts worker `i` as `xp worker`, in a process group of its own so that a terminal's
    /// Ctrl-C reaches only this process, which passes it on.
    fn spawn(&self, i: usize, device: Option<u32>, tx: Sender<Message>) -> Result<Worker, Error> {
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe()
            .map_err(|e| Error::Worker(format!("cannot find this xp binary: {e}")))?;
        let mut cmd = Command::new(exe);
        cmd.arg("--db")
            .arg(self.db)
            .args(["worker", "--experiment", self.experiment]);
        if let Some(d) = device {
            cmd.args(["--device", &d.to_string()]);
        }
        if self.fail_fast {
            cmd.arg("--fail-fast");
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .map_err(|e| Error::Worker(format!("cannot start worker {i}: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::Worker(format!("worker {i} has no output")))?;
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(Message::Line(i, line)).is_err() {
                    break;
                }
            }
            let _ = tx.send(Message::Closed(i));
        });
        Ok(Worker {
            child,
            closed: false,
        })
    }
}

/// Which workers wait to start, and for whom: on each GPU, the workers after its first wait
/// for that first one's first step.
struct Stagger {
    /// Per worker, the first worker on its GPU (itself for a first one).
    leader: Vec<usize>,
    /// The first workers whose GPU still has workers waiting for them.
    holding: Vec<usize>,
    since: std::time::Instant,
}

impl Stagger {
    fn new(devices: &[Option<u32>]) -> Stagger {
        let leader: Vec<usize> = devices
            .iter()
            .map(|d| devices.iter().position(|e| e == d).unwrap_or(0))
            .collect();
        let holding: Vec<usize> = (0..devices.len())
            .filter(|&i| leader[i] == i && leader.iter().filter(|&&l| l == i).count() > 1)
            .collect();
        Stagger {
            leader,
            holding,
            since: std::time::Instant::now(),
        }
    }

    /// The workers that start at once: the first on each GPU.
    fn leaders(&self) -> Vec<usize> {
        (0..self.leader.len())
            .filter(|&i| self.leader[i] == i)
            .collect()
    }

    fn any(&self) -> bool {
        !self.holding.is_empty()
    }

    fn timed_out(&self) -> bool {
        self.any() && self.since.elapsed() >= WARM_UP
    }

    /// The workers that waited for worker `i`, if it is a first one still holding them.
    fn release(&mut self, i: usize) -> Vec<usize> {
        if !self.holding.contains(&i) {
            return Vec::new();
        }
        self.holding.retain(|&l| l != i);
        (0..self.leader.len())
            .filter(|&f| f != i && self.leader[f] == i)
            .collect()
    }

    /// Every worker still waiting.
    fn release_all(&mut self) -> Vec<usize> {
        let holding = std::mem::take(&mut self.holding);
        (0..self.leader.len())
            .filter(|&f| self.leader[f] != f && holding.contains(&self.leader[f]))
            .collect()
    }
}

/// Passes a Ctrl-C on to every worker still running.
fn signal_all(workers: &[Option<Worker>]) {
    for w in workers.iter().flatten().filter(|w| !w.closed) {
        // SAFETY: kill(2) with a pid this process started and has not yet waited for.
        unsafe {
            libc::kill(w.child.id() as libc::pid_t, libc::SIGINT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_each_gpu_the_first_worker_starts_and_the_others_wait_for_it() {
        // Four workers on two GPUs: 0 and 1 start, 2 waits for 0 and 3 for 1.
        let mut s = Stagger::new(&assign(4, &[], 2));
        assert_eq!(s.leaders(), [0, 1]);
        assert_eq!(s.release(2), Vec::<usize>::new());
        assert_eq!(s.release(1), [3]);
        assert_eq!(s.release(1), Vec::<usize>::new());
        assert!(s.any());
        assert_eq!(s.release_all(), [2]);
        assert!(!s.any());
        // One GPU (or none): the first worker alone, then the rest.
        let mut s = Stagger::new(&assign(3, &[], 1));
        assert_eq!(s.leaders(), [0]);
        assert_eq!(s.release(0), [1, 2]);
        assert!(!s.any());
        // One worker per GPU: all start at once, none waits.
        let s = Stagger::new(&assign(2, &[], 2));
        assert_eq!(s.leaders(), [0, 1]);
        assert!(!s.any());
    }

    #[test]
    fn workers_are_spread_over_the_gpus() {
        assert_eq!(assign(4, &[0, 1], 2), [Some(0), Some(1), Some(0), Some(1)]);
        assert_eq!(assign(3, &[1], 2), [Some(1), Some(1), Some(1)]);
        assert_eq!(assign(4, &[], 2), [Some(0), Some(1), Some(0), Some(1)]);
        assert_eq!(assign(2, &[], 1), [None, None]);
        assert_eq!(assign(2, &[], 0), [None, None]);
        assert_eq!(
            assign(5, &[2, 0, 3], 8),
            [Some(2), Some(0), Some(3), Some(2), Some(0)]
        );
    }
}
