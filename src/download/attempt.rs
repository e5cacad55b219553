//! One attempt: the request (from an offset, with `If-Range` or `If-Modified-Since`), what the
//! response means for the bytes on disk ([`super::response`]), and the body streamed whole, in
//! `--split` pieces, or into the gaps of a sparse part.

use super::*;

/// How one attempt ended.
pub(super) enum Attempt {
    /// The part file holds the whole body.
    Done(u16),
    /// Worth another try, after the server's `Retry-After` if it gave one.
    Retry(Failure, Option<Duration>),
    /// The host could not be reached (or its name resolved): the host decides whether and when
    /// this URL tries again (see [`crate::hosts`]).
    Host(Failure, Learned),
    /// As `Host`, for the host of a redirect hop elsewhere: it learns, and may be given up on
    /// (its URLs and those redirected to it then fail at once); the URL retries as usual.
    Hop(Failure, Url, Learned),
    /// The partial bytes turned out useless (a range that does not fit them): start over from
    /// zero at once. Not a failure of the server, so it costs no retry.
    Restart,
    Fail(Failure),
}

/// Drops the bytes on disk and starts over from zero, once: a second time in one download means
/// the file keeps changing, and it fails rather than loop.
pub(super) fn start_over(t: &mut Transfer, why: &str) -> Attempt {
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

/// Whether an answer's validators say it is another version than the bytes on disk came from.
fn other_version(meta: Option<&PartMeta>, facts: &ResponseFacts) -> bool {
    meta.is_some_and(|m| !m.same_validators(&facts.validators))
}

/// Whether the server keeps the connection open for the next request: not after an HTTP/1.0
/// reply without `keep-alive`, nor after `Connection: close`.
pub(super) fn kept_open(response: &Response) -> bool {
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

/// Whether `e` happened on the way to `url`'s own host (or at the proxy in between), which is
/// what that host learns from: a redirect to another host that is down says nothing of this one,
/// whose other URLs must not fail with that host's line.
fn at_own_host(url: &Url, e: &reqwest::Error, proxies: &crate::proxy::Proxies) -> bool {
    crate::proxy::through(e, proxies).is_some() || elsewhere(url, e).is_none()
}

/// The redirect hop on another host than `url`'s where `e` happened, if it did.
fn elsewhere<'e>(url: &Url, e: &'e reqwest::Error) -> Option<&'e Url> {
    e.url().filter(|at| !crate::hosts::Key::of(url).is_of(at))
}

/// A redirect chain that failed: its hops are traced as they went, the last of them (the
/// request that got no answer, or the redirect that led nowhere) standing for the attempt.
fn trace_failed_chain(t: &mut Transfer, mut hops: Vec<Exchange>) {
    if let Some(last) = hops.pop() {
        t.head = last;
        t.hops = hops;
    }
}

