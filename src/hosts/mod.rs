//! Politeness per host (scheme, host, port): how many downloads run against one host, how fast
//! new connections to it are opened, and what its `Retry-After` or unreachability mean for all of
//! its URLs.
//!
//! - [`Host`] is the pure state of one host, decided on with an explicit `now` (unit-tested
//!   without threads or clocks);
//! - [`Hosts`] is the run's table of them behind one lock, taken once per attempt, never per
//!   chunk;
//! - [`Waiting`] holds the jobs a worker took for a host that had no room, so that the worker can
//!   take other hosts' jobs instead of waiting on that one (one dead host never holds all
//!   workers). It is bounded: memory stays O(jobs) and the producer's backpressure holds;
//! - [`Lease`] is a download's hold on its host's slot;
//! - [`closing::Closing`] tunes the window of a host that closes every connection.
//!
//! Ramp-up works like TCP's slow start. A host starts with one download, until it answers (a
//! redirect to another host is an answer) or that download has waited [`FIRST_ANSWER`] for its
//! answer on a connection that is up (a server far away, or a slow one: its connect's round
//! trip and that moment are all the wait costs). The answer says whether it keeps connections
//! open: if it does, or if it is slow to say, the host gets [`INITIAL_WINDOW`] at once and one
//! more for each response that came back on a connection the server keeps open, so the window
//! doubles per round trip up to `--per-host`. A server that closes the connection after every
//! reply (HTTP/1.0, `Connection: close`) makes every download a new connect into its accept
//! queue, which may be as short as 5 (`python3 -m http.server`, whose one interpreter lock also
//! serves its threads in turn): overflowing it drops SYNs that the kernel retransmits only
//! after a second. Such a host that answered at once with a small reply stays at one, and its
//! replies' latency says whether more at once pay off, up to [`closing::CLOSING_WINDOW`], below
//! that queue (browsers keep to 6 connections per host for the same reason); one slow to
//! answer, or with bigger replies, drops from its first round to that window ([`closing`]).
//! The SYNs a first round overflowed are dialled again without waiting that second
//! ([`crate::redial`]). A host that drops every SYN holds one worker for one connect timeout,
//! not a round of them. Behind a plain-HTTP proxy, whose connection comes up whether the host
//! behind it is there or not, a host slow to answer gets half the workers until it answers
//! ([`Host::reach_behind_proxy`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use url::Url;

use crate::transport::Presence;

use self::host::Host;
pub(crate) use self::host::Limits;
pub(crate) use self::lease::{HandOn, Lease, Successors};
pub(crate) use self::waiting::Waiting;

mod closing;
mod host;
mod lease;
mod waiting;

/// Downloads a host gets together once it has answered, or been slow to: a whole first round
/// of a latency-bound list at the default `-j`. More than a small accept queue holds; the SYNs it
/// drops are dialled again at once (see [`crate::redial`]), and the answers that come back say
/// which window the host keeps.
pub(crate) const INITIAL_WINDOW: usize = 8;

/// How long a host's first download may wait for its answer, on a connection that is up (new
/// or reused), before the host gets its first round all the same: `python3 -m http.server`
/// answers well within it on the same machine (and so is never sent a round it would serve in
/// turn), a server 100 ms away does not, and pays this on top of its round trip once.
pub(crate) const FIRST_ANSWER: Duration = Duration::from_millis(5);

/// How often a waiting thread looks at the cancel flag and at paused hosts.
const POLL: Duration = Duration::from_millis(100);

/// A host as politeness sees it: scheme, host and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key(String);

impl Key {
    pub(crate) fn of(url: &Url) -> Key {
        Key(format!(
            "{}://{}:{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0)
        ))
    }

