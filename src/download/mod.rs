//! One download, start to finish: GET, stream 8 KiB chunks into `NAME.part`, check the length,
//! and only then give the file its final name; with retries, resumption and limits around it.
//!
//! The promise kept here: a file under its final name is complete, nothing existing is replaced
//! unless the user asked, bytes on disk are never spliced from two versions of a file, and every
//! failure comes back as one readable reason.
//!
//! One job per file:
//! - this file: [`Settings`], [`Fetcher`] and the attempt/retry loop, `-c`'s search for an
//!   earlier file;
//! - `response`: what a response means for the bytes on disk (the one rule for joining them);
//! - `part`: the life of `NAME.part` and its sidecar (open, prepare, commit, discard);
//! - [`stream`]: the body-streaming hot loop;
//! - [`failure`]: why a download failed, as a kind and as one line;
//! - [`sidecar`]: the `NAME.part.meta` format and `Content-Range`;
//! - [`split`]: one file over several ranged connections (`--split N`);
//! - `verify`: the expected digest, hashed while streaming or read back once before the rename;
//! - [`disposition`]: names from `Content-Disposition`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT_RANGES, IF_MODIFIED_SINCE, IF_RANGE, RANGE};
use url::Url;

use self::part::Transfer;
use self::response::{Decision, OnDisk, ResponseFacts};
use self::sidecar::{ContentRange, PartMeta};
use self::split::Split;
use self::verify::Verify;
use crate::checksum;
use crate::fdlimit;
use crate::hosts::{Learned, Lease, Next};
use crate::input::Entry;
use crate::naming::{self, Namer};
use crate::ratelimit::{RateLimit, Throttled};
use crate::redact;
use crate::retry::Policy;
use crate::safefs;
use crate::sumfile::{self, Expected};
use crate::trace::{self, Exchange, Phases};
use crate::transport::{self, Client, Response};

pub mod disposition;
pub mod failure;
pub(crate) mod part;
pub(crate) mod response;
pub mod sidecar;
pub mod split;
pub mod stream;
pub(crate) mod verify;

pub use self::failure::{describe_request_error, Failure, FailureKind, Reason};
pub use self::stream::{stream_body, StreamError};

use self::failure::describe_read_error;

/// The default streaming unit (`--chunk-size`): one reusable buffer of this size per download.
pub const CHUNK: usize = 8 * 1024;

/// Bodies up to this size (by Content-Length) get their resume sidecar only when they have to
/// wait on the network (before that first wait, see [`stream_body`]) or are left unfinished,
/// not before the first byte: for many small files, creating, writing and removing a sidecar for
/// every file is a large share of the wall time (measured by `benches/`, see README
/// "Performance"), and a small body that arrives in one go never needs one.
///
/// The window that remains: from creating the part until its first body bytes are read (the
/// first wait is only recognised after them). With the body in the same packets as the headers,
/// as small replies usually are, that is microseconds; a server that sends the headers and then
/// waits widens it. A process killed outright (SIGKILL, power cut) in that window leaves an
/// empty `NAME.part` with no sidecar: nothing is lost, but `-c` cannot tell it is its own, so it
/// leaves it alone and saves the file as `NAME.1`.
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

/// What the user asked of every download, resolved once from the command line: each setting
/// has this one home, and the client is configured from the same values.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `--overwrite`: replace existing files (the namer reserves names accordingly).
    pub overwrite: bool,
    /// No data for this long fails a request; only for messages here (the client enforces it).
    pub timeout: Duration,
    pub retry: Policy,
    /// `-c`: resume `.part` files of earlier runs, skip files already complete.
    pub resume: bool,
    /// `--max-filesize`: refuse bodies larger than this.
    pub max_filesize: Option<u64>,
    /// `--content-disposition`: let the server's proposed name (made safe) choose the file name.
    pub content_disposition: bool,
    /// `--split N`: connections per file; 1 means no splitting.
    pub split: usize,
    /// Bytes per read of the body (`--chunk-size`).
    pub chunk: usize,
    /// `--checksums FILE`, read and checked before any download.
    pub checksums: Option<std::sync::Arc<crate::sumfile::SumFile>>,
    /// `--require-checksum`: a file without an expected digest fails instead of being warned about.
    pub require_checksum: bool,
    /// `-N`: ask about existing files with `If-Modified-Since`, replace them only when newer,
    /// and give saved files the server's `Last-Modified` time.
    pub timestamping: bool,
    /// `--skip-existing`: an existing final file is trusted without asking the server.
    pub skip_existing: bool,
    /// `--per-host N`: most downloads to one host at once; 0 means as many as `-j`.
    pub per_host: usize,
    /// `--limit-rate`: the whole run's receiving rate, bytes per second.
    pub limit_rate: Option<u64>,
    /// Keep every request and response (`--har`, `--timeline`): costs an allocation or two per
    /// request, so only when asked.
    pub trace: bool,
}

/// What every download of a run shares: the settings, and the run's handles.
#[derive(Clone, Copy)]
pub struct Fetcher<'a> {
    pub settings: &'a Settings,
    pub client: &'a Client,
    pub namer: &'a Namer,
    pub cancel: &'a AtomicBool,
    /// What became of `--split` (see [`split`]).
    pub split: &'a Split,
    /// `--limit-rate`, shared by every download of the run.
    pub(crate) rate: Option<&'a RateLimit>,
}

impl<'a> Fetcher<'a> {
    pub fn new(
        settings: &'a Settings,
        client: &'a Client,
        namer: &'a Namer,
        cancel: &'a AtomicBool,
        split: &'a Split,
        rate: Option<&'a RateLimit>,
    ) -> Fetcher<'a> {
        Fetcher {
            settings,
            client,
            namer,
            cancel,
            split,
            rate,
        }
    }
}

/// A finished download, saved under `path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    pub path: PathBuf,
    /// 0 when `skipped` (only a range probe was made; nothing was downloaded).
    pub http_status: u16,
    /// `-c` found the file already complete and downloaded nothing.
    pub skipped: bool,
    /// `-N`: the server said the file on disk is current (304); nothing was downloaded.
    pub unchanged: bool,
    /// The digest the file was verified against (`sha-256=HEX`), when one was expected.
    pub checksum: Option<String>,
    /// The source that served the bytes (the URL or one of its mirrors), credentials removed.
    pub source: Option<String>,
}

