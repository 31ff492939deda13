//! Space held back beside the database, so that on a full disk a run's last state can still
//! be recorded: releasing the reserve frees it for SQLite's final write.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Error, Result};

/// Enough for the few pages a run's final state takes in the write-ahead log, many times over.
pub const BYTES: u64 = 1 << 20;

/// `runs.db-reserve`: a file of zeros (written, not sparse, so its blocks are really taken).
pub struct Reserve {
    path: PathBuf,
    held: bool,
}

impl Reserve {
    /// Takes the reserve for the store at `db` (kept from an earlier run if it is there).
    /// Fails, leaving no partial file, when it cannot be written: a run trained without it
    /// could die on a full disk with its end recorded nowhere, so no run may be claimed then.
    pub fn hold(db: &Path) -> Result<Reserve> {
        let mut name = db.as_os_str().to_os_string();
        name.push("-reserve");
        let path = PathBuf::from(name);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() >= BYTES) {
            return Ok(Reserve { path, held: true });
        }
        if let Err(source) = Self::write(&path) {
            let _ = std::fs::remove_file(&path);
            return Err(Error::NoReserve {
                needed: Size(BYTES).to_string(),
                free: free_bytes(&path).map(|free| Size(free).to_string()),
                path,
                source,
            });
        }
        Ok(Reserve { path, held: true })
    }

    fn write(path: &Path) -> std::io::Result<()> {
        let mut f = std::fs::File::create(path)?;
        f.write_all(&vec![0u8; BYTES as usize])?;
        f.sync_all()
    }

    /// Frees the reserve's space; true if there was any to free.
    pub fn release(&mut self) -> bool {
        let freed = self.held && std::fs::remove_file(&self.path).is_ok();
        self.held = false;
        freed
    }
}

/// The bytes this user may still write on the filesystem holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a NUL-terminated path and `stat` a zeroed struct statvfs fills.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::statvfs(c.as_ptr(), &mut stat) } == 0;
    ok.then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// A size in bytes as people read it: "320 KiB", "1 MiB".
struct Size(u64);

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit < units.len() - 1 {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 || value >= 10.0 || value.fract() == 0.0 {
            write!(f, "{value:.0} {}", units[unit])
        } else {
            write!(f, "{value:.1} {}", units[unit])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(Size(512).to_string(), "512 bytes");
        assert_eq!(Size(BYTES).to_string(), "1 MiB");
        assert_eq!(Size(320 << 10).to_string(), "320 KiB");
        assert_eq!(Size(1536 << 10).to_string(), "1.5 MiB");
    }

    #[test]
    fn the_reserve_is_taken_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("runs.db");
        let mut r = Reserve::hold(&db).unwrap();
        let file = dir.path().join("runs.db-reserve");
        assert_eq!(std::fs::metadata(&file).unwrap().len(), BYTES);
        assert!(Reserve::hold(&db).is_ok());
        assert!(r.release());
        assert!(!file.exists());
        assert!(!r.release());
        // A folder that cannot take the file: the error names it.
        let missing = dir.path().join("no/such/folder/runs.db");
        let e = Reserve::hold(&missing).err().unwrap().to_string();
        let file = format!("{}-reserve", missing.display());
        assert!(
            e.starts_with("cannot keep 1 MiB in reserve beside the run store: writing "),
            "{e}"
        );
        assert!(e.contains(&file), "{e}");
    }
}
