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
//!   reply whose `Content-Range` is not exactly the range asked for, of a file of exactly the
//!   planned length, is refused before any byte is written;
//! - a failed piece is retried on its own, resuming where it stopped ([`PIECE_RETRIES`] times),
//!   and `If-Range` makes a server that changed the file answer 200, which fails the piece
//!   rather than mixing two versions;
//! - on failure the `.part` is cut back to its contiguous prefix of genuine bytes (holes never
//!   survive: a later resume could not tell them from data); while pieces run, the caller keeps
//!   no sidecar, so a process that dies meanwhile leaves nothing `-c` would trust;
//! - pieces go only to the origin the user named, carrying the URL's own credentials (see
//!   [`plan`]).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;

use crate::transport::{self, Client, Response};
use reqwest::header::{ACCEPT_RANGES, CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE};
use reqwest::StatusCode;

use crate::resume::{parse_content_range, ContentRange};
use url::Url;

use crate::download::StreamError;

/// Pieces are never smaller than this: below it the extra request costs more than it buys.
pub const MIN_PIECE: u64 = 64 * 1024;

/// Most pieces one file is cut into (aria2c's limit too).
pub const MAX_SPLIT: usize = 16;

/// How many times one piece is requested again after a failure.
pub const PIECE_RETRIES: u32 = 2;

/// The `--split` setting of a run, and what happened to it (read by the main thread at the end).
#[derive(Debug, Default)]
pub struct Split {
    /// Connections per file; 1 means no splitting.
    pub pieces: usize,
    /// Files that were to be split but whose server gave no length or no range support, or
    /// that were redirected to another origin.
    pub fell_back: AtomicUsize,
}

impl Split {
    pub fn new(pieces: usize) -> Split {
        Split {
            pieces,
            fell_back: AtomicUsize::new(0),
        }
    }

    /// The one-time note for files that came over one connection after all, if any did.
    pub fn note(&self) -> Option<String> {
        let n = self.fell_back.load(Ordering::Relaxed);
        (n > 0).then(|| {
            format!(
                "note: --split {}: {n} {} from servers without byte-range support (or redirected \
                 to another origin) came over one connection",
                self.pieces,
                if n == 1 { "file" } else { "files" }
            )
        })
    }
}

/// One byte range `start..end` of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    fn len(self) -> u64 {
        self.end - self.start
    }
}

/// How a file of `total` bytes is cut into at most `pieces` ranges of at least [`MIN_PIECE`].
pub fn ranges(total: u64, pieces: usize) -> Vec<Range> {
    let by_size = total.div_ceil(MIN_PIECE).max(1);
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
/// length and `Accept-Ranges: bytes`, from the origin asked. Returns the ranges, or `None` to
/// stream it whole, counting a fallback when one was wanted, once per file: `counted` is the
/// file's own flag, so a file whose retries fall back again is still one file in the note.
///
/// After a redirect to another origin the pieces could only carry the user's credentials
/// (`--user`, `-H Authorization`, the URL's own) to a server they were not meant for, or go
/// without them: such a file comes over the one stream the client already vetted.
pub fn plan(
    split: &Split,
    asked: &Url,
    response: &Response,
    total: Option<u64>,
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
    match total {
        Some(total) if accepts && response.status() == StatusCode::OK => {
            let ranges = ranges(total, split.pieces);
            (ranges.len() > 1).then_some(ranges)
        }
        // A file too small to split is not a fallback worth a note.
        Some(total) if total < 2 * MIN_PIECE => None,
        _ => fall_back(),
    }
}

/// What the pieces share.
pub struct Pieces<'a> {
    pub client: &'a Client,
    /// The URL the user gave: its credentials go on every piece.
    pub asked: &'a Url,
    pub file: &'a File,
    pub counter: &'a AtomicU64,
    pub cancel: &'a AtomicBool,
    pub chunk: usize,
}

