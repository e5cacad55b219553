//! Reporting: everything the main thread tells people and scripts about a run, beside the
//! download path rather than in it. Workers never print; they send [`crate::pool::Event`]s,
//! and [`reporter::Reporter`] turns them into:
//!
//! - [`output`]: stdout records (paths, NUL-separated paths, or JSON Lines), data only;
//! - [`progress`]: stderr for people (bars, plain lines, errors), through [`to_stderr`], the one
//!   writer that never panics on a closed or full stderr;
//! - [`summary`]: the end-of-run figures and the `--compare` table, pure formatting;
//! - [`outcome`]: each input's [`UrlOutcome`], what a program embedding fetchpar gets back.

pub(crate) mod echo;
pub(crate) mod har;
pub(crate) mod outcome;
pub(crate) mod output;
pub(crate) mod progress;
pub(crate) mod reporter;
pub(crate) mod summary;
pub(crate) mod timeline;

pub use outcome::{Status, UrlOutcome};
pub(crate) use progress::to_stderr;

/// Whether [`write_file`] can write `path`, looked at before any download (a report that
/// could not be written after an hour's run would be the run's one output lost): a folder
/// under that name, or a folder that is missing or read-only, says why.
pub(crate) fn writable(path: &std::path::Path) -> Result<(), String> {
    if path.is_dir() {
        return Err("is a folder".into());
    }
    tempfile::NamedTempFile::new_in(folder_of(path))
        .map(drop)
        .map_err(|e| plain(&e))
}

/// An I/O error's words without the temporary file's name, which `tempfile` appends to them
/// (`… at path "/dir/.tmpXXXX"`): that file never existed for the user.
pub(crate) fn plain(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once(" at path ") {
        Some((words, _)) => words.to_string(),
        None => text,
    }
}

fn folder_of(path: &std::path::Path) -> &std::path::Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    }
}

/// Writes a report file (`--har`, `--timeline`) beside `path` and renames it into place, so a
/// reader never sees half of it; readable like any file the user creates (not the 0600 of a
/// temporary file).
pub(crate) fn write_file(
    path: &std::path::Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut file = tempfile::NamedTempFile::new_in(folder_of(path))?;
    fill(file.as_file_mut())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // 0644 less the umask, as `File::create` would give.
        // SAFETY: umask(2) only swaps the process's mask; it is put back at once.
        let mask = unsafe {
            let m = libc::umask(0o022);
            libc::umask(m);
            m
        };
        // mode_t is u32 on Linux, u16 on macOS.
        #[allow(clippy::useless_conversion)]
        let mode = 0o644 & !u32::from(mask);
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    file.persist(path).map(|_| ()).map_err(|e| e.error)
}
