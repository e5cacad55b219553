//! The body-streaming hot loop: one reused buffer, reads of `--chunk-size`, writes gathered
//! from data already received, or made from the transport's own buffer when it holds a read's
//! worth or more. Shared by a whole-body download and by nothing else that streams, so both
//! `download` and `download::split` depend on it and not on each other.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::transport::Response;

/// Why streaming a body stopped.
pub(crate) enum StreamError {
    Cancelled,
    Read(io::Error),
    Write(io::Error),
    /// `written` would pass the limit.
    TooLarge,
    /// `--split`: this piece stopped because another one failed (the least telling error).
    Aborted,
    /// `--split`: a piece's answer shows that the server's file is not the one the first
    /// response described (see [`crate::download::response::join`]).
    Changed(String),
}

/// A body that can say whether its next read is already in memory, and may lend what is (see
/// [`stream_body`]).
pub(crate) trait Pending {
    fn pending(&self) -> bool {
        false
    }

    /// Body bytes already in memory that may be written from where they lie.
    fn in_memory(&self) -> &[u8] {
        &[]
    }

    /// Marks the first `n` bytes of [`Pending::in_memory`] as taken.
    fn consume(&mut self, _n: usize) {}

    /// Waits until some of the body is in memory; `false` at its end. A body that cannot lend
    /// has nothing to wait for here: its reads do the waiting.
    fn fill(&mut self) -> io::Result<bool> {
        Ok(true)
    }
}

impl Pending for Response {
    fn pending(&self) -> bool {
        !Response::in_memory(self).is_empty()
    }

    fn in_memory(&self) -> &[u8] {
        Response::in_memory(self)
    }

    fn consume(&mut self, n: usize) {
        Response::consume(self, n);
    }

    fn fill(&mut self) -> io::Result<bool> {
        Response::fill(self)
    }
}

/// The hot loop: one reused buffer, no allocation, no lock; one relaxed atomic add per chunk.
///
/// Reads are at most `chunk` bytes (`--chunk-size`), into `buf` one after another; what they
/// gathered is written to `out` in one call when `buf` has no room for another read or the body
/// has nothing more in memory, so writes are gathered only from data already received and no
/// byte is held back while the network is slow. Whatever way the loop ends, every byte read
/// has been handed to `out` (a bigger limit aside), and `written` counts what is in `out` (so a
/// resumed file starts above zero); it may not pass `limit`. When the body already holds a
/// read's worth or more in memory and `buf` is empty, that much (up to `buf`'s length) is
/// written from where it lies instead: on a fast link, copying it into `buf` first was the
/// loop's largest cost.
///
/// `before_wait` hears `written` after a write when the body has nothing more in memory, so the
/// next read may wait on the network (the body may also have ended: the callee can tell by its
/// length); it is asked again only while it returns `true`. A small body writes its resume
/// sidecar there, so a process killed during the wait leaves a part `-c` can resume, while a
/// body that arrives in one go never pays for one.
#[allow(clippy::too_many_arguments)]
pub(crate) fn stream_body(
    body: &mut (impl Read + Pending),
    out: &mut impl Write,
    buf: &mut [u8],
    chunk: usize,
    counter: &AtomicU64,
    cancel: &AtomicBool,
    written: &mut u64,
    limit: Option<u64>,
    before_wait: &mut dyn FnMut(u64) -> bool,
) -> Result<(), StreamError> {
    let limit = limit.unwrap_or(u64::MAX);
    let chunk = chunk.clamp(1, buf.len().max(1));
    let mut filled = 0;
    let mut watching = true;
    loop {
        if cancel.load(Ordering::Relaxed) {
            spill(out, buf, &mut filled, written)?;
            return Err(StreamError::Cancelled);
        }
        if filled == 0 {
            match body.fill() {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StreamError::Read(e)),
            }
            if write_in_place(body, out, buf.len(), chunk, counter, written, limit)? {
                if watching && !body.pending() {
                    watching = before_wait(*written);
                }
                continue;
            }
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
        let waits = !body.pending();
        if filled + chunk > buf.len() || waits {
            spill(out, buf, &mut filled, written)?;
        }
        if waits && watching {
            watching = before_wait(*written);
        }
    }
}

