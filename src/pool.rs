//! The worker pool: a producer feeding a bounded channel, N worker threads draining it, and the
//! main thread turning their events into output.
//!
//! Backpressure comes from the job channel (2 × jobs): the producer reads more input only when
//! the workers have drained it to half (see `Refill`), so memory stays O(jobs) however long the
//! list.
//! Errors travel through the event channel with the results and the run goes on.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, RecvTimeoutError, Sender, TryRecvError};

use crate::download::{Fetcher, Outcome, Started};
use crate::input::{Entry, Invalid, Item, Origin};
use crate::redact;
use crate::select::{Selector, Shard, Verdict};

/// How often the main thread wakes to redraw progress when no event arrives.
pub const TICK: Duration = Duration::from_millis(100);

/// While events keep coming, the main thread naps this long between batches instead of parking
/// on the channel: a parked receiver has to be woken by a futex call for every event (two per
/// download), a napping one is not. On workload C (2000 × 1 KiB, J = 16) that cut the context
/// switches by about a third (7 600–8 900 to ~5 500) for ~5% less CPU. What it costs: an output line or the
/// end of the run may come up to this much later.
pub const NAP: Duration = Duration::from_millis(1);

/// After Ctrl-C, how long running downloads get to reach their next chunk before we stop
/// waiting for them (one blocked on a silent server could otherwise hold us for --timeout).
pub const GRACE: Duration = Duration::from_secs(1);

/// What workers and the producer tell the main thread.
#[derive(Debug)]
pub enum Event {
    /// Headers are in and the body is about to stream into `path`.
    Started {
        id: usize,
        /// Credentials already removed.
        url: String,
        origin: Origin,
        path: PathBuf,
        total: Option<u64>,
        counter: Arc<AtomicU64>,
    },
    /// A download ended, saved or not.
    Finished {
        id: usize,
        /// Credentials already removed.
        url: String,
        origin: Origin,
        outcome: Outcome,
    },
    /// An input line that is not a URL we can fetch.
    Invalid(Invalid),
    /// A URL already queued from an earlier input (and named by neither): not downloaded again.
    Duplicate {
        /// Credentials already removed.
        url: String,
        origin: Origin,
        first: Origin,
    },
}

/// The main thread's side: it alone prints.
pub trait Sink {
    fn event(&mut self, event: Event);
    /// Called every [`TICK`] without events, to redraw progress.
    fn tick(&mut self);
    /// Cancelled workers did not stop within [`GRACE`]: end the process now.
    fn abandon(&mut self) -> !;
}

/// What the pool needs besides its inputs.
pub struct Pool<'a> {
    pub jobs: usize,
    pub fetcher: Fetcher<'a>,
    pub cancel: &'a Arc<AtomicBool>,
    /// Valid URLs read so far (the progress display's "known" total).
    pub queued: &'a Arc<AtomicUsize>,
    /// This process's share of the list (`--shard`), if not all of it.
    pub shard: Option<Shard>,
}

struct Job {
    id: usize,
    entry: Entry,
}

