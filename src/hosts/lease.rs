//! A download's hold on a slot at its host.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use url::Url;

use super::{Admit, Hosts, Key, Learned, Next};

/// A download's hold on its host: a slot while it runs, released on drop.
pub(crate) struct Lease<'a> {
    hosts: &'a Arc<Hosts>,
    key: Key,
    held: bool,
    /// When it took its slot.
    since: Instant,
}

impl<'a> Lease<'a> {
    /// A lease on a slot already admitted.
    pub(crate) fn held(hosts: &'a Arc<Hosts>, key: Key) -> Lease<'a> {
        Lease {
            hosts,
            key,
            held: true,
            since: Instant::now(),
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

    /// Gives the slot back (before a wait, say): others may use the host meanwhile.
    pub(crate) fn release(&mut self) {
        if std::mem::take(&mut self.held) {
            self.hosts
                .release_after(&self.key, Some(self.since.elapsed()));
        }
    }

    /// What tells the host that a connection to it came up (see [`Hosts::reached`]); a
    /// connection to another host (a redirect's) tells it nothing.
    pub(crate) fn on_connected(&self) -> crate::transport::ConnectedTo {
        let (hosts, key) = (Arc::clone(self.hosts), self.key.clone());
        Arc::new(move |hop: &Url| {
            if key.is_of(hop) {
                hosts.reached(&key);
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
        self.release();
    }
}
