//! Before any request: what is already on disk under a URL's name. `-c` resumes a part of its
//! own (only with a sidecar naming this URL) and skips a final file the server confirms is
//! complete; `-N` asks whether a file changed; `--skip-existing` trusts it. An expected digest
//! outranks the server for all three: a file that matches it is the file, one that does not is
//! never kept as current. Nothing that is not provably this download's is touched: a free name
//! beside the URL's own is used instead (see [`naming::beside`]).

use super::*;

/// What `-c` can tell about a file under the final name.
pub(super) enum Verdict {
    /// The server says the file is exactly this long.
    Complete,
    /// The server's file is provably another one (another size, or bytes past the end): not
    /// ours to judge, the next name is tried.
    NotThis,
    /// The answer could not tell either way (an error, a 5xx, an answer with no size).
    Unknown(Untold),
}

/// Why an answer could not tell a file's size, and whether asking again may.
pub(super) struct Untold {
    kind: FailureKind,
    status: Option<u16>,
    retry: bool,
    /// The server's `Retry-After`.
    after: Option<Duration>,
    /// No answer at all, and what that tells of the host (unreachable, no such name): its
    /// attempts are shared by all its URLs (see [`crate::hosts`]). Boxed: rare, and large.
    learned: Option<Box<Learned>>,
}

impl Untold {
    /// The answer `facts` as a reason: a retryable status (5xx, 429) is worth asking again.
    pub(super) fn of(facts: &ResponseFacts) -> Untold {
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
            learned: None,
        }
    }
}

/// What `-c` found on disk for a URL.
pub(super) enum Found {
    Fresh,
    /// A regular file of this length under the final name: complete only if the server says so.
    Existing(u64),
    Part(PartMeta, u64),
    /// An empty sidecar (an older fetchpar's, cut short by a full disk) beside an empty or no
    /// part, or an empty part with no sidecar (a download killed after its headers, before its
    /// first byte): nothing anyone could lose, so the name is taken back rather than passed over.
    Leftover,
    /// A part another download holds locked (another fetchpar run writing it): not ours to
    /// judge, resume, take back or pass over to make a copy under the next name.
    InUse(PathBuf),
}

/// An empty part, an empty sidecar, or both, and nothing else of the family's leftovers (see
/// [`Found::Leftover`]).
pub(super) fn empty_leftover(part: &Path, meta: &Path) -> bool {
    let empty_or_none =
        |path: &Path| !safefs::occupied(path) || safefs::regular_len(path) == Some(0);
    (safefs::occupied(part) || safefs::occupied(meta)) && empty_or_none(part) && empty_or_none(meta)
}

/// What `-c` finds of `url`'s download under `path`; `None` to look at the next name (a part
/// passed over as not this URL's is added to `passed`).
fn found_at(url: &Url, path: &Path, passed: &mut Vec<PathBuf>) -> Option<Found> {
    let [_, part, meta] = naming::family(path);
    if safefs::occupied(&part) || safefs::occupied(&meta) {
        // Before anything is judged or taken away: another run is writing it.
        if lock::in_use(&part) {
            return Some(Found::InUse(part));
        }
        if empty_leftover(&part, &meta) {
            return Some(Found::Leftover);
        }
        // Only our own part file for this same URL: never splice another URL's bytes.
        let ours = PartMeta::load(&part).filter(|m| m.is_for(url));
        let found = ours.zip(safefs::regular_len(&part));
        if found.is_none() && safefs::occupied(&part) {
            passed.push(part);
        }
        found.map(|(meta, have)| Found::Part(meta, have))
    } else if safefs::occupied(path) {
        safefs::regular_len(path).map(Found::Existing)
    } else {
        Some(Found::Fresh)
    }
}

/// A file's modification time, for `If-Modified-Since`.
pub(super) fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::symlink_metadata(path).ok()?.modified().ok()
}

