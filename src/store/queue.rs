//! The run lifecycle: the states a run can be in and every transition between them.
//!
//! ```text
//! queued ──claim──▶ running ──finish──▶ completed | failed | interrupted
//!   │ ▲               │  ▲                              │         │
//!   │ │               │  └──────────── claim ───────────┴─────────┘ (resume, retry)
//!   │ │               └──recover (its process died)──▶ interrupted
//!   │ └──── requeue failed ◀── failed
//!   └──submit──▶ submitted ──(journal: started)──▶ running (on Slurm; finished by the journal,
//!                    │                              or failed when it leaves Slurm's queue)
//!   any unfinished ──cancel──▶ cancelled
//! ```
//!
//! Each transition is one SQL statement (or one transaction) whose `WHERE` names the state it
//! starts from, so that of two processes racing for the same transition exactly one wins. The
//! names of the states appear in this file only.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use super::{Error, Result, RunRecord, Store, now};
use crate::summary::Summary;

/// How often a running process marks itself alive (from its metric writer's thread).
pub const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// A run on another host (or without a pid) whose heartbeat is older than this is dead.
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// A run's state without its details, for filters and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    /// Handed to Slurm, waiting to start.
    Submitted,
    Running,
    Completed,
    Failed,
    Cancelled,
    Interrupted,
}

impl Status {
    /// Every state, in the order reports list them.
    pub const ALL: [Status; 7] = [
        Status::Queued,
        Status::Submitted,
        Status::Running,
        Status::Completed,
        Status::Failed,
        Status::Cancelled,
        Status::Interrupted,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Submitted => "submitted",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Interrupted => "interrupted",
        }
    }

    /// Whether the run has ended for good (until it is retried or resumed).
    pub fn is_final(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Cancelled)
    }

    pub fn parse(name: &str) -> Option<Status> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|s| s.name()).collect()
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Who holds a running run: a process on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimant {
    pub pid: u32,
    pub host: Option<String>,
}

/// The claim on a running run, and its last sign of life.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Lease {
    pub pid: Option<i64>,
    pub host: Option<String>,
    pub claimed_at: Option<String>,
    pub heartbeat_at: Option<String>,
}

/// A run's state, with what each state carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum RunState {
    Queued,
    Submitted,
    Running(Lease),
    Completed,
    Failed { reason: String },
    Cancelled { reason: String },
    Interrupted { reason: String },
}

impl RunState {
    pub fn status(&self) -> Status {
        match self {
            RunState::Queued => Status::Queued,
            RunState::Submitted => Status::Submitted,
            RunState::Running(_) => Status::Running,
            RunState::Completed => Status::Completed,
            RunState::Failed { .. } => Status::Failed,
            RunState::Cancelled { .. } => Status::Cancelled,
            RunState::Interrupted { .. } => Status::Interrupted,
        }
    }

    /// Why a run failed, was cancelled or was interrupted.
    pub fn reason(&self) -> Option<&str> {
        match self {
            RunState::Failed { reason }
            | RunState::Cancelled { reason }
            | RunState::Interrupted { reason } => Some(reason),
            _ => None,
        }
    }

    pub fn lease(&self) -> Option<&Lease> {
        match self {
            RunState::Running(lease) => Some(lease),
            _ => None,
        }
    }

    /// The state from the `runs` columns status, error, pid, host, claimed_at and heartbeat_at.
    pub(super) fn from_columns(
        status: &str,
        error: Option<String>,
        lease: Lease,
    ) -> std::result::Result<RunState, String> {
        let reason = || error.clone().unwrap_or_else(|| "no reason recorded".into());
        Ok(match Status::parse(status) {
            Some(Status::Queued) => RunState::Queued,
            Some(Status::Submitted) => RunState::Submitted,
            Some(Status::Running) => RunState::Running(lease),
            Some(Status::Completed) => RunState::Completed,
            Some(Status::Failed) => RunState::Failed { reason: reason() },
            Some(Status::Cancelled) => RunState::Cancelled { reason: reason() },
            Some(Status::Interrupted) => RunState::Interrupted { reason: reason() },
            None => return Err(format!("unknown run state `{status}`")),
        })
    }
}

