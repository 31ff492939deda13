//! What the store knows of training speed: each run's last uninterrupted stretch of training,
//! with the time the trainer took and the wall time around it, for forecasts
//! (`crate::forecast`).

use rusqlite::params;

use super::state::Status;
use super::{Result, Store};
use crate::forecast::Sample;
use crate::sweep::RunSpec;

impl Store {
    /// The runs trained on `host` that recorded their trainer time, each as its last stretch,
    /// oldest first.
    pub fn speed_samples(&self, host: &str) -> Result<Vec<Sample>> {
        let mut stmt = self.conn.prepare(
            "SELECT r.spec, r.status, r.step, r.started_at, r.finished_at, s.wall_s, r.pid,
                    r.attempts
             FROM runs r JOIN summaries s ON s.run_id = r.id
             WHERE r.host = ?1 AND r.attempts >= 1 AND r.step > 0 AND s.wall_s > 0
               AND r.started_at IS NOT NULL
             ORDER BY r.id",
        )?;
        let rows = stmt.query_map(params![host], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, f64>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, i64>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (spec, status, step, started, finished, trainer_s, pid, attempts) = row?;
            let completed = Status::parse(&status) == Some(Status::Completed);
            // A spec this xp cannot read says nothing about speed here.
            let Ok(spec) = serde_json::from_str::<RunSpec>(&spec) else {
                continue;
            };
            let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
            let (Some(start), end) = (at(&started), finished.as_deref().and_then(at)) else {
                continue;
            };
            let step = step.max(0) as u64;
            // A run's summary times its last stretch. Claimed once, that is the whole run; an
            // early-stopped run claimed once per rung it passed (and never resumed after a
            // crash) trained its last stretch from its last rung.
            let passed: Vec<u64> = spec
                .early_stop
                .as_ref()
                .map(|r| r.steps.iter().copied().filter(|&s| s < step).collect())
                .unwrap_or_default();
            let (steps, whole) = match attempts {
                1 => (step, true),
                n if n as usize == passed.len() + 1 => {
                    (step - passed.last().copied().unwrap_or(0), false)
                }
                _ => continue,
            };
            // A paused or stopped run's end is when a decision ended it, after it trained: its
            // stretch ends when its trainer did.
            let end_ms = end.map(|e| e.timestamp_millis()).map(|e| {
                if whole && !completed {
                    start.timestamp_millis() + (trainer_s * 1e3) as i64
                } else {
                    e
                }
            });
            out.push(Sample {
                shape: crate::forecast::shape(&spec.config, spec.vocab_size),
                steps,
                trainer_s,
                // Only a run that ended when its one stretch did tells its start-up cost (a
                // paused run ends when a decision stops it, later).
                wall_s: end
                    .filter(|_| whole && completed)
                    .map(|e| (e - start).num_milliseconds() as f64 / 1e3),
                // A later stretch ran just before its end.
                start: if whole {
                    start.timestamp_millis()
                } else {
                    end_ms.unwrap_or(0) - (trainer_s * 1e3) as i64
                },
                end: end_ms,
                process: pid,
            });
        }
        Ok(out)
    }
}
