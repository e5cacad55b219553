//! The life of `NAME.part` and its sidecar: opened with `create_new` (or reopened by `-c`),
//! made ready for a body, renamed into place without replacing anything, kept with its sidecar
//! when its bytes are genuine and the download failed, removed when they are not.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::failure::{Failure, FailureKind};
use super::lock::{in_use, locked, still};
use super::sidecar::{self, PartMeta};
use super::split::Done;
use super::verify::Verify;
use super::{disposition, Fetcher, SMALL_BODY};
use crate::naming;
use crate::safefs;
use crate::transport::Response;
use reqwest::header::CONTENT_DISPOSITION;

/// A download in progress: where its bytes go and how many are already there.
pub(super) struct Transfer {
    /// The name reservations start from (from the URL, or the server's with
    /// `--content-disposition`).
    pub(crate) name: String,
    /// A list line named the output: the server's Content-Disposition does not override it.
    pub(crate) explicit: bool,
    /// Final path and its `.part`, once reserved.
    pub(crate) path: Option<PathBuf>,
    pub(crate) part: Option<PathBuf>,
    pub(crate) file: Option<File>,
    /// Bytes in the part file.
    pub(crate) have: u64,
    /// Where those bytes came from.
    pub(crate) meta: Option<PartMeta>,
    /// The sidecar on disk is ours (written by this run, or matched to this URL by `-c`): only
    /// then may it be replaced or removed.
    pub(crate) meta_owned: bool,
    /// The full size, when known.
    pub(crate) total: Option<u64>,
    pub(crate) started: bool,
    /// Whether the sidecar on disk describes the part (see [`SMALL_BODY`]).
    pub(crate) meta_saved: bool,
    /// `--split` fell back to one stream for this file (counted once, whatever the retries).
    pub(crate) split_fell_back: bool,
    /// `-c` took up a part whose final name already held a file (see [`Note::NameHeld`]).
    ///
    /// [`Note::NameHeld`]: super::Note::NameHeld
    pub(crate) name_held: bool,
    /// Bytes of the part that were on disk before this run (`-c`) and still are: a local
    /// error must not destroy them.
    pub(crate) earlier: u64,
    /// The download started over from zero once already (see `start_over`).
    pub(crate) restarted: bool,
    /// The server answered a request for the rest with the whole file, not announcing range
    /// support: the bytes on disk were dropped (noted once, see [`super::Note::RangesIgnored`]).
    pub(crate) ranges_ignored: bool,
    /// A resume was answered with the whole file because its validator no longer matched: the
    /// file changed on the server (noted, see [`super::Note::Changed`]).
    pub(crate) changed: bool,
    /// No `--split` for this file any more: its pieces disagreed with the first response.
    pub(crate) one_stream: bool,
    /// An expected checksum of the whole file is known and checked before the rename, which
    /// proves joins no validator vouches for (`verify` is set).
    pub(crate) proof: bool,
    /// With tracing, the requests of this attempt's `--split` pieces (after the first).
    pub(crate) pieces_log: Option<std::sync::Mutex<Vec<crate::trace::Exchange>>>,
    /// With tracing, this attempt's request and response as far as they went: the last of
    /// its redirect chain, when it followed one.
    pub(crate) head: crate::trace::Exchange,
    /// With tracing, the redirects this attempt followed before `head`, in order.
    pub(crate) hops: Vec<crate::trace::Exchange>,
    /// The expected digest, when the list or `--checksums` gave one.
    pub(crate) verify: Option<Verify>,
    /// What names the part in its sidecar: the URL the user gave (credentials removed) and its
    /// key, whichever mirror the bytes come from.
    pub(crate) shown_url: String,
    pub(crate) key: String,
    /// The path reserved for this URL as the list was read (see [`crate::naming::Namer::home`]):
    /// never given back to the namer, even when the URL goes back to the queue.
    pub(crate) home: Option<naming::Home>,
    /// `home` has not been judged against the disk yet.
    pub(crate) home_untried: bool,
    /// `-N`: the existing file's modification time, asked about with `If-Modified-Since`.
    pub(crate) since: Option<std::time::SystemTime>,
    /// `-N`: the download replaces the file under `path` (by rename, once complete).
    pub(crate) replace: bool,
    /// `-N`: the server's answer leaves the file under `path` as it is (a 304, or a 200 no
    /// newer than it): nothing was downloaded.
    pub(crate) unchanged: bool,
}

