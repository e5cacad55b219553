//! A second connect when the first one looks lost.
//!
//! A server whose accept queue is full drops the SYNs it cannot queue, and the kernel sends a
//! dropped SYN again only after a second (`python3 -m http.server` queues 5). A fetchpar request
//! stuck that way would hold its worker for that second while the host answers everyone else.
//! So while a request's connect is still dialling (name resolution, TCP, a proxy: not a TLS
//! handshake, which is slow for other reasons), and a request to the same host that started
//! after it has already been answered, its SYN was lost: the request is sent again on a new
//! connect, once, dropping the first (nothing was sent on it). A slow or dead host answers no
//! later request either, so it is never dialled twice; a host that answers in order never
//! trips it.
//!
//! This is what lets a host's first round of downloads ([`crate::hosts::INITIAL_WINDOW`]) be
//! as wide as a latency-bound list needs without costing a small-queue server a second.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a connect must have been dialling before it can count as lost: below this, a
/// request started later being answered first is ordinary scheduling.
const FLOOR: Duration = Duration::from_millis(20);

/// How soon a dialling request first looks whether it should dial again; each look after
/// comes twice as late, up to [`LAST_CHECK`]. A lost SYN shows within milliseconds (the
/// requests after it are answered); a connect still dialling after that is most likely to a
/// host that drops every SYN, whose connect timeout (10 s, 30 s) would otherwise be spent
/// waking 50 times a second.
const CHECK: Duration = Duration::from_millis(20);

/// The longest between two looks: well under the kernel's own second before it sends a SYN again.
const LAST_CHECK: Duration = Duration::from_millis(320);

/// Per host: when the latest-started request that got an answer had started.
#[derive(Debug, Default)]
pub(crate) struct Answers(Mutex<HashMap<url::Origin, Instant>>);

impl Answers {
    fn answered(&self, host: &url::Origin, started: Instant) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Once per request: the host's key is cloned only the first time it answers.
        match map.get_mut(host) {
            Some(latest) => *latest = (*latest).max(started),
            None => {
                map.insert(host.clone(), started);
            }
        }
    }

    /// Whether a request to `host` that started after `since` has been answered.
    fn answered_after(&self, host: &url::Origin, since: Instant) -> bool {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(host).is_some_and(|latest| *latest > since)
    }
}

/// Whether a connect dialling since `since` looks lost at `now` (see the module docs).
fn lost(
    since: Option<Instant>,
    now: Instant,
    answered_after: impl FnOnce(Instant) -> bool,
) -> bool {
    since.is_some_and(|t| now.saturating_duration_since(t) >= FLOOR && answered_after(t))
}

/// Sends `first` to `host`, and `again()` instead if `first`'s connect looks lost. Runs inside
/// [`crate::conntime::timed`], which tells whether the request is dialling; once it is not (its
/// connection is up, or it reused one), it simply waits.
pub(crate) async fn send<T, E, Fut>(
    host: &url::Origin,
    answers: &Answers,
    first: Fut,
    again: impl FnOnce() -> Option<Fut>,
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let mut sending = std::pin::pin!(first);
    let mut check = CHECK;
    let out = loop {
        if let Ok(out) = tokio::time::timeout(check, &mut sending).await {
            break out;
        }
        check = (check * 2).min(LAST_CHECK);
        let since = crate::conntime::dialing_since();
        if since.is_none() {
            break sending.await;
        }
        if lost(since, Instant::now(), |t| answers.answered_after(host, t)) {
            break match again() {
                Some(next) => next.await,
                None => sending.await,
            };
        }
    };
    if out.is_ok() {
        answers.answered(host, started);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connect_is_lost_only_when_a_later_request_was_answered_past_the_floor() {
        let t = Instant::now();
        let later = |_| true;
        let none = |_| false;
        assert!(!lost(None, t + FLOOR * 5, later), "not dialling");
        assert!(!lost(Some(t), t + FLOOR / 2, later), "too soon");
        assert!(!lost(Some(t), t + FLOOR * 50, none), "a slow or dead host");
        assert!(lost(Some(t), t + FLOOR, later));
    }

    #[test]
    fn answers_keep_the_latest_start_per_host() {
        let answers = Answers::default();
        let a = url::Url::parse("http://a.test/").unwrap().origin();
        let b = url::Url::parse("http://b.test/").unwrap().origin();
        let t = Instant::now();
        answers.answered(&a, t + FLOOR);
        answers.answered(&a, t);
        assert!(answers.answered_after(&a, t));
        assert!(!answers.answered_after(&a, t + FLOOR));
        assert!(
            !answers.answered_after(&b, t),
            "another host's answers count for nothing"
        );
    }
}
