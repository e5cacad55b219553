//! File names: chosen from the URL the user gave, made safe, and reserved so that no two
//! downloads and no existing file ever share a path.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use percent_encoding::percent_decode_str;
use url::Url;

/// Longest base name we produce, in bytes: leaves room for a `.NNN` suffix and `.part` under the
/// 255-byte limit of common file systems.
const MAX_NAME_BYTES: usize = 200;

/// The name a URL's body is saved under: its last path segment, percent-decoded, then made safe.
///
/// Decoding comes first so that an encoded separator or NUL (`..%2F..%2Fx`, `%00`) is seen and
/// removed by [`sanitize`] rather than slipping through as text.
pub fn from_url(url: &Url) -> String {
    let segment = url
        .path_segments()
        .and_then(|mut segments| segments.next_back())
        .unwrap_or("");
    let decoded = percent_decode_str(segment).decode_utf8_lossy();
    sanitize(&decoded)
}

/// Reduces any text to a safe base name: no path separators, no control characters, not `.` or
/// `..`, not empty (then `index.html`), and not longer than [`MAX_NAME_BYTES`].
pub fn sanitize(raw: &str) -> String {
    let mut name: String = raw
        .chars()
        .map(|c| match c {
            '/' | '\\' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect();
    name = name.trim().to_string();
    if name.chars().all(|c| c == '.') {
        name.clear();
    }
    if name.is_empty() {
        return "index.html".to_string();
    }
    truncate_keeping_extension(&name, MAX_NAME_BYTES)
}

fn truncate_keeping_extension(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let (stem, ext) = split_extension(name);
    let ext = if ext.len() <= 16 { ext } else { "" };
    let mut cut = max.saturating_sub(ext.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{}", &stem[..cut], ext)
}

/// Splits `photo.jpg` into (`photo`, `.jpg`); a leading dot (`.bashrc`) is not an extension.
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(dot) if dot > 0 => name.split_at(dot),
        _ => (name, ""),
    }
}

/// The `n`th alternative for a taken name: `photo.jpg` → `photo.1.jpg`, `README` → `README.1`.
/// A name from a list file may have folders (`a.d/photo.jpg`): only its last part changes.
pub fn with_suffix(name: &str, n: usize) -> String {
    if n == 0 {
        return name.to_string();
    }
    let (dir, base) = match name.rfind('/') {
        Some(slash) => name.split_at(slash + 1),
        None => ("", name),
    };
    let (stem, ext) = split_extension(base);
    format!("{dir}{stem}.{n}{ext}")
}

/// The in-flight twin of a final path: `out/photo.jpg` → `out/photo.jpg.part`.
pub fn part_path(path: &Path) -> PathBuf {
    let mut os: OsString = path.as_os_str().to_owned();
    os.push(".part");
    PathBuf::from(os)
}

/// Hands out paths inside one output directory; a path handed out once is never handed out again
/// in this run, and (unless overwriting) never one that already exists on disk.
#[derive(Debug)]
pub struct Namer {
    dir: PathBuf,
    overwrite: bool,
    taken: Mutex<HashSet<PathBuf>>,
}

impl Namer {
    pub fn new(dir: impl Into<PathBuf>, overwrite: bool) -> Namer {
        Namer {
            dir: dir.into(),
            overwrite,
            taken: Mutex::new(HashSet::new()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reserves the first free variant of `name` (a safe relative path inside the directory, with
    /// `/` between folders when a list file named the output): `name`, then `name.1`, `name.2`,
    /// … before the extension. A name whose file or `.part` exists on disk is not free, so a
    /// leftover part is never clobbered.
    pub fn reserve(&self, name: &str) -> PathBuf {
        let overwrite = self.overwrite;
        self.reserve_by(name, |path| {
            (overwrite || !(path.exists() || part_path(path).exists())).then_some(())
        })
        .0
    }

    /// Reserves the first variant of `name` not yet taken in this run that `judge` accepts,
    /// with what `judge` said about it. `judge` must accept a path where nothing exists on disk
    /// (so the search ends).
    pub fn reserve_by<T>(
        &self,
        name: &str,
        mut judge: impl FnMut(&Path) -> Option<T>,
    ) -> (PathBuf, T) {
        // A poisoned lock only means another worker panicked mid-insert; the set is still sound.
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        for n in 0.. {
            let path = self.dir.join(with_suffix(name, n));
            if taken.contains(&path) {
                continue;
            }
            if let Some(verdict) = judge(&path) {
                taken.insert(path.clone());
                return (path, verdict);
            }
        }
        unreachable!("an unbounded range always reaches a name with nothing on disk")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(u: &str) -> String {
        from_url(&Url::parse(u).unwrap())
    }

    #[test]
    fn last_segment_decoded() {
        assert_eq!(name("http://h/a/b/photo.jpg"), "photo.jpg");
        assert_eq!(name("http://h/a/my%20file.txt?x=1#y"), "my file.txt");
        assert_eq!(name("http://h/caf%C3%A9.txt"), "café.txt");
    }

    #[test]
    fn empty_becomes_index() {
        assert_eq!(name("http://h/"), "index.html");
        assert_eq!(name("http://h"), "index.html");
        assert_eq!(name("http://h/dir/"), "index.html");
    }

    #[test]
    fn hostile_segments_stay_base_names() {
        assert_eq!(name("http://h/..%2F..%2Fx"), ".._.._x");
        assert_eq!(name("http://h/%2e%2e"), "index.html");
        assert_eq!(name("http://h/%2e%2e/"), "index.html");
        assert_eq!(name("http://h/a%00b"), "a_b");
        assert_eq!(name("http://h/%2Fetc%2Fpasswd"), "_etc_passwd");
        assert_eq!(name("http://h/C:%5Cx"), "C:_x");
        assert_eq!(name("http://h/a%0Ab"), "a_b");
        assert_eq!(sanitize(" .. "), "index.html");
        assert_eq!(sanitize("."), "index.html");
    }

    #[test]
    fn long_names_are_cut_keeping_extension() {
        let long = format!("{}.tar.gz", "x".repeat(400));
        let safe = sanitize(&long);
        assert!(safe.len() <= MAX_NAME_BYTES);
        assert!(safe.ends_with(".gz"));
        let multibyte = "é".repeat(300);
        assert!(sanitize(&multibyte).len() <= MAX_NAME_BYTES);
    }

    #[test]
    fn suffix_goes_before_extension() {
        assert_eq!(with_suffix("photo.jpg", 1), "photo.1.jpg");
        assert_eq!(with_suffix("archive.tar.gz", 2), "archive.tar.2.gz");
        assert_eq!(with_suffix("README", 3), "README.3");
        assert_eq!(with_suffix(".bashrc", 1), ".bashrc.1");
        assert_eq!(with_suffix("index.html", 0), "index.html");
        assert_eq!(with_suffix("a.d/photo.jpg", 1), "a.d/photo.1.jpg");
        assert_eq!(with_suffix("a.d/README", 2), "a.d/README.2");
    }

    #[test]
    fn reservations_never_repeat_and_skip_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("photo.jpg"), b"mine").unwrap();
        std::fs::write(dir.path().join("photo.2.jpg.part"), b"left over").unwrap();
        let namer = Namer::new(dir.path(), false);
        let got: Vec<_> = (0..3).map(|_| namer.reserve("photo.jpg")).collect();
        let names: Vec<_> = got
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["photo.1.jpg", "photo.3.jpg", "photo.4.jpg"]);
    }

    #[test]
    fn reserve_by_asks_the_judge_about_untaken_names_only() {
        let dir = tempfile::tempdir().unwrap();
        let namer = Namer::new(dir.path(), false);
        let first = namer.reserve("a.txt");
        let mut asked = Vec::new();
        let (path, verdict) = namer.reserve_by("a.txt", |p| {
            asked.push(p.to_path_buf());
            (asked.len() == 2).then_some("second")
        });
        assert_eq!(first, dir.path().join("a.txt"));
        assert_eq!(
            asked,
            [dir.path().join("a.1.txt"), dir.path().join("a.2.txt")]
        );
        assert_eq!((path, verdict), (dir.path().join("a.2.txt"), "second"));
        assert_eq!(namer.reserve("a.txt"), dir.path().join("a.1.txt"));
    }

    #[test]
    fn overwrite_reuses_existing_names_but_not_within_a_run() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"old").unwrap();
        let namer = Namer::new(dir.path(), true);
        assert_eq!(namer.reserve("a.txt"), dir.path().join("a.txt"));
        assert_eq!(namer.reserve("a.txt"), dir.path().join("a.1.txt"));
    }

    #[test]
    fn part_path_appends() {
        assert_eq!(part_path(Path::new("o/x.bin")), Path::new("o/x.bin.part"));
    }
}