impl Transfer {
    pub(super) fn new(name: String, explicit: bool, url: &url::Url) -> Transfer {
        Transfer {
            verify: None,
            shown_url: crate::redact::url(url),
            key: sidecar::url_key(url),
            home: None,
            home_untried: false,
            since: None,
            replace: false,
            unchanged: false,
            name,
            explicit,
            path: None,
            part: None,
            file: None,
            have: 0,
            meta: None,
            meta_owned: false,
            total: None,
            started: false,
            meta_saved: false,
            split_fell_back: false,
            name_held: false,
            earlier: 0,
            restarted: false,
            ranges_ignored: false,
            changed: false,
            one_stream: false,
            proof: false,
            pieces_log: None,
            head: crate::trace::Exchange::default(),
            hops: Vec::new(),
        }
    }

    /// This transfer with its URL's home, tried before any other name.
    pub(super) fn at_home(mut self, home: &naming::Home) -> Transfer {
        self.home = Some(home.clone());
        self.home_untried = true;
        self
    }

    /// The home's path, the first time it is asked for: once judged (taken, or found held by
    /// something else), the names beside it are searched.
    pub(super) fn untried_home(&mut self) -> Option<PathBuf> {
        if std::mem::take(&mut self.home_untried) {
            self.home.as_ref().map(|home| home.path.clone())
        } else {
            None
        }
    }

    /// Whether `path` is this URL's home.
    pub(super) fn is_home(&self, path: &Path) -> bool {
        self.home.as_ref().is_some_and(|home| home.path == path)
    }

