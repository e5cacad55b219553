//! File names: chosen from the URL the user gave, made safe, and reserved so that no two
//! downloads and no existing file ever share a path.

use std::ffi::OsString;
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use percent_encoding::percent_decode_str;
use url::Url;

use crate::input::Entry;
use crate::packed::{Key, PackedMap};
use crate::safefs;
use crate::sharded::ShardedMap;

/// Longest base name we produce, in bytes: leaves room for a `.NNN` suffix and `.part` under the
/// 255-byte limit of common file systems.
const MAX_NAME_BYTES: usize = 200;

/// The name a URL's body is saved under: its last path segment, percent-decoded, then made safe.
///
/// Decoding comes first so that an encoded separator or NUL (`..%2F..%2Fx`, `%00`) is seen and
/// removed by [`sanitize`] rather than slipping through as text.
pub(crate) fn from_url(url: &Url) -> String {
    mark(clean(&last_segment(url)))
}

/// The name a publisher's checksums file would list for `url`'s file: [`from_url`] without the
/// marks that keep it from passing for one of fetchpar's own names (see [`mark`]).
pub(crate) fn published(url: &Url) -> String {
    clean(&last_segment(url))
}

fn last_segment(url: &Url) -> std::borrow::Cow<'_, str> {
    let segment = url
        .path_segments()
        .and_then(|mut segments| segments.next_back())
        .unwrap_or("");
    percent_decode_str(segment).decode_utf8_lossy()
}

/// Reduces any text to a safe base name ([`clean`]) that never has the shape of one of
/// fetchpar's own names ([`mark`]).
pub(crate) fn sanitize(raw: &str) -> String {
    mark(clean(raw))
}

