//! What `xp run` and `xp resume` show while a queue trains (progress bars on a terminal, plain
//! lines otherwise), whether one process trains or several workers do, and how Ctrl-C stops
//! them.

use std::collections::HashMap;
use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::output::{duration, fixed4, say, si};
use super::{Context, Result};
use crate::early_stop::{Action, Decision};
use crate::exec::interrupts::Signal;
use crate::exec::{self, Observer, Pending, Queue, Started, Workers};
use crate::report::eta::Stopwatch;
use crate::store::{Outcome, Recovered, RunRecord, Store};
use crate::train::Progress;

/// The observer for this terminal: bars when stderr is one, lines otherwise.
fn observer() -> Box<dyn Observer> {
    if std::io::stderr().is_terminal() {
        Box::new(Bars::default())
    } else {
        Box::new(Lines::default())
    }
}

/// Executes a queue (in this process, or by several workers) with progress on stderr and
/// Ctrl-C told there.
pub fn execute(
    store: &mut Store,
    queue: Queue<'_>,
    fail_fast: bool,
    workers: &Workers<'_>,
    ctx: &Context,
) -> Result<exec::Report> {
    execute_in(store, &ctx.db, queue, fail_fast, workers)
}

/// [`execute`] on the store at `db` (another than the context's: `xp plan --measure`'s
/// probes).
pub fn execute_in(
    store: &mut Store,
    db: &std::path::Path,
    queue: Queue<'_>,
    fail_fast: bool,
    workers: &Workers<'_>,
) -> Result<exec::Report> {
    let mut observer = observer();
    Ok(exec::run_queue(
        store,
        db,
        queue,
        fail_fast,
        workers,
        observer.as_mut(),
        tell,
    )?)
}

/// What a Ctrl-C did, on stderr.
pub fn tell(signal: Signal) {
    say(match signal {
        Signal::Stopping => {
            "\nstopping after this step (a checkpoint is written); Ctrl-C again to quit at once"
        }
        Signal::Relayed => "stopping the workers at once",
        Signal::StoppedAtOnce => "stopped",
    });
}

fn recovered_lines(recovered: &[Recovered]) {
    for r in recovered {
        say(&format!(
            "run-{} was left running: {}; it resumes from its last checkpoint",
            r.run, r.reason
        ));
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
        Outcome::Completed { summary } => format!(
            "{} completed: best val loss {} in {}",
            run.name(),
            fixed4(summary.best_val_loss),
            duration(summary.wall_s.unwrap_or(0.0))
        ),
        Outcome::Failed { reason } => format!("{} failed: {reason}", run.name()),
        Outcome::Paused { step, summary } => format!(
            "{} paused at step {step} for its early-stopping decision: best val loss {} so far",
            run.name(),
            fixed4(summary.best_val_loss),
        ),
        Outcome::Interrupted { step, .. } => format!(
            "{} interrupted at step {step}; `xp resume {}` or the next `xp run` goes on from there",
            run.name(),
            run.name()
        ),
    }
}

/// One early-stopping decision, as a line.
fn decision(d: &Decision) -> String {
    format!("run-{} {}", d.run, d.describe())
}

/// Plain progress lines on stderr, for logs and pipes.
#[derive(Default)]
struct Lines {
    total: usize,
    /// Per running run, its pace since its first progress line.
    paces: HashMap<i64, Stopwatch>,
}

impl Observer for Lines {
    fn queue_started(&mut self, pending: Pending, recovered: &[Recovered]) {
        recovered_lines(recovered);
        self.total += pending.runs;
    }

    fn run_started(&mut self, run: &RunRecord, s: &Started<'_>) {
        self.paces.insert(run.id, Stopwatch::default());
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
            .pace(p.step)
            .map(|pace| {
                format!(
                    "  eta {}",
                    duration(pace.eta(p.steps.saturating_sub(p.step), 1))
                )
            })
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

    fn decided(&mut self, decisions: &[Decision]) {
        for d in decisions {
            say(&decision(d));
        }
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
    /// Per run started, its last step: a run stopped early never trains the rest.
    last_steps: HashMap<i64, u64>,
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
            last_steps: HashMap::new(),
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
    fn queue_started(&mut self, pending: Pending, recovered: &[Recovered]) {
        for r in recovered {
            let _ = self.multi.println(format!(
                "run-{} was left running: {}; it resumes from its last checkpoint",
                r.run, r.reason
            ));
        }
        // Workers report their own starts too, with nothing pending of their own.
        self.total += pending.runs;
        if pending.steps > 0 {
            self.queue.set_length(pending.steps);
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
        // Count the run's whole remainder as done, whatever its outcome, but for a pause: a
        // promoted run goes on from there.
        self.done += match outcome {
            Outcome::Paused { step, .. } => step.saturating_sub(from),
            _ => run.steps_total.saturating_sub(from),
        };
        self.last_steps.insert(run.id, run.steps_total);
        self.update_queue();
    }

    fn decided(&mut self, decisions: &[Decision]) {
        for d in decisions {
            let _ = self.multi.println(decision(d));
            if d.action == Action::Stop
                && let Some(last) = self.last_steps.get(&d.run)
            {
                self.done += last.saturating_sub(d.step);
            }
        }
        self.update_queue();
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.queue.finish_and_clear();
    }
}
