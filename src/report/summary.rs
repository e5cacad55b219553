//! The end-of-run summary and the `--compare` table: pure arithmetic and formatting, no I/O.

use std::fmt::Write as _;
use std::time::Duration;

use indicatif::HumanBytes;

use crate::units::{format_duration, format_rate};

/// Failures listed one by one in the summary; the rest are counted.
pub(crate) const MAX_LISTED_FAILURES: usize = 20;

/// What a run did, as counted by the main thread.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Tally {
    /// Worker threads used.
    pub(crate) jobs: usize,
    pub(crate) saved: usize,
    /// Files `-c` found already complete (not counted in `saved`).
    pub(crate) skipped: usize,
    /// Files `-N` asked about that the server said are current (not counted in `saved`).
    pub(crate) unchanged: usize,
    /// Downloads that failed, plus inputs that were not valid URLs.
    pub(crate) failed: usize,
    /// Of `failed`, the inputs that were not valid URLs.
    pub(crate) invalid: usize,
    /// Inputs not downloaded because the same URL came earlier.
    pub(crate) duplicates: usize,
    /// Body bytes received (saved or not).
    pub(crate) bytes: u64,
    /// Downloads that ran (saved or failed after starting): the sequential figure sums their times.
    pub(crate) downloads: usize,
    /// Sum of per-download times: what the same downloads cost one after another.
    pub(crate) busy: Duration,
    /// Wall-clock time of the whole run.
    pub(crate) wall: Duration,
    /// `URL: reason` for the first [`MAX_LISTED_FAILURES`] failures.
    pub(crate) failures: Vec<String>,
    /// Set when Ctrl-C (or a closed stdout) stopped the run early.
    pub(crate) interrupted: bool,
    /// URLs read but never started because the run was interrupted.
    pub(crate) not_started: usize,
    /// Failed or interrupted downloads whose bytes were kept in a `.part` file.
    pub(crate) parts_kept: usize,
}

impl Tally {
    pub(crate) fn record_failure(&mut self, line: String) {
        self.failed += 1;
        if self.failures.len() < MAX_LISTED_FAILURES {
            self.failures.push(line);
        }
    }

    /// Bytes per second over the wall clock.
    pub(crate) fn throughput(&self) -> Option<f64> {
        rate(self.bytes, self.wall)
    }

    /// How many times faster than one after another.
    pub(crate) fn speedup(&self) -> Option<f64> {
        speedup(self.busy, self.wall)
    }
}

/// `busy / wall`, or `None` when the wall time is too small to divide by.
pub(crate) fn speedup(busy: Duration, wall: Duration) -> Option<f64> {
    (wall.as_secs_f64() > 0.0 && !busy.is_zero()).then(|| busy.as_secs_f64() / wall.as_secs_f64())
}

fn rate(bytes: u64, wall: Duration) -> Option<f64> {
    (wall.as_secs_f64() > 0.0).then(|| bytes as f64 / wall.as_secs_f64())
}

