//! Open files: the soft limit raised to the hard one at start (as Go programs and many servers
//! do: the soft default of 1024 is a relic of `select`), and no more workers than the files
//! left can serve.
//!
//! Each worker holds a few descriptors: its runtime's epoll and waker, a connection, the part
//! file and, for a large body, its sidecar. Running out of them used to fail every URL a worker
//! took; now the pool starts only as many workers as fit (one note says so), and a worker that
//! still runs out hands its URL back and stops (see `pool`).

use std::io;

/// Descriptors one worker may hold at once (see the module comment).
pub(crate) const PER_WORKER: u64 = 5;

/// Kept free for everything else (stdio, the list file, the producer, reqwest's resolver).
pub(crate) const SPARE: u64 = 16;

/// Raises the soft open-file limit to the hard one (a process-wide change: the binary does it
/// at start, a library user may choose to); returns the soft limit now in force, if readable.
pub fn raise() -> Option<u64> {
    imp::raise(true)
}

/// The soft open-file limit in force, if it can be read.
pub(crate) fn soft() -> Option<u64> {
    imp::raise(false)
}

/// How many workers fit when `limit` descriptors are allowed and `open` are in use already.
pub(crate) fn workers_for(jobs: usize, limit: Option<u64>, open: u64) -> usize {
    let Some(limit) = limit else {
        return jobs;
    };
    let room = limit.saturating_sub(open + SPARE) / PER_WORKER;
    jobs.min(usize::try_from(room).unwrap_or(usize::MAX)).max(1)
}

/// How many descriptors this process has open (an estimate where it cannot be counted).
pub(crate) fn open_now() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .or_else(|_| std::fs::read_dir("/dev/fd"))
        .map_or(SPARE, |dir| dir.count() as u64)
}

/// Whether `err` (or any error inside it) means the process or system is out of descriptors.
pub(crate) fn exhausted(err: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(err), |e| e.source()).any(|e| {
        let Some(io) = e.downcast_ref::<io::Error>() else {
            return false;
        };
        // An `io::Error` wrapping another reports the inner one's source, not the inner one.
        io.raw_os_error().is_some_and(imp::is_exhausted)
            || io.get_ref().is_some_and(|inner| exhausted(inner))
    })
}

#[cfg(unix)]
mod imp {
    pub(super) fn raise(raise: bool) -> Option<u64> {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        if raise && limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: as above.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit = raised;
            }
        }
        // rlim_t is not u64 on every platform.
        #[allow(clippy::unnecessary_cast)]
        let soft = limit.rlim_cur as u64;
        (limit.rlim_cur != libc::RLIM_INFINITY).then_some(soft)
    }

    pub(super) fn is_exhausted(code: i32) -> bool {
        code == libc::EMFILE || code == libc::ENFILE
    }
}

#[cfg(not(unix))]
mod imp {
    pub(super) fn raise(_: bool) -> Option<u64> {
        None
    }

    pub(super) fn is_exhausted(_: i32) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_fit_in_the_descriptors_left() {
        assert_eq!(workers_for(256, Some(64), 5), (64 - 5 - SPARE as usize) / 5);
        assert_eq!(workers_for(8, Some(20_000), 5), 8);
        assert_eq!(workers_for(8, Some(10), 50), 1, "always one");
        assert_eq!(workers_for(8, None, 5), 8);
    }

    #[test]
    fn only_emfile_and_enfile_count_as_exhausted() {
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert!(exhausted(&emfile));
        let wrapped = io::Error::other(io::Error::from_raw_os_error(libc::ENFILE));
        assert!(exhausted(&wrapped));
        assert!(!exhausted(&io::Error::from(
            io::ErrorKind::ConnectionRefused
        )));
    }

    #[test]
    fn raising_keeps_a_readable_limit() {
        let first = raise();
        assert_eq!(raise(), first, "idempotent");
        assert_eq!(soft(), first);
    }
}