/// Writes up to `most` bytes of what `body` holds in memory straight from it, if that is a
/// read's worth (`chunk`) or more; says whether it did.
fn write_in_place(
    body: &mut (impl Read + Pending),
    out: &mut impl Write,
    most: usize,
    chunk: usize,
    counter: &AtomicU64,
    written: &mut u64,
    limit: u64,
) -> Result<bool, StreamError> {
    let n = body.in_memory().len().min(most);
    if n < chunk {
        return Ok(false);
    }
    if written.saturating_add(n as u64) > limit {
        return Err(StreamError::TooLarge);
    }
    out.write_all(&body.in_memory()[..n])
        .map_err(StreamError::Write)?;
    body.consume(n);
    *written += n as u64;
    counter.fetch_add(n as u64, Ordering::Relaxed);
    Ok(true)
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

/// After a ranged answer's last byte, its body must end: a body without a `Content-Length`
/// (chunked) that goes on is not the range it claimed ([`super::response::join`] refuses one
/// whose length says so). Not for the first answer: a 200 for the whole file is read only up to
/// its first piece.
pub(super) fn ends_there(body: &mut impl Read) -> Result<(), StreamError> {
    let mut more = [0u8; 1];
    loop {
        match body.read(&mut more) {
            Ok(0) => return Ok(()),
            Ok(_) => {
                let why = "the server sent more than the range asked for";
                return Err(StreamError::Changed(why.into()));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StreamError::Read(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::download::{CHUNK, WRITE_BEHIND};
    use std::fs::{self, File};
    use std::path::PathBuf;

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
            &mut |_| false,
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
            &mut |_| false,
        );
        assert!(r.is_ok());
        assert_eq!(
            body.seen_on_disk,
            Some(200),
            "both reads written before waiting"
        );
    }

    #[test]
    fn before_wait_hears_what_is_on_disk_once_when_memory_runs_dry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        let mut file = File::create(&path).unwrap();
        let mut body = Arrivals {
            path,
            step: 0,
            seen_on_disk: None,
        };
        let mut heard = Vec::new();
        let r = stream_body(
            &mut body,
            &mut file,
            &mut vec![0; WRITE_BEHIND],
            CHUNK,
            &AtomicU64::new(0),
            &AtomicBool::new(false),
            &mut 0,
            None,
            &mut |written| {
                heard.push(written);
                false
            },
        );
        assert!(r.is_ok());
        assert_eq!(
            heard,
            [200],
            "once, before the wait, with both reads written"
        );
    }

    /// Frames as the transport holds them: one in memory at a time, lent where it lies or
    /// copied out by `read`; the next one waited for only when it is used up.
    struct Frames {
        queue: Vec<Vec<u8>>,
        current: Vec<u8>,
        copied: usize,
    }

    impl Frames {
        fn new(queue: Vec<Vec<u8>>) -> Frames {
            Frames {
                queue,
                current: Vec::new(),
                copied: 0,
            }
        }
    }

    impl Pending for Frames {
        fn pending(&self) -> bool {
            !self.current.is_empty()
        }

        fn in_memory(&self) -> &[u8] {
            &self.current
        }

        fn consume(&mut self, n: usize) {
            self.current.drain(..n);
        }

        fn fill(&mut self) -> io::Result<bool> {
            if self.current.is_empty() && !self.queue.is_empty() {
                self.current = self.queue.remove(0);
            }
            Ok(!self.current.is_empty())
        }
    }

    impl Read for Frames {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.fill()?;
            let n = buf.len().min(self.current.len());
            buf[..n].copy_from_slice(&self.current[..n]);
            self.current.drain(..n);
            self.copied += n;
            Ok(n)
        }
    }

    #[test]
    fn frames_of_a_read_or_more_are_written_where_they_lie_and_the_rest_copied() {
        let frames: Vec<Vec<u8>> = [100_000, 3000, CHUNK, 70_000]
            .iter()
            .enumerate()
            .map(|(i, &len)| (0..len).map(|b| (b * 7 + i) as u8).collect())
            .collect();
        let expected: Vec<u8> = frames.concat();
        let mut body = Frames::new(frames);
        let (counter, mut written, mut out) = (AtomicU64::new(0), 0, Vec::new());
        let r = stream_body(
            &mut body,
            &mut out,
            &mut vec![0; WRITE_BEHIND],
            CHUNK,
            &counter,
            &AtomicBool::new(false),
            &mut written,
            None,
            &mut |_| true,
        );
        assert!(r.is_ok());
        assert!(out == expected, "the same bytes in the same order");
        assert_eq!((written, counter.into_inner()), (181_192, 181_192));
        // 100 000: 65 536 lent (the buffer's length), then 34 464; 3000, under a read: copied;
        // 8192 lent; 70 000: 65 536 lent, then 4464 left under a read: copied.
        assert_eq!(body.copied, 3000 + 4464);

        let mut body = Frames::new(vec![vec![1; 20_000]]);
        let r = stream_body(
            &mut body,
            &mut Vec::new(),
            &mut vec![0; WRITE_BEHIND],
            CHUNK,
            &AtomicU64::new(0),
            &AtomicBool::new(false),
            &mut 0,
            Some(19_999),
            &mut |_| true,
        );
        assert!(matches!(r, Err(StreamError::TooLarge)), "the limit holds");
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
            &mut |_| false,
        );
        assert!(matches!(r, Err(StreamError::Cancelled)));
        assert_eq!(bytes, 0);
    }
}
