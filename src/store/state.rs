//! The run lifecycle's states, the leases of running runs and how their liveness is judged:
//! the leaf of the store's modules, which names every class of states (what a local queue may
//! claim, what Slurm holds, what has not finished) so that no other file spells one.
//!
//! The transitions between the states are in [`super::queue`].

use serde::{Deserialize, Serialize};

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
    /// At a rung of an early-stopped sweep, with a checkpoint, waiting for the decision.
    Paused,
    Completed,
    /// Stopped for good by an early-stopping decision.
    Stopped,
    Failed,
    Cancelled,
    Interrupted,
}

impl Status {
    /// Every state, in the order reports list them.
    pub const ALL: [Status; 9] = [
        Status::Queued,
        Status::Submitted,
        Status::Running,
        Status::Paused,
        Status::Completed,
        Status::Stopped,
        Status::Failed,
        Status::Cancelled,
        Status::Interrupted,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Submitted => "submitted",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Completed => "completed",
            Status::Stopped => "stopped",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Interrupted => "interrupted",
        }
    }

    /// Whether the run has ended for good (until it is retried or resumed).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Completed | Status::Stopped | Status::Failed | Status::Cancelled
        )
    }

    /// Whether a run handed to Slurm in this state is Slurm's: waiting, training there, or
    /// interrupted there (its task requeued). The same class as [`ON_SLURM`].
    pub fn is_slurms(self) -> bool {
        matches!(
            self,
            Status::Submitted | Status::Running | Status::Interrupted
        )
    }

    /// Whether the run has steps left to train: waiting, handed to Slurm, training, or
    /// interrupted (to be resumed).
    pub fn is_unfinished(self) -> bool {
        !self.is_final()
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

impl Lease {
    /// Whether the holder of this lease is still there, judged from this host.
    pub fn liveness_here(&self) -> Liveness {
        liveness(self, this_host().as_deref())
    }
}

/// A run's state, with what each state carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum RunState {
    Queued,
    Submitted,
    Running(Lease),
    Paused,
    Completed,
    Stopped { reason: String },
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
            RunState::Paused => Status::Paused,
            RunState::Completed => Status::Completed,
            RunState::Stopped { .. } => Status::Stopped,
            RunState::Failed { .. } => Status::Failed,
            RunState::Cancelled { .. } => Status::Cancelled,
            RunState::Interrupted { .. } => Status::Interrupted,
        }
    }

    /// Why a run failed, was cancelled or was interrupted.
    pub fn reason(&self) -> Option<&str> {
        match self {
            RunState::Failed { reason }
            | RunState::Stopped { reason }
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
            Some(Status::Paused) => RunState::Paused,
            Some(Status::Completed) => RunState::Completed,
            Some(Status::Stopped) => RunState::Stopped { reason: reason() },
            Some(Status::Failed) => RunState::Failed { reason: reason() },
            Some(Status::Cancelled) => RunState::Cancelled { reason: reason() },
            Some(Status::Interrupted) => RunState::Interrupted { reason: reason() },
            None => return Err(format!("unknown run state `{status}`")),
        })
    }
}

/// How a run ends, as the executor that trained it says: recorded by [`Store::finish`]
/// (`super::queue`), by a Slurm task's journal, and shown to the person watching.
///
/// Its serialised form is that of the journals' `finished` lines (`"outcome": "completed"`, …),
/// which stored journals hold: it must not change.
///
/// [`Store::finish`]: super::Store::finish
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Trained to its last step, with its summary.
    Completed {
        summary: Summary,
    },
    Failed {
        reason: String,
    },
    /// Reached the rung at `step` of an early-stopped sweep, where its checkpoint is, with its
    /// summary so far: it waits for the decision to promote or stop it.
    Paused {
        step: u64,
        summary: Summary,
    },
    /// Stopped at `step` (where its last checkpoint is), to be resumed.
    Interrupted {
        step: u64,
        reason: String,
    },
}

impl Outcome {
    /// The state the run is in once this outcome is recorded.
    pub fn status(&self) -> Status {
        match self {
            Outcome::Completed { .. } => Status::Completed,
            Outcome::Failed { .. } => Status::Failed,
            Outcome::Paused { .. } => Status::Paused,
            Outcome::Interrupted { .. } => Status::Interrupted,
        }
    }
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recovered {
    pub run: i64,
    pub reason: String,
}

/// The SQL condition "run `r` can be taken by a local queue": queued, or interrupted (to
/// resume), and not handed to Slurm.
pub(super) const CLAIMABLE: &str = "r.status IN ('queued', 'interrupted') AND r.executor = 'local'";

/// The runs that Slurm holds or may still start: submitted, running there, or interrupted
/// there (a task requeued after its time-limit signal starts again); [`Status::is_slurms`].
pub(super) const ON_SLURM: &str =
    "executor = 'slurm' AND status IN ('submitted', 'running', 'interrupted')";

/// This machine's name, as leases record it.
pub fn this_host() -> Option<String> {
    sysinfo::System::host_name().ok()
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

    #[test]
    fn the_sql_classes_are_the_status_classes() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE runs (status TEXT, executor TEXT)")
            .unwrap();
        for status in Status::ALL {
            for executor in ["local", "slurm"] {
                conn.execute("DELETE FROM runs", []).unwrap();
                conn.execute(
                    "INSERT INTO runs VALUES (?1, ?2)",
                    [status.name(), executor],
                )
                .unwrap();
                let holds = |condition: &str| -> bool {
                    conn.query_row(
                        &format!("SELECT count(*) FROM runs r WHERE {condition}"),
                        [],
                        |r| r.get::<_, i64>(0),
                    )
                    .unwrap()
                        == 1
                };
                let slurm = executor == "slurm";
                assert_eq!(
                    holds(ON_SLURM),
                    slurm && status.is_slurms(),
                    "{status} {executor}"
                );
                assert_eq!(
                    holds(CLAIMABLE),
                    !slurm && matches!(status, Status::Queued | Status::Interrupted),
                    "{status} {executor}"
                );
            }
        }
    }
}