/// How a run this process holds ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// Trained to its last step, with its summary.
    Completed(Summary),
    Failed {
        reason: String,
    },
    /// Stopped at `step` (where its last checkpoint is), to be resumed.
    Interrupted {
        step: u64,
        reason: String,
    },
}

/// Whether the process executing a `running` run is still there.
#[derive(Debug, Clone, PartialEq)]
pub enum Liveness {
    Alive,
    /// Dead, with why we think so.
    Dead(String),
}

fn seconds_since(stamp: Option<&str>) -> Option<f64> {
    let t = chrono::DateTime::parse_from_rfc3339(stamp?).ok()?;
    Some((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1e3)
}

/// Judges a lease: on this host by its pid (a pid that started after the run was claimed is
/// another process that reused the number), elsewhere by its heartbeat.
pub fn liveness(lease: &Lease, this_host: Option<&str>) -> Liveness {
    let silent = seconds_since(lease.heartbeat_at.as_deref());
    let same_host = lease.host.is_some() && lease.host.as_deref() == this_host;
    // Where processes cannot be listed, the heartbeat alone decides.
    let processes = sysinfo::System::new().ok().filter(|_| same_host);
    if let (Some(pid), Some(mut sys)) = (lease.pid, processes) {
        use sysinfo::{Pid, ProcessStatus, ProcessesToUpdate};
        let pid32 = Pid::from_u32(pid as u32);
        sys.refresh_processes(ProcessesToUpdate::Some(&[pid32]), true);
        let claimed = lease
            .claimed_at
            .as_deref()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.timestamp());
        let alive = sys.process(pid32).is_some_and(|p| {
            !matches!(p.status(), ProcessStatus::Zombie | ProcessStatus::Dead)
                && claimed.is_none_or(|c| p.start_time() as i64 <= c + 1)
        });
        return if alive {
            Liveness::Alive
        } else {
            Liveness::Dead(format!(
                "its process {pid} on {} is gone",
                lease.host.as_deref().unwrap_or("this host")
            ))
        };
    }
    match silent {
        Some(s) if s > STALE_AFTER.as_secs_f64() => Liveness::Dead(format!(
            "no heartbeat from {} for {:.0} s",
            lease.host.as_deref().unwrap_or("its host"),
            s
        )),
        None => Liveness::Dead("it never sent a heartbeat".into()),
        _ => Liveness::Alive,
    }
}

/// A run found running with its process gone, now interrupted.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    pub run: i64,
    pub reason: String,
}

/// Records a heartbeat (and, if given, the step reached) of a run `by` holds. Returns false
/// when `by` no longer holds it: another process recovered it, so training must stop.
pub(super) fn beat(
    conn: &Connection,
    run: i64,
    by: &Claimant,
    step: Option<u64>,
) -> rusqlite::Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE runs SET step = coalesce(?2, step), heartbeat_at = ?3
             WHERE id = ?1 AND status = 'running' AND pid = ?4 AND host IS ?5",
        )?
        .execute(params![
            run,
            step.map(|s| s as i64),
            now(),
            by.pid as i64,
            by.host
        ])?;
    Ok(n == 1)
}

/// The SQL condition "run `r` can be taken by a local queue": queued, or interrupted (to
/// resume), and not handed to Slurm.
pub(super) const CLAIMABLE: &str = "r.status IN ('queued', 'interrupted') AND r.executor = 'local'";

