//! Checkpoint records: where a store keeps its runs' checkpoints, registering them, and
//! retention (which to keep; deleting the others, only ever inside the store's own folder).

use std::path::{Path, PathBuf};

use rusqlite::params;
use serde::Serialize;

use super::{Result, Store, now};

/// A checkpoint as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checkpoint {
    pub step: i64,
    /// Relative to the store's folder (see [`Store::checkpoint_path`]), or absolute.
    pub path: String,
    pub bytes: i64,
    pub blake3: String,
    pub val_loss: Option<f64>,
}

/// The checkpoint `which` names: `best` (lowest validation loss, else the last), `last`, or a
/// step number; else what was wrong, naming the steps there are.
pub fn choose<'a>(
    checkpoints: &'a [Checkpoint],
    which: &str,
) -> std::result::Result<&'a Checkpoint, String> {
    let chosen = match which {
        "last" => checkpoints.last(),
        "best" => checkpoints
            .iter()
            .filter(|c| c.val_loss.is_some())
            .min_by(|a, b| {
                a.val_loss
                    .unwrap_or(f64::INFINITY)
                    .total_cmp(&b.val_loss.unwrap_or(f64::INFINITY))
            })
            .or(checkpoints.last()),
        step => match step.parse::<i64>() {
            Ok(s) => checkpoints.iter().find(|c| c.step == s),
            Err(_) => {
                return Err(format!(
                    "a checkpoint is best, last or a step number, not `{step}`"
                ));
            }
        },
    };
    chosen.ok_or_else(|| {
        let steps: Vec<String> = checkpoints.iter().map(|c| c.step.to_string()).collect();
        if steps.is_empty() {
            "no checkpoint yet".to_string()
        } else {
            format!("no checkpoint `{which}` (steps: {})", steps.join(", "))
        }
    })
}

