//! The output on the shared volume: load what a previous run left, write atomically (temp file
//! in the same directory, fsync, rename, fsync the directory) with an explicit mode and owner,
//! and serialise concurrent runs with an advisory lock beside the output.
//!
//! Writes are synchronous on purpose: a signal can only stop the async run at an await point,
//! so a write is never abandoned half-way by cancellation.

use crate::error::{Error, Result};
use crate::files;
use crate::record::ClientRecord;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Creates the parent directory (0700) when missing.
pub fn ensure_parent_dir(path: &Path) -> Result<()> {
    let dir = dir_of(path);
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| {
            let hint = files::permission_hint(&dir, &e);
            Error::io(
                format!("cannot create the output directory {}", dir.display()),
                format!("{e}{hint}"),
            )
        })
}

/// Loads the registration at `path`. Missing is `None`; unreadable or not a registration is an
/// error, never silently replaced: the file may be the only record of a live client. A file
/// someone else could have written (another owner, group- or world-writable) is refused: its
/// content would steer what this run does. `owner` is `DCR_OUTPUT_OWNER`.
pub fn load(path: &Path, owner: Option<(u32, u32)>) -> Result<Option<ClientRecord>> {
    let bytes = read_trusted(path, owner, "DCR_OUTPUT")?;
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let stored = ClientRecord::parse(&bytes).map_err(|why| {
        Error::Io(format!(
            "DCR_OUTPUT {} exists but is not a valid registration ({why}); it is left untouched. \
             Restore it, or move it away to register a new client",
            path.display()
        ))
    })?;
    Ok(Some(stored))
}

/// A bounded read of a credentials file that only we (or root, or `owner`) may have written,
/// in a directory only they own, and not through a planted symbolic link. `None` when it does
/// not exist.
pub fn read_trusted(path: &Path, owner: Option<(u32, u32)>, var: &str) -> Result<Option<Vec<u8>>> {
    let refuse = |why: String| {
        Error::Io(format!(
            "{var} {} {why}; refusing to trust it. Check who wrote it, then fix its owner and mode \
             (chown to this uid, chmod 0600) or move it away",
            path.display()
        ))
    };
    files::check_parent(path, owner).map_err(&refuse)?;
    let Some(f) = files::open_trusted(path).map_err(&refuse)? else {
        return Ok(None);
    };
    files::check_trusted(&f, owner).map_err(&refuse)?;
    files::read_capped(f, files::DOCUMENT_CAP)
        .map(Some)
        .map_err(&refuse)
}

/// Removes the temp file on drop unless the rename happened.
struct TempGuard(Option<PathBuf>);

impl TempGuard {
    fn path(&self) -> Result<&Path> {
        self.0
            .as_deref()
            .ok_or_else(|| Error::Io("the temporary file was already taken".into()))
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// Writes `contents` to `path` atomically: readers see the old file or the new one, never a
/// mix, and after a crash the old file is intact. A symlink at `path` is replaced, never
/// written through.
pub fn write_atomic(
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<()> {
    let mut tmp = write_temp(path, contents, mode, owner)?;
    let ctx = format!("cannot rename the temporary file onto {}", path.display());
    fs::rename(tmp.path()?, path).map_err(|e| Error::io(ctx, e))?;
    tmp.0 = None;
    sync_dir(path)
}

/// Writes `contents` to `path`, which must not exist: the complete file appears at once
/// (a hard link from a temporary file, which fails if anything is at `path`, even a file
/// created between a check and the write), or not at all.
pub fn write_new(path: &Path, contents: &[u8], mode: u32, owner: Option<(u32, u32)>) -> Result<()> {
    let tmp = write_temp(path, contents, mode, owner)?;
    fs::hard_link(tmp.path()?, path).map_err(|e| {
        let what = if e.kind() == std::io::ErrorKind::AlreadyExists {
            "something appeared at"
        } else {
            "cannot create"
        };
        Error::io(format!("{what} {}", path.display()), e)
    })?;
    drop(tmp);
    sync_dir(path)
}

/// A complete, fsynced temporary file beside `path`, removed on drop unless taken.
fn write_temp(
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<TempGuard> {
    let dir = dir_of(path);
    files::check_parent(path, owner)
        .map_err(|why| Error::Io(format!("refusing to write {}: it {why}", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.{}.{:08x}.tmp",
        file_name(path),
        std::process::id(),
        fastrand::u32(..)
    ));
    let ctx = |what: &str| format!("{what} {}", path.display());
    let guard = TempGuard(Some(tmp.clone()));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| {
            let hint = files::permission_hint(path, &e);
            Error::io(
                ctx("cannot create a temporary file to write"),
                format!("{e}{hint}"),
            )
        })?;
    f.write_all(contents)
        .map_err(|e| Error::io(ctx("cannot write"), e))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(|e| {
            Error::io(
                ctx(&format!("cannot chown {uid}:{gid} (DCR_OUTPUT_OWNER)")),
                e,
            )
        })?;
    }
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(ctx("cannot set the mode of"), e))?;
    f.sync_all()
        .map_err(|e| Error::io(ctx("cannot fsync"), e))?;
    Ok(guard)
}

/// Fsyncs the directory holding `path`, making a rename in it durable.
pub fn sync_dir(path: &Path) -> Result<()> {
    let dir = dir_of(path);
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("cannot fsync the directory {}", dir.display()), e))
}

