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

/// `--har` and `--timeline`, before any download: never over a file unasked (a dangling link
/// counts: the report would replace the link), never both in one file, never the output
/// folder `output` (which the run makes), and writable.
pub(crate) fn check_files(
    har: Option<&std::path::Path>,
    timeline: Option<&std::path::Path>,
    output: &std::path::Path,
    overwrite: bool,
) -> Result<(), String> {
    if let Some(both) = har.filter(|&h| Some(h) == timeline) {
        return Err(format!(
            "--har and --timeline both name {}: give each its own file",
            both.display()
        ));
    }
    for (what, file) in [("HAR file", har), ("timeline", timeline)] {
        let Some(file) = file else { continue };
        if same_name(file, output) {
            return Err(format!(
                "the {what} {} is the output folder: give the report a file name",
                file.display()
            ));
        }
        if let Err(why) = writable(file) {
            return Err(format!("cannot write the {what} {}: {why}", file.display()));
        }
        if file.symlink_metadata().is_ok() && !overwrite {
            return Err(format!(
                "the {what} {} already exists (remove it, or add --overwrite)",
                file.display()
            ));
        }
    }
    Ok(())
}

/// Whether `a` and `b` name one path, as it will be once the run has made its folders: the part
/// that exists with its links and `..` resolved, the rest (which cannot be a link) taken as
/// spelt. An empty `b` (the current folder: a folder already there, which [`writable`]
/// refuses) is no one's.
fn same_name(a: &std::path::Path, b: &std::path::Path) -> bool {
    !b.as_os_str().is_empty() && resolved(a).is_some_and(|a| Some(a) == resolved(b))
}

/// `path` made absolute, with the longest part of it that exists canonicalized.
fn resolved(path: &std::path::Path) -> Option<std::path::PathBuf> {
    use std::path::Component;
    let full = std::path::absolute(path).ok()?;
    let parts: Vec<Component<'_>> = full.components().collect();
    let made = (1..=parts.len()).rev().find_map(|n| {
        let existing: std::path::PathBuf = parts[..n].iter().collect();
        existing.canonicalize().ok().map(|real| (real, n))
    });
    let (mut real, n) = made?;
    for part in &parts[n..] {
        match part {
            Component::ParentDir => {
                real.pop();
            }
            Component::Normal(name) => real.push(name),
            _ => {}
        }
    }
    Some(real)
}

/// Whether [`write_file`] can write `path`, looked at before any download (a report that
/// could not be written after an hour's run would be the run's one output lost): a folder
/// under that name, or a folder that cannot be written or made, says why. Folders still
/// missing are made at the end, as `-o`'s are, so the nearest that exists is the one tried.
pub(crate) fn writable(path: &std::path::Path) -> Result<(), String> {
    if path.is_dir() {
        return Err("is a folder".into());
    }
    let existing = folder_of(path)
        .ancestors()
        .find(|a| !a.as_os_str().is_empty() && a.symlink_metadata().is_ok())
        .unwrap_or(std::path::Path::new("."));
    crate::safefs::takes_files(existing).map_err(|e| e.to_string())
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
/// temporary file). Unless `replace` (`--overwrite`), never over anything that came under the
/// name during the run (a file the run saved there, a link): that fails with `AlreadyExists`.
pub(crate) fn write_file(
    path: &std::path::Path,
    replace: bool,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let folder = folder_of(path);
    std::fs::create_dir_all(folder)?;
    let mut file = tempfile::NamedTempFile::new_in(folder)?;
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
    let placed = match replace {
        true => file.persist(path),
        false => file.persist_noclobber(path),
    };
    placed.map(drop).map_err(|e| match e.error.kind() {
        // The name was free when the run began (see `check_files`).
        std::io::ErrorKind::AlreadyExists => std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "something came under that name during the run (a file it saved there?); left as \
             it is (add --overwrite to replace it)",
        ),
        _ => e.error,
    })
}