/// Downloads `ranges` into `file`, piece 0 from `first` (the response already received).
/// `bytes` ends as the number of body bytes received. On error the file is cut back to its
/// contiguous prefix of genuine bytes (possibly empty).
pub fn run(
    p: &Pieces<'_>,
    first: Response,
    ranges: &[Range],
    bytes: &mut u64,
) -> Result<(), StreamError> {
    let total = ranges.last().map_or(0, |r| r.end);
    // The redirect target (same origin, see `plan`), with the user's credentials: the client
    // moved them from the URL into a header for the first request and dropped them from its URL.
    let mut url = first.url().clone();
    if !p.asked.username().is_empty() || p.asked.password().is_some() {
        let _ = url.set_username(p.asked.username());
        let _ = url.set_password(p.asked.password());
    }
    let validator = validator(&first);
    // Give the file its full size up front; pieces then fill it with positional writes.
    p.file.set_len(total).map_err(StreamError::Write)?;
    let abort = AtomicBool::new(false);
    let done: Vec<AtomicU64> = ranges.iter().map(|_| AtomicU64::new(0)).collect();
    let piece = |i: usize, first: Option<Response>| -> Result<(), StreamError> {
        let source = Source {
            url: &url,
            validator: validator.as_deref(),
            total,
        };
        let result = fetch_piece(p, &source, ranges[i], first, &done[i], &abort);
        if result.is_err() {
            abort.store(true, Ordering::Relaxed);
        }
        result
    };
    let mut results: Vec<Result<(), StreamError>> = Vec::with_capacity(ranges.len());
    thread::scope(|scope| {
        let mut handles = Vec::with_capacity(ranges.len() - 1);
        let mut inline = Vec::new();
        for i in 1..ranges.len() {
            let piece = &piece;
            match thread::Builder::new()
                .name(format!("fetchpar-piece-{i}"))
                .spawn_scoped(scope, move || piece(i, None))
            {
                Ok(h) => handles.push(h),
                // Out of threads: this worker fetches that piece itself, after piece 0.
                Err(_) => inline.push(i),
            }
        }
        results.push(piece(0, Some(first)));
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
    *bytes = done.iter().map(|d| d.load(Ordering::Relaxed)).sum();
    // Report the most telling error: a cancel, else one that is not just "another piece failed".
    let errors: Vec<StreamError> = results.into_iter().filter_map(Result::err).collect();
    let rank = |e: &StreamError| match e {
        StreamError::Cancelled => 0,
        StreamError::Read(e) if e.to_string() == ABORTED => 2,
        _ => 1,
    };
    let first_err = errors.into_iter().min_by_key(rank);
    match first_err {
        None if *bytes == total => Ok(()),
        None => Err(StreamError::Read(io::Error::other(format!(
            "pieces add up to {} of {total} bytes",
            *bytes
        )))),
        Some(e) => {
            let prefix = contiguous_prefix(ranges, &done);
            *bytes = prefix;
            p.file.set_len(prefix).map_err(StreamError::Write)?;
            Err(e)
        }
    }
}

const ABORTED: &str = "stopped: another piece failed";

/// Bytes from the start of the file that are all genuine: whole pieces, then the done part of
/// the first unfinished one.
fn contiguous_prefix(ranges: &[Range], done: &[AtomicU64]) -> u64 {
    let mut prefix = 0;
    for (r, d) in ranges.iter().zip(done) {
        let d = d.load(Ordering::Relaxed);
        prefix = r.start + d;
        if d < r.len() {
            break;
        }
    }
    prefix
}

/// A strong ETag, else Last-Modified: sent as `If-Range` so a changed file is not mixed in.
fn validator(response: &Response) -> Option<String> {
    let headers = response.headers();
    let etag = headers
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.starts_with("W/"));
    etag.or_else(|| headers.get(LAST_MODIFIED).and_then(|v| v.to_str().ok()))
        .map(str::to_string)
}

/// What every ranged request of one file asks for.
struct Source<'a> {
    url: &'a Url,
    /// Sent as `If-Range`.
    validator: Option<&'a str>,
    /// The length the pieces were planned for: a 206 of any other file is refused.
    total: u64,
}

