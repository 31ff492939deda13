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
//! states themselves, and every class of them, are in [`super::state`]; the names of the
//! states appear in SQL in these two files only.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::decisions::{Taken, decide, experiment_of};
use super::runs::{RunRecord, write_summary};
use super::state::{CLAIMABLE, Claimant, Lease, Liveness, ON_SLURM, Outcome, Recovered, liveness};
use super::{Error, Result, Store, now};
use crate::early_stop::Decision;

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
                     ORDER BY r.draw, er.plan_index LIMIT 1"
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

    /// How many runs of an experiment [`Store::claim_next`] can still take, and the steps they
    /// have left: the same class of states ([`CLAIMABLE`]), so that a progress total never
    /// counts a run the queue will not train (one on Slurm, say).
    pub fn claimable(&self, experiment: &str) -> Result<(usize, u64)> {
        let (runs, steps): (i64, i64) = self.conn.query_row(
            &format!(
                "SELECT count(*), coalesce(sum(max(r.steps_total - r.step, 0)), 0)
                 FROM runs r JOIN experiment_runs er ON er.run_id = r.id
                 JOIN experiments e ON e.id = er.experiment_id
                 WHERE e.name = ?1 AND {CLAIMABLE}"
            ),
            [experiment],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((runs as usize, steps as u64))
    }

    /// The experiments with runs queued on Slurm by the store itself: promoted by an
    /// early-stopping decision, or a search's trials chosen as a journal was merged.
    pub fn promoted_on_slurm(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare(
            "SELECT DISTINCT e.name FROM runs r JOIN experiments e ON e.id = r.experiment_id
             WHERE r.status = 'queued' AND r.executor = 'slurm' ORDER BY e.name",
        )?;
        let names = stmt.query_map([], |r| r.get(0))?;
        Ok(names.collect::<rusqlite::Result<_>>()?)
    }

    /// Whether a local process is training one of the experiment's runs.
    pub fn running_elsewhere(&self, experiment: &str) -> Result<bool> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM runs r JOIN experiments e ON e.id = r.experiment_id
             WHERE e.name = ?1 AND r.status = 'running' AND r.executor = 'local'",
            [experiment],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Ends a run `by` holds. Fails with [`Error::LostClaim`] (recording nothing) when `by`
    /// no longer holds it.
    /// Returns the early-stopping decisions the result allowed, taken in the same transaction.
    pub fn finish(&mut self, run: i64, by: &Claimant, outcome: &Outcome) -> Result<Vec<Decision>> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let stamp = now();
        let held = "WHERE id = ?1 AND status = 'running' AND pid = ?2 AND host IS ?3";
        let (pid, host) = (by.pid as i64, by.host.as_deref());
        let n = match outcome {
            Outcome::Completed { .. } => tx.execute(
                &format!(
                    "UPDATE runs SET status = 'completed', error = NULL, step = steps_total,
                         finished_at = ?4, heartbeat_at = ?4 {held}"
                ),
                params![run, pid, host, stamp],
            )?,
            Outcome::Failed { reason } => tx.execute(
                &format!(
                    "UPDATE runs SET status = 'failed', error = ?5, finished_at = ?4,
                         heartbeat_at = ?4 {held}"
                ),
                params![run, pid, host, stamp, reason],
            )?,
            Outcome::Interrupted { step, reason } => tx.execute(
                &format!(
                    "UPDATE runs SET status = 'interrupted', error = ?5, step = ?6,
                         finished_at = ?4, heartbeat_at = ?4 {held}"
                ),
                params![run, pid, host, stamp, reason, *step as i64],
            )?,
            Outcome::Paused { step, .. } => tx.execute(
                &format!(
                    "UPDATE runs SET status = 'paused', error = NULL, step = ?5,
                         heartbeat_at = ?4 {held}"
                ),
                params![run, pid, host, stamp, *step as i64],
            )?,
        };
        if n != 1 {
            let now: String = tx
                .query_row("SELECT status FROM runs WHERE id = ?1", [run], |r| r.get(0))
                .optional()?
                .unwrap_or_else(|| "gone".into());
            return Err(Error::LostClaim { run, now });
        }
        if let Outcome::Completed { summary } | Outcome::Paused { summary, .. } = outcome {
            write_summary(&tx, run, summary)?;
        }
        // What this result decides is recorded with it: a crash leaves both or neither.
        let taken = match experiment_of(&tx, run)? {
            Some(experiment) => decide(&tx, experiment)?,
            None => Taken::default(),
        };
        tx.commit()?;
        self.drop_checkpoints(&taken.dropped);
        Ok(taken.decisions)
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
             WHERE id = ?1 AND (status IN ('queued', 'submitted', 'interrupted', 'paused')
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
    outcome: &Outcome,
    at: &str,
) -> rusqlite::Result<bool> {
    let held = "WHERE id = ?1 AND executor = 'slurm' AND status IN ('running', 'submitted')";
    let n = match outcome {
        Outcome::Completed { .. } => tx.execute(
            &format!(
                "UPDATE runs SET status = 'completed', error = NULL, step = steps_total,
                     finished_at = ?2, heartbeat_at = ?2 {held}"
            ),
            params![run, at],
        )?,
        Outcome::Failed { reason } => tx.execute(
            &format!(
                "UPDATE runs SET status = 'failed', error = ?3, finished_at = ?2,
                     heartbeat_at = ?2 {held}"
            ),
            params![run, at, reason],
        )?,
        Outcome::Interrupted { step, reason } => tx.execute(
            &format!(
                "UPDATE runs SET status = 'interrupted', error = ?3, step = ?4,
                     finished_at = ?2, heartbeat_at = ?2 {held}"
            ),
            params![run, at, reason, *step as i64],
        )?,
        Outcome::Paused { step, .. } => tx.execute(
            &format!(
                "UPDATE runs SET status = 'paused', error = NULL, step = ?3,
                     heartbeat_at = ?2 {held}"
            ),
            params![run, at, *step as i64],
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
    use crate::store::Provenance;

    /// A store with one experiment `q` of three tiny runs of 10 steps, queued.
    fn queued(dir: &std::path::Path) -> Store {
        let text = "[experiment]\nname = \"q\"\n[model]\npreset = \"tiny\"\n\
                    [train]\nsteps = 10\n[hardware]\nprofile = \"cpu\"\n\
                    [sweep.grid]\n\"train.seed\" = [1, 2, 3]\n";
        let loaded = crate::manifest::parse("q.toml".into(), text.into(), "q.toml".as_ref())
            .expect("the manifest parses");
        let machine = crate::manifest::profiles::Machine::detect();
        let plan = crate::sweep::plan(&loaded, &[], &machine).expect("the manifest plans");
        let mut store = Store::open(&dir.join("runs.db")).unwrap();
        store
            .enqueue(&plan, &Provenance::default(), &plan.origins())
            .unwrap();
        store
    }

    #[test]
    fn the_queue_counts_and_claims_only_the_runs_it_may_take() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = queued(dir.path());
        assert_eq!(store.claimable("q").unwrap(), (3, 30));
        // Run 2 goes to Slurm, run 3 is interrupted halfway on Slurm: neither is the local
        // queue's, so neither counts towards its progress.
        assert!(store.submit(2, "/shared", "77", 0).unwrap());
        assert!(store.submit(3, "/shared", "77", 1).unwrap());
        let tx = store.conn.transaction().unwrap();
        let at = "2026-11-30T00:00:00.000Z";
        assert!(journal_started(&tx, 3, 1, "node", 42, at).unwrap());
        let stopped = Outcome::Interrupted {
            step: 5,
            reason: "time limit".into(),
        };
        assert!(journal_finished(&tx, 3, &stopped, at).unwrap());
        tx.commit().unwrap();
        assert_eq!(store.claimable("q").unwrap(), (1, 10));
        let me = Claimant {
            pid: std::process::id(),
            host: Some("here".into()),
        };
        let first = store.claim_next("q", &me).unwrap().map(|r| r.id);
        assert_eq!(first, Some(1));
        assert_eq!(store.claim_next("q", &me).unwrap().map(|r| r.id), None);
        assert_eq!(store.claimable("q").unwrap(), (0, 0));
        // An interrupted local run is the queue's again, with the steps it has left.
        store
            .finish(
                1,
                &me,
                &Outcome::Interrupted {
                    step: 4,
                    reason: "stopped".into(),
                },
            )
            .unwrap();
        assert_eq!(store.claimable("q").unwrap(), (1, 6));
    }
}
