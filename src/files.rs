//! Opening what lies around the binary without trusting it: bounded reads of regular files
//! only (a FIFO or a device never blocks or floods a run), no symbolic link where none is
//! expected, and credentials files that only we (or the configured owner) may write.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Caps on what is read: secrets and keys are a few KiB; metadata and CA bundles are small.
pub const SECRET_CAP: u64 = 64 * 1024;
pub const DOCUMENT_CAP: u64 = 1024 * 1024;

fn flags(extra: rustix::fs::OFlags) -> i32 {
    // O_NONBLOCK: opening a FIFO must not wait for a writer. O_CLOEXEC: no fd leaks.
    (rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC | extra).bits() as i32
}

/// Opens `path` for reading; it must be a regular file (symbolic links to one are followed:
/// Kubernetes mounts secrets as links). `Ok(None)` when it does not exist.
pub fn open_regular(path: &Path) -> Result<Option<File>, String> {
    open_with(path, rustix::fs::OFlags::empty())
}

/// As [`open_regular`], but a symbolic link at `path` itself is refused.
pub fn open_regular_nofollow(path: &Path) -> Result<Option<File>, String> {
    open_with(path, rustix::fs::OFlags::NOFOLLOW)
}

/// Opens a file this program wrote and will trust: a symbolic link at `path` is refused
/// (whoever planted it chose what we read), except on a read-only mount, where nobody could
/// have planted it: a Kubernetes Secret mounts each key as a link into `..data/`.
pub fn open_trusted(path: &Path) -> Result<Option<File>, String> {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if is_link && read_only_mount(&dir_of(path)) {
        return open_regular(path);
    }
    open_regular_nofollow(path)
}

fn dir_of(path: &Path) -> std::path::PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    }
}

/// Whether `dir` is on a mount nobody can write (a Secret volume, a `:ro` bind mount).
fn read_only_mount(dir: &Path) -> bool {
    rustix::fs::statvfs(dir).is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

/// The directory holding a file we trust must belong to us, to root, or to `owner`
/// (`DCR_OUTPUT_OWNER`): whoever owns it can swap any file in it at any time, whatever the
/// file's own mode. A root-owned shared directory (an `emptyDir` is root-owned 0777) is
/// accepted: there the files' own checks hold (no link, our owner, our mode, the seal).
pub fn check_parent(path: &Path, owner: Option<(u32, u32)>) -> Result<(), String> {
    let dir = dir_of(path);
    let m = match std::fs::metadata(&dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(format!(
                "cannot inspect its directory {}: {e}",
                dir.display()
            ));
        }
    };
    let me = euid();
    if m.uid() == me || m.uid() == 0 || owner.is_some_and(|(uid, _)| uid == m.uid()) {
        return Ok(());
    }
    Err(format!(
        "is in {}, a directory owned by uid {}, not by this process (uid {me}), root{}: its owner can \
         replace any file in it",
        dir.display(),
        m.uid(),
        owner
            .map(|(u, _)| format!(" or DCR_OUTPUT_OWNER (uid {u})"))
            .unwrap_or_default()
    ))
}

fn open_with(path: &Path, extra: rustix::fs::OFlags) -> Result<Option<File>, String> {
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(flags(extra))
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Err("is a symbolic link, which is refused here".into());
        }
        Err(e) => return Err(e.to_string()),
    };
    let meta = f.metadata().map_err(|e| e.to_string())?;
    if !meta.file_type().is_file() {
        return Err(format!(
            "is not a regular file (it is a {})",
            kind(&meta.file_type())
        ));
    }
    Ok(Some(f))
}

fn kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "device"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Reads an opened regular file, refusing more than `cap` bytes.
pub fn read_capped(mut f: File, cap: u64) -> Result<Vec<u8>, String> {
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > cap {
        return Err(format!("is {len} bytes, more than the {cap} allowed"));
    }
    let mut buf = Vec::with_capacity(len as usize);
    // A file that grows while we read is still cut at the cap.
    (&mut f)
        .take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > cap {
        return Err(format!("is more than the {cap} bytes allowed"));
    }
    Ok(buf)
}

