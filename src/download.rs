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

use std::error::Error as StdError;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::transport::{self, Client, Response};
use reqwest::header::{
    CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE, IF_RANGE, LOCATION, RANGE, RETRY_AFTER,
};
use url::Url;

use crate::naming::{self, Namer};
use crate::redact;
use crate::resume::{self, ContentRange, PartMeta};
use crate::retry::{self, Policy};
use crate::safefs;
use crate::split::{self, Split};

/// The default streaming unit (`--chunk-size`): one reusable buffer of this size per download.
pub const CHUNK: usize = 8 * 1024;

/// Bodies up to this size (by Content-Length) get their resume sidecar only if they are left
/// unfinished, not before the first byte: on workload C (2000 x 1 KiB) creating, writing and
/// removing a sidecar for every file cost ~17% of the wall time. The price: a small part left by
/// a process killed outright (not Ctrl-C) has no sidecar, so `-c` fetches it again under the next
/// free name instead of resuming it.
pub const SMALL_BODY: u64 = 64 * 1024;

/// File writes of a body larger than [`SMALL_BODY`] are gathered up to this size. On workload D
/// (8 x 256 MiB, J = 8, 8 KiB reads) writing every 8 KiB read on its own cost ~26% more CPU and
/// ~8% more wall time than gathering 64 KiB; 256 KiB gained nothing more and cost 2 MiB of RSS.
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
    /// `--split N`: ranged connections per file (see [`crate::split`]).
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

/// Why a download failed, and what it left on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub http_status: Option<u16>,
    /// A `.part` file that was kept (interrupted or cut off: its bytes are genuine).
    pub left: Option<PathBuf>,
    pub interrupted: bool,
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

