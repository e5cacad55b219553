//! stdout: the data a script reads. By default one path per saved file and line; `-0` ends each
//! path with NUL instead; `--json` writes JSON Lines, one object per input and a final summary.
//!
//! Every record is flushed as soon as it is written, so `| jq` and `| xargs` see each download the
//! moment it finishes. Every JSON object has a `type`: `"url"` for the record of one input (a
//! downloaded, failed, skipped, invalid or duplicate URL), `"summary"` for the last line. Fields
//! are always present, `null` when they do not apply, so a script never has to test for a key.

use std::borrow::Cow;
use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::outcome::{Status, UrlOutcome};
use super::summary::{Sequential, Tally};
use crate::modes::Format;

/// One input's record. See the README's field table.
#[derive(Debug, Serialize)]
pub(crate) struct UrlRecord<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) status: Status,
    /// Credentials replaced by `***`. For an invalid line, its text (shortened), or null.
    pub(crate) url: Option<&'a str>,
    /// Where the file is (saved, skipped); null otherwise.
    pub(crate) path: Option<Cow<'a, str>>,
    /// A kept `NAME.part` with the bytes received before a failure.
    pub(crate) partial: Option<Cow<'a, str>>,
    pub(crate) http_status: Option<u16>,
    pub(crate) bytes: u64,
    pub(crate) elapsed_ms: u64,
    pub(crate) retries: u32,
    /// Phase timings (see the README's field table); null for a phase never reached.
    pub(crate) queued_ms: Option<f64>,
    /// Null also on a reused connection.
    pub(crate) connect_ms: Option<f64>,
    pub(crate) first_byte_ms: Option<f64>,
    pub(crate) receive_ms: Option<f64>,
    pub(crate) commit_ms: Option<f64>,
    /// Why it failed or was rejected; null otherwise.
    pub(crate) error: Option<&'a str>,
    /// The list-file line it came from; null for a command-line argument.
    pub(crate) line: Option<usize>,
    /// For a duplicate: the line of the first occurrence (null if that was an argument).
    pub(crate) duplicate_of: Option<usize>,
    /// The digest a saved file was verified against (`sha-256=HEX`); null when none was given.
    pub(crate) checksum: Option<&'a str>,
    /// The source that served a saved file: the URL or one of its mirrors, credentials removed.
    pub(crate) source: Option<&'a str>,
}

fn lossy(path: &Path) -> Cow<'_, str> {
    path.to_string_lossy()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds with three decimals: phases of a local download are often under a millisecond.
fn phase_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl<'a> UrlRecord<'a> {
    pub(crate) fn of(done: &'a UrlOutcome) -> UrlRecord<'a> {
        UrlRecord {
            kind: "url",
            status: done.status,
            url: done.url.as_deref(),
            path: done.path.as_deref().map(lossy),
            partial: done.partial.as_deref().map(lossy),
            http_status: done.http_status,
            bytes: done.bytes,
            elapsed_ms: millis(done.elapsed),
            retries: done.retries,
            queued_ms: done.queued.map(phase_ms),
            connect_ms: done.connect.map(phase_ms),
            first_byte_ms: done.first_byte.map(phase_ms),
            receive_ms: done.receive.map(phase_ms),
            commit_ms: done.commit.map(phase_ms),
            error: done.error.as_deref(),
            line: done.line,
            duplicate_of: done.duplicate_of,
            checksum: done.checksum.as_deref(),
            source: done.source.as_deref(),
        }
    }
}

/// The last JSON line: the run's totals and the sequential-versus-threaded figures.
#[derive(Debug, Serialize)]
pub(crate) struct SummaryRecord {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) saved: usize,
    /// Files `-c` found already complete.
    pub(crate) skipped: usize,
    /// Files `-N` found current on the server (304).
    pub(crate) unchanged: usize,
    /// Downloads that failed (invalid inputs are counted apart).
    pub(crate) failed: usize,
    pub(crate) invalid: usize,
    pub(crate) duplicates: usize,
    pub(crate) bytes: u64,
    pub(crate) jobs: usize,
    /// The most downloads in flight at once: the workers the summary line says were used.
    pub(crate) peak_in_flight: usize,
    /// Downloads that ran, saved or not: the ones the sequential figure sums.
    pub(crate) downloads: usize,
    /// Wall-clock time of the run.
    pub(crate) wall_ms: u64,
    /// What the downloads would cost one after another: a conservative estimate, or with
    /// `--compare` the measured one-worker wall (see `sequential_kind`); 0 when none ran.
    pub(crate) sequential_ms: u64,
    /// `"estimated"` or `"measured"`; null when no download ran.
    pub(crate) sequential_kind: Option<&'static str>,
    /// What an estimate is made of; null when measured or when no download ran.
    pub(crate) estimate: Option<EstimateRecord>,
    /// `sequential_ms / wall_ms`; null when there is nothing to divide.
    pub(crate) speedup: Option<f64>,
    /// What the comparison line concludes (`faster`, `no_faster`, `slower`,
    /// `limited`, `waited`, `one_worker`); null when no download ran.
    pub(crate) verdict: Option<&'static str>,
    /// Wall time spent waiting before retries, which the comparison leaves out.
    pub(crate) paused_ms: u64,
    pub(crate) bytes_per_sec: Option<f64>,
    pub(crate) interrupted: bool,
    pub(crate) not_started: usize,
    /// With `--compare`: the measured one-worker pass.
    pub(crate) compare: Option<CompareRecord>,
}

