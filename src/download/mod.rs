//! One download, start to finish: GET, stream 8 KiB chunks into `NAME.part`, check the length,
//! and only then give the file its final name; with retries, resumption and limits around it.
//!
//! The promise kept here: a file under its final name is complete, nothing existing is replaced
//! unless the user asked, bytes on disk are never spliced from two versions of a file, and every
//! failure comes back as one readable reason.
//!
//! One job per file:
//! - this file: [`Settings`], [`Fetcher`], the attempt/retry loop and mirrors;
//! - `earlier`: what is on disk before any request (`-c`, `-N`, `--skip-existing`);
//! - `attempt`: one request and what its headers mean; `body`: its body, whole, in `--split`
//!   pieces or into the gaps of a sparse part; `outcome`: what a download came to;
//! - `response`: what a response means for the bytes on disk (the one rule for joining them);
//! - `part`: the life of `NAME.part` and its sidecar (open, prepare, commit, discard);
//!   `lock`: the part's lock against another run taking it up while it is written;
//! - [`stream`]: the body-streaming hot loop;
//! - [`failure`]: why a download failed, as a kind and as one line;
//! - [`sidecar`]: the `NAME.part.meta` format and `Content-Range`;
//! - [`split`]: one file over several ranged connections (`--split N`);
//! - `verify`: the expected digest, hashed while streaming or read back once before the rename;
//! - [`disposition`]: names from `Content-Disposition`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
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
use crate::naming::{self, Home, Namer};
use crate::ratelimit::{RateLimit, Throttled};
use crate::redact;
use crate::retry::Policy;
use crate::safefs;
use crate::sumfile::{self, Expected};
use crate::trace::{self, Exchange, Phases};
use crate::transport::{self, Client, Response};

mod attempt;
mod body;
pub(crate) mod disposition;
mod earlier;
pub(crate) mod failure;
mod lock;
mod outcome;
pub(crate) mod part;
pub(crate) mod response;
pub(crate) mod sidecar;
pub(crate) mod split;
pub(crate) mod stream;
pub(crate) mod verify;

pub(crate) use self::attempt::buffer_for;
use self::attempt::Attempt;
pub(crate) use self::outcome::{Note, Notice, Outcome, Saved, Started};

pub(crate) use self::failure::{describe_request_error, Failure, FailureKind};
pub(crate) use self::stream::{stream_body, StreamError};

use self::failure::describe_read_error;

/// The default streaming unit (`--chunk-size`): one reusable buffer of this size per download.
pub(crate) const CHUNK: usize = 8 * 1024;

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
/// empty `NAME.part` with no sidecar: it holds nothing anyone could lose, so `-c` takes the name
/// back (see `earlier::Found::Leftover`) instead of saving `NAME.1` beside it.
pub(crate) const SMALL_BODY: u64 = 64 * 1024;

/// File writes of a body larger than [`SMALL_BODY`] are gathered up to this size: for large
/// files, writing every 8 KiB read on its own costs clearly more CPU and wall time than
/// gathering 64 KiB, and a larger buffer gained nothing more while costing memory (measured by
/// `benches/`, see README "Performance").
pub(crate) const WRITE_BEHIND: usize = 64 * 1024;

/// Most redirects followed before giving up.
pub(crate) const MAX_REDIRECTS: usize = 10;

/// How often a worker waiting to retry looks at the cancel flag.
const PAUSE_SLICE: Duration = Duration::from_millis(50);