impl Store {
    /// Atomically takes the next queued (or interrupted) run of an experiment, in plan order,
    /// and marks it running for `by`; `None` when nothing is left.
    pub fn claim_next(&mut self, experiment: &str, by: &Claimant) -> Result<Option<RunRecord>> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let id: Option<i64> = tx
            .query_row(
                &format!(
                    "SELECT r.id FROM runs r JOIN experiment_runs er ON er.run_id = r.id
                     JOIN experiments e ON e.id = er.experiment_id
                     WHERE e.name = ?1 AND {CLAIMABLE}
                     ORDER BY er.plan_index LIMIT 1"
                ),
                [experiment],
                |r| r.get(0),
            )
            .optional()?;
        let Some(id) = id else { return Ok(None) };
        mark_claimed(&tx, id, by)?;
        tx.commit()?;
        Ok(Some(self.run_by_id(id)?))
    }

    /// Atomically takes one particular run (for `xp resume`) if it is queued, interrupted or
    /// failed; `None` when it is in another state by the time the write lock is held.
    pub fn claim(&mut self, id: i64, by: &Claimant) -> Result<Option<RunRecord>> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let claimable: bool = tx
            .query_row(
                "SELECT count(*) FROM runs
                 WHERE id = ?1 AND status IN ('queued', 'interrupted', 'failed', 'cancelled')",
                [id],
                |r| r.get(0),
            )
            .map(|n: i64| n == 1)?;
        if !claimable {
            return Ok(None);
        }
        mark_claimed(&tx, id, by)?;
        tx.commit()?;
        Ok(Some(self.run_by_id(id)?))
    }

    /// Ends a run `by` holds. Fails with [`Error::LostClaim`] (recording nothing) when `by`
    /// no longer holds it.
    pub fn finish(&mut self, run: i64, by: &Claimant, ending: &Ending) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let stamp = now();
        let held = "WHERE id = ?1 AND status = 'running' AND pid = ?2 AND host IS ?3";
        let (pid, host) = (by.pid as i64, by.host.as_deref());
        let n = match ending {
            Ending::Completed(_) => tx.execute(
                &format!(
                    "UPDATE runs SET status = 'completed', error = NULL, step = steps_total,
                         finished_at = ?4, heartbeat_at = ?4 {held}"
                ),
                params![run, pid, host, stamp],
            )?,
            Ending::Failed { reason } => tx.execute(
                &format!(
                    "UPDATE runs SET status = 'failed', error = ?5, finished_at = ?4,
                         heartbeat_at = ?4 {held}"
                ),
                params![run, pid, host, stamp, reason],
            )?,
            Ending::Interrupted { step, reason } => tx.execute(
                &format!(
                    "UPDATE runs SET status = 'interrupted', error = ?5, step = ?6,
                         finished_at = ?4, heartbeat_at = ?4 {held}"
                ),
                params![run, pid, host, stamp, reason, *step as i64],
            )?,
        };
        if n != 1 {
            let now: String = tx
                .query_row("SELECT status FROM runs WHERE id = ?1", [run], |r| r.get(0))
                .optional()?
                .unwrap_or_else(|| "gone".into());
            return Err(Error::LostClaim { run, now });
        }
        if let Ending::Completed(summary) = ending {
            super::runs::write_summary(&tx, run, summary)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Marks every `running` run whose process died as interrupted, so that it is resumed
    /// from its last checkpoint. A run that changed since it was read (recovered by another
    /// process, or alive after all and beating) is left alone.
    pub fn recover_stale(&self, this_host: Option<&str>) -> Result<Vec<Recovered>> {
        let mut out = Vec::new();
        let running: Vec<(i64, i64, Lease)> = {
            let mut stmt = self.conn.prepare(
                "SELECT id, step, pid, host, claimed_at, heartbeat_at FROM runs
                 WHERE status = 'running' AND executor = 'local' ORDER BY id",
            )?;
            stmt.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    Lease {
                        pid: r.get(2)?,
                        host: r.get(3)?,
                        claimed_at: r.get(4)?,
                        heartbeat_at: r.get(5)?,
                    },
                ))
            })?
            .collect::<rusqlite::Result<_>>()?
        };
        for (id, step, lease) in running {
            if let Liveness::Dead(why) = liveness(&lease, this_host) {
                let reason = format!("interrupted at step {step}: {why}");
                let n = self.conn.execute(
                    "UPDATE runs SET status = 'interrupted', error = ?2, finished_at = ?3
                     WHERE id = ?1 AND status = 'running' AND pid IS ?4 AND heartbeat_at IS ?5",
                    params![id, reason, now(), lease.pid, lease.heartbeat_at],
                )?;
                if n == 1 {
                    tracing::info!("run-{id} recovered: {reason}");
                    out.push(Recovered { run: id, reason });
                }
            }
        }
        Ok(out)
    }

    /// Marks the runs `by` is executing as interrupted (on the way out after a second
    /// Ctrl-C); waits at most two seconds for the write lock.
    pub fn abandon_runs_of(&self, by: &Claimant, reason: &str) -> Result<usize> {
        self.conn.busy_timeout(std::time::Duration::from_secs(2))?;
        Ok(self.conn.execute(
            "UPDATE runs SET status = 'interrupted', error = ?1, finished_at = ?2
             WHERE status = 'running' AND pid = ?3 AND host IS ?4",
            params![reason, now(), by.pid as i64, by.host],
        )?)
    }

    /// Puts an experiment's failed runs back in the queue (wherever they ran; the next
    /// executor takes them from there); returns how many.
    pub fn requeue_failed(&self, experiment: &str) -> Result<usize> {
        Ok(self.conn.execute(
            "UPDATE runs SET status = 'queued', finished_at = NULL, executor = 'local',
                 slurm_job = NULL, slurm_task = NULL, slurm_state = NULL
             WHERE status = 'failed' AND id IN (SELECT er.run_id FROM experiment_runs er
                 JOIN experiments e ON e.id = er.experiment_id WHERE e.name = ?1)",
            [experiment],
        )?)
    }

    /// queued → submitted: the run is task `task` of Slurm job `job`, with its files in
    /// `dir`. False when it was no longer queued.
    pub fn submit(&self, run: i64, dir: &str, job: &str, task: i64) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE runs SET status = 'submitted', executor = 'slurm', executor_dir = ?2,
                 slurm_job = ?3, slurm_task = ?4, slurm_state = 'PENDING', error = NULL
             WHERE id = ?1 AND status = 'queued'",
            params![run, dir, job, task],
        )?;
        Ok(n == 1)
    }

    /// Any unfinished run → cancelled, except one a local process is training (that process
    /// records how it ends). False when the run was in neither kind of state.
    pub fn cancel(&self, run: i64, reason: &str) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE runs SET status = 'cancelled', error = ?2, finished_at = ?3
             WHERE id = ?1 AND (status IN ('queued', 'submitted', 'interrupted')
                 OR (status = 'running' AND executor = 'slurm'))",
            params![run, reason, now()],
        )?;
        Ok(n == 1)
    }

    /// The runs Slurm holds or may still start, by id.
    pub fn on_slurm(&self) -> Result<Vec<i64>> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT id FROM runs WHERE {ON_SLURM} ORDER BY id"))?;
        let ids = stmt.query_map([], |r| r.get(0))?;
        Ok(ids.collect::<rusqlite::Result<_>>()?)
    }

    /// A run whose Slurm task left Slurm's queue without recording how it ended → failed
    /// with `reason`. False when it has ended meanwhile.
    pub fn mark_vanished(&mut self, run: i64, reason: &str) -> Result<bool> {
        let tx = self.conn.transaction()?;
        let changed = vanished(&tx, run, reason)?;
        tx.commit()?;
        Ok(changed)
    }

    /// Records the state Slurm last reported for a run's task.
    pub fn set_slurm_state(&self, run: i64, state: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET slurm_state = ?2 WHERE id = ?1",
            params![run, state],
        )?;
        Ok(())
    }
}

