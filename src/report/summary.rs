//! The end-of-run summary and the `--compare` table: pure arithmetic and formatting, no I/O.

use std::fmt::Write as _;
use std::time::Duration;

use indicatif::HumanBytes;

use crate::estimate::Estimate;
use crate::units::{format_duration, format_rate};

/// Failures listed one by one in the summary; the rest are counted.
pub(crate) const MAX_LISTED_FAILURES: usize = 20;

/// What a run did, as counted by the main thread.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Tally {
    /// Workers asked for (`-j`, or a `--compare` pass's count).
    pub(crate) jobs: usize,
    /// The most downloads in flight at once (0 when not counted): what the summary says was
    /// used, which the open-file limit, `--per-host` or a short list may keep below `jobs`.
    pub(crate) peak: usize,
    pub(crate) saved: usize,
    /// Files `-c` found already complete, or `--skip-existing` there (not counted in `saved`).
    pub(crate) skipped: usize,
    /// Of `skipped`, those `--skip-existing` had no checksum to check by: only seen there.
    pub(crate) unchecked: usize,
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
    /// Sum of per-download times. Not a sequential figure: downloads slowed by each other
    /// overstate one (see [`crate::estimate`]).
    pub(crate) busy: Duration,
    /// The one-after-another figure the summary compares the wall with.
    pub(crate) sequential: Option<Sequential>,
    /// Wall-clock time of the whole run.
    pub(crate) wall: Duration,
    /// `URL: reason` for the first [`MAX_LISTED_FAILURES`] failures.
    pub(crate) failures: Vec<String>,
    /// Wall time during which at least one download was waiting before a retry (the server's
    /// `Retry-After` or our backoff): waits a run one after another has too.
    pub(crate) paused: Duration,
    /// A cap the user set that can hold the whole run back.
    pub(crate) caps: Caps,
    /// Set when Ctrl-C (or a closed stdout) stopped the run early.
    pub(crate) interrupted: bool,
    /// URLs read but never started because the run was interrupted.
    pub(crate) not_started: usize,
    /// Failed or interrupted downloads whose bytes were kept in a `.part` file.
    pub(crate) parts_kept: usize,
    /// Of those, the parts `-c` will start over (no validator to resume them by).
    pub(crate) parts_restart: usize,
    /// `--overwrite`: its parts are taken up with `-c --overwrite`, which replaces the files they
    /// were to replace (plain `-c` saves beside them).
    pub(crate) overwrite: bool,
}

/// Where the one-after-another figure comes from.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Sequential {
    /// A conservative estimate from this run (see [`crate::estimate`]).
    Estimated(Estimate),
    /// The wall time of a one-worker pass over the same list (`--compare`).
    Measured(Duration),
}

/// The caps a user can set that hold a run back whatever its worker count.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Caps {
    /// `--per-host N`, when given.
    pub(crate) per_host: Option<usize>,
    /// `--limit-rate`, bytes per second, when given.
    pub(crate) limit_rate: Option<u64>,
}

/// What the comparison line concludes; the JSON summary's `verdict`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// One worker had all the work: nothing to compare.
    OneWorker,
    Faster,
    /// Measured within a few per cent either way; or an estimate that shows no speedup (a lower
    /// bound under the wall shows no slowdown either).
    NoFaster,
    /// Measured (`--compare`) slower than one worker.
    Slower,
    /// An estimate below the wall, under a cap the user set (`--per-host`, `--limit-rate`).
    Limited,
    /// An estimate below the wall, which waiting before retries explains: a run one after
    /// another waits too.
    Waited,
}

impl Verdict {
    /// As the JSON summary names it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Verdict::OneWorker => "one_worker",
            Verdict::Faster => "faster",
            Verdict::NoFaster => "no_faster",
            Verdict::Slower => "slower",
            Verdict::Limited => "limited",
            Verdict::Waited => "waited",
        }
    }
}

impl Sequential {
    pub(crate) fn time(&self) -> Duration {
        match self {
            Sequential::Estimated(e) => e.total,
            Sequential::Measured(wall) => *wall,
        }
    }

