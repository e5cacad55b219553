//! The producer: reads the inputs, drops what this run does not download (duplicates, other
//! shards' URLs), reports bad lines, gives each URL its name in list order (see
//! [`crate::naming::Namer::home`]), and feeds the bounded job channel.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Instant;

use crossbeam_channel::Sender;
use tokio::sync::Notify;

use super::{Event, Job, Outbox, TICK};
use crate::input::Item;
use crate::naming::Homes;
use crate::redact;
use crate::select::{Selector, Verdict};

/// The producer's end of the job channel, with backpressure in two levels: when the channel is
/// full (2 × `low`) the producer parks until the workers have taken it down to `low`;
/// a worker that sees it there unparks it (an atomic swap, no system call, unless the producer
/// is in fact parked). A plain blocking send would wake the producer for every job taken: more
/// context switches and CPU on many small files (workload C in `benches/run`).
pub(super) struct Refill {
    pub(super) tx: Sender<Job>,
    pub(super) low: usize,
    /// Workers still taking jobs; each one unparks the producer as it stops.
    pub(super) workers: Arc<AtomicUsize>,
    /// Rung for each job sent, for workers that wait as fibers (see [`super::Crew`]).
    pub(super) bell: Arc<Notify>,
    /// The job the producer holds while it waits for room: after Ctrl-C it is one of those
    /// never started, which the main thread reports with the rest (see `Pool::run_with`).
    pub(super) held: Arc<Mutex<Option<Job>>>,
}

impl Refill {
    /// Sends `job` once there is room; `false` if the workers are gone or Ctrl-C came (the park
    /// timeout is what lets a parked producer see Ctrl-C).
    fn send(&self, job: Job, cancel: &AtomicBool) -> bool {
        let job = if self.tx.is_full() {
            *self.hold() = Some(job);
            while self.tx.len() > self.low {
                if cancel.load(Ordering::Relaxed) || self.workers.load(Ordering::SeqCst) == 0 {
                    // Left where the main thread finds it.
                    return false;
                }
                thread::park_timeout(TICK);
            }
            match self.hold().take() {
                Some(job) => job,
                None => return false,
            }
        } else {
            job
        };
        let sent = self.tx.send(job).is_ok();
        self.bell.notify_waiters();
        sent
    }

    fn hold(&self) -> std::sync::MutexGuard<'_, Option<Job>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Feeds every input to the workers; `true` once the inputs have ended, `false` when the run
/// stopped first (Ctrl-C, a closed stdout, the workers gone).
pub(super) fn produce<I>(
    inputs: I,
    mut selector: Selector,
    homes: &Homes,
    jobs: &Refill,
    events: &Outbox,
    cancel: &AtomicBool,
    queued: &AtomicUsize,
) -> bool
where
    I: Iterator<Item = Item>,
{
    for (id, item) in inputs.enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return false;
        }
        let sent = match item {
            Item::Entry(entry) => match selector.select(&entry) {
                Verdict::Download => {
                    queued.fetch_add(1, Ordering::Relaxed);
                    let queued_at = Instant::now();
                    jobs.send(
                        Job {
                            id,
                            home: homes.of(&entry),
                            entry,
                            queued: queued_at,
                            earlier: Vec::new(),
                            handed: false,
                        },
                        cancel,
                    )
                }
                Verdict::Duplicate(first) => events.send(Event::Duplicate {
                    url: redact::url(&entry.url),
                    origin: entry.origin,
                    first,
                }),
                Verdict::Elsewhere => true,
            },
            // Like invalid lines, warnings are said by one shard only.
            Item::Invalid(invalid) if selector.reports_invalid() => {
                events.send(Event::Invalid(invalid))
            }
            Item::Warning(warning) if selector.reports_invalid() => {
                events.send(Event::Warning(warning))
            }
            Item::Invalid(_) | Item::Warning(_) => true,
        };
        if !sent {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{Entry, Origin};
    use crossbeam_channel::{bounded, Receiver};
    use std::sync::mpsc;
    use std::time::Duration;

    fn job(id: usize) -> Job {
        Job {
            id,
            home: None,
            entry: Entry::new(
                Origin::Line(id),
                url::Url::parse("http://127.0.0.1:9/x").unwrap(),
            ),
            queued: Instant::now(),
            earlier: Vec::new(),
            handed: false,
        }
    }

    /// A job channel of `2 × low`, already full, with one worker counted.
    fn full(low: usize) -> (Arc<Refill>, Receiver<Job>, Arc<AtomicBool>) {
        let (tx, rx) = bounded::<Job>(2 * low);
        let refill = Arc::new(Refill {
            tx,
            low,
            workers: Arc::new(AtomicUsize::new(1)),
            bell: Arc::new(Notify::new()),
            held: Arc::default(),
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
        // Not dropped: where the main thread finds it, to report it as never started.
        assert_eq!(refill.hold().as_ref().map(|job| job.id), Some(2));
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
