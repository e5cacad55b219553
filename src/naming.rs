//! File names: chosen from the URL the user gave, made safe, and reserved so that no two
//! downloads and no existing file ever share a path.

use std::collections::HashSet;
use std::ffi::OsString;
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use percent_encoding::percent_decode_str;
use url::Url;

use crate::safefs;

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

/// Reduces any text to a safe base name: no path separators, no control characters, no
/// invisible bidi or format characters (which could make a printed name lie about itself), not
/// `.` or `..`, not empty (then `index.html`), and not longer than `MAX_NAME_BYTES`.
pub fn sanitize(raw: &str) -> String {
    let name: String = raw
        .chars()
        .filter(|&c| !is_format(c))
        .map(|c| match c {
            '/' | '\\' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect();
    // The dot rule comes after the cut: cutting can leave a name of dots only.
    let name = truncate_keeping_extension(name.trim(), MAX_NAME_BYTES);
    let name = name.trim();
    if name.is_empty() || name.chars().all(|c| c == '.') {
        return "index.html".to_string();
    }
    name.to_string()
}

/// Bidi controls, other invisible format characters and the Unicode line separators, which
/// `char::is_control` lets through:
/// U+202E alone turns `evil\u{202E}gpj.exe` into what reads as `evilexe.jpg`.
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

fn truncate_keeping_extension(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let (stem, ext) = split_extension(name);
    // An extension too long to keep is no extension: cut the whole name instead.
    let (stem, ext) = if ext.len() <= 16 {
        (stem, ext)
    } else {
        (name, "")
    };
    let mut cut = max.saturating_sub(ext.len()).min(stem.len());
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

/// Every path a download saved at `path` may create: the file, its `.part` and the part's
/// sidecar `.part.meta`. A reservation claims all three.
pub fn family(path: &Path) -> [PathBuf; 3] {
    let part = part_path(path);
    let meta = crate::resume::meta_path(&part);
    [path.to_path_buf(), part, meta]
}

/// Whether a download may use `path` as far as the disk goes: nothing of its family exists (a
/// dangling symlink counts). With `overwrite` the final file may exist — only the final rename
/// replaces it — but a `.part` or sidecar we did not create is never touched.
pub fn free_on_disk(path: &Path, overwrite: bool) -> bool {
    let [_, part, meta] = family(path);
    (overwrite || !safefs::occupied(path)) && !safefs::occupied(&part) && !safefs::occupied(&meta)
}

/// Hands out paths inside one output directory; a path handed out once is never handed out again
/// in this run, nor is one that is another reservation's `.part` or sidecar, and (unless
/// overwriting) never one that already exists on disk.
///
/// The paths taken are remembered by a 64-bit keyed hash, not by value: 8 bytes a path instead
/// of a whole path (three paths a reservation). Two different paths sharing a hash only means
/// the second gets the next suffix, never that two downloads share a file.
///
/// In the plain mode (neither `--overwrite` nor `-c`) a reservation is forgotten once its
/// download is over ([`Namer::release`]): whatever it left is then on disk, and the disk check
/// keeps later reservations off it just as well, so the set holds only the downloads in flight.
/// Remembering every reservation made the namer the largest thing a 100 000-URL list grew
/// (workload E of the benchmark: 4.7 of its 11.5 MiB over a 1 000-URL list, by heaptrack).
/// The other two modes look past the disk check: `--overwrite` may reuse a name that exists, and
/// `-c` takes an existing file as maybe this URL's; there the set keeps every reservation so two
/// URLs of one run still never share a name.
#[derive(Debug)]
pub struct Namer {
    dir: PathBuf,
    overwrite: bool,
    /// Whether [`Namer::release`] forgets (see above).
    forget_done: bool,
    taken: Mutex<HashSet<u64>>,
    hasher: RandomState,
}

impl Namer {
    /// A namer for `dir`; `resume` is `-c`, whose judge accepts existing files (see above).
    pub fn new(dir: impl Into<PathBuf>, overwrite: bool, resume: bool) -> Namer {
        Namer {
            dir: dir.into(),
            overwrite,
            forget_done: !overwrite && !resume,
            taken: Mutex::new(HashSet::new()),
            hasher: RandomState::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reserves the first free variant of `name` (a safe relative path inside the directory, with
    /// `/` between folders when a list file named the output): `name`, then `name.1`, `name.2`,
    /// … before the extension. A name whose file, `.part` or `.part.meta` exists on disk is not
    /// free (see [`free_on_disk`]), so a leftover part or a user's file is never clobbered.
    pub fn reserve(&self, name: &str) -> PathBuf {
        let overwrite = self.overwrite;
        self.reserve_by(name, |path| free_on_disk(path, overwrite).then_some(()))
            .0
    }

    /// [`Namer::reserve`] for a download about to create `NAME.part` with `create_new` (and to
    /// move on to a full [`Namer::reserve`] if that fails), so the disk is asked less: not about
    /// the `.part`, which `create_new` checks anyway, and about the sidecar only when the
    /// download may write one (`sidecar`; small bodies write theirs only if left unfinished,
    /// and a sidecar is only ever created where nothing is, so a file already there under that
    /// name just means that part could not be resumed). Each `stat` counts when the files are
    /// small: three per file were ~9% of the CPU time and ~12% of the wall time of workload C
    /// (2000 × 1 KiB, J = 16), with the directory's lock contended between workers.
    pub fn reserve_for_part(&self, name: &str, sidecar: bool) -> PathBuf {
        let overwrite = self.overwrite;
        let free = |path: &Path| {
            (overwrite || !safefs::occupied(path))
                && !(sidecar && safefs::occupied(&crate::resume::meta_path(&part_path(path))))
        };
        self.reserve_by(name, |path| free(path).then_some(())).0
    }

    /// Reserves the first variant of `name` whose family (see [`family`]) shares no path with
    /// a reservation of this run and that `judge` accepts, with what `judge` said about it.
    /// `judge` must accept a path where nothing exists on disk (so the search ends).
    pub fn reserve_by<T>(
        &self,
        name: &str,
        mut judge: impl FnMut(&Path) -> Option<T>,
    ) -> (PathBuf, T) {
        // A poisoned lock only means another worker panicked mid-insert; the set is still sound.
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        for n in 0.. {
            let path = self.dir.join(with_suffix(name, n));
            let members = family(&path).map(|p| self.hasher.hash_one(&p));
            if members.iter().any(|k| taken.contains(k)) {
                continue;
            }
            if let Some(verdict) = judge(&path) {
                taken.extend(members);
                return (path, verdict);
            }
        }
        unreachable!("an unbounded range always reaches a name with nothing on disk")
    }

    /// The download that reserved `path` is over, and what it left (its file, or a kept
    /// `.part`) is on disk: in the plain mode, forget the reservation (see [`Namer`]).
    pub fn release(&self, path: &Path) {
        if !self.forget_done {
            return;
        }
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        for member in family(path) {
            taken.remove(&self.hasher.hash_one(&member));
        }
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
    fn a_cut_name_is_never_all_dots() {
        // The extension is too long to keep: the stem left after the cut must be checked again.
        let raw = format!("...{}", "a".repeat(250));
        let safe = sanitize(&raw);
        assert!(safe.len() <= MAX_NAME_BYTES, "{safe}");
        assert!(!safe.chars().all(|c| c == '.'), "{safe}");
        assert!(safe.starts_with("...a"), "{safe}");
        let dots = format!("..{}", ".".repeat(300));
        assert_eq!(sanitize(&dots), "index.html");
        let long_ext = format!("x.{}", "e".repeat(300));
        let safe = sanitize(&long_ext);
        assert!(
            safe.len() <= MAX_NAME_BYTES && safe.starts_with("x.eee"),
            "{safe}"
        );
    }

    #[test]
    fn bidi_and_format_characters_are_stripped() {
        assert_eq!(sanitize("evil\u{202E}gpj.exe"), "evilgpj.exe");
        assert_eq!(
            sanitize("\u{FEFF}a\u{200E}b\u{200F}c\u{2066}d\u{2069}e\u{200B}.txt"),
            "abcde.txt"
        );
        assert_eq!(sanitize("\u{202E}\u{202E}"), "index.html");
        assert_eq!(sanitize(".\u{200E}."), "index.html");
        assert_eq!(sanitize("a\u{2028}b\u{E0041}c"), "abc");
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
        let namer = Namer::new(dir.path(), false, false);
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
        let namer = Namer::new(dir.path(), false, false);
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
        let namer = Namer::new(dir.path(), true, false);
        assert_eq!(namer.reserve("a.txt"), dir.path().join("a.txt"));
        assert_eq!(namer.reserve("a.txt"), dir.path().join("a.1.txt"));
    }

    #[test]
    fn a_reservation_claims_the_part_and_sidecar_names_too() {
        let dir = tempfile::tempdir().unwrap();
        let namer = Namer::new(dir.path(), false, false);
        // `x.part.meta` is the sidecar name of `x`: they may not both be handed out.
        assert_eq!(namer.reserve("x.part.meta"), dir.path().join("x.part.meta"));
        assert_eq!(namer.reserve("x"), dir.path().join("x.1"));
        // And the other way round, with --overwrite too.
        let namer = Namer::new(dir.path(), true, false);
        assert_eq!(namer.reserve("y"), dir.path().join("y"));
        assert_eq!(namer.reserve("y.part"), dir.path().join("y.1.part"));
        assert_eq!(
            namer.reserve("y.part.meta"),
            dir.path().join("y.part.1.meta")
        );
    }

    #[test]
    fn a_name_whose_part_or_sidecar_exists_is_not_free() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.part.meta"), b"PRECIOUS").unwrap();
        std::fs::write(dir.path().join("g"), b"old").unwrap();
        std::fs::write(dir.path().join("g.part"), b"mine").unwrap();
        std::fs::write(dir.path().join("h"), b"old").unwrap();
        for overwrite in [false, true] {
            let namer = Namer::new(dir.path(), overwrite, false);
            assert_eq!(namer.reserve("f"), dir.path().join("f.1"));
            assert_eq!(namer.reserve("g"), dir.path().join("g.1"));
            let h = if overwrite { "h" } else { "h.1" };
            assert_eq!(namer.reserve("h"), dir.path().join(h));
        }
    }

    #[test]
    fn reserve_for_part_leaves_the_part_to_create_new_and_the_sidecar_to_those_that_write_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.part.meta"), b"PRECIOUS").unwrap();
        std::fs::write(dir.path().join("g.part"), b"mine").unwrap();
        std::fs::write(dir.path().join("h"), b"old").unwrap();
        let namer = Namer::new(dir.path(), false, false);
        assert_eq!(namer.reserve_for_part("f", true), dir.path().join("f.1"));
        assert_eq!(namer.reserve_for_part("f", false), dir.path().join("f"));
        assert_eq!(namer.reserve_for_part("g", true), dir.path().join("g"));
        assert_eq!(namer.reserve_for_part("h", false), dir.path().join("h.1"));
        let namer = Namer::new(dir.path(), true, false);
        assert_eq!(namer.reserve_for_part("h", false), dir.path().join("h"));
    }

    #[cfg(unix)]
    #[test]
    fn a_dangling_symlink_is_not_free() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("nowhere", dir.path().join("s.part.meta")).unwrap();
        let namer = Namer::new(dir.path(), true, false);
        assert_eq!(namer.reserve("s"), dir.path().join("s.1"));
    }

    #[test]
    fn a_released_name_is_guarded_by_the_disk_alone_in_the_plain_mode() {
        let dir = tempfile::tempdir().unwrap();
        let namer = Namer::new(dir.path(), false, false);
        let first = namer.reserve("a.txt");
        std::fs::write(&first, b"saved").unwrap();
        namer.release(&first);
        // The saved file keeps its name taken; a download that left nothing frees its name.
        assert_eq!(namer.reserve("a.txt"), dir.path().join("a.1.txt"));
        let failed = namer.reserve("b.txt");
        namer.release(&failed);
        assert_eq!(namer.reserve("b.txt"), dir.path().join("b.txt"));
        assert_eq!(
            namer.taken.lock().unwrap().len(),
            6,
            "a.1.txt and b.txt only"
        );
    }

    #[test]
    fn overwrite_and_resume_remember_every_name_of_the_run() {
        let dir = tempfile::tempdir().unwrap();
        for (overwrite, resume) in [(true, false), (false, true), (true, true)] {
            let namer = Namer::new(dir.path(), overwrite, resume);
            let first = namer.reserve("c.txt");
            namer.release(&first);
            assert_eq!(namer.reserve("c.txt"), dir.path().join("c.1.txt"));
        }
    }

    #[test]
    fn part_path_appends() {
        assert_eq!(part_path(Path::new("o/x.bin")), Path::new("o/x.bin.part"));
    }
}
