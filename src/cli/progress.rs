//! What `xp run` and `xp resume` show while a queue trains (progress bars on a terminal, plain
//! lines otherwise), and how Ctrl-C stops them.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::output::{duration, figure, say, si};
use super::{Context, Result, exit};
use crate::exec::{self, Observer, Outcome, Queue, Started};
use crate::store::queue::Recovered;
use crate::store::{RunRecord, Store};
use crate::train::Progress;

/// Executes a queue with progress on stderr and Ctrl-C handling.
pub fn execute(
    store: &mut Store,
    queue: Queue<'_>,
    fail_fast: bool,
    ctx: &Context,
) -> Result<exec::Report> {
    let stop = interrupt_flag(ctx.db.clone())?;
    let mut observer: Box<dyn Observer> = if std::io::stderr().is_terminal() {
        Box::new(Bars::default())
    } else {
        Box::new(Lines::default())
    };
    let options = exec::Options {
        fail_fast,
        stop: &stop,
    };
    Ok(exec::execute(store, queue, &options, observer.as_mut())?)
}

/// Installs the Ctrl-C (and SIGTERM) handling of a queue: the first signal sets the returned
/// flag, so the current run finishes its step, writes a checkpoint and is marked interrupted;
/// a second one marks the run interrupted at once and exits with 130.
fn interrupt_flag(db: PathBuf) -> std::io::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let flag = stop.clone();
    std::thread::spawn(move || {
        for _ in signals.forever() {
            if !flag.swap(true, Ordering::SeqCst) {
                say(
                    "\nstopping after this step (a checkpoint is written); Ctrl-C again to quit at once",
                );
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
    Ok(stop)
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
    index: usize,
    pace: Pace,
}

impl Observer for Lines {
    fn queue_started(&mut self, runs: usize, _steps: u64, recovered: &[Recovered]) {
        recovered_lines(recovered);
        self.total = runs;
    }

    fn run_started(&mut self, run: &RunRecord, s: &Started<'_>) {
        self.index = s.index;
        self.pace = Pace::default();
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
            .pace
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
        say(&finished(run, outcome));
    }
}

/// Two bars on a terminal: the queue (run k of n, ETA over all remaining steps) and the run.
struct Bars {
    total: usize,
    multi: MultiProgress,
    queue: ProgressBar,
    run: Option<ProgressBar>,
    /// Queue position when the current run started, and the step it started from.
    base: (u64, u64),
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
            multi,
            queue,
            run: None,
            base: (0, 0),
        }
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
        self.total = runs;
        self.queue.set_length(steps.max(1));
        self.queue.set_prefix(format!("run 0 of {runs}"));
    }

    fn notice(&mut self, run: &RunRecord, text: &str) {
        let _ = self.multi.println(format!("{}: {text}", run.name()));
    }

    fn run_started(&mut self, run: &RunRecord, s: &Started<'_>) {
        self.queue
            .set_prefix(format!("run {} of {}", s.index, self.total.max(s.index)));
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
        self.base = (self.queue.position(), run.step);
        self.run = Some(bar);
    }

    fn progress(&mut self, _run: &RunRecord, p: &Progress) {
        if let Some(bar) = &self.run {
            bar.set_position(p.step);
            bar.set_message(describe(p));
        }
        self.queue
            .set_position(self.base.0 + p.step.saturating_sub(self.base.1));
    }

    fn run_finished(&mut self, run: &RunRecord, outcome: &Outcome) {
        if let Some(bar) = self.run.take() {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        let _ = self.multi.println(finished(run, outcome));
        // Count the run's whole remainder as done, whatever its outcome.
        let rest = run.steps_total.saturating_sub(self.base.1);
        self.queue.set_position(self.base.0 + rest);
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.queue.finish_and_clear();
    }
}