impl Fetcher<'_> {
    /// What is on disk before any request: `-c`'s earlier file or part, `--skip-existing`'s
    /// trusted file, `-N`'s file to ask about. `Some`: nothing to download.
    pub(super) fn look_on_disk(
        &self,
        entry: &Entry,
        t: &mut Transfer,
        run: &mut Run<'_, '_>,
    ) -> Result<Option<Saved>, Failure> {
        let skipped = |path: PathBuf, checksum: Option<String>| Saved {
            skipped: true,
            checksum,
            ..Saved::at(path, 0)
        };
        if self.settings.resume {
            if let Some((path, sum)) = self.find_earlier(entry, t, run)? {
                return Ok(Some(skipped(path, sum)));
            }
        } else if self.settings.skip_existing || self.settings.timestamping {
            // Only these two care what is there: a plain download leaves it to the namer.
            let (path, found) = self.earlier_file(t);
            if found && self.settings.skip_existing {
                let sum = self.trusted(t, &path)?;
                return Ok(Some(skipped(path, sum)));
            }
            if found {
                t.since = modified(&path);
                t.replace = t.since.is_some();
            }
            t.path = Some(path);
        }
        Ok(self.current_by_digest(t))
    }

    /// `--skip-existing` with an expected digest: the file it trusts is read once and must
    /// match it (the digest checked, if any). This asks no server, which is all the option
    /// promises; it does cost reading the file. A file known to be wrong is not trusted, and not
    /// replaced either (the option says existing files are not fetched): the URL fails and the
    /// file stays as it is.
    pub(super) fn trusted(&self, t: &Transfer, path: &Path) -> Result<Option<String>, Failure> {
        let Some(v) = &t.verify else {
            return Ok(None);
        };
        match checksum::verify_file(path, &v.expected) {
            Ok(Ok(())) => Ok(Some(v.expected.to_string())),
            Ok(Err(_)) => Err(Failure::new(FailureKind::NotExpected(path.to_path_buf()))),
            Err(e) => Err(Failure::new(FailureKind::disk("read", path, e))),
        }
    }

    /// `-N` with an expected digest, for the existing file about to be asked about (`t.since`
    /// set): the digest is better evidence than its time. If the file matches, it is the
    /// expected file, `unchanged`, and the server is not asked at all. If it does not (or cannot
    /// be read), `If-Modified-Since` is not sent, since a `304` would keep a file known to be
    /// wrong: the download replaces it by rename once complete and verified.
    pub(super) fn current_by_digest(&self, t: &mut Transfer) -> Option<Saved> {
        let (Some(v), Some(path), Some(_)) = (&t.verify, &t.path, t.since) else {
            return None;
        };
        if !matches!(checksum::verify_file(path, &v.expected), Ok(Ok(()))) {
            t.since = None;
            return None;
        }
        let checksum = Some(v.expected.to_string());
        let path = t.path.take()?;
        Some(Saved {
            unchanged: true,
            checksum,
            ..Saved::at(path, 0)
        })
    }

    /// `--skip-existing` and `-N`: this URL's file from an earlier run, `(path, true)`, or the
    /// free name its download takes, `(path, false)`. Its file is the regular file at its home,
    /// or beside it when something else holds the home (see [`naming::beside`]); without a home
    /// (`--content-disposition`), only the file under the name itself, never a clash variant of
    /// it. A name whose `.part` or sidecar is there belongs to something else: passed over.
    fn earlier_file(&self, t: &mut Transfer) -> (PathBuf, bool) {
        let own = (t.home.is_none()).then(|| self.namer.dir().join(&t.name));
        self.reserve_judged(t, |path| {
            let [_, part, meta] = naming::family(path);
            if safefs::occupied(&part) || safefs::occupied(&meta) {
                None
            } else if safefs::occupied(path) {
                // Never a link or a folder.
                let ours = own.as_deref().is_none_or(|own| own == path);
                (ours && safefs::regular_len(path).is_some()).then_some(true)
            } else {
                Some(false)
            }
        })
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
    pub(super) fn find_earlier(
        &self,
        entry: &Entry,
        t: &mut Transfer,
        run: &mut Run<'_, '_>,
    ) -> Result<Option<(PathBuf, Option<String>)>, Failure> {
        let url = &entry.url;
        loop {
            // Parts passed over, not this URL's to resume: said, or `-c` would seem to ignore them.
            let mut passed = Vec::new();
            let (path, found) = self.reserve_judged(t, |path| found_at(url, path, &mut passed));
            run.notes.extend(passed.into_iter().map(Note::OthersPart));
            match found {
                Found::Existing(_) if self.settings.skip_existing => {
                    let sum = self.trusted(t, &path)?;
                    return Ok(Some((path, sum)));
                }
                Found::Existing(_) if self.settings.timestamping => {
                    t.since = modified(&path);
                    t.replace = t.since.is_some();
                    t.path = Some(path);
                    return Ok(None);
                }
                Found::Existing(len) => {
                    if let Some(sum) = self.judge_existing(entry, &path, len, t, run)? {
                        return Ok(Some((path, sum)));
                    }
                    if self.settings.overwrite {
                        // Not this file, and asked to replace it: the download goes to the
                        // name, and its rename replaces the file once it is complete.
                        t.path = Some(path);
                        return Ok(None);
                    }
                    // Not ours: leave it untouched, look at the next name, and say why the
                    // download does not land where `-c` was asked to look.
                    run.notes.push(Note::NotTheServers(path.clone()));
                }
                Found::Fresh => {
                    t.path = Some(path);
                    return Ok(None);
                }
                Found::InUse(part) => {
                    self.release(t, &path);
                    return Err(Failure::new(FailureKind::InUse(part)));
                }
                Found::Leftover => {
                    let part = naming::part_path(&path);
                    if !lock::take_back(&part) {
                        // Locked since the look: another run's download has begun in it.
                        self.release(t, &path);
                        return Err(Failure::new(FailureKind::InUse(part)));
                    }
                    let _ = std::fs::remove_file(sidecar::meta_path(&part));
                    t.path = Some(path);
                    return Ok(None);
                }
                Found::Part(mut meta, have) => {
                    // An older format keyed on a secret: take it off the disk now. If that
                    // fails, the old sidecar still matches next time; nothing is lost.
                    let _ = meta.upgrade(url, &naming::part_path(&path));
                    t.name_held = safefs::occupied(&path);
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
    pub(super) fn judge_existing(
        &self,
        entry: &Entry,
        path: &Path,
        len: u64,
        t: &Transfer,
        run: &mut Run<'_, '_>,
    ) -> Result<Option<Option<String>>, Failure> {
        let url = &entry.url;
        if let Some(v) = &t.verify {
            let complete = matches!(checksum::verify_file(path, &v.expected), Ok(Ok(())));
            return Ok(complete.then(|| Some(v.expected.to_string())));
        }
        let (mut tries, mut host_tries) = (0, 0);
        loop {
            match run.lease.acquire(self.cancel) {
                Ok(true) => {}
                Ok(false) => return Err(Failure::interrupted(None)),
                Err(line) => return Err(Failure::new(FailureKind::Host(line))),
            }
            let mut untold = match self.confirms_complete(url, len) {
                Verdict::Complete => return Ok(Some(None)),
                Verdict::NotThis => return Ok(None),
                Verdict::Unknown(untold) => untold,
            };
            if untold.kind == FailureKind::Interrupted {
                return Err(Failure::interrupted(None));
            }
            // Unreachable: the host's attempts, shared by its URLs, decide (as for a download),
            // so a thousand files on a dead host do not each wait out their own retries, and
            // all fail with the host's one line.
            if let Some(learned) = untold.learned.take() {
                match self.learn_unreachable(run.lease, *learned, &mut host_tries) {
                    Next::Fail(line) => return Err(Failure::new(FailureKind::Host(line))),
                    Next::Later | Next::Again => {
                        // The host's pause is the wait: the next `acquire` sits it out.
                        run.lease.release();
                        continue;
                    }
                    Next::AsUsual => {}
                }
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
                match self.mirrors_say(entry, len) {
                    Some(true) => return Ok(Some(None)),
                    Some(false) => return Ok(None),
                    None => {}
                }
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

    /// `-c`, when the URL itself cannot tell whether the file is complete (gone, say, and the
    /// file came from a mirror): the mirrors in turn, once each, as a download moves on to
    /// them; `Some(true)` complete, `Some(false)` another file, `None` none could tell.
    fn mirrors_say(&self, entry: &Entry, len: u64) -> Option<bool> {
        entry.mirrors.iter().find_map(|mirror| {
            if self.cancel.load(Ordering::Relaxed) {
                return None;
            }
            match self.confirms_complete(mirror, len) {
                Verdict::Complete => Some(true),
                Verdict::NotThis => Some(false),
                Verdict::Unknown(_) => None,
            }
        })
    }

    /// Whether the server confirms that `len` bytes are the whole file: asked for the bytes
    /// from `len` on, it answers 416 with `Content-Range: bytes */len` (or a bare 416, and then
    /// its size, learnt another way, is `len`); or, ignoring ranges, a 200 of exactly `len`
    /// bytes, whose body is dropped unread (the length is all a file without a sidecar can be
    /// compared by, as `wget -c` does). (A HEAD would do on some servers, but many answer it
    /// differently from a GET.) Only a size that differs proves the file is another one; an
    /// error, a 5xx or an answer without a size cannot tell (see [`Verdict`]).
    pub(super) fn confirms_complete(&self, url: &Url, len: u64) -> Verdict {
        let response = match self
            .client
            .get(url.clone())
            .header(RANGE, format!("bytes={len}-"))
            .send()
        {
            Ok(response) => response,
            Err(e) => return Verdict::Unknown(self.untold(url, e)),
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
    pub(super) fn classify_sized(
        &self,
        url: &Url,
        facts: ResponseFacts,
        disk: OnDisk<'_>,
    ) -> Decision {
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
    pub(super) fn sized(
        &self,
        url: &Url,
        facts: ResponseFacts,
        disk: OnDisk<'_>,
    ) -> Result<Decision, Untold> {
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
    pub(super) fn probe_size(&self, url: &Url) -> Result<u64, Untold> {
        let response = self
            .client
            .get(url.clone())
            .header(RANGE, "bytes=0-0")
            .send()
            .map_err(|e| self.untold(url, e))?;
        let facts = ResponseFacts::of(&response, url);
        drop(response);
        response::size_of(&facts).ok_or_else(|| Untold::of(&facts))
    }

    /// Why a request that got no response could not tell anything, and whether to ask again.
    pub(super) fn untold(&self, url: &Url, e: transport::Error) -> Untold {
        let (failure, retry, after, learned) = match self.no_response(url, e) {
            Attempt::Retry(failure, after) => (failure, true, after, None),
            Attempt::Hop(failure, ..) => (failure, true, None, None),
            Attempt::Host(failure, learned) => (failure, true, None, Some(Box::new(learned))),
            Attempt::Fail(failure) => (failure, false, None, None),
            Attempt::Done(_) | Attempt::Restart => (
                Failure::new(FailureKind::Internal("no response")),
                false,
                None,
                None,
            ),
        };
        Untold {
            kind: failure.reason.kind().clone(),
            status: None,
            retry,
            after,
            learned,
        }
    }
}
