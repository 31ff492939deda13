//! The Slurm executor: queued runs are submitted as job arrays whose tasks each train one run
//! in a shared folder (its spec, checkpoints and one journal per attempt); `sync` merges the
//! journals into runs.db and fails the runs whose task left Slurm's queue without an outcome.
//! Workers never open runs.db: it stays on the submitting machine's local disk.

pub mod cluster;
pub mod worker;

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Error;
use crate::manifest::{ExecutorConfig, ExecutorKind};
use crate::store::{RunFilter, RunRecord, SlurmTask, Status, Store};
use crate::sweep::RunSpec;

/// What a task needs to train its run, written to `spec.json` in the run's folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskSpec {
    pub run: i64,
    pub key: String,
    pub spec: RunSpec,
    /// The folder `data.path` is relative to (the manifest's), which the nodes must see.
    pub base_dir: PathBuf,
    /// The rung this attempt trains to, in an early-stopped sweep (none: the last step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
}

/// A run's folder in the shared folder: `runs/run-N-<key>`, unique per run and content.
pub fn run_folder(dir: &Path, run: i64, key: &str) -> PathBuf {
    dir.join("runs")
        .join(format!("run-{run}-{}", &key[..12.min(key.len())]))
}

/// The journals of a run's attempts, in attempt order.
pub fn journals(folder: &Path) -> Vec<PathBuf> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name
                .strip_prefix("attempt-")?
                .strip_suffix(".jsonl")?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// Index ranges of the arrays a plan of `runs` runs becomes, each of at most `max` tasks
/// (Slurm's `MaxArraySize`: task indices stay below it).
pub fn arrays(runs: usize, max: usize) -> Vec<Range<usize>> {
    let max = max.max(1);
    (0..runs)
        .step_by(max)
        .map(|start| start..(start + max).min(runs))
        .collect()
}

/// The batch script of one array: every task `exec`s an `xp worker` for its line of `tasks`,
/// so that xp itself is the batch shell and gets the time-limit signal.
pub fn script(
    executor: &ExecutorConfig,
    name: &str,
    dir: &Path,
    tasks: &Path,
    count: usize,
    xp: &str,
) -> String {
    let mut lines = vec![
        "#!/bin/bash".to_string(),
        format!("#SBATCH --job-name=xp-{name}"),
        match executor.max_parallel {
            Some(n) => format!("#SBATCH --array=0-{}%{n}", count.saturating_sub(1)),
            None => format!("#SBATCH --array=0-{}", count.saturating_sub(1)),
        },
        format!("#SBATCH --output={}/logs/%A_%a.log", dir.display()),
        "#SBATCH --open-mode=append".into(),
        "#SBATCH --requeue".into(),
        format!("#SBATCH --signal={}", executor.signal),
    ];
    let optional = [
        ("partition", executor.partition.clone()),
        ("time", executor.time.clone()),
        (
            "cpus-per-task",
            executor.cpus_per_task.map(|n| n.to_string()),
        ),
        (
            "gpus-per-task",
            executor.gpus_per_task.map(|n| n.to_string()),
        ),
        ("mem", executor.mem.clone()),
    ];
    for (flag, value) in optional {
        if let Some(v) = value {
            lines.push(format!("#SBATCH --{flag}={v}"));
        }
    }
    for arg in &executor.sbatch_args {
        lines.push(format!("#SBATCH {arg}"));
    }
    lines.push(String::new());
    lines.extend(executor.setup.iter().cloned());
    lines.push(format!(
        "export XP_CACHE={}",
        shell_quote(&dir.join("cache").to_string_lossy())
    ));
    lines.push(format!(
        "exec {} worker --slurm {}",
        shell_quote(xp),
        shell_quote(&tasks.to_string_lossy())
    ));
    lines.push(String::new());
    lines.join("\n")
}

/// Quotes a word for bash, unless it needs none.
fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@%,".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// One array submitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub job: String,
    pub runs: Vec<i64>,
    pub script: PathBuf,
}

