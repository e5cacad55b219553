//! Why a download failed, as a kind (so code can tell failures apart without reading their
//! text) whose display is the one line a person reads, and what it left on disk.
//!
//! The `describe_*` helpers turn reqwest's and the body reader's errors into that line: the
//! innermost message, without reqwest's "error sending request for url (…)" wrapper (which
//! would also repeat the URL, credentials included).

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::ops::Deref;
use std::path::PathBuf;
use std::time::Duration;

use crate::proxy::Proxies;
use crate::units::format_duration;

/// What went wrong, one message per kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FailureKind {
    #[error("interrupted")]
    Interrupted,
    /// A status we do not download (or retried until the retries ran out).
    #[error("{}", http_line(*status, *canonical))]
    Http {
        status: u16,
        canonical: Option<&'static str>,
    },
    /// The request got no usable response; the text comes from [`describe_request_error`].
    #[error("{0}")]
    Request(String),
    #[error("cannot set up HTTP on this thread: {0}")]
    Runtime(String),
    #[error("the server sent part of the file when asked for all of it")]
    UnaskedPartial,
    #[error("redirect to unsupported scheme '{0}'")]
    RedirectScheme(String),
    /// A redirect the client handed back without a target it could follow.
    #[error("{}", redirect_nowhere(*status, *canonical))]
    RedirectNowhere {
        status: u16,
        canonical: Option<&'static str>,
    },
    /// `--max-filesize`: by the announced length, or by the bytes as they came.
    #[error("{}", too_large(*max, *total))]
    TooLarge { max: u64, total: Option<u64> },
    /// The body stopped part-way; `what` comes from `describe_read_error`.
    #[error("{what} after {}", progress(*have, *total))]
    Cut {
        what: String,
        have: u64,
        total: Option<u64>,
    },
    #[error("body has {have} bytes but Content-Length said {total}")]
    LengthMismatch { have: u64, total: u64 },
    /// A local file operation (`op`: "open", "write", "create", "create directory", "rename").
    #[error("{}", disk_line(op, path.as_ref(), error))]
    Disk {
        op: &'static str,
        path: Option<PathBuf>,
        error: String,
    },
    /// The server's file changed while it was being downloaded, and again after a fresh start.
    #[error("the file changed during download ({0})")]
    Changed(String),
    #[error("no free file name for {0}")]
    NoFreeName(String),
    #[error(
        "refusing to write through the symbolic link {} (it could lead outside the output \
         directory; name a folder that is not a link)",
        .0.display()
    )]
    LinkedFolder(PathBuf),
    /// The URL's host is gone for this run (unreachable, or its name does not exist).
    #[error("{0}")]
    Host(String),
    /// No file descriptor for a socket or the client: the pool hands the URL back.
    #[error("out of open files: {0}")]
    OutOfFiles(String),
    /// Its connect failed at the moment another URL's failure counted against the host: the
    /// pool hands the URL back, to wait with the host's others (see [`crate::hosts::Next::Later`]).
    #[error("{0}")]
    HostLater(String),
    /// The finished bytes do not have the expected digest (`checksum mismatch: expected …`).
    #[error("{0}")]
    ChecksumMismatch(String),
    /// `-c`: the server's answers could not tell whether the file under the name is complete
    /// (`why`), so it is left untouched rather than copied under another name.
    #[error("cannot tell whether {} is complete: {why}", path.display())]
    Undecided { path: PathBuf, why: String },
    /// `-c`: another download (another fetchpar run on the same folder) is writing the part
    /// file it would take up; it is left to that one.
    #[error("{} is being written by another download (another fetchpar run?)", .0.display())]
    InUse(PathBuf),
    /// `-c` or `-N`: a file appeared under the name between the look and the download (a run
    /// beside this one saved it); it stands.
    #[error("{} appeared while this download began (another fetchpar run?)", .0.display())]
    Appeared(PathBuf),
    /// `--skip-existing`: the file it would trust is not the expected one; it is left untouched.
    #[error("{} does not match its expected checksum", .0.display())]
    NotExpected(PathBuf),
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// A reason built elsewhere from text alone.
    #[error("{0}")]
    Other(String),
}

fn http_line(status: u16, canonical: Option<&str>) -> String {
    format!("HTTP {status} {}", canonical.unwrap_or(""))
        .trim_end()
        .to_string()
}

