//! The worker pool: a producer feeding a bounded channel, N workers draining it, and the main
//! thread turning their events into output. The workers run as fibers on one thread a core (see
//! [`Pool::threads`] and [`crate::fiber`]); each is one download at a time, as before.
//!
//! Backpressure comes from the job channel (2 × jobs, at least 32): the producer reads more
//! input only when the workers have drained it to half (see `Refill`), so memory stays O(jobs)
//! however long the list.
//! Errors travel through the event channel with the results and the run goes on.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, Scope, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, TryRecvError};
use tokio::sync::Notify;

use crate::download::{Failure, FailureKind, Fetcher, Notice, Outcome};
use crate::fdlimit;
use crate::hosts::{Admit, Gone, Hosts, Key, Lease, Limits, Waiting};
use crate::input::{Entry, Invalid, Item, Origin, Warning};
use crate::naming::{Home, Homes};
use crate::redact;
use crate::select::{Selector, Shard};
use crate::trace::{Exchange, Phases};

use self::crew::Crew;
use self::outbox::Outbox;
use self::producer::{produce, Refill};

mod crew;
mod handoff;
mod outbox;
mod producer;

/// How often the main thread wakes to redraw progress when no event arrives.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// While events keep coming, the main thread naps this long between batches instead of parking
/// on the channel: a parked receiver has to be woken by a futex call for every event (two per
/// download), a napping one is not, which matters most on many small files (workload C in
/// `benches/run`). Long, because each wake-up takes a core from the downloads or the server
/// for a moment; those who cannot wait wake it early (see [`outbox`]). What it costs: an output
/// line may come up to this much later.
pub(crate) const NAP: Duration = Duration::from_millis(4);

/// How often a worker thread whose own workers are done looks whether the other threads are:
/// until then it drives the HTTP/2 connections its fibers opened, and the run's end waits on it.
const LAST_LOOK: Duration = Duration::from_millis(1);

/// Naps in a row that found nothing before the main thread parks again. A download every few
/// naps (one connection at a time to a slow server) would otherwise wake a parked main thread
/// for each of its events; napping on costs a timer wake-up a nap for this long.
const QUIET_NAPS: u32 = 10;

/// The least [`Pool::low`]: a few kilobytes of queued jobs.
const MIN_LOW: usize = 16;

/// What workers and the producer tell the main thread.
// `Finished` is the large variant and also the one every download sends: boxing it would add an
// allocation per download to save a few hundred bytes in a channel of at most 4 × jobs + 16.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Event {
    /// Headers are in and the body is about to stream into `path`.
    Started {
        id: usize,
        path: PathBuf,
        total: Option<u64>,
        counter: Arc<AtomicU64>,
    },
    /// An attempt failed and the download tries again after `wait`.
    Retrying {
        id: usize,
        /// Credentials already removed.
        url: String,
        wait: Duration,
        reason: String,
    },
    /// A download ended, saved or not.
    Finished {
        id: usize,
        /// Credentials already removed.
        url: String,
        origin: Origin,
        outcome: Outcome,
    },
    /// Something the user should know about the run as a whole (printed once, as a note).
    Note(String),
    /// An input line that is not a URL we can fetch.
    Invalid(Invalid),
    /// Something about the list worth saying that fails nothing (an ignored option).
    Warning(Warning),
    /// A URL read and queued that Ctrl-C stopped before its download began.
    NotStarted {
        /// Credentials already removed.
        url: String,
        origin: Origin,
    },
    /// A URL already queued from an earlier input (and named by neither): not downloaded again.
    Duplicate {
        /// Credentials already removed.
        url: String,
        origin: Origin,
        first: Origin,
    },
}

/// The main thread's side: it alone prints.
pub(crate) trait Sink {
    fn event(&mut self, event: Event);
    /// Called every [`TICK`] without events, to redraw progress.
    fn tick(&mut self);
}