    /// `"estimated"` or `"measured"`, as the JSON summary names it.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Sequential::Estimated(_) => "estimated",
            Sequential::Measured(_) => "measured",
        }
    }
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
        speedup(self.sequential.as_ref()?.time(), self.wall)
    }

    /// The speedup the run can back: a measured one as it is, an estimate's only where it is
    /// one at least (a lower bound under the wall shows no slowdown either, see `verdict`).
    pub(crate) fn backed_speedup(&self) -> Option<f64> {
        let x = self.speedup()?;
        match self.sequential.as_ref()? {
            Sequential::Estimated(_) if x < 1.0 => None,
            _ => Some(x),
        }
    }

    /// Workers that had something to do at once: the peak in flight when counted, never more
    /// than the downloads.
    pub(crate) fn workers_used(&self) -> usize {
        let most = match self.peak {
            0 => self.jobs,
            peak => peak.min(self.jobs),
        };
        most.min(self.downloads).max(1)
    }

    /// What the comparison concludes, or `None` when there is nothing to compare.
    pub(crate) fn verdict(&self) -> Option<Verdict> {
        let sequential = self.sequential.as_ref().filter(|_| self.downloads > 0)?;
        if self.workers_used() == 1 {
            return Some(Verdict::OneWorker);
        }
        let x = self.speedup()?;
        Some(match sequential {
            Sequential::Measured(_) if x >= 1.05 => Verdict::Faster,
            Sequential::Measured(_) if x > 0.95 => Verdict::NoFaster,
            Sequential::Measured(_) => Verdict::Slower,
            Sequential::Estimated(_) if x >= 1.05 => Verdict::Faster,
            // No speedup shown, with a cap the user set: the cap is the likelier reason, and
            // the one worth naming (a rate limit shared by all makes the estimate the wall).
            Sequential::Estimated(_) if x >= 1.0 && self.cap().is_some() => Verdict::Limited,
            Sequential::Estimated(_) if x >= 1.0 => Verdict::NoFaster,
            Sequential::Estimated(e) if self.waited(e.total) => Verdict::Waited,
            Sequential::Estimated(_) if self.cap().is_some() => Verdict::Limited,
            Sequential::Estimated(_) => Verdict::NoFaster,
        })
    }

    /// Whether waiting before retries explains an estimate below the wall (the estimate leaves
    /// those waits out): they took half the wall or more, or the estimate reaches the wall
    /// without them.
    fn waited(&self, estimate: Duration) -> bool {
        !self.paused.is_zero()
            && (self.paused * 2 >= self.wall || estimate + self.paused >= self.wall)
    }

    /// The cap that can have held the run back, as the user wrote it: `--limit-rate` always
    /// can; `--per-host` as [`Tally::per_host_cap`] says.
    fn cap(&self) -> Option<String> {
        if let Some(rate) = self.caps.limit_rate {
            return Some(format!("--limit-rate {}/s", HumanBytes(rate)));
        }
        self.per_host_cap()
    }

    /// `--per-host N` when it allows fewer downloads at once, over the run's hosts, than there
    /// were workers and files for.
    fn per_host_cap(&self) -> Option<String> {
        let per_host = self.caps.per_host?;
        let hosts = match &self.sequential {
            Some(Sequential::Estimated(e)) => e.hosts.max(1),
            _ => 1,
        };
        (per_host.saturating_mul(hosts) < self.jobs.min(self.downloads))
            .then(|| format!("--per-host {per_host}"))
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

pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The sequential-versus-threaded line, e.g.
/// `12 files: 2.41 s or more one after another (estimated), 0.37 s with 8 workers (at least 6.5x
/// faster)`; with `--compare`, `12 files: 2.41 s one after another, 0.37 s with 8 workers (6.5x
/// faster)`. An estimate below the wall gives no speedup but says why the run was no faster:
/// its own concurrency, a cap the user set, or waiting before retries.
pub(crate) fn comparison_line(t: &Tally) -> Option<String> {
    let verdict = t.verdict()?;
    let sequential = t.sequential.as_ref()?;
    let used = t.workers_used();
    let files = plural(t.downloads, "file", "files");
    let wall = format_duration(t.wall);
    let fewer = match used < t.jobs {
        // Files never started (Ctrl-C) were files too: not "fewer files than workers".
        true if t.downloads + t.not_started <= used => format!(
            ", fewer files than the {} asked for",
            plural(t.jobs, "worker", "workers")
        ),
        true => match t.per_host_cap() {
            Some(cap) => format!(
                ", the most at once of the {} asked for, as {cap} allows",
                t.jobs
            ),
            None => format!(", the most at once of the {} asked for", t.jobs),
        },
        false => String::new(),
    };
    let ran = format!("{wall} with {}{fewer}", plural(used, "worker", "workers"));
    let seq = format_duration(sequential.time());
    let x = t.speedup().map(format_speedup).unwrap_or_default();
    let estimated = matches!(sequential, Sequential::Estimated(_));
    let line = match verdict {
        Verdict::OneWorker => {
            format!("{files}: {wall} with 1 worker{fewer}: one after another already, nothing to compare")
        }
        Verdict::Faster if estimated => format!(
            "{files}: {seq} or more one after another (estimated), {ran} (at least {x} faster)"
        ),
        Verdict::NoFaster if estimated => format!(
            "{files}: {seq} or more one after another (estimated), {ran} (no faster that can be \
             shown: measure with --compare)"
        ),
        Verdict::Faster => format!("{files}: {seq} one after another, {ran} ({x} faster)"),
        Verdict::NoFaster => format!("{files}: {seq} one after another, {ran} ({x}: no faster)"),
        Verdict::Slower => format!("{files}: {seq} one after another, {ran} ({x}: slower)"),
        Verdict::Limited => format!(
            "{files}: {ran}, while one after another was estimated at {seq} or more: limited by \
             {}, a cap you set; measure with --compare",
            t.cap().unwrap_or_default()
        ),
        Verdict::Waited => format!(
            "{files}: {ran}, {} of it waiting to retry (Retry-After or backoff), as a run one \
             after another would too; one after another was estimated at {seq} or more besides \
             those waits",
            format_duration(t.paused.min(t.wall))
        ),
    };
    Some(line)
}

/// How the one-after-another figure was made, in a sentence (for the timeline).
pub(crate) fn basis(t: &Tally) -> String {
    match &t.sequential {
        Some(Sequential::Estimated(e)) => format!(
            "One after another is a conservative estimate: each download's host's quickest \
             connect and first-byte wait ({} in all) plus every body at the best rate the run \
             reached ({}: all downloads together, or the downloads of one level of concurrency, \
             such as the tail where the last ran alone), or in its own receiving time when \
             shorter ({} in all). Waits before retries are left out. A run in which every \
             request queued can still make it exceed a one-worker run: --compare measures \
             (README, \"The timing summary\").",
            format_duration(e.waits),
            format_rate(Some(e.best_rate)),
            format_duration(e.transfer)
        ),
        Some(Sequential::Measured(wall)) => format!(
            "One after another is measured: the one-worker pass took {}.",
            format_duration(*wall)
        ),
        None => "No download ran, so there is nothing to compare.".into(),
    }
}

/// The whole summary, several lines, each ending in `\n`.
pub(crate) fn render(t: &Tally) -> String {
    let mut out = String::new();
    let _ = write!(out, "{} saved", plural(t.saved, "file", "files"));
    match (t.skipped, t.unchecked) {
        (0, _) => {}
        (n, 0) => _ = write!(out, ", {n} already complete"),
        (n, u) if u == n => _ = write!(out, ", {n} already there"),
        (n, u) => _ = write!(out, ", {n} already complete or there ({u} unchecked)"),
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
                    "interrupted: {} kept as .part ({})",
                    plural(n, "partial download", "partial downloads"),
                    resume_hint(n, t.parts_restart, t.overwrite)
                );
            }
        }
    }
    out
}

