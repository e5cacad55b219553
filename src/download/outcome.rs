//! What one download came to ([`Outcome`]), and what it tells its worker while it runs
//! ([`Notice`]), for the main thread's records and progress display.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::failure::{Failure, Reason};
use crate::trace::{Exchange, Phases};

/// A finished download, saved under `path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Saved {
    pub(crate) path: PathBuf,
    /// 0 when `skipped` (only a range probe was made; nothing was downloaded).
    pub(crate) http_status: u16,
    /// `-c` found the file already complete and downloaded nothing.
    pub(crate) skipped: bool,
    /// `-N`: the file on disk is current (a 304, or a 200 dated no later than it); nothing was
    /// downloaded.
    pub(crate) unchanged: bool,
    /// The digest the file was verified against (`sha-256=HEX`), when one was expected.
    pub(crate) checksum: Option<String>,
    /// The source that served the bytes (the URL or one of its mirrors), credentials removed.
    pub(crate) source: Option<String>,
}

impl Saved {
    pub(super) fn at(path: PathBuf, http_status: u16) -> Saved {
        Saved {
            path,
            http_status,
            skipped: false,
            unchanged: false,
            checksum: None,
            source: None,
        }
    }
}

/// Something worth telling about a download that fails nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Note {
    /// `--checksums` has no entry for the file: saved unverified (the text says which name).
    NoChecksum(String),
    /// `-N`: the server sent no `Last-Modified`, so whether the file changed cannot be told.
    NoLastModified,
    /// `-c` (or a retry) asked for the rest and the server, without range support, sent the
    /// whole file: the bytes already there were downloaded again.
    RangesIgnored,
    /// A resume (`-c`, or a retry) was answered with the whole file, its `If-Range` validator
    /// being out of date: the file changed on the server, and came again from zero.
    Changed,
    /// `-c`: the file under this name is another one (the server's answer does not fit it, or
    /// its digest is not the expected one); it is left alone and the URL goes to the next free
    /// name beside it (downloaded there, or found complete there by an earlier run).
    NotTheServers(std::path::PathBuf),
    /// `-c`: this `.part` has no sidecar naming this URL (another URL's, or one left without
    /// its sidecar), so it is not resumed: it is left alone and the URL goes to the next name.
    OthersPart(std::path::PathBuf),
    /// `-c`, `-N` or `--overwrite`: a file appeared under the name while the download ran (a
    /// run beside this one finished it first), so it was saved beside it.
    NameTaken(std::path::PathBuf),
    /// `-c` took up a part whose final name already held a file (an interrupted `--overwrite`
    /// run leaves both): the download was saved beside it (`saved`), the file left as it was.
    NameHeld {
        held: std::path::PathBuf,
        saved: std::path::PathBuf,
    },
}

/// What one download came to; `bytes` counts body bytes received, whatever the outcome.
#[derive(Clone, Debug)]
pub(crate) struct Outcome {
    pub(crate) result: Result<Saved, Failure>,
    pub(crate) bytes: u64,
    pub(crate) elapsed: Duration,
    /// Attempts after the first.
    pub(crate) retries: u32,
    pub(crate) notes: Vec<Note>,
    /// When each phase began and ended (the pool fills in the queueing).
    pub(crate) phases: Phases,
    /// Every request made, retries and `--split` pieces included (only with `trace`).
    pub(crate) exchanges: Vec<Exchange>,
}

impl Outcome {
    pub(crate) fn skipped(&self) -> bool {
        matches!(&self.result, Ok(saved) if saved.skipped)
    }
}

/// What the worker learns once the response headers are in: where the bytes go, how many to expect.
pub(crate) struct Started<'a> {
    pub(crate) path: &'a Path,
    /// Body bytes to come (less than the file's size when resuming).
    pub(crate) total: Option<u64>,
}

/// What a running download tells its worker, for the progress display.
pub(crate) enum Notice<'a> {
    /// The response headers are accepted.
    Started(Started<'a>),
    /// An attempt failed in a way worth another try, which starts after `wait`.
    Retrying { wait: Duration, reason: &'a Reason },
}