/// Submits an experiment's queued runs as job arrays; what was submitted.
pub fn submit(
    store: &mut Store,
    experiment: &str,
    executor: &ExecutorConfig,
) -> Result<Vec<Array>, Error> {
    debug_assert_eq!(executor.kind, ExecutorKind::Slurm);
    let Some(dir) = executor.dir.as_deref() else {
        return Err(Error::Usage(
            "executor.kind = \"slurm\" needs executor.dir: a folder every node can read and \
             write (set it in [executor] or with --set executor.dir=PATH)"
                .into(),
        ));
    };
    let dir = std::path::absolute(dir).unwrap_or_else(|_| PathBuf::from(dir));
    let io = |what: &str, path: &Path, e: std::io::Error| {
        Error::Slurm(format!("cannot {what} {}: {e}", path.display()))
    };
    for sub in ["runs", "jobs", "logs", "cache/datasets"] {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).map_err(|e| io("create", &p, e))?;
    }
    let queued: Vec<RunRecord> = store.runs(&RunFilter {
        experiment: Some(experiment.to_string()),
        status: Some(Status::Queued),
        ..RunFilter::default()
    })?;
    if queued.is_empty() {
        return Ok(Vec::new());
    }
    // Named datasets travel through the shared cache: the nodes may have no internet.
    for dataset in queued
        .iter()
        .filter_map(|r| r.spec.config.data.source)
        .collect::<std::collections::HashSet<_>>()
    {
        let named = crate::data::named(dataset);
        let local = crate::data::ensure(named).map_err(|e| Error::Slurm(e.to_string()))?;
        let shared = dir.join("cache/datasets").join(named.file);
        if !shared.exists() {
            std::fs::copy(&local, &shared).map_err(|e| io("copy the dataset to", &shared, e))?;
        }
    }
    for run in &queued {
        let folder = run_folder(&dir, run.id, &run.key);
        std::fs::create_dir_all(&folder).map_err(|e| io("create", &folder, e))?;
        let task = TaskSpec {
            run: run.id,
            key: run.key.clone(),
            spec: run.spec.clone(),
            base_dir: std::path::absolute(super::base_dir(run)).unwrap_or_default(),
            until: run.until_step,
        };
        let path = folder.join("spec.json");
        let json = serde_json::to_vec_pretty(&task).expect("plain data serializes");
        std::fs::write(&path, json).map_err(|e| io("write", &path, e))?;
    }
    let xp = match &executor.xp {
        Some(x) => x.clone(),
        None => std::env::current_exe()
            .map_err(|e| Error::Slurm(format!("cannot find this xp binary: {e}")))?
            .to_string_lossy()
            .into_owned(),
    };
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f");
    let mut submitted = Vec::new();
    for (k, range) in arrays(queued.len(), cluster::max_array_size()?)
        .into_iter()
        .enumerate()
    {
        let runs = &queued[range];
        let base = dir.join("jobs").join(format!("{experiment}-{stamp}-{k}"));
        let tasks = base.with_extension("tasks");
        let lines: Vec<String> = runs
            .iter()
            .map(|r| {
                run_folder(&dir, r.id, &r.key)
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        std::fs::write(&tasks, lines.join("\n") + "\n").map_err(|e| io("write", &tasks, e))?;
        let path = base.with_extension("sbatch");
        let text = script(executor, experiment, &dir, &tasks, runs.len(), &xp);
        std::fs::write(&path, text).map_err(|e| io("write", &path, e))?;
        let job = cluster::sbatch(&path)?;
        let dir_text = dir.to_string_lossy();
        for (i, run) in runs.iter().enumerate() {
            store.submit(run.id, &dir_text, &job, i as i64)?;
        }
        submitted.push(Array {
            job,
            runs: runs.iter().map(|r| r.id).collect(),
            script: path,
        });
    }
    Ok(submitted)
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Synced {
    /// Journal entries merged.
    pub entries: usize,
    /// Runs failed because their task left Slurm's queue without an outcome.
    pub vanished: Vec<(i64, String)>,
}

/// Merges new journal entries of every run Slurm holds into the store, records each task's
/// Slurm state, and fails the runs whose task left Slurm's queue without an outcome. Without
/// Slurm's commands (away from the cluster) it only merges.
pub fn sync(store: &mut Store) -> Result<Synced, Error> {
    let mut synced = Synced::default();
    let ids = store.on_slurm()?;
    if ids.is_empty() {
        return Ok(synced);
    }
    // Slurm first, journals second: a task gone from the queue wrote its last entry before
    // it left, so that entry is read below.
    let queue = match cluster::queue() {
        Ok(q) => Some(q),
        Err(e) => {
            tracing::info!("no Slurm state to compare with: {e}");
            None
        }
    };
    for id in ids {
        let run = store.run_by_id(id)?;
        let Some(slurm) = run.slurm.clone() else {
            continue;
        };
        synced.entries += merge(store, &run, &slurm)?;
        let (Some(queue), Some(task)) = (&queue, slurm.id()) else {
            continue;
        };
        match queue.get(&task) {
            Some(state) => store.set_slurm_state(id, state)?,
            None => {
                let now = store.run_by_id(id)?;
                if now.status().is_final() {
                    continue;
                }
                let said = cluster::accounting(&task)
                    .map(|a| format!("Slurm accounting: {a}"))
                    .unwrap_or_else(|| "the cluster keeps no accounting to say why".into());
                let reason = match now.status() {
                    Status::Interrupted => format!(
                        "Slurm task {task} was interrupted and left the queue without being \
                         requeued ({said})"
                    ),
                    _ => format!(
                        "Slurm task {task} ended without recording how ({said}); its log is \
                         {}/logs/{}.log",
                        slurm.dir, task
                    ),
                };
                if store.mark_vanished(id, &reason)? {
                    synced.vanished.push((id, reason));
                }
            }
        }
    }
    Ok(synced)
}

/// Submits the runs early-stopping decisions promoted on Slurm (they wait `queued` there),
/// each experiment's as new arrays with its own executor settings; what was submitted.
pub fn submit_promoted(store: &mut Store) -> Result<Vec<Array>, Error> {
    let mut submitted = Vec::new();
    for experiment in store.promoted_on_slurm()? {
        let queued = store.runs(&RunFilter {
            experiment: Some(experiment.clone()),
            status: Some(Status::Queued),
            limit: Some(1),
            ..RunFilter::default()
        })?;
        let Some(first) = queued.first() else {
            continue;
        };
        let executor = first.spec.config.executor.clone();
        submitted.extend(submit(store, &experiment, &executor)?);
    }
    Ok(submitted)
}

/// Merges every journal of one run.
fn merge(store: &mut Store, run: &RunRecord, slurm: &SlurmTask) -> Result<usize, Error> {
    let folder = run_folder(Path::new(&slurm.dir), run.id, &run.key);
    let mut merged = 0;
    for journal in journals(&folder) {
        merged += store.merge_journal(run.id, &journal)?;
    }
    Ok(merged)
}

/// Syncs if the store has runs on Slurm, so that a command reads the store as fresh as it can
/// be. A failed sync is returned: reading commands log it and show what the store has
/// (`cli::context::sync`); `xp cancel` stops, since it must not cancel runs whose journals it
/// could not merge.
pub fn sync_before_reading(store: &mut Store) -> Result<(), Error> {
    if store.on_slurm()?.is_empty() {
        return Ok(());
    }
    sync(store).map(|_| ())
}

/// Cancels runs: their Slurm tasks through `scancel`, then the records. Returns, per run,
/// whether it was cancelled.
pub fn cancel(store: &Store, runs: &[RunRecord]) -> Result<Vec<(i64, bool)>, Error> {
    let mut out = Vec::new();
    let mut cancelled_tasks: HashSet<String> = HashSet::new();
    for run in runs {
        if let Some(task) = run.slurm.as_ref().and_then(SlurmTask::id)
            && run.status().is_slurms()
            && cancelled_tasks.insert(task.clone())
        {
            cluster::cancel(&task)?;
        }
        out.push((run.id, store.cancel(run.id, "cancelled by the user")?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_plan_becomes_arrays_that_cover_every_run_once() {
        let ranges = arrays(2500, 1001);
        assert_eq!(ranges, [0..1001, 1001..2002, 2002..2500]);
        let mut covered: Vec<usize> = ranges.into_iter().flatten().collect();
        covered.dedup();
        assert_eq!(covered, (0..2500).collect::<Vec<_>>());
        assert_eq!(arrays(3, 1001).first(), Some(&(0..3)));
        assert!(arrays(0, 1001).is_empty());
    }

    #[test]
    fn the_script_asks_for_requeue_append_and_the_signal() {
        // The example of docs/cluster.md, which shows this text.
        let executor = ExecutorConfig {
            kind: ExecutorKind::Slurm,
            dir: Some("/scratch/me/xp".into()),
            partition: Some("gpu".into()),
            time: Some("04:00:00".into()),
            cpus_per_task: Some(8),
            gpus_per_task: Some(1),
            mem: Some("32G".into()),
            max_parallel: Some(8),
            signal: "B:USR1@300".into(),
            sbatch_args: vec!["--account=abc123".into()],
            setup: vec!["module load vulkan".into()],
            ..ExecutorConfig::default()
        };
        let dir = Path::new("/scratch/me/xp");
        let tasks = dir.join("jobs/sweep-20261125T100000.000-0.tasks");
        let text = script(&executor, "sweep", dir, &tasks, 12, "/home/me/bin/xp");
        assert_eq!(
            text,
            "#!/bin/bash
#SBATCH --job-name=xp-sweep
#SBATCH --array=0-11%8
#SBATCH --output=/scratch/me/xp/logs/%A_%a.log
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@300
#SBATCH --partition=gpu
#SBATCH --time=04:00:00
#SBATCH --cpus-per-task=8
#SBATCH --gpus-per-task=1
#SBATCH --mem=32G
#SBATCH --account=abc123

module load vulkan
export XP_CACHE=/scratch/me/xp/cache
exec /home/me/bin/xp worker --slurm /scratch/me/xp/jobs/sweep-20261125T100000.000-0.tasks
"
        );
        let docs = include_str!("../../../docs/cluster.md");
        assert!(docs.contains(&text), "docs/cluster.md shows another script");
        // Paths with spaces or quotes stay one word for the shell.
        let odd = script(&executor, "s", dir, &tasks, 1, "/opt/x p/it's/xp");
        assert!(odd.contains("exec '/opt/x p/it'\\''s/xp' worker"), "{odd}");
    }
}
