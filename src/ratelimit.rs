//! `--limit-rate`: the whole run's receiving rate, shared by every download.
//!
//! One atomic "theoretical arrival time" (the generic cell rate algorithm): each read of n bytes
//! pushes it n / RATE further, and the reader sleeps until it is no more than one burst ahead of
//! the clock. Downloads queue on the same line, so each gets its turn in the order its reads
//! came: fair without a lock, one compare-and-swap per chunk. Sleeping between reads lets the
//! kernel's receive window fill, which slows the sender: no bytes are dropped or buffered here.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::download::stream::Pending;

/// The longest single sleep before looking at the cancel flag again.
const SLICE: Duration = Duration::from_millis(50);

/// Sleeps shorter than this are carried over to the next read instead of taken: a sleep costs a
/// system call and at least this much timer slack.
const MIN_SLEEP: Duration = Duration::from_millis(1);

pub(crate) struct RateLimit {
    /// Bytes per second.
    rate: u64,
    /// How far ahead of the clock the line may run, in nanoseconds (one burst of bytes).
    tolerance: u64,
    start: Instant,
    /// Nanoseconds since `start` at which the bytes taken so far are due.
    due: AtomicU64,
}

impl RateLimit {
    /// A limit of `rate` bytes per second; bursts of up to an eighth of a second's worth (at
    /// least 16 KiB), so that one read is never held back behind its own size.
    pub(crate) fn new(rate: u64) -> RateLimit {
        let rate = rate.max(1);
        RateLimit {
            rate,
            tolerance: nanos_for(Self::burst_for(rate), rate),
            start: Instant::now(),
            due: AtomicU64::new(0),
        }
    }

    /// The bytes that may pass at once.
    pub(crate) fn burst_for(rate: u64) -> u64 {
        (rate / 8).max(16 * 1024)
    }

    /// Takes `n` bytes from the line at `now` (nanoseconds since start); returns how long the
    /// reader must wait before going on.
    fn take_at(&self, n: usize, now: u64) -> Duration {
        let cost = nanos_for(n as u64, self.rate);
        let mut due = self.due.load(Ordering::Relaxed);
        loop {
            let next = due.max(now).saturating_add(cost);
            match self
                .due
                .compare_exchange_weak(due, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    let wait = next.saturating_sub(self.tolerance).saturating_sub(now);
                    return Duration::from_nanos(wait);
                }
                Err(actual) => due = actual,
            }
        }
    }

    /// Takes `n` bytes, sleeping as long as the rate asks; returns early on Ctrl-C.
    pub(crate) fn take(&self, n: usize, cancel: &AtomicBool) {
        let now = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let wait = self.take_at(n, now);
        if wait < MIN_SLEEP {
            return;
        }
        let until = Instant::now() + wait;
        while !cancel.load(Ordering::Relaxed) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            crate::fiber::sleep(left.min(SLICE));
        }
    }
}

fn nanos_for(bytes: u64, rate: u64) -> u64 {
    u64::try_from(u128::from(bytes) * 1_000_000_000 / u128::from(rate)).unwrap_or(u64::MAX)
}

/// A body read through the run's rate limit.
pub(crate) struct Throttled<'a, R> {
    pub(crate) inner: &'a mut R,
    pub(crate) limit: Option<&'a RateLimit>,
    pub(crate) cancel: &'a AtomicBool,
}

impl<R: Read> Read for Throttled<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(limit) = self.limit {
            limit.take(n, self.cancel);
        }
        Ok(n)
    }
}

impl<R: Pending> Pending for Throttled<'_, R> {
    fn pending(&self) -> bool {
        self.inner.pending()
    }

    /// Nothing under a limit, where every byte must go through [`Read::read`] to be paced.
    fn in_memory(&self) -> &[u8] {
        match self.limit {
            Some(_) => &[],
            None => self.inner.in_memory(),
        }
    }

    fn consume(&mut self, n: usize) {
        if self.limit.is_none() {
            self.inner.consume(n);
        }
    }

    fn fill(&mut self) -> io::Result<bool> {
        self.inner.fill()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn the_line_lets_one_burst_through_then_paces_at_the_rate() {
        // 1 MB/s: a byte per microsecond; a burst is an eighth of a second (125 000 bytes).
        let limit = RateLimit::new(1_000_000);
        let burst = RateLimit::burst_for(1_000_000) as usize;
        assert_eq!(limit.take_at(burst, 0), Duration::ZERO, "one burst at once");
        assert_eq!(limit.take_at(1000, 0), Duration::from_millis(1));
        assert_eq!(limit.take_at(1000, 0), Duration::from_millis(2));
        // Time passing pays the line off.
        assert_eq!(limit.take_at(1000, 3 * MS), Duration::ZERO);
    }

    #[test]
    fn an_idle_line_saves_up_no_more_than_one_burst() {
        let limit = RateLimit::new(1_000_000);
        let burst = RateLimit::burst_for(1_000_000) as usize;
        let later = 60_000 * MS;
        assert_eq!(limit.take_at(burst, later), Duration::ZERO);
        assert_eq!(limit.take_at(1000, later), Duration::from_millis(1));
    }

    #[test]
    fn readers_share_one_line() {
        let limit = RateLimit::new(1_000_000);
        let burst = RateLimit::burst_for(1_000_000) as usize;
        limit.take_at(burst, 0);
        // Two downloads reading 1000 bytes each, alternately: each waits its turn in the line.
        let waits: Vec<u64> = (0..4)
            .map(|_| limit.take_at(1000, 0).as_millis() as u64)
            .collect();
        assert_eq!(waits, [1, 2, 3, 4]);
    }
}