/// What `-c` will do with `kept` parts, `restart` of which it cannot resume: a resume is
/// promised only where one can happen.
fn resume_hint(kept: usize, restart: usize, overwrite: bool) -> String {
    let c = if overwrite { "-c --overwrite" } else { "-c" };
    match restart {
        0 => format!("resume with {c}"),
        r if r >= kept => {
            let them = if kept == 1 { "it" } else { "them" };
            format!("no validator: {c} will start {them} over")
        }
        r => format!("resume with {c}; {r} without a validator will start over"),
    }
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

/// A pass whose wall is within this share of the fastest one's bought nothing more.
const STILL_PAYING: f64 = 0.10;

/// Of a `--compare=LIST` sweep's passes (in the order given), the index of the one after which
/// more workers stopped paying: the first whose wall is within [`STILL_PAYING`] of the fastest.
pub(crate) fn knee(passes: &[Tally]) -> Option<usize> {
    let best = passes
        .iter()
        .map(|t| t.wall.as_secs_f64())
        .fold(f64::INFINITY, f64::min);
    passes
        .iter()
        .position(|t| t.wall.as_secs_f64() <= best * (1.0 + STILL_PAYING))
}

/// The `--compare=LIST` table: one row per worker count, speedups over the first pass, then a
/// line naming where more workers stopped paying.
pub(crate) fn render_sweep(passes: &[Tally]) -> String {
    let Some(first) = passes.first() else {
        return String::new();
    };
    let base = first.wall.as_secs_f64();
    let mut out = format!(
        "{:>7} {:>11} {:>14} {:>8} {:>6} {:>6}\n",
        "workers", "wall time", "throughput", "speedup", "saved", "failed"
    );
    for t in passes {
        let x = match t.wall.as_secs_f64() {
            w if w > 0.0 => format_speedup(base / w),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:>7} {:>11} {:>14} {:>8} {:>6} {:>6}",
            t.jobs,
            format_duration(t.wall),
            format_rate(t.throughput()),
            x,
            t.saved,
            t.failed
        );
    }
    if let Some(line) = knee(passes).and_then(|k| knee_line(passes, k)) {
        let _ = writeln!(out, "{line}");
    }
    out
}

