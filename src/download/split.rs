//! Segmented downloads (`--split N`): one file, N byte ranges over N connections, written with
//! positional writes into the one preallocated `NAME.part` that [`crate::download`] opened.
//!
//! The first GET is already in flight when we decide to split: its body serves as piece 0 (we
//! read only the first range from it, then drop it), so splitting costs no extra round trip. The
//! other pieces are ranged GETs on scoped threads of the worker that owns the file, so a run holds
//! at most `jobs × N` connections and the pool's backpressure is unchanged.
//!
//! Promises kept here:
//! - a piece never writes outside its range: reads are capped at what is left of the range, and a
//!   reply is refused before any byte is written unless the one join rule
//!   ([`response::accept_piece`]) accepts it: exactly the range asked for, of a file of exactly the
//!   planned length, with the first response's validator (a server that ignores `If-Range` and
//!   sends a piece of another version is caught here); such a piece fails the whole split with
//!   [`StreamError::Changed`], and the caller fetches the file again over one connection;
//! - a piece that merely failed is retried on its own, resuming where it stopped
//!   ([`PIECE_RETRIES`] times);
//! - the part is sparse while pieces run, and the caller's sidecar says so (written before the
//!   part is preallocated, listing the ranges done): holes are never taken for data, a process
//!   that dies leaves a part the next `-c` recognises, and `-c --split N` fetches only the
//!   missing ranges ([`fill_gaps`]), over N connections;
//! - pieces go only to the origin the user named, carrying the URL's own credentials (see
//!   [`plan`]).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;

use crate::trace::{self, Exchange};
use crate::transport::{self, Client, RequestBuilder, Response};
use reqwest::header::{ACCEPT_RANGES, IF_RANGE, RANGE};
use reqwest::StatusCode;
use url::Url;

use super::response::{self, ResponseFacts};
use super::sidecar::PartMeta;

use super::stream::StreamError;

/// Pieces are never smaller than this: below it the extra request costs more than it buys.
pub(crate) const MIN_PIECE: u64 = 64 * 1024;

/// Most pieces one file is cut into (aria2c's limit too).
pub(crate) const MAX_SPLIT: usize = 16;

/// How many times one piece is requested again after a failure.
pub(crate) const PIECE_RETRIES: u32 = 2;

/// The `--split` setting of a run, and what happened to it (read by the main thread at the end).
#[derive(Debug, Default)]
pub(crate) struct Split {
    /// Connections per file; 1 means no splitting.
    pub(crate) pieces: usize,
    /// Files that were to be split but whose server gave no length, no range support or no
    /// validator (a strong ETag or Last-Modified), or that were redirected to another origin.
    pub(crate) fell_back: AtomicUsize,
    /// Files whose pieces disagreed with the first response (another range than asked, a body
    /// of another length than the range, another version of the file): fetched again over one
    /// connection, for another reason.
    pub(crate) disagreed: AtomicUsize,
}

impl Split {
    pub(crate) fn new(pieces: usize) -> Split {
        Split {
            pieces,
            fell_back: AtomicUsize::new(0),
            disagreed: AtomicUsize::new(0),
        }
    }

    /// The one-time notes for files that came over one connection after all, by why.
    pub(crate) fn notes(&self) -> Vec<String> {
        let whys = [
            (
                &self.fell_back,
                "from servers without byte-range support or a validator to check pieces by (or \
                 redirected to another origin) came over one connection",
            ),
            (
                &self.disagreed,
                "whose pieces disagreed with the first response (another range than asked, a \
                 body longer or shorter than its range, or the file changed) came again over one \
                 connection",
            ),
        ];
        let count = |(n, why): (&AtomicUsize, &str)| {
            let n = n.load(Ordering::Relaxed);
            let files = if n == 1 { "file" } else { "files" };
            (n > 0).then(|| format!("note: --split {}: {n} {files} {why}", self.pieces))
        };
        whys.into_iter().filter_map(count).collect()
    }
}

/// One byte range `start..end` of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Range {
    pub(crate) start: u64,
    pub(crate) end: u64,
}

impl Range {
    fn len(self) -> u64 {
        self.end - self.start
    }
}