    /// Where to look for a free name: beside the home, which no other URL of the list is given
    /// (see [`naming::beside`]), or, without one, through the variants of the name.
    pub(super) fn seek(&self) -> naming::Seek<'_> {
        match &self.home {
            Some(home) => naming::Seek::Beside(&home.spot),
            None => naming::Seek::Name(&self.name),
        }
    }

    /// `-c`: takes up the part file of `path` (whose sidecar named this URL) where it ends, or,
    /// sparse, with the ranges its sidecar lists.
    pub(super) fn reopen(
        &mut self,
        path: PathBuf,
        mut meta: PartMeta,
        len: u64,
    ) -> Result<(), Failure> {
        let part = naming::part_path(&path);
        let cannot = |e| Failure::new(FailureKind::disk("open", &part, e));
        let mut file =
            safefs::open_regular(&part, OpenOptions::new().write(true)).map_err(cannot)?;
        // Locked, and still the part that was looked at: another run may have renamed it into
        // place (or written more) between the look and the lock.
        if !locked(&file) || !still(&file, &part, len) {
            return Err(Failure::new(FailureKind::InUse(part)));
        }
        file.seek(SeekFrom::End(0)).map_err(cannot)?;
        let have = match (&meta.ranges, meta.total) {
            (None, _) => len,
            // Sparse, as planned: only its ranges are genuine.
            (Some(ranges), Some(total))
                if len == total && ranges.last().is_none_or(|r| r.1 <= total) =>
            {
                ranges.iter().map(|(start, end)| end - start).sum()
            }
            // Our own leftover, but nothing in it can be trusted: it starts over from zero.
            (Some(_), _) => {
                meta.ranges = None;
                0
            }
        };
        self.total = meta.total;
        self.meta = Some(meta);
        self.meta_owned = true;
        self.meta_saved = true;
        self.have = have;
        self.earlier = have;
        self.file = Some(file);
        self.part = Some(part);
        self.path = Some(path);
        Ok(())
    }

    /// Ends a failed download: keeps a part file with genuine bytes (and its sidecar, so `-c`
    /// can resume it), removes an empty one (and a sidecar written for it), and says which.
    pub(super) fn give_up(&mut self, mut failure: Failure) -> Failure {
        if self.have == 0 {
            // Stopped between the headers and the first byte (Ctrl-C, a closed stdout, a body
            // that never came): an empty part is no download, only clutter.
            self.discard();
            return failure;
        }
        // The sidecar is written while the part is still open and locked (see `super::lock`).
        self.save_meta();
        drop(self.file.take());
        if let Some(part) = self.part.take() {
            // Resumed only with a validator to check the server's file against (see
            // `attempt`), or a checksum to prove the joined bytes; else `-c` starts over.
            let validated = self.meta.as_ref().is_some_and(PartMeta::has_validator);
            failure.resumable = self.meta_owned && (validated || self.proof);
            failure.left = Some(part);
        }
        failure
    }

    /// Writes the sidecar that lets `-c` resume the part, once. A sidecar we could not write
    /// (say, a symlink swapped in) is not ours to remove.
    pub(super) fn save_meta(&mut self) {
        let (meta, part) = (self.meta.as_ref(), self.part.as_deref());
        save_sidecar(meta, part, &mut self.meta_owned, &mut self.meta_saved);
    }

    /// Whether the part is sparse: `--split` pieces fill it out of order, and only the ranges
    /// its sidecar lists are genuine.
    pub(super) fn sparse(&self) -> bool {
        self.meta.as_ref().is_some_and(|m| m.ranges.is_some())
    }

    /// Describes the part anew in its sidecar, now; whether that worked. A failure changes
    /// nothing about which sidecar is ours.
    pub(super) fn rewrite_meta(&mut self) -> bool {
        let (Some(meta), Some(part)) = (&self.meta, &self.part) else {
            return false;
        };
        let saved = meta.save(part, self.meta_owned).is_ok();
        if saved {
            self.meta_owned = true;
            self.meta_saved = true;
        }
        saved
    }

    /// After `--split` pieces ran: the part's genuine bytes are the ranges `done`. Until they
    /// are the whole file the sidecar lists them; if it cannot, the part is cut back to its
    /// contiguous prefix, which needs no list, unless that would cut bytes our sidecar on disk
    /// lists: then that sidecar stands.
    pub(super) fn record_ranges(&mut self, done: Done) {
        // What the sidecar on disk lists now, if it is ours: still true of the part whatever
        // this run wrote into its gaps.
        let listed = self
            .meta
            .as_ref()
            .and_then(|meta| meta.ranges.clone())
            .filter(|_| self.meta_saved && self.meta_owned);
        self.have = done.iter().map(|(start, end)| end - start).sum();
        let whole = self.total.is_some_and(|total| done == [(0, total)]);
        let prefix = done.first().filter(|r| r.0 == 0).map_or(0, |r| r.1);
        if let Some(meta) = self.meta.as_mut() {
            meta.ranges = (!whole).then_some(done);
        }
        if whole || self.rewrite_meta() {
            return;
        }
        // The disk is full, say. Cutting back to the prefix would destroy listed bytes past
        // it, which were there before this run: the old sidecar stands, and only what this
        // run added goes uncounted.
        if let Some(listed) = listed.filter(|l| l.last().is_some_and(|r| r.1 > prefix)) {
            self.have = listed.iter().map(|(start, end)| end - start).sum();
            if let Some(meta) = self.meta.as_mut() {
                meta.ranges = Some(listed);
            }
            return;
        }
        if let Some(meta) = self.meta.as_mut() {
            meta.ranges = None;
        }
        self.withdraw_meta();
        self.have = prefix;
        let cut = self.file.as_mut().map(|file| {
            file.set_len(prefix)
                .and_then(|()| file.seek(SeekFrom::Start(prefix)))
        });
        if !matches!(cut, Some(Ok(_))) {
            // Holes nobody could tell from data: nothing in the part is worth keeping.
            self.discard();
        }
    }

    /// Takes the sidecar away while the part holds bytes it does not describe.
    pub(super) fn withdraw_meta(&mut self) {
        if self.meta_saved {
            if let (Some(part), true) = (&self.part, self.meta_owned) {
                sidecar::remove(part);
            }
            self.meta_owned = false;
            self.meta_saved = false;
        }
    }

    /// Cuts the part back to the `have` bytes counted as written (a failed write may have left
    /// some of its bytes past them); whether that worked.
    pub(super) fn cut_to_have(&mut self) -> bool {
        self.file
            .as_ref()
            .is_some_and(|file| file.set_len(self.have).is_ok())
    }

    /// Removes the part file and its sidecar (when it is ours), while the part is still open
    /// and locked: closed first, it could be taken up by another run and then removed from
    /// under it.
    pub(super) fn discard(&mut self) {
        if let Some(part) = self.part.take() {
            let _ = fs::remove_file(&part);
            if self.meta_owned {
                sidecar::remove(&part);
            }
        }
        drop(self.file.take());
        self.meta_owned = false;
        self.have = 0;
    }
}

