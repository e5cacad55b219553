//! One host's state, decided on with an explicit `now`: what [`super::Hosts`] keeps per host,
//! unit-tested without threads or clocks.

use std::sync::{Arc, Condvar};
use std::time::{Duration, Instant};

use super::closing::Closing;
use super::{Admit, Gone, Learned, Next, INITIAL_WINDOW};
use crate::retry::Policy;

/// The run's politeness settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// `--per-host`: most downloads to one host at once.
    pub(crate) per_host: usize,
    /// Connect attempts a host gets in a row (shared by its URLs) before it counts as gone.
    pub(crate) attempts: u32,
    /// The backoff between those attempts, and the cap on `Retry-After`.
    pub(crate) retry: Policy,
    /// The window of a host whose request waits behind a plain-HTTP proxy (see
    /// [`Host::reach_behind_proxy`]).
    behind_proxy: usize,
}

impl Limits {
    pub(crate) fn new(per_host: usize, retry: Policy) -> Limits {
        let per_host = per_host.max(1);
        Limits {
            per_host,
            attempts: retry.retries.saturating_add(1),
            retry,
            behind_proxy: INITIAL_WINDOW.min(per_host),
        }
    }

    /// With `jobs` workers, a host behind a plain-HTTP proxy that is slow to answer gets at
    /// most half of them until it answers: an origin the proxy cannot reach then holds those
    /// for the proxy's wait, not every worker.
    pub(crate) fn for_jobs(self, jobs: usize) -> Limits {
        Limits {
            behind_proxy: self.behind_proxy.min((jobs / 2).max(1)),
            ..self
        }
    }
}

/// One host's state.
#[derive(Clone, Debug)]
pub(crate) struct Host {
    pub(super) running: usize,
    pub(super) window: usize,
    pub(super) paused_until: Option<Instant>,
    pub(super) failed_connects: u32,
    /// When the last of those was counted.
    pub(super) last_failed: Option<Instant>,
    pub(super) resolver_retried: bool,
    pub(super) gone: Option<Gone>,
    /// Once it closed a connection after a reply: what its replies said about its window.
    pub(super) closing: Option<Closing>,
    /// Whether it answered, or a request to it waited a moment for its answer on a connection
    /// that is up (see [`Host::reach`]): until then it has one download at a time.
    pub(super) reached: bool,
    /// Threads waiting for room at this host (see [`super::Hosts::admit`]), and what they wait on.
    pub(super) waiters: usize,
    /// Downloads that handed their slot on with their reply still coming in (see
    /// [`super::Hosts::hand_over`]).
    pub(super) arriving: usize,
    pub(super) queue: Option<Arc<Condvar>>,
}

impl Host {
    pub(super) fn new() -> Host {
        Host {
            running: 0,
            window: 1,
            paused_until: None,
            failed_connects: 0,
            last_failed: None,
            resolver_retried: false,
            gone: None,
            closing: None,
            reached: false,
            waiters: 0,
            arriving: 0,
            queue: None,
        }
    }

    pub(crate) fn admit(&mut self, now: Instant) -> Admit {
        if let Some(gone) = &self.gone {
            return Admit::Gone(gone.clone());
        }
        if let Some(until) = self.paused_until {
            if now < until {
                return Admit::Wait(Some(until));
            }
            self.paused_until = None;
        }
        if self.running >= self.window {
            return Admit::Wait(None);
        }
        self.running += 1;
        Admit::Go
    }

    pub(crate) fn release(&mut self) {
        self.running = self.running.saturating_sub(1);
    }

    /// A download held a slot for `held`: for a closing host, how long tells what the window
    /// is worth (see [`super::closing`]). Counted once per download, before its slot is released or
    /// handed on.
    pub(super) fn count(&mut self, held: Duration) {
        if let Some(closing) = self.closing.as_mut() {
            self.window = closing.reply(held, self.running);
        }
    }

