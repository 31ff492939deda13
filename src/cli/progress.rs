//! What `xp run` and `xp resume` show while a queue trains (progress bars on a terminal, plain
//! lines otherwise), whether one process trains or several workers do, and how Ctrl-C stops
//! them.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::output::{duration, figure, say, si};
use super::{Context, Result, exit};
use crate::exec::{self, Observer, Outcome, Queue, Started, pool::Pool};
use crate::store::queue::Recovered;
use crate::store::{RunRecord, Store};
use crate::train::Progress;

/// How many workers train a queue, and on which GPUs.
pub struct Workers<'a> {
    pub jobs: u32,
    pub devices: &'a [u32],
}

/// The observer for this terminal: bars when stderr is one, lines otherwise.
fn observer() -> Box<dyn Observer> {
    if std::io::stderr().is_terminal() {
        Box::new(Bars::default())
    } else {
        Box::new(Lines::default())
    }
}

/// Executes a queue with progress on stderr and Ctrl-C handling: in this process, or by
/// several worker processes.
pub fn execute(
    store: &mut Store,
    queue: Queue<'_>,
    fail_fast: bool,
    workers: &Workers<'_>,
    ctx: &Context,
) -> Result<exec::Report> {
    let mut observer = observer();
    if let (Queue::Experiment(name), true) = (&queue, workers.jobs > 1) {
        let interrupts = Interrupts::install(ctx.db.clone(), true)?;
        let (recovered, pending) = exec::prepare(store, &queue)?;
        let pool = Pool {
            db: &ctx.db,
            experiment: name,
            jobs: workers.jobs,
            devices: workers.devices,
            fail_fast,
            signals: &interrupts.count,
        };
        let gpus = if workers.devices.is_empty() {
            crate::train::device::gpu_count()
        } else {
            workers.devices.len()
        };
        return Ok(pool.run(store, pending, &recovered, gpus, observer.as_mut())?);
    }
    let interrupts = Interrupts::install(ctx.db.clone(), false)?;
    let options = exec::Options {
        fail_fast,
        stop: &interrupts.stop,
        device: None,
    };
    Ok(exec::execute(store, queue, &options, observer.as_mut())?)
}

/// The Ctrl-C (and SIGTERM) handling of a queue. The first signal sets `stop`, so the current
/// run finishes its step, writes a checkpoint and is marked interrupted. A second one, in a
/// process that trains, marks its runs interrupted at once and exits with 130; in a process
/// that relays to workers, it is only counted, and passed on.
pub struct Interrupts {
    pub stop: Arc<AtomicBool>,
    pub count: Arc<AtomicUsize>,
}

impl Interrupts {
    pub fn install(db: PathBuf, relay: bool) -> std::io::Result<Interrupts> {
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
                    say(
                        "\nstopping after this step (a checkpoint is written); Ctrl-C again to quit at once",
                    );
                    continue;
                }
                if relay {
                    say("stopping the workers at once");
                    continue;
                }
                // Metrics after the last checkpoint are recorded again when the run resumes.
                if let Ok(store) = Store::open_existing(&db) {
                    let me = exec::provenance::this_process();
                    let _ = store.abandon_runs_of(&me, "stopped at once by a second Ctrl-C");
                }
                say("stopped");
                std::process::exit(exit::INTERRUPTED.into());
            }
        });
        Ok(Interrupts { stop, count })
    }
}

fn recovered_lines(recovered: &[Recovered]) {
    for r in recovered {
        say(&format!(
            "run-{} was left running: {}; it resumes from its last checkpoint",
            r.run, r.reason
        ));
    }
}

/// Estimated seconds left, from the pace since the first progress report of a run.
#[derive(Default)]
struct Pace {
    since: Option<(Instant, u64)>,
}

impl Pace {
    fn eta(&mut self, step: u64, steps: u64) -> Option<f64> {
        let (t0, s0) = *self.since.get_or_insert((Instant::now(), step));
        let done = step.checked_sub(s0).filter(|d| *d > 0)?;
        let per_step = t0.elapsed().as_secs_f64() / done as f64;
        Some(per_step * steps.saturating_sub(step) as f64)
    }
}

/// " (attempt 2, resuming from step 250)" for a run that goes on from a checkpoint.
fn resumed(run: &RunRecord, s: &Started<'_>) -> String {
    match (run.attempts, s.resumed_from) {
        (a, Some(step)) => format!(" (attempt {a}, resuming from step {step})"),
        (a, None) if a > 1 => format!(" (attempt {a}, from step 0)"),
        _ => String::new(),
    }
}

fn describe(p: &Progress) -> String {
    let mut line = String::new();
    if let Some(l) = p.train_loss {
        line.push_str(&format!("  loss {l:.4}"));
    }
    if let Some(v) = p.val_loss {
        line.push_str(&format!("  val {v:.4}"));
    }
    if let Some(s) = p.tokens_per_s {
        line.push_str(&format!("  {} tok/s", si(s.round())));
    }
    line
}

