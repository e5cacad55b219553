//! The workers' and the producer's end of the event channel, which wakes the main thread when
//! it should not wait out its nap.
//!
//! While events keep coming, the main thread takes them in batches and naps between them (see
//! [`super::NAP`]): a receiver parked on the channel would be woken by every event, two a
//! download. Each of its wake-ups takes a core for a moment, and against a server that needs
//! one of the machine's cores to itself (`python3 -m http.server`, one interpreter lock), a
//! thousand of them a second cost more than the work they do. So the nap is long, and those
//! who cannot wait for its end say so: a sender that finds the channel half full (the workers
//! must not block on a full one), and the last sender as it goes (the run is over; the main
//! thread should not sleep on after it).

use std::thread::Thread;

use crossbeam_channel::Sender;

use super::Event;

/// One sender of events; dropping the last one ends the main thread's loop.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: Sender<Event>,
    /// The thread that takes the events: the one that made this outbox.
    main: Thread,
}

impl Outbox {
    /// An outbox whose events `main` takes.
    pub(super) fn new(tx: Sender<Event>, main: Thread) -> Outbox {
        Outbox { tx, main }
    }

    /// Sends `event`, waiting if the channel is full; false once the main thread has gone.
    pub(crate) fn send(&self, event: Event) -> bool {
        if self.tx.send(event).is_err() {
            return false;
        }
        let capacity = self.tx.capacity().unwrap_or(usize::MAX);
        if self.tx.len().saturating_mul(2) >= capacity {
            self.main.unpark();
        }
        true
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // Any sender may be the last; a spare wake-up costs the main thread one empty look.
        self.main.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::bounded;
    use std::sync::mpsc;
    use std::thread;
    use std::time::{Duration, Instant};

    /// Whether `poke`, given an outbox of four places, wakes its taker: a thread parked for a
    /// minute (a hang guard, not a timing assertion). The outbox lives until the taker is done,
    /// so that only what `poke` does can wake it.
    fn wakes(poke: impl FnOnce(&Outbox)) -> bool {
        let (parking, parked) = mpsc::channel();
        let taker = thread::spawn(move || {
            let _ = parking.send(());
            let start = Instant::now();
            thread::park_timeout(Duration::from_secs(60));
            start.elapsed() < Duration::from_secs(60)
        });
        parked.recv().unwrap();
        let (tx, _rx) = bounded(4);
        let outbox = Outbox::new(tx, taker.thread().clone());
        poke(&outbox);
        let woken = taker.join().unwrap();
        drop(outbox);
        woken
    }

    fn note() -> Event {
        Event::Note("a note".into())
    }

    #[test]
    fn a_half_full_channel_wakes_the_taker() {
        assert!(wakes(|outbox| {
            assert!(outbox.send(note()));
            assert!(outbox.send(note()));
        }));
    }

    #[test]
    fn a_sender_that_goes_wakes_the_taker() {
        assert!(wakes(|outbox| drop(outbox.clone())));
    }
}
