//! Space held back beside the database, so that on a full disk a run's last state can still
//! be recorded: releasing the reserve frees it for SQLite's final write.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Enough for the few pages a run's final state takes in the write-ahead log, many times over.
const BYTES: usize = 1 << 20;

/// `runs.db-reserve`: a file of zeros (written, not sparse, so its blocks are really taken).
pub struct Reserve {
    path: PathBuf,
    held: bool,
}

impl Reserve {
    /// Takes the reserve for the store at `db` (kept from an earlier run if it is there). If
    /// the disk is already too full to take it, there is nothing held to release later.
    pub fn hold(db: &Path) -> Reserve {
        let mut name = db.as_os_str().to_os_string();
        name.push("-reserve");
        let path = PathBuf::from(name);
        let held = std::fs::metadata(&path).is_ok_and(|m| m.len() >= BYTES as u64)
            || Self::write(&path).is_ok();
        if !held {
            let _ = std::fs::remove_file(&path);
        }
        Reserve { path, held }
    }

    fn write(path: &Path) -> std::io::Result<()> {
        let mut f = std::fs::File::create(path)?;
        f.write_all(&vec![0u8; BYTES])?;
        f.sync_all()
    }

    /// Frees the reserve's space; true if there was any to free.
    pub fn release(&mut self) -> bool {
        let freed = self.held && std::fs::remove_file(&self.path).is_ok();
        self.held = false;
        freed
    }
}