/// The basis of the estimate (see the README, "The timing summary").
#[derive(Debug, Serialize)]
pub(crate) struct EstimateRecord {
    /// Each download's host's quickest connect-and-first-byte wait, summed.
    pub(crate) waits_ms: u64,
    /// All bytes at `best_bytes_per_sec` (or in their own time when shorter).
    pub(crate) transfer_ms: u64,
    /// The best aggregate throughput the run reached.
    pub(crate) best_bytes_per_sec: f64,
}

/// `--compare`'s sequential pass, measured rather than estimated.
#[derive(Debug, Serialize)]
pub(crate) struct CompareRecord {
    pub(crate) sequential_wall_ms: u64,
    pub(crate) sequential_saved: usize,
    pub(crate) sequential_failed: usize,
    /// Sequential wall time over threaded wall time.
    pub(crate) speedup: Option<f64>,
}

fn two_decimals(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl SummaryRecord {
    pub(crate) fn new(t: &Tally, sequential: Option<&Tally>) -> SummaryRecord {
        SummaryRecord {
            kind: "summary",
            saved: t.saved,
            skipped: t.skipped,
            unchanged: t.unchanged,
            failed: t.failed.saturating_sub(t.invalid),
            invalid: t.invalid,
            duplicates: t.duplicates,
            bytes: t.bytes,
            jobs: t.jobs,
            peak_in_flight: t.peak,
            downloads: t.downloads,
            wall_ms: millis(t.wall),
            sequential_ms: t.sequential.as_ref().map_or(0, |s| millis(s.time())),
            sequential_kind: t.sequential.as_ref().map(Sequential::kind),
            estimate: match &t.sequential {
                Some(Sequential::Estimated(e)) => Some(EstimateRecord {
                    waits_ms: millis(e.waits),
                    transfer_ms: millis(e.transfer),
                    best_bytes_per_sec: e.best_rate.round(),
                }),
                _ => None,
            },
            speedup: t.backed_speedup().map(two_decimals),
            verdict: t.verdict().map(|v| v.name()),
            paused_ms: millis(t.paused),
            bytes_per_sec: t.throughput().map(f64::round),
            interrupted: t.interrupted,
            not_started: t.not_started,
            compare: sequential.map(|s| CompareRecord {
                sequential_wall_ms: millis(s.wall),
                sequential_saved: s.saved,
                sequential_failed: s.failed,
                speedup: (t.wall.as_secs_f64() > 0.0)
                    .then(|| two_decimals(s.wall.as_secs_f64() / t.wall.as_secs_f64())),
            }),
        }
    }
}

/// One pass of `--compare=LIST`, written before the summary.
#[derive(Debug, Serialize)]
pub(crate) struct PassRecord {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) jobs: usize,
    pub(crate) wall_ms: u64,
    pub(crate) saved: usize,
    /// Downloads that failed (invalid inputs are counted apart).
    pub(crate) failed: usize,
    pub(crate) bytes: u64,
    pub(crate) bytes_per_sec: Option<f64>,
    /// The first pass's wall over this one's.
    pub(crate) speedup: Option<f64>,
}

