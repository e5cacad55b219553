//! One download, start to finish: GET, stream 8 KiB chunks into `NAME.part`, check the length,
//! and only then give the file its final name; with retries, resumption and limits around it.
//!
//! The promise kept here: a file under its final name is complete, nothing existing is replaced
//! unless the user asked, bytes on disk are never spliced from two versions of a file, and every
//! failure comes back as one readable reason.
//!
//! The steps are separate so that they can be reused (a ranged multi-connection download needs
//! the same "request from offset N" and "stream into this file" steps): [`Fetcher::request`]
//! asks for the body from an offset, [`stream_body`] copies it, [`Fetcher::commit`] names it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::transport::{self, Client, Response};
use reqwest::header::{
    CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE, IF_RANGE, LOCATION, RANGE, RETRY_AFTER,
};
use url::Url;

use self::sidecar::{ContentRange, PartMeta};
use self::split::Split;
use crate::naming::{self, Namer};
use crate::redact;
use crate::retry::{self, Policy};
use crate::safefs;

pub mod disposition;
pub mod failure;
pub mod sidecar;
pub mod split;
pub mod stream;

pub use self::failure::{describe_request_error, Failure, FailureKind};
pub use self::stream::{stream_body, Pending, StreamError};

use self::failure::describe_read_error;

/// The default streaming unit (`--chunk-size`): one reusable buffer of this size per download.
pub const CHUNK: usize = 8 * 1024;

/// Bodies up to this size (by Content-Length) get their resume sidecar only if they are left
/// unfinished, not before the first byte: for many small files, creating, writing and removing
/// a sidecar for every file is a large share of the wall time (measured by `benches/`, see
/// README "Performance"). The price: a small part left by
/// a process killed outright (not Ctrl-C) has no sidecar, so `-c` fetches it again under the next
/// free name instead of resuming it.
pub const SMALL_BODY: u64 = 64 * 1024;

/// File writes of a body larger than [`SMALL_BODY`] are gathered up to this size: for large
/// files, writing every 8 KiB read on its own costs clearly more CPU and wall time than
/// gathering 64 KiB, and a larger buffer gained nothing more while costing memory (measured by
/// `benches/`, see README "Performance").
pub const WRITE_BEHIND: usize = 64 * 1024;

/// Most redirects followed before giving up.
pub const MAX_REDIRECTS: usize = 10;

/// How often a worker waiting to retry looks at the cancel flag.
const PAUSE_SLICE: Duration = Duration::from_millis(50);

/// The settings every download shares.
pub struct Fetcher<'a> {
    pub client: &'a Client,
    pub namer: &'a Namer,
    pub cancel: &'a AtomicBool,
    pub overwrite: bool,
    /// Only for messages: the client enforces it.
    pub timeout: Duration,
    pub retry: Policy,
    /// `-c`: resume `.part` files of earlier runs, skip files already complete.
    pub resume: bool,
    /// `--max-filesize`: refuse bodies larger than this.
    pub max_filesize: Option<u64>,
    /// `--content-disposition`: let the server's proposed name (made safe) choose the file name.
    pub content_disposition: bool,
    /// Bytes per read of the body (`--chunk-size`).
    pub chunk: usize,
    /// `--split N`: ranged connections per file (see [`split`]).
    pub split: &'a Split,
}

/// A finished download, saved under `path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    pub path: PathBuf,
    /// 0 when `skipped` (only a range probe was made; nothing was downloaded).
    pub http_status: u16,
    /// `-c` found the file already complete and downloaded nothing.
    pub skipped: bool,
}

/// What one download came to; `bytes` counts body bytes received, whatever the outcome.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub result: Result<Saved, Failure>,
    pub bytes: u64,
    pub elapsed: Duration,
    /// Attempts after the first.
    pub retries: u32,
}

impl Outcome {
    pub fn skipped(&self) -> bool {
        matches!(&self.result, Ok(saved) if saved.skipped)
    }
}

/// What the worker learns once the response headers are in: where the bytes go, how many to expect.
pub struct Started<'a> {
    pub path: &'a Path,
    /// Body bytes to come (less than the file's size when resuming).
    pub total: Option<u64>,
}