impl Saved {
    fn at(path: PathBuf, http_status: u16) -> Saved {
        Saved {
            path,
            http_status,
            skipped: false,
            unchanged: false,
            checksum: None,
            source: None,
        }
    }
}

/// Something worth telling about a download that fails nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// `--checksums` has no entry for the file: saved unverified (the text says which name).
    NoChecksum(String),
    /// `-N`: the server sent no `Last-Modified`, so whether the file changed cannot be told.
    NoLastModified,
    /// `-c` (or a retry) asked for the rest and the server, without range support, sent the
    /// whole file: the bytes already there were downloaded again.
    RangesIgnored,
}

/// What one download came to; `bytes` counts body bytes received, whatever the outcome.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub result: Result<Saved, Failure>,
    pub bytes: u64,
    pub elapsed: Duration,
    /// Attempts after the first.
    pub retries: u32,
    pub notes: Vec<Note>,
    /// When each phase began and ended (the pool fills in the queueing).
    pub phases: Phases,
    /// Every request made, retries and `--split` pieces included (only with `trace`).
    pub exchanges: Vec<Exchange>,
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

/// What a running download tells its worker, for the progress display.
pub enum Notice<'a> {
    /// The response headers are accepted.
    Started(Started<'a>),
    /// An attempt failed in a way worth another try, which starts after `wait`.
    Retrying { wait: Duration, reason: &'a Reason },
}

/// How one attempt ended.
enum Attempt {
    /// The part file holds the whole body.
    Done(u16),
    /// Worth another try, after the server's `Retry-After` if it gave one.
    Retry(Failure, Option<Duration>),
    /// The host could not be reached (or its name resolved): the host decides whether and when
    /// this URL tries again (see [`crate::hosts`]).
    Host(Failure, Learned),
    /// The partial bytes turned out useless (a range that does not fit them): start over from
    /// zero at once. Not a failure of the server, so it costs no retry.
    Restart,
    Fail(Failure),
}

/// What `-c` can tell about a file under the final name.
enum Verdict {
    /// The server says the file is exactly this long.
    Complete,
    /// The server's file is provably another one (another size, or bytes past the end): not
    /// ours to judge, the next name is tried.
    NotThis,
    /// The answer could not tell either way (an error, a 5xx, an answer with no size).
    Unknown(Untold),
}

/// Why an answer could not tell a file's size, and whether asking again may.
struct Untold {
    kind: FailureKind,
    status: Option<u16>,
    retry: bool,
    /// The server's `Retry-After`.
    after: Option<Duration>,
}

impl Untold {
    /// The answer `facts` as a reason: a retryable status (5xx, 429) is worth asking again.
    fn of(facts: &ResponseFacts) -> Untold {
        let kind = match facts.status {
            200..=299 => {
                FailureKind::Other(format!("HTTP {} without a length to compare", facts.status))
            }
            status => FailureKind::Http {
                status,
                canonical: facts.canonical,
            },
        };
        Untold {
            kind,
            status: Some(facts.status),
            retry: crate::retry::retryable_status(facts.status),
            after: facts.retry_after,
        }
    }
}

/// What `-c` found on disk for a URL.
enum Found {
    Fresh,
    /// A regular file of this length under the final name: complete only if the server says so.
    Existing(u64),
    Part(PartMeta, u64),
    /// An empty sidecar (an older fetchpar's, cut short by a full disk) beside an empty or no
    /// part: nothing anyone could lose, so the name is taken back rather than passed over.
    Leftover,
}

impl Fetcher<'_> {
    /// Downloads `url`, into `output` (a checked relative path from a list line) or else a name
    /// taken from the URL. `on_start` hears when the response headers are accepted and before
    /// each retry; `counter` is bumped as body bytes arrive (the progress display reads both).
    pub(crate) fn fetch(
        &self,
        entry: &Entry,
        counter: &AtomicU64,
        on_start: &mut dyn FnMut(Notice<'_>),
        lease: &mut Lease<'_>,
    ) -> Outcome {
        let began = Instant::now();
        let mut run = Run {
            counter,
            on_start,
            lease,
            bytes: 0,
            retries: 0,
            notes: Vec::new(),
            phases: Phases {
                began: Some(began),
                ..Phases::default()
            },
            exchanges: Vec::new(),
        };
        let result = self.fetch_inner(entry, &mut run);
        run.phases.ended = Some(Instant::now());
        Outcome {
            result,
            bytes: run.bytes,
            elapsed: began.elapsed(),
            retries: run.retries,
            notes: run.notes,
            phases: run.phases,
            exchanges: run.exchanges,
        }
    }

    fn fetch_inner(&self, entry: &Entry, run: &mut Run<'_, '_>) -> Result<Saved, Failure> {
        let url = &entry.url;
        // An explicit output goes through the namer too: it never replaces an existing file
        // and two lines naming the same path get `.1`, like any other clash.
        let output = entry.output.as_deref();
        let name = output.map_or_else(|| naming::from_url(url), str::to_string);
        let mut t = Transfer::new(name, output.is_some(), url);
        let sums = self.settings.checksums.as_deref();
        let require = self.settings.require_checksum;
        match sumfile::expected(entry.checksum.as_ref(), sums, &t.name, require) {
            Expected::Required(reason) => return Err(Failure::new(FailureKind::Other(reason))),
            Expected::Missing(note) => run.notes.push(Note::NoChecksum(note)),
            Expected::Known(sum) => {
                t.verify = Some(Verify::new(sum.clone()));
                t.proof = true;
            }
            Expected::Unchecked => {}
        }
        if let Some(saved) = self.look_on_disk(url, &mut t, run)? {
            return Ok(saved);
        }
        let sources: Vec<&Url> = std::iter::once(url).chain(&entry.mirrors).collect();
        let mut at = 0;
        let mut retried_mismatch = false;
        loop {
            let source = sources[at];
            let mut tries = 0;
            let done = self.attempts(source, &mut t, run, &mut tries);
            run.retries += tries;
            if std::mem::take(&mut t.ranges_ignored) {
                run.notes.push(Note::RangesIgnored);
            }
            let failure = match done.and_then(|status| self.verified(&mut t, status)) {
                Ok(status) => return self.finish(t, status, source, &mut run.notes),
                Err(failure) => failure,
            };
            let mismatch = matches!(failure.reason.kind(), FailureKind::ChecksumMismatch(_));
            let next = at + 1 < sources.len();
            if mismatch && !retried_mismatch {
                // Its bytes are wrong, not merely unfinished: once more from zero, from the
                // next source if there is one.
                retried_mismatch = true;
                run.retries += 1;
                at = if next { at + 1 } else { at };
            } else if next && !mismatch && moves_on(failure.reason.kind()) {
                at += 1;
            } else {
                return Err(self.out_of_files(&mut t, failure));
            }
        }
    }

    /// Gives up on `t`. Running out of file descriptors before any file was opened is not the
    /// URL's failure: the pool tries it again later, so its name goes back too. Once a part
    /// exists it is an ordinary failure (the part, with its bytes, is the user's now).
    fn out_of_files(&self, t: &mut Transfer, failure: Failure) -> Failure {
        let FailureKind::OutOfFiles(why) = failure.reason.kind() else {
            return t.give_up(failure);
        };
        if t.part.is_some() || t.have > 0 {
            return t.give_up(Failure::new(FailureKind::Other(format!(
                "out of open files: {why}"
            ))));
        }
        if let Some(path) = t.path.take() {
            self.namer.release(&path);
        }
        failure
    }

    /// What is on disk before any request: `-c`'s earlier file or part, `--skip-existing`'s
    /// trusted file, `-N`'s file to ask about. `Some`: nothing to download.
    fn look_on_disk(
        &self,
        url: &Url,
        t: &mut Transfer,
        run: &mut Run<'_, '_>,
    ) -> Result<Option<Saved>, Failure> {
        let skipped = |path: PathBuf, checksum: Option<String>| Saved {
            skipped: true,
            checksum,
            ..Saved::at(path, 0)
        };
        if self.settings.resume {
            return Ok(self
                .find_earlier(url, t, run)?
                .map(|(path, sum)| skipped(path, sum)));
        }
        let target = self.namer.dir().join(&t.name);
        let existing = safefs::regular_len(&target).is_some();
        if existing && self.settings.skip_existing {
            return Ok(Some(skipped(target, None)));
        }
        if existing && self.settings.timestamping {
            self.ask_about(t, &target);
        }
        Ok(None)
    }

    /// `-N`: reserves the existing file's own name for its replacement and notes its time for
    /// `If-Modified-Since`, unless its `.part` or sidecar belongs to something else (then the
    /// download goes to a free name as usual).
    fn ask_about(&self, t: &mut Transfer, target: &Path) {
        let (path, since) = self.namer.reserve_by(&t.name, |path| {
            let [_, part, meta] = naming::family(path);
            if safefs::occupied(&part) || safefs::occupied(&meta) {
                None
            } else if safefs::occupied(path) {
                // Only the file under the name itself is asked about (and may be replaced):
                // never a clash variant, a link or a folder.
                let ours = path == target && safefs::regular_len(path).is_some();
                ours.then(|| modified(path))
            } else {
                Some(None)
            }
        });
        t.replace = since.is_some();
        t.since = since;
        t.path = Some(path);
    }

    /// A complete body checked against the expected digest, if any. A mismatch removes the
    /// part and its sidecar: its bytes are wrong, not resumable.
    fn verified(&self, t: &mut Transfer, status: u16) -> Result<u16, Failure> {
        let (Some(v), Some(part)) = (t.verify.as_mut(), t.part.as_ref()) else {
            return Ok(status);
        };
        match v.check(part, t.have) {
            Ok(Ok(())) => Ok(status),
            Ok(Err(mismatch)) => {
                t.discard();
                let kind = FailureKind::ChecksumMismatch(mismatch.to_string());
                Err(Failure::new(kind).with_status(status))
            }
            Err(e) => Err(Failure::new(FailureKind::disk("read", part, e)).with_status(status)),
        }
    }

    /// Attempts until one completes, fails for good, or the retries run out; returns the
    /// status of the response that completed it.
    fn attempts(
        &self,
        url: &Url,
        t: &mut Transfer,
        run: &mut Run<'_, '_>,
        retries: &mut u32,
    ) -> Result<u16, Failure> {
        // Host politeness applies to the URL's own host, not to a mirror's.
        let polite = run.lease.covers(url);
        // Attempts this URL made against an unreachable host: the host's shared budget bounds
        // them, this bounds a URL whose host keeps recovering just before its turn.
        let mut host_tries = 0;
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(Failure::interrupted(None));
            }
            if polite {
                match run.lease.acquire(self.cancel) {
                    Ok(true) => {}
                    Ok(false) => return Err(Failure::interrupted(None)),
                    Err(line) => return Err(Failure::new(FailureKind::Host(line))),
                }
            }
            let attempt = self.traced_attempt(url, t, run, polite);
            let (mut failure, retry_after) = match attempt {
                Attempt::Done(status) => return Ok(status),
                Attempt::Restart => continue,
                Attempt::Fail(failure) => return Err(failure),
                Attempt::Host(failure, learned) if polite => {
                    host_tries += 1;
                    match run.lease.learn(learned) {
                        Next::Fail(line) => return Err(Failure::new(FailureKind::Host(line))),
                        Next::Again if host_tries <= self.settings.retry.retries => {
                            // The host's pause is the wait: the next `acquire` sits it out.
                            run.lease.release();
                            continue;
                        }
                        Next::Again | Next::AsUsual => (failure, None),
                    }
                }
                Attempt::Host(failure, _) => (failure, None),
                Attempt::Retry(failure, retry_after) => {
                    if let (true, Some(wait)) = (polite, retry_after) {
                        run.lease.learn(Learned::RetryAfter(wait));
                    }
                    (failure, retry_after)
                }
            };
            if *retries >= self.settings.retry.retries {
                failure.reason.after_retries(*retries);
                return Err(failure);
            }
            *retries += 1;
            let wait = self
                .settings
                .retry
                .wait(*retries, retry_after, fastrand::f64());
            (run.on_start)(Notice::Retrying {
                wait,
                reason: &failure.reason,
            });
            // Others may use the host while this one waits.
            run.lease.release();
            if !self.pause(wait) {
                return Err(Failure::interrupted(None));
            }
        }
    }

    /// One attempt, and with `trace` its exchanges: the request, and any `--split` pieces.
    fn traced_attempt(
        &self,
        url: &Url,
        t: &mut Transfer,
        run: &mut Run<'_, '_>,
        polite: bool,
    ) -> Attempt {
        let before = run.bytes;
        let lease = polite.then_some(&mut *run.lease);
        let (bytes, phases) = (&mut run.bytes, &mut run.phases);
        let attempt = self.attempt(url, t, run.counter, run.on_start, bytes, lease, phases);
        if !self.settings.trace {
            return attempt;
        }
        let head = std::mem::take(&mut t.head);
        let pieces = t.pieces_log.take().and_then(|log| log.into_inner().ok());
        let piece_bytes: u64 = pieces.iter().flatten().map(|e| e.bytes).sum();
        let phases = &run.phases;
        run.exchanges.push(Exchange {
            url: redact::url(url),
            sent: phases.sent,
            connect: phases.connect,
            headers: phases.headers,
            end: phases.body_end.or(phases.sent),
            bytes: (run.bytes - before).saturating_sub(piece_bytes),
            piece: pieces.as_ref().map(|_| 0),
            error: match &attempt {
                Attempt::Retry(f, _) | Attempt::Fail(f) => Some(f.reason.to_string()),
                _ => None,
            },
            ..head
        });
        run.exchanges.extend(pieces.into_iter().flatten());
        attempt
    }

    /// Gives the complete part its final name (`-N`: the file was current, nothing to do).
    fn finish(
        &self,
        mut t: Transfer,
        status: u16,
        source: &Url,
        notes: &mut Vec<Note>,
    ) -> Result<Saved, Failure> {
        if status == 304 && t.since.is_some() {
            if let Some(path) = t.path.take() {
                return Ok(Saved {
                    unchanged: true,
                    ..Saved::at(path, status)
                });
            }
        }
        if self.settings.timestamping {
            self.stamp(&t, notes);
        }
        let (Some(path), Some(part)) = (t.path.take(), t.part.take()) else {
            return Err(Failure::new(FailureKind::Internal(
                "no file for a finished download",
            )));
        };
        drop(t.file.take());
        let path = match self.commit(&t.name, &part, path, t.replace) {
            Ok(path) => path,
            Err(e) => {
                let failure = Failure::new(FailureKind::disk("rename", &part, e));
                // The part is reported as kept: with the sidecar a small body does not have yet,
                // so that `-c` can take it up.
                t.part = Some(part);
                return Err(t.give_up(failure.with_status(status)));
            }
        };
        if t.meta_owned {
            sidecar::remove(&part);
        }
        Ok(Saved {
            checksum: t.verify.map(|v| v.expected.to_string()),
            source: Some(redact::url(source)),
            ..Saved::at(path, status)
        })
    }

    /// `-N`: gives the part the server's `Last-Modified` as its time (the rename keeps it), or
    /// notes that there was none to give.
    fn stamp(&self, t: &Transfer, notes: &mut Vec<Note>) {
        let date = t.meta.as_ref().and_then(|m| m.last_modified.as_deref());
        let Some(when) = date.and_then(|d| httpdate::parse_http_date(d).ok()) else {
            notes.push(Note::NoLastModified);
            return;
        };
        if let Some(file) = &t.file {
            // Without the time the file is still complete; the next -N run just asks again.
            let _ = file.set_modified(when);
        }
    }

    /// `-c`: finds this URL's file from an earlier run. Returns the path of a final file that is
    /// already there and complete (nothing to do), or sets up `t` to resume a `.part` or start
    /// fresh.
    ///
    /// Only evidence counts: a part file is resumed only with a sidecar naming this very URL,
    /// and a final file is taken as complete only when the server says the file is exactly that
    /// long (see [`Fetcher::confirms_complete`]), or by its digest when one is expected.
    /// Anything else under the name is not ours to judge: it is left alone and the next name
    /// is tried; only an empty sidecar beside an empty or no part, which holds nothing to
    /// lose, is taken back.
    fn find_earlier(
        &self,
        url: &Url,
        t: &mut Transfer,
        run: &mut Run<'_, '_>,
    ) -> Result<Option<(PathBuf, Option<String>)>, Failure> {
        loop {
            let (path, found) = self.namer.reserve_by(&t.name, |path| {
                let [_, part, meta] = naming::family(path);
                if safefs::occupied(&part) || safefs::occupied(&meta) {
                    if empty_leftover(&part, &meta) {
                        return Some(Found::Leftover);
                    }
                    // Only our own part file for this same URL: never splice another URL's bytes.
                    let meta = PartMeta::load(&part).filter(|m| m.is_for(url))?;
                    let have = safefs::regular_len(&part)?;
                    Some(Found::Part(meta, have))
                } else if safefs::occupied(path) {
                    safefs::regular_len(path).map(Found::Existing)
                } else {
                    Some(Found::Fresh)
                }
            });
            match found {
                Found::Existing(_) if self.settings.skip_existing => return Ok(Some((path, None))),
                Found::Existing(_) if self.settings.timestamping => {
                    t.since = modified(&path);
                    t.replace = t.since.is_some();
                    t.path = Some(path);
                    return Ok(None);
                }
                Found::Existing(len) => {
                    if let Some(sum) = self.judge_existing(url, &path, len, t, run)? {
                        return Ok(Some((path, sum)));
                    }
                    // Not ours, or not complete: leave it untouched, look at the next name.
                }
                Found::Fresh => {
                    t.path = Some(path);
                    return Ok(None);
                }
                Found::Leftover => {
                    let part = naming::part_path(&path);
                    let _ = std::fs::remove_file(sidecar::meta_path(&part));
                    if safefs::occupied(&part) {
                        let _ = std::fs::remove_file(&part);
                    }
                    t.path = Some(path);
                    return Ok(None);
                }
                Found::Part(mut meta, have) => {
                    // An older format keyed on a secret: take it off the disk now. If that
                    // fails, the old sidecar still matches next time; nothing is lost.
                    let _ = meta.upgrade(url, &naming::part_path(&path));
                    t.reopen(path, meta, have)?;
                    return Ok(None);
                }
            }
        }
    }

    /// `-c`: whether the file under `path` is this download, complete: by its digest when one
    /// is expected (the server is not asked), else by [`Fetcher::confirms_complete`], asked
    /// again under the retry policy while the answer cannot tell. `Ok(Some(digest checked, if
    /// any))` when it is complete, `Ok(None)` when it is provably another file; an answer that
    /// still cannot tell fails the URL and leaves the file alone (never a second copy of it).
    fn judge_existing(
        &self,
        url: &Url,
        path: &Path,
        len: u64,
        t: &Transfer,
        run: &mut Run<'_, '_>,
    ) -> Result<Option<Option<String>>, Failure> {
        if let Some(v) = &t.verify {
            let complete = matches!(checksum::verify_file(path, &v.expected), Ok(Ok(())));
            return Ok(complete.then(|| Some(v.expected.to_string())));
        }
        let mut tries = 0;
        loop {
            match run.lease.acquire(self.cancel) {
                Ok(true) => {}
                Ok(false) => return Err(Failure::interrupted(None)),
                Err(line) => return Err(Failure::new(FailureKind::Host(line))),
            }
            let untold = match self.confirms_complete(url, len) {
                Verdict::Complete => return Ok(Some(None)),
                Verdict::NotThis => return Ok(None),
                Verdict::Unknown(untold) => untold,
            };
            if untold.kind == FailureKind::Interrupted {
                return Err(Failure::interrupted(None));
            }
            let kind = FailureKind::Undecided {
                path: path.to_path_buf(),
                why: untold.kind.to_string(),
            };
            let mut failure = Failure::new(kind);
            if let Some(status) = untold.status {
                failure = failure.with_status(status);
            }
            if !untold.retry || tries >= self.settings.retry.retries {
                failure.reason.after_retries(tries);
                return Err(failure);
            }
            tries += 1;
            run.retries += 1;
            let wait = self
                .settings
                .retry
                .wait(tries, untold.after, fastrand::f64());
            (run.on_start)(Notice::Retrying {
                wait,
                reason: &failure.reason,
            });
            // A host's Retry-After holds for all its URLs; others may use it while this waits.
            if let Some(after) = untold.after {
                run.lease.learn(Learned::RetryAfter(after));
            }
            run.lease.release();
            if !self.pause(wait) {
                return Err(Failure::interrupted(None));
            }
        }
    }

    /// Whether the server confirms that `len` bytes are the whole file: asked for the bytes
    /// from `len` on, it answers 416 with `Content-Range: bytes */len` (or a bare 416, and then
    /// its size, learnt another way, is `len`); or, ignoring ranges, a 200 of exactly `len`
    /// bytes, whose body is dropped unread (the length is all a file without a sidecar can be
    /// compared by, as `wget -c` does). (A HEAD would do on some servers, but many answer it
    /// differently from a GET.) Only a size that differs proves the file is another one; an
    /// error, a 5xx or an answer without a size cannot tell (see [`Verdict`]).
    fn confirms_complete(&self, url: &Url, len: u64) -> Verdict {
        let response = match self
            .client
            .get(url.clone())
            .header(RANGE, format!("bytes={len}-"))
            .send()
        {
            Ok(response) => response,
            Err(e) => return Verdict::Unknown(self.untold(e)),
        };
        let facts = ResponseFacts::of(&response, url);
        drop(response);
        let disk = OnDisk {
            asked_from: Some(len),
            ..OnDisk::default()
        };
        let untold = Untold::of(&facts);
        let whole = facts.status == 200;
        let decision = match self.sized(url, facts, disk) {
            Ok(decision) => decision,
            Err(untold) => return Verdict::Unknown(untold),
        };
        match decision {
            Decision::Complete { .. } => Verdict::Complete,
            Decision::Whole { total: Some(total) } if whole => match total == len {
                true => Verdict::Complete,
                false => Verdict::NotThis,
            },
            // Bytes past `len`, or a size that differs: the server's file is another one.
            Decision::Append { .. } | Decision::StartOver => Verdict::NotThis,
            Decision::Retry(kind, after) => Verdict::Unknown(Untold {
                kind,
                after,
                retry: true,
                ..untold
            }),
            Decision::Fail(kind) => Verdict::Unknown(Untold { kind, ..untold }),
            Decision::Whole { .. } | Decision::AskSize => Verdict::Unknown(untold),
        }
    }

    /// [`response::classify`], learning the file's size when a bare 416 leaves it out.
    fn classify_sized(&self, url: &Url, facts: ResponseFacts, disk: OnDisk<'_>) -> Decision {
        match self.sized(url, facts, disk) {
            Ok(decision) => decision,
            Err(untold) if untold.kind == FailureKind::Interrupted => {
                Decision::Fail(FailureKind::Interrupted)
            }
            // A size probe that failed for a moment is asked again; the bytes stay.
            Err(untold) if untold.retry => Decision::Retry(untold.kind, untold.after),
            Err(_) => Decision::AskSize,
        }
    }

    /// [`response::classify`]; after a bare 416, again with the size [`Fetcher::probe_size`]
    /// learns, or why it could not.
    fn sized(&self, url: &Url, facts: ResponseFacts, disk: OnDisk<'_>) -> Result<Decision, Untold> {
        let decision = response::classify(&facts, disk);
        if decision != Decision::AskSize {
            return Ok(decision);
        }
        let total = self.probe_size(url)?;
        let facts = ResponseFacts {
            content_range: Some(ContentRange::Unsatisfied { total }),
            ..facts
        };
        Ok(response::classify(&facts, disk))
    }

    /// The file's size without downloading it: the total in the answer to `Range: bytes=0-0`,
    /// or the `Content-Length` of a 200 from a server that ignores ranges (its body is dropped
    /// unread).
    fn probe_size(&self, url: &Url) -> Result<u64, Untold> {
        let response = self
            .client
            .get(url.clone())
            .header(RANGE, "bytes=0-0")
            .send()
            .map_err(|e| self.untold(e))?;
        let facts = ResponseFacts::of(&response, url);
        drop(response);
        response::size_of(&facts).ok_or_else(|| Untold::of(&facts))
    }

    /// Why a request that got no response could not tell anything, and whether to ask again.
    fn untold(&self, e: transport::Error) -> Untold {
        let (failure, retry, after) = match self.no_response(e) {
            Attempt::Retry(failure, after) => (failure, true, after),
            Attempt::Fail(failure) => (failure, false, None),
            _ => (
                Failure::new(FailureKind::Internal("no response")),
                false,
                None,
            ),
        };
        Untold {
            kind: failure.reason.kind().clone(),
            status: None,
            retry,
            after,
        }
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

    /// [`Fetcher::request`], with `If-Modified-Since` for `-N`'s question about a file on disk.
    fn request_since(
        &self,
        url: &Url,
        from: u64,
        if_range: Option<&str>,
        since: Option<std::time::SystemTime>,
    ) -> Result<Response, transport::Error> {
        let Some(since) = since else {
            return self.request(url, from, if_range);
        };
        self.client
            .get(url.clone())
            .header(IF_MODIFIED_SINCE, httpdate::fmt_http_date(since))
            .send()
    }

    /// One request and as much of the body as it gives.
    #[allow(clippy::too_many_arguments)]
    fn attempt(
        &self,
        url: &Url,
        t: &mut Transfer,
        counter: &AtomicU64,
        on_start: &mut dyn FnMut(Notice<'_>),
        bytes: &mut u64,
        lease: Option<&mut Lease<'_>>,
        phases: &mut Phases,
    ) -> Attempt {
        if t.sparse() {
            return self.attempt_sparse(url, t, counter, on_start, bytes);
        }
        // Without a validator we cannot tell whether the server's file changed: start over,
        // unless an expected digest will prove the joined bytes (then no If-Range either: a
        // mirror's validators are its own).
        let proof = t.proof;
        let resuming =
            t.have > 0 && (proof || t.meta.as_ref().is_some_and(PartMeta::has_validator));
        let from = if resuming { t.have } else { 0 };
        let if_range = match proof {
            true => None,
            false => t.meta.as_ref().and_then(PartMeta::if_range),
        };
        let since = t.since.filter(|_| from == 0);
        // Only the attempt that brings the body counts: clear what an earlier one left.
        *phases = Phases {
            sent: Some(Instant::now()),
            ..Phases::default()
        }
        .keep_queueing(phases);
        if self.settings.trace {
            t.head = Exchange::default();
            if from > 0 {
                t.head
                    .request_headers
                    .push(("Range".into(), format!("bytes={from}-")));
            }
            if let (true, Some(validator)) = (from > 0, if_range) {
                t.head
                    .request_headers
                    .push(("If-Range".into(), validator.to_string()));
            }
        }
        let response = match self.request_since(url, from, if_range, since) {
            Ok(response) => response,
            Err(e) => return self.no_response(e),
        };
        phases.headers = Some(Instant::now());
        phases.body_end = phases.headers;
        if self.settings.trace {
            t.head.status = Some(response.status().as_u16());
            t.head.response_headers = trace::headers_of(response.headers());
            if self.split.pieces > 1 {
                t.pieces_log = Some(std::sync::Mutex::new(Vec::new()));
            }
        }
        let code = response.status().as_u16();
        // Told before the body, so that the host's window grows at once (see `crate::hosts`).
        if let Some(lease) = lease {
            lease.learn(Learned::Response {
                kept_open: kept_open(&response),
            });
        }
        if code == 304 && since.is_some() {
            return Attempt::Done(code);
        }
        // The proxy's answer, not the server's: the same credentials fail the same way again.
        // The proxy is the last hop's (a redirect may lead past NO_PROXY or out of it).
        if code == 407 {
            if let Some(words) = crate::proxy::rejected(response.url(), self.client.proxies()) {
                return Attempt::Fail(Failure::new(FailureKind::Request(words)).with_status(code));
            }
        }
        let facts = ResponseFacts::of(&response, url);
        // Without `Accept-Ranges: bytes` a whole file for a range is the server's limit, not a
        // changed file (a failed If-Range still announces ranges).
        let no_ranges = response
            .headers()
            .get(ACCEPT_RANGES)
            .is_none_or(|v| !v.as_bytes().eq_ignore_ascii_case(b"bytes"));
        let meta = t.meta.clone();
        let disk = OnDisk {
            asked_from: resuming.then_some(t.have),
            meta: meta.as_ref(),
            proof,
        };
        match self.classify_sized(url, facts.clone(), disk) {
            Decision::Append { total } => t.total = total,
            Decision::Whole { total } => {
                t.ranges_ignored |= resuming && no_ranges;
                t.have = 0;
                t.earlier = 0;
                t.total = total;
                t.meta = Some(PartMeta {
                    url: t.shown_url.clone(),
                    key: t.key.clone(),
                    total,
                    ..facts.validators
                });
            }
            Decision::StartOver => {
                return start_over(
                    t,
                    "a resumed range did not match the bytes already received",
                )
            }
            // classify_sized has asked for the size already: no answer is no confirmation.
            Decision::AskSize => {
                return start_over(t, "the server did not say how long the file is")
            }
            Decision::Complete { total } => {
                t.total = Some(total);
                on_started(t, on_start);
                return Attempt::Done(code);
            }
            Decision::Fail(kind) => return Attempt::Fail(Failure::new(kind).with_status(code)),
            Decision::Retry(kind, after) => {
                return Attempt::Retry(Failure::new(kind).with_status(code), after)
            }
        }
        let before = t.have;
        let received = self.receive(url, t, response, from, counter, on_start);
        phases.body_end = Some(Instant::now());
        *bytes += t.have - before;
        match received {
            Ok(streamed) => self.settle(t, streamed, code),
            Err(failure) => Attempt::Fail(failure.with_status(code)),
        }
    }

    /// A request that got no response: worth another try unless it would go the same way.
    fn no_response(&self, e: transport::Error) -> Attempt {
        if fdlimit::exhausted(&e) {
            return Attempt::Fail(Failure::new(FailureKind::OutOfFiles(e.to_string())));
        }
        match e {
            // The transport gives up its wait for headers when the run is cancelled.
            transport::Error::Cancelled => Attempt::Fail(Failure::interrupted(None)),
            transport::Error::Runtime(e) => {
                Attempt::Fail(Failure::new(FailureKind::Runtime(e.to_string())))
            }
            // A loop or too many redirects: the next try would go the same way.
            transport::Error::Redirect(why) => {
                Attempt::Fail(Failure::new(FailureKind::Request(why)))
            }
            transport::Error::Http(e) => {
                let failure = Failure::new(FailureKind::Request(describe_request_error(
                    &e,
                    self.settings.timeout,
                    self.client.proxies(),
                )));
                // A bad redirect or certificate will be just as bad next time.
                if e.is_redirect() || e.is_builder() || crate::tls::describe(&e).is_some() {
                    Attempt::Fail(failure)
                } else if let Some(learned) = failure::host_learned(&e, &failure.reason) {
                    Attempt::Host(failure, learned)
                } else {
                    Attempt::Retry(failure, None)
                }
            }
        }
    }

    /// Takes an accepted response's body into the part file, over one connection or (a whole
    /// body from the start, `--split`) several. `Err` is a failure before any byte is read.
    fn receive(
        &self,
        url: &Url,
        t: &mut Transfer,
        response: Response,
        from: u64,
        counter: &AtomicU64,
        on_start: &mut dyn FnMut(Notice<'_>),
    ) -> Result<Result<(), StreamError>, Failure> {
        if let (Some(max), Some(total)) = (self.settings.max_filesize, t.total) {
            if total > max {
                let total = Some(total);
                return Err(Failure::new(FailureKind::TooLarge { max, total }));
            }
        }
        self.prepare_part(&response, t)?;
        on_started(t, on_start);
        if t.file.is_none() {
            return Err(Failure::new(FailureKind::Internal("no part file")));
        }
        let ranges = if from == 0 && !t.one_stream {
            split::plan(
                self.split,
                url,
                &response,
                t.total,
                t.proof,
                &mut t.split_fell_back,
            )
        } else {
            None
        };
        Ok(match ranges {
            Some(ranges) => self.stream_split(url, t, response, &ranges, counter),
            None => self.stream_whole(t, response, counter),
        })
    }

    /// `--split`: the pieces fill the part in place.
    fn stream_split(
        &self,
        url: &Url,
        t: &mut Transfer,
        response: Response,
        ranges: &[split::Range],
        counter: &AtomicU64,
    ) -> Result<(), StreamError> {
        // The pieces preallocate the part to full size and fill it out of order. The sidecar
        // says so first (sparse, nothing done yet): a process that dies meanwhile (Ctrl-C past
        // the grace, a kill) leaves a part the next `-c` recognises as its own, and holes are
        // never taken for data. No sidecar at all if that one cannot be written.
        if let Some(meta) = t.meta.as_mut() {
            meta.ranges = Some(Vec::new());
        }
        if !t.rewrite_meta() {
            t.withdraw_meta();
        }
        if let Some(v) = t.verify.as_mut() {
            v.forget();
        }
        let Some(file) = t.file.as_ref() else {
            return Err(StreamError::Write(io::Error::other("no part file")));
        };
        let pieces = split::Pieces {
            client: self.client,
            asked: url,
            file,
            counter,
            cancel: self.cancel,
            chunk: self.settings.chunk,
            rate: self.rate,
            proof: t.proof,
            log: t.pieces_log.as_ref(),
        };
        let known = t.meta.clone().unwrap_or_default();
        let mut done = Vec::new();
        let r = split::run(&pieces, response, ranges, &known, &mut done);
        t.record_ranges(done);
        r
    }

    /// A sparse part (`--split` pieces, of this run or an earlier one): fetches only the ranges
    /// it lacks, checked against the response its bytes came from, over `--split` connections
    /// (one without it).
    fn attempt_sparse(
        &self,
        url: &Url,
        t: &mut Transfer,
        counter: &AtomicU64,
        on_start: &mut dyn FnMut(Notice<'_>),
        bytes: &mut u64,
    ) -> Attempt {
        let Some(known) = t.meta.clone() else {
            return Attempt::Fail(Failure::new(FailureKind::Internal("no sidecar")));
        };
        let total = known.total.unwrap_or(0);
        if let Some(max) = self.settings.max_filesize.filter(|&max| total > max) {
            let total = Some(total);
            return Attempt::Fail(Failure::new(FailureKind::TooLarge { max, total }));
        }
        t.total = Some(total);
        on_started(t, on_start);
        if self.settings.trace {
            t.pieces_log = Some(std::sync::Mutex::new(Vec::new()));
        }
        let Some(file) = t.file.as_ref() else {
            return Attempt::Fail(Failure::new(FailureKind::Internal("no part file")));
        };
        let pieces = split::Pieces {
            client: self.client,
            asked: url,
            file,
            counter,
            cancel: self.cancel,
            chunk: self.settings.chunk,
            rate: self.rate,
            proof: t.proof,
            log: t.pieces_log.as_ref(),
        };
        let mut done = known.ranges.clone().unwrap_or_default();
        let before = t.have;
        let r = split::fill_gaps(&pieces, &known, &mut done, self.split.pieces.max(1));
        t.record_ranges(done);
        *bytes += t.have.saturating_sub(before);
        self.settle(t, r, 206)
    }

    /// One connection: reads stay `--chunk-size` (8 KiB by default); writes of a large body are
    /// gathered into up to [`WRITE_BEHIND`] bytes, from data already received, in the read
    /// buffer itself (see [`stream_body`]): the part holds every byte counted in `t.have`
    /// whenever a retry, a resume or someone watching looks.
    fn stream_whole(
        &self,
        t: &mut Transfer,
        mut response: Response,
        counter: &AtomicU64,
    ) -> Result<(), StreamError> {
        let Some(file) = t.file.as_mut() else {
            return Err(StreamError::Write(io::Error::other("no part file")));
        };
        let large = t.total.is_none_or(|total| total > SMALL_BODY);
        let chunk = self.settings.chunk.max(1);
        let size = if large {
            chunk.max(WRITE_BEHIND)
        } else {
            chunk
        };
        let size = buffer_for(size, t.total.map(|total| total.saturating_sub(t.have)));
        let mut response = Throttled {
            inner: &mut response,
            limit: self.rate,
            cancel: self.cancel,
        };
        let mut buf = vec![0; size];
        // A small body has no sidecar yet (see [`SMALL_BODY`]): it gets one before its first
        // wait on the network, unless it has all arrived by then.
        let total = t.total;
        let (meta, part) = (t.meta.as_ref(), t.part.as_deref());
        let (owned, saved) = (&mut t.meta_owned, &mut t.meta_saved);
        let mut before_wait = |written: u64| {
            if total.is_none_or(|total| written < total) {
                part::save_sidecar(meta, part, owned, saved);
            }
            false
        };
        let mut stream = |out: &mut dyn io::Write, have: &mut u64| {
            let r = stream_body(
                &mut response,
                &mut &mut *out,
                &mut buf,
                chunk,
                counter,
                self.cancel,
                have,
                self.settings.max_filesize,
                &mut before_wait,
            );
            let clean = !matches!(r, Err(StreamError::Write(_)));
            (r, clean)
        };
        match (t.verify.as_mut(), t.part.as_deref()) {
            (Some(v), Some(part)) => v.streaming(part, file, &mut t.have, stream),
            _ => stream(file, &mut t.have).0,
        }
    }

    /// What the end of a body means: done when it has every byte, else why not.
    fn settle(&self, t: &mut Transfer, streamed: Result<(), StreamError>, code: u16) -> Attempt {
        let with_status = |kind: FailureKind| Failure::new(kind).with_status(code);
        let cut = |what: String, t: &Transfer| FailureKind::Cut {
            what,
            have: t.have,
            total: t.total,
        };
        match streamed {
            Ok(()) => {}
            Err(StreamError::Cancelled) => {
                return Attempt::Fail(with_status(FailureKind::Interrupted))
            }
            Err(StreamError::Write(e)) => {
                let kind = FailureKind::Disk {
                    op: "write",
                    path: t.part.clone(),
                    error: e.to_string(),
                };
                // Bytes an earlier run left are never destroyed by a local error: the part
                // stays at its last good length, with its sidecar, for a later `-c`. This run's
                // own bytes alone are not worth keeping (and may mean a full disk).
                let keep = t.earlier > 0 && (t.sparse() || t.cut_to_have());
                if !keep {
                    t.discard();
                }
                return Attempt::Fail(with_status(kind));
            }
            Err(StreamError::Changed(why)) => {
                // The pieces disagree with the first response: the file over one connection.
                t.one_stream = true;
                return start_over(t, &why);
            }
            Err(StreamError::TooLarge) => {
                t.discard();
                return Attempt::Fail(with_status(FailureKind::TooLarge {
                    max: self.settings.max_filesize.unwrap_or(0),
                    total: None,
                }));
            }
            Err(StreamError::Read(e)) => {
                let what = describe_read_error(&e, self.settings.timeout);
                return Attempt::Retry(with_status(cut(what, t)), None);
            }
            Err(StreamError::Aborted) => {
                let what = split::ABORTED.to_string();
                return Attempt::Retry(with_status(cut(what, t)), None);
            }
        }
        match t.total {
            Some(total) if t.have != total => {
                let kind = FailureKind::LengthMismatch {
                    have: t.have,
                    total,
                };
                Attempt::Retry(with_status(kind), None)
            }
            _ => Attempt::Done(code),
        }
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
}

/// An empty sidecar beside an empty part, or none (see [`Found::Leftover`]).
fn empty_leftover(part: &Path, meta: &Path) -> bool {
    safefs::regular_len(meta) == Some(0)
        && (!safefs::occupied(part) || safefs::regular_len(part) == Some(0))
}

/// Drops the bytes on disk and starts over from zero, once: a second time in one download means
/// the file keeps changing, and it fails rather than loop.
fn start_over(t: &mut Transfer, why: &str) -> Attempt {
    if std::mem::replace(&mut t.restarted, true) {
        return Attempt::Fail(Failure::new(FailureKind::Changed(why.to_string())));
    }
    t.have = 0;
    t.earlier = 0;
    if let Some(meta) = t.meta.as_mut() {
        meta.ranges = None;
    }
    Attempt::Restart
}

/// What one download accumulates across its attempts and sources.
struct Run<'c, 'h> {
    counter: &'c AtomicU64,
    on_start: &'c mut dyn FnMut(Notice<'_>),
    /// Its hold on its host (see [`crate::hosts`]).
    lease: &'c mut Lease<'h>,
    bytes: u64,
    retries: u32,
    notes: Vec<Note>,
    phases: Phases,
    exchanges: Vec<Exchange>,
}

/// Whether a failure is the source's, so that the next mirror may do better (a local error,
/// or Ctrl-C, would go the same way).
fn moves_on(kind: &FailureKind) -> bool {
    !matches!(
        kind,
        FailureKind::Interrupted
            | FailureKind::Disk { .. }
            | FailureKind::LinkedFolder(_)
            | FailureKind::NoFreeName(_)
            | FailureKind::Internal(_)
            | FailureKind::Runtime(_)
    )
}

/// Whether the server keeps the connection open for the next request: not after an HTTP/1.0
/// reply without `keep-alive`, nor after `Connection: close`.
fn kept_open(response: &Response) -> bool {
    let connection = response
        .headers()
        .get(reqwest::header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let says = |token: &str| connection.split(',').any(|t| t.trim() == token);
    if response.version() <= reqwest::Version::HTTP_10 {
        says("keep-alive")
    } else {
        !says("close")
    }
}

/// The buffer a body needs: `size`, or less when the body is known to be smaller. A buffer of
/// the largest --chunk-size for every tiny body would be zeroed by the allocator each time
/// (glibc serves freed large blocks from its heap, not fresh zero pages): at -j 1024, gigabytes.
pub(crate) fn buffer_for(size: usize, to_come: Option<u64>) -> usize {
    let needed = to_come.map_or(size, |n| usize::try_from(n).unwrap_or(usize::MAX));
    size.min(needed).max(1)
}

/// A file's modification time, for `If-Modified-Since`.
fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::symlink_metadata(path).ok()?.modified().ok()
}

fn on_started(t: &mut Transfer, on_start: &mut dyn FnMut(Notice<'_>)) {
    if t.started {
        return;
    }
    if let Some(path) = &t.path {
        t.started = true;
        // The bar counts bytes received by this run, so a resumed file shows what is still to come.
        on_start(Notice::Started(Started {
            path,
            total: t.total.map(|total| total.saturating_sub(t.have)),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_no_larger_than_the_body_to_come() {
        let big = 16 << 20;
        assert_eq!(buffer_for(big, Some(100)), 100);
        assert_eq!(buffer_for(big, Some(0)), 1, "never empty");
        assert_eq!(buffer_for(CHUNK, Some(1 << 30)), CHUNK);
        assert_eq!(buffer_for(big, None), big, "unknown length: as asked");
    }
}