    /// `Key::of(url) == self`, without building the key (asked once per attempt).
    pub(crate) fn is_of(&self, url: &Url) -> bool {
        let port = url.port_or_known_default().unwrap_or(0);
        self.0
            .strip_prefix(url.scheme())
            .and_then(|rest| rest.strip_prefix("://"))
            .and_then(|rest| rest.strip_prefix(url.host_str().unwrap_or("")))
            .and_then(|rest| rest.strip_prefix(':'))
            // Keys are only made by `Key::of`: the port is written one way.
            .is_some_and(|rest| rest.parse::<u16>() == Ok(port))
    }
}

/// Why every URL of a host fails at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Gone {
    /// Its connects failed this many times in a row; the last failure.
    Unreachable { attempts: u32, last: Unreachable },
    /// Its name does not exist (the resolver's answer).
    NoSuchName(String),
}

impl Gone {
    /// The line every URL of the host fails with.
    pub(crate) fn line(&self) -> String {
        match self {
            Gone::Unreachable { attempts, last } => {
                let s = if *attempts == 1 { "" } else { "s" };
                format!(
                    "{} unreachable after {attempts} attempt{s} ({})",
                    last.who, last.what
                )
            }
            Gone::NoSuchName(what) => what.clone(),
        }
    }
}

/// A connect that was refused or timed out: what could not be reached (`host`, or the proxy the
/// URL goes through, `proxy 127.0.0.1:3128`: a dead proxy is not the URL's host's fault), and
/// what happened (`connection refused`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unreachable {
    who: String,
    what: String,
}

impl Unreachable {
    pub(crate) fn new(who: &str, what: &str) -> Unreachable {
        Unreachable {
            who: who.to_string(),
            what: what.to_string(),
        }
    }
}

/// What an attempt learned about its host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Learned {
    /// A response came back; `kept_open` when the server keeps the connection for the next one,
    /// `small` when it is a success whose whole body comes in one read (see `pool::handoff`).
    Response { kept_open: bool, small: bool },
    /// Refused, or the connect timed out (the text says which).
    Unreachable(Unreachable),
    /// The name does not exist: not worth asking again, for any URL of the host.
    NoSuchName(String),
    /// The resolver could not answer this time.
    ResolverBusy,
    /// `Retry-After`: no new request to the host for this long.
    RetryAfter(Duration),
}

/// What to do with the URL whose attempt taught the host something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Carry on as the URL's own policy says.
    AsUsual,
    /// Try again when the host lets it (costs the URL none of its own retries).
    Again,
    /// As [`Next::Again`], for a connect that failed at the moment another's failure counted:
    /// not one of the host's attempts. A URL with nothing on disk yet waits with the host's
    /// other URLs, its worker free for other hosts' meanwhile.
    Later,
    /// Fail now, with this line.
    Fail(String),
}

/// Whether a download may start now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    Go,
    /// Not now: the host is at its window, or paused until then.
    Wait(Option<Instant>),
    Gone(Gone),
}

/// The run's hosts.
pub(crate) struct Hosts {
    limits: Limits,
    table: Mutex<HashMap<Key, Host>>,
    wake: Option<Sender<()>>,
    bell: Option<Arc<tokio::sync::Notify>>,
    /// Slots held over all hosts, and the most at once: the downloads that ran at once, which
    /// the summary reports (`-j` overstates it under `--per-host`, a ramp-up or a low limit on
    /// open files). Changed only with `table` locked, so always the sum of the hosts' counts.
    held: AtomicUsize,
    peak: AtomicUsize,
}