/// Which checkpoints retention drops, given every kept one as (step, validation loss): all
/// but the `keep_last` newest and, if asked, the one with the best validation loss.
pub fn retention(
    checkpoints: &[(i64, Option<f64>)],
    keep_last: usize,
    keep_best: bool,
) -> Vec<i64> {
    let best = checkpoints
        .iter()
        .filter_map(|(step, v)| v.map(|v| (*step, v)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(step, _)| step);
    let mut newest_first: Vec<i64> = checkpoints.iter().map(|(s, _)| *s).collect();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    newest_first
        .into_iter()
        .enumerate()
        .filter(|(i, step)| !(*i < keep_last.max(1) || (keep_best && Some(*step) == best)))
        .map(|(_, step)| step)
        .collect()
}

impl Store {
    /// `runs.db` → `runs.db-checkpoints`: the folder of this store's checkpoints, named after
    /// the database as SQLite names its own files beside it (`runs.db-wal`), so that two stores
    /// in one folder never share one, and the store and its checkpoints move together.
    pub fn checkpoints_root(&self) -> PathBuf {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "runs.db".into());
        self.dir().join(format!("{name}-checkpoints"))
    }

    /// Where a run's checkpoints go.
    pub fn checkpoint_dir(&self, run: i64) -> PathBuf {
        self.checkpoints_root().join(format!("run-{run}"))
    }

    /// How a checkpoint folder is recorded: relative to the store's folder when inside it.
    pub fn recorded_path(&self, dir: &Path) -> String {
        dir.strip_prefix(self.dir())
            .unwrap_or(dir)
            .to_string_lossy()
            .into_owned()
    }

    /// A recorded checkpoint path as a path to read: relative ones are relative to the store's
    /// folder, whatever the working directory.
    pub fn checkpoint_path(&self, recorded: &str) -> PathBuf {
        let path = Path::new(recorded);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir().join(path)
        }
    }

    /// The folder retention may delete for a recorded path of `run`: a `step-…` folder right
    /// inside this store's checkpoint folder for the run (or, for runs recorded by an older
    /// xp, `checkpoints/run-N` beside the store, or, for a run trained on Slurm, its folder in
    /// the shared folder), and nothing anywhere else, whatever the database says.
    pub(super) fn deletable(&self, run: i64, recorded: &str) -> Option<PathBuf> {
        let target = std::fs::canonicalize(self.checkpoint_path(recorded)).ok()?;
        let named_as_step = target
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("step-"));
        let roots = [
            self.checkpoint_dir(run),
            self.dir().join("checkpoints").join(format!("run-{run}")),
        ];
        let inside = roots.iter().any(|root| {
            std::fs::canonicalize(root).is_ok_and(|root| target.parent() == Some(root.as_path()))
        });
        (named_as_step && inside)
            .then_some(target.clone())
            .or_else(|| in_shared_run_folder(run, &target))
    }

    /// Registers a checkpoint and applies retention: the `keep_last` newest and, if asked, the
    /// best by validation loss survive; the folders of the others are deleted.
    pub fn add_checkpoint(
        &mut self,
        id: i64,
        c: &Checkpoint,
        keep_last: usize,
        keep_best: bool,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO checkpoints (run_id, step, path, bytes, blake3, val_loss, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(run_id, step) DO UPDATE SET path = excluded.path, bytes = excluded.bytes,
                blake3 = excluded.blake3, val_loss = coalesce(excluded.val_loss, val_loss)",
            params![id, c.step, c.path, c.bytes, c.blake3, c.val_loss, now()],
        )?;
        let all: Vec<(i64, String, Option<f64>)> = {
            let mut stmt = tx.prepare(
                "SELECT step, path, val_loss FROM checkpoints WHERE run_id = ?1 ORDER BY step",
            )?;
            stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        let kept: Vec<(i64, Option<f64>)> = all.iter().map(|(s, _, v)| (*s, *v)).collect();
        let drop = retention(&kept, keep_last, keep_best);
        let mut dropped = Vec::new();
        for (step, path, _) in all.iter().filter(|(s, _, _)| drop.contains(s)) {
            tx.execute(
                "DELETE FROM checkpoints WHERE run_id = ?1 AND step = ?2",
                params![id, step],
            )?;
            dropped.push((id, path.clone()));
        }
        tx.commit()?;
        self.drop_checkpoints(&dropped);
        Ok(())
    }

    /// A run's checkpoints, oldest first.
    pub fn checkpoints(&self, id: i64) -> Result<Vec<Checkpoint>> {
        let mut stmt = self.conn.prepare(
            "SELECT step, path, bytes, blake3, val_loss FROM checkpoints WHERE run_id = ?1 ORDER BY step",
        )?;
        let rows = stmt.query_map([id], |r| {
            Ok(Checkpoint {
                step: r.get(0)?,
                path: r.get(1)?,
                bytes: r.get(2)?,
                blake3: r.get(3)?,
                val_loss: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// A checkpoint of a run that trained on Slurm: `…/runs/run-N-<key>/checkpoints/step-…` in
/// the shared folder, N the run, and nothing else.
fn in_shared_run_folder(run: i64, path: &Path) -> Option<PathBuf> {
    let step = path.file_name()?.to_string_lossy().starts_with("step-");
    let parent = path.parent()?;
    let folder = parent.parent()?.file_name()?.to_string_lossy().into_owned();
    let ours = parent.file_name()? == "checkpoints"
        && folder.starts_with(&format!("run-{run}-"))
        && path.parent()?.parent()?.parent()?.file_name()? == "runs";
    (step && ours).then_some(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_keeps_the_newest_and_the_best() {
        let all = [
            (10, Some(2.0)),
            (20, Some(1.5)),
            (30, Some(1.7)),
            (40, None),
        ];
        assert_eq!(retention(&all, 2, true), [10]);
        assert_eq!(retention(&all, 2, false), [20, 10]);
        assert_eq!(retention(&all, 1, true), [30, 10]);
        assert_eq!(
            retention(&all, 0, false),
            [30, 20, 10],
            "at least one is kept"
        );
    }
}
