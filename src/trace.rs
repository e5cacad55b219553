//! When each phase of one download began and ended: what the `--json` records' phase timings,
//! the summary's estimate (see [`crate::estimate`]) and any picture of the run are drawn from.
//!
//! Workers fill [`Phases`] with monotonic instants as they go (a handful of `Instant::now()` per
//! download, none per chunk); the main thread turns them into durations and offsets.

use std::time::{Duration, Instant};

/// One download's phases. Each instant is `None` when the download never got that far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Phases {
    /// When the job was put in the queue.
    pub queued: Option<Instant>,
    /// When a worker took it.
    pub began: Option<Instant>,
    /// When the request that brought the body (the last attempt's) was sent.
    pub sent: Option<Instant>,
    /// Connection set-up (TCP and TLS) for that request, when it opened a new connection and
    /// that was measured; `None` on a reused connection.
    pub connect: Option<Duration>,
    /// When its response headers were in.
    pub headers: Option<Instant>,
    /// When the body had all arrived (or stopped arriving).
    pub body_end: Option<Instant>,
    /// When the file had its final name (or the download had failed).
    pub ended: Option<Instant>,
}

fn between(a: Option<Instant>, b: Option<Instant>) -> Option<Duration> {
    Some(b?.saturating_duration_since(a?))
}

impl Phases {
    /// Waiting in the queue for a worker.
    pub fn queued(&self) -> Option<Duration> {
        between(self.queued, self.began)
    }

    /// Request sent to response headers (connection set-up included when there was one).
    pub fn first_byte(&self) -> Option<Duration> {
        between(self.sent, self.headers)
    }

    /// Response headers to the end of the body.
    pub fn receive(&self) -> Option<Duration> {
        between(self.headers, self.body_end)
    }

    /// End of the body to the final name.
    pub fn commit(&self) -> Option<Duration> {
        between(self.body_end, self.ended)
    }

    /// These phases with `earlier`'s queueing and start: for a new attempt of the same download.
    pub fn keep_queueing(self, earlier: &Phases) -> Phases {
        Phases {
            queued: earlier.queued,
            began: earlier.began,
            ..self
        }
    }

    /// Offset of `at` from the start of the run, if both are known.
    pub fn offset(run_start: Instant, at: Option<Instant>) -> Option<Duration> {
        Some(at?.saturating_duration_since(run_start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_differences_and_missing_ends_give_none() {
        let t0 = Instant::now();
        let at = |ms| Some(t0 + Duration::from_millis(ms));
        let p = Phases {
            queued: at(0),
            began: at(5),
            sent: at(6),
            connect: None,
            headers: at(56),
            body_end: at(156),
            ended: at(158),
        };
        assert_eq!(p.queued(), Some(Duration::from_millis(5)));
        assert_eq!(p.first_byte(), Some(Duration::from_millis(50)));
        assert_eq!(p.receive(), Some(Duration::from_millis(100)));
        assert_eq!(p.commit(), Some(Duration::from_millis(2)));
        let refused = Phases {
            body_end: None,
            headers: None,
            ..p
        };
        assert_eq!(refused.first_byte(), None);
        assert_eq!(refused.receive(), None);
        assert_eq!(Phases::offset(t0, at(6)), Some(Duration::from_millis(6)));
    }
}
