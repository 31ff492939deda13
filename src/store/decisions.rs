//! Early-stopping decisions in the store: taken in the transaction that records a result they
//! depend on (a pause, a failure, a journal merged), applied to the runs they concern, and
//! kept in the append-only `decisions` table with what each saw.

use std::collections::{HashMap, HashSet};

use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;

use super::state::Status;
use super::{Error, Result, Store, experiment_id, now};
use crate::early_stop::{self, Action, Decision, EarlyStop, Entrant};

/// A decision as the log holds it, with its place in the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Logged {
    /// Its position in the log (the order it was taken in).
    pub seq: i64,
    #[serde(flatten)]
    pub decision: Decision,
    pub decided_at: String,
}

/// What one pass of decisions did: the decisions, and the checkpoints of stopped runs, whose
/// folders go once the transaction is committed.
#[derive(Debug, Default)]
pub(super) struct Taken {
    pub decisions: Vec<Decision>,
    pub dropped: Vec<(i64, String)>,
    /// Trials of a search chosen (and queued).
    pub trials: usize,
}

/// The part of a stored run spec the decisions read.
#[derive(serde::Deserialize)]
struct Place {
    early_stop: Option<crate::sweep::spec::Rungs>,
}

/// Early-stopping settings as an experiment stores them (`experiments.early_stop`).
fn parse_settings(text: Option<String>, experiment: &str) -> Result<Option<EarlyStop>> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| {
            Error::Unreadable(format!(
                "the early-stopping settings of experiment {experiment} cannot be read ({e}); \
                 they were written by another xp"
            ))
        })
    })
    .transpose()
}