/// One piece, with its own retries; `done` counts the bytes of the range written so far.
fn fetch_piece(
    p: &Pieces<'_>,
    source: &Source<'_>,
    range: Range,
    mut first: Option<Response>,
    done: &AtomicU64,
    abort: &AtomicBool,
) -> Result<(), StreamError> {
    let mut buf = vec![0u8; p.chunk];
    let mut attempt = 0;
    loop {
        let written = done.load(Ordering::Relaxed);
        let result = match first.take() {
            Some(mut response) => copy_range(p, &mut response, range, done, abort, &mut buf),
            None => request_range(p.client, source, range.start + written, range.end).and_then(
                |mut response| copy_range(p, &mut response, range, done, abort, &mut buf),
            ),
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

/// A ranged GET for `start..end`, accepted only as a 206 for exactly that range of a file of
/// exactly `total` bytes (without a validator, the length is all that shows a changed file).
fn request_range(
    client: &Client,
    source: &Source<'_>,
    start: u64,
    end: u64,
) -> Result<Response, StreamError> {
    let Source {
        url,
        validator,
        total,
    } = *source;
    let mut request = client
        .get(url.clone())
        .header(RANGE, format!("bytes={start}-{}", end - 1));
    if let Some(v) = validator {
        request = request.header(IF_RANGE, v);
    }
    let response = request.separate_connection().send().map_err(|e| match e {
        transport::Error::Cancelled => StreamError::Cancelled,
        e => StreamError::Read(io::Error::other(e)),
    })?;
    let code = response.status().as_u16();
    if code != 206 {
        // A 200 answers an If-Range whose validator no longer matches; a 416, a range past a
        // shorter file. Any other status says nothing about the file.
        let hint = if matches!(code, 200 | 416) {
            " (the file may have changed)"
        } else {
            ""
        };
        return Err(StreamError::Read(io::Error::other(format!(
            "a ranged request got HTTP {code} instead of 206{hint}"
        ))));
    }
    let content_range = response
        .headers()
        .get(CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match parse_content_range(content_range) {
        Some(ContentRange::Bytes {
            start: s,
            end: e,
            total: t,
        }) if s == start && e == end - 1 => match t {
            Some(t) if t == total => Ok(response),
            Some(t) => Err(StreamError::Read(io::Error::other(format!(
                "the file changed on the server (length {t}, was {total})"
            )))),
            None => Err(StreamError::Read(io::Error::other(format!(
                "the file changed on the server (length unknown, was {total})"
            )))),
        },
        _ => Err(StreamError::Read(io::Error::other(format!(
            "asked for bytes {start}-{} but the server sent '{content_range}'",
            end - 1
        )))),
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
    let mut written = done.load(Ordering::Relaxed);
    while written < range.len() {
        if p.cancel.load(Ordering::Relaxed) {
            return Err(StreamError::Cancelled);
        }
        if abort.load(Ordering::Relaxed) {
            return Err(StreamError::Read(io::Error::other(ABORTED)));
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
    }

    #[test]
    fn prefix_stops_at_the_first_hole() {
        let rs = ranges(4 * MIN_PIECE, 4);
        let done: Vec<AtomicU64> = [MIN_PIECE, 10, MIN_PIECE, 0]
            .iter()
            .map(|&d| AtomicU64::new(d))
            .collect();
        assert_eq!(contiguous_prefix(&rs, &done), MIN_PIECE + 10);
        let done: Vec<AtomicU64> = [0, MIN_PIECE, 0, 0]
            .iter()
            .map(|&d| AtomicU64::new(d))
            .collect();
        assert_eq!(contiguous_prefix(&rs, &done), 0);
    }
}