fn knee_line(passes: &[Tally], k: usize) -> Option<String> {
    let at = passes.get(k)?;
    let workers = plural(at.jobs, "worker", "workers");
    if k + 1 == passes.len() {
        return Some(format!(
            "more workers kept paying up to {workers} ({}): a larger count may pay more",
            format_duration(at.wall)
        ));
    }
    let more: Vec<String> = passes[k + 1..].iter().map(|t| t.jobs.to_string()).collect();
    Some(format!(
        "more workers stopped paying after {workers} ({}): {} did not beat it by {:.0} % or more",
        format_duration(at.wall),
        more.join(", "),
        STILL_PAYING * 100.0
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_is_promised_only_for_parts_that_can_resume() {
        assert_eq!(resume_hint(2, 0, false), "resume with -c");
        assert_eq!(
            resume_hint(1, 1, false),
            "no validator: -c will start it over"
        );
        assert_eq!(
            resume_hint(3, 3, false),
            "no validator: -c will start them over"
        );
        assert_eq!(
            resume_hint(3, 1, false),
            "resume with -c; 1 without a validator will start over"
        );
        assert_eq!(resume_hint(2, 0, true), "resume with -c --overwrite");
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn estimated(total: u64) -> Option<Sequential> {
        Some(Sequential::Estimated(Estimate {
            total: ms(total),
            waits: ms(total),
            transfer: Duration::ZERO,
            best_rate: 0.0,
            hosts: 1,
        }))
    }

    #[test]
    fn speedup_is_sequential_over_wall() {
        assert!((speedup(ms(2400), ms(400)).unwrap() - 6.0).abs() < 1e-9);
        assert_eq!(speedup(ms(100), Duration::ZERO), None);
        assert_eq!(speedup(Duration::ZERO, ms(10)), None);
        let t = Tally {
            busy: ms(9000),
            sequential: estimated(800),
            wall: ms(400),
            ..Tally::default()
        };
        assert!(
            (t.speedup().unwrap() - 2.0).abs() < 1e-9,
            "the estimate, not the sum"
        );
    }

    #[test]
    fn an_estimate_claims_at_least_its_speedup() {
        let t = Tally {
            jobs: 8,
            downloads: 12,
            sequential: estimated(2410),
            wall: ms(370),
            ..Tally::default()
        };
        assert_eq!(
            comparison_line(&t).unwrap(),
            "12 files: 2.41 s or more one after another (estimated), 0.37 s with 8 workers \
             (at least 6.5x faster)"
        );
        assert_eq!(comparison_line(&Tally::default()), None);
    }

    /// A lower bound below the wall shows no speedup, and no slowdown either: the downloads
    /// may well take that long one after another (a quick answer for one URL, slow ones for
    /// the rest), so it claims neither and points to the measure.
    #[test]
    fn an_estimate_below_the_wall_claims_no_slowdown() {
        let t = Tally {
            jobs: 32,
            downloads: 500,
            busy: ms(60_000),
            sequential: estimated(400),
            wall: ms(2000),
            ..Tally::default()
        };
        let line = comparison_line(&t).unwrap();
        assert_eq!(
            line,
            "500 files: 0.40 s or more one after another (estimated), 2.00 s with 32 workers (no \
             faster that can be shown: measure with --compare)"
        );
        assert_eq!(t.verdict(), Some(Verdict::NoFaster));
    }

    fn below_the_wall() -> Tally {
        Tally {
            jobs: 3,
            downloads: 3,
            sequential: estimated(10),
            wall: ms(1050),
            ..Tally::default()
        }
    }

    #[test]
    fn a_cap_is_named_when_the_estimate_is_the_wall() {
        let t = Tally {
            sequential: estimated(1050),
            caps: Caps {
                per_host: None,
                limit_rate: Some(16 * 1024),
            },
            ..below_the_wall()
        };
        assert_eq!(t.verdict(), Some(Verdict::Limited));
    }

    #[test]
    fn a_lower_bound_that_falls_short_is_no_slowdown() {
        assert_eq!(below_the_wall().verdict(), Some(Verdict::NoFaster));
        let near = Tally {
            sequential: estimated(800),
            ..below_the_wall()
        };
        assert_eq!(near.verdict(), Some(Verdict::NoFaster), "near the wall");
        assert_eq!(
            comparison_line(&near).unwrap(),
            "3 files: 0.80 s or more one after another (estimated), 1.05 s with 3 workers (no \
             faster that can be shown: measure with --compare)"
        );
    }

    #[test]
    fn waits_before_retries_are_not_called_a_slowdown() {
        let t = Tally {
            paused: ms(1000),
            ..below_the_wall()
        };
        assert_eq!(t.verdict(), Some(Verdict::Waited));
        assert_eq!(
            comparison_line(&t).unwrap(),
            "3 files: 1.05 s with 3 workers, 1.00 s of it waiting to retry (Retry-After or \
             backoff), as a run one after another would too; one after another was estimated at \
             10 ms or more besides those waits"
        );
        // A short wait explains nothing.
        let t = Tally {
            paused: ms(100),
            ..below_the_wall()
        };
        assert_eq!(t.verdict(), Some(Verdict::NoFaster));
        // Nor does one the estimate reaches the wall with.
        let t = Tally {
            paused: ms(300),
            sequential: estimated(800),
            ..below_the_wall()
        };
        assert_eq!(t.verdict(), Some(Verdict::Waited));
    }

    #[test]
    fn a_cap_the_user_set_is_named_instead_of_a_slowdown() {
        let per_host = |n| Tally {
            caps: Caps {
                per_host: Some(n),
                limit_rate: None,
            },
            ..below_the_wall()
        };
        assert_eq!(per_host(1).verdict(), Some(Verdict::Limited));
        assert_eq!(
            comparison_line(&per_host(2)).unwrap(),
            "3 files: 1.05 s with 3 workers, while one after another was estimated at 10 ms or \
             more: limited by --per-host 2, a cap you set; measure with --compare"
        );
        // As many per host as there were workers held nothing back.
        assert_eq!(per_host(3).verdict(), Some(Verdict::NoFaster));
        let rate = Tally {
            caps: Caps {
                per_host: None,
                limit_rate: Some(16 * 1024),
            },
            ..below_the_wall()
        };
        assert!(comparison_line(&rate)
            .unwrap()
            .contains("limited by --limit-rate 16.00 KiB/s, a cap you set"));
        assert_eq!(rate.verdict().map(Verdict::name), Some("limited"));
    }

    #[test]
    fn fewer_files_than_workers_names_the_workers_used() {
        let one = Tally {
            jobs: 8,
            downloads: 1,
            sequential: estimated(500),
            wall: ms(510),
            ..Tally::default()
        };
        assert_eq!(
            comparison_line(&one).unwrap(),
            "1 file: 0.51 s with 1 worker, fewer files than the 8 workers asked for: one after \
             another already, nothing to compare"
        );
        let stopped = Tally {
            not_started: 40,
            interrupted: true,
            ..one.clone()
        };
        assert_eq!(
            comparison_line(&stopped).unwrap(),
            "1 file: 0.51 s with 1 worker, the most at once of the 8 asked for: one after \
             another already, nothing to compare"
        );
        let three = Tally {
            jobs: 8,
            downloads: 3,
            sequential: estimated(900),
            wall: ms(300),
            ..Tally::default()
        };
        assert!(comparison_line(&three)
            .unwrap()
            .contains("0.30 s with 3 workers, fewer files than the 8 workers asked for"));
    }

    #[test]
    fn a_measured_comparison_agrees_with_its_walls() {
        let mut t = Tally {
            jobs: 32,
            downloads: 500,
            busy: ms(60_000),
            sequential: Some(Sequential::Measured(ms(400))),
            wall: ms(2000),
            ..Tally::default()
        };
        assert_eq!(
            comparison_line(&t).unwrap(),
            "500 files: 0.40 s one after another, 2.00 s with 32 workers (0.2x: slower)"
        );
        t.sequential = Some(Sequential::Measured(ms(8000)));
        assert!(comparison_line(&t).unwrap().ends_with("(4.0x faster)"));
    }

    #[test]
    fn summary_lists_failures_and_caps_them() {
        let mut t = Tally {
            jobs: 2,
            saved: 3,
            bytes: 3 * 1024 * 1024,
            downloads: 4,
            sequential: estimated(2000),
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
            s.ends_with(
                "4 files: 2.00 s or more one after another (estimated), 1.00 s with 2 workers \
                 (at least 2.0x faster)\n"
            ),
            "{s}"
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
        // `--skip-existing` without a checksum only saw them there.
        let there = Tally {
            unchecked: 2,
            ..t.clone()
        };
        assert!(render(&there).starts_with("1 file saved, 2 already there, 0 B"));
        let some = Tally { unchecked: 1, ..t };
        assert!(
            render(&some).starts_with("1 file saved, 2 already complete or there (1 unchecked),")
        );
    }

    fn pass(jobs: usize, wall: u64) -> Tally {
        Tally {
            jobs,
            saved: 10,
            bytes: 10_000,
            wall: ms(wall),
            ..Tally::default()
        }
    }

    #[test]
    fn a_sweep_names_the_count_after_which_more_workers_stopped_paying() {
        let passes = [pass(1, 8000), pass(4, 2100), pass(16, 2000), pass(64, 2600)];
        assert_eq!(knee(&passes), Some(1));
        let table = render_sweep(&passes);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 6, "{table}");
        assert!(lines[1].trim_start().starts_with("1 ") && lines[1].contains("1.0x"));
        assert!(lines[2].trim_start().starts_with("4 ") && lines[2].contains("3.8x"));
        assert!(lines[4].trim_start().starts_with("64 ") && lines[4].contains("3.1x"));
        assert_eq!(
            lines[5],
            "more workers stopped paying after 4 workers (2.10 s): 16, 64 did not beat it by 10 % \
             or more"
        );
    }

    #[test]
    fn a_sweep_that_kept_paying_says_to_try_more() {
        let passes = [pass(1, 8000), pass(2, 4000), pass(4, 2000)];
        assert_eq!(knee(&passes), Some(2));
        assert!(render_sweep(&passes).ends_with(
            "more workers kept paying up to 4 workers (2.00 s): a larger count may pay more\n"
        ));
        let flat = [pass(1, 1000), pass(8, 1050)];
        assert!(render_sweep(&flat).ends_with(
            "more workers stopped paying after 1 worker (1.00 s): 8 did not beat it by 10 % or more\n"
        ));
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