impl Fetcher<'_> {
    /// Makes the part file ready for a body from offset `t.have`: opens a fresh one (choosing
    /// the name now, so `--content-disposition` can have its say) or empties the old one for a
    /// restart; records where the bytes come from beside it.
    pub(super) fn prepare_part(
        &self,
        response: &Response,
        t: &mut Transfer,
    ) -> Result<(), Failure> {
        // A file opened just now is already empty and at offset 0.
        let fresh = t.file.is_none();
        if fresh {
            self.open_fresh(response, t)?;
        }
        let (Some(file), Some(part)) = (t.file.as_mut(), t.part.as_ref()) else {
            return Err(Failure::new(FailureKind::Internal("no part file")));
        };
        if t.have == 0 {
            if !fresh {
                file.set_len(0)
                    .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
                    .map_err(|e| Failure::new(FailureKind::disk("write", part, e)))?;
            }
            // A small body gets its sidecar only before its first wait on the network
            // (`stream_whole`) or if it is left unfinished (give_up); until then, a sidecar of
            // bytes now gone must not describe the new ones.
            if t.total.is_none_or(|total| total > SMALL_BODY) {
                t.meta_saved = false;
                t.save_meta();
            } else {
                t.withdraw_meta();
            }
        }
        Ok(())
    }

    /// Chooses the name (the server's, with `--content-disposition`) and opens its part file.
    fn open_fresh(&self, response: &Response, t: &mut Transfer) -> Result<(), Failure> {
        if self.settings.content_disposition && !t.explicit {
            if let Some(name) = response
                .headers()
                .get(CONTENT_DISPOSITION)
                .and_then(|v| disposition::filename(v.as_bytes()))
            {
                // A name the server agrees with keeps what `-c` reserved for it.
                if name != t.name {
                    t.name = name;
                    t.path = None;
                    t.home = None;
                    t.home_untried = false;
                }
            }
        }
        let path = match t.path.take() {
            Some(path) => path,
            None => match t.untried_home() {
                Some(home) if self.namer.free_for_part(&home) => home,
                _ => self.namer.reserve_for_part(t.seek()),
            },
        };
        // With -c or -N this run was asked for the file under the name, which a run beside it
        // has saved since the look (-N's own file to replace aside): that one stands, and no
        // copy is made under the next name.
        let s = &self.settings;
        let asked = (s.resume || s.timestamping) && !s.overwrite && !t.replace;
        if asked && safefs::occupied(&path) {
            self.release(t, &path);
            return Err(Failure::new(FailureKind::Appeared(path)));
        }
        let (path, part, file) = self.open_part(t, path)?;
        t.path = Some(path);
        t.part = Some(part);
        t.file = Some(file);
        Ok(())
    }

    /// Opens `PATH.part` with `create_new`, `--overwrite` or not (it never follows a symlink and
    /// never truncates a file we did not create): if something took the name since we reserved
    /// it, move on to a free name beside it rather than write into its file.
    fn open_part(
        &self,
        t: &Transfer,
        mut path: PathBuf,
    ) -> Result<(PathBuf, PathBuf, File), Failure> {
        let name = &t.name;
        refuse_linked_folders(self.namer.dir(), &path)?;
        for _ in 0..100 {
            let part = naming::part_path(&path);
            let others = match create_part(&path, &part)? {
                // Still ours once locked: not taken up, or taken back, by a run beside this one
                // between the create and the lock.
                Ok(file) if locked(&file) && still(&file, &part, 0) => {
                    return Ok((path, part, file))
                }
                Ok(_) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => in_use(&part),
                Err(e) if crate::fdlimit::exhausted(&e) => {
                    self.release(t, &path);
                    let why = FailureKind::OutOfFiles(format!("cannot create {}", part.display()));
                    return Err(Failure::new(why));
                }
                Err(e) => return Err(Failure::new(FailureKind::disk("create", &part, e))),
            };
            // A run beside this one writing the part: with -c, -N or --overwrite this run was
            // asked for that file, not a copy of it under the next name.
            if others && self.wants_the_name() {
                self.release(t, &path);
                return Err(Failure::new(FailureKind::InUse(part)));
            }
            path = self.namer.reserve(t.seek());
        }
        Err(Failure::new(FailureKind::NoFreeName(name.to_string())))
    }

    /// Whether this run means the file under the name itself (`-c`, `-N`, `--overwrite`), not
    /// just a free name for it.
    pub(super) fn wants_the_name(&self) -> bool {
        let s = &self.settings;
        s.resume || s.timestamping || s.overwrite
    }

    /// Gives the finished `.part` its final name without replacing anything (unless overwriting):
    /// a plain rename would silently replace a file that appeared under the name meanwhile.
    /// `replace`: `-N` found a newer version of the file under `path`, which the rename
    /// replaces (the one case where a file is replaced without --overwrite). Only a regular file
    /// is ever replaced: a link, a folder or a FIFO under the name (`-c --overwrite` takes up a
    /// part without the namer's look at the name) sends the file beside it.
    pub(super) fn commit(
        &self,
        seek: naming::Seek<'_>,
        part: &Path,
        mut path: PathBuf,
        replace: bool,
    ) -> io::Result<PathBuf> {
        if (self.settings.overwrite || replace) && safefs::vacant_or_regular(&path) {
            fs::rename(part, &path)?;
            return Ok(path);
        }
        loop {
            match safefs::rename_no_clobber(part, &path) {
                Ok(()) => return Ok(path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    path = self.namer.reserve(seek);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// [`Transfer::save_meta`] on the fields it needs, so that it can run while the part file is
/// borrowed for streaming (a small body's sidecar, before its first wait on the network).
pub(super) fn save_sidecar(
    meta: Option<&PartMeta>,
    part: Option<&Path>,
    owned: &mut bool,
    saved: &mut bool,
) {
    if let (false, Some(meta), Some(part)) = (*saved, meta, part) {
        // Without the sidecar the part could not be resumed; the download itself is fine.
        *owned = meta.save(part, *owned).is_ok();
        *saved = true;
    }
}

/// Creates `part` (never over anything), making the folders of `path` first if they are
/// missing. The outer error is a folder that could not be made; the inner one, the file.
fn create_part(path: &Path, part: &Path) -> Result<io::Result<File>, Failure> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    // Directories are made only when missing: for many small files in one directory an
    // unconditional create_dir_all adds system calls to every file (see benches/).
    match options.open(part) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match path.parent().filter(|p| !p.as_os_str().is_empty()) {
                Some(parent) => {
                    fs::create_dir_all(parent).map_err(|e| {
                        Failure::new(FailureKind::disk("create directory", parent, e))
                    })?;
                    Ok(options.open(part))
                }
                None => Ok(Err(e)),
            }
        }
        other => Ok(other),
    }
}

/// A list line may name sub-folders of the output directory (`isos/b.iso`); if one of those
/// already exists as a symbolic link, writing through it could land anywhere on the system, so
/// it is refused. The output directory itself may be a link: the user chose it.
fn refuse_linked_folders(dir: &Path, path: &Path) -> Result<(), Failure> {
    let Some(folders) = path.strip_prefix(dir).ok().and_then(Path::parent) else {
        return Ok(());
    };
    let mut at = dir.to_path_buf();
    for folder in folders.components() {
        at.push(folder);
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Failure::new(FailureKind::LinkedFolder(at)))
            }
            Ok(_) => {}
            // Missing from here on: create_dir_all makes real folders.
            Err(_) => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resumed sparse part whose new sidecar cannot be written (a folder stands where it
    /// goes; in life, a full disk): the bytes its old sidecar listed stay, counted as before.
    /// They used to be cut back to the first range, the sidecar removed (a reviewer lost three
    /// of four `--split` pieces to a full disk that way).
    #[test]
    fn a_sidecar_that_cannot_be_rewritten_cuts_no_listed_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let url = url::Url::parse("http://127.0.0.1:9/x.bin").unwrap();
        let path = dir.path().join("x.bin");
        let part = naming::part_path(&path);
        fs::write(&part, vec![7u8; 1000]).unwrap();
        let headers = reqwest::header::HeaderMap::new();
        let mut meta = PartMeta::from_response(url.to_string(), &headers, Some(1000));
        meta.ranges = Some(vec![(0, 100), (500, 600)]);
        meta.save(&part, false).unwrap();
        let mut t = Transfer::new("x.bin".into(), false, &url);
        t.reopen(path, meta, 1000).unwrap();
        let sidecar = sidecar::meta_path(&part);
        fs::remove_file(&sidecar).unwrap();
        fs::create_dir(&sidecar).unwrap();
        t.record_ranges(vec![(0, 300), (500, 600)]);
        assert_eq!(t.have, 200);
        let ranges = t.meta.as_ref().and_then(|m| m.ranges.clone());
        assert_eq!(ranges, Some(vec![(0, 100), (500, 600)]));
        assert_eq!(fs::metadata(&part).unwrap().len(), 1000);
    }

    /// A download of `x.bin` whose part holds `bytes`, with a validator to resume by.
    fn transfer(dir: &Path, bytes: &[u8]) -> Transfer {
        let url = url::Url::parse("http://h/x.bin").unwrap();
        let mut t = Transfer::new("x.bin".into(), false, &url);
        let path = dir.join("x.bin");
        let part = naming::part_path(&path);
        fs::write(&part, bytes).unwrap();
        t.file = Some(OpenOptions::new().append(true).open(&part).unwrap());
        t.have = bytes.len() as u64;
        t.meta = Some(PartMeta {
            url: t.shown_url.clone(),
            key: t.key.clone(),
            etag: Some("\"e1\"".into()),
            ..PartMeta::default()
        });
        t.path = Some(path);
        t.part = Some(part);
        t
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_part_given_up_before_its_first_byte_goes_with_its_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = transfer(dir.path(), b"");
        // A large body's sidecar is written before its first byte.
        t.save_meta();
        assert_eq!(names(dir.path()), ["x.bin.part", "x.bin.part.meta"]);
        let failure = t.give_up(Failure::interrupted(None));
        assert_eq!(failure.left, None);
        assert!(!failure.resumable);
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    }

    #[test]
    fn a_part_given_up_with_bytes_keeps_them_with_its_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = transfer(dir.path(), b"abc");
        let part = dir.path().join("x.bin.part");
        let failure = t.give_up(Failure::interrupted(None));
        assert_eq!(failure.left.as_deref(), Some(part.as_path()));
        assert!(failure.resumable);
        assert_eq!(names(dir.path()), ["x.bin.part", "x.bin.part.meta"]);
        assert_eq!(fs::read(&part).unwrap(), b"abc");
    }
}