impl Fetcher<'_> {
    /// One attempt, and with `trace` its exchanges: the request, and any `--split` pieces.
    pub(super) fn traced_attempt(
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
        run.exchanges.append(&mut t.hops);
        run.exchanges.push(Exchange {
            // After redirects, the last request's own URL and start; else the URL asked.
            url: match head.url.is_empty() {
                true => redact::url(url),
                false => head.url.clone(),
            },
            sent: head.sent.or(phases.sent),
            // A redirect that led nowhere keeps its own answer's times.
            headers: phases.headers.or(head.headers),
            end: phases.body_end.or(head.end).or(phases.sent),
            bytes: (run.bytes - before).saturating_sub(piece_bytes),
            piece: pieces.as_ref().map(|_| 0),
            error: match &attempt {
                Attempt::Retry(f, _)
                | Attempt::Host(f, _)
                | Attempt::Hop(f, ..)
                | Attempt::Fail(f) => Some(f.reason.to_string()),
                _ => None,
            },
            ..head
        });
        run.exchanges.extend(pieces.into_iter().flatten());
        attempt
    }

    /// The GET for `ask`: the body from `ask.from` on when that is past 0, with `If-Range` so
    /// that the server sends the whole (new) file instead if it changed since; or, for `-N`'s
    /// question about a file on disk, with `If-Modified-Since` alone.
    fn request_for(&self, url: &Url, ask: &Ask) -> transport::RequestBuilder<'_> {
        let request = self.client.get(url.clone());
        if let Some(since) = ask.since {
            // A time HTTP cannot write asks nothing: the answer is a 200, whose date decides.
            return match http_date(since) {
                Some(date) => request.header(IF_MODIFIED_SINCE, date),
                None => request,
            };
        }
        if ask.from == 0 {
            return request;
        }
        let request = request.header(RANGE, format!("bytes={}-", ask.from));
        match &ask.if_range {
            Some(validator) => request.header(IF_RANGE, validator),
            None => request,
        }
    }

    /// One request and as much of the body as it gives.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn attempt(
        &self,
        url: &Url,
        t: &mut Transfer,
        counter: &AtomicU64,
        on_start: &mut dyn FnMut(Notice<'_>),
        bytes: &mut u64,
        mut lease: Option<&mut Lease<'_>>,
        phases: &mut Phases,
    ) -> Attempt {
        if t.sparse() {
            return self.attempt_sparse(url, t, counter, on_start, bytes);
        }
        let ask = Ask::of(t);
        // Only the attempt that brings the body counts: clear what an earlier one left.
        *phases = Phases {
            sent: Some(Instant::now()),
            ..Phases::default()
        }
        .keep_queueing(phases);
        let request = self.request_for(url, &ask);
        let mut request = self.trace_request(t, request);
        if let Some(lease) = &lease {
            request = request
                .on_presence(lease.on_presence())
                .refuse_gone(lease.refuse_gone());
            if lease.dials_at_once() {
                request = request.dial_at_once();
            }
        }
        let mut hops = Vec::new();
        let mut response = match request.send_keeping_hops(&mut hops) {
            Ok(response) => response,
            Err(e) => {
                trace_failed_chain(t, hops);
                return self.no_response(url, e);
            }
        };
        phases.headers = Some(Instant::now());
        phases.body_end = phases.headers;
        phases.connect = response.setup().map(|s| s.total());
        self.trace_response(t, &mut response);
        let code = response.status().as_u16();
        // Told before the body, so that the host's window grows at once (see `crate::hosts`).
        if let Some(lease) = lease.as_deref_mut() {
            let kept_open = kept_open(&response);
            let small = self.server_done(&response);
            lease.learn(Learned::Response { kept_open, small });
            let done = !kept_open && lease.may_hand_on() && small;
            if done && lease.hand_on() {
                // The worker that took the slot dials now; this body is saved meanwhile.
                crate::fiber::yield_now();
            }
        }
        if let Some(ended) = self.decide(url, t, &response, &ask, on_start) {
            return ended;
        }
        let before = t.have;
        let received = self.receive(url, t, response, ask.from, counter, on_start);
        if let Some(lease) = lease {
            lease.reply_in();
        }
        phases.body_end = Some(Instant::now());
        *bytes += t.have - before;
        match received {
            Ok(streamed) => self.settle(t, streamed, code),
            Err(failure) => Attempt::Fail(failure.with_status(code)),
        }
    }

    /// What the response's headers mean for this attempt: `None` when its body is to be read
    /// (appended or whole), else how the attempt ends.
    fn decide(
        &self,
        url: &Url,
        t: &mut Transfer,
        response: &Response,
        ask: &Ask,
        on_start: &mut dyn FnMut(Notice<'_>),
    ) -> Option<Attempt> {
        let code = response.status().as_u16();
        let facts = ResponseFacts::of(response, url);
        // The body (if any) is left unread: dropping the response drops it, and no part is made.
        if ask
            .since
            .is_some_and(|since| response::still_current(&facts, since))
        {
            t.unchanged = true;
            return Some(Attempt::Done(code));
        }
        // The proxy's answer, not the server's: the same credentials fail the same way again.
        // The proxy is the last hop's (a redirect may lead past NO_PROXY or out of it).
        if code == 407 {
            if let Some(words) = crate::proxy::rejected(response.url(), self.client.proxies()) {
                let failure = Failure::new(FailureKind::Request(words)).with_status(code);
                return Some(Attempt::Fail(failure));
            }
        }
        // Without `Accept-Ranges: bytes` a whole file for a range is the server's limit, not a
        // changed file (a failed If-Range still announces ranges).
        let no_ranges = response
            .headers()
            .get(ACCEPT_RANGES)
            .is_none_or(|v| !v.as_bytes().eq_ignore_ascii_case(b"bytes"));
        let meta = t.meta.clone();
        let disk = OnDisk {
            asked_from: ask.resuming.then_some(t.have),
            meta: meta.as_ref(),
            proof: ask.proof,
        };
        match self.classify_sized(url, facts.clone(), disk) {
            Decision::Append { total } => t.total = total,
            Decision::Whole { total } => {
                // Other validators say the file changed; the same ones, that the server would
                // not send the range after all.
                let changed = other_version(meta.as_ref(), &facts);
                t.ranges_ignored |= ask.resuming && (no_ranges || !changed);
                t.changed |= ask.resuming && !no_ranges && changed;
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
                // A changed file's 206 (If-Range ignored) owes the note the 200 above gets.
                t.changed |= ask.resuming && other_version(meta.as_ref(), &facts);
                let why = "a resumed range did not match the bytes already received";
                return Some(start_over(t, why));
            }
            // classify_sized has asked for the size already: no answer is no confirmation.
            Decision::AskSize => {
                return Some(start_over(t, "the server did not say how long the file is"))
            }
            Decision::Complete { total } => {
                t.total = Some(total);
                on_started(t, on_start);
                return Some(Attempt::Done(code));
            }
            Decision::Fail(kind) => {
                return Some(Attempt::Fail(Failure::new(kind).with_status(code)))
            }
            Decision::Retry(kind, after) => {
                return Some(Attempt::Retry(Failure::new(kind).with_status(code), after))
            }
        }
        None
    }

    /// With `trace`: the request's headers, as they will be sent (secrets redacted), and the
    /// request told to keep each hop of a redirect chain.
    fn trace_request<'c>(
        &self,
        t: &mut Transfer,
        request: transport::RequestBuilder<'c>,
    ) -> transport::RequestBuilder<'c> {
        if !self.settings.trace {
            return request;
        }
        t.head = Exchange {
            request_headers: trace::request_headers(&request.headers_to_send()),
            ..Exchange::default()
        };
        request.record_hops()
    }

    /// With `trace`: the response's status and headers (and a log for `--split` pieces); after
    /// redirects, each hop on its own, the last one the head.
    fn trace_response(&self, t: &mut Transfer, response: &mut Response) {
        if !self.settings.trace {
            return;
        }
        t.hops = response.take_hops();
        match t.hops.pop() {
            // With its own set-up, not the whole chain's.
            Some(last) => t.head = last,
            None => {
                t.head.status = Some(response.status().as_u16());
                t.head.setup = response.setup();
                t.head.version = Some(response.version());
                t.head.response_headers = trace::headers_of(response.headers());
            }
        }
        if self.split.pieces > 1 {
            t.pieces_log = Some(std::sync::Mutex::new(Vec::new()));
        }
    }

    /// Whether the server is done with `response` as its headers come in: a success whose
    /// whole body fits one read (`--chunk-size`), sent with them or right after (see
    /// `pool::handoff`).
    fn server_done(&self, response: &Response) -> bool {
        let small = |n: u64| usize::try_from(n).is_ok_and(|n| n <= self.settings.chunk);
        let length = response.headers().get(reqwest::header::CONTENT_LENGTH);
        let length = length.and_then(|v| v.to_str().ok()?.trim().parse().ok());
        response.status().is_success() && length.is_some_and(small)
    }

    /// A request that got no response: worth another try unless it would go the same way.
    pub(super) fn no_response(&self, url: &Url, e: transport::Error) -> Attempt {
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
            e @ transport::Error::HopGone { .. } => {
                Attempt::Fail(Failure::new(FailureKind::Host(e.to_string())))
            }
            transport::Error::Http(e) => {
                let proxies = self.client.proxies();
                let plain = describe_request_error(&e, self.settings.timeout, proxies);
                let hop = elsewhere(url, &e).filter(|_| !at_own_host(url, &e, proxies));
                // Where a redirect led: "could not connect" alone reads as the asked host's.
                let why = match hop {
                    Some(hop) => format!("redirected to {}: {plain}", crate::redact::url(hop)),
                    None => plain.clone(),
                };
                let failure = Failure::new(FailureKind::Request(why));
                // A bad redirect or certificate, or a proxy's refusal, will be just as bad next
                // time.
                if e.is_redirect()
                    || e.is_builder()
                    || failure::malformed(&e)
                    || crate::tls::describe(&e).is_some()
                    || crate::proxy::refused(&e, proxies)
                {
                    return Attempt::Fail(failure);
                }
                let learned = failure::host_learned(&e, &failure.reason, proxies);
                match (learned, hop) {
                    (Some(learned), None) => Attempt::Host(failure, learned),
                    // What the hop's host learns is told without the hop, which names it.
                    (Some(_), Some(hop)) => match failure::host_learned(&e, &plain, proxies) {
                        Some(learned) => Attempt::Hop(failure, hop.clone(), learned),
                        None => Attempt::Retry(failure, None),
                    },
                    (None, _) => Attempt::Retry(failure, None),
                }
            }
        }
    }

    /// What the end of a body means: done when it has every byte, else why not.
    pub(super) fn settle(
        &self,
        t: &mut Transfer,
        streamed: Result<(), StreamError>,
        code: u16,
    ) -> Attempt {
        let with_status = |kind: FailureKind| Failure::new(kind).with_status(code);
        let cut = |what: String, t: &Transfer| FailureKind::Cut {
            what,
            have: t.have,
            total: t.total,
        };
        match streamed {
            Ok(()) => {}
            // Ctrl-C after the last byte was in (a paced read, say): the file is whole.
            Err(StreamError::Cancelled) if t.total.is_some_and(|total| t.have == total) => {}
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
                // The pieces disagree with the first response (a server that announces ranges
                // and sends the whole file, say): the file over one connection, in the note.
                t.one_stream = true;
                if !std::mem::replace(&mut t.split_fell_back, true) {
                    self.split.disagreed.fetch_add(1, Ordering::Relaxed);
                }
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
                if failure::malformed_body(&e) {
                    let what = format!("malformed response from the server ({what})");
                    return Attempt::Fail(with_status(cut(what, t)));
                }
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
}

/// `when` as an HTTP date, if it has one: from 1970 to the end of year 9999 (`httpdate` panics
/// outside that, and a file's time can be anything `touch -d` sets).
fn http_date(when: std::time::SystemTime) -> Option<String> {
    const YEAR_10000: u64 = 253_402_300_800;
    let secs = when.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    (secs < YEAR_10000).then(|| httpdate::fmt_http_date(when))
}

/// What one attempt asks the server for.
struct Ask {
    /// Resuming the bytes on disk (a validator, or an expected digest, can vouch for them).
    resuming: bool,
    proof: bool,
    /// The offset asked from (0: the whole file).
    from: u64,
    if_range: Option<String>,
    /// `-N`: the file's time, for `If-Modified-Since` (only for a whole file).
    since: Option<std::time::SystemTime>,
}

impl Ask {
    fn of(t: &Transfer) -> Ask {
        // Without a validator we cannot tell whether the server's file changed: start over,
        // unless an expected digest will prove the joined bytes (then no If-Range either: a
        // mirror's validators are its own).
        let proof = t.proof;
        let resuming =
            t.have > 0 && (proof || t.meta.as_ref().is_some_and(PartMeta::has_validator));
        let from = if resuming { t.have } else { 0 };
        let if_range = match proof {
            true => None,
            false => t
                .meta
                .as_ref()
                .and_then(PartMeta::if_range)
                .map(str::to_string),
        };
        Ask {
            resuming,
            proof,
            from,
            if_range,
            since: t.since.filter(|_| from == 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::http_date;

    #[test]
    fn only_times_http_can_write_become_dates() {
        let day = Duration::from_secs(86_400);
        assert_eq!(
            http_date(UNIX_EPOCH + day).as_deref(),
            Some("Fri, 02 Jan 1970 00:00:00 GMT")
        );
        assert_eq!(http_date(UNIX_EPOCH - day), None);
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(253_402_300_799)).as_deref(),
            Some("Fri, 31 Dec 9999 23:59:59 GMT")
        );
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(253_402_300_800)),
            None
        );
    }
}
