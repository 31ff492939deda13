//! What `xp run` and `xp resume` show while a queue trains (progress bars on a terminal, plain
//! lines otherwise), and how Ctrl-C stops them.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{duration, exit, si};
use crate::exec::{Observer, Outcome};
use crate::store::{RunRow, Store};
use crate::train::Progress;

/// Installs the Ctrl-C (and SIGTERM) handling of a queue: the first signal sets the returned
/// flag, so the current run finishes its step, writes a checkpoint and is marked interrupted;
/// a second one marks the run interrupted at once and exits with 130.
pub fn interrupt_flag(db: PathBuf) -> std::io::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let flag = stop.clone();
    std::thread::spawn(move || {
        for _ in signals.forever() {
            if !flag.swap(true, Ordering::SeqCst) {
                eprintln!(
                    "\nstopping after this step (a checkpoint is written); Ctrl-C again to quit at once"
                );
                continue;
            }
            // Metrics after the last checkpoint are recorded again when the run resumes.
            if let Ok(store) = Store::open_existing(&db) {
                let _ = store.abandon_own_runs("stopped at once by a second Ctrl-C");
            }
            eprintln!("stopped");
            std::process::exit(exit::INTERRUPTED.into());
        }
    });
    Ok(stop)
}

/// The observer for this terminal: bars when stderr is one, lines otherwise.
pub fn observer(total_runs: usize, total_steps: u64) -> Box<dyn Observer> {
    if std::io::stderr().is_terminal() {
        Box::new(Bars::new(total_runs, total_steps))
    } else {
        Box::new(Lines::new(total_runs))
    }
}

/// Estimated seconds left, from the pace since the first progress report of a run.
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

fn finished(run: &RunRow, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Completed(s) => format!(
            "{} completed: best val loss {} in {}",
            run.name(),
            s.best_val_loss
                .map(|v| format!("{v:.4}"))
                .unwrap_or_else(|| "—".into()),
            duration(s.wall_s)
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
pub struct Lines {
    total: usize,
    index: usize,
    pace: Pace,
}

impl Lines {
    pub fn new(total: usize) -> Lines {
        Lines {
            total,
            index: 0,
            pace: Pace { since: None },
        }
    }
}

impl Observer for Lines {
    fn run_started(&mut self, run: &RunRow, index: usize, backend: &str, adapter: &str) {
        self.index = index;
        self.pace = Pace { since: None };
        let resumed = if run.attempts > 1 {
            format!(" (attempt {}, resuming)", run.attempts)
        } else {
            String::new()
        };
        eprintln!(
            "[{index}/{}] {} started on {backend} ({adapter}){resumed}",
            self.total.max(index),
            run.name()
        );
    }

    fn progress(&mut self, run: &RunRow, p: &Progress) {
        let eta = self
            .pace
            .eta(p.step, p.steps)
            .map(|s| format!("  eta {}", duration(s)))
            .unwrap_or_default();
        eprintln!(
            "{} step {}/{}{}{eta}",
            run.name(),
            p.step,
            p.steps,
            describe(p)
        );
    }

    fn run_finished(&mut self, run: &RunRow, outcome: &Outcome) {
        eprintln!("{}", finished(run, outcome));
    }
}

/// Two bars on a terminal: the queue (run k of n, ETA over all remaining steps) and the run.
pub struct Bars {
    total: usize,
    multi: MultiProgress,
    queue: ProgressBar,
    run: Option<ProgressBar>,
    /// Queue position when the current run started, and the step it started from.
    base: (u64, u64),
}

impl Bars {
    pub fn new(total: usize, total_steps: u64) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let queue = multi.add(ProgressBar::new(total_steps.max(1)));
        queue.set_style(
            ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {percent:>3}%  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        queue.set_prefix(format!("run 0 of {total}"));
        Bars {
            total,
            multi,
            queue,
            run: None,
            base: (0, 0),
        }
    }
}

impl Observer for Bars {
    fn run_started(&mut self, run: &RunRow, index: usize, backend: &str, adapter: &str) {
        self.queue
            .set_prefix(format!("run {index} of {}", self.total.max(index)));
        let bar = self
            .multi
            .add(ProgressBar::new(run.steps_total.max(1) as u64));
        bar.set_style(
            ProgressStyle::with_template("{prefix} {pos}/{len} [{bar:30}] eta {eta}{msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{} ({backend}, {adapter})", run.name()));
        bar.set_position(run.step.max(0) as u64);
        bar.reset_eta();
        self.base = (self.queue.position(), run.step.max(0) as u64);
        self.run = Some(bar);
    }

    fn progress(&mut self, _run: &RunRow, p: &Progress) {
        if let Some(bar) = &self.run {
            bar.set_position(p.step);
            bar.set_message(describe(p));
        }
        self.queue
            .set_position(self.base.0 + p.step.saturating_sub(self.base.1));
    }

    fn run_finished(&mut self, run: &RunRow, outcome: &Outcome) {
        if let Some(bar) = self.run.take() {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        let _ = self.multi.println(finished(run, outcome));
        // Count the run's whole remainder as done, whatever its outcome.
        let rest = (run.steps_total.max(0) as u64).saturating_sub(self.base.1);
        self.queue.set_position(self.base.0 + rest);
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.queue.finish_and_clear();
    }
}