/// Removes temp files a killed run (SIGKILL, power loss) left beside `path`. Called under the
/// lock, so no live writer owns them.
pub fn sweep_temp_files(path: &Path) {
    let prefix = format!(".{}.", file_name(path));
    let Ok(entries) = fs::read_dir(dir_of(path)) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.ends_with(".tmp") {
            tracing::debug!("removing a temp file left by an interrupted run: {name}");
            let _ = fs::remove_file(e.path());
        }
    }
}

/// An exclusive advisory lock (flock) on `<output>.lock`, held until dropped (or the process
/// ends, however it ends). The lock file itself stays: deleting it would let two runs lock
/// two different files.
pub struct OutputLock {
    _file: File,
}

pub fn lock_path(output: &Path) -> PathBuf {
    let mut p = output.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Takes the lock, waiting at most `wait` for another run to release it.
pub async fn lock(output: &Path, wait: std::time::Duration) -> Result<OutputLock> {
    let path = lock_path(output);
    // Never through a symbolic link: a planted link would make us create a file wherever it
    // points, with our rights.
    let nofollow = rustix::fs::OFlags::NOFOLLOW.bits() as i32;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nofollow)
        .open(&path)
        // A read-only volume still allows flock on an existing lock file: verification
        // needs no write unless the IdP rotates something.
        .or_else(|e| {
            OpenOptions::new()
                .read(true)
                .custom_flags(nofollow)
                .open(&path)
                .map_err(|_| e)
        })
        .map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                Error::Io(format!(
                    "the lock file {} is a symbolic link; refusing to follow it (remove it)",
                    path.display()
                ))
            } else {
                let hint = files::permission_hint(&path, &e);
                Error::io(
                    format!("cannot open the lock file {}", path.display()),
                    format!("{e}{hint}"),
                )
            }
        })?;

    match file.try_lock() {
        Ok(()) => return Ok(OutputLock { _file: file }),
        Err(fs::TryLockError::WouldBlock) => {}
        Err(fs::TryLockError::Error(e)) => {
            return Err(Error::io(format!("cannot lock {}", path.display()), e));
        }
    }
    tracing::info!(
        "another dcr-bootstrap holds {}; waiting for it to finish",
        path.display()
    );
    let waiter = tokio::task::spawn_blocking(move || file.lock().map(|()| file));
    match tokio::time::timeout(wait, waiter).await {
        Ok(Ok(Ok(file))) => Ok(OutputLock { _file: file }),
        Ok(Ok(Err(e))) => Err(Error::io(format!("cannot lock {}", path.display()), e)),
        Ok(Err(e)) => Err(Error::io(format!("cannot lock {}", path.display()), e)),
        Err(_) => Err(Error::Deadline(format!(
            "another dcr-bootstrap held {} for the whole DCR_TIMEOUT",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn atomic_write_sets_mode_and_replaces_a_symlink_not_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.json");
        fs::write(&target, "original").unwrap();
        let out = dir.path().join("out.json");
        std::os::unix::fs::symlink(&target, &out).unwrap();
        write_atomic(&out, b"{\"client_id\":\"a\"}", 0o640, None).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "original");
        let meta = fs::symlink_metadata(&out).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.mode() & 0o777, 0o640);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temp file left"
        );
    }

    /// Second review, finding 11: keygen's write never replaces what is at the path, even a
    /// file (or a dangling link) that appeared after its check; no temp file is left.
    #[test]
    fn write_new_never_replaces_anything() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        write_new(&p, b"first", 0o600, None).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert!(write_new(&p, b"second", 0o600, None).is_err());
        assert_eq!(fs::read(&p).unwrap(), b"first");
        let link = dir.path().join("l.pem");
        std::os::unix::fs::symlink(dir.path().join("target"), &link).unwrap();
        assert!(write_new(&link, b"x", 0o600, None).is_err());
        assert!(!dir.path().join("target").exists());
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 2, "a temp file was left: {left:?}");
    }

    #[test]
    fn corrupt_output_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.json");
        fs::write(&out, "{\"client_id\":").unwrap();
        let e = load(&out, None).unwrap_err();
        assert_eq!(e.exit_code(), 5);
        assert!(
            load(&dir.path().join("missing.json"), None)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn sweep_removes_only_our_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.json");
        for name in [
            ".out.json.1.0000.tmp",  // ours: swept
            ".out.json.77.abcd.tmp", // ours, another pid: swept
            ".other.json.1.0000.tmp",
            ".out.json.1.0000.tmp.keep",
            "out.json",
            "out.json.lock",
            "out.json.tmp",
        ] {
            fs::write(dir.path().join(name), "x").unwrap();
        }
        sweep_temp_files(&out);
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".other.json.1.0000.tmp",
                ".out.json.1.0000.tmp.keep",
                "out.json",
                "out.json.lock",
                "out.json.tmp"
            ]
        );
    }
}