/// How a file of `total` bytes is cut into at most `pieces` ranges of at least [`MIN_PIECE`].
pub(crate) fn ranges(total: u64, pieces: usize) -> Vec<Range> {
    // Rounded down: a file of one piece and a byte more is one range, not two of half a piece.
    let by_size = (total / MIN_PIECE).max(1);
    let n = (pieces.max(1) as u64).min(by_size);
    let base = total / n;
    let extra = total % n;
    let mut start = 0;
    (0..n)
        .map(|i| {
            let len = base + u64::from(i < extra);
            let r = Range {
                start,
                end: start + len,
            };
            start += len;
            r
        })
        .collect()
}

/// Whether this response to a GET of `asked` (the URL the user gave) can be split: a 200 with a
/// length, `Accept-Ranges: bytes` and a validator the pieces can be checked against (a strong
/// ETag or Last-Modified, unless `proof`, an expected checksum, will check the whole file), from
/// the origin asked. Returns the ranges, or `None` to
/// stream it whole, counting a fallback when one was wanted, once per file: `counted` is the
/// file's own flag, so a file whose retries fall back again is still one file in the note.
///
/// After a redirect to another origin the pieces could only carry the user's credentials
/// (`--user`, `-H Authorization`, the URL's own) to a server they were not meant for, or go
/// without them: such a file comes over the one stream the client already vetted.
pub(crate) fn plan(
    split: &Split,
    asked: &Url,
    response: &Response,
    total: Option<u64>,
    proof: bool,
    counted: &mut bool,
) -> Option<Vec<Range>> {
    if split.pieces < 2 {
        return None;
    }
    let mut fall_back = || {
        if !std::mem::replace(counted, true) {
            split.fell_back.fetch_add(1, Ordering::Relaxed);
        }
        None
    };
    if response.url().origin() != asked.origin() {
        return if total.is_some_and(|t| t >= 2 * MIN_PIECE) {
            fall_back()
        } else {
            None
        };
    }
    let accepts = response
        .headers()
        .get(ACCEPT_RANGES)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|u| u.trim().eq_ignore_ascii_case("bytes")));
    // Without a validator nothing could tell a piece of another version from one of this one.
    let checkable =
        proof || PartMeta::from_response(String::new(), response.headers(), None).has_validator();
    match total {
        Some(total) if accepts && checkable && response.status() == StatusCode::OK => {
            let ranges = ranges(total, split.pieces);
            (ranges.len() > 1).then_some(ranges)
        }
        // A file too small to split is not a fallback worth a note.
        Some(total) if total < 2 * MIN_PIECE => None,
        _ => fall_back(),
    }
}

/// What the pieces share.
pub(crate) struct Pieces<'a> {
    pub(crate) client: &'a Client,
    /// The URL the user gave: its credentials go on every piece.
    pub(crate) asked: &'a Url,
    pub(crate) file: &'a File,
    pub(crate) counter: &'a AtomicU64,
    pub(crate) cancel: &'a AtomicBool,
    pub(crate) chunk: usize,
    /// An expected checksum will check the whole file (see [`response::join`]).
    pub(crate) proof: bool,
    /// `--limit-rate`, shared with every other download.
    pub(crate) rate: Option<&'a crate::ratelimit::RateLimit>,
    /// Where each piece's requests are logged, when the run keeps a trace.
    pub(crate) log: Option<&'a std::sync::Mutex<Vec<Exchange>>>,
}

/// The byte ranges (`start..end`, in order, apart) of a sparse part that hold genuine bytes.
pub(crate) type Done = Vec<(u64, u64)>;

/// Downloads `ranges` into `file`, piece 0 from `first` (the response already received, which
/// `known` describes: its validators and the file's total). The file is preallocated to its
/// full size first. `done` ends as the ranges of genuine bytes written.
pub(crate) fn run(
    p: &Pieces<'_>,
    first: Response,
    ranges: &[Range],
    known: &PartMeta,
    done: &mut Done,
) -> Result<(), StreamError> {
    let total = ranges.last().map_or(0, |r| r.end);
    // The redirect target (same origin, see `plan`), with the user's credentials: the client
    // moved them from the URL into a header for the first request and dropped them from its URL.
    let mut url = first.url().clone();
    if !p.asked.username().is_empty() || p.asked.password().is_some() {
        let _ = url.set_username(p.asked.username());
        let _ = url.set_password(p.asked.password());
    }
    // Give the file its full size up front; pieces then fill it with positional writes.
    p.file.set_len(total).map_err(StreamError::Write)?;
    let known = PartMeta {
        total: Some(total),
        ..known.clone()
    };
    let source = Source {
        url: &url,
        known: &known,
        proof: p.proof,
    };
    done.clear();
    fill(p, &source, Some(first), ranges, done)
}