fn finished(run: &RunRecord, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Completed(s) => format!(
            "{} completed: best val loss {} in {}",
            run.name(),
            figure(s.best_val_loss),
            duration(s.wall_s.unwrap_or(0.0))
        ),
        Outcome::Failed(e) => format!("{} failed: {e}", run.name()),
        Outcome::Interrupted(step) => format!(
            "{} interrupted at step {step}; `xp resume {}` or the next `xp run` goes on from there",
            run.name(),
            run.name()
        ),
    }
}

/// Plain progress lines on stderr, for logs and pipes.
#[derive(Default)]
struct Lines {
    total: usize,
    /// Per running run, its pace.
    paces: HashMap<i64, Pace>,
}

impl Observer for Lines {
    fn queue_started(&mut self, runs: usize, _steps: u64, recovered: &[Recovered]) {
        recovered_lines(recovered);
        self.total += runs;
    }

    fn run_started(&mut self, run: &RunRecord, s: &Started<'_>) {
        self.paces.insert(run.id, Pace::default());
        say(&format!(
            "[{}/{}] {} started on {} ({}){}",
            s.index,
            self.total.max(s.index),
            run.name(),
            s.backend,
            s.adapter,
            resumed(run, s)
        ));
    }

    fn notice(&mut self, run: &RunRecord, text: &str) {
        say(&format!("{}: {text}", run.name()));
    }

    fn progress(&mut self, run: &RunRecord, p: &Progress) {
        let eta = self
            .paces
            .entry(run.id)
            .or_default()
            .eta(p.step, p.steps)
            .map(|s| format!("  eta {}", duration(s)))
            .unwrap_or_default();
        say(&format!(
            "{} step {}/{}{}{eta}",
            run.name(),
            p.step,
            p.steps,
            describe(p)
        ));
    }

    fn run_finished(&mut self, run: &RunRecord, outcome: &Outcome) {
        self.paces.remove(&run.id);
        say(&finished(run, outcome));
    }
}

/// Bars on a terminal: the queue (runs started of all, ETA over all remaining steps) and one
/// bar per running run.
struct Bars {
    total: usize,
    started: usize,
    multi: MultiProgress,
    queue: ProgressBar,
    /// Steps of the queue done by runs that have finished.
    done: u64,
    /// Per running run: its bar, the step it started from, and the step it is at.
    running: HashMap<i64, (ProgressBar, u64, u64)>,
}

impl Default for Bars {
    fn default() -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let queue = multi.add(ProgressBar::new(1));
        queue.set_style(
            ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {percent:>3}%  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        Bars {
            total: 0,
            started: 0,
            multi,
            queue,
            done: 0,
            running: HashMap::new(),
        }
    }
}

impl Bars {
    fn update_queue(&self) {
        let now: u64 = self.running.values().map(|(_, from, at)| at - from).sum();
        self.queue.set_position(self.done + now);
        self.queue.set_prefix(format!(
            "run {} of {}{}",
            self.started,
            self.total.max(self.started),
            if self.running.len() > 1 {
                format!(", {} at once", self.running.len())
            } else {
                String::new()
            }
        ));
    }
}

impl Observer for Bars {
    fn queue_started(&mut self, runs: usize, steps: u64, recovered: &[Recovered]) {
        for r in recovered {
            let _ = self.multi.println(format!(
                "run-{} was left running: {}; it resumes from its last checkpoint",
                r.run, r.reason
            ));
        }
        // Workers report their own starts too, with nothing pending of their own.
        self.total += runs;
        if steps > 0 {
            self.queue.set_length(steps);
        }
        self.update_queue();
    }

    fn notice(&mut self, run: &RunRecord, text: &str) {
        let _ = self.multi.println(format!("{}: {text}", run.name()));
    }

    fn run_started(&mut self, run: &RunRecord, s: &Started<'_>) {
        self.started = self.started.max(s.index);
        let bar = self.multi.add(ProgressBar::new(run.steps_total.max(1)));
        bar.set_style(
            ProgressStyle::with_template("{prefix} {pos}/{len} [{bar:30}] eta {eta}{msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(format!(
            "{} ({}, {}){}",
            run.name(),
            s.backend,
            s.adapter,
            resumed(run, s)
        ));
        bar.set_position(run.step);
        bar.reset_eta();
        self.running.insert(run.id, (bar, run.step, run.step));
        self.update_queue();
    }

    fn progress(&mut self, run: &RunRecord, p: &Progress) {
        if let Some((bar, _, at)) = self.running.get_mut(&run.id) {
            bar.set_position(p.step);
            bar.set_message(describe(p));
            *at = p.step;
        }
        self.update_queue();
    }

    fn run_finished(&mut self, run: &RunRecord, outcome: &Outcome) {
        let from = match self.running.remove(&run.id) {
            Some((bar, from, _)) => {
                bar.finish_and_clear();
                self.multi.remove(&bar);
                from
            }
            None => run.step,
        };
        let _ = self.multi.println(finished(run, outcome));
        // Count the run's whole remainder as done, whatever its outcome.
        self.done += run.steps_total.saturating_sub(from);
        self.update_queue();
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.queue.finish_and_clear();
    }
}