/// What the pool needs besides its inputs.
pub(crate) struct Pool<'a> {
    pub(crate) jobs: usize,
    pub(crate) fetcher: Fetcher<'a>,
    pub(crate) cancel: &'a Arc<AtomicBool>,
    /// Valid URLs read so far (the progress display's "known" total).
    pub(crate) queued: &'a Arc<AtomicUsize>,
    /// Set once the producer has read the inputs to their end: a run that stopped before
    /// (a closed stdout) left URLs undone that no count shows.
    pub(crate) read_all: &'a Arc<AtomicBool>,
    /// This process's share of the list (`--shard`), if not all of it.
    pub(crate) shard: Option<Shard>,
}

struct Job {
    id: usize,
    entry: Entry,
    /// The path reserved for it as the list was read (see [`crate::naming::Namer::home`]).
    home: Option<Home>,
    /// When it was put in the queue (the trace's queueing phase).
    queued: Instant,
    /// The requests of its earlier runs, when it was handed back ([`Done::Later`],
    /// [`Done::OutOfFiles`]): the trace keeps every request made, theirs first.
    earlier: Vec<Exchange>,
    /// Its slot was handed on by a download still saving its body (see [`handoff`]): it dials
    /// at once.
    handed: bool,
}

/// How a worker's job ended.
enum Done<'h> {
    /// The download's end, and its slot at the host if it still holds one (to hand on).
    Event(Event, Option<Lease<'h>>),
    /// No file descriptor for its socket, client or part: not the URL's failure, it goes back.
    OutOfFiles(Job, String),
    /// Its host is down for a moment (see [`crate::hosts::Next::Later`]): it goes back to wait.
    Later(Job),
}

/// How a worker's run of jobs ended.
enum Left {
    /// No job for it: the input is done and nothing is held back.
    Idle,
    /// Ctrl-C, or the main thread is gone.
    Stopped,
    /// Out of file descriptors, and not the last worker (already out of `alive`).
    Retired,
}

/// Takes one from a count when dropped.
struct Counted<'a>(&'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Takes one worker out of `alive` unless it is the last one; whether it did.
fn retire(alive: &AtomicUsize) -> bool {
    alive
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n > 1).then(|| n - 1)
        })
        .is_ok()
}