/// Fetches what a sparse part of the file `known` describes still lacks (everything outside
/// `done`), over at most `connections` ranged requests at a time, from the URL the user gave;
/// `done` grows with every byte written.
pub(crate) fn fill_gaps(
    p: &Pieces<'_>,
    known: &PartMeta,
    done: &mut Done,
    connections: usize,
) -> Result<(), StreamError> {
    let total = known.total.unwrap_or(0);
    let pieces = cut(&gaps(done, total), connections);
    let source = Source {
        url: p.asked,
        known,
        proof: p.proof,
    };
    for batch in pieces.chunks(connections.max(1)) {
        fill(p, &source, None, batch, done)?;
    }
    Ok(())
}

/// Downloads `ranges` at once (the first from `first` when given), adding what each wrote to
/// `done`; the most telling error of any piece.
fn fill(
    p: &Pieces<'_>,
    source: &Source<'_>,
    first: Option<Response>,
    ranges: &[Range],
    done: &mut Done,
) -> Result<(), StreamError> {
    let abort = AtomicBool::new(false);
    let written: Vec<AtomicU64> = ranges.iter().map(|_| AtomicU64::new(0)).collect();
    let piece = |i: usize, first: Option<Response>| -> Result<(), StreamError> {
        let result = fetch_piece(p, source, (i, ranges[i]), first, &written[i], &abort);
        if result.is_err() {
            abort.store(true, Ordering::Relaxed);
        }
        result
    };
    let results = run_pieces(ranges.len(), first, &piece);
    for (r, w) in ranges.iter().zip(&written) {
        let w = w.load(Ordering::Relaxed);
        if w > 0 {
            done.push((r.start, r.start + w));
        }
    }
    merge(done);
    match most_telling(results) {
        None if ranges
            .iter()
            .zip(&written)
            .all(|(r, w)| w.load(Ordering::Relaxed) == r.len()) =>
        {
            Ok(())
        }
        None => Err(StreamError::Read(io::Error::other(
            "the pieces did not add up to the file",
        ))),
        Some(e) => Err(e),
    }
}

/// Sorts `done` and joins ranges that touch or overlap.
fn merge(done: &mut Done) {
    done.sort_unstable();
    let mut joined: Done = Vec::with_capacity(done.len());
    for &(start, end) in done.iter() {
        match joined.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => joined.push((start, end)),
        }
    }
    *done = joined;
}

/// What `done` lacks of a file of `total` bytes.
fn gaps(done: &Done, total: u64) -> Vec<Range> {
    let mut at = 0;
    let mut out = Vec::new();
    for &(start, end) in done {
        if start > at {
            out.push(Range {
                start: at,
                end: start,
            });
        }
        at = at.max(end);
    }
    if at < total {
        out.push(Range {
            start: at,
            end: total,
        });
    }
    out
}

/// Cuts the largest gaps in two until there are `connections` pieces or none is worth cutting
/// (see [`MIN_PIECE`]).
fn cut(gaps: &[Range], connections: usize) -> Vec<Range> {
    let mut pieces = gaps.to_vec();
    while pieces.len() < connections {
        let Some((i, largest)) = pieces
            .iter()
            .copied()
            .enumerate()
            .max_by_key(|(_, r)| r.len())
        else {
            break;
        };
        if largest.len() < 2 * MIN_PIECE {
            break;
        }
        let middle = largest.start + largest.len() / 2;
        pieces[i].end = middle;
        pieces.insert(
            i + 1,
            Range {
                start: middle,
                end: largest.end,
            },
        );
    }
    pieces
}

/// Runs `piece` for pieces `1..n` on threads of their own and piece 0 (from `first`, if any)
/// on this one; returns every piece's result.
fn run_pieces<F>(n: usize, first: Option<Response>, piece: &F) -> Vec<Result<(), StreamError>>
where
    F: Fn(usize, Option<Response>) -> Result<(), StreamError> + Sync,
{
    let mut results = Vec::with_capacity(n);
    thread::scope(|scope| {
        let mut handles = Vec::with_capacity(n.saturating_sub(1));
        let mut inline = Vec::new();
        for i in 1..n {
            match thread::Builder::new()
                .name(format!("fetchpar-piece-{i}"))
                .spawn_scoped(scope, move || piece(i, None))
            {
                Ok(h) => handles.push(h),
                // Out of threads: this worker fetches that piece itself, after piece 0.
                Err(_) => inline.push(i),
            }
        }
        if n > 0 {
            results.push(piece(0, first));
        }
        for i in inline {
            results.push(piece(i, None));
        }
        for h in handles {
            results.push(h.join().unwrap_or_else(|_| {
                Err(StreamError::Read(io::Error::other(
                    "a piece's thread panicked",
                )))
            }));
        }
    });
    results
}

