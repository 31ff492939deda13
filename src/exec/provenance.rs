//! Provenance detection: this host, the git state of a manifest's folder, and what executes a
//! run (xp and burn versions, OS, backend, adapter).

use std::path::Path;

use crate::store::Claimant;
use crate::store::runs::{Executed, Provenance};
use crate::train::{self, Placement};

/// This machine's name as runs record it.
pub fn host() -> Option<String> {
    crate::store::state::this_host()
}

/// This process, as the holder of the runs it claims.
pub fn this_process() -> Claimant {
    Claimant {
        pid: std::process::id(),
        host: host(),
    }
}

/// This host, and the git state of the folder holding the manifest.
pub fn detect(manifest_dir: &Path) -> Provenance {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(manifest_dir)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let git_commit = git(&["rev-parse", "HEAD"]);
    let git_dirty = git_commit
        .as_ref()
        .and_then(|_| git(&["status", "--porcelain"]))
        .map(|s| !s.is_empty());
    Provenance {
        host: host(),
        git_commit,
        git_dirty,
        xp_version: env!("CARGO_PKG_VERSION").into(),
        ..Provenance::default()
    }
}

/// What executes attempt `attempt` of a run, here, on `backend` and `adapter` (GPU number
/// `device` where the worker was given one).
pub fn executed(
    by: &Claimant,
    placement: &Placement,
    attempt: i64,
    device: Option<u32>,
) -> Executed {
    Executed {
        xp_version: env!("CARGO_PKG_VERSION").into(),
        burn_version: train::BURN_VERSION.into(),
        host: by.host.clone(),
        pid: by.pid,
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
        backend: placement.backend.into(),
        adapter: placement.adapter.into(),
        attention: placement.attention.into(),
        attempt,
        device,
        slurm_task: None,
    }
}