impl Pool<'_> {
    /// Runs every input through the workers and returns when all are done (or cancelled).
    pub fn run<I>(&self, inputs: I, sink: &mut dyn Sink)
    where
        I: Iterator<Item = Item> + Send + 'static,
    {
        let (job_tx, job_rx) = bounded::<Job>(self.jobs * 2);
        let (event_tx, event_rx) = bounded::<Event>(self.jobs * 4 + 16);
        let mut producer = None;
        let low = self.jobs;
        // Workers still taking jobs: counted from the start, so that the producer never takes
        // "none yet" for "all gone".
        let alive = Arc::new(AtomicUsize::new(self.jobs));

        // The producer is a detached thread, not a scoped one: it may sit in a read of stdin that
        // nothing can interrupt, and Ctrl-C must not wait for a producer that is waiting for us.
        {
            let (event_tx, cancel, queued, workers) = (
                event_tx.clone(),
                self.cancel.clone(),
                self.queued.clone(),
                alive.clone(),
            );
            let selector = Selector::new(self.shard);
            let spawned = thread::Builder::new()
                .name("fetchpar-input".into())
                .spawn(move || {
                    let jobs = Refill {
                        tx: job_tx,
                        low,
                        workers,
                    };
                    produce(inputs, selector, jobs, event_tx, &cancel, &queued)
                });
            match spawned {
                Ok(handle) => producer = Some(handle.thread().clone()),
                // Without a producer there is nothing to do; the closed job channel ends the run.
                Err(_) => self.cancel.store(true, Ordering::SeqCst),
            }
        }

        thread::scope(|scope| {
            // Owned by this closure, so that if the main thread ever panicked here the receiver
            // would be dropped while unwinding: workers blocked on a full channel then see a
            // closed one and exit, instead of the scope waiting for them forever.
            let event_rx = event_rx;
            for n in 0..self.jobs {
                let (job_rx, event_tx, alive) = (job_rx.clone(), event_tx.clone(), &*alive);
                let producer_of_worker = producer.clone();
                let worker = move || {
                    let wake_producer = || producer_of_worker.as_ref().map(Thread::unpark);
                    for job in job_rx.iter() {
                        if job_rx.len() <= low {
                            // Cheap unless the producer is parked (see `Refill`).
                            wake_producer();
                        }
                        if self.cancel.load(Ordering::Relaxed) {
                            break;
                        }
                        let event = self.work(job, &event_tx);
                        if event_tx.send(event).is_err() {
                            break;
                        }
                    }
                    alive.fetch_sub(1, Ordering::SeqCst);
                    wake_producer();
                };
                if thread::Builder::new()
                    .name(format!("fetchpar-worker-{n}"))
                    .spawn_scoped(scope, worker)
                    .is_err()
                {
                    // Out of threads: carry on with the workers we have.
                    alive.fetch_sub(self.jobs - n, Ordering::SeqCst);
                    producer.as_ref().map(Thread::unpark);
                    break;
                }
            }
            // Only workers and the producer hold senders now: the loop ends when they are done.
            drop(event_tx);
            drop(job_rx);

            let mut cancelled_at: Option<Instant> = None;
            let mut busy = false;
            loop {
                let next = match event_rx.try_recv() {
                    Ok(event) => Ok(event),
                    Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                    Err(TryRecvError::Empty) if busy => {
                        busy = false;
                        thread::sleep(NAP);
                        continue;
                    }
                    Err(TryRecvError::Empty) => event_rx.recv_timeout(TICK),
                };
                match next {
                    Ok(event) => {
                        busy = true;
                        sink.event(event)
                    }
                    Err(RecvTimeoutError::Timeout) => sink.tick(),
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                if self.cancel.load(Ordering::Relaxed) {
                    let since = *cancelled_at.get_or_insert_with(Instant::now);
                    if alive.load(Ordering::SeqCst) == 0 {
                        // Workers are done; the producer may be stuck on stdin, so don't wait
                        // for it, just take what is already queued.
                        while let Ok(event) = event_rx.try_recv() {
                            sink.event(event);
                        }
                        break;
                    }
                    if since.elapsed() > GRACE {
                        sink.abandon();
                    }
                }
            }
        });
    }

    fn work(&self, job: Job, event_tx: &Sender<Event>) -> Event {
        let counter = Arc::new(AtomicU64::new(0));
        let url = redact::url(&job.entry.url);
        let mut on_start = |started: Started<'_>| {
            let _ = event_tx.send(Event::Started {
                id: job.id,
                url: url.clone(),
                origin: job.entry.origin,
                path: started.path.to_path_buf(),
                total: started.total,
                counter: counter.clone(),
            });
        };
        let outcome = self.fetcher.fetch(
            &job.entry.url,
            job.entry.output.as_deref(),
            &counter,
            &mut on_start,
        );
        Event::Finished {
            id: job.id,
            url,
            origin: job.entry.origin,
            outcome,
        }
    }
}

/// The producer's end of the job channel, with backpressure in two levels: when the channel is
/// full (2 × jobs) the producer parks until the workers have taken it down to `low` (= jobs);
/// a worker that sees it there unparks it (an atomic swap, no system call, unless the producer
/// is in fact parked). A plain blocking send wakes the producer for every job taken: on
/// workload C (2000 × 1 KiB, J = 16) ~600 more context switches and ~3% more CPU.
struct Refill {
    tx: Sender<Job>,
    low: usize,
    /// Workers still taking jobs; each one unparks the producer as it stops.
    workers: Arc<AtomicUsize>,
}

