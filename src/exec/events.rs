//! What a worker process tells the `xp run` that started it: the [`Observer`] calls of its
//! queue, one JSON object per line on its standard output, and back again.

use std::io::Write;

use serde::{Deserialize, Serialize};

use super::{Observer, Pending, Started};
use crate::early_stop::Decision;
use crate::store::{Outcome, Recovered, RunRecord};
use crate::train::Progress;

/// One observer call of a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    QueueStarted {
        recovered: Vec<Recovered>,
    },
    RunStarted {
        run: i64,
        backend: String,
        adapter: String,
        resumed_from: Option<u64>,
    },
    Progress {
        run: i64,
        progress: Progress,
    },
    Notice {
        run: i64,
        text: String,
    },
    RunFinished {
        run: i64,
        outcome: Outcome,
    },
    Decided {
        decisions: Vec<Decision>,
    },
}

impl Event {
    /// The event of a line, or `None` for a line that is not one (a worker's own output).
    pub fn parse(line: &str) -> Option<Event> {
        serde_json::from_str(line).ok()
    }
}

/// An observer that writes each call as an [`Event`] line. A reader that went away loses the
/// lines, never the runs.
pub struct EventWriter<W: Write> {
    out: W,
}

impl<W: Write> EventWriter<W> {
    pub fn new(out: W) -> EventWriter<W> {
        EventWriter { out }
    }

    fn emit(&mut self, event: &Event) {
        if let Ok(mut line) = serde_json::to_vec(event) {
            line.push(b'\n');
            let _ = self.out.write_all(&line);
            let _ = self.out.flush();
        }
    }
}

impl<W: Write> Observer for EventWriter<W> {
    fn queue_started(&mut self, _pending: Pending, recovered: &[Recovered]) {
        self.emit(&Event::QueueStarted {
            recovered: recovered.to_vec(),
        });
    }

    fn run_started(&mut self, run: &RunRecord, started: &Started<'_>) {
        self.emit(&Event::RunStarted {
            run: run.id,
            backend: started.backend.into(),
            adapter: started.adapter.into(),
            resumed_from: started.resumed_from,
        });
    }

    fn notice(&mut self, run: &RunRecord, text: &str) {
        self.emit(&Event::Notice {
            run: run.id,
            text: text.into(),
        });
    }

    fn progress(&mut self, run: &RunRecord, progress: &Progress) {
        self.emit(&Event::Progress {
            run: run.id,
            progress: progress.clone(),
        });
    }

    fn run_finished(&mut self, run: &RunRecord, outcome: &Outcome) {
        self.emit(&Event::RunFinished {
            run: run.id,
            outcome: outcome.clone(),
        });
    }

    fn decided(&mut self, decisions: &[Decision]) {
        if !decisions.is_empty() {
            self.emit(&Event::Decided {
                decisions: decisions.to_vec(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_their_lines() {
        let events = [
            Event::QueueStarted {
                recovered: vec![Recovered {
                    run: 3,
                    reason: "its process 9 is gone".into(),
                }],
            },
            Event::RunStarted {
                run: 3,
                backend: "flex".into(),
                adapter: "CPU, 2 threads".into(),
                resumed_from: Some(250),
            },
            Event::Progress {
                run: 3,
                progress: Progress {
                    step: 260,
                    steps: 600,
                    train_loss: Some(2.5),
                    val_loss: None,
                    tokens_per_s: Some(1e4),
                },
            },
            Event::RunFinished {
                run: 3,
                outcome: Outcome::Failed {
                    reason: "diverged".into(),
                },
            },
            Event::RunFinished {
                run: 4,
                outcome: Outcome::Paused {
                    step: 90,
                    summary: crate::summary::Summary::default(),
                },
            },
            Event::Decided {
                decisions: vec![Decision {
                    run: 4,
                    bracket: 0,
                    rung: 1,
                    step: 90,
                    action: crate::early_stop::Action::Stop,
                    value: 2.25,
                    rank: 3,
                    peers: 3,
                    cutoff: Some(2.0),
                    reason: "rank 3 of 3".into(),
                }],
            },
        ];
        for e in events {
            let line = serde_json::to_string(&e).unwrap();
            assert_eq!(Event::parse(&line), Some(e));
        }
        assert_eq!(Event::parse("warning: something"), None);
    }
}