impl Pool<'_> {
    /// Runs every input through the workers and returns when all are done, or cancelled: a
    /// cancelled worker stops at its next chunk, and one waiting on the network stops within a
    /// tick too (the transport looks at the cancel flag while it waits), so the scope always ends.
    /// Returns the most downloads that ran at once (see [`Hosts::peak`]).
    pub(crate) fn run<I>(&self, inputs: I, sink: &mut dyn Sink) -> usize
    where
        I: Iterator<Item = Item> + Send + 'static,
    {
        let jobs = fdlimit::workers_for(self.jobs, fdlimit::soft(), fdlimit::open_now());
        if jobs < self.jobs {
            sink.event(Event::Note(format!(
                "the open-file limit allows {jobs} downloads at once, not {} (raise it with \
                 ulimit -n)",
                self.jobs
            )));
        }
        let pool = Pool {
            jobs,
            fetcher: self.fetcher,
            ..*self
        };
        pool.run_with(inputs, sink)
    }

    /// How far the workers drain the job channel before the producer refills it; the channel
    /// holds twice this. At least [`MIN_LOW`]: with one or two workers, a channel of 2 × jobs
    /// would wake the producer for every job or two.
    fn low(&self) -> usize {
        self.jobs.max(MIN_LOW)
    }

    fn run_with<I>(&self, inputs: I, sink: &mut dyn Sink) -> usize
    where
        I: Iterator<Item = Item> + Send + 'static,
    {
        let (job_tx, job_rx) = bounded::<Job>(self.low() * 2);
        let (event_tx, event_rx) = bounded::<Event>(self.jobs * 4 + 16);
        let event_tx = Outbox::new(event_tx, thread::current());
        // Workers still taking jobs: counted from the start, so that the producer never takes
        // "none yet" for "all gone".
        let alive = Arc::new(AtomicUsize::new(self.jobs));
        // Rung by the producer for every job and by the hosts for every change of room: the
        // one thing a fiber waiting for either can be woken by.
        let bell = Arc::new(Notify::new());
        let held = Arc::new(Mutex::new(None));
        let refill = Refill {
            tx: job_tx,
            low: self.low(),
            workers: alive.clone(),
            bell: bell.clone(),
            held: held.clone(),
        };
        let producer = self.spawn_producer(inputs, refill, event_tx.clone());
        let settings = self.fetcher.settings;
        let per_host = match settings.per_host {
            0 => self.jobs,
            n => n,
        };
        let (wake_tx, wake_rx) = bounded::<()>(self.jobs);
        let limits = Limits::new(per_host, settings.retry).for_jobs(self.jobs);
        let hosts = Arc::new(Hosts::new(limits).waking(wake_tx, bell.clone()));
        // Bounded, so memory stays O(jobs) and the producer's backpressure holds.
        let waiting = Waiting::new((16 * self.jobs).max(4096));
        // One note for the whole run, however many workers give up their place.
        let noted = AtomicBool::new(false);
        let threads = AtomicUsize::new(self.threads());
        thread::scope(|scope| {
            // Owned by this closure, so that if the main thread ever panicked here the receiver
            // would be dropped while unwinding: workers blocked on a full channel then see a
            // closed one and exit, instead of the scope waiting for them forever.
            let event_rx = event_rx;
            let crew = Crew {
                jobs: job_rx.clone(),
                events: event_tx,
                alive: &alive,
                producer: producer.as_ref(),
                hosts: &hosts,
                waiting: &waiting,
                wake: wake_rx,
                noted: &noted,
                threads: &threads,
                bell: &bell,
            };
            self.spawn_workers(scope, crew);
            // Only workers and the producer hold senders now: the loop ends when they are done.
            self.relay(&event_rx, &alive, sink);
        });
        if self.cancel.load(Ordering::SeqCst) {
            let mut left = waiting.drain();
            left.extend(held.lock().unwrap_or_else(PoisonError::into_inner).take());
            left.extend(job_rx.try_iter());
            unstarted(left, sink);
        }
        hosts.peak()
    }

    /// The producer is a detached thread, not a scoped one: it may sit in a read of stdin that
    /// nothing can interrupt, and Ctrl-C must not wait for a producer that is waiting for us.
    fn spawn_producer<I>(&self, inputs: I, jobs: Refill, events: Outbox) -> Option<Thread>
    where
        I: Iterator<Item = Item> + Send + 'static,
    {
        let (cancel, queued) = (self.cancel.clone(), self.queued.clone());
        let read_all = self.read_all.clone();
        let selector = Selector::new(self.shard);
        let by_server = self.fetcher.settings.content_disposition;
        let homes = Homes::new(self.fetcher.namer.clone(), by_server);
        let spawned = thread::Builder::new()
            .name("fetchpar-input".into())
            .spawn(move || {
                if produce(inputs, selector, &homes, &jobs, &events, &cancel, &queued) {
                    read_all.store(true, Ordering::SeqCst);
                }
                // Only now: the run's end (all senders gone) must find `read_all` set.
                drop((jobs, events));
            });
        match spawned {
            Ok(handle) => Some(handle.thread().clone()),
            Err(_) => {
                // Without a producer there is nothing to do; the closed job channel ends the run.
                self.cancel.store(true, Ordering::SeqCst);
                None
            }
        }
    }

    /// Starts the workers, several to a thread (see [`Pool::threads`]); the crew's own channel
    /// ends are dropped when this returns.
    fn spawn_workers<'scope>(&'scope self, scope: &'scope Scope<'scope, '_>, crew: Crew<'scope>) {
        let threads = self.threads();
        let mut started = 0;
        for t in 0..threads {
            let count = self.jobs / threads + usize::from(t < self.jobs % threads);
            let crews: Vec<Crew<'scope>> = (0..count).map(|_| crew.clone()).collect();
            let spawned = thread::Builder::new()
                .name(format!("fetchpar-worker-{t}"))
                .spawn_scoped(scope, move || self.workers(&crews));
            if spawned.is_err() {
                // Out of threads: carry on with the workers we have.
                crew.threads.fetch_sub(threads - t, Ordering::SeqCst);
                crew.alive.fetch_sub(self.jobs - started, Ordering::SeqCst);
                crew.producer.map(Thread::unpark);
                break;
            }
            started += count;
        }
    }

    /// Threads the workers run on: one a core, each running its share of the workers as fibers
    /// (see [`crate::fiber`]); one a worker under `--split`, whose downloads wait on threads of
    /// their own, which would hold up every other fiber of the thread.
    fn threads(&self) -> usize {
        if self.fetcher.settings.split > 1 {
            return self.jobs;
        }
        thread::available_parallelism()
            .map_or(1, usize::from)
            .min(self.jobs)
    }

    /// Runs `crews`' workers on this thread: as fibers over a runtime of its own when there are
    /// several (one after another if that runtime cannot be made).
    ///
    /// The fibers' runtime also drives the HTTP/2 connections its fibers opened, which the
    /// workers of other threads may be using: it keeps going until every worker thread is done.
    fn workers(&self, crews: &[Crew<'_>]) {
        let Some(first) = crews.first() else {
            return;
        };
        // Counted out however this thread ends: a worker's panic must not leave the others
        // waiting for it at the end forever.
        let done = Counted(first.threads);
        let runtime = match crews {
            [_, _, ..] => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok(),
            _ => None,
        };
        let Some(runtime) = runtime else {
            for crew in crews {
                self.worker(crew);
            }
            return;
        };
        let bodies = crews
            .iter()
            .map(|crew| Box::new(move || self.worker(crew)) as Box<dyn FnOnce() + '_>)
            .collect();
        crate::fiber::run(&runtime, bodies);
        drop(done);
        runtime.block_on(async {
            while first.threads.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(LAST_LOOK).await;
            }
        });
    }

    fn worker(&self, crew: &Crew<'_>) {
        loop {
            match self.take_jobs(crew) {
                Left::Retired => return,
                Left::Stopped => break,
                Left::Idle => {}
            }
            // Nothing left for this worker. A download that ran out of file descriptors may have
            // given its job back and retired meanwhile, counting on this worker (see `retire`):
            // the two read each other's counts in one order, so one of them sees the job.
            crew.alive.fetch_sub(1, Ordering::SeqCst);
            if self.cancel.load(Ordering::Relaxed) || crew.waiting.len() == 0 {
                crew.hosts.wake_all();
                crew.producer.map(Thread::unpark);
                return;
            }
            crew.alive.fetch_add(1, Ordering::SeqCst);
        }
        crew.alive.fetch_sub(1, Ordering::SeqCst);
        crew.producer.map(Thread::unpark);
    }

    /// Downloads jobs until there are none for this worker (`Idle`), the run stops, or it
    /// retires for want of file descriptors.
    fn take_jobs(&self, crew: &Crew<'_>) -> Left {
        let wake_producer = || crew.producer.map(Thread::unpark);
        let mut passed = None;
        while let Some((job, admit, key)) = passed.take().or_else(|| crew.next(self.cancel)) {
            if crew.jobs.len() <= self.low() {
                // Cheap unless the producer is parked (see `Refill`).
                wake_producer();
            }
            if self.cancel.load(Ordering::Relaxed) {
                crew.give_back(job);
                return Left::Stopped;
            }
            let (event, lease) = match self.work(job, admit, key, crew) {
                Done::Event(event, lease) => (event, lease),
                Done::OutOfFiles(job, why) => {
                    crew.give_back(job);
                    if retire(crew.alive) {
                        if !crew.noted.swap(true, Ordering::Relaxed) {
                            crew.events.send(Event::Note(why));
                        }
                        wake_producer();
                        return Left::Retired;
                    }
                    // The last worker keeps going: descriptors free up as downloads end.
                    crate::fiber::sleep(TICK);
                    continue;
                }
                Done::Later(job) => {
                    crew.give_back(job);
                    continue;
                }
            };
            if !crew.events.send(event) {
                return Left::Stopped;
            }
            passed = lease.and_then(|lease| crew.next_on(lease));
        }
        Left::Idle
    }

    /// The main thread's loop: hands events to `sink` until the workers and the producer are
    /// done, or, after a cancel, until the workers are.
    fn relay(&self, events: &Receiver<Event>, alive: &AtomicUsize, sink: &mut dyn Sink) {
        let mut quiet = QUIET_NAPS;
        loop {
            let next = match events.try_recv() {
                Ok(event) => Ok(event),
                Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) if quiet < QUIET_NAPS => {
                    quiet += 1;
                    // Woken early by a sender that cannot wait (see `Outbox`).
                    thread::park_timeout(NAP);
                    continue;
                }
                Err(TryRecvError::Empty) => events.recv_timeout(TICK),
            };
            match next {
                Ok(event) => {
                    quiet = 0;
                    sink.event(event)
                }
                Err(RecvTimeoutError::Timeout) => sink.tick(),
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if self.cancel.load(Ordering::Relaxed) && alive.load(Ordering::SeqCst) == 0 {
                // Workers are done; the producer may be stuck on stdin, so don't wait for it,
                // just take what is already queued.
                while let Ok(event) = events.try_recv() {
                    sink.event(event);
                }
                return;
            }
        }
    }

    fn work<'h>(&self, mut job: Job, admit: Admit, key: Key, crew: &Crew<'h>) -> Done<'h> {
        let (hosts, event_tx) = (crew.hosts, &crew.events);
        // With -c a part of an earlier run may lie under the URL's name, which its line must
        // name: the download looks on disk and fails at its host's admission with the same line.
        match admit {
            Admit::Gone(gone) if !self.fetcher.settings.resume => {
                return Done::Event(gone_event(job, &gone), None)
            }
            _ => {}
        }
        let lease = match admit {
            Admit::Go => Lease::held(hosts, key),
            _ => Lease::not_held(hosts, key),
        };
        let mut lease = lease.handing_to(crew.waiting).handed(job.handed);
        let counter = Arc::new(AtomicU64::new(0));
        let mut on_start = |notice: Notice<'_>| {
            let event = match notice {
                Notice::Started(started) => Event::Started {
                    id: job.id,
                    path: started.path.to_path_buf(),
                    total: started.total,
                    counter: counter.clone(),
                },
                Notice::Retrying { wait, reason } => Event::Retrying {
                    id: job.id,
                    url: redact::url(&job.entry.url),
                    wait,
                    reason: reason.to_string(),
                },
            };
            event_tx.send(event);
        };
        let mut outcome = self.fetcher.fetch(
            &job.entry,
            job.home.as_ref(),
            &counter,
            &mut on_start,
            &mut lease,
        );
        outcome.phases.queued = Some(job.queued);
        if let Err(failure) = &outcome.result {
            match failure.reason.kind() {
                FailureKind::OutOfFiles(why) => {
                    let why = format!("out of open files ({why}): running one download fewer");
                    job.earlier.append(&mut outcome.exchanges);
                    return Done::OutOfFiles(job, why);
                }
                FailureKind::HostLater(_) => {
                    job.earlier.append(&mut outcome.exchanges);
                    return Done::Later(job);
                }
                _ => {}
            }
        }
        if !job.earlier.is_empty() {
            outcome
                .exchanges
                .splice(0..0, std::mem::take(&mut job.earlier));
        }
        let event = Event::Finished {
            id: job.id,
            url: redact::url(&job.entry.url),
            origin: job.entry.origin,
            outcome,
        };
        Done::Event(event, lease.holds().then_some(lease))
    }
}

/// After Ctrl-C, one event for each job read and never started, in input order: `--json` owes
/// every URL its record. (One the producer read at that very moment, before it could hold it,
/// is only counted in the summary.)
fn unstarted(mut jobs: Vec<Job>, sink: &mut dyn Sink) {
    jobs.sort_by_key(|job| job.id);
    for job in jobs {
        let url = redact::url(&job.entry.url);
        let origin = job.entry.origin;
        sink.event(Event::NotStarted { url, origin });
    }
}

/// The end of a URL whose host is gone before it started: the host's line, nothing else done.
fn gone_event(job: Job, gone: &Gone) -> Event {
    Event::Finished {
        id: job.id,
        url: redact::url(&job.entry.url),
        origin: job.entry.origin,
        outcome: Outcome {
            result: Err(Failure::new(FailureKind::Host(gone.line()))),
            bytes: 0,
            elapsed: Duration::ZERO,
            retries: 0,
            notes: Vec::new(),
            phases: Phases {
                queued: Some(job.queued),
                ..Phases::default()
            },
            exchanges: job.earlier,
        },
    }
}