/// How one attempt ended.
enum Attempt {
    /// The part file holds the whole body.
    Done(u16),
    /// Worth another try, after the server's `Retry-After` if it gave one.
    Retry(Failure, Option<Duration>),
    /// The partial bytes turned out useless (a range that does not fit them): start over from
    /// zero at once. Not a failure of the server, so it costs no retry.
    Restart,
    Fail(Failure),
}

/// A download in progress: where its bytes go and how many are already there.
struct Transfer {
    /// The name reservations start from (from the URL, or the server's with
    /// `--content-disposition`).
    name: String,
    /// A list line named the output: the server's Content-Disposition does not override it.
    explicit: bool,
    /// Final path and its `.part`, once reserved.
    path: Option<PathBuf>,
    part: Option<PathBuf>,
    file: Option<File>,
    /// Bytes in the part file.
    have: u64,
    /// Where those bytes came from.
    meta: Option<PartMeta>,
    /// The sidecar on disk is ours (written by this run, or matched to this URL by `-c`): only
    /// then may it be replaced or removed.
    meta_owned: bool,
    /// The full size, when known.
    total: Option<u64>,
    started: bool,
    /// Whether the sidecar on disk describes the part (see [`SMALL_BODY`]).
    meta_saved: bool,
    /// `--split` fell back to one stream for this file (counted once, whatever the retries).
    split_fell_back: bool,
}

/// What `-c` found on disk for a URL.
enum Found {
    Fresh,
    /// A regular file of this length under the final name: complete only if the server says so.
    Existing(u64),
    Part(PartMeta, u64),
}

