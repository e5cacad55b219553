//! When to try a download again and how long to wait first: pure decisions, no I/O.
//!
//! Only what can get better is retried: a connection that failed or was cut, a timeout, and the
//! statuses a server uses for "not now" (408, 429, 5xx). A 404 or 403 will say the same thing
//! next time, so it fails at once.

use std::time::{Duration, SystemTime};

/// The first backoff; each retry doubles it, up to [`Policy::max_wait`].
pub(crate) const BASE_BACKOFF: Duration = Duration::from_secs(1);

/// How many times to retry and the longest single wait.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Policy {
    pub(crate) retries: u32,
    /// Caps both our own backoff and a server's `Retry-After`.
    pub(crate) max_wait: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            retries: 3,
            max_wait: Duration::from_secs(60),
        }
    }
}

impl Policy {
    /// The wait before retry number `retry` (1 for the first): the server's `Retry-After` when it
    /// gave one, else exponential backoff. `jitter` in `0.0..1.0` spreads the waits of workers
    /// that failed together, so they do not all come back at the same instant.
    pub(crate) fn wait(&self, retry: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.max_wait);
        }
        let doubling = 2u32.saturating_pow(retry.saturating_sub(1).min(20));
        let full = BASE_BACKOFF.saturating_mul(doubling).min(self.max_wait);
        // Half fixed, half random: never zero, never more than the cap.
        full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

/// Whether an HTTP status is worth another try.
pub(crate) fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// Parses `Retry-After`: a number of seconds (`120`) or an HTTP date (`Wed, 21 Oct 2026 07:28:00
/// GMT`), as a wait from `now`. A date in the past means "now"; anything else is ignored.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn only_what_can_get_better_is_retried() {
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [200, 301, 400, 401, 403, 404, 410, 416] {
            assert!(!retryable_status(s), "{s}");
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let p = Policy {
            retries: 10,
            max_wait: secs(10),
        };
        assert_eq!(p.wait(1, None, 1.0), secs(1));
        assert_eq!(p.wait(1, None, 0.0), Duration::from_millis(500));
        assert_eq!(p.wait(2, None, 1.0), secs(2));
        assert_eq!(p.wait(3, None, 1.0), secs(4));
        assert_eq!(p.wait(5, None, 1.0), secs(10));
        assert_eq!(p.wait(1000, None, 1.0), secs(10));
        let w = p.wait(3, None, 0.3);
        assert!(w >= secs(2) && w <= secs(4), "{w:?}");
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let p = Policy {
            retries: 3,
            max_wait: secs(60),
        };
        assert_eq!(p.wait(1, Some(secs(7)), 0.9), secs(7));
        assert_eq!(p.wait(1, Some(secs(3600)), 0.9), secs(60));
        assert_eq!(p.wait(1, Some(Duration::ZERO), 0.9), Duration::ZERO);
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = httpdate::parse_http_date("Sun, 22 Nov 2026 10:00:00 GMT").unwrap();
        assert_eq!(parse_retry_after("120", now), Some(secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(secs(0)));
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 10:00:30 GMT", now),
            Some(secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
