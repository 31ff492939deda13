//! A search's trials in the store: chosen in the transaction that records a result they may
//! depend on (a trial's end), queued as runs, and kept in the append-only `trials` log with
//! what each saw and how it was chosen.

use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::state::Status;
use super::{Error, Result, Store, experiment_id, now};
use crate::early_stop::EarlyStop;
use crate::search::{COMPLETED, Observation, Search};
use crate::sweep::RunSpec;

/// What an experiment keeps of its search (`experiments.trials`): enough to make every later
/// trial's spec without the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    pub experiment: String,
    pub search: Search,
    pub early_stop: Option<EarlyStop>,
    /// The first trial's spec: later trials are it with their own values set.
    pub first: RunSpec,
}

/// One trial as the log holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trial {
    /// Its number, from 0.
    pub trial: u64,
    pub run: i64,
    /// How many ended trials it saw.
    pub seen: u64,
    pub how: String,
    /// The values it was given, by key.
    pub settings: Vec<(String, Value)>,
}

fn parse_stored(text: &str, experiment: &str) -> Result<Stored> {
    serde_json::from_str(text).map_err(|e| {
        Error::Unreadable(format!(
            "the search of experiment {experiment} cannot be read ({e}); it was written by \
             another xp"
        ))
    })
}

/// The search an experiment runs, if it runs one.
fn stored(tx: &rusqlite::Connection, experiment: i64) -> Result<Option<Stored>> {
    let text: Option<String> = tx
        .query_row(
            "SELECT trials FROM experiments WHERE id = ?1",
            [experiment],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    text.map(|t| parse_stored(&t, &experiment.to_string()))
        .transpose()
}

fn log(conn: &rusqlite::Connection, experiment: i64) -> Result<Vec<Trial>> {
    let mut stmt = conn.prepare_cached(
        "SELECT trial, run_id, seen, how, settings FROM trials
         WHERE experiment_id = ?1 ORDER BY trial",
    )?;
    let rows = stmt.query_map([experiment], |r| {
        let settings: String = r.get(4)?;
        Ok(Trial {
            trial: r.get::<_, i64>(0)?.max(0) as u64,
            run: r.get(1)?,
            seen: r.get::<_, i64>(2)?.max(0) as u64,
            how: r.get(3)?,
            settings: serde_json::from_str(&settings).unwrap_or_default(),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Logs a trial (in the transaction that queues its run).
pub(super) fn record(
    tx: &Transaction<'_>,
    experiment: i64,
    trial: u64,
    run: i64,
    seen: u64,
    how: &str,
    settings: &[(String, Value)],
) -> Result<()> {
    tx.execute(
        "INSERT INTO trials (experiment_id, trial, run_id, seen, how, settings, decided_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            experiment,
            trial as i64,
            run,
            seen as i64,
            how,
            serde_json::to_string(settings).unwrap_or_default(),
            now()
        ],
    )?;
    Ok(())
}

/// How a trial ended, as the trials after it see it.
struct Outcome {
    level: u32,
    value: f64,
    rungs: Vec<(u64, f64)>,
}

/// How an ended trial's run ended, as the trials after it see it: `None` for a run that failed
/// (seen as nothing).
fn outcome(tx: &Transaction<'_>, search: &Search, run: i64) -> Result<Option<Outcome>> {
    let status: Option<String> = tx
        .query_row("SELECT status FROM runs WHERE id = ?1", [run], |r| r.get(0))
        .optional()?;
    // The search's metric at its last evaluation up to `step` (that of the rungs' decisions
    // may be another metric, or smoothed).
    let at = |tx: &Transaction<'_>, step: i64| -> Result<Option<f64>> {
        Ok(tx
            .query_row(
                "SELECT m.value FROM metrics m JOIN metric_names n ON n.id = m.name_id
                 WHERE m.run_id = ?1 AND n.name = ?2 AND m.step <= ?3
                 ORDER BY m.step DESC LIMIT 1",
                params![run, search.metric, step],
                |r| r.get(0),
            )
            .optional()?)
    };
    let level = match status.as_deref().and_then(Status::parse) {
        Some(Status::Completed) => COMPLETED,
        Some(Status::Stopped) => {
            let passed: i64 = tx.query_row(
                "SELECT count(*) FROM decisions WHERE run_id = ?1 AND action = 'promote'",
                [run],
                |r| r.get(0),
            )?;
            passed as u32
        }
        _ => return Ok(None),
    };
    let Some(value) = at(tx, i64::MAX)? else {
        return Ok(None);
    };
    let steps: Vec<i64> = tx
        .prepare("SELECT step FROM decisions WHERE run_id = ?1 ORDER BY rung")?
        .query_map([run], |r| r.get(0))?
        .collect::<std::result::Result<_, _>>()?;
    let mut rungs = Vec::with_capacity(steps.len());
    for step in steps {
        match at(tx, step)? {
            Some(v) => rungs.push((step as u64, v)),
            None => break,
        }
    }
    Ok(Some(Outcome {
        level,
        value,
        rungs,
    }))
}

/// What later trials take from the first one: where and how it runs.
struct FirstRun {
    provenance: String,
    host: Option<String>,
    commit: Option<String>,
    dirty: Option<bool>,
    executor: String,
    executor_dir: Option<String>,
}

/// Chooses every trial the ended trials allow and the log lacks, queues each as a run (or
/// records it failed when its values do not make a run) and logs it; returns how many.
pub(super) fn advance(tx: &Transaction<'_>, experiment: i64) -> Result<usize> {
    let Some(stored) = stored(tx, experiment)? else {
        return Ok(0);
    };
    let search = &stored.search;
    let mut trials = log(tx, experiment)?;
    // Whether each trial has ended, from one query: most ends let no new trial be chosen, and
    // this runs in the transaction that records every end.
    let mut ended: Vec<bool> = {
        let mut stmt = tx.prepare_cached(
            "SELECT r.status FROM trials t JOIN runs r ON r.id = t.run_id
             WHERE t.experiment_id = ?1 ORDER BY t.trial",
        )?;
        let rows = stmt.query_map([experiment], |r| r.get::<_, String>(0))?;
        rows.map(|status| {
            Ok(matches!(
                Status::parse(&status?),
                Some(Status::Completed | Status::Stopped | Status::Failed | Status::Cancelled)
            ))
        })
        .collect::<Result<_>>()?
    };
    if !search.ready(trials.len() as u64, |j| {
        ended.get(j as usize) == Some(&true)
    }) {
        return Ok(0);
    }
    // Each seen trial's observation, read once (`None` inside: it failed).
    let mut seen: Vec<Option<Observation>> = Vec::new();
    let (manifest_path, manifest_digest): (String, String) = tx.query_row(
        "SELECT manifest_path, manifest_digest FROM experiments WHERE id = ?1",
        [experiment],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    // Later trials run as the first did: its provenance and executor.
    let first: Option<FirstRun> = tx
        .query_row(
            "SELECT provenance, host, git_commit, git_dirty, executor, executor_dir FROM runs
             WHERE id = ?1",
            [trials.first().map_or(-1, |t| t.run)],
            |r| {
                Ok(FirstRun {
                    provenance: r.get(0)?,
                    host: r.get(1)?,
                    commit: r.get(2)?,
                    dirty: r.get(3)?,
                    executor: r.get(4)?,
                    executor_dir: r.get(5)?,
                })
            },
        )
        .optional()?;
    let Some(FirstRun {
        provenance,
        host,
        commit,
        dirty,
        executor,
        executor_dir,
    }) = first
    else {
        return Ok(0);
    };
    let mut made = 0;
    loop {
        let k = trials.len() as u64;
        if !search.ready(k, |j| ended.get(j as usize) == Some(&true)) {
            break;
        }
        for t in &trials[seen.len()..search.visible(k) as usize] {
            let o = outcome(tx, search, t.run)?.map(|o| Observation {
                trial: t.trial,
                values: t.settings.iter().map(|(_, v)| v.clone()).collect(),
                level: o.level,
                value: o.value,
                rungs: o.rungs,
            });
            seen.push(o);
        }
        let observed: Vec<Observation> = seen.iter().flatten().cloned().collect();
        let chosen = search.choose(k, &observed);
        let spec = crate::sweep::searching::trial_spec(
            &stored.first,
            &chosen.values,
            k,
            &stored.experiment,
            search,
            stored.early_stop.as_ref(),
        );
        let stamp = now();
        let (key, spec_text, steps, until, status, error) = match &spec {
            Ok(spec) => (
                spec.key.clone(),
                serde_json::to_string(spec).expect("run specs serialize"),
                spec.config.train.steps,
                spec.early_stop
                    .as_ref()
                    .and_then(|r| r.steps.first())
                    .map(|&s| s as i64),
                Status::Queued,
                None,
            ),
            // Values the sampler drew that make no run (a width the heads do not divide):
            // the trial fails, as a run that cannot train does, and the search goes on.
            Err(problem) => {
                let mut failed = stored.first.clone();
                failed.swept = chosen.values.clone();
                failed.index = k as usize;
                failed.key = crate::sweep::searching::trial_key(
                    "invalid",
                    &stored.experiment,
                    search,
                    stored.early_stop.as_ref(),
                    k,
                );
                (
                    failed.key.clone(),
                    serde_json::to_string(&failed).expect("run specs serialize"),
                    failed.config.train.steps,
                    None,
                    Status::Failed,
                    Some(format!(
                        "the settings trial {k} drew make no run: {problem}"
                    )),
                )
            }
        };
        tx.execute(
            "INSERT INTO runs (experiment_id, key, plan_index, manifest_path, manifest_digest,
                 spec, provenance, status, steps_total, created_at, host, git_commit, git_dirty,
                 until_step, draw, executor, executor_dir, error, finished_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                 ?17, ?18, ?19)",
            params![
                experiment,
                key,
                k as i64,
                manifest_path,
                manifest_digest,
                spec_text,
                provenance,
                status.name(),
                steps as i64,
                stamp,
                host,
                commit,
                dirty,
                until,
                k as i64,
                executor,
                executor_dir,
                error,
                error.as_ref().map(|_| stamp.clone()),
            ],
        )?;
        let run = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO experiment_runs (experiment_id, run_id, plan_index) VALUES (?1, ?2, ?3)",
            params![experiment, run, k as i64],
        )?;
        record(
            tx,
            experiment,
            k,
            run,
            chosen.seen,
            &chosen.how,
            &chosen.values,
        )?;
        ended.push(spec.is_err());
        trials.push(Trial {
            trial: k,
            run,
            seen: chosen.seen,
            how: chosen.how,
            settings: chosen.values,
        });
        made += 1;
    }
    Ok(made)
}

/// Stores an experiment's search and logs the trials its plan queued (in enqueue's
/// transaction).
pub(super) fn begin(
    tx: &Transaction<'_>,
    experiment: i64,
    stored: &Stored,
    runs: &[(u64, i64)],
) -> Result<()> {
    let text = serde_json::to_string(stored).expect("a search serializes");
    tx.execute(
        "UPDATE experiments SET trials = ?2 WHERE id = ?1",
        params![experiment, text],
    )?;
    let logged: Vec<u64> = log(tx, experiment)?.into_iter().map(|t| t.trial).collect();
    for &(trial, run) in runs {
        if logged.contains(&trial) {
            continue;
        }
        let chosen = stored.search.choose(trial, &[]);
        record(tx, experiment, trial, run, 0, &chosen.how, &chosen.values)?;
    }
    Ok(())
}

impl Store {
    /// An experiment's search and its trials so far, if it runs a search.
    pub fn trials(&self, experiment: &str) -> Result<Option<(Search, Vec<Trial>)>> {
        let id = experiment_id(&self.conn, experiment)?;
        let Some(id) = id else { return Ok(None) };
        let Some(stored) = stored(&self.conn, id)? else {
            return Ok(None);
        };
        Ok(Some((stored.search, log(&self.conn, id)?)))
    }

    /// Whether an experiment runs a search that has trials still to choose (asked by idle
    /// workers every 200 ms: one query, no parsing of the search).
    pub fn choosing(&self, experiment: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT (SELECT count(*) FROM trials t WHERE t.experiment_id = e.id)
                        < json_extract(e.trials, '$.search.trials')
                 FROM experiments e WHERE e.name = ?1 AND e.trials IS NOT NULL",
                [experiment],
                |r| r.get::<_, bool>(0),
            )
            .optional()?
            .unwrap_or(false))
    }
}
