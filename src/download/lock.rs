//! The lock a download holds on its part file while the file is open, from its create or
//! resume through its rename into place (see `finish`): another fetchpar run on the same folder
//! with `-c` would otherwise take up a part this one is writing, and the two would join their
//! bytes into one file. A file system without such locks is written to as before.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

use crate::safefs;

/// Takes `file`'s lock: whether it is ours (or the file system has no locks).
pub(super) fn locked(file: &File) -> bool {
    flock(file, Lock::Exclusive)
}

/// Whether another download holds `part`'s lock now (a run beside this one writing it). The
/// look takes a shared lock for a moment, which two such looks do not refuse each other.
pub(super) fn in_use(part: &Path) -> bool {
    safefs::open_regular(part, OpenOptions::new().read(true))
        .is_ok_and(|file| !flock(&file, Lock::Shared))
}

/// Removes an empty leftover `part` (if there is one) under its lock, so that a download another
/// run has just begun in it is never removed from under it; false if that run holds the lock.
pub(super) fn take_back(part: &Path) -> bool {
    let Ok(file) = safefs::open_regular(part, OpenOptions::new().write(true)) else {
        return true;
    };
    if !locked(&file) {
        return false;
    }
    if still(&file, part, 0) {
        let _ = fs::remove_file(part);
    }
    true
}

/// Whether the open `file` is what `path` names now, `len` bytes long: a part locked after a
/// look may have been renamed into place, or written on, by another run in between.
#[cfg(unix)]
pub(super) fn still(file: &File, path: &Path, len: u64) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(open), Ok(named)) => {
            open.dev() == named.dev() && open.ino() == named.ino() && open.len() == len
        }
        _ => false,
    }
}

#[cfg(not(unix))]
pub(super) fn still(file: &File, _: &Path, len: u64) -> bool {
    file.metadata().is_ok_and(|m| m.len() == len)
}

#[derive(Clone, Copy)]
enum Lock {
    Exclusive,
    Shared,
}

/// Tries to take `lock` on `file` without waiting: false only when another holds it.
#[cfg(unix)]
fn flock(file: &File, lock: Lock) -> bool {
    use std::os::fd::AsRawFd;
    let op = match lock {
        Lock::Exclusive => libc::LOCK_EX,
        Lock::Shared => libc::LOCK_SH,
    };
    // std's `File::try_lock` is this same call, from Rust 1.89 (the crate builds on 1.85).
    // SAFETY: a descriptor the `File` owns; the lock goes when the file is closed.
    let taken = unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) } == 0;
    taken || io::Error::last_os_error().raw_os_error() != Some(libc::EWOULDBLOCK)
}

#[cfg(not(unix))]
fn flock(_: &File, _: Lock) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a `-c` checks once it holds the part's lock: still the file it looked at, as long.
    /// Between the look and the lock another run may have renamed it into place, or written on.
    #[test]
    fn a_part_renamed_or_grown_since_it_was_looked_at_is_not_taken_up() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("x.bin.part");
        fs::write(&part, b"abc").unwrap();
        let file = OpenOptions::new().write(true).open(&part).unwrap();
        assert!(still(&file, &part, 3));
        assert!(!still(&file, &part, 2), "written on");
        fs::rename(&part, dir.path().join("x.bin")).unwrap();
        assert!(!still(&file, &part, 3), "renamed into place");
        fs::write(&part, b"abc").unwrap();
        assert!(!still(&file, &part, 3), "another file under the name");
    }
}
