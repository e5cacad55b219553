//! One download, start to finish: reserve a name, GET, stream 8 KiB chunks into `NAME.part`,
//! check the length, and only then give the file its final name.
//!
//! The promise kept here: a file under its final name is complete, nothing existing is replaced
//! unless the user asked, and every failure comes back as one readable reason.

use std::error::Error as StdError;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use reqwest::header::CONTENT_LENGTH;
use url::Url;

use crate::naming::{self, Namer};

/// The streaming unit: one reusable buffer of this size per worker.
pub const CHUNK: usize = 8 * 1024;

/// Most redirects followed before giving up.
pub const MAX_REDIRECTS: usize = 10;

/// The settings every download shares.
pub struct Fetcher<'a> {
    pub client: &'a Client,
    pub namer: &'a Namer,
    pub cancel: &'a AtomicBool,
    pub overwrite: bool,
    /// Only for messages: the client enforces it.
    pub timeout: Duration,
}

/// A finished download, saved under `path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    pub path: PathBuf,
    pub http_status: u16,
}

/// Why a download failed, and what it left on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub http_status: Option<u16>,
    /// A `.part` file that was kept (interrupted or cut off: its bytes are genuine).
    pub left: Option<PathBuf>,
    pub interrupted: bool,
}

/// What one download came to; `bytes` counts body bytes received, whatever the outcome.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub result: Result<Saved, Failure>,
    pub bytes: u64,
    pub elapsed: Duration,
    /// Attempts after the first (retries are configured by the reliability options).
    pub retries: u32,
}

impl Failure {
    fn new(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            http_status: None,
            left: None,
            interrupted: false,
        }
    }

    /// The reason followed by what is left on disk, as printed in error lines.
    pub fn describe(&self) -> String {
        match &self.left {
            Some(part) => format!("{}; partial data kept in {}", self.reason, part.display()),
            None => format!("{}; nothing saved", self.reason),
        }
    }
}

/// What the worker learns once the response headers are in: where the bytes go, how many to expect.
pub struct Started<'a> {
    pub path: &'a Path,
    pub total: Option<u64>,
}