impl Fetcher<'_> {
    /// Downloads `url`, into `output` (a checked relative path from a list line) or else a name
    /// taken from the URL. `on_start` is called once the response headers are accepted;
    /// `counter` is bumped as body bytes arrive (the progress display reads it).
    pub fn fetch(
        &self,
        url: &Url,
        output: Option<&str>,
        counter: &AtomicU64,
        on_start: &mut dyn FnMut(Started<'_>),
    ) -> Outcome {
        let began = Instant::now();
        let mut bytes = 0;
        let mut retries = 0;
        let result = self.fetch_inner(url, output, counter, on_start, &mut bytes, &mut retries);
        Outcome {
            result,
            bytes,
            elapsed: began.elapsed(),
            retries,
        }
    }

    fn fetch_inner(
        &self,
        url: &Url,
        output: Option<&str>,
        counter: &AtomicU64,
        on_start: &mut dyn FnMut(Started<'_>),
        bytes: &mut u64,
        retries: &mut u32,
    ) -> Result<Saved, Failure> {
        let mut t = Transfer {
            // An explicit output goes through the namer too: it never replaces an existing file
            // and two lines naming the same path get `.1`, like any other clash.
            name: output.map_or_else(|| naming::from_url(url), str::to_string),
            explicit: output.is_some(),
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
        };
        if self.resume {
            if let Some(path) = self.find_earlier(url, &mut t)? {
                return Ok(Saved {
                    path,
                    http_status: 0,
                    skipped: true,
                });
            }
        }
        let status = loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(t.give_up(Failure::interrupted(None)));
            }
            match self.attempt(url, &mut t, counter, on_start, bytes) {
                Attempt::Done(status) => break status,
                Attempt::Restart => {}
                Attempt::Fail(failure) => return Err(t.give_up(failure)),
                Attempt::Retry(mut failure, retry_after) => {
                    if *retries >= self.retry.retries {
                        failure.reason.after_retries(*retries);
                        return Err(t.give_up(failure));
                    }
                    *retries += 1;
                    let wait = self.retry.wait(*retries, retry_after, fastrand::f64());
                    if !self.pause(wait) {
                        return Err(t.give_up(Failure::interrupted(None)));
                    }
                }
            }
        };
        let (Some(path), Some(part)) = (t.path.take(), t.part.take()) else {
            return Err(Failure::new(FailureKind::Internal(
                "no file for a finished download",
            )));
        };
        drop(t.file.take());
        let path = self.commit(&t.name, &part, path).map_err(|e| Failure {
            left: Some(part.clone()),
            ..Failure::new(FailureKind::disk("rename", &part, e)).with_status(status)
        })?;
        if t.meta_owned {
            sidecar::remove(&part);
        }
        Ok(Saved {
            path,
            http_status: status,
            skipped: false,
        })
    }

    /// `-c`: finds this URL's file from an earlier run. Returns the path of a final file that is
    /// already there and complete (nothing to do), or sets up `t` to resume a `.part` or start
    /// fresh.
    ///
    /// Only evidence counts: a part file is resumed only with a sidecar naming this very URL,
    /// and a final file is taken as complete only when the server, asked for the bytes after
    /// its end, answers that there are none and that the file is exactly that long. Anything
    /// else under the name is not ours to judge: it is left alone and the next name is tried.
    fn find_earlier(&self, url: &Url, t: &mut Transfer) -> Result<Option<PathBuf>, Failure> {
        let key = sidecar::url_key(url);
        loop {
            let (path, found) = self.namer.reserve_by(&t.name, |path| {
                let [_, part, meta] = naming::family(path);
                if safefs::occupied(&part) || safefs::occupied(&meta) {
                    // Only our own part file for this same URL: never splice another URL's bytes.
                    let meta = PartMeta::load(&part).filter(|m| m.key == key)?;
                    let have = safefs::regular_len(&part)?;
                    Some(Found::Part(meta, have))
                } else if safefs::occupied(path) {
                    safefs::regular_len(path).map(Found::Existing)
                } else {
                    Some(Found::Fresh)
                }
            });
            match found {
                Found::Existing(len) => {
                    if self.confirms_complete(url, len) {
                        return Ok(Some(path));
                    }
                    // Not ours, or not complete: leave it untouched, look at the next name.
                }
                Found::Fresh => {
                    t.path = Some(path);
                    return Ok(None);
                }
                Found::Part(meta, have) => {
                    let part = naming::part_path(&path);
                    let cannot = |e| Failure::new(FailureKind::disk("open", &part, e));
                    let mut file = safefs::open_regular(&part, OpenOptions::new().write(true))
                        .map_err(cannot)?;
                    file.seek(SeekFrom::End(0)).map_err(cannot)?;
                    t.total = meta.total;
                    t.meta = Some(meta);
                    t.meta_owned = true;
                    t.meta_saved = true;
                    t.have = have;
                    t.file = Some(file);
                    t.part = Some(part);
                    t.path = Some(path);
                    return Ok(None);
                }
            }
        }
    }

    /// Whether the server confirms that `len` bytes are the whole file: asked for the bytes
    /// from `len` on, it answers 416 with `Content-Range: bytes */len`. (A HEAD would do on
    /// some servers, but many answer it differently from a GET.) Anything else, an error
    /// included, is no confirmation.
    fn confirms_complete(&self, url: &Url, len: u64) -> bool {
        let Ok(response) = self
            .client
            .get(url.clone())
            .header(RANGE, format!("bytes={len}-"))
            .send()
        else {
            return false;
        };
        response.status().as_u16() == 416
            && content_range(&response) == Some(ContentRange::Unsatisfied { total: len })
    }

    /// Sends the GET, asking for the body from `from` on when `from > 0`; `if_range` makes the
    /// server send the whole (new) file instead if it changed since.
    pub fn request(
        &self,
        url: &Url,
        from: u64,
        if_range: Option<&str>,
    ) -> Result<Response, transport::Error> {
        let mut request = self.client.get(url.clone());
        if from > 0 {
            request = request.header(RANGE, format!("bytes={from}-"));
            if let Some(validator) = if_range {
                request = request.header(IF_RANGE, validator);
            }
        }
        request.send()
    }

    /// One request and as much of the body as it gives.
    fn attempt(
        &self,
        url: &Url,
        t: &mut Transfer,
        counter: &AtomicU64,
        on_start: &mut dyn FnMut(Started<'_>),
        bytes: &mut u64,
    ) -> Attempt {
        // Without a validator we cannot tell whether the server's file changed: start over.
        let resuming = t.have > 0 && t.meta.as_ref().is_some_and(PartMeta::has_validator);
        let from = if resuming { t.have } else { 0 };
        let if_range = t.meta.as_ref().and_then(PartMeta::if_range);
        let mut response = match self.request(url, from, if_range) {
            Ok(response) => response,
            Err(transport::Error::Runtime(e)) => {
                return Attempt::Fail(Failure::new(FailureKind::Runtime(e.to_string())))
            }
            Err(transport::Error::Http(e)) => {
                let failure = Failure::new(FailureKind::Request(describe_request_error(
                    &e,
                    self.timeout,
                )));
                // A bad redirect will be just as bad next time.
                return if e.is_redirect() || e.is_builder() {
                    Attempt::Fail(failure)
                } else {
                    Attempt::Retry(failure, None)
                };
            }
        };
        let status = response.status();
        let code = status.as_u16();
        let http_failure = || Failure::http(code, status.canonical_reason());
        match code {
            206 if resuming => match content_range(&response) {
                Some(ContentRange::Bytes { start, total, .. })
                    if start == t.have
                        && t.meta
                            .as_ref()
                            .is_some_and(|m| m.same_version(response.headers())) =>
                {
                    t.total = total.or_else(|| content_length(&response).map(|n| n + start));
                }
                _ => {
                    // A range from another version or at the wrong offset: the part is useless.
                    t.have = 0;
                    return Attempt::Restart;
                }
            },
            416 if resuming => {
                let expected = t.meta.as_ref().and_then(|m| m.total);
                return match content_range(&response) {
                    Some(ContentRange::Unsatisfied { total })
                        if total == t.have && expected.is_none_or(|e| e == total) =>
                    {
                        t.total = Some(total);
                        on_started(t, on_start);
                        Attempt::Done(code)
                    }
                    _ => {
                        // The part does not fit the server's file (longer, or another size).
                        t.have = 0;
                        Attempt::Restart
                    }
                };
            }
            206 => {
                return Attempt::Fail(Failure::new(FailureKind::UnaskedPartial).with_status(code))
            }
            _ if status.is_success() => {
                // A whole body: anything in the part file is from before, start over.
                t.have = 0;
                t.total = content_length(&response);
                t.meta = Some(PartMeta {
                    key: sidecar::url_key(url),
                    ..PartMeta::from_response(redact::url(url), response.headers(), t.total)
                });
            }
            // The client follows every redirect it may; one it handed back leads nowhere we go.
            _ if status.is_redirection() => {
                let target = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| url.join(v).ok());
                let kind = match target {
                    Some(to) if !matches!(to.scheme(), "http" | "https") => {
                        FailureKind::RedirectScheme(to.scheme().to_string())
                    }
                    _ => FailureKind::RedirectNowhere {
                        status: code,
                        canonical: status.canonical_reason(),
                    },
                };
                return Attempt::Fail(Failure::new(kind).with_status(code));
            }
            _ if retry::retryable_status(code) => {
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
                return Attempt::Retry(http_failure(), retry_after);
            }
            _ => return Attempt::Fail(http_failure()),
        }
        if let (Some(max), Some(total)) = (self.max_filesize, t.total) {
            if total > max {
                let kind = FailureKind::TooLarge {
                    max,
                    total: Some(total),
                };
                return Attempt::Fail(Failure::new(kind).with_status(code));
            }
        }
        if let Err(f) = self.prepare_part(&response, t) {
            return Attempt::Fail(f.with_status(code));
        }
        on_started(t, on_start);
        let Some(file) = t.file.as_mut() else {
            return Attempt::Fail(Failure::new(FailureKind::Internal("no part file")));
        };
        let before = t.have;
        // A whole body from the start may go over several ranged connections (`--split`).
        let ranges = if from == 0 {
            split::plan(self.split, url, &response, t.total, &mut t.split_fell_back)
        } else {
            None
        };
        let streamed = match ranges {
            Some(ranges) => {
                // The pieces preallocate the part to full size and fill it out of order: while
                // they run, a sidecar would let `-c` trust holes as data if the process dies
                // (Ctrl-C past the grace exits without waiting for them). So the sidecar goes
                // first, and comes back only once the part is cut to its genuine prefix.
                if t.meta_saved {
                    if let Some(part) = &t.part {
                        if t.meta_owned {
                            sidecar::remove(part);
                        }
                    }
                    t.meta_owned = false;
                    t.meta_saved = false;
                }
                let pieces = split::Pieces {
                    client: self.client,
                    asked: url,
                    file,
                    counter,
                    cancel: self.cancel,
                    chunk: self.chunk,
                };
                let r = split::run(&pieces, response, &ranges, &mut t.have);
                // Pieces write in place; what comes next (a resume) appends after the prefix.
                let r = match file.seek(SeekFrom::Start(t.have)) {
                    Ok(_) => r,
                    Err(e) => Err(StreamError::Write(e)),
                };
                // On failure the part now holds only genuine bytes: describe it again.
                if r.is_err() && t.have > 0 {
                    t.save_meta();
                }
                r
            }
            None => {
                // Reads stay `--chunk-size` (8 KiB by default); writes of a large body are
                // gathered into up to WRITE_BEHIND bytes, from data already received, in the
                // read buffer itself (see stream_body): the part holds every byte counted in
                // `t.have` whenever a retry, a resume or someone watching looks.
                let large = t.total.is_none_or(|total| total > SMALL_BODY);
                let chunk = self.chunk.max(1);
                let size = if large {
                    chunk.max(WRITE_BEHIND)
                } else {
                    chunk
                };
                stream_body(
                    &mut response,
                    file,
                    &mut vec![0; size],
                    chunk,
                    counter,
                    self.cancel,
                    &mut t.have,
                    self.max_filesize,
                )
            }
        };
        *bytes += t.have - before;
        let with_status = |kind: FailureKind| Failure::new(kind).with_status(code);
        match streamed {
            Ok(()) => {}
            Err(StreamError::Cancelled) => {
                return Attempt::Fail(with_status(FailureKind::Interrupted))
            }
            Err(StreamError::Write(e)) => {
                // A local write error leaves nothing worth keeping (and may mean a full disk).
                let kind = FailureKind::Disk {
                    op: "write",
                    path: t.part.clone(),
                    error: e.to_string(),
                };
                t.discard();
                return Attempt::Fail(with_status(kind));
            }
            Err(StreamError::TooLarge) => {
                t.discard();
                return Attempt::Fail(with_status(FailureKind::TooLarge {
                    max: self.max_filesize.unwrap_or(0),
                    total: None,
                }));
            }
            Err(StreamError::Read(e)) => {
                let kind = FailureKind::Cut {
                    what: describe_read_error(&e, self.timeout),
                    have: t.have,
                    total: t.total,
                };
                return Attempt::Retry(with_status(kind), None);
            }
            Err(StreamError::Aborted) => {
                let kind = FailureKind::Cut {
                    what: split::ABORTED.to_string(),
                    have: t.have,
                    total: t.total,
                };
                return Attempt::Retry(with_status(kind), None);
            }
        }
        if let Some(total) = t.total {
            if t.have != total {
                let kind = FailureKind::LengthMismatch {
                    have: t.have,
                    total,
                };
                return Attempt::Retry(with_status(kind), None);
            }
        }
        Attempt::Done(code)
    }

    /// Makes the part file ready for a body from offset `t.have`: opens a fresh one (choosing
    /// the name now, so `--content-disposition` can have its say) or empties the old one for a
    /// restart; records where the bytes come from beside it.
    fn prepare_part(&self, response: &Response, t: &mut Transfer) -> Result<(), Failure> {
        // A file opened just now is already empty and at offset 0.
        let fresh = t.file.is_none();
        if fresh {
            if self.content_disposition && !t.explicit {
                if let Some(name) = response
                    .headers()
                    .get(CONTENT_DISPOSITION)
                    .and_then(|v| disposition::filename(v.as_bytes()))
                {
                    // A name the server agrees with keeps what `-c` reserved for it.
                    if name != t.name {
                        t.name = name;
                        t.path = None;
                    }
                }
            }
            let path = match t.path.take() {
                Some(path) => path,
                None => self.namer.reserve_for_part(&t.name),
            };
            let (path, part, file) = self.open_part(&t.name, path)?;
            t.path = Some(path);
            t.part = Some(part);
            t.file = Some(file);
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
            t.meta_saved = false;
            // A small body is written with its sidecar only if it is left unfinished (give_up).
            if t.total.is_none_or(|total| total > SMALL_BODY) {
                t.save_meta();
            }
        }
        Ok(())
    }

    /// Waits before a retry; `false` if Ctrl-C came meanwhile.
    fn pause(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            std::thread::sleep((until - now).min(PAUSE_SLICE));
        }
    }

    /// Opens `PATH.part` with `create_new`, `--overwrite` or not (it never follows a symlink and
    /// never truncates a file we did not create): if something took the name since we reserved
    /// it, move on to the next free name rather than write into its file.
    fn open_part(
        &self,
        name: &str,
        mut path: PathBuf,
    ) -> Result<(PathBuf, PathBuf, File), Failure> {
        refuse_linked_folders(self.namer.dir(), &path)?;
        for _ in 0..100 {
            let part = naming::part_path(&path);
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            // Directories are made only when missing: for many small files in one directory an
            // unconditional create_dir_all adds system calls to every file (see benches/).
            let opened = match options.open(&part) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
                        Some(parent) => {
                            fs::create_dir_all(parent).map_err(|e| {
                                Failure::new(FailureKind::disk("create directory", parent, e))
                            })?;
                            options.open(&part)
                        }
                        None => Err(e),
                    }
                }
                other => other,
            };
            match opened {
                Ok(file) => return Ok((path, part, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    path = self.namer.reserve(name);
                }
                Err(e) => return Err(Failure::new(FailureKind::disk("create", &part, e))),
            }
        }
        Err(Failure::new(FailureKind::NoFreeName(name.to_string())))
    }

    /// Gives the finished `.part` its final name without replacing anything (unless overwriting):
    /// a plain rename would silently replace a file that appeared under the name meanwhile.
    pub fn commit(&self, name: &str, part: &Path, mut path: PathBuf) -> io::Result<PathBuf> {
        if self.overwrite {
            fs::rename(part, &path)?;
            return Ok(path);
        }
        loop {
            match safefs::rename_no_clobber(part, &path) {
                Ok(()) => return Ok(path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    path = self.namer.reserve(name);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Transfer {
    /// Ends a failed download: keeps a part file with genuine bytes (and its sidecar, so `-c`
    /// can resume it), removes an empty one, and says which.
    fn give_up(&mut self, mut failure: Failure) -> Failure {
        drop(self.file.take());
        if self.have > 0 {
            self.save_meta();
        }
        match self.part.take() {
            Some(part) if self.have > 0 => failure.left = Some(part),
            Some(_) => self.discard(),
            None => {}
        }
        failure
    }

    /// Writes the sidecar that lets `-c` resume the part, once. A sidecar we could not write
    /// (say, a symlink swapped in) is not ours to remove.
    fn save_meta(&mut self) {
        if let (false, Some(meta), Some(part)) = (self.meta_saved, &self.meta, &self.part) {
            // Without the sidecar the part could not be resumed; the download itself is fine.
            self.meta_owned = meta.save(part, self.meta_owned).is_ok();
            self.meta_saved = true;
        }
    }

    /// Removes the part file and its sidecar (when it is ours).
    fn discard(&mut self) {
        drop(self.file.take());
        if let Some(part) = self.part.take() {
            let _ = fs::remove_file(&part);
            if self.meta_owned {
                sidecar::remove(&part);
            }
        }
        self.meta_owned = false;
        self.have = 0;
    }
}

fn on_started(t: &mut Transfer, on_start: &mut dyn FnMut(Started<'_>)) {
    if t.started {
        return;
    }
    if let Some(path) = &t.path {
        t.started = true;
        // The bar counts bytes received by this run, so a resumed file shows what is still to come.
        on_start(Started {
            path,
            total: t.total.map(|total| total.saturating_sub(t.have)),
        });
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

fn content_length(response: &Response) -> Option<u64> {
    response
        .headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn content_range(response: &Response) -> Option<ContentRange> {
    sidecar::parse_content_range(response.headers().get(CONTENT_RANGE)?.to_str().ok()?)
}