/// No path separators, no control characters, no invisible bidi or format characters (which
/// could make a printed name lie about itself), not `.` or `..`, not empty (then `index.html`),
/// and not longer than `MAX_NAME_BYTES`.
fn clean(raw: &str) -> String {
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

/// A `_` for a name that ends like a part or its sidecar (`x.part_`), or has the shape of a
/// name beside another (`photo~1_.jpg`, see [`beside`]).
fn mark(name: String) -> String {
    let name = if looks_like_ours(&name) {
        format!("{name}_")
    } else {
        name
    };
    if looks_beside(&name) {
        // `x~1.part` too, which the rule above made `x~1.part_`, the name beside `x.part_`.
        let (stem, ext) = split_extension(&name);
        return format!("{stem}_{ext}");
    }
    name
}

/// Endings of fetchpar's own files beside a download (see [`family`]). A saved file must never
/// pass for one: a server that names its files `x.bin.part` and `x.bin.part.meta` (a forged
/// sidecar naming another server's URL) would have a later `-c` join that server's bytes onto
/// its own.
const OWN_ENDINGS: [&str; 2] = [".part", ".part.meta"];

/// Whether `name` ends like one of fetchpar's own files (in any case, for file systems that
/// ignore it).
pub(crate) fn looks_like_ours(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    OWN_ENDINGS.iter().any(|ending| lower.ends_with(ending))
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
pub(crate) fn with_suffix(name: &str, n: usize) -> String {
    if n == 0 {
        return name.to_string();
    }
    let (dir, stem, ext) = split_path(name);
    format!("{dir}{stem}.{n}{ext}")
}

/// Splits `a.d/photo.jpg` into its folders (`a.d/`), stem (`photo`) and extension (`.jpg`).
fn split_path(name: &str) -> (&str, &str, &str) {
    let (dir, base) = match name.rfind('/') {
        Some(slash) => name.split_at(slash + 1),
        None => ("", name),
    };
    let (stem, ext) = split_extension(base);
    (dir, stem, ext)
}

/// The `m`th name beside `spot` (a URL's own name, which something that is not this URL's holds):
/// `photo.jpg` → `photo~1.jpg`, `index.2.html` → `index.2~1.html`. Never the name of another
/// URL: [`sanitize`] keeps names from URLs and servers out of this shape (see
/// [`looks_beside`]), and [`with_suffix`] never makes it, so a URL moved aside takes no other
/// URL's name, and the next run finds it beside its own name again.
pub(crate) fn beside(spot: &str, m: usize) -> String {
    let (dir, stem, ext) = split_path(spot);
    format!("{dir}{stem}~{m}{ext}")
}

/// Whether `name` has the shape of a name [`beside`] gives: its stem ends in `~` and digits.
pub(crate) fn looks_beside(name: &str) -> bool {
    let (stem, _) = split_extension(name);
    let digits = stem.trim_end_matches(|c: char| c.is_ascii_digit());
    digits.len() < stem.len() && digits.ends_with('~')
}

/// The names a search for a free one goes through.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Seek<'a> {
    /// `name`, `name.1`, `name.2`, … (see [`with_suffix`]).
    Name(&'a str),
    /// `spot~1`, `spot~2`, … beside a URL's own name (see [`beside`]).
    Beside(&'a str),
}

impl<'a> From<&'a str> for Seek<'a> {
    fn from(name: &'a str) -> Seek<'a> {
        Seek::Name(name)
    }
}

impl Seek<'_> {
    fn first(self) -> usize {
        match self {
            Seek::Name(_) => 0,
            Seek::Beside(_) => 1,
        }
    }

    fn nth(self, n: usize) -> String {
        match self {
            Seek::Name(name) => with_suffix(name, n),
            Seek::Beside(spot) => beside(spot, n),
        }
    }

    /// What the search's hint is kept under (see [`Taken::next`]).
    fn parts(&self) -> [&str; 2] {
        match self {
            Seek::Name(name) => [name, ""],
            Seek::Beside(spot) => [spot, "\0beside"],
        }
    }
}

/// The in-flight twin of a final path: `out/photo.jpg` → `out/photo.jpg.part`.
pub(crate) fn part_path(path: &Path) -> PathBuf {
    let mut os: OsString = path.as_os_str().to_owned();
    os.push(".part");
    PathBuf::from(os)
}

/// Every path a download saved at `path` may create: the file, its `.part` and the part's
/// sidecar `.part.meta`. A reservation claims all three.
pub(crate) fn family(path: &Path) -> [PathBuf; 3] {
    let part = part_path(path);
    let meta = crate::download::sidecar::meta_path(&part);
    [path.to_path_buf(), part, meta]
}

/// Whether a download may use `path` as far as the disk goes: nothing of its family exists (a
/// dangling symlink counts). With `overwrite` the final file may exist — only the final rename
/// replaces it — but a `.part` or sidecar we did not create is never touched.
pub(crate) fn free_on_disk(path: &Path, overwrite: bool) -> bool {
    let [_, part, meta] = family(path);
    replaceable(path, overwrite) && !safefs::occupied(&part) && !safefs::occupied(&meta)
}

/// Whether the final name may be given to a download: nothing there, or, with `overwrite`, a
/// regular file the final rename replaces (a folder or a link is not one to replace).
fn replaceable(path: &Path, overwrite: bool) -> bool {
    !safefs::occupied(path) || (overwrite && safefs::regular_len(path).is_some())
}

/// Whether `dir` is missing or holds nothing; `false` when that cannot be told.
fn is_fresh(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// A path reserved for one URL as the list is read, before its download begins (see
/// [`Namer::home`]).
#[derive(Clone, Debug)]
pub(crate) struct Home {
    /// The name before any number (what `--checksums` looks up when it has no line for
    /// `spot`).
    pub(crate) name: String,
    /// The variant of `name` that is this URL's, relative to the output directory: where a
    /// search for another starts if something else holds it (see [`beside`]).
    pub(crate) spot: String,
    pub(crate) path: PathBuf,
}

/// Gives each URL read its [`Home`], in list order.
pub(crate) struct Homes {
    namer: Arc<Namer>,
    /// `--content-disposition`: the server names the file, which is known only from its answer.
    by_server: bool,
}

impl Homes {
    pub(crate) fn new(namer: Arc<Namer>, by_server: bool) -> Homes {
        Homes { namer, by_server }
    }

    /// `entry`'s home: under the name its list line gave, or its URL's; none when the server
    /// will name it.
    pub(crate) fn of(&self, entry: &Entry) -> Option<Home> {
        let name = match &entry.output {
            Some(output) => output.clone(),
            None if self.by_server => return None,
            None => from_url(&entry.url),
        };
        Some(self.namer.home(name))
    }
}

/// Hands out paths inside one output directory; a path handed out once is never handed out again
/// in this run, nor is one that is another reservation's `.part` or sidecar, and (unless
/// overwriting) never one that already exists on disk.
///
/// A reservation is remembered by one 64-bit keyed hash of its path, not by value, and not by
/// its three paths (file, `.part`, sidecar): whether two families meet can be told from the
/// paths alone (see [`Namer::clashes`]). This set is what a long list grows (whole paths took
/// ~165 bytes a URL): the hash's first 56 bits, 5 bytes a name in a [`PackedMap`] that implies
/// the top 16. Two different paths sharing a key only means the second gets the next suffix,
/// never that two downloads share a file; for n names, up to 5 lookups each, that happens
/// with odds of about 5n^2 / 2^57 a run: 1 in 29 000 for a million names.
#[derive(Debug)]
pub(crate) struct Namer {
    dir: PathBuf,
    overwrite: bool,
    /// The directory was missing or empty when the run began (see [`Namer::reserve_for_part`]).
    fresh: bool,
    taken: Mutex<Taken>,
    hasher: RandomState,
}

#[derive(Debug, Default)]
struct Taken {
    /// The key of every name reserved in this run.
    names: PackedMap<5, 0>,
    /// For a name that has clashed, by its key: the first variant not yet found taken. Every
    /// variant below it was taken for this run (a reservation given back clears these hints) or
    /// by the disk, so a search that asks the disk the same question for every URL may start there:
    /// 100 000 URLs ending in `/` (`index.html`) would otherwise look at 5 × 10^9 variants.
    /// Names that never clash, most of a long list, add nothing here.
    next: ShardedMap<u64, usize>,
    /// Variants looked at, for the tests.
    probes: usize,
}

impl Namer {
    pub(crate) fn new(dir: impl Into<PathBuf>, overwrite: bool) -> Namer {
        let dir = dir.into();
        Namer {
            fresh: is_fresh(&dir),
            dir,
            overwrite,
            taken: Mutex::new(Taken::default()),
            hasher: RandomState::new(),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reserves the first free name `seek` goes through (a safe relative path inside the
    /// directory, with `/` between folders when a list file named the output): `name`, then
    /// `name.1`, `name.2`, … before the extension, or the names beside a URL's own
    /// ([`Seek::Beside`]). A name whose file, `.part` or `.part.meta` exists on disk is not
    /// free (see [`free_on_disk`]), so a leftover part or a user's file is never clobbered.
    pub(crate) fn reserve<'s>(&self, seek: impl Into<Seek<'s>>) -> PathBuf {
        let overwrite = self.overwrite;
        self.search(seek.into(), true, |path| {
            free_on_disk(path, overwrite).then_some(())
        })
        .0
    }

    /// Reserves, for the next URL of the list that wants `name`, the first variant that no URL
    /// before it in this run holds, without asking the disk: where nothing is in the way, the
    /// k-th URL of a name gets its k-th variant whatever order the downloads end in, so that a
    /// later `-c`, `-N` or `--skip-existing` over the same list finds each URL's file where
    /// this run put it. The download judges the disk when it begins (see
    /// [`Namer::free_for_part`] and `download::earlier`); if something else holds its home,
    /// it looks beside it ([`Seek::Beside`]), never at the variants the other URLs of the name
    /// are given. A home is never given back: a URL that goes back to the queue keeps it.
    pub(crate) fn home(&self, name: String) -> Home {
        // A hint of its own: a search's hint also passes over the variants found on the disk,
        // which are homes all the same (an earlier run's files).
        let name_key = self.key(&[&name, "\0home"]);
        let mut taken = self.lock();
        let from = taken.next.get(&name_key).copied().unwrap_or(0);
        let (n, candidate, _) = self.claim_in(&mut taken, Seek::Name(&name), from);
        if n > 0 {
            // Every variant below `n` is reserved: `claim_in` passed over them.
            let next = taken.next.get(&name_key).copied().unwrap_or(0);
            taken.next.insert(name_key, next.max(n + 1));
        }
        Home {
            path: self.dir.join(&candidate),
            spot: candidate,
            name,
        }
    }

    /// Whether a download may create its `.part` at `path` as far as [`Namer::reserve_for_part`]
    /// asks the disk.
    pub(crate) fn free_for_part(&self, path: &Path) -> bool {
        self.fresh
            || (replaceable(path, self.overwrite)
                && !safefs::occupied(&crate::download::sidecar::meta_path(&part_path(path))))
    }

    /// [`Namer::reserve`] for a download about to create `NAME.part` with `create_new`, which
    /// moves on to a full [`Namer::reserve`] if that fails: the disk is asked about the name and
    /// its sidecar, not about the `.part`. Each `stat` counts when the files are small and the
    /// directory's lock is contended between workers (workload C in `benches/run`; the figures
    /// are in README "Performance").
    ///
    /// In a directory that was empty when the run began, the disk is not asked at all: what is
    /// in it now is this run's (reserved already) or another program's made meanwhile, which
    /// `create_new` on the `.part` and the no-clobber rename still never overwrite (a name taken
    /// meanwhile ends in a full [`Namer::reserve`]); a sidecar without its `.part`, the one
    /// thing neither would see, is only ever left by an earlier run.
    pub(crate) fn reserve_for_part<'s>(&self, seek: impl Into<Seek<'s>>) -> PathBuf {
        let free = |path: &Path| self.free_for_part(path).then_some(());
        self.search(seek.into(), true, free).0
    }

    /// Reserves the first name `seek` goes through whose family (see [`family`]) shares no path
    /// with a reservation of this run and that `judge` accepts, with what `judge` said about it.
    /// `judge` must accept a path where nothing exists on disk (so the search ends).
    pub(crate) fn reserve_by<'s, T>(
        &self,
        seek: impl Into<Seek<'s>>,
        judge: impl FnMut(&Path) -> Option<T>,
    ) -> (PathBuf, T) {
        // A judge that may accept for one URL what it refused for another (`-c` takes only its
        // own part) must see every variant: no skipping ahead.
        self.search(seek.into(), false, judge)
    }

    /// Gives back a reservation whose download never opened a file (it could not, for want of
    /// file descriptors, and goes back to be tried again): its URL will want the same name.
    pub(crate) fn release(&self, path: &Path) {
        let Some(candidate) = path.strip_prefix(&self.dir).ok().and_then(Path::to_str) else {
            return;
        };
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        let key = packed_key(self.key(&[candidate]));
        taken.names.remove(&key);
        // The hints say every variant below them is taken, which this one no longer is: searches
        // look from the start again (each clashing name once), so that the next URL of the name
        // gets the number back instead of leaving a gap. Rare: only for want of descriptors.
        taken.next = ShardedMap::default();
    }

    /// [`Namer::reserve_by`]; `same_for_all`: `judge` answers the same whatever the URL, so the
    /// search may start past the variants earlier searches found taken (see [`Taken::next`]),
    /// and the disk is asked without the lock (see [`Namer::search_claiming`]).
    fn search<T>(
        &self,
        seek: Seek<'_>,
        same_for_all: bool,
        mut judge: impl FnMut(&Path) -> Option<T>,
    ) -> (PathBuf, T) {
        if same_for_all {
            return self.search_claiming(seek, judge);
        }
        // A poisoned lock only means another worker panicked mid-insert; the set is still sound.
        let mut taken = self.lock();
        for n in seek.first().. {
            taken.probes += 1;
            let candidate = seek.nth(n);
            if self.clashes(&taken.names, &candidate) {
                continue;
            }
            let path = self.dir.join(&candidate);
            if let Some(verdict) = judge(&path) {
                // Not there: `clashes` just looked.
                let _ = taken
                    .names
                    .insert_new(packed_key(self.key(&[&candidate])), []);
                return (path, verdict);
            }
        }
        unreachable!("an unbounded range always reaches a name with nothing on disk")
    }

    /// The search for a `judge` that only looks at the disk: each variant is claimed (reserved)
    /// before the disk is asked about it, and given back if the disk has it, so the lock is not
    /// held over the `stat`s. Held over them, it made every worker wait for every other's
    /// system calls (most of the lock waits on many small files; workload C in `benches/run`).
    /// Two searches for one name still never get the same variant: the claim is what the other
    /// one meets.
    fn search_claiming<T>(
        &self,
        seek: Seek<'_>,
        mut judge: impl FnMut(&Path) -> Option<T>,
    ) -> (PathBuf, T) {
        let name_key = self.key(&seek.parts());
        let hint = self.lock().next.get(&name_key).copied();
        let mut from = hint.unwrap_or(seek.first());
        loop {
            let (n, candidate, key) = self.claim(seek, from);
            let path = self.dir.join(&candidate);
            if let Some(verdict) = judge(&path) {
                if n > seek.first() {
                    // Every variant below `n` is reserved or on the disk (one claimed by another
                    // search is reserved, or it is given back because the disk has it).
                    let mut taken = self.lock();
                    let next = taken.next.get(&name_key).copied().unwrap_or(0);
                    taken.next.insert(name_key, next.max(n + 1));
                }
                return (path, verdict);
            }
            self.lock().names.remove(&packed_key(key));
            from = n + 1;
        }
    }

    /// Reserves the first variant of `name` from the `from`th on that meets no reservation:
    /// its number, its text and its key.
    fn claim(&self, seek: Seek<'_>, from: usize) -> (usize, String, u64) {
        self.claim_in(&mut self.lock(), seek, from)
    }

    /// [`Namer::claim`] under a lock already held.
    fn claim_in(&self, taken: &mut Taken, seek: Seek<'_>, from: usize) -> (usize, String, u64) {
        let mut n = from;
        loop {
            taken.probes += 1;
            let candidate = seek.nth(n);
            if !self.clashes(&taken.names, &candidate) {
                let key = self.key(&[&candidate]);
                // Not there: `clashes` just looked.
                let _ = taken.names.insert_new(packed_key(key), []);
                return (n, candidate, key);
            }
            n += 1;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Taken> {
        // A poisoned lock only means another worker panicked mid-insert; the set is still sound.
        self.taken.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the family of `name` meets the family of a reservation in `taken`, which holds
    /// only the reserved paths P. The families {Q, Q.part, Q.part.meta} and {P, P.part,
    /// P.part.meta} meet exactly when Q is P, P.part or P.part.meta, or P is Q.part or
    /// Q.part.meta (a `.part` name never equals a `.meta` one): five lookups at most.
    fn clashes(&self, taken: &PackedMap<5, 0>, name: &str) -> bool {
        let has = |parts: &[&str]| taken.contains(&packed_key(self.key(parts)));
        has(&[name])
            || has(&[name, ".part"])
            || has(&[name, ".part.meta"])
            || name.strip_suffix(".part").is_some_and(|p| has(&[p]))
            || name.strip_suffix(".part.meta").is_some_and(|p| has(&[p]))
    }

    /// The key of the relative name that `parts` spell when joined: every name handed out is
    /// in the same directory and already normalized (`naming::sanitize`, or a list line's
    /// checked path), so the text alone tells paths apart. The parts are joined in a buffer
    /// (on the stack for any usual name) and hashed as one slice: `Hasher` does not promise
    /// that two `write`s hash like one.
    fn key(&self, parts: &[&str]) -> u64 {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut stack = [0u8; 512];
        let mut heap = Vec::new();
        let buf = if len <= stack.len() {
            &mut stack[..len]
        } else {
            heap.resize(len, 0);
            &mut heap[..]
        };
        let mut at = 0;
        for part in parts {
            buf[at..at + part.len()].copy_from_slice(part.as_bytes());
            at += part.len();
        }
        self.hasher.hash_one(&*buf)
    }
}

/// A name's 64-bit hash as the [`PackedMap`] holds it: the top 16 bits, and the next 40 stored.
fn packed_key(key: u64) -> Key<5> {
    let b = key.to_be_bytes();
    Key {
        top: u16::from_be_bytes([b[0], b[1]]),
        rest: [b[2], b[3], b[4], b[5], b[6]],
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
    fn names_of_our_own_files_are_never_given_to_a_download() {
        assert_eq!(name("http://h/big.bin.part"), "big.bin.part_");
        assert_eq!(name("http://h/big.bin.part.meta"), "big.bin.part.meta_");
        assert_eq!(sanitize("X.PART"), "X.PART_");
        assert_eq!(sanitize("notes.partial"), "notes.partial");
        assert_eq!(sanitize("a.part1.rar"), "a.part1.rar");
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
        let namer = Namer::new(dir.path(), false);
        let got: Vec<_> = (0..3).map(|_| namer.reserve("photo.jpg")).collect();
        let names: Vec<_> = got
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["photo.1.jpg", "photo.3.jpg", "photo.4.jpg"]);
    }

    /// A namer over a folder that holds `files`.
    fn namer_over(files: &[&str]) -> (tempfile::TempDir, Namer) {
        let dir = tempfile::tempdir().unwrap();
        for name in files {
            std::fs::write(dir.path().join(name), b"PRECIOUS").unwrap();
        }
        let namer = Namer::new(dir.path(), false);
        (dir, namer)
    }

    #[test]
    fn homes_are_numbered_in_list_order_whatever_the_disk_holds() {
        // On the disk: a home is judged by its download, not here.
        let (dir, namer) = namer_over(&["a.txt", "a.1.txt", "a~1.txt"]);
        let first = namer.home("a.txt".into());
        assert_eq!(first.path, dir.path().join("a.txt"));
        assert_eq!(
            (first.name.as_str(), first.spot.as_str()),
            ("a.txt", "a.txt")
        );
        // Its download finds the home held and looks beside it, past what the disk holds there:
        // the homes of the URLs after it do not move.
        let aside = namer.reserve_for_part(Seek::Beside(&first.spot));
        assert_eq!(aside, dir.path().join("a~2.txt"));
        let later: Vec<String> = (0..2).map(|_| namer.home("a.txt".into()).spot).collect();
        assert_eq!(later, ["a.1.txt", "a.2.txt"]);
        let before = namer.lock().probes;
        for _ in 0..1000 {
            namer.home("a.txt".into());
        }
        assert!(namer.lock().probes - before <= 2000, "a look or two a URL");
    }

    #[test]
    fn names_beside_a_home_are_never_the_homes_of_its_name() {
        assert_eq!(beside("photo.jpg", 1), "photo~1.jpg");
        assert_eq!(beside("index.2.html", 3), "index.2~3.html");
        assert_eq!(beside("README.1", 1), "README~1.1");
        assert_eq!(beside("a.d/README", 2), "a.d/README~2");
        assert_eq!(beside(".bashrc", 1), ".bashrc~1");
        // Nor the name of a URL: those are kept out of the shape.
        for raw in [
            "photo~1.jpg",
            "README~12",
            ".bashrc~1",
            "x.tar~3.gz",
            "x~1.part",
        ] {
            let name = sanitize(raw);
            assert!(
                !looks_beside(&name) && name.starts_with(&raw[..3]),
                "{raw} → {name}"
            );
        }
        assert_eq!(sanitize("photo~1.jpg"), "photo~1_.jpg");
        for kept in ["a~b.txt", "x~.jpg", "PHOTO~1X.JPG", "v1.2~beta"] {
            assert_eq!(sanitize(kept), kept);
        }
        for name in ["photo.jpg", "README", "archive.tar.gz", "a.d/x"] {
            let homes: std::collections::BTreeSet<String> =
                (0..50).map(|k| with_suffix(name, k)).collect();
            for n in 0..20 {
                for m in 1..5 {
                    assert!(!homes.contains(&beside(&with_suffix(name, n), m)));
                }
            }
        }
    }

    #[test]
    fn a_released_name_is_free_again() {
        let dir = tempfile::tempdir().unwrap();
        let namer = Namer::new(dir.path(), false);
        let first = namer.reserve("d/a.txt");
        namer.release(&first);
        assert_eq!(namer.reserve("d/a.txt"), first);
        assert_eq!(namer.reserve("d/a.txt"), dir.path().join("d/a.1.txt"));
    }

    #[test]
    fn a_number_given_back_is_used_again_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let namer = Namer::new(dir.path(), false);
        let got: Vec<PathBuf> = (0..5).map(|_| namer.reserve("x.bin")).collect();
        assert_eq!(got[2], dir.path().join("x.2.bin"));
        // Its download could not open a file and goes back to be tried again.
        namer.release(&got[2]);
        assert_eq!(namer.reserve("x.bin"), dir.path().join("x.2.bin"));
        assert_eq!(namer.reserve("x.bin"), dir.path().join("x.5.bin"));
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
    fn a_reservation_claims_the_part_and_sidecar_names_too() {
        let dir = tempfile::tempdir().unwrap();
        let namer = Namer::new(dir.path(), false);
        // `x.part.meta` is the sidecar name of `x`: they may not both be handed out.
        assert_eq!(namer.reserve("x.part.meta"), dir.path().join("x.part.meta"));
        assert_eq!(namer.reserve("x"), dir.path().join("x.1"));
        // And the other way round, with --overwrite too.
        let namer = Namer::new(dir.path(), true);
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
            let namer = Namer::new(dir.path(), overwrite);
            assert_eq!(namer.reserve("f"), dir.path().join("f.1"));
            assert_eq!(namer.reserve("g"), dir.path().join("g.1"));
            let h = if overwrite { "h" } else { "h.1" };
            assert_eq!(namer.reserve("h"), dir.path().join(h));
        }
    }

    #[test]
    fn many_urls_of_one_name_cost_a_look_each_not_a_scan_each() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.3.html"), b"mine").unwrap();
        let namer = Namer::new(dir.path(), false);
        let n = 3000;
        let names: Vec<PathBuf> = (0..n).map(|_| namer.reserve("index.html")).collect();
        let mut want = vec![dir.path().join("index.html")];
        want.extend(
            (1..=n)
                .filter(|&i| i != 3)
                .map(|i| dir.path().join(format!("index.{i}.html"))),
        );
        assert_eq!(names, want[..n]);
        // One look per reservation, plus one for each variant found taken on the way.
        let probes = namer.taken.lock().unwrap().probes;
        assert!(probes <= 2 * n, "{probes} looks for {n} names");
        // A judge that may differ per URL still sees every variant.
        let (path, ()) = namer.reserve_by("index.html", |p| {
            (p == dir.path().join("index.3.html")).then_some(())
        });
        assert_eq!(path, dir.path().join("index.3.html"));
    }

    #[test]
    fn a_long_run_never_hands_out_a_name_twice() {
        // Enough names for the set to merge its recent keys into its sorted array many times.
        let dir = tempfile::tempdir().unwrap();
        let namer = Namer::new(dir.path(), false);
        let n = 40_000;
        for i in 0..n {
            let name = format!("f{i}.bin");
            assert_eq!(namer.reserve(name.as_str()), dir.path().join(&name));
        }
        for i in (0..n).step_by(97) {
            let again = namer.reserve(format!("f{i}.bin").as_str());
            assert_eq!(again, dir.path().join(format!("f{i}.1.bin")));
        }
        // A name given back from deep in the set is free again, and only that one.
        let early = dir.path().join("f3.bin");
        namer.release(&early);
        assert_eq!(namer.reserve("f3.bin"), early);
        assert_eq!(namer.reserve("f4.bin"), dir.path().join("f4.1.bin"));
    }

    #[test]
    fn a_directory_empty_at_the_start_is_not_asked_again() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("new");
        let namer = Namer::new(&missing, false);
        std::fs::create_dir(&missing).unwrap();
        std::fs::write(missing.join("late"), b"theirs").unwrap();
        // Chosen without the disk: the `.part`'s create_new and the no-clobber rename keep it.
        assert_eq!(namer.reserve_for_part("late"), missing.join("late"));
        let namer = Namer::new(&missing, false);
        assert_eq!(namer.reserve_for_part("late"), missing.join("late.1"));
    }

    #[test]
    fn reserve_for_part_leaves_the_part_to_create_new() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.part.meta"), b"PRECIOUS").unwrap();
        std::fs::write(dir.path().join("g.part"), b"mine").unwrap();
        std::fs::write(dir.path().join("h"), b"old").unwrap();
        let namer = Namer::new(dir.path(), false);
        assert_eq!(namer.reserve_for_part("f"), dir.path().join("f.1"));
        assert_eq!(namer.reserve_for_part("g"), dir.path().join("g"));
        assert_eq!(namer.reserve_for_part("h"), dir.path().join("h.1"));
        let namer = Namer::new(dir.path(), true);
        assert_eq!(namer.reserve_for_part("h"), dir.path().join("h"));
        assert_eq!(namer.reserve_for_part("f"), dir.path().join("f.1"));
    }

    #[test]
    fn workers_reserving_one_name_at_once_get_different_free_paths() {
        // Taken on disk: the name, one variant's sidecar, a later variant.
        let (dir, namer) = namer_over(&["x.bin", "x.2.bin.part.meta", "x.5.bin"]);
        let paths: Vec<PathBuf> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..4)
                            .map(|_| namer.reserve_for_part("x.bin"))
                            .collect::<Vec<PathBuf>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect::<Vec<PathBuf>>()
        });
        let distinct: std::collections::HashSet<_> = paths.iter().collect();
        assert_eq!(distinct.len(), 32, "{paths:?}");
        for path in &paths {
            assert!(
                free_on_disk(path, false),
                "{} is taken on disk",
                path.display()
            );
        }
        // The same 32 a one-at-a-time search would hand out: the first free ones.
        let highest = (1..=34).map(|n| dir.path().join(with_suffix("x.bin", n)));
        let expected: std::collections::HashSet<_> =
            highest.filter(|p| free_on_disk(p, false)).collect();
        assert_eq!(distinct, expected.iter().collect());
    }

    #[test]
    fn families_clash_whichever_way_round_they_were_reserved() {
        let dir = tempfile::tempdir().unwrap();
        let namer = Namer::new(dir.path(), false);
        let name = |p: PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
        // Reserved first, then a name that is one of its family's members.
        assert_eq!(name(namer.reserve("a")), "a");
        assert_eq!(name(namer.reserve("a.part")), "a.1.part");
        assert_eq!(name(namer.reserve("a.part.meta")), "a.part.1.meta");
        // `a.1` is taken too: `a.1.part` belongs to its family.
        assert_eq!(name(namer.reserve("a")), "a.2");
        // And a family member first, then the name whose family it belongs to.
        assert_eq!(name(namer.reserve("b.part")), "b.part");
        assert_eq!(name(namer.reserve("b")), "b.1");
        assert_eq!(name(namer.reserve("c.part.meta")), "c.part.meta");
        assert_eq!(name(namer.reserve("c")), "c.1");
        // Folders from a list file: only the last part of the name counts.
        assert_eq!(namer.reserve("d/e.part"), dir.path().join("d/e.part"));
        assert_eq!(namer.reserve("d/e"), dir.path().join("d/e.1"));
        assert_eq!(
            namer.taken.lock().unwrap().names.len(),
            10,
            "one key a reservation"
        );
        // The keys of a name written in pieces and in one are the same, long or short.
        assert_eq!(
            namer.key(&["x", ".part", ".meta"]),
            namer.key(&["x.part.meta"])
        );
        assert_ne!(namer.key(&["x.part"]), namer.key(&["x"]));
        let long = "d/".repeat(300);
        assert_eq!(
            namer.key(&[&long, ".part"]),
            namer.key(&[&format!("{long}.part")])
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_dangling_symlink_is_not_free() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("nowhere", dir.path().join("s.part.meta")).unwrap();
        let namer = Namer::new(dir.path(), true);
        assert_eq!(namer.reserve("s"), dir.path().join("s.1"));
    }

    #[test]
    fn part_path_appends() {
        assert_eq!(part_path(Path::new("o/x.bin")), Path::new("o/x.bin.part"));
    }
}