/// What the user asked of every download, resolved once from the command line: each setting
/// has this one home, and the client is configured from the same values.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Settings {
    /// `--overwrite`: replace existing files (the namer reserves names accordingly).
    pub(crate) overwrite: bool,
    /// No data for this long fails a request; only for messages here (the client enforces it).
    pub(crate) timeout: Duration,
    pub(crate) retry: Policy,
    /// `-c`: resume `.part` files of earlier runs, skip files already complete.
    pub(crate) resume: bool,
    /// `--max-filesize`: refuse bodies larger than this.
    pub(crate) max_filesize: Option<u64>,
    /// `--content-disposition`: let the server's proposed name (made safe) choose the file name.
    pub(crate) content_disposition: bool,
    /// `--split N`: connections per file; 1 means no splitting.
    pub(crate) split: usize,
    /// Bytes per read of the body (`--chunk-size`).
    pub(crate) chunk: usize,
    /// `--checksums FILE`, read and checked before any download.
    pub(crate) checksums: Option<std::sync::Arc<crate::sumfile::SumFile>>,
    /// `--require-checksum`: a file without an expected digest fails instead of being warned about.
    pub(crate) require_checksum: bool,
    /// `-N`: ask about existing files with `If-Modified-Since`, replace them only when newer,
    /// and give saved files the server's `Last-Modified` time.
    pub(crate) timestamping: bool,
    /// `--skip-existing`: an existing final file is trusted without asking the server.
    pub(crate) skip_existing: bool,
    /// `--per-host N`: most downloads to one host at once; 0 means as many as `-j`.
    pub(crate) per_host: usize,
    /// `--limit-rate`: the whole run's receiving rate, bytes per second.
    pub(crate) limit_rate: Option<u64>,
    /// Keep every request and response (`--har`, `--timeline`): costs an allocation or two per
    /// request, so only when asked.
    pub(crate) trace: bool,
}

/// What every download of a run shares: the settings, and the run's handles.
#[derive(Clone, Copy)]
pub(crate) struct Fetcher<'a> {
    pub(crate) settings: &'a Settings,
    pub(crate) client: &'a Client,
    pub(crate) namer: &'a Arc<Namer>,
    pub(crate) cancel: &'a AtomicBool,
    /// What became of `--split` (see [`split`]).
    pub(crate) split: &'a Split,
    /// `--limit-rate`, shared by every download of the run.
    pub(crate) rate: Option<&'a RateLimit>,
}

