//! Slurm's own commands, as xp calls them: `scontrol`, `sbatch`, `squeue`, `sacct`, `scancel`.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use super::super::Error;

/// Runs a Slurm command; its stdout, or an error with what it said.
fn slurm(program: &str, args: &[&str]) -> Result<String, Error> {
    let out = Command::new(program).args(args).output().map_err(|e| {
        Error::Slurm(format!(
            "cannot run `{program}` ({e}): is this a Slurm cluster's login node?"
        ))
    })?;
    if !out.status.success() {
        return Err(Error::Slurm(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The cluster's `MaxArraySize`: array task indices must stay below it (Slurm's default is
/// 1001).
pub fn max_array_size() -> Result<usize, Error> {
    let config = slurm("scontrol", &["show", "config"])?;
    Ok(parse_max_array_size(&config).unwrap_or(1001))
}

pub fn parse_max_array_size(config: &str) -> Option<usize> {
    config.lines().find_map(|l| {
        let (key, value) = l.split_once('=')?;
        (key.trim() == "MaxArraySize").then(|| value.trim().parse().ok())?
    })
}

/// Submits a batch script; its job id.
pub fn sbatch(script: &Path) -> Result<String, Error> {
    let script = script.to_string_lossy();
    let out = slurm("sbatch", &["--parsable", &script])?;
    // `--parsable` prints `jobid` or `jobid;cluster`.
    let id = out.trim().split(';').next().unwrap_or_default().to_string();
    if id.is_empty() {
        return Err(Error::Slurm(format!("sbatch {script} printed no job id")));
    }
    Ok(id)
}

/// The state of each of this user's array tasks Slurm still holds, by `job_task`.
pub fn queue() -> Result<HashMap<String, String>, Error> {
    let out = slurm("squeue", &["-h", "-r", "--me", "-o", "%i %T"])?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let (id, state) = l.trim().split_once(' ')?;
            Some((id.to_string(), state.trim().to_string()))
        })
        .collect())
}

/// What Slurm's accounting says of a finished task (`FAILED, exit 9:0`), where the cluster
/// keeps accounting.
pub fn accounting(task: &str) -> Option<String> {
    let out = slurm(
        "sacct",
        &["-n", "-X", "-P", "-j", task, "-o", "State,ExitCode"],
    )
    .ok()?;
    let line = out.lines().next()?.trim().to_string();
    let (state, code) = line.split_once('|')?;
    (!state.is_empty()).then(|| format!("{state}, exit {code}"))
}

/// Cancels an array task.
pub fn cancel(task: &str) -> Result<(), Error> {
    slurm("scancel", &[task]).map(|_| ())
}

/// Puts a running array task back in the queue (it is ended and started again).
pub fn requeue(task: &str) -> Result<(), Error> {
    slurm("scontrol", &["requeue", task]).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_max_array_size_from_the_config() {
        let config = "Configuration data as of 2026-11-25T10:00:00\nMaxArraySize            = 1001\nMaxJobCount = 10000\n";
        assert_eq!(parse_max_array_size(config), Some(1001));
        assert_eq!(parse_max_array_size("MaxJobCount = 5\n"), None);
    }
}