impl Refill {
    /// Sends `job` once there is room; `false` if the workers are gone or Ctrl-C came (the park
    /// timeout is what lets a parked producer see Ctrl-C).
    fn send(&self, job: Job, cancel: &AtomicBool) -> bool {
        if self.tx.is_full() {
            while self.tx.len() > self.low && self.workers.load(Ordering::SeqCst) > 0 {
                if cancel.load(Ordering::Relaxed) {
                    return false;
                }
                thread::park_timeout(TICK);
            }
        }
        self.tx.send(job).is_ok()
    }
}

fn produce<I>(
    inputs: I,
    mut selector: Selector,
    jobs: Refill,
    events: Sender<Event>,
    cancel: &AtomicBool,
    queued: &AtomicUsize,
) where
    I: Iterator<Item = Item>,
{
    for (id, item) in inputs.enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return;
        }
        let sent = match item {
            Ok(entry) => match selector.select(&entry) {
                Verdict::Download => {
                    queued.fetch_add(1, Ordering::Relaxed);
                    jobs.send(Job { id, entry }, cancel)
                }
                Verdict::Duplicate(first) => events
                    .send(Event::Duplicate {
                        url: redact::url(&entry.url),
                        origin: entry.origin,
                        first,
                    })
                    .is_ok(),
                Verdict::Elsewhere => true,
            },
            Err(invalid) if selector.reports_invalid() => {
                events.send(Event::Invalid(invalid)).is_ok()
            }
            Err(_) => true,
        };
        if !sent {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{Entry, Origin};
    use crossbeam_channel::Receiver;
    use std::sync::mpsc;

    fn job(id: usize) -> Job {
        Job {
            id,
            entry: Entry {
                origin: Origin::Line(id),
                url: url::Url::parse("http://127.0.0.1:9/x").unwrap(),
                output: None,
            },
        }
    }

    /// A job channel of `2 × low`, already full, with one worker counted.
    fn full(low: usize) -> (Arc<Refill>, Receiver<Job>, Arc<AtomicBool>) {
        let (tx, rx) = bounded::<Job>(2 * low);
        let refill = Arc::new(Refill {
            tx,
            low,
            workers: Arc::new(AtomicUsize::new(1)),
        });
        let cancel = Arc::new(AtomicBool::new(false));
        for id in 0..2 * low {
            assert!(refill.send(job(id), &cancel));
        }
        (refill, rx, cancel)
    }

    /// Runs a `send` into a full channel on its own thread; `stop` then ends its wait.
    fn blocked_send(stop: impl FnOnce(&Refill, &AtomicBool, Receiver<Job>)) {
        let (refill, rx, cancel) = full(1);
        let (done_tx, done_rx) = mpsc::channel();
        let producer = {
            let (refill, cancel) = (refill.clone(), cancel.clone());
            thread::spawn(move || done_tx.send(refill.send(job(2), &cancel)))
        };
        stop(&refill, &cancel, rx);
        producer.thread().unpark();
        // A hang guard, not a timing assertion.
        let sent = done_rx.recv_timeout(Duration::from_secs(20));
        assert_eq!(sent, Ok(false));
    }

    #[test]
    fn a_parked_producer_stops_when_the_workers_are_gone() {
        blocked_send(|refill, _, rx| {
            drop(rx);
            refill.workers.store(0, Ordering::SeqCst);
        });
    }

    #[test]
    fn a_parked_producer_stops_on_ctrl_c() {
        blocked_send(|_, cancel, _| cancel.store(true, Ordering::SeqCst));
    }

    #[test]
    fn a_parked_producer_sends_once_the_workers_have_taken_half() {
        let (refill, rx, cancel) = full(2);
        let producer = {
            let (refill, cancel) = (refill.clone(), cancel.clone());
            thread::spawn(move || refill.send(job(4), &cancel))
        };
        // What a worker does: take jobs, and unpark the producer once the channel is at `low`.
        let first = rx.recv().unwrap();
        let second = rx.recv().unwrap();
        assert!(rx.len() <= refill.low);
        producer.thread().unpark();
        assert!(producer.join().unwrap());
        let ids: Vec<usize> = [first, second]
            .into_iter()
            .chain(rx.try_iter())
            .map(|j| j.id)
            .collect();
        assert_eq!(ids, [0, 1, 2, 3, 4]);
    }
}