impl PassRecord {
    pub(crate) fn new(t: &Tally, first: &Tally) -> PassRecord {
        PassRecord {
            kind: "pass",
            jobs: t.jobs,
            wall_ms: millis(t.wall),
            saved: t.saved,
            failed: t.failed.saturating_sub(t.invalid),
            bytes: t.bytes,
            bytes_per_sec: t.throughput().map(f64::round),
            speedup: (t.wall.as_secs_f64() > 0.0)
                .then(|| two_decimals(first.wall.as_secs_f64() / t.wall.as_secs_f64())),
        }
    }
}

/// Writes records to stdout, flushing each one.
#[derive(Debug, Default)]
pub(crate) struct Stdout {
    pub(crate) format: Format,
}

impl Stdout {
    /// Whether stdout is a pipe whose reader has gone (`| head -1` after its line): a write
    /// would fail with `EPIPE`, but a run with nothing to write for a while (one slow download)
    /// would only learn of it at its next path.
    #[cfg(unix)]
    pub(crate) fn reader_gone(&self) -> bool {
        let mut fd = libc::pollfd {
            fd: libc::STDOUT_FILENO,
            events: 0,
            revents: 0,
        };
        // SAFETY: one pollfd, on the stack for the call; a zero timeout never waits.
        let ready = unsafe { libc::poll(&mut fd, 1, 0) };
        ready > 0 && fd.revents & libc::POLLERR != 0
    }

    #[cfg(not(unix))]
    pub(crate) fn reader_gone(&self) -> bool {
        false
    }

    /// A saved file's path (not with `--json`, where the record carries it).
    pub(crate) fn path(&self, path: &Path) -> io::Result<()> {
        let end: &[u8] = match self.format {
            Format::Paths => b"\n",
            Format::Print0 => b"\0",
            Format::Json => return Ok(()),
        };
        let mut out = io::stdout().lock();
        out.write_all(&path_bytes(path))?;
        out.write_all(end)?;
        out.flush()
    }

    /// One JSON line (only with `--json`).
    pub(crate) fn json(&self, record: &impl Serialize) -> io::Result<()> {
        if self.format != Format::Json {
            return Ok(());
        }
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut out = io::stdout().lock();
        out.write_all(&line)?;
        out.flush()
    }
}

