//! Jobs a worker took for a host that had no room, kept so that the worker can take other
//! hosts' jobs instead of waiting on that one (one dead host never holds all workers).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::{Admit, Hosts, Key};

/// Jobs taken for hosts that had no room, by host, in the order taken; bounded by `cap`.
pub(crate) struct Waiting<T> {
    cap: usize,
    queues: Mutex<HashMap<Key, VecDeque<T>>>,
    /// How many jobs `queues` holds: changed only under its lock, read without it, so that a
    /// worker finds "none waiting" (the usual case) without taking a lock every job shares.
    count: AtomicUsize,
}

impl<T> Waiting<T> {
    pub(crate) fn new(cap: usize) -> Waiting<T> {
        Waiting {
            cap: cap.max(1),
            queues: Mutex::new(HashMap::new()),
            count: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, VecDeque<T>>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Keeps `job` for later; gives it back when full (`force` ignores the bound, for a job that
    /// must not be lost and cannot be waited for).
    pub(crate) fn push(&self, key: Key, job: T, force: bool) -> Result<(), T> {
        let mut queues = self.lock();
        if self.count.load(Ordering::Relaxed) >= self.cap && !force {
            return Err(job);
        }
        queues.entry(key).or_default().push_back(job);
        self.count.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Every job still held back, taken out (Ctrl-C: they are reported as never started).
    pub(crate) fn drain(&self) -> Vec<T> {
        let mut queues = self.lock();
        self.count.store(0, Ordering::Release);
        queues.drain().flat_map(|(_, queue)| queue).collect()
    }

    /// Whether a job is held back for `key`.
    pub(crate) fn has(&self, key: &Key) -> bool {
        self.len() > 0 && self.lock().contains_key(key)
    }

    /// The next job held back for `key`, for a slot already held on it (see [`Lease::pass`]).
    ///
    /// [`Lease::pass`]: super::Lease::pass
    pub(crate) fn pop_for(&self, key: &Key) -> Option<T> {
        if self.len() == 0 {
            return None;
        }
        let mut queues = self.lock();
        let queue = queues.get_mut(key)?;
        let job = queue.pop_front()?;
        self.count.fetch_sub(1, Ordering::Release);
        if queue.is_empty() {
            queues.remove(key);
        }
        Some(job)
    }

    /// The first waiting job whose host admits it now (the slot taken), or whose host is gone.
    pub(crate) fn pop_ready(&self, hosts: &Hosts) -> Option<(Key, T, Admit)> {
        if self.len() == 0 {
            return None;
        }
        let mut queues = self.lock();
        let mut found = None;
        for (key, queue) in queues.iter_mut() {
            match hosts.try_admit(key) {
                Admit::Wait(_) => continue,
                admit => {
                    if let Some(job) = queue.pop_front() {
                        found = Some((key.clone(), job, admit));
                    } else if admit == Admit::Go {
                        hosts.release(key);
                    }
                    break;
                }
            }
        }
        let (key, job, admit) = found?;
        self.count.fetch_sub(1, Ordering::Release);
        if queues.get(&key).is_some_and(VecDeque::is_empty) {
            queues.remove(&key);
        }
        Some((key, job, admit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hosts::tests::limits;
    use url::Url;

    #[test]
    fn waiting_jobs_come_back_when_their_host_has_room() {
        let hosts = Hosts::new(limits(1));
        let waiting = Waiting::new(2);
        let a = Key::of(&Url::parse("http://a/").unwrap());
        let b = Key::of(&Url::parse("http://b/").unwrap());
        assert_eq!(hosts.try_admit(&a), Admit::Go);
        assert!(waiting.push(a.clone(), 1, false).is_ok());
        assert!(waiting.push(a.clone(), 2, false).is_ok());
        assert_eq!(waiting.push(b.clone(), 3, false), Err(3), "bounded");
        assert!(waiting.push(b.clone(), 3, true).is_ok(), "unless forced");
        let (key, job, admit) = waiting.pop_ready(&hosts).unwrap();
        assert_eq!((key, job, admit), (b.clone(), 3, Admit::Go));
        assert!(waiting.pop_ready(&hosts).is_none(), "a is full");
        hosts.release(&a);
        assert_eq!(waiting.pop_ready(&hosts).map(|(_, j, _)| j), Some(1));
        hosts.release(&a);
        assert_eq!(waiting.pop_ready(&hosts).map(|(_, j, _)| j), Some(2));
        assert_eq!(waiting.len(), 0);
    }

    #[test]
    fn a_drain_takes_every_host_s_jobs() {
        let waiting = Waiting::new(8);
        let a = Key::of(&Url::parse("http://a/").unwrap());
        let b = Key::of(&Url::parse("http://b/").unwrap());
        for (key, job) in [(&a, 1), (&b, 2), (&a, 3)] {
            assert!(waiting.push(key.clone(), job, false).is_ok());
        }
        let mut drained = waiting.drain();
        drained.sort_unstable();
        assert_eq!(drained, [1, 2, 3]);
        assert_eq!(waiting.len(), 0);
        assert!(waiting.drain().is_empty());
    }
}