/// The experiment's early-stopping settings, if its runs stop early.
fn settings(tx: &Transaction<'_>, experiment: i64) -> Result<Option<EarlyStop>> {
    let text: Option<String> = tx
        .query_row(
            "SELECT early_stop FROM experiments WHERE id = ?1",
            [experiment],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    parse_settings(text, &experiment.to_string())
}

/// The log of an experiment, in the order it was taken.
fn log(tx: &rusqlite::Connection, experiment: i64) -> Result<Vec<Logged>> {
    let mut stmt = tx.prepare_cached(
        "SELECT seq, run_id, bracket, rung, step, action, value, rank, peers, cutoff, reason,
             decided_at
         FROM decisions WHERE experiment_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([experiment], |r| {
        let action: String = r.get(5)?;
        Ok(Logged {
            seq: r.get(0)?,
            decision: Decision {
                run: r.get(1)?,
                bracket: r.get(2)?,
                rung: r.get(3)?,
                step: r.get::<_, i64>(4)?.max(0) as u64,
                action: Action::parse(&action).unwrap_or(Action::Stop),
                value: r.get(6)?,
                rank: r.get(7)?,
                peers: r.get(8)?,
                cutoff: r.get(9)?,
                reason: r.get(10)?,
            },
            decided_at: r.get(11)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A run's value of the objective at a rung: the mean of the metric's last `smooth` values up
/// to the rung, provided one was recorded at the rung itself.
fn value_at(
    tx: &Transaction<'_>,
    run: i64,
    name_id: i64,
    step: u64,
    smooth: u32,
) -> Result<Option<f64>> {
    let mut stmt = tx.prepare_cached(
        "SELECT step, value FROM metrics WHERE run_id = ?1 AND name_id = ?2 AND step <= ?3
         ORDER BY step DESC LIMIT ?4",
    )?;
    let rows: Vec<(i64, f64)> = stmt
        .query_map(params![run, name_id, step as i64, smooth as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    if rows.first().map(|r| r.0) != Some(step as i64) {
        return Ok(None);
    }
    Ok(Some(
        rows.iter().map(|r| r.1).sum::<f64>() / rows.len() as f64,
    ))
}

/// Takes every early-stopping decision the recorded results of `experiment` allow and the log
/// lacks, records them and applies them: a promoted run is queued to train to its next rung (or its last
/// step), a stopped run is `stopped` and its checkpoints dropped.
/// Then, in a search, chooses the trials that the trials ended so far allow.
pub(super) fn decide(tx: &Transaction<'_>, experiment: i64) -> Result<Taken> {
    let mut taken = stop_early(tx, experiment)?;
    taken.trials = super::trials::advance(tx, experiment)?;
    Ok(taken)
}

fn stop_early(tx: &Transaction<'_>, experiment: i64) -> Result<Taken> {
    let Some(settings) = settings(tx, experiment)? else {
        return Ok(Taken::default());
    };
    let logged = log(tx, experiment)?;
    let decided: HashSet<(i64, u32)> = logged
        .iter()
        .map(|l| (l.decision.run, l.decision.rung))
        .collect();
    let runs: Vec<(i64, String, u64, u64, String)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT id, status, step, steps_total, spec FROM runs
             WHERE experiment_id = ?1 ORDER BY plan_index, id",
        )?;
        stmt.query_map([experiment], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get::<_, i64>(2)?.max(0) as u64,
                r.get::<_, i64>(3)?.max(0) as u64,
                r.get(4)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?
    };
    let name_id: Option<i64> = tx
        .query_row(
            "SELECT id FROM metric_names WHERE name = ?1",
            [&settings.metric],
            |r| r.get(0),
        )
        .optional()?;
    let mut entrants = Vec::new();
    let mut steps = 0;
    let mut next_rung: HashMap<(i64, u32), Option<u64>> = HashMap::new();
    for (id, status, step, total, spec) in runs {
        let Ok(Place {
            early_stop: Some(rungs),
        }) = serde_json::from_str::<Place>(&spec)
        else {
            continue;
        };
        steps = steps.max(total);
        let status = Status::parse(&status);
        let committed = matches!(
            status,
            Some(Status::Paused | Status::Stopped | Status::Completed)
        );
        let mut values = Vec::with_capacity(rungs.steps.len());
        for (k, &rung) in rungs.steps.iter().enumerate() {
            let ready = (committed && rung <= step) || decided.contains(&(id, k as u32));
            let value = match (ready, name_id) {
                (true, Some(name)) => value_at(tx, id, name, rung, settings.smooth)?,
                _ => None,
            };
            values.push(value);
            next_rung.insert((id, k as u32), rungs.steps.get(k + 1).copied());
        }
        entrants.push(Entrant {
            run: id,
            draw: rungs.draw,
            bracket: rungs.bracket,
            out: matches!(status, Some(Status::Failed | Status::Cancelled)),
            values,
        });
    }
    let past: Vec<Decision> = logged.into_iter().map(|l| l.decision).collect();
    let decisions = early_stop::decide(&settings, steps, &entrants, &past);
    let mut taken = Taken::default();
    let stamp = now();
    for d in &decisions {
        tx.execute(
            "INSERT INTO decisions (experiment_id, run_id, bracket, rung, step, action, value,
                 rank, peers, cutoff, reason, decided_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                experiment,
                d.run,
                d.bracket,
                d.rung,
                d.step as i64,
                d.action.name(),
                d.value,
                d.rank,
                d.peers,
                d.cutoff,
                d.reason,
                stamp
            ],
        )?;
        match d.action {
            Action::Promote => {
                let until = next_rung.get(&(d.run, d.rung)).copied().flatten();
                tx.execute(
                    "UPDATE runs SET status = 'queued', until_step = ?2, error = NULL
                     WHERE id = ?1 AND status = 'paused'",
                    params![d.run, until.map(|u| u as i64)],
                )?;
            }
            Action::Stop => {
                let reason = format!("stopped at step {}: {}", d.step, d.reason);
                let n = tx.execute(
                    "UPDATE runs SET status = 'stopped', error = ?2, finished_at = ?3
                     WHERE id = ?1 AND status = 'paused'",
                    params![d.run, reason, stamp],
                )?;
                if n == 1 {
                    let mut stmt =
                        tx.prepare_cached("SELECT path FROM checkpoints WHERE run_id = ?1")?;
                    let paths: Vec<String> = stmt
                        .query_map([d.run], |r| r.get(0))?
                        .collect::<rusqlite::Result<_>>()?;
                    tx.execute("DELETE FROM checkpoints WHERE run_id = ?1", [d.run])?;
                    taken.dropped.extend(paths.into_iter().map(|p| (d.run, p)));
                }
            }
        }
    }
    taken.decisions = decisions;
    Ok(taken)
}

/// The experiment a run belongs to.
pub(super) fn experiment_of(tx: &Transaction<'_>, run: i64) -> Result<Option<i64>> {
    Ok(tx
        .query_row("SELECT experiment_id FROM runs WHERE id = ?1", [run], |r| {
            r.get(0)
        })
        .optional()?)
}

impl Store {
    /// Takes the decisions an experiment's recorded results allow (none when its runs do not
    /// stop early), in one transaction; returns them.
    pub fn decide(&mut self, experiment: &str) -> Result<Vec<Decision>> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let id = experiment_id(&tx, experiment)?;
        let taken = match id {
            Some(id) => decide(&tx, id)?,
            None => Taken::default(),
        };
        tx.commit()?;
        self.drop_checkpoints(&taken.dropped);
        Ok(taken.decisions)
    }

    /// Deletes the folders of checkpoints whose rows are gone (a stopped run's).
    pub(super) fn drop_checkpoints(&self, dropped: &[(i64, String)]) {
        for (run, path) in dropped {
            match self.deletable(*run, path) {
                Some(dir) => {
                    if let Err(e) = std::fs::remove_dir_all(&dir) {
                        tracing::warn!(
                            "run-{run}: cannot delete checkpoint {}: {e}",
                            dir.display()
                        );
                    }
                }
                None => tracing::warn!(
                    "run-{run}: checkpoint {path} is not in this store's checkpoint folder; \
                     retention leaves it alone"
                ),
            }
        }
    }

    /// An experiment's early-stopping settings, if its runs stop early.
    pub fn early_stop(&self, experiment: &str) -> Result<Option<EarlyStop>> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT early_stop FROM experiments WHERE name = ?1",
                [experiment],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        parse_settings(text, experiment)
    }

    /// An experiment's decision log, by bracket and rung, each rung's in the order taken: the
    /// same for any number of workers and any interleaving of rungs.
    pub fn decisions(&self, experiment: &str) -> Result<Vec<Logged>> {
        let id = experiment_id(&self.conn, experiment)?;
        let Some(id) = id else { return Ok(Vec::new()) };
        let mut all = log(&self.conn, id)?;
        all.sort_by_key(|l| (l.decision.bracket, l.decision.rung, l.seq));
        Ok(all)
    }

    /// The decisions about one run, in the order taken.
    pub fn decisions_of_run(&self, run: i64) -> Result<Vec<Logged>> {
        let experiment: Option<i64> = self
            .conn
            .query_row("SELECT experiment_id FROM runs WHERE id = ?1", [run], |r| {
                r.get(0)
            })
            .optional()?;
        let Some(experiment) = experiment else {
            return Ok(Vec::new());
        };
        Ok(log(&self.conn, experiment)?
            .into_iter()
            .filter(|l| l.decision.run == run)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rung_value_is_the_mean_of_the_last_values_and_needs_one_at_the_rung() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("runs.db")).unwrap();
        let tx = store.conn.transaction().unwrap();
        tx.execute(
            "INSERT INTO metric_names (id, name) VALUES (1, 'val_loss')",
            [],
        )
        .unwrap();
        for (step, value) in [(3, 4.0), (6, 3.0), (9, 2.0), (12, 1.0)] {
            tx.execute(
                "INSERT INTO metrics (run_id, name_id, step, value, t_ms) VALUES (7, 1, ?1, ?2, 0)",
                params![step, value],
            )
            .unwrap();
        }
        assert_eq!(value_at(&tx, 7, 1, 9, 1).unwrap(), Some(2.0));
        assert_eq!(value_at(&tx, 7, 1, 9, 2).unwrap(), Some(2.5));
        assert_eq!(
            value_at(&tx, 7, 1, 9, 5).unwrap(),
            Some(3.0),
            "only three so far"
        );
        // No value recorded at step 10: the run has not reported there.
        assert_eq!(value_at(&tx, 7, 1, 10, 1).unwrap(), None);
        assert_eq!(value_at(&tx, 8, 1, 9, 1).unwrap(), None);
    }
}