/// A 3xx with nothing to follow; a 304 answers a condition, which a plain GET did not set.
fn redirect_nowhere(status: u16, canonical: Option<&str>) -> String {
    match status {
        304 => format!(
            "{} to a request that set no condition (nothing to compare with)",
            http_line(status, canonical)
        ),
        _ => format!("{} without a usable Location", http_line(status, canonical)),
    }
}

fn too_large(max: u64, total: Option<u64>) -> String {
    match total {
        Some(total) => format!(
            "the file is {total} bytes, more than --max-filesize {max} (raise it to download this)"
        ),
        None => {
            format!("the body grew past --max-filesize {max} bytes (raise it to download this)")
        }
    }
}

fn progress(have: u64, total: Option<u64>) -> String {
    match total {
        Some(total) => format!("{have} of {total} bytes"),
        None => format!("{have} bytes"),
    }
}

fn disk_line(op: &str, path: Option<&PathBuf>, error: &str) -> String {
    match path {
        Some(path) => format!("cannot {op} {}: {error}", path.display()),
        None => format!("cannot {op}: {error}"),
    }
}

impl FailureKind {
    pub(crate) fn disk(op: &'static str, path: &std::path::Path, error: io::Error) -> FailureKind {
        FailureKind::Disk {
            op,
            path: Some(path.to_path_buf()),
            error: error.to_string(),
        }
    }
}

/// A failure's kind and the line it reads as (with the retries it took, when it took any).
/// It reads as a `str` so that reporting code can print it as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reason {
    kind: FailureKind,
    text: String,
}

impl Reason {
    pub(crate) fn kind(&self) -> &FailureKind {
        &self.kind
    }

    /// Notes that the download was tried `retries` times more before giving up.
    pub(crate) fn after_retries(&mut self, retries: u32) {
        if retries > 0 {
            let s = if retries == 1 { "y" } else { "ies" };
            self.text = format!("{} (after {retries} retr{s})", self.text);
        }
    }
}

impl From<FailureKind> for Reason {
    fn from(kind: FailureKind) -> Reason {
        Reason {
            text: kind.to_string(),
            kind,
        }
    }
}

impl From<&str> for Reason {
    fn from(text: &str) -> Reason {
        FailureKind::Other(text.to_string()).into()
    }
}

impl From<String> for Reason {
    fn from(text: String) -> Reason {
        FailureKind::Other(text).into()
    }
}

impl Deref for Reason {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a download failed, and what it left on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) reason: Reason,
    pub(crate) http_status: Option<u16>,
    /// A `.part` file that was kept (interrupted or cut off: its bytes are genuine).
    pub(crate) left: Option<PathBuf>,
    /// `-c` can resume `left` (its sidecar has a validator, or a checksum will prove it); else
    /// it starts the part over, and no message may promise a resume.
    pub(crate) resumable: bool,
    pub(crate) interrupted: bool,
}

impl Failure {
    pub(crate) fn new(kind: FailureKind) -> Failure {
        Failure {
            interrupted: kind == FailureKind::Interrupted,
            reason: kind.into(),
            http_status: None,
            left: None,
            resumable: false,
        }
    }

    /// The same failure, answered with HTTP `status`.
    pub(crate) fn with_status(self, status: u16) -> Failure {
        Failure {
            http_status: Some(status),
            ..self
        }
    }

    pub(crate) fn interrupted(left: Option<PathBuf>) -> Failure {
        Failure {
            left,
            ..Failure::new(FailureKind::Interrupted)
        }
    }

    /// The reason followed by what is left on disk, as printed in error lines.
    pub(crate) fn describe(&self) -> String {
        match self.reason.kind() {
            FailureKind::Undecided { .. } | FailureKind::InUse(_) | FailureKind::Appeared(_) => {
                return format!("{}; left untouched", self.reason)
            }
            FailureKind::NotExpected(_) => {
                return format!(
                    "{}; left untouched (drop --skip-existing to fetch it again)",
                    self.reason
                )
            }
            _ => {}
        }
        match &self.left {
            Some(part) if self.resumable => {
                format!("{}; partial data kept in {}", self.reason, part.display())
            }
            Some(part) => format!(
                "{}; partial data kept in {} (no validator: -c will start it over)",
                self.reason,
                part.display()
            ),
            None => format!("{}; nothing saved", self.reason),
        }
    }
}