/// A bounded read of a regular file; `Ok(None)` when it does not exist.
pub fn read_regular(path: &Path, cap: u64) -> Result<Option<Vec<u8>>, String> {
    match open_regular(path)? {
        Some(f) => read_capped(f, cap).map(Some),
        None => Ok(None),
    }
}

/// The uid this process writes files as.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// A credentials file we are about to trust must be owned by us (or by the configured owner)
/// and writable by nobody else: otherwise whoever could write it chose its content.
pub fn check_trusted(f: &File, owner: Option<(u32, u32)>) -> Result<(), String> {
    let m = f.metadata().map_err(|e| e.to_string())?;
    let me = euid();
    // Root may write anything anyway (a Kubernetes Secret is mounted root-owned).
    let allowed = m.uid() == me || m.uid() == 0 || owner.is_some_and(|(uid, _)| uid == m.uid());
    if !allowed {
        return Err(format!(
            "is owned by uid {}, not by this process (uid {me}){}",
            m.uid(),
            owner
                .map(|(u, _)| format!(" or DCR_OUTPUT_OWNER (uid {u})"))
                .unwrap_or_default()
        ));
    }
    // A kubelet `fsGroup` pass makes every file on the volume group-writable by the pod's
    // own group: tolerated where that group is one of ours (the next write narrows the mode
    // again). A group we are not in, or others, could have chosen the content.
    let ours = m.mode() & 0o020 != 0 && our_groups().contains(&m.gid());
    if m.mode() & 0o002 != 0 || (m.mode() & 0o020 != 0 && !ours) {
        return Err(format!(
            "has mode {:04o}: {} may write it",
            m.mode() & 0o777,
            if m.mode() & 0o002 != 0 {
                "every local user".to_string()
            } else {
                format!("group {}, which this process is not in,", m.gid())
            }
        ));
    }
    Ok(())
}

/// For a "permission denied" on `path`: who owns its directory, its mode, who we are, and
/// the chown that fixes it (a volume left root-owned is the usual cause). Empty for any
/// other error.
pub fn permission_hint(path: &Path, e: &std::io::Error) -> String {
    if e.kind() != std::io::ErrorKind::PermissionDenied {
        return String::new();
    }
    let dir = dir_of(path);
    let (me, my_gid) = (euid(), rustix::process::getegid().as_raw());
    match std::fs::metadata(&dir) {
        Ok(m) => format!(
            " ({} is owned by uid {} gid {} with mode {:04o}; this process runs as uid {me} gid {my_gid}: \
             `chown {me}:{my_gid} {}` on the volume, run as uid {}, or set DCR_OUTPUT_OWNER)",
            dir.display(),
            m.uid(),
            m.gid(),
            m.mode() & 0o7777,
            dir.display(),
            m.uid()
        ),
        Err(_) => format!(
            " (this process runs as uid {me} gid {my_gid}; check {})",
            dir.display()
        ),
    }
}

/// The groups this process is in: its effective group and its supplementary groups.
fn our_groups() -> Vec<u32> {
    let mut groups: Vec<u32> = rustix::process::getgroups()
        .unwrap_or_default()
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    groups.push(rustix::process::getegid().as_raw());
    groups
}

/// Sets the mode of a file we own when it differs (a file left 0644 by an older run or by
/// hand becomes the configured mode).
pub fn ensure_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let f = match open_regular_nofollow(path)? {
        Some(f) => f,
        None => return Ok(()),
    };
    let current = f.metadata().map_err(|e| e.to_string())?.mode() & 0o777;
    if current != mode {
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| e.to_string())?;
        tracing::info!("{}: mode {current:04o} -> {mode:04o}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_devices_and_big_files_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let start = std::time::Instant::now();
        assert!(read_regular(&fifo, 10).unwrap_err().contains("FIFO"));
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        assert!(
            read_regular(Path::new("/dev/zero"), 10)
                .unwrap_err()
                .contains("device")
        );
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 11]).unwrap();
        assert!(read_regular(&big, 10).unwrap_err().contains("more than"));
        assert!(
            read_regular(&dir.path().join("none"), 10)
                .unwrap()
                .is_none()
        );
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&big, &link).unwrap();
        assert!(
            open_regular_nofollow(&link)
                .unwrap_err()
                .contains("symbolic link")
        );
        assert!(open_regular(&link).unwrap().is_some());
    }
}