impl<'a> Fetcher<'a> {
    pub(crate) fn new(
        settings: &'a Settings,
        client: &'a Client,
        namer: &'a Arc<Namer>,
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

impl Fetcher<'_> {
    /// Downloads `entry`'s URL into its `home` (reserved as the list was read), or else a name
    /// taken from the URL or given by the server. `on_start` hears when the response headers
    /// are accepted and before each retry; `counter` is bumped as body bytes arrive (the
    /// progress display reads both).
    pub(crate) fn fetch(
        &self,
        entry: &Entry,
        home: Option<&Home>,
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
        let result = self.fetch_inner(entry, home, &mut run);
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

    fn fetch_inner(
        &self,
        entry: &Entry,
        home: Option<&Home>,
        run: &mut Run<'_, '_>,
    ) -> Result<Saved, Failure> {
        let url = &entry.url;
        // An explicit output goes through the namer too: it never replaces an existing file
        // and two lines naming the same path get `.1`, like any other clash.
        let explicit = entry.output.is_some();
        let mut t = match home {
            Some(home) => Transfer::new(home.name.clone(), explicit, url).at_home(home),
            None => Transfer::new(naming::from_url(url), explicit, url),
        };
        let sums = self.settings.checksums.as_deref();
        let require = self.settings.require_checksum;
        let key = sumfile::key_for(sums, home, &t.name, entry);
        match sumfile::expected(entry.checksum.as_ref(), sums, &key, require) {
            Expected::Required(reason) => return Err(Failure::new(FailureKind::Other(reason))),
            Expected::Missing(note) => run.notes.push(Note::NoChecksum(note)),
            Expected::Known(sum) => {
                t.verify = Some(Verify::new(sum.clone()));
                t.proof = true;
            }
            Expected::Unchecked => {}
        }
        if let Some(saved) = self.look_on_disk(entry, &mut t, run)? {
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
            if std::mem::take(&mut t.changed) {
                run.notes.push(Note::Changed);
            }
            let failure = match done.and_then(|status| self.verified(&mut t, status)) {
                Ok(status) => return self.finish(t, status, source, &mut run.notes),
                Err(failure) => failure,
            };
            let mismatch = matches!(failure.reason.kind(), FailureKind::ChecksumMismatch(_));
            let next = at + 1 < sources.len();
            // `--retries 0` means no retry, this one included; the next mirror is still asked,
            // as after any other failure.
            let may_retry = self.settings.retry.retries > 0;
            if mismatch && !retried_mismatch && (may_retry || next) {
                // Its bytes are wrong, not merely unfinished: once more from zero, from the
                // next source if there is one.
                retried_mismatch = true;
                run.retries += u32::from(may_retry);
                at = if next { at + 1 } else { at };
            } else if next && !mismatch && moves_on(failure.reason.kind()) {
                at += 1;
            } else {
                let mut failure = failure;
                if mismatch {
                    // Retried from zero once already: the line says so, as for other failures.
                    failure.reason.after_retries(run.retries);
                }
                return Err(self.out_of_files(&mut t, failure));
            }
        }
    }

    /// Gives up on `t`. Running out of file descriptors before any file was opened is not the
    /// URL's failure: the pool tries it again later, so its name goes back too. Once a part
    /// exists it is an ordinary failure (the part, with its bytes, is the user's now). A URL
    /// handed back to wait for its host has nothing on disk (see [`FailureKind::HostLater`]).
    fn out_of_files(&self, t: &mut Transfer, failure: Failure) -> Failure {
        let why = match failure.reason.kind() {
            FailureKind::OutOfFiles(why) => why,
            FailureKind::HostLater(_) => return self.hand_back(t, failure),
            _ => return t.give_up(failure),
        };
        if t.part.is_some() || t.have > 0 {
            return t.give_up(Failure::new(FailureKind::Other(format!(
                "out of open files: {why}"
            ))));
        }
        self.hand_back(t, failure)
    }

    /// Lets go of `t`'s name for a URL the pool will try again (it keeps its home).
    fn hand_back(&self, t: &mut Transfer, failure: Failure) -> Failure {
        if let Some(path) = t.path.take() {
            self.release(t, &path);
        }
        failure
    }

    /// Gives `path` back to the namer unless it is `t`'s home, which its URL keeps for the run
    /// (see [`Namer::home`]).
    fn release(&self, t: &Transfer, path: &Path) {
        if !t.is_home(path) {
            self.namer.release(path);
        }
    }

    /// The first path for `t` that `judge` accepts: its home the first time it is asked for,
    /// else the first name beside it (see [`Transfer::seek`]) free in this run.
    fn reserve_judged<T>(
        &self,
        t: &mut Transfer,
        mut judge: impl FnMut(&Path) -> Option<T>,
    ) -> (PathBuf, T) {
        if let Some(home) = t.untried_home() {
            if let Some(verdict) = judge(&home) {
                return (home, verdict);
            }
        }
        self.namer.reserve_by(t.seek(), judge)
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
            // However it ended, a reply whose slot went on early is no longer coming in.
            run.lease.reply_in();
            let (failure, retry_after) = match attempt {
                Attempt::Done(status) => return Ok(status),
                Attempt::Restart => continue,
                Attempt::Fail(failure) => return Err(failure),
                Attempt::Host(failure, learned) if polite => {
                    match self.learn_unreachable(run.lease, learned, &mut host_tries) {
                        Next::Fail(line) => return Err(Failure::new(FailureKind::Host(line))),
                        // Nothing of it anywhere yet: back to the pool, so that its worker
                        // takes other hosts' URLs while this host is down.
                        Next::Later if untouched(t, *retries + run.retries) => {
                            let why = failure.reason.to_string();
                            return Err(Failure::new(FailureKind::HostLater(why)));
                        }
                        Next::Later | Next::Again => {
                            // The host's pause is the wait: the next `acquire` sits it out.
                            run.lease.release();
                            continue;
                        }
                        Next::AsUsual => (failure, None),
                    }
                }
                Attempt::Host(failure, _) => (failure, None),
                Attempt::Hop(failure, hop, learned) => {
                    if let Next::Fail(line) = run.lease.learn_at(&hop, learned) {
                        let hop = redact::url(&hop);
                        let line = format!("redirected to {hop}: {line}");
                        return Err(Failure::new(FailureKind::Host(line)));
                    }
                    (failure, None)
                }
                Attempt::Retry(failure, retry_after) => {
                    if let (true, Some(wait)) = (polite, retry_after) {
                        run.lease.learn(Learned::RetryAfter(wait));
                    }
                    (failure, retry_after)
                }
            };
            self.before_retry(failure, retry_after, retries, run)?;
        }
    }

    /// After an attempt that failed: the failure for good once the retries are spent, else the
    /// wait before the next try; `Err` on Ctrl-C too.
    fn before_retry(
        &self,
        mut failure: Failure,
        retry_after: Option<Duration>,
        retries: &mut u32,
        run: &mut Run<'_, '_>,
    ) -> Result<(), Failure> {
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
        Ok(())
    }

    /// Tells the URL's host that a connect failed, and counts the attempt among the URL's own
    /// tries at the host, which bound a URL whose host keeps recovering just before its turn:
    /// once they are spent, [`Next::Again`] becomes [`Next::AsUsual`] (its own retries decide).
    /// A connect that failed with another's ([`Next::Later`]) is no attempt, of either.
    fn learn_unreachable(&self, lease: &Lease<'_>, learned: Learned, tries: &mut u32) -> Next {
        let next = lease.learn(learned);
        *tries += u32::from(next != Next::Later);
        match next {
            Next::Again if *tries > self.settings.retry.retries => Next::AsUsual,
            next => next,
        }
    }

    /// Gives the complete part its final name (`-N`: the file was current, nothing to do).
    fn finish(
        &self,
        mut t: Transfer,
        status: u16,
        source: &Url,
        notes: &mut Vec<Note>,
    ) -> Result<Saved, Failure> {
        if t.unchanged {
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
        // Open, and so locked (see `lock`), until the part is renamed and its sidecar
        // gone: a `-c` run beside this one must not take up the part in between.
        let held = t.file.take();
        let wanted = path.clone();
        let path = match self.commit(t.seek(), &part, path, t.replace) {
            Ok(path) => path,
            Err(e) => {
                let failure = Failure::new(FailureKind::disk("rename", &part, e));
                // The part is reported as kept: with the sidecar a small body does not have yet,
                // so that `-c` can take it up.
                t.part = Some(part);
                t.file = held;
                return Err(t.give_up(failure.with_status(status)));
            }
        };
        if t.meta_owned {
            sidecar::remove(&part);
        }
        drop(held);
        if path != wanted && t.name_held {
            let saved = path.clone();
            notes.push(Note::NameHeld {
                held: wanted,
                saved,
            });
        } else if path != wanted && self.wants_the_name() {
            notes.push(Note::NameTaken(wanted));
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
            crate::fiber::sleep((until - now).min(PAUSE_SLICE));
        }
    }
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
            | FailureKind::HostLater(_)
            | FailureKind::Disk { .. }
            | FailureKind::LinkedFolder(_)
            | FailureKind::NoFreeName(_)
            | FailureKind::Internal(_)
            | FailureKind::Runtime(_)
    )
}

/// Whether nothing of `t` exists yet (no part, no bytes, no retry told), so that the pool may
/// take it back and start it again later as if new.
fn untouched(t: &Transfer, retries: u32) -> bool {
    retries == 0 && t.part.is_none() && t.have == 0
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