impl Hosts {
    pub(crate) fn new(limits: Limits) -> Hosts {
        Hosts {
            limits,
            table: Mutex::new(HashMap::new()),
            wake: None,
            bell: None,
            held: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// Also sends a token on `wake` and rings `bell` whenever a host may have gained room (a slot
    /// freed, a window grown, a host gone), for workers that wait on a channel rather than on
    /// this table (threads), or on nothing that can wake them (fibers).
    pub(crate) fn waking(self, wake: Sender<()>, bell: Arc<tokio::sync::Notify>) -> Hosts {
        Hosts {
            wake: Some(wake),
            bell: Some(bell),
            ..self
        }
    }

    /// Tells waiters that `key` may have gained `room` slots (`usize::MAX`: gone, every waiter
    /// is to hear it); `table` is the guard of the change, dropped here. Only that host's
    /// waiters are woken, and for a slot only one of them: with 32 workers and a window of 4,
    /// waking all for every download ended had them contend for the lock 28 at a time. A waiter
    /// counts itself under the lock before it waits, so none misses the change; and a notify is
    /// a system call even with nobody to wake, so it is made only for counted waiters.
    fn changed(&self, table: MutexGuard<'_, HashMap<Key, Host>>, key: &Key, room: usize) {
        let queue = table
            .get(key)
            .filter(|host| host.waiters > 0)
            .and_then(|host| host.queue.clone());
        drop(table);
        match queue {
            Some(queue) if room == 1 => queue.notify_one(),
            Some(queue) => queue.notify_all(),
            None => {}
        }
        // A token a slot, so that a window grown by several (a host reached) wakes as many
        // workers waiting on the channel, not one while the others sleep out a tick.
        if let Some(wake) = &self.wake {
            for _ in 0..room {
                if wake.try_send(()).is_err() {
                    break;
                }
            }
        }
        self.ring();
    }

    fn ring(&self) {
        if let Some(bell) = &self.bell {
            bell.notify_waiters();
        }
    }

    /// Wakes every worker waiting on `wake` (fills it): one that found nothing left to do
    /// tells the others, which would otherwise each wait out a tick before they see it.
    pub(crate) fn wake_all(&self) {
        if let Some(wake) = &self.wake {
            while wake.try_send(()).is_ok() {}
        }
        self.ring();
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Host>> {
        // A panic elsewhere cannot leave a host half-updated in a way that matters more than
        // stopping the run would.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most downloads that held a slot at once, over the run so far.
    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Counts a slot taken (called with the table locked).
    fn took(&self, admit: Admit) -> Admit {
        if admit == Admit::Go {
            let held = self.held.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(held, Ordering::SeqCst);
        }
        admit
    }

    pub(crate) fn try_admit(&self, key: &Key) -> Admit {
        let mut table = self.lock();
        let admit = table
            .entry(key.clone())
            .or_insert_with(Host::new)
            .admit(Instant::now());
        self.took(admit)
    }

    /// The line `key`'s URLs fail with, if it is gone.
    pub(crate) fn gone_line(&self, key: &Key) -> Option<String> {
        self.lock().get(key)?.gone.as_ref().map(Gone::line)
    }

    /// Waits until `key` has room (or is gone); `None` on Ctrl-C.
    pub(crate) fn admit(&self, key: &Key, cancel: &AtomicBool) -> Option<Admit> {
        if crate::fiber::active() {
            return self.admit_on_fiber(key, cancel);
        }
        let mut table = self.lock();
        loop {
            if cancel.load(Ordering::Relaxed) {
                return None;
            }
            let now = Instant::now();
            let host = table.entry(key.clone()).or_insert_with(Host::new);
            let wait = match host.admit(now) {
                Admit::Wait(until) => until.map_or(POLL, |u| (u - now).min(POLL)),
                other => return Some(self.took(other)),
            };
            host.waiters += 1;
            let queue = Arc::clone(host.queue.get_or_insert_with(Arc::default));
            table = match queue.wait_timeout(table, wait) {
                Ok((table, _)) => table,
                Err(e) => e.into_inner().0,
            };
            // Still there: a host with waiters is never idle, so never removed.
            if let Some(host) = table.get_mut(key) {
                host.waiters -= 1;
            }
        }
    }

    /// [`Hosts::admit`] on a fiber: it waits for the bell [`Hosts::changed`] rings, not on the
    /// host's queue, and sleeps out a pause (`Retry-After`, backoff) in ticks, to see Ctrl-C.
    fn admit_on_fiber(&self, key: &Key, cancel: &AtomicBool) -> Option<Admit> {
        let room = || match self.try_admit(key) {
            Admit::Wait(_) => None,
            admit => Some(admit),
        };
        loop {
            if cancel.load(Ordering::Relaxed) {
                return None;
            }
            match self.try_admit(key) {
                Admit::Wait(Some(until)) => {
                    crate::fiber::sleep(until.saturating_duration_since(Instant::now()).min(POLL));
                }
                Admit::Wait(None) => match &self.bell {
                    Some(bell) => {
                        if let Some(admit) = crate::fiber::wait_for(bell, room, POLL) {
                            return Some(admit);
                        }
                    }
                    None => crate::fiber::sleep(Duration::from_millis(1)),
                },
                admit => return Some(admit),
            }
        }
    }

    pub(crate) fn release(&self, key: &Key) {
        self.release_after(key, None);
    }

    /// [`Hosts::release`] of a slot held for `held` by a download.
    fn release_after(&self, key: &Key, held: Option<Duration>) {
        let mut table = self.lock();
        let Some(host) = table.get_mut(key) else {
            return self.changed(table, key, 1);
        };
        let window = host.window;
        if let Some(held) = held {
            host.count(held);
        }
        self.give_back(table, key, window);
    }

    /// A download on `key` ends after holding its slot for `held`, counted as a release is; the
    /// slot goes on to the next job for that host (true) when the window, having counted it,
    /// still has room for it and the host is neither paused nor gone (see [`Lease::pass`]).
    /// Otherwise the slot is released (false).
    pub(crate) fn pass_on(&self, key: &Key, held: Duration) -> bool {
        self.pass(key, held, false) == Some(true)
    }

    /// [`Hosts::pass_on`] for a download whose reply is still coming in (see
    /// [`Lease::hand_on`]): `None`, the slot still its own, while another such download of the
    /// host has not had all its reply (a server stalled in the middle of small replies gets no
    /// more than its window and that one reply); else as `pass_on`, the download counted as one
    /// until [`Hosts::reply_in`].
    pub(crate) fn hand_over(&self, key: &Key, held: Duration) -> Option<bool> {
        self.pass(key, held, true)
    }

    /// A download that handed its slot on has had its reply, or given up on it.
    pub(crate) fn reply_in(&self, key: &Key) {
        if let Some(host) = self.lock().get_mut(key) {
            host.arriving = host.arriving.saturating_sub(1);
        }
    }

    fn pass(&self, key: &Key, held: Duration, arriving: bool) -> Option<bool> {
        let mut table = self.lock();
        let host = table.get_mut(key)?;
        if arriving && host.arriving > 0 {
            return None;
        }
        let window = host.window;
        host.count(held);
        let keeps = host.running <= host.window
            && host.gone.is_none()
            && host
                .paused_until
                .is_none_or(|until| until <= Instant::now());
        host.arriving += usize::from(keeps && arriving);
        let grew = host.window.saturating_sub(window);
        if !keeps {
            self.give_back(table, key, window);
        } else if grew > 0 {
            self.changed(table, key, grew);
        }
        Some(keeps)
    }

    /// Releases a slot on `key`, whose window was `window` before the download was counted:
    /// a window that grew since (a closing host's try at more) has room for more than one.
    fn give_back(&self, mut table: MutexGuard<'_, HashMap<Key, Host>>, key: &Key, window: usize) {
        let mut grew = 0;
        if let Some(host) = table.get_mut(key) {
            if host.running > 0 {
                self.held.fetch_sub(1, Ordering::SeqCst);
            }
            host.release();
            grew = host.window.saturating_sub(window);
            if host.idle(Instant::now()) {
                table.remove(key);
            }
        }
        self.changed(table, key, 1 + grew);
    }

    /// A request to `key` showed it is there (see [`Host::reach`]), or, behind a plain-HTTP
    /// proxy, may be (see [`Host::reach_behind_proxy`]).
    pub(crate) fn reached(&self, key: &Key, presence: Presence) {
        let mut table = self.lock();
        let grew = table.get_mut(key).map_or(0, |host| match presence {
            Presence::Answered | Presence::Slow => host.reach(&self.limits),
            Presence::SlowBehindProxy => host.reach_behind_proxy(&self.limits),
        });
        if grew > 0 {
            self.changed(table, key, grew);
        }
    }

    pub(crate) fn learn(&self, key: &Key, learned: Learned, started: Instant) -> Next {
        let mut table = self.lock();
        let limits = &self.limits;
        let host = table.entry(key.clone()).or_insert_with(Host::new);
        let window = host.window;
        let next = host.learn(learned, started, Instant::now(), limits);
        // Waiters care only for more room, or for the host being gone (they fail at once).
        if host.gone.is_some() {
            self.changed(table, key, usize::MAX);
        } else if host.window > window {
            let grew = host.window - window;
            self.changed(table, key, grew);
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::closing::CLOSING_WINDOW;
    use super::*;
    use crate::retry::Policy;

    pub(super) fn limits(per_host: usize) -> Limits {
        Limits::new(
            per_host,
            Policy {
                retries: 3,
                max_wait: Duration::from_secs(60),
            },
        )
    }

    fn reply(kept_open: bool) -> Learned {
        Learned::Response {
            kept_open,
            small: true,
        }
    }

    fn fill(host: &mut Host, now: Instant) -> usize {
        let mut n = 0;
        while host.admit(now) == Admit::Go {
            n += 1;
        }
        n
    }

    #[test]
    fn a_host_starts_with_one_then_a_round_and_doubles_per_round_of_kept_open_responses() {
        let l = limits(32);
        let now = Instant::now();
        let mut h = Host::new();
        assert_eq!(fill(&mut h, now), 1, "one until it answers");
        h.learn(reply(true), now, now, &l);
        assert_eq!(
            fill(&mut h, now),
            INITIAL_WINDOW,
            "its first round, and one more"
        );
        for _ in 0..INITIAL_WINDOW + 1 {
            h.learn(reply(true), now, now, &l);
        }
        assert_eq!(
            fill(&mut h, now),
            INITIAL_WINDOW + 1,
            "one more per response"
        );
        for _ in 0..100 {
            h.learn(reply(true), now, now, &l);
        }
        assert_eq!(h.window, 32, "never past --per-host");
    }

    #[test]
    fn a_host_slow_to_answer_gets_its_first_round_all_the_same() {
        let l = limits(8);
        let now = Instant::now();
        let mut h = Host::new();
        assert_eq!(fill(&mut h, now), 1, "a black hole holds one worker");
        assert_eq!(h.reach(&l), INITIAL_WINDOW - 1);
        assert_eq!(
            fill(&mut h, now),
            INITIAL_WINDOW - 1,
            "reached: its first round"
        );
        assert_eq!(h.reach(&l), 0, "once");
        let mut failed = Host::new();
        failed.learn(
            Learned::Unreachable(Unreachable::new("a", "refused")),
            now,
            now,
            &l,
        );
        assert_eq!(
            failed.reach(&l),
            0,
            "a failed connect keeps it probing one at a time"
        );
        assert_eq!(failed.window, 1);
        let mut small = Host::new();
        small.reach(&limits(2));
        assert_eq!(small.window, 2, "--per-host below the initial window");
        // Behind a plain-HTTP proxy: half the workers until it answers.
        let l = limits(32).for_jobs(8);
        let mut proxied = Host::new();
        assert_eq!(proxied.reach_behind_proxy(&l), 3);
        assert_eq!(proxied.reach_behind_proxy(&l), 0, "not more while it waits");
        assert_eq!(
            proxied.reach(&l),
            INITIAL_WINDOW - 4,
            "its round once it answers"
        );
    }

    #[test]
    fn waiters_woken_one_slot_at_a_time_all_get_through_within_the_limit() {
        let hosts = Hosts::new(limits(2));
        let key = Key::of(&Url::parse("http://a.example/").unwrap());
        let other = Key::of(&Url::parse("http://b.example/").unwrap());
        let cancel = AtomicBool::new(false);
        let inside = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let (key, other) = (&key, &other);
        std::thread::scope(|s| {
            for n in 0..8 {
                let mine = if n % 4 == 3 { other } else { key };
                let (hosts, cancel, inside, most) = (&hosts, &cancel, &inside, &most);
                s.spawn(move || {
                    for _ in 0..50 {
                        let key = mine;
                        assert_eq!(hosts.admit(key, cancel), Some(Admit::Go));
                        // Answered on a connection kept open: room for its --per-host (a host
                        // forgotten while idle starts at one again).
                        hosts.learn(key, reply(true), Instant::now());
                        if key != other {
                            most.fetch_max(
                                inside.fetch_add(1, Ordering::SeqCst) + 1,
                                Ordering::SeqCst,
                            );
                            std::thread::yield_now();
                            inside.fetch_sub(1, Ordering::SeqCst);
                        }
                        hosts.release(key);
                    }
                });
            }
        });
        assert_eq!(
            most.load(Ordering::SeqCst),
            2,
            "--per-host 2, and it was reached"
        );
        assert_eq!(
            hosts.lock().len(),
            0,
            "every host idle again, none with a waiter counted"
        );
    }

    #[test]
    fn a_host_that_closes_every_connection_stays_at_one_or_drops_to_the_closing_window() {
        let l = limits(32);
        let now = Instant::now();
        // Answered at once: the tuner starts it at one.
        let mut quick = Host::new();
        assert_eq!(fill(&mut quick, now), 1);
        quick.learn(reply(false), now, now, &l);
        assert_eq!(fill(&mut quick, now), 0);
        quick.release();
        assert_eq!(fill(&mut quick, now), 1);
        // Slow to answer: its first round went out, and it drops below the accept queue.
        let mut slow = Host::new();
        assert_eq!(fill(&mut slow, now), 1);
        slow.reach(&l);
        assert_eq!(fill(&mut slow, now), INITIAL_WINDOW - 1);
        slow.learn(reply(false), now, now, &l);
        for _ in 0..INITIAL_WINDOW {
            slow.release();
        }
        assert_eq!(fill(&mut slow, now), CLOSING_WINDOW);
    }

    #[test]
    fn a_closing_host_that_answers_in_turn_is_remembered_at_one_while_idle() {
        let hosts = Hosts::new(limits(32));
        let key = Key::of(&Url::parse("http://a/").unwrap());
        let running = || hosts.lock().get(&key).map_or(0, |h| h.running);
        // Long enough to settle, not so long as to be trying two again.
        for _ in 0..100 {
            while hosts.try_admit(&key) == Admit::Go {}
            hosts.learn(&key, reply(false), Instant::now());
            // Served in turn, each beside another slowing it: a download waits a millisecond
            // for every one in flight (the tuner reads the host's rate off the clock).
            let held = Duration::from_millis(running() as u64);
            std::thread::sleep(held);
            // Its slot goes on to the host's next job, as a worker's does (see `Crew::next_on`).
            hosts.pass_on(&key, held);
        }
        while running() > 0 {
            hosts.release(&key);
        }
        assert_eq!(hosts.lock().get(&key).map(|h| h.window), Some(1));
    }

    #[test]
    fn a_slot_goes_on_to_the_next_job_only_while_the_host_has_room_for_it() {
        let hosts = Hosts::new(limits(2));
        let key = Key::of(&Url::parse("http://a/").unwrap());
        let running = || hosts.lock().get(&key).map_or(0, |h| h.running);
        hosts.learn(&key, reply(true), Instant::now());
        assert_eq!(hosts.try_admit(&key), Admit::Go);
        assert_eq!(hosts.try_admit(&key), Admit::Go);
        assert!(hosts.pass_on(&key, Duration::from_millis(1)), "room: kept");
        assert_eq!(running(), 2);
        // Paused by a Retry-After: the slot is given back, once.
        hosts.learn(
            &key,
            Learned::RetryAfter(Duration::from_secs(30)),
            Instant::now(),
        );
        assert!(!hosts.pass_on(&key, Duration::from_millis(1)));
        assert_eq!(running(), 1);
        assert_eq!(hosts.held.load(Ordering::SeqCst), 1);
        // A window that shrank below what runs: not kept either.
        let hosts = Hosts::new(limits(4));
        hosts.learn(&key, reply(true), Instant::now());
        for _ in 0..3 {
            assert_eq!(hosts.try_admit(&key), Admit::Go);
        }
        hosts.learn(
            &key,
            Learned::Unreachable(Unreachable::new("a", "refused")),
            Instant::now(),
        );
        assert!(!hosts.pass_on(&key, Duration::from_millis(1)));
        assert_eq!(hosts.lock().get(&key).map(|h| h.running), Some(2));
    }

    #[test]
    fn a_released_slot_admits_the_next() {
        let now = Instant::now();
        let mut h = Host::new();
        assert_eq!(h.admit(now), Admit::Go);
        assert_eq!(h.admit(now), Admit::Wait(None));
        h.release();
        assert_eq!(h.admit(now), Admit::Go);
    }

    #[test]
    fn retry_after_pauses_the_whole_host_capped() {
        let l = limits(8);
        let now = Instant::now();
        let mut h = Host::new();
        let next = h.learn(Learned::RetryAfter(Duration::from_secs(5)), now, now, &l);
        assert_eq!(
            next,
            Next::AsUsual,
            "the URL that got it spends its own retry"
        );
        let until = now + Duration::from_secs(5);
        assert_eq!(h.admit(now), Admit::Wait(Some(until)));
        assert_eq!(h.admit(until), Admit::Go);
        h.learn(Learned::RetryAfter(Duration::from_secs(3600)), now, now, &l);
        assert_eq!(
            h.admit(now),
            Admit::Wait(Some(now + Duration::from_secs(60)))
        );
    }

    #[test]
    fn an_unreachable_host_shares_its_attempts_then_fails_every_url() {
        let l = limits(8);
        let now = Instant::now();
        let mut h = Host::new();
        for _ in 0..3 {
            let next = h.learn(
                Learned::Unreachable(Unreachable::new("host", "connection refused")),
                now,
                now,
                &l,
            );
            assert_eq!(next, Next::Again);
            assert!(matches!(h.admit(now), Admit::Wait(Some(_))), "backs off");
        }
        let line = "host unreachable after 4 attempts (connection refused)";
        let next = h.learn(
            Learned::Unreachable(Unreachable::new("host", "connection refused")),
            now,
            now,
            &l,
        );
        assert_eq!(next, Next::Fail(line.into()));
        match h.admit(now + Duration::from_secs(3600)) {
            Admit::Gone(gone) => assert_eq!(gone.line(), line),
            other => panic!("{other:?}"),
        }
        // Connects that were under way fail with the same line.
        for _ in 0..2 {
            let late = Unreachable::new("host", "connect timed out");
            let next = h.learn(Learned::Unreachable(late), now, now, &l);
            assert_eq!(next, Next::Fail(line.into()));
        }
        let late = Learned::NoSuchName("no such host".into());
        assert_eq!(h.learn(late, now, now, &l), Next::Fail(line.into()));
    }

    #[test]
    fn connects_refused_together_are_one_attempt_and_wait_out_its_pause() {
        let l = limits(8);
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let refused = || Learned::Unreachable(Unreachable::new("host", "connection refused"));
        let mut h = Host::new();
        // Eight connects that took their slots at t0, refused a moment later one after another.
        assert_eq!(h.learn(refused(), t0, t0 + ms(1), &l), Next::Again);
        for i in 1..8 {
            assert_eq!(h.learn(refused(), t0, t0 + ms(1 + i), &l), Next::Later);
        }
        assert_eq!(h.failed_connects, 1, "one moment of the host, one attempt");
        assert!(
            matches!(h.admit(t0 + ms(10)), Admit::Wait(Some(_))),
            "all wait"
        );
        // Probes one after another, each begun after the last failure: each counts.
        let mut now = t0 + ms(10);
        for _ in 0..2 {
            now += Duration::from_secs(10);
            assert_eq!(h.learn(refused(), now, now + ms(1), &l), Next::Again);
        }
        now += Duration::from_secs(10);
        let line = "host unreachable after 4 attempts (connection refused)";
        let next = h.learn(refused(), now, now + ms(1), &l);
        assert_eq!(next, Next::Fail(line.into()));
        // A server back in time resets it all: the next refusal is a first attempt again.
        let mut h = Host::new();
        h.learn(refused(), t0, t0 + ms(1), &l);
        h.learn(reply(true), t0 + ms(2), t0 + ms(3), &l);
        assert_eq!(h.learn(refused(), t0, t0 + ms(4), &l), Next::Again);
        assert_eq!(h.failed_connects, 1);
    }

    #[test]
    fn a_dead_proxy_is_the_one_unreachable_in_one_attempt() {
        let once = Policy {
            retries: 0,
            ..limits(1).retry
        };
        let l = Limits::new(1, once);
        let mut h = Host::new();
        let dead = Unreachable::new("proxy 127.0.0.1:9", "connection refused");
        let now = Instant::now();
        let next = h.learn(Learned::Unreachable(dead), now, now, &l);
        let line = "proxy 127.0.0.1:9 unreachable after 1 attempt (connection refused)";
        assert_eq!(next, Next::Fail(line.into()));
    }

    #[test]
    fn a_response_resets_the_unreachable_count() {
        let l = limits(8);
        let now = Instant::now();
        let mut h = Host::new();
        for _ in 0..3 {
            h.learn(
                Learned::Unreachable(Unreachable::new("host", "refused")),
                now,
                now,
                &l,
            );
        }
        h.learn(reply(true), now, now, &l);
        let next = h.learn(
            Learned::Unreachable(Unreachable::new("host", "refused")),
            now,
            now,
            &l,
        );
        assert_eq!(next, Next::Again);
    }

    #[test]
    fn no_such_name_is_not_retried_and_the_resolver_gets_one_more_try_per_host() {
        let l = limits(8);
        let now = Instant::now();
        let mut h = Host::new();
        assert_eq!(h.learn(Learned::ResolverBusy, now, now, &l), Next::Again);
        assert_eq!(h.learn(Learned::ResolverBusy, now, now, &l), Next::AsUsual);
        let next = h.learn(Learned::NoSuchName("no such host".into()), now, now, &l);
        assert_eq!(next, Next::Fail("no such host".into()));
        assert!(matches!(h.admit(now), Admit::Gone(_)));
    }

    #[test]
    fn a_key_is_of_exactly_the_urls_that_make_it() {
        let urls = [
            "http://a/x",
            "http://a:80/y",
            "http://a:8080/",
            "https://a/",
            "https://a:80/",
            "http://ab/",
            "http://[::1]/",
            "http://[::1]:81/",
            "http://127.0.0.1:0/",
            "file:///tmp/x",
        ];
        for one in urls {
            let key = Key::of(&Url::parse(one).unwrap());
            for other in urls {
                let url = Url::parse(other).unwrap();
                assert_eq!(key.is_of(&url), Key::of(&url) == key, "{one} / {other}");
            }
        }
    }

    #[test]
    fn idle_hosts_are_forgotten_and_failing_ones_kept() {
        let hosts = Hosts::new(limits(4));
        let a = Key::of(&Url::parse("http://a:80/x").unwrap());
        let b = Key::of(&Url::parse("http://a/y").unwrap());
        assert_eq!(a, b, "the default port is the same host");
        assert_eq!(hosts.try_admit(&a), Admit::Go);
        hosts.release(&a);
        assert!(hosts.lock().is_empty());
        hosts.learn(&a, Learned::NoSuchName("x".into()), Instant::now());
        assert!(matches!(hosts.try_admit(&a), Admit::Gone(_)));
        assert_eq!(hosts.lock().len(), 1);
    }
}