/// `6.5x`.
pub(crate) fn format_speedup(x: f64) -> String {
    format!("{x:.1}x")
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The sequential-versus-threaded line:
/// `12 files: 2.41 s one after another, 0.37 s with 8 workers (6.5x faster)`.
pub(crate) fn comparison_line(t: &Tally) -> Option<String> {
    if t.downloads == 0 {
        return None;
    }
    let x = t.speedup()?;
    let verdict = if x >= 1.05 {
        format!("{} faster", format_speedup(x))
    } else {
        format!("{}: no faster", format_speedup(x))
    };
    Some(format!(
        "{}: {} one after another, {} with {} ({verdict})",
        plural(t.downloads, "file", "files"),
        format_duration(t.busy),
        format_duration(t.wall),
        plural(t.jobs, "worker", "workers"),
    ))
}

/// The whole summary, several lines, each ending in `\n`.
pub(crate) fn render(t: &Tally) -> String {
    let mut out = String::new();
    let _ = write!(out, "{} saved", plural(t.saved, "file", "files"));
    if t.skipped > 0 {
        let _ = write!(out, ", {} already complete", t.skipped);
    }
    if t.unchanged > 0 {
        let _ = write!(out, ", {} unchanged", t.unchanged);
    }
    if t.failed > 0 {
        let _ = write!(out, ", {} failed", t.failed);
    }
    if t.duplicates > 0 {
        let _ = write!(out, ", {}", plural(t.duplicates, "duplicate", "duplicates"));
    }
    if t.not_started > 0 {
        let _ = write!(out, ", {} not started", t.not_started);
    }
    let _ = writeln!(
        out,
        ", {} in {} ({})",
        HumanBytes(t.bytes),
        format_duration(t.wall),
        format_rate(t.throughput())
    );
    for failure in &t.failures {
        let _ = writeln!(out, "  failed: {failure}");
    }
    if t.failed > t.failures.len() {
        let _ = writeln!(out, "  … and {} more failures", t.failed - t.failures.len());
    }
    if let Some(line) = comparison_line(t) {
        let _ = writeln!(out, "{line}");
    }
    if t.interrupted {
        match t.parts_kept {
            0 => out.push_str("interrupted\n"),
            n => {
                let _ = writeln!(
                    out,
                    "interrupted: {} kept as .part (resume with -c)",
                    plural(n, "partial download", "partial downloads")
                );
            }
        }
    }
    out
}

/// The `--compare` table: one row per pass, speedups relative to the first pass.
pub(crate) fn render_compare(sequential: &Tally, threaded: &Tally) -> String {
    let base = sequential.wall.as_secs_f64();
    let row = |label: &str, t: &Tally| {
        let x = if t.wall.as_secs_f64() > 0.0 {
            format_speedup(base / t.wall.as_secs_f64())
        } else {
            "-".into()
        };
        format!(
            "{label:<10} {:>7} {:>11} {:>14} {:>8} {:>6} {:>6}\n",
            t.jobs,
            format_duration(t.wall),
            format_rate(t.throughput()),
            x,
            t.saved,
            t.failed
        )
    };
    let mut out = format!(
        "{:<10} {:>7} {:>11} {:>14} {:>8} {:>6} {:>6}\n",
        "", "workers", "wall time", "throughput", "speedup", "saved", "failed"
    );
    out.push_str(&row("sequential", sequential));
    out.push_str(&row("threaded", threaded));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn speedup_is_busy_over_wall() {
        assert!((speedup(ms(2400), ms(400)).unwrap() - 6.0).abs() < 1e-9);
        assert_eq!(speedup(ms(100), Duration::ZERO), None);
        assert_eq!(speedup(Duration::ZERO, ms(10)), None);
    }

    #[test]
    fn comparison_line_matches_the_documented_shape() {
        let t = Tally {
            jobs: 8,
            downloads: 12,
            busy: ms(2410),
            wall: ms(370),
            ..Tally::default()
        };
        assert_eq!(
            comparison_line(&t).unwrap(),
            "12 files: 2.41 s one after another, 0.37 s with 8 workers (6.5x faster)"
        );
        let slow = Tally {
            jobs: 1,
            downloads: 1,
            busy: ms(500),
            wall: ms(510),
            ..Tally::default()
        };
        assert_eq!(
            comparison_line(&slow).unwrap(),
            "1 file: 0.50 s one after another, 0.51 s with 1 worker (1.0x: no faster)"
        );
        assert_eq!(comparison_line(&Tally::default()), None);
    }

    #[test]
    fn summary_lists_failures_and_caps_them() {
        let mut t = Tally {
            jobs: 2,
            saved: 3,
            bytes: 3 * 1024 * 1024,
            downloads: 4,
            busy: ms(2000),
            wall: ms(1000),
            ..Tally::default()
        };
        for i in 0..(MAX_LISTED_FAILURES + 2) {
            t.record_failure(format!("http://h/{i}: HTTP 404 Not Found"));
        }
        let s = render(&t);
        assert!(
            s.starts_with("3 files saved, 22 failed, 3.00 MiB in 1.00 s (3.00 MiB/s)\n"),
            "{s}"
        );
        assert!(s.contains("  failed: http://h/0: HTTP 404 Not Found\n"));
        assert!(!s.contains("http://h/21"));
        assert!(s.contains("… and 2 more failures"));
        assert!(
            s.ends_with("4 files: 2.00 s one after another, 1.00 s with 2 workers (2.0x faster)\n")
        );
    }

    #[test]
    fn summary_counts_skipped_files_apart() {
        let t = Tally {
            jobs: 1,
            saved: 1,
            skipped: 2,
            wall: ms(1000),
            ..Tally::default()
        };
        assert!(render(&t).starts_with("1 file saved, 2 already complete, 0 B in 1.00 s"));
    }

    #[test]
    fn compare_table_has_both_rows() {
        let seq = Tally {
            jobs: 1,
            saved: 4,
            bytes: 4096,
            wall: ms(2000),
            ..Tally::default()
        };
        let par = Tally {
            jobs: 8,
            wall: ms(500),
            ..seq.clone()
        };
        let table = render_compare(&seq, &par);
        let lines: Vec<_> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("workers") && lines[0].contains("speedup"));
        assert!(
            lines[1].starts_with("sequential")
                && lines[1].contains("2.00 s")
                && lines[1].contains("1.0x")
        );
        assert!(
            lines[2].starts_with("threaded")
                && lines[2].contains("0.50 s")
                && lines[2].contains("4.0x")
        );
    }
}