impl Failure {
    fn new(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            http_status: None,
            left: None,
            interrupted: false,
        }
    }

    fn http(status: u16, canonical: Option<&str>) -> Failure {
        Failure {
            http_status: Some(status),
            ..Failure::new(
                format!("HTTP {status} {}", canonical.unwrap_or(""))
                    .trim_end()
                    .to_string(),
            )
        }
    }

    /// The reason followed by what is left on disk, as printed in error lines.
    pub fn describe(&self) -> String {
        match &self.left {
            Some(part) => format!("{}; partial data kept in {}", self.reason, part.display()),
            None => format!("{}; nothing saved", self.reason),
        }
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
                return Err(t.give_up(interrupted(None)));
            }
            match self.attempt(url, &mut t, counter, on_start, bytes) {
                Attempt::Done(status) => break status,
                Attempt::Restart => {}
                Attempt::Fail(failure) => return Err(t.give_up(failure)),
                Attempt::Retry(mut failure, retry_after) => {
                    if *retries >= self.retry.retries {
                        if *retries > 0 {
                            let s = if *retries == 1 { "y" } else { "ies" };
                            failure.reason =
                                format!("{} (after {retries} retr{s})", failure.reason);
                        }
                        return Err(t.give_up(failure));
                    }
                    *retries += 1;
                    let wait = self.retry.wait(*retries, retry_after, fastrand::f64());
                    if !self.pause(wait) {
                        return Err(t.give_up(interrupted(None)));
                    }
                }
            }
        };
        let (Some(path), Some(part)) = (t.path.take(), t.part.take()) else {
            return Err(Failure::new(
                "internal error: no file for a finished download",
            ));
        };
        drop(t.file.take());
        let path = self.commit(&t.name, &part, path).map_err(|e| Failure {
            left: Some(part.clone()),
            http_status: Some(status),
            ..Failure::new(format!("cannot rename {}: {e}", part.display()))
        })?;
        if t.meta_owned {
            resume::remove(&part);
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
        let key = resume::url_key(url);
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
                    let cannot =
                        |e: io::Error| Failure::new(format!("cannot open {}: {e}", part.display()));
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
                return Attempt::Fail(Failure::new(format!(
                    "cannot set up HTTP on this thread: {e}"
                )))
            }
            Err(transport::Error::Cancelled) => return Attempt::Fail(interrupted(None)),
            Err(transport::Error::Http(e)) => {
                let failure = Failure::new(describe_request_error(&e, self.timeout));
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
                return Attempt::Fail(Failure {
                    http_status: Some(code),
                    ..Failure::new("the server sent part of the file when asked for all of it")
                })
            }
            _ if status.is_success() => {
                // A whole body: anything in the part file is from before, start over.
                t.have = 0;
                t.total = content_length(&response);
                t.meta = Some(PartMeta {
                    key: resume::url_key(url),
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
                let reason = match target {
                    Some(to) if !matches!(to.scheme(), "http" | "https") => {
                        format!("redirect to unsupported scheme '{}'", to.scheme())
                    }
                    _ => format!("{} without a usable Location", http_failure().reason),
                };
                return Attempt::Fail(Failure {
                    http_status: Some(code),
                    ..Failure::new(reason)
                });
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
                return Attempt::Fail(Failure {
                    http_status: Some(code),
                    ..Failure::new(too_large(max, Some(total)))
                });
            }
        }
        if let Err(f) = self.prepare_part(&response, t) {
            return Attempt::Fail(Failure {
                http_status: Some(code),
                ..f
            });
        }
        on_started(t, on_start);
        let Some(file) = t.file.as_mut() else {
            return Attempt::Fail(Failure::new("internal error: no part file"));
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
                            resume::remove(part);
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
        let with_status = |f: Failure| Failure {
            http_status: Some(code),
            ..f
        };
        match streamed {
            Ok(()) => {}
            Err(StreamError::Cancelled) => return Attempt::Fail(with_status(interrupted(None))),
            Err(StreamError::Write(e)) => {
                // A local write error leaves nothing worth keeping (and may mean a full disk).
                let reason = match &t.part {
                    Some(part) => format!("cannot write {}: {e}", part.display()),
                    None => format!("cannot write: {e}"),
                };
                t.discard();
                return Attempt::Fail(with_status(Failure::new(reason)));
            }
            Err(StreamError::TooLarge) => {
                t.discard();
                return Attempt::Fail(with_status(Failure::new(too_large(
                    self.max_filesize.unwrap_or(0),
                    None,
                ))));
            }
            Err(StreamError::Read(e)) => {
                let what = describe_read_error(&e, self.timeout);
                let reason = match t.total {
                    Some(total) => format!("{what} after {} of {total} bytes", t.have),
                    None => format!("{what} after {} bytes", t.have),
                };
                return Attempt::Retry(with_status(Failure::new(reason)), None);
            }
        }
        if let Some(total) = t.total {
            if t.have != total {
                return Attempt::Retry(
                    with_status(Failure::new(format!(
                        "body has {} bytes but Content-Length said {total}",
                        t.have
                    ))),
                    None,
                );
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
                    .and_then(|v| crate::disposition::filename(v.as_bytes()))
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
            return Err(Failure::new("internal error: no part file"));
        };
        if t.have == 0 {
            if !fresh {
                file.set_len(0)
                    .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
                    .map_err(|e| Failure::new(format!("cannot write {}: {e}", part.display())))?;
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
            // Directories are made only when missing: for 2000 small files in one directory the
            // mkdir and stat of an unconditional create_dir_all were two of ~20 calls per file.
            let opened = match options.open(&part) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
                        Some(parent) => {
                            fs::create_dir_all(parent).map_err(|e| {
                                Failure::new(format!(
                                    "cannot create directory {}: {e}",
                                    parent.display()
                                ))
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
                Err(e) => {
                    return Err(Failure::new(format!(
                        "cannot create {}: {e}",
                        part.display()
                    )))
                }
            }
        }
        Err(Failure::new(format!("no free file name for {name}")))
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
                resume::remove(&part);
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

fn too_large(max: u64, total: Option<u64>) -> String {
    match total {
        Some(total) => format!(
            "the file is {total} bytes, more than --max-filesize {max} (raise it to download this)"
        ),
        None => {
            format!("the body grew past --max-filesize {max} bytes (raise it to download this)")
        }
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
                return Err(Failure::new(format!(
                    "refusing to write through the symbolic link {} (it could lead outside the \
                     output directory; name a folder that is not a link)",
                    at.display()
                )))
            }
            Ok(_) => {}
            // Missing from here on: create_dir_all makes real folders.
            Err(_) => break,
        }
    }
    Ok(())
}

fn interrupted(left: Option<PathBuf>) -> Failure {
    Failure {
        interrupted: true,
        left,
        ..Failure::new("interrupted")
    }
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
    resume::parse_content_range(response.headers().get(CONTENT_RANGE)?.to_str().ok()?)
}

/// Why streaming a body stopped.
pub enum StreamError {
    Cancelled,
    Read(io::Error),
    Write(io::Error),
    /// `written` would pass the limit.
    TooLarge,
}

/// A body that can say whether its next read is already in memory (see [`stream_body`]).
pub trait Pending {
    fn pending(&self) -> bool {
        false
    }
}

impl Pending for Response {
    fn pending(&self) -> bool {
        self.buffered() > 0
    }
}

/// The hot loop: one reused buffer, no allocation, no lock; one relaxed atomic add per chunk.
///
/// Reads are at most `chunk` bytes (`--chunk-size`), into `buf` one after another; what they
/// gathered is written to `out` in one call when `buf` has no room for another read or the body
/// has nothing more in memory, so writes are gathered only from data already received and no
/// byte is held back while the network is slow. Whatever way the loop ends, every byte read
/// has been handed to `out` (a bigger limit aside), and `written` counts what is in `out` (so a
/// resumed file starts above zero); it may not pass `limit`.
#[allow(clippy::too_many_arguments)]
pub fn stream_body(
    body: &mut (impl Read + Pending),
    out: &mut impl Write,
    buf: &mut [u8],
    chunk: usize,
    counter: &AtomicU64,
    cancel: &AtomicBool,
    written: &mut u64,
    limit: Option<u64>,
) -> Result<(), StreamError> {
    let limit = limit.unwrap_or(u64::MAX);
    let chunk = chunk.clamp(1, buf.len().max(1));
    let mut filled = 0;
    loop {
        if cancel.load(Ordering::Relaxed) {
            spill(out, buf, &mut filled, written)?;
            return Err(StreamError::Cancelled);
        }
        let end = (filled + chunk).min(buf.len());
        let n = match body.read(&mut buf[filled..end]) {
            Ok(0) => return spill(out, buf, &mut filled, written),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                spill(out, buf, &mut filled, written)?;
                return Err(StreamError::Read(e));
            }
        };
        if written.saturating_add((filled + n) as u64) > limit {
            return Err(StreamError::TooLarge);
        }
        filled += n;
        counter.fetch_add(n as u64, Ordering::Relaxed);
        if filled + chunk > buf.len() || !body.pending() {
            spill(out, buf, &mut filled, written)?;
        }
    }
}

/// Writes the `filled` bytes gathered in `buf`.
fn spill(
    out: &mut impl Write,
    buf: &[u8],
    filled: &mut usize,
    written: &mut u64,
) -> Result<(), StreamError> {
    if *filled > 0 {
        out.write_all(&buf[..*filled]).map_err(StreamError::Write)?;
        *written += *filled as u64;
        *filled = 0;
    }
    Ok(())
}

/// Every error in a source chain, outermost first.
fn chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |e| (*e).source())
}

/// The innermost message: the one that says what actually happened, without reqwest's
/// "error sending request for url (…)" wrapper (which would also repeat the URL).
fn root_message(err: &(dyn StdError + 'static)) -> String {
    chain(err).last().map(|e| e.to_string()).unwrap_or_default()
}

fn io_kind(err: &(dyn StdError + 'static)) -> Option<io::ErrorKind> {
    chain(err).find_map(|e| e.downcast_ref::<io::Error>().map(io::Error::kind))
}

fn seconds(d: Duration) -> String {
    crate::summary::format_duration(d)
}

/// One line for a request that got no usable response.
pub fn describe_request_error(err: &reqwest::Error, timeout: Duration) -> String {
    if err.is_redirect() {
        return root_message(err);
    }
    if err.is_connect() {
        if err.is_timeout() {
            return "could not connect: timed out".into();
        }
        return match io_kind(err) {
            Some(io::ErrorKind::ConnectionRefused) => "connection refused".into(),
            _ => format!("could not connect: {}", root_message(err)),
        };
    }
    if err.is_timeout() {
        return format!("no response within {}", seconds(timeout));
    }
    match io_kind(err) {
        Some(io::ErrorKind::ConnectionReset) => "connection reset before the response".into(),
        _ => root_message(err),
    }
}

/// One line for a body read that failed part-way.
fn describe_read_error(err: &io::Error, timeout: Duration) -> String {
    // reqwest wraps its timeout in an `io::Error` whose `source()` skips the wrapped error, so
    // the chain alone would miss it: look inside with `get_ref` too.
    let wrapped = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<reqwest::Error>());
    let timed_out = wrapped.is_some_and(reqwest::Error::is_timeout)
        || chain(err).any(|e| {
            e.downcast_ref::<reqwest::Error>()
                .is_some_and(reqwest::Error::is_timeout)
                || e.downcast_ref::<io::Error>()
                    .is_some_and(|e| e.kind() == io::ErrorKind::TimedOut)
        });
    if timed_out {
        return format!("timed out: no data for {}", seconds(timeout));
    }
    match io_kind(err) {
        Some(io::ErrorKind::ConnectionReset) => "connection reset".into(),
        _ => {
            let msg = root_message(err);
            if msg.contains("end of file before message length reached")
                || msg.contains("connection closed before message completed")
            {
                "connection closed early".into()
            } else {
                msg
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Chunks(Vec<io::Result<Vec<u8>>>);

    impl Pending for Chunks {}

    impl Read for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            match self.0.remove(0) {
                Ok(data) => {
                    buf[..data.len()].copy_from_slice(&data);
                    Ok(data.len())
                }
                Err(e) => Err(e),
            }
        }
    }

    #[test]
    fn stream_counts_and_stops_on_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = File::create(dir.path().join("x")).unwrap();
        let counter = AtomicU64::new(0);
        let cancel = AtomicBool::new(false);
        let mut bytes = 0;
        let mut body = Chunks(vec![
            Ok(vec![1; 10]),
            Err(io::Error::from(io::ErrorKind::Interrupted)),
            Ok(vec![2; 5]),
            Err(io::Error::from(io::ErrorKind::ConnectionReset)),
        ]);
        let r = stream_body(
            &mut body,
            &mut file,
            &mut [0; CHUNK],
            CHUNK,
            &counter,
            &cancel,
            &mut bytes,
            None,
        );
        assert!(matches!(r, Err(StreamError::Read(_))));
        assert_eq!(bytes, 15);
        assert_eq!(counter.load(Ordering::Relaxed), 15);
        assert_eq!(fs::read(dir.path().join("x")).unwrap().len(), 15);
    }

    /// Two reads in memory, then a "network wait" that checks what is on disk by then.
    struct Arrivals {
        path: PathBuf,
        step: usize,
        seen_on_disk: Option<u64>,
    }

    impl Pending for Arrivals {
        fn pending(&self) -> bool {
            self.step == 1
        }
    }

    impl Read for Arrivals {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.step += 1;
            match self.step {
                1 | 2 => {
                    buf[..100].fill(self.step as u8);
                    Ok(100)
                }
                3 => {
                    self.seen_on_disk = Some(fs::metadata(&self.path)?.len());
                    Ok(0)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn gathered_writes_reach_the_disk_before_any_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        let mut file = File::create(&path).unwrap();
        let mut body = Arrivals {
            path: path.clone(),
            step: 0,
            seen_on_disk: None,
        };
        let mut bytes = 0;
        let r = stream_body(
            &mut body,
            &mut file,
            &mut vec![0; WRITE_BEHIND],
            CHUNK,
            &AtomicU64::new(0),
            &AtomicBool::new(false),
            &mut bytes,
            None,
        );
        assert!(r.is_ok());
        assert_eq!(
            body.seen_on_disk,
            Some(200),
            "both reads written before waiting"
        );
    }

    #[test]
    fn stream_honours_cancel() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = File::create(dir.path().join("x")).unwrap();
        let cancel = AtomicBool::new(true);
        let mut bytes = 0;
        let r = stream_body(
            &mut Chunks(vec![Ok(vec![1])]),
            &mut file,
            &mut [0; CHUNK],
            CHUNK,
            &AtomicU64::new(0),
            &cancel,
            &mut bytes,
            None,
        );
        assert!(matches!(r, Err(StreamError::Cancelled)));
        assert_eq!(bytes, 0);
    }

    #[test]
    fn failure_lines_say_what_is_left() {
        let mut f = Failure::new("HTTP 404 Not Found");
        assert_eq!(f.describe(), "HTTP 404 Not Found; nothing saved");
        f.left = Some(PathBuf::from("o/x.part"));
        assert_eq!(
            f.describe(),
            "HTTP 404 Not Found; partial data kept in o/x.part"
        );
    }
}