impl Fetcher<'_> {
    /// Downloads `url`. `on_start` is called once the response headers are accepted; `counter`
    /// is bumped as body bytes arrive (the progress display reads it).
    pub fn fetch(
        &self,
        url: &Url,
        counter: &AtomicU64,
        on_start: &mut dyn FnMut(Started<'_>),
    ) -> Outcome {
        let began = Instant::now();
        let mut bytes = 0;
        let result = self.fetch_inner(url, counter, on_start, &mut bytes);
        Outcome {
            result,
            bytes,
            elapsed: began.elapsed(),
            retries: 0,
        }
    }

    fn fetch_inner(
        &self,
        url: &Url,
        counter: &AtomicU64,
        on_start: &mut dyn FnMut(Started<'_>),
        bytes: &mut u64,
    ) -> Result<Saved, Failure> {
        let name = naming::from_url(url);
        let path = self.namer.reserve(&name);
        if self.cancel.load(Ordering::Relaxed) {
            return Err(interrupted(None));
        }
        let mut response = self
            .client
            .get(url.clone())
            .send()
            .map_err(|e| Failure::new(describe_request_error(&e, self.timeout)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(Failure {
                http_status: Some(status.as_u16()),
                ..Failure::new(
                    format!(
                        "HTTP {} {}",
                        status.as_u16(),
                        status.canonical_reason().unwrap_or("")
                    )
                    .trim_end()
                    .to_string(),
                )
            });
        }
        let total = content_length(&response);
        let (path, part, mut file) = self.open_part(&name, path)?;
        on_start(Started { path: &path, total });
        let streamed = stream_body(&mut response, &mut file, counter, self.cancel, bytes);
        drop(file);
        let keep = |mut f: Failure| {
            f.left = Some(part.clone());
            f.http_status = Some(status.as_u16());
            f
        };
        match streamed {
            Ok(()) => {}
            Err(StreamError::Cancelled) => return Err(keep(interrupted(None))),
            Err(StreamError::Write(e)) => {
                // A local write error leaves nothing worth keeping (and may mean a full disk).
                let _ = fs::remove_file(&part);
                return Err(Failure {
                    http_status: Some(status.as_u16()),
                    ..Failure::new(format!("cannot write {}: {}", part.display(), e))
                });
            }
            Err(StreamError::Read(e)) => {
                let what = describe_read_error(&e, self.timeout);
                let reason = match total {
                    Some(total) => format!("{what} after {bytes} of {total} bytes"),
                    None => format!("{what} after {bytes} bytes"),
                };
                return Err(keep(Failure::new(reason)));
            }
        }
        if let Some(total) = total {
            if *bytes != total {
                return Err(keep(Failure::new(format!(
                    "body has {bytes} bytes but Content-Length said {total}"
                ))));
            }
        }
        let path = self.commit(&name, &part, path).map_err(|e| {
            keep(Failure::new(format!(
                "cannot rename {}: {e}",
                part.display()
            )))
        })?;
        Ok(Saved {
            path,
            http_status: status.as_u16(),
        })
    }

    /// Opens `PATH.part` with `create_new`: if another process took the name since we reserved
    /// it, move on to the next free name rather than write into its file.
    fn open_part(
        &self,
        name: &str,
        mut path: PathBuf,
    ) -> Result<(PathBuf, PathBuf, File), Failure> {
        for _ in 0..100 {
            let part = naming::part_path(&path);
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(|e| {
                    Failure::new(format!("cannot create directory {}: {e}", parent.display()))
                })?;
            }
            let mut options = OpenOptions::new();
            options.write(true);
            if self.overwrite {
                options.create(true).truncate(true);
            } else {
                options.create_new(true);
            }
            match options.open(&part) {
                Ok(file) => return Ok((path, part, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    path = self.namer.reserve(name);
                }
                Err(e) => {
                    return Err(Failure::new(format!(
                        "cannot create {}: {e}",
                        part.display()
                    )))
                }
            }
        }
        Err(Failure::new(format!("no free file name for {name}")))
    }

    /// Gives the finished `.part` its final name without replacing anything (unless overwriting):
    /// a hard link fails if the target exists, where a rename would silently replace it.
    fn commit(&self, name: &str, part: &Path, mut path: PathBuf) -> io::Result<PathBuf> {
        if self.overwrite {
            fs::rename(part, &path)?;
            return Ok(path);
        }
        loop {
            match fs::hard_link(part, &path) {
                Ok(()) => {
                    fs::remove_file(part)?;
                    return Ok(path);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    path = self.namer.reserve(name);
                }
                // File systems without hard links: check, then rename (a narrow race remains).
                Err(_) if !path.exists() => {
                    fs::rename(part, &path)?;
                    return Ok(path);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn interrupted(left: Option<PathBuf>) -> Failure {
    Failure {
        interrupted: true,
        left,
        ..Failure::new("interrupted")
    }
}

fn content_length(response: &Response) -> Option<u64> {
    response
        .headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

enum StreamError {
    Cancelled,
    Read(io::Error),
    Write(io::Error),
}

/// The hot loop: one stack buffer, no allocation, no lock; one relaxed atomic add per chunk.
fn stream_body(
    body: &mut impl Read,
    file: &mut File,
    counter: &AtomicU64,
    cancel: &AtomicBool,
    bytes: &mut u64,
) -> Result<(), StreamError> {
    let mut buf = [0u8; CHUNK];
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(StreamError::Cancelled);
        }
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StreamError::Read(e)),
        };
        file.write_all(&buf[..n]).map_err(StreamError::Write)?;
        *bytes += n as u64;
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Every error in a source chain, outermost first.
fn chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |e| (*e).source())
}

/// The innermost message: the one that says what actually happened, without reqwest's
/// "error sending request for url (…)" wrapper (which would also repeat the URL).
fn root_message(err: &(dyn StdError + 'static)) -> String {
    chain(err).last().map(|e| e.to_string()).unwrap_or_default()
}

fn io_kind(err: &(dyn StdError + 'static)) -> Option<io::ErrorKind> {
    chain(err).find_map(|e| e.downcast_ref::<io::Error>().map(io::Error::kind))
}

fn seconds(d: Duration) -> String {
    crate::summary::format_duration(d)
}

/// One line for a request that got no usable response.
pub fn describe_request_error(err: &reqwest::Error, timeout: Duration) -> String {
    if err.is_redirect() {
        return root_message(err);
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
        return format!("no response within {}", seconds(timeout));
    }
    match io_kind(err) {
        Some(io::ErrorKind::ConnectionReset) => "connection reset before the response".into(),
        _ => root_message(err),
    }
}

/// One line for a body read that failed part-way.
fn describe_read_error(err: &io::Error, timeout: Duration) -> String {
    let timed_out = chain(err).any(|e| {
        e.downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_timeout)
            || e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::TimedOut)
    });
    if timed_out {
        return format!("timed out: no data for {}", seconds(timeout));
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

    struct Chunks(Vec<io::Result<Vec<u8>>>);

    impl Read for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            match self.0.remove(0) {
                Ok(data) => {
                    buf[..data.len()].copy_from_slice(&data);
                    Ok(data.len())
                }
                Err(e) => Err(e),
            }
        }
    }

    #[test]
    fn stream_counts_and_stops_on_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = File::create(dir.path().join("x")).unwrap();
        let counter = AtomicU64::new(0);
        let cancel = AtomicBool::new(false);
        let mut bytes = 0;
        let mut body = Chunks(vec![
            Ok(vec![1; 10]),
            Err(io::Error::from(io::ErrorKind::Interrupted)),
            Ok(vec![2; 5]),
            Err(io::Error::from(io::ErrorKind::ConnectionReset)),
        ]);
        let r = stream_body(&mut body, &mut file, &counter, &cancel, &mut bytes);
        assert!(matches!(r, Err(StreamError::Read(_))));
        assert_eq!(bytes, 15);
        assert_eq!(counter.load(Ordering::Relaxed), 15);
        assert_eq!(fs::read(dir.path().join("x")).unwrap().len(), 15);
    }

    #[test]
    fn stream_honours_cancel() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = File::create(dir.path().join("x")).unwrap();
        let cancel = AtomicBool::new(true);
        let mut bytes = 0;
        let r = stream_body(
            &mut Chunks(vec![Ok(vec![1])]),
            &mut file,
            &AtomicU64::new(0),
            &cancel,
            &mut bytes,
        );
        assert!(matches!(r, Err(StreamError::Cancelled)));
        assert_eq!(bytes, 0);
    }

    #[test]
    fn failure_lines_say_what_is_left() {
        let mut f = Failure::new("HTTP 404 Not Found");
        assert_eq!(f.describe(), "HTTP 404 Not Found; nothing saved");
        f.left = Some(PathBuf::from("o/x.part"));
        assert_eq!(
            f.describe(),
            "HTTP 404 Not Found; partial data kept in o/x.part"
        );
    }
}
