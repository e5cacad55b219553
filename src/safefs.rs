//! Looking at and opening files in the output directory so that nothing planted there — a
//! symlink, a FIFO, a directory — can redirect a write or be mistaken for one of our files.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

/// Whether a file can be made in the folder `dir`: one is made under a name of its own and
/// removed (someone else's file by that very name shows the same).
pub(crate) fn takes_files(dir: &Path) -> io::Result<()> {
    let probe = dir.join(format!(
        ".fetchpar-probe-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    match OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(file) => {
            drop(file);
            let _ = fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Gives `from` the name `to` unless something is already there (then `AlreadyExists`), in one
/// step: `renameat2(RENAME_NOREPLACE)` on Linux. If that fails for any other reason (an old
/// kernel, another system, a file system that refuses the flag, a seccomp filter that answers
/// EPERM) it falls back to [`link_no_clobber`]: the same guarantee in two calls, except on a
/// file system without hard links.
///
/// One call instead of two matters for many small files: profiles of the small-file workload
/// showed the link and the unlink as a visible share of fetchpar's CPU time (see `benches/`
/// and README "Performance").
pub(crate) fn rename_no_clobber(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
        let (cfrom, cto) = (c(from)?, c(to)?);
        // The raw system call, not glibc's wrapper (glibc 2.28 and later only): an older kernel
        // answers ENOSYS, and the portable way below takes over.
        // SAFETY: two valid NUL-terminated paths that outlive the call; no memory is shared.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                cfrom.as_ptr(),
                libc::AT_FDCWD,
                cto.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::AlreadyExists {
            return Err(e);
        }
        // Anything else: the portable way says what is really wrong, if anything is.
    }
    link_no_clobber(from, to)
}

/// [`rename_no_clobber`] the portable way: a hard link, which fails rather than replaces, and
/// an unlink; on a file system without hard links, a check and a plain rename (a narrow race
/// remains there).
pub(crate) fn link_no_clobber(from: &Path, to: &Path) -> io::Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => fs::remove_file(from),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) if !occupied(to) => fs::rename(from, to),
        Err(e) => Err(e),
    }
}

/// Whether anything is at `path`, a dangling symlink included (`Path::exists` follows links).
pub(crate) fn occupied(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// Whether nothing is at `path`, or a regular file: what a rename may replace (never a link,
/// a folder or a FIFO). One look, without following a link.
pub(crate) fn vacant_or_regular(path: &Path) -> bool {
    match fs::symlink_metadata(path) {
        Ok(meta) => meta.is_file(),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// The length of the regular file at `path`; `None` for anything else (missing, a symlink, a
/// directory, a FIFO …).
pub(crate) fn regular_len(path: &Path) -> Option<u64> {
    fs::symlink_metadata(path)
        .ok()
        .filter(fs::Metadata::is_file)
        .map(|m| m.len())
}

/// Opens an existing regular file with `options`, never through a symlink (`O_NOFOLLOW` on
/// unix) and never blocking on a FIFO.
pub(crate) fn open_regular(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    #[cfg(not(unix))]
    if fs::symlink_metadata(path)?.file_type().is_symlink() {
        return Err(not_regular());
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    Ok(file)
}

fn not_regular() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_no_clobber_moves_but_never_replaces() {
        check_no_clobber(rename_no_clobber);
        check_no_clobber(link_no_clobber);
    }

    fn check_no_clobber(rename_no_clobber: fn(&Path, &Path) -> io::Result<()>) {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        fs::write(&a, b"new").unwrap();
        fs::write(&b, b"precious").unwrap();
        let e = rename_no_clobber(&a, &b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&b).unwrap(), b"precious");
        assert_eq!(fs::read(&a).unwrap(), b"new");
        #[cfg(unix)]
        {
            // A dangling symlink is something too.
            std::os::unix::fs::symlink("nowhere", &c).unwrap();
            assert!(rename_no_clobber(&a, &c).is_err());
            fs::remove_file(&c).unwrap();
        }
        rename_no_clobber(&a, &c).unwrap();
        assert!(!occupied(&a));
        assert_eq!(fs::read(&c).unwrap(), b"new");
    }
}
