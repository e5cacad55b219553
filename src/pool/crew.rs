//! What the workers share, and how each takes its next job: from the jobs held back for a host
//! that now has room, or from the channel (see [`Crew::next`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::Thread;

use crossbeam_channel::{Receiver, TryRecvError};
use tokio::sync::Notify;

use super::{handoff, Job, Outbox, TICK};
use crate::hosts::{Admit, Hosts, Key, Lease, Waiting};

/// What every worker shares: its ends of the two channels, the count of workers still taking
/// jobs, the producer to wake, and the hosts with the jobs held back for them.
#[derive(Clone)]
pub(super) struct Crew<'a> {
    pub(super) jobs: Receiver<Job>,
    pub(super) events: Outbox,
    pub(super) alive: &'a AtomicUsize,
    pub(super) producer: Option<&'a Thread>,
    pub(super) hosts: &'a Arc<Hosts>,
    /// Jobs taken for a host that had no room (see [`Crew::next`]).
    pub(super) waiting: &'a Waiting<Job>,
    /// A token each time a host may have gained room (see [`Hosts::waking`]).
    pub(super) wake: Receiver<()>,
    /// Set once a worker has said why it gives up its place (one note per run).
    pub(super) noted: &'a AtomicBool,
    /// Worker threads not yet done (see [`super::Pool::workers`]).
    pub(super) threads: &'a AtomicUsize,
    /// Rung when a job is sent or a host may have room: what fibers waiting for either wait on
    /// (see [`crate::fiber::wait_for`]).
    pub(super) bell: &'a Notify,
}

impl Crew<'_> {
    /// The next job and its admission (a slot taken, or its host gone); `None` when all are
    /// done or on Ctrl-C. Jobs held back for a host that now has room come first, then the
    /// channel; a job for a host without room is held back and the worker takes another, so
    /// that one slow or dead host never holds every worker.
    pub(super) fn next(&self, cancel: &AtomicBool) -> Option<(Job, Admit, Key)> {
        loop {
            if cancel.load(Ordering::Relaxed) {
                // Kept for the main thread's account of jobs never started.
                while let Some((job, key)) = handoff::take() {
                    let _ = self.waiting.push(key, job, true);
                }
                return None;
            }
            if let Some((job, key)) = handoff::take() {
                return Some((job, Admit::Go, key));
            }
            if let Some((key, job, admit)) = self.waiting.pop_ready(self.hosts) {
                return Some((job, admit, key));
            }
            let job = if self.waiting.len() == 0 {
                self.recv_job(cancel)?
            } else {
                match self.next_or_wake()? {
                    Some(job) => job,
                    None => continue,
                }
            };
            let key = Key::of(&job.entry.url);
            match self.hosts.try_admit(&key) {
                Admit::Wait(_) => {}
                admit => return Some((job, admit, key)),
            }
            if let Err(job) = self.waiting.push(key.clone(), job, false) {
                // Held back as many as we keep: wait for this host, as a plain queue would.
                let Some(admit) = self.hosts.admit(&key, cancel) else {
                    // Ctrl-C: kept for the main thread's account of jobs never started.
                    let _ = self.waiting.push(key, job, true);
                    return None;
                };
                return Some((job, admit, key));
            }
        }
    }

    /// The next job held back for the host whose slot `lease` holds, the slot handed on to it:
    /// the worker that ends a download takes its host's next job itself, and no one is woken
    /// for a slot taken again at once (with the window at one, every download would otherwise
    /// wait for another worker to wake). `None`, the slot released, when that host has no job
    /// held back or no room for this one any more.
    pub(super) fn next_on(&self, lease: Lease<'_>) -> Option<(Job, Admit, Key)> {
        if self.waiting.len() == 0 {
            return None;
        }
        let (key, held) = lease.pass();
        if !self.hosts.pass_on(&key, held) {
            return None;
        }
        match self.waiting.pop_for(&key) {
            Some(job) => Some((job, Admit::Go, key)),
            None => {
                // Counted already: given back as unused.
                self.hosts.release(&key);
                None
            }
        }
    }

    /// The next job from the channel; `None` once it is closed and empty. On a fiber, which the
    /// channel cannot wake, it waits for the bell the producer rings for every job (and the
    /// first worker with nothing left rings for the others, see [`Hosts::wake_all`]).
    fn recv_job(&self, cancel: &AtomicBool) -> Option<Job> {
        if !crate::fiber::active() {
            return self.jobs.recv().ok();
        }
        loop {
            let asked = crate::fiber::wait_for(
                self.bell,
                || match self.jobs.try_recv() {
                    Ok(job) => Some(Some(job)),
                    Err(TryRecvError::Disconnected) => Some(None),
                    Err(TryRecvError::Empty) => None,
                },
                TICK,
            );
            match asked {
                Some(job) => return job,
                None if cancel.load(Ordering::Relaxed) => return None,
                None => {}
            }
        }
    }

    /// Takes back a job that could not start, to be tried again by whoever has room.
    pub(super) fn give_back(&self, job: Job) {
        let key = Key::of(&job.entry.url);
        let _ = self.waiting.push(key, job, true);
    }

    /// A job from the channel, or `Some(None)` when a host may have room (or a while passed:
    /// paused hosts resume by the clock); `None` when nothing is left anywhere.
    fn next_or_wake(&self) -> Option<Option<Job>> {
        if crate::fiber::active() {
            return self.next_or_wake_fiber();
        }
        crossbeam_channel::select! {
            recv(self.jobs) -> job => match job {
                Ok(job) => Some(Some(job)),
                // No more input: what is held back is all that is left. Nothing held back:
                // this worker is done now, not a tick later (the run ends when all are; a job a
                // running download gives back goes to a worker still alive, see `retire`).
                Err(_) if self.waiting.len() == 0 => None,
                Err(_) => {
                    let _ = self.wake.recv_timeout(TICK);
                    (self.waiting.len() > 0).then_some(None)
                }
            },
            recv(self.wake) -> _ => Some(None),
            default(TICK) => Some(None),
        }
    }
}

impl Crew<'_> {
    /// [`Crew::next_or_wake`] on a fiber, which neither channel can wake.
    fn next_or_wake_fiber(&self) -> Option<Option<Job>> {
        // Free for a job handed on by a worker of this thread (see `handoff`).
        let _idle = handoff::Idle::enter();
        let asked = crate::fiber::wait_for(
            self.bell,
            || {
                if handoff::pending() || self.wake.try_recv().is_ok() {
                    return Some(Some(None));
                }
                match self.jobs.try_recv() {
                    Ok(job) => Some(Some(Some(job))),
                    Err(TryRecvError::Disconnected) if self.waiting.len() == 0 => Some(None),
                    Err(_) => None,
                }
            },
            TICK,
        );
        // A tick without news: paused hosts resume by the clock.
        asked.unwrap_or(Some(None))
    }
}