/// The runs that Slurm holds or may still start: submitted, running there, or interrupted
/// there (a task requeued after its time-limit signal starts again).
pub(super) const ON_SLURM: &str =
    "executor = 'slurm' AND status IN ('submitted', 'running', 'interrupted')";

/// A Slurm attempt started (from its journal): → running, on `host` as `pid`. Ignored for a
/// run that ended meanwhile (cancelled, say).
pub(super) fn journal_started(
    tx: &Transaction<'_>,
    run: i64,
    attempt: i64,
    host: &str,
    pid: i64,
    at: &str,
) -> rusqlite::Result<bool> {
    let n = tx.execute(
        "UPDATE runs SET status = 'running', started_at = coalesce(started_at, ?5),
             heartbeat_at = ?5, claimed_at = ?5, attempts = max(attempts, ?2), pid = ?4,
             host = ?3, error = NULL, finished_at = NULL, slurm_state = 'RUNNING'
         WHERE id = ?1 AND executor = 'slurm' AND status IN ('submitted', 'running', 'interrupted')",
        params![run, attempt, host, pid, at],
    )?;
    Ok(n == 1)
}

/// Progress of a running Slurm attempt (from its journal).
pub(super) fn journal_progress(
    tx: &Transaction<'_>,
    run: i64,
    step: u64,
    at: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE runs SET step = ?2, heartbeat_at = ?3
         WHERE id = ?1 AND executor = 'slurm' AND status = 'running'",
        params![run, step as i64, at],
    )?;
    Ok(())
}