/// The most telling error: a cancel, else a changed file, else one that is not just "another
/// piece failed".
fn most_telling(results: Vec<Result<(), StreamError>>) -> Option<StreamError> {
    let rank = |e: &StreamError| match e {
        StreamError::Cancelled => 0,
        StreamError::Changed(_) => 1,
        StreamError::Aborted => 3,
        _ => 2,
    };
    results.into_iter().filter_map(Result::err).min_by_key(rank)
}

/// How [`StreamError::Aborted`] reads in an error line.
pub(crate) const ABORTED: &str = "stopped: another piece failed";

/// What every ranged request of one file asks for.
struct Source<'a> {
    url: &'a Url,
    /// The first response's validators (its strong ETag or date goes out as `If-Range`) and the
    /// length the pieces were planned for.
    known: &'a PartMeta,
    /// An expected checksum will check the whole file.
    proof: bool,
}

/// One piece, with its own retries; `done` counts the bytes of the range written so far.
fn fetch_piece(
    p: &Pieces<'_>,
    source: &Source<'_>,
    (index, range): (usize, Range),
    mut first: Option<Response>,
    done: &AtomicU64,
    abort: &AtomicBool,
) -> Result<(), StreamError> {
    let mut buf = vec![0u8; super::buffer_for(p.chunk, Some(range.len()))];
    let mut attempt = 0;
    loop {
        let written = done.load(Ordering::Relaxed);
        let result = match first.take() {
            Some(mut response) => copy_range(p, &mut response, range, done, abort, &mut buf),
            None => {
                let from = range.start + written;
                let request = range_request(p.client, source, from, range.end);
                let mut log = p.log.map(|_| piece_exchange(source, index, &request));
                let result =
                    send_range(request, source, from, range.end).and_then(|mut response| {
                        if let Some(e) = log.as_mut() {
                            e.headers = Some(std::time::Instant::now());
                            e.status = Some(response.status().as_u16());
                            e.setup = response.setup();
                            e.version = Some(response.version());
                            e.response_headers = trace::headers_of(response.headers());
                        }
                        copy_range(p, &mut response, range, done, abort, &mut buf)?;
                        super::stream::ends_there(&mut response)
                    });
                if let (Some(mut e), Some(sink)) = (log, p.log) {
                    e.end = Some(std::time::Instant::now());
                    e.bytes = done.load(Ordering::Relaxed) - written;
                    e.error = result.as_ref().err().map(piece_error);
                    if let Ok(mut sink) = sink.lock() {
                        sink.push(e);
                    }
                }
                result
            }
        };
        match result {
            Err(StreamError::Read(_))
                if attempt < PIECE_RETRIES
                    && !abort.load(Ordering::Relaxed)
                    && !p.cancel.load(Ordering::Relaxed) =>
            {
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A piece's error as the trace shows it.
fn piece_error(e: &StreamError) -> String {
    match e {
        StreamError::Cancelled => "interrupted".into(),
        StreamError::Read(e) => format!("read: {e}"),
        StreamError::Write(e) => format!("write: {e}"),
        StreamError::TooLarge => "too large".into(),
        StreamError::Aborted => ABORTED.into(),
        StreamError::Changed(why) => format!("changed: {why}"),
    }
}

/// The trace of a piece's request, before it is sent.
fn piece_exchange(source: &Source<'_>, index: usize, request: &RequestBuilder<'_>) -> Exchange {
    Exchange {
        url: crate::redact::url(source.url),
        request_headers: trace::request_headers(&request.headers_to_send()),
        sent: Some(std::time::Instant::now()),
        piece: Some(index),
        ..Exchange::default()
    }
}

/// A ranged GET for `start..end`, over a connection of its own.
fn range_request<'c>(
    client: &'c Client,
    source: &Source<'_>,
    start: u64,
    end: u64,
) -> RequestBuilder<'c> {
    let request = client
        .get(source.url.clone())
        .header(RANGE, format!("bytes={start}-{}", end - 1));
    let request = match source.known.if_range() {
        Some(v) => request.header(IF_RANGE, v),
        None => request,
    };
    request.separate_connection()
}

/// Sends a piece's request; its response is accepted only as [`response::accept_piece`] says.
fn send_range(
    request: RequestBuilder<'_>,
    source: &Source<'_>,
    start: u64,
    end: u64,
) -> Result<Response, StreamError> {
    let url = source.url;
    let response = request.send().map_err(|e| match e {
        transport::Error::Cancelled => StreamError::Cancelled,
        e => StreamError::Read(io::Error::other(e)),
    })?;
    let facts = ResponseFacts::of(&response, url);
    match response::accept_piece(&facts, start, end, source.known, source.proof) {
        Ok(()) => Ok(response),
        // Another file: no retry of this piece can fix that.
        Err(m) if m.file_changed() => Err(StreamError::Changed(m.line(start, Some(end)))),
        Err(m) => Err(StreamError::Read(io::Error::other(
            m.line(start, Some(end)),
        ))),
    }
}

/// The per-piece hot loop: reads capped at what is left of the range, positional writes, one
/// relaxed atomic add per chunk, no allocation.
fn copy_range(
    p: &Pieces<'_>,
    body: &mut impl Read,
    range: Range,
    done: &AtomicU64,
    abort: &AtomicBool,
    buf: &mut [u8],
) -> Result<(), StreamError> {
    let mut body = crate::ratelimit::Throttled {
        inner: body,
        limit: p.rate,
        cancel: p.cancel,
    };
    let mut written = done.load(Ordering::Relaxed);
    while written < range.len() {
        if p.cancel.load(Ordering::Relaxed) {
            return Err(StreamError::Cancelled);
        }
        if abort.load(Ordering::Relaxed) {
            return Err(StreamError::Aborted);
        }
        let want = buf.len().min((range.len() - written) as usize);
        let n = match body.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(StreamError::Read(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed early",
                )))
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StreamError::Read(e)),
        };
        p.file
            .write_all_at(&buf[..n], range.start + written)
            .map_err(StreamError::Write)?;
        written += n as u64;
        done.store(written, Ordering::Relaxed);
        p.counter.fetch_add(n as u64, Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_file_exactly_once() {
        for (total, pieces) in [
            (1 << 20, 4),
            (1_000_003, 3),
            (10, 4),
            (0, 4),
            (5 * MIN_PIECE, 16),
            (MIN_PIECE + 1, 4),
            (100_000, 4),
            (2 * MIN_PIECE - 1, 4),
            (5 * MIN_PIECE + 100, 16),
        ] {
            let rs = ranges(total, pieces);
            assert!(!rs.is_empty());
            assert_eq!(rs[0].start, 0);
            assert_eq!(rs.last().unwrap().end, total);
            for w in rs.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
            assert!(rs.len() <= pieces);
            if rs.len() > 1 {
                assert!(rs.iter().all(|r| r.len() >= MIN_PIECE));
            }
        }
        assert_eq!(ranges(5 * MIN_PIECE, 16).len(), 5);
        assert_eq!(ranges(MIN_PIECE, 4).len(), 1);
        // Under two pieces' worth: one range (the README: files under 128 KiB never split).
        assert_eq!(ranges(2 * MIN_PIECE - 1, 4).len(), 1);
        assert_eq!(ranges(2 * MIN_PIECE, 4).len(), 2);
    }

    #[test]
    fn gaps_are_what_done_lacks_cut_for_the_connections() {
        let mut done = vec![(300, 400), (0, 100), (100, 150)];
        merge(&mut done);
        assert_eq!(done, vec![(0, 150), (300, 400)]);
        let r = |start, end| Range { start, end };
        assert_eq!(gaps(&done, 500), vec![r(150, 300), r(400, 500)]);
        assert_eq!(gaps(&Vec::new(), 500), vec![r(0, 500)]);
        assert_eq!(gaps(&vec![(0, 500)], 500), Vec::new());
        // Small gaps stay whole; a large one is cut until there are enough pieces.
        assert_eq!(cut(&gaps(&done, 500), 4), gaps(&done, 500));
        let big = 4 * MIN_PIECE;
        let pieces = cut(&[r(0, big)], 4);
        assert_eq!(pieces.len(), 4);
        assert_eq!(pieces[0].start, 0);
        assert_eq!(pieces[3].end, big);
        for w in pieces.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        assert_eq!(cut(&[r(0, big)], 1), vec![r(0, big)]);
    }
}
