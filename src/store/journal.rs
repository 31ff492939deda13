//! Worker journals: where a worker that must not open runs.db (a Slurm task on another node,
//! whose shared folder may be a network filesystem) records one attempt of a run, one JSON
//! object per line; and the merge of their new lines into runs.db (`xp sync`), which is
//! incremental, idempotent and ignores a torn last line.

use std::collections::HashMap;
use std::io::{BufRead, Read, Seek, Write};
use std::path::Path;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::decisions::{Taken, decide, experiment_of};
use super::metrics::{MetricRow, write_rows};
use super::queue;
use super::runs::{Executed, write_summary};
use super::state::Outcome;
use super::{Result, Store};

/// One line of a journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// The attempt started on a node; metrics after `resumed_from` (all, without it) are
    /// recorded anew.
    Started {
        at: String,
        attempt: i64,
        resumed_from: Option<u64>,
        executed: Executed,
    },
    Metrics {
        rows: Vec<(u64, String, f64, u64)>,
    },
    Progress {
        at: String,
        step: u64,
    },
    /// A checkpoint written (its path absolute), and the steps retention dropped.
    Checkpoint {
        step: u64,
        path: String,
        bytes: u64,
        blake3: String,
        val_loss: Option<f64>,
        dropped: Vec<u64>,
    },
    Finished {
        at: String,
        outcome: Outcome,
    },
}

/// A journal being written: each entry is one line, appended.
pub struct Journal {
    file: std::fs::File,
}

impl Journal {
    /// Opens `path` for appending, creating it.
    pub fn append(path: &Path) -> std::io::Result<Journal> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Journal { file })
    }

    /// Writes one entry as one line, in one write (so a crash tears at most the last line).
    pub fn write(&mut self, entry: &Entry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::from)?;
        line.push(b'\n');
        self.file.write_all(&line)
    }

    /// Forces what was written to the disk (at checkpoints and at the end).
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

/// The complete lines of a journal after byte `offset`, parsed, and the offset after the
/// last complete line. A torn last line (no newline yet) is left for the next read; a
/// complete line that does not parse is skipped with a warning rather than stopping every
/// later line from merging.
pub fn read_from(path: &Path, offset: u64) -> std::io::Result<(Vec<Entry>, u64)> {
    let mut file = std::fs::File::open(path)?;
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut reader = std::io::BufReader::new(file.take(u64::MAX));
    let mut entries = Vec::new();
    let mut consumed = offset;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        consumed += n as u64;
        match serde_json::from_slice::<Entry>(&line) {
            Ok(e) => entries.push(e),
            Err(e) => tracing::warn!(
                "{}: a line at byte {} is not a journal entry ({e}); skipped",
                path.display(),
                consumed - n as u64
            ),
        }
    }
    Ok((entries, consumed))
}

impl Store {
    /// Merges the lines of `journal` (one attempt of `run`) not merged before, in one
    /// transaction; returns how many entries were applied. Merging again applies nothing.
    pub fn merge_journal(&mut self, run: i64, journal: &Path) -> Result<usize> {
        let key = journal.to_string_lossy().into_owned();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let offset: u64 = tx
            .query_row(
                "SELECT offset FROM journal_offsets WHERE path = ?1",
                [&key],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .unwrap_or(0)
            .max(0) as u64;
        let len = std::fs::metadata(journal).map(|m| m.len()).unwrap_or(0);
        if len <= offset {
            return Ok(0);
        }
        let (entries, end) = match read_from(journal, offset) {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!("cannot read journal {}: {e}", journal.display());
                return Ok(0);
            }
        };
        let mut names: HashMap<String, i64> = HashMap::new();
        let mut finished = false;
        for entry in &entries {
            apply(&tx, run, entry, &mut names)?;
            finished |= matches!(entry, Entry::Finished { .. });
        }
        tx.execute(
            "INSERT INTO journal_offsets (path, offset) VALUES (?1, ?2)
             ON CONFLICT(path) DO UPDATE SET offset = excluded.offset",
            params![key, end as i64],
        )?;
        // The decisions a result allows are recorded with it, as for a local run.
        let taken = match experiment_of(&tx, run)? {
            Some(experiment) if finished => decide(&tx, experiment)?,
            _ => Taken::default(),
        };
        tx.commit()?;
        self.drop_checkpoints(&taken.dropped);
        Ok(entries.len())
    }
}

fn apply(
    tx: &rusqlite::Transaction<'_>,
    run: i64,
    entry: &Entry,
    names: &mut HashMap<String, i64>,
) -> Result<()> {
    match entry {
        Entry::Started {
            at,
            attempt,
            resumed_from,
            executed,
        } => {
            let host = executed.host.as_deref().unwrap_or("");
            if queue::journal_started(tx, run, *attempt, host, executed.pid as i64, at)? {
                tx.execute(
                    "DELETE FROM metrics WHERE run_id = ?1 AND step > ?2",
                    params![run, resumed_from.map_or(-1, |s| s as i64)],
                )?;
                let json = serde_json::to_string(executed).expect("plain data serializes");
                tx.execute(
                    "UPDATE runs SET backend = ?2, adapter = ?3,
                         provenance = json_set(provenance, '$.executed', json(?4))
                     WHERE id = ?1",
                    params![run, executed.backend, executed.adapter, json],
                )?;
            }
        }
        Entry::Metrics { rows } => {
            let rows: Vec<MetricRow> = rows
                .iter()
                .map(|(step, name, value, t_ms)| MetricRow {
                    step: *step,
                    name: name.clone(),
                    value: *value,
                    t_ms: *t_ms,
                })
                .collect();
            write_rows(tx, run, &rows, names)?;
        }
        Entry::Progress { at, step } => queue::journal_progress(tx, run, *step, at)?,
        Entry::Checkpoint {
            step,
            path,
            bytes,
            blake3,
            val_loss,
            dropped,
        } => {
            tx.execute(
                "INSERT INTO checkpoints (run_id, step, path, bytes, blake3, val_loss, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(run_id, step) DO UPDATE SET path = excluded.path,
                    bytes = excluded.bytes, blake3 = excluded.blake3,
                    val_loss = coalesce(excluded.val_loss, val_loss)",
                params![
                    run,
                    *step as i64,
                    path,
                    *bytes as i64,
                    blake3,
                    val_loss,
                    super::now()
                ],
            )?;
            for d in dropped {
                tx.execute(
                    "DELETE FROM checkpoints WHERE run_id = ?1 AND step = ?2",
                    params![run, *d as i64],
                )?;
            }
        }
        Entry::Finished { at, outcome } => {
            if queue::journal_finished(tx, run, outcome, at)?
                && let Outcome::Completed { summary } | Outcome::Paused { summary, .. } = outcome
            {
                write_summary(tx, run, summary)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_waits_and_complete_lines_are_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attempt-1.jsonl");
        let mut j = Journal::append(&path).unwrap();
        let progress = |step| Entry::Progress {
            at: "t".into(),
            step,
        };
        j.write(&progress(1)).unwrap();
        j.write(&progress(2)).unwrap();
        // A writer killed in the middle of its third line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(br#"{"kind":"progress","at":"t","st"#)
            .unwrap();
        let (entries, end) = read_from(&path, 0).unwrap();
        assert_eq!(entries, [progress(1), progress(2)]);
        let (again, same) = read_from(&path, end).unwrap();
        assert!(again.is_empty());
        assert_eq!(same, end);
        // The line completed later is read from where the last read stopped.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"ep\":3}\n")
            .unwrap();
        let (rest, _) = read_from(&path, end).unwrap();
        assert_eq!(rest, [progress(3)]);
    }
}
