//! Looking at and opening files in the output directory so that nothing planted there — a
//! symlink, a FIFO, a directory — can redirect a write or be mistaken for one of our files.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

/// Whether anything is at `path`, a dangling symlink included (`Path::exists` follows links).
pub fn occupied(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// The length of the regular file at `path`; `None` for anything else (missing, a symlink, a
/// directory, a FIFO …).
pub fn regular_len(path: &Path) -> Option<u64> {
    fs::symlink_metadata(path)
        .ok()
        .filter(fs::Metadata::is_file)
        .map(|m| m.len())
}

/// Opens an existing regular file with `options`, never through a symlink (`O_NOFOLLOW` on
/// unix) and never blocking on a FIFO.
pub fn open_regular(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
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