/// A path's exact bytes where the platform has them, so `-0` hands `xargs` the real name.
fn path_bytes(path: &Path) -> Cow<'_, [u8]> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Cow::Borrowed(path.as_os_str().as_bytes())
    }
    #[cfg(not(unix))]
    {
        match path.to_string_lossy() {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::download::{Failure, Outcome, Saved};
    use crate::input::Origin;
    use std::path::PathBuf;

    fn record(url: &str, origin: Origin, outcome: &Outcome) -> serde_json::Value {
        json(&UrlRecord::of(&UrlOutcome::finished(
            url.to_string(),
            origin,
            outcome.clone(),
        )))
    }

    fn json(record: &impl Serialize) -> serde_json::Value {
        serde_json::to_value(record).unwrap()
    }

    fn phases() -> crate::trace::Phases {
        let t0 = std::time::Instant::now();
        let at = |us| Some(t0 + Duration::from_micros(us));
        crate::trace::Phases {
            queued: at(0),
            began: at(1250),
            sent: at(2000),
            connect: None,
            headers: at(102_000),
            body_end: at(1_102_000),
            ended: at(1_102_500),
        }
    }

    #[test]
    fn every_record_has_every_field() {
        let saved = Outcome {
            result: Ok(Saved {
                path: PathBuf::from("o/a.bin"),
                http_status: 200,
                skipped: false,
                unchanged: false,
                checksum: Some("sha-256=00".into()),
                source: Some("http://m/a.bin".into()),
            }),
            bytes: 10,
            elapsed: Duration::from_millis(1500),
            retries: 2,
            phases: phases(),
            exchanges: Vec::new(),
            notes: Vec::new(),
        };
        let v = record("http://h/a.bin", Origin::Line(3), &saved);
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = [
            "type",
            "status",
            "url",
            "path",
            "partial",
            "http_status",
            "bytes",
            "elapsed_ms",
            "retries",
            "queued_ms",
            "connect_ms",
            "first_byte_ms",
            "receive_ms",
            "commit_ms",
            "error",
            "line",
            "duplicate_of",
            "checksum",
            "source",
        ];
        want.sort();
        let mut keys = keys;
        keys.sort();
        assert_eq!(keys, want);
        assert_eq!(v["type"], "url");
        assert_eq!(v["status"], "saved");
        assert_eq!(v["path"], "o/a.bin");
        assert_eq!(v["elapsed_ms"], 1500);
        assert_eq!(v["retries"], 2);
        assert_eq!(v["queued_ms"], 1.25);
        assert_eq!(
            v["connect_ms"],
            serde_json::Value::Null,
            "a reused connection"
        );
        assert_eq!(v["first_byte_ms"], 100.0);
        assert_eq!(v["receive_ms"], 1000.0);
        assert_eq!(v["commit_ms"], 0.5);
        assert_eq!(v["error"], serde_json::Value::Null);
        assert_eq!(v["line"], 3);
        assert_eq!(v["checksum"], "sha-256=00");
        assert_eq!(v["source"], "http://m/a.bin");

        let skipped = Outcome {
            result: Ok(Saved {
                path: PathBuf::from("o/a.bin"),
                http_status: 0,
                skipped: true,
                unchanged: false,
                checksum: None,
                source: None,
            }),
            bytes: 0,
            elapsed: Duration::ZERO,
            retries: 0,
            phases: Default::default(),
            exchanges: Vec::new(),
            notes: Vec::new(),
        };
        let v = record("http://h/a.bin", Origin::Line(3), &skipped);
        assert_eq!(v["status"], "skipped");
        assert_eq!(v["path"], "o/a.bin");
        assert_eq!(
            v["http_status"],
            serde_json::Value::Null,
            "no request was made"
        );

        let failed = Outcome {
            result: Err(Failure {
                reason: "connection reset after 5 of 10 bytes".into(),
                http_status: Some(200),
                left: Some(PathBuf::from("o/a.bin.part")),
                resumable: true,
                interrupted: false,
            }),
            ..saved
        };
        let v = record("http://h/a.bin", Origin::Arg(1), &failed);
        assert_eq!(v["status"], "failed");
        assert_eq!(v["path"], serde_json::Value::Null);
        assert_eq!(v["partial"], "o/a.bin.part");
        assert_eq!(v["line"], serde_json::Value::Null);
        assert!(v["error"].as_str().unwrap().contains("reset"));
    }

    #[test]
    fn summary_splits_failures_from_invalid_lines() {
        let t = Tally {
            jobs: 4,
            saved: 3,
            failed: 3,
            invalid: 1,
            duplicates: 2,
            downloads: 5,
            busy: Duration::from_millis(9000),
            sequential: Some(Sequential::Estimated(crate::estimate::Estimate {
                total: Duration::from_millis(2000),
                waits: Duration::from_millis(1500),
                transfer: Duration::from_millis(500),
                best_rate: 1000.4,
                hosts: 1,
            })),
            wall: Duration::from_millis(800),
            ..Tally::default()
        };
        let v = json(&SummaryRecord::new(&t, None));
        assert_eq!(v["type"], "summary");
        assert_eq!(v["failed"], 2);
        assert_eq!(v["invalid"], 1);
        assert_eq!(v["duplicates"], 2);
        assert_eq!(v["sequential_ms"], 2000);
        assert_eq!(v["sequential_kind"], "estimated");
        assert_eq!(v["estimate"]["waits_ms"], 1500);
        assert_eq!(v["estimate"]["best_bytes_per_sec"], 1000.0);
        assert_eq!(v["wall_ms"], 800);
        assert_eq!(v["speedup"], 2.5);
        assert_eq!(v["compare"], serde_json::Value::Null);
        // An estimate under the wall backs no speedup, and no slowdown: null, as the line
        // gives none (a reviewer's run said 0.44 where --compare measured 2.5 ×).
        let slow = Tally {
            wall: Duration::from_millis(4000),
            ..t.clone()
        };
        let v = json(&SummaryRecord::new(&slow, None));
        assert_eq!(v["speedup"], serde_json::Value::Null);
        assert_eq!(v["verdict"], "no_faster");
        assert_eq!(v["sequential_ms"], 2000);
        // Measured slower is a measure: it stays.
        let measured = Tally {
            sequential: Some(Sequential::Measured(Duration::from_millis(2000))),
            ..slow
        };
        assert_eq!(json(&SummaryRecord::new(&measured, None))["speedup"], 0.5);
    }
}
