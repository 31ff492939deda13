//! Whether a folder is on a network filesystem, where runs.db must never be: SQLite's
//! write-ahead log needs shared memory that NFS, Lustre, GPFS and SMB do not give, and their
//! locks are unreliable, so a store there can be corrupted by two writers.

use std::path::Path;

/// The network filesystem a folder is on, by name, or `None` for a local one (or one that
/// cannot be told).
pub fn network_filesystem(dir: &Path) -> Option<&'static str> {
    let probe = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    kind(probe)
}

#[cfg(target_os = "linux")]
fn kind(dir: &Path) -> Option<&'static str> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut buf = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `path` is a valid C string and `buf` is a statfs-sized buffer that statfs fills.
    let rc = unsafe { libc::statfs(path.as_ptr(), buf.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statfs returned 0, so it wrote the whole struct.
    let fs = unsafe { buf.assume_init() };
    // `f_type` is an i64 here but narrower on other targets.
    #[allow(clippy::useless_conversion)]
    let magic = i64::from(fs.f_type);
    by_magic(magic)
}

#[cfg(target_os = "macos")]
fn kind(dir: &Path) -> Option<&'static str> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut buf = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: as on Linux.
    let rc = unsafe { libc::statfs(path.as_ptr(), buf.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statfs returned 0, so it wrote the whole struct.
    let fs = unsafe { buf.assume_init() };
    let name: Vec<u8> = fs
        .f_fstypename
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    by_name(&String::from_utf8_lossy(&name))
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn kind(_dir: &Path) -> Option<&'static str> {
    None
}

/// Linux's `statfs` magic numbers of network filesystems (linux/magic.h and the
/// filesystems' own sources).
pub fn by_magic(magic: i64) -> Option<&'static str> {
    // The kernel reports f_type as a signed word on some targets: compare its low 32 bits.
    Some(match magic as u32 {
        0x6969 => "NFS",
        0x0BD0_0BD0 => "Lustre",
        0x4750_4653 => "GPFS",
        0xFF53_4D42 => "CIFS",
        0xFE53_4D42 => "SMB2",
        0x517B => "SMB",
        0x5346_414F | 0x6B41_4653 => "AFS",
        0x0102_1997 => "9P",
        0x00C3_6400 => "CephFS",
        0x1983_0326 => "BeeGFS",
        _ => return None,
    })
}

/// macOS's filesystem type names of network filesystems.
pub fn by_name(name: &str) -> Option<&'static str> {
    Some(match name {
        "nfs" => "NFS",
        "smbfs" => "SMB",
        "afpfs" => "AFP",
        "webdav" => "WebDAV",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_network_filesystems_by_their_magic_numbers() {
        assert_eq!(by_magic(0x6969), Some("NFS"));
        assert_eq!(by_magic(0x0BD0_0BD0), Some("Lustre"));
        assert_eq!(by_magic(0x4750_4653), Some("GPFS"));
        assert_eq!(by_magic(0xFF53_4D42), Some("CIFS"));
        // The same number read as a negative signed word.
        assert_eq!(by_magic(0xFF53_4D42_u32 as i32 as i64), Some("CIFS"));
        assert_eq!(by_magic(0xEF53), None, "ext4 is local");
        assert_eq!(by_magic(0x0102_1994), None, "tmpfs is local");
        assert_eq!(by_name("nfs"), Some("NFS"));
        assert_eq!(by_name("apfs"), None);
    }

    #[test]
    fn a_temporary_folder_is_local() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(network_filesystem(dir.path()), None);
    }
}