/// How a Slurm attempt ended (from its journal); the summary of a completed one is written
/// by the caller.
pub(super) fn journal_finished(
    tx: &Transaction<'_>,
    run: i64,
    ending: &Ending,
    at: &str,
) -> rusqlite::Result<bool> {
    let held = "WHERE id = ?1 AND executor = 'slurm' AND status IN ('running', 'submitted')";
    let n = match ending {
        Ending::Completed(_) => tx.execute(
            &format!(
                "UPDATE runs SET status = 'completed', error = NULL, step = steps_total,
                     finished_at = ?2, heartbeat_at = ?2 {held}"
            ),
            params![run, at],
        )?,
        Ending::Failed { reason } => tx.execute(
            &format!(
                "UPDATE runs SET status = 'failed', error = ?3, finished_at = ?2,
                     heartbeat_at = ?2 {held}"
            ),
            params![run, at, reason],
        )?,
        Ending::Interrupted { step, reason } => tx.execute(
            &format!(
                "UPDATE runs SET status = 'interrupted', error = ?3, step = ?4,
                     finished_at = ?2, heartbeat_at = ?2 {held}"
            ),
            params![run, at, reason, *step as i64],
        )?,
    };
    Ok(n == 1)
}

/// A Slurm task that left Slurm's queue without recording how it ended → failed.
pub(super) fn vanished(tx: &Transaction<'_>, run: i64, reason: &str) -> rusqlite::Result<bool> {
    let n = tx.execute(
        &format!(
            "UPDATE runs SET status = 'failed', error = ?2, finished_at = ?3, slurm_state = NULL
             WHERE id = ?1 AND {ON_SLURM}"
        ),
        params![run, reason, now()],
    )?;
    Ok(n == 1)
}

fn mark_claimed(tx: &Transaction<'_>, id: i64, by: &Claimant) -> Result<()> {
    let stamp = now();
    // A run taken here trains here, whatever executor had it before.
    tx.execute(
        "UPDATE runs SET status = 'running', started_at = coalesce(started_at, ?2),
             heartbeat_at = ?2, claimed_at = ?2, attempts = attempts + 1, pid = ?3, host = ?4,
             error = NULL, finished_at = NULL, executor = 'local', slurm_job = NULL,
             slurm_task = NULL, slurm_state = NULL
         WHERE id = ?1",
        params![id, stamp, by.pid as i64, by.host],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(host: Option<&str>, pid: Option<i64>, beat_s_ago: i64) -> Lease {
        let stamp = |ago: i64| {
            (chrono::Utc::now() - chrono::Duration::seconds(ago))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        Lease {
            pid,
            host: host.map(String::from),
            claimed_at: Some(stamp(0)),
            heartbeat_at: Some(stamp(beat_s_ago)),
        }
    }

    #[test]
    fn judges_by_pid_here_and_by_heartbeat_elsewhere() {
        let here = Some("this-host");
        let me = std::process::id() as i64;
        assert_eq!(liveness(&lease(here, Some(me), 0), here), Liveness::Alive);

        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id() as i64;
        child.wait().unwrap();
        assert!(matches!(
            liveness(&lease(here, Some(gone), 0), here),
            Liveness::Dead(why) if why == format!("its process {gone} on this-host is gone")
        ));

        // A live pid that started after the run was claimed is another process.
        let mut old = lease(here, Some(me), 0);
        old.claimed_at = Some("2001-01-01T00:00:00.000Z".into());
        assert!(matches!(liveness(&old, here), Liveness::Dead(_)));

        let elsewhere = lease(Some("other"), Some(me), 5);
        assert_eq!(liveness(&elsewhere, here), Liveness::Alive);
        let silent = lease(Some("other"), Some(me), 120);
        assert!(matches!(
            liveness(&silent, here),
            Liveness::Dead(why) if why == "no heartbeat from other for 120 s"
        ));
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.name()), Some(s));
        }
        let failed =
            RunState::from_columns("failed", Some("boom".into()), Lease::default()).unwrap();
        assert_eq!(failed.reason(), Some("boom"));
        assert_eq!(
            serde_json::to_value(&failed).unwrap(),
            serde_json::json!({"status": "failed", "reason": "boom"})
        );
        assert!(RunState::from_columns("done", None, Lease::default()).is_err());
    }
}
