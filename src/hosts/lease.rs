//! A download's hold on a slot at its host.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use url::Url;

use super::{Admit, Hosts, Key, Learned, Next};

/// What a download's slot can be handed on to before the download is over: the next job held
/// back for the same host (see [`Lease::hand_on`]).
pub(crate) trait Successors {
    /// Hands the slot on `key`, held for `held`, to the next job for that host, if there is one
    /// and a worker free to take it up at once.
    fn hand_on(&self, hosts: &Hosts, key: &Key, held: Duration) -> HandOn;
}

/// What became of a slot offered to the host's next job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HandOn {
    /// Still this download's: no job or no free worker to take it.
    Kept,
    /// Taken by the next job.
    Passed,
    /// Given back to the host, which had no room for it any more.
    Released,
}

/// A download's hold on its host: a slot while it runs, released on drop.
pub(crate) struct Lease<'a> {
    hosts: &'a Arc<Hosts>,
    key: Key,
    held: bool,
    /// When it took its slot.
    since: Instant,
    /// Who may take the slot over early (see [`Lease::hand_on`]).
    successors: Option<&'a dyn Successors>,
    /// The slot came from a download that handed it on (see [`Lease::hand_on`]).
    handed: bool,
    /// It handed its slot on, and its reply is still coming in (see [`Hosts::hand_over`]).
    arriving: bool,
}

impl<'a> Lease<'a> {
    /// A lease on a slot already admitted.
    pub(crate) fn held(hosts: &'a Arc<Hosts>, key: Key) -> Lease<'a> {
        Lease {
            hosts,
            key,
            held: true,
            since: Instant::now(),
            successors: None,
            handed: false,
            arriving: false,
        }
    }

    /// A lease without a slot, for a download whose host turned it away (gone): its first
    /// [`Lease::acquire`] asks again and hears why.
    pub(crate) fn not_held(hosts: &'a Arc<Hosts>, key: Key) -> Lease<'a> {
        Lease {
            hosts,
            key,
            held: false,
            since: Instant::now(),
            successors: None,
            handed: false,
            arriving: false,
        }
    }

    /// Lets [`Lease::hand_on`] give the slot to `successors`.
    pub(crate) fn handing_to(mut self, successors: &'a dyn Successors) -> Lease<'a> {
        self.successors = Some(successors);
        self
    }

    /// Marks a slot that came from [`Lease::hand_on`].
    pub(crate) fn handed(mut self, handed: bool) -> Lease<'a> {
        self.handed = handed;
        self
    }

    /// Whether its download should dial at once: its slot was handed on by a download of a
    /// host that closes every connection, so no idle connection is coming back to the pool.
    pub(crate) fn dials_at_once(&self) -> bool {
        self.handed
    }

    /// Whether [`Lease::hand_on`] may hand the slot on at all (there is someone to hand it to).
    pub(crate) fn may_hand_on(&self) -> bool {
        self.held && self.successors.is_some()
    }

    /// Hands the slot on to the host's next job while this download ends: its server is done
    /// with it (the whole small body is on its way and the connection closes), so the next
    /// connect need not wait for this body to be saved. True when a job took it, which a worker
    /// of this thread is woken to start: the caller should let it run first.
    pub(crate) fn hand_on(&mut self) -> bool {
        let Some(successors) = self.successors.filter(|_| self.held) else {
            return false;
        };
        match successors.hand_on(self.hosts, &self.key, self.since.elapsed()) {
            HandOn::Kept => false,
            HandOn::Passed => {
                self.held = false;
                self.arriving = true;
                true
            }
            HandOn::Released => {
                self.held = false;
                false
            }
        }
    }

    /// Whether it holds a slot now (a download that failed may have given it back).
    pub(crate) fn holds(&self) -> bool {
        self.held
    }

    /// Ends the download's hold without a release, for [`Hosts::pass_on`] to hand the slot on
    /// to another job for the same host (a slot taken again at once is no change of room, so
    /// no one is woken for it); the host and how long the slot was held.
    pub(crate) fn pass(mut self) -> (Key, Duration) {
        self.reply_in();
        self.held = false;
        (Key(std::mem::take(&mut self.key.0)), self.since.elapsed())
    }

    /// Whether `url` is on this lease's host (a mirror may not be).
    pub(crate) fn covers(&self, url: &Url) -> bool {
        self.key.is_of(url)
    }

    /// Waits for a slot if this lease holds none; `Err` with the line to fail with when the host
    /// is gone, `Ok(false)` on Ctrl-C.
    pub(crate) fn acquire(&mut self, cancel: &AtomicBool) -> Result<bool, String> {
        if self.held {
            return Ok(true);
        }
        match self.hosts.admit(&self.key, cancel) {
            None => Ok(false),
            Some(Admit::Gone(gone)) => Err(gone.line()),
            Some(_) => {
                self.held = true;
                self.since = Instant::now();
                Ok(true)
            }
        }
    }

    /// Its reply has all come in, or the attempt gave up on it: after a slot handed on, the
    /// host's next small reply may hand its own on again.
    pub(crate) fn reply_in(&mut self) {
        if std::mem::take(&mut self.arriving) {
            self.hosts.reply_in(&self.key);
        }
    }

    /// Gives the slot back (before a wait, say): others may use the host meanwhile.
    pub(crate) fn release(&mut self) {
        if std::mem::take(&mut self.held) {
            self.hosts
                .release_after(&self.key, Some(self.since.elapsed()));
        }
    }

    /// What tells the host what a request showed of it before the final answer (see
    /// [`Hosts::reached`]); what it showed of another host (a redirect's) tells it nothing.
    pub(crate) fn on_presence(&self) -> crate::transport::OnPresence {
        let (hosts, key) = (Arc::clone(self.hosts), self.key.clone());
        Arc::new(move |hop: &Url, presence| {
            if key.is_of(hop) {
                hosts.reached(&key, presence);
            }
        })
    }

    /// What refuses a redirect to another host that is gone (see [`Lease::learn_at`]), with
    /// the line that host's URLs failed with: a redirect to it would only go the same way.
    pub(crate) fn refuse_gone(&self) -> crate::transport::GoneHop {
        let (hosts, key) = (Arc::clone(self.hosts), self.key.clone());
        Arc::new(move |hop: &Url| match key.is_of(hop) {
            true => None,
            false => hosts.gone_line(&Key::of(hop)),
        })
    }

    /// Tells `hop`'s host, where this lease's attempt was redirected, what the attempt learned
    /// of it: the URLs that lead there share its attempts as its own URLs do.
    pub(crate) fn learn_at(&self, hop: &Url, learned: Learned) -> Next {
        self.hosts.learn(&Key::of(hop), learned, self.since)
    }

    /// Tells the host what this lease's attempt learned (see [`Host::learn`]).
    ///
    /// [`Host::learn`]: super::Host::learn
    pub(crate) fn learn(&self, learned: Learned) -> Next {
        self.hosts.learn(&self.key, learned, self.since)
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.reply_in();
        self.release();
    }
}