/// Every error in a source chain, outermost first.
fn chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |e| (*e).source())
}

/// The innermost message: the one that says what actually happened.
fn root_message(err: &(dyn StdError + 'static)) -> String {
    chain(err).last().map(|e| e.to_string()).unwrap_or_default()
}

fn io_kind(err: &(dyn StdError + 'static)) -> Option<io::ErrorKind> {
    chain(err).find_map(|e| e.downcast_ref::<io::Error>().map(io::Error::kind))
}

/// One line for a request that got no usable response: a certificate problem in words, a
/// failure on the way to or through a proxy said of that proxy (`proxies` is the run's table).
pub(crate) fn describe_request_error(
    err: &reqwest::Error,
    timeout: Duration,
    proxies: &Proxies,
) -> String {
    if let Some(words) = crate::tls::describe(err) {
        return words;
    }
    crate::proxy::describe(err, describe_plain(err, timeout), proxies)
}

fn describe_plain(err: &reqwest::Error, timeout: Duration) -> String {
    if err.is_redirect() {
        return root_message(err);
    }
    if malformed(err) {
        return format!("malformed response from the server ({})", root_message(err));
    }
    if err.is_connect() {
        if err.is_timeout() {
            return "could not connect: timed out".into();
        }
        return match io_kind(err) {
            Some(io::ErrorKind::ConnectionRefused) => "connection refused".into(),
            _ => format!("could not connect: {}", root_message(err)),
        };
    }
    if err.is_timeout() {
        return format!("no response within {}", format_duration(timeout));
    }
    match io_kind(err) {
        Some(io::ErrorKind::ConnectionReset) => "connection reset before the response".into(),
        _ => root_message(err),
    }
}

/// Whether the server's response could not be read as HTTP at all (a garbage status line, a
/// line break inside a header, two `Content-Length`s that differ): the next try would get the
/// same, so it is not retried (curl does not either).
pub(crate) fn malformed(err: &reqwest::Error) -> bool {
    chain(err).any(|e| {
        e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_parse)
    })
}

/// What a request that got no response says about its host (see [`crate::hosts`]), if anything;
/// `line` is the request's own failure line. A proxy that cannot be reached is named as the one
/// unreachable, not the URL's host.
pub(crate) fn host_learned(
    err: &reqwest::Error,
    line: &str,
    proxies: &Proxies,
) -> Option<crate::hosts::Learned> {
    use crate::hosts::{Learned, Unreachable};
    if !err.is_connect() {
        return None;
    }
    // The resolver's answer reaches us only as text (getaddrinfo's gai_strerror, through std).
    let root = root_message(err);
    let no_such = [
        "Name or service not known",
        "No address associated with hostname",
        "nodename nor servname provided",
    ];
    if no_such.iter().any(|m| root.contains(m)) {
        return Some(Learned::NoSuchName(line.to_string()));
    }
    if root.contains("Temporary failure in name resolution") {
        return Some(Learned::ResolverBusy);
    }
    let refused = io_kind(err) == Some(io::ErrorKind::ConnectionRefused);
    // A SOCKS proxy that could not be reached: tokio-socks says only this, without the cause.
    let socks_down = root.contains("failed to create underlying connection");
    if !(refused || socks_down || err.is_timeout()) {
        return None;
    }
    let unreachable = match crate::proxy::through(err, proxies) {
        Some(proxy) => {
            // The line says `proxy NAME: what`; the host's line puts the name first itself.
            let what = line.strip_prefix(&format!("{proxy}: ")).unwrap_or(line);
            Unreachable::new(&proxy, what)
        }
        None => Unreachable::new("host", line),
    };
    Some(Learned::Unreachable(unreachable))
}

/// Whether a body read failed on a body that is not HTTP (hyper's chunked decoding refused it:
/// `Invalid chunk size line`): the next try would read the same, so it is not retried.
pub(crate) fn malformed_body(err: &io::Error) -> bool {
    // hyper's decoder says so only in words (its body errors carry no parse kind); its
    // "unexpected EOF during chunk size line" is a body cut off, which a retry may mend.
    let words = root_message(err).to_lowercase();
    ["invalid chunk", "chunk extension", "chunk trailers"]
        .iter()
        .any(|w| words.contains(w))
}

/// One line for a body read that failed part-way.
pub(crate) fn describe_read_error(err: &io::Error, timeout: Duration) -> String {
    // reqwest wraps its timeout in an `io::Error` whose `source()` skips the wrapped error, so
    // the chain alone would miss it: look inside with `get_ref` too.
    let wrapped = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<reqwest::Error>());
    let timed_out = wrapped.is_some_and(reqwest::Error::is_timeout)
        || chain(err).any(|e| {
            e.downcast_ref::<reqwest::Error>()
                .is_some_and(reqwest::Error::is_timeout)
                || e.downcast_ref::<io::Error>()
                    .is_some_and(|e| e.kind() == io::ErrorKind::TimedOut)
        });
    if timed_out {
        return format!("timed out: no data for {}", format_duration(timeout));
    }
    match io_kind(err) {
        Some(io::ErrorKind::ConnectionReset) => "connection reset".into(),
        _ => {
            let msg = root_message(err);
            if msg.contains("end of file before message length reached")
                || msg.contains("connection closed before message completed")
            {
                "connection closed early".into()
            } else {
                msg
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_lines_say_what_is_left() {
        let mut f = Failure::new(FailureKind::Http {
            status: 404,
            canonical: Some("Not Found"),
        })
        .with_status(404);
        assert_eq!(f.describe(), "HTTP 404 Not Found; nothing saved");
        f.left = Some(PathBuf::from("o/x.part"));
        assert_eq!(
            f.describe(),
            "HTTP 404 Not Found; partial data kept in o/x.part (no validator: -c will start it \
             over)"
        );
        f.resumable = true;
        assert_eq!(
            f.describe(),
            "HTTP 404 Not Found; partial data kept in o/x.part"
        );
    }

    #[test]
    fn kinds_read_as_todays_lines() {
        let cases: &[(FailureKind, &str)] = &[
            (FailureKind::Interrupted, "interrupted"),
            (
                FailureKind::Http {
                    status: 599,
                    canonical: None,
                },
                "HTTP 599",
            ),
            (
                FailureKind::RedirectNowhere {
                    status: 302,
                    canonical: Some("Found"),
                },
                "HTTP 302 Found without a usable Location",
            ),
            (
                FailureKind::RedirectNowhere {
                    status: 304,
                    canonical: Some("Not Modified"),
                },
                "HTTP 304 Not Modified to a request that set no condition (nothing to compare with)",
            ),
            (
                FailureKind::TooLarge {
                    max: 10,
                    total: Some(20),
                },
                "the file is 20 bytes, more than --max-filesize 10 (raise it to download this)",
            ),
            (
                FailureKind::TooLarge {
                    max: 10,
                    total: None,
                },
                "the body grew past --max-filesize 10 bytes (raise it to download this)",
            ),
            (
                FailureKind::Cut {
                    what: "connection reset".into(),
                    have: 5,
                    total: Some(10),
                },
                "connection reset after 5 of 10 bytes",
            ),
            (
                FailureKind::Cut {
                    what: "connection reset".into(),
                    have: 5,
                    total: None,
                },
                "connection reset after 5 bytes",
            ),
            (
                FailureKind::LengthMismatch { have: 3, total: 4 },
                "body has 3 bytes but Content-Length said 4",
            ),
            (
                FailureKind::Disk {
                    op: "write",
                    path: None,
                    error: "disk full".into(),
                },
                "cannot write: disk full",
            ),
            (
                FailureKind::Disk {
                    op: "create directory",
                    path: Some(PathBuf::from("o/d")),
                    error: "denied".into(),
                },
                "cannot create directory o/d: denied",
            ),
        ];
        for (kind, line) in cases {
            assert_eq!(kind.to_string(), *line);
        }
        let mut r = Reason::from(FailureKind::Http {
            status: 503,
            canonical: Some("Service Unavailable"),
        });
        r.after_retries(2);
        assert_eq!(&*r, "HTTP 503 Service Unavailable (after 2 retries)");
        assert!(matches!(r.kind(), FailureKind::Http { status: 503, .. }));
    }
}
