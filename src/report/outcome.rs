//! What became of one input: what a program embedding fetchpar gets back for each URL, and what
//! the stdout records and the progress lines are made from.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::download::Outcome;
use crate::input::{Invalid, Origin};

/// What became of one input (`status` in `--json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Saved,
    Failed,
    /// Already complete on disk (`-c`, `--skip-existing`): not downloaded again.
    Skipped,
    /// `-N`: the server said the file on disk is current (304).
    Unchanged,
    /// Not a URL fetchpar can download.
    Invalid,
    /// The same URL came earlier in the input and was downloaded there.
    Duplicate,
    /// Read and queued, but Ctrl-C stopped the run before its download began.
    #[serde(rename = "not_started")]
    NotStarted,
}

/// The outcome of one input, in the order the downloads finished.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct UrlOutcome {
    pub status: Status,
    /// Credentials replaced by `***`. For an invalid input, its text (shortened), if any.
    pub url: Option<String>,
    /// The list-file line it came from; `None` for a URL given directly.
    pub line: Option<usize>,
    /// Where the file is (saved or skipped).
    pub path: Option<PathBuf>,
    /// A `NAME.part` kept with the genuine bytes received before a failure.
    pub partial: Option<PathBuf>,
    /// `-c` can resume `partial` (else it starts it over: no validator to check it by).
    pub(crate) resumable: bool,
    /// The status of the last response, when one came.
    pub http_status: Option<u16>,
    /// Body bytes received, saved or not.
    pub bytes: u64,
    pub elapsed: Duration,
    pub retries: u32,
    /// Waiting in the queue for a worker.
    pub queued: Option<Duration>,
    /// Opening the connection (TCP and TLS) for the request that brought the body; `None` on a
    /// reused connection, or when it was not measured.
    pub connect: Option<Duration>,
    /// That request sent to its response headers (connection set-up included).
    pub first_byte: Option<Duration>,
    /// Response headers to the end of the body.
    pub receive: Option<Duration>,
    /// End of the body to the file's final name (or to the failure).
    pub commit: Option<Duration>,
    /// Why it failed or was rejected.
    pub error: Option<String>,
    /// For a duplicate: the line of the first occurrence (`None` if that was not a list line).
    pub duplicate_of: Option<usize>,
    /// The digest a saved file was verified against (`sha-256=HEX`).
    pub checksum: Option<String>,
    /// The source that served a saved file (the URL or a mirror), credentials removed.
    pub source: Option<String>,
    /// A failure that the run's own cancel caused.
    pub(crate) interrupted: bool,
}

impl UrlOutcome {
    fn new(status: Status, url: Option<String>, origin: Origin) -> UrlOutcome {
        UrlOutcome {
            status,
            url,
            line: origin.line(),
            path: None,
            partial: None,
            resumable: false,
            http_status: None,
            bytes: 0,
            elapsed: Duration::ZERO,
            retries: 0,
            queued: None,
            connect: None,
            first_byte: None,
            receive: None,
            commit: None,
            error: None,
            duplicate_of: None,
            checksum: None,
            source: None,
            interrupted: false,
        }
    }

    /// A download that ran. Every kind of outcome maps here, in this one match.
    pub(crate) fn finished(url: String, origin: Origin, outcome: Outcome) -> UrlOutcome {
        let mut done = UrlOutcome {
            bytes: outcome.bytes,
            elapsed: outcome.elapsed,
            retries: outcome.retries,
            queued: outcome.phases.queued(),
            connect: outcome.phases.connect,
            first_byte: outcome.phases.first_byte(),
            receive: outcome.phases.receive(),
            commit: outcome.phases.commit(),
            ..UrlOutcome::new(Status::Saved, Some(url), origin)
        };
        let skipped = outcome.skipped();
        match outcome.result {
            Ok(saved) if skipped => {
                done.status = Status::Skipped;
                done.checksum = saved.checksum;
                done.path = Some(saved.path);
            }
            Ok(saved) => {
                if saved.unchanged {
                    done.status = Status::Unchanged;
                }
                done.path = Some(saved.path);
                // 0: no request was made (`-N` matched the file to its digest).
                done.http_status = Some(saved.http_status).filter(|&s| s != 0);
                done.checksum = saved.checksum;
                done.source = saved.source;
            }
            Err(failure) => {
                done.status = Status::Failed;
                done.http_status = failure.http_status;
                done.interrupted = failure.interrupted;
                done.partial = failure.left;
                done.resumable = failure.resumable;
                done.error = Some(failure.reason.to_string());
            }
        }
        done
    }

    pub(crate) fn invalid(invalid: Invalid) -> UrlOutcome {
        let text = Some(invalid.text).filter(|t| !t.is_empty());
        UrlOutcome {
            error: Some(invalid.reason),
            ..UrlOutcome::new(Status::Invalid, text, invalid.origin)
        }
    }

    pub(crate) fn not_started(url: String, origin: Origin) -> UrlOutcome {
        UrlOutcome {
            error: Some("interrupted before it started".to_string()),
            interrupted: true,
            ..UrlOutcome::new(Status::NotStarted, Some(url), origin)
        }
    }

    pub(crate) fn duplicate(url: String, origin: Origin, first: Origin) -> UrlOutcome {
        UrlOutcome {
            duplicate_of: first.line(),
            ..UrlOutcome::new(Status::Duplicate, Some(url), origin)
        }
    }
}
