//! A host's slot handed from one worker to another of the same thread before the first one's
//! download is over.
//!
//! A host that closes the connection after every reply (`python3 -m http.server`, HTTP/1.0)
//! takes a new connect for every file, and with its window at one the next connect waited for
//! the last body to be saved: the part file made, written, renamed, reported. A server that
//! serves in turn sat idle meanwhile. When such a reply's headers are in and its whole body
//! fits one read, the download hands its slot to the host's next held-back job and wakes a
//! worker of its own thread that has nothing to do; that worker runs first and starts the
//! connect, and the body is saved while the server accepts it (curl `--parallel` opens its next
//! connection before it writes the file it has just received, too).
//!
//! Only a worker idle on the same thread takes the job, woken by its own waker: no thread is
//! woken, and no other worker hears of it.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::task::Waker;
use std::time::Duration;

use super::Job;
use crate::hosts::{HandOn, Hosts, Key, Successors, Waiting};

thread_local! {
    /// Jobs handed on, each with the slot it was given, not yet taken up.
    static HANDED: RefCell<VecDeque<(Job, Key)>> = const { RefCell::new(VecDeque::new()) };
    /// The workers of this thread waiting for something to do, as (token, waker).
    static IDLE: RefCell<Vec<(u64, Waker)>> = const { RefCell::new(Vec::new()) };
    static TOKENS: Cell<u64> = const { Cell::new(0) };
}

/// A worker of this thread counted as idle, until dropped.
pub(super) struct Idle(u64);

impl Idle {
    /// Counts the running fiber as idle; `None` off a fiber.
    pub(super) fn enter() -> Option<Idle> {
        let waker = crate::fiber::waker()?;
        let token = TOKENS.with(|t| {
            t.set(t.get() + 1);
            t.get()
        });
        IDLE.with(|idle| idle.borrow_mut().push((token, waker)));
        Some(Idle(token))
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        IDLE.with(|idle| idle.borrow_mut().retain(|(token, _)| *token != self.0));
    }
}

/// A job handed to this thread's workers, if one is waiting to be taken up.
pub(super) fn take() -> Option<(Job, Key)> {
    HANDED.with(|handed| handed.borrow_mut().pop_front())
}

/// Whether a job handed on waits to be taken up.
pub(super) fn pending() -> bool {
    HANDED.with(|handed| !handed.borrow().is_empty())
}

fn idle_worker() -> Option<Waker> {
    IDLE.with(|idle| idle.borrow_mut().pop().map(|(_, waker)| waker))
}

impl Successors for Waiting<Job> {
    fn hand_on(&self, hosts: &Hosts, key: &Key, held: Duration) -> HandOn {
        if !self.has(key) {
            return HandOn::Kept;
        }
        let Some(worker) = idle_worker() else {
            return HandOn::Kept;
        };
        let handed = match hosts.hand_over(key, held) {
            None => HandOn::Kept,
            Some(false) => HandOn::Released,
            Some(true) => match self.pop_for(key) {
                Some(mut job) => {
                    job.handed = true;
                    HANDED.with(|handed| handed.borrow_mut().push_back((job, key.clone())));
                    HandOn::Passed
                }
                None => {
                    // Taken meanwhile by a worker of another thread: counted already, given
                    // back, and this download's reply no longer counted as coming in.
                    hosts.reply_in(key);
                    hosts.release(key);
                    HandOn::Released
                }
            },
        };
        // Woken either way: a worker woken for nothing asks again and goes back to waiting.
        worker.wake();
        handed
    }
}