    /// It answered, or a request to it has waited [`super::FIRST_ANSWER`] for its answer on a
    /// connection that is up: from one download at a time to [`INITIAL_WINDOW`], unless what
    /// it did since says less (a failed connect, a closed connection). By how much the window
    /// grew.
    pub(super) fn reach(&mut self, limits: &Limits) -> usize {
        if std::mem::replace(&mut self.reached, true)
            || self.closing.is_some()
            || self.failed_connects > 0
        {
            return 0;
        }
        let before = self.window;
        self.window = self.window.max(INITIAL_WINDOW.min(limits.per_host));
        self.window - before
    }

    /// A request to it has waited [`super::FIRST_ANSWER`] for its answer on a connection to a
    /// plain-HTTP proxy, which comes up whether the host behind it is there or not: it gets the
    /// window [`Limits::for_jobs`] allows such a host, its first round only once it answers.
    pub(super) fn reach_behind_proxy(&mut self, limits: &Limits) -> usize {
        if self.reached || self.closing.is_some() || self.failed_connects > 0 {
            return 0;
        }
        let before = self.window;
        self.window = self.window.max(limits.behind_proxy);
        self.window - before
    }

    /// What an attempt that took its slot at `started` learned, at `now`.
    pub(crate) fn learn(
        &mut self,
        learned: Learned,
        started: Instant,
        now: Instant,
        limits: &Limits,
    ) -> Next {
        // A connect already under way when the host was given up: its URL fails with the line
        // the others got, not "after 5 attempts" beside "after 4", nor another reason.
        if let (Learned::Unreachable(_) | Learned::NoSuchName(_), Some(gone)) =
            (&learned, &self.gone)
        {
            return Next::Fail(gone.line());
        }
        match learned {
            Learned::Response { kept_open, small } => {
                self.failed_connects = 0;
                self.last_failed = None;
                // Before the closing check: a closing host's window is its own from here on.
                self.reach(limits);
                if kept_open {
                    self.window = (self.window + 1).min(limits.per_host);
                } else {
                    let running = self.running;
                    let closing = self
                        .closing
                        .get_or_insert_with(|| Closing::new(limits.per_host, running, small));
                    self.window = closing.window();
                }
                Next::AsUsual
            }
            // A connect that began before the last counted failure saw the host at the same
            // moment: eight refused together at -j 8 are one attempt, not eight that use up the
            // host's budget in a millisecond. It waits out that attempt's pause like the rest,
            // so a server down for a moment (a restart) is waited for at -j 8 as at -j 1.
            Learned::Unreachable(_) if self.last_failed.is_some_and(|at| started < at) => {
                Next::Later
            }
            Learned::Unreachable(last) => {
                self.failed_connects += 1;
                self.last_failed = Some(now);
                if self.failed_connects >= limits.attempts {
                    let gone = Gone::Unreachable {
                        attempts: self.failed_connects,
                        last,
                    };
                    let line = gone.line();
                    self.gone = Some(gone);
                    return Next::Fail(line);
                }
                // Probe one at a time, backing off as the URL's own retries would.
                self.window = 1;
                let wait = limits
                    .retry
                    .wait(self.failed_connects, None, fastrand::f64());
                self.pause(now + wait);
                Next::Again
            }
            Learned::NoSuchName(what) => {
                let gone = Gone::NoSuchName(what);
                let line = gone.line();
                self.gone = Some(gone);
                Next::Fail(line)
            }
            Learned::ResolverBusy if self.resolver_retried => Next::AsUsual,
            Learned::ResolverBusy => {
                self.resolver_retried = true;
                Next::Again
            }
            Learned::RetryAfter(wait) => {
                self.pause(now + wait.min(limits.retry.max_wait));
                Next::AsUsual
            }
        }
    }

    pub(super) fn pause(&mut self, until: Instant) {
        self.paused_until = Some(self.paused_until.map_or(until, |u| u.max(until)));
    }

    /// Nothing worth remembering: the entry can go (a list of a million hosts must not keep a
    /// million entries). What a host taught us that matters (gone, paused, failing, the window
    /// a closing host keeps to) stays.
    pub(super) fn idle(&self, now: Instant) -> bool {
        self.running == 0
            && self.waiters == 0
            && self.arriving == 0
            && self.gone.is_none()
            && self.failed_connects == 0
            && !self.closing.as_ref().is_some_and(Closing::learned)
            && self.paused_until.is_none_or(|until| until <= now)
    }
}
