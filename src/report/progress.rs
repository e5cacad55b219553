//! What a person sees on stderr while the run goes: indicatif bars on a terminal, one plain line
//! per finished URL otherwise, or nothing but errors.
//!
//! Only the main thread touches this. Workers bump an `AtomicU64` per download; each tick copies
//! those counters into the bars, so the download loop never waits on the terminal.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::modes::ProgressMode;
use crate::report::echo::QuietCtrlC;
use crate::units::{format_duration, format_rate};

/// Files smaller than this get no bar of their own (as `uv` does): they are done before a bar
/// could say anything, and a screen of bars flickering in and out hides the ones that matter.
/// They still count in the overall bar.
pub(crate) const MIN_BAR_SIZE: u64 = 256 * 1024;

/// One download the display knows of: started, or waiting to retry before it could start.
struct Active {
    /// The file's path once the download started, its URL before.
    label: String,
    bar: Option<ProgressBar>,
    /// Body bytes received; `None` until the download started.
    counter: Option<Arc<AtomicU64>>,
    total: Option<u64>,
    /// Waiting for the next attempt until then, because of this.
    retry: Option<(Instant, String)>,
}

impl Active {
    fn new(label: String) -> Active {
        Active {
            label,
            bar: None,
            counter: None,
            total: None,
            retry: None,
        }
    }

    fn received(&self) -> u64 {
        self.counter
            .as_ref()
            .map_or(0, |counter| counter.load(Ordering::Relaxed))
    }

    /// Whether this download is worth a bar of its own now.
    fn wants_bar(&self) -> bool {
        self.retry.is_some()
            || match self.total {
                Some(total) => total >= MIN_BAR_SIZE,
                None => self.received() >= MIN_BAR_SIZE,
            }
    }

    fn message(&self, now: Instant) -> String {
        match &self.retry {
            Some((until, reason)) => {
                let left = until.saturating_duration_since(now);
                format!(
                    "{}  retrying in {} ({reason})",
                    self.label,
                    format_eta(left)
                )
            }
            None => self.label.clone(),
        }
    }
}

/// What the overall bar knows of file sizes: the sizes seen so far, to guess the ones not seen.
#[derive(Default)]
struct Sizes {
    sum: u64,
    count: u64,
}

pub(crate) struct Progress {
    mode: ProgressMode,
    multi: Option<MultiProgress>,
    /// While bars draw on a terminal (see [`crate::report::echo`]).
    quiet_ctrl_c: Option<QuietCtrlC>,
    overall: Option<ProgressBar>,
    active: HashMap<usize, Active>,
    queued: Arc<AtomicUsize>,
    finished: usize,
    /// Bytes of downloads that have finished; running ones are added from their counters.
    finished_bytes: u64,
    /// Sizes of the finished downloads that announced one.
    finished_sizes: Sizes,
    started: Instant,
    /// A label shown before each line (`--compare` passes).
    label: String,
}

impl Progress {
    /// `colour`: whether the bars may use colour (see `cli::Config::colour`).
    pub(crate) fn new(
        mode: ProgressMode,
        colour: bool,
        queued: Arc<AtomicUsize>,
        label: &str,
    ) -> Progress {
        let (multi, overall) = if mode == ProgressMode::Bars {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            let overall = multi.add(ProgressBar::new(0));
            overall.set_style(
                ProgressStyle::with_template(if colour {
                    "{prefix}[{bar:30.cyan/blue}] {pos}/{len} files  {msg}"
                } else {
                    "{prefix}[{bar:30}] {pos}/{len} files  {msg}"
                })
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            overall.set_prefix(label_prefix(label));
            (Some(multi), Some(overall))
        } else {
            (None, None)
        };
        Progress {
            quiet_ctrl_c: multi.as_ref().map(|_| QuietCtrlC::new()),
            mode,
            multi,
            overall,
            active: HashMap::new(),
            queued,
            finished: 0,
            finished_bytes: 0,
            finished_sizes: Sizes::default(),
            started: Instant::now(),
            label: label_prefix(label),
        }
    }

    /// A download's headers are in: from now on its bytes count.
    pub(crate) fn started(
        &mut self,
        id: usize,
        path: &Path,
        total: Option<u64>,
        counter: Arc<AtomicU64>,
    ) {
        let active = self
            .active
            .entry(id)
            .or_insert_with(|| Active::new(String::new()));
        active.label = path.display().to_string();
        active.counter = Some(counter);
        active.total = total;
        active.retry = None;
        // A bar that showed a retry before the start now shows bytes, or goes if they are few.
        if let Some(bar) = active.bar.take() {
            remove_bar(self.multi.as_ref(), &bar);
        }
        self.redraw(id);
    }

    /// An attempt failed and the download waits `wait` before the next: its bar says so, even
    /// for a small file, since a wait of seconds is worth seeing.
    pub(crate) fn retrying(&mut self, id: usize, url: &str, wait: Duration, reason: &str) {
        let active = self
            .active
            .entry(id)
            .or_insert_with(|| Active::new(url.to_string()));
        active.retry = Some((Instant::now() + wait, reason.to_string()));
        self.redraw(id);
    }

    /// Brings the bar of download `id` up to date: makes it when it becomes worth one, drops a
    /// retry that is over.
    fn redraw(&mut self, id: usize) {
        let Some(active) = self.active.get_mut(&id) else {
            return;
        };
        let now = Instant::now();
        if matches!(&active.retry, Some((until, _)) if *until <= now) {
            active.retry = None;
            if !active.wants_bar() {
                if let Some(bar) = active.bar.take() {
                    remove_bar(self.multi.as_ref(), &bar);
                }
            }
        }
        if active.bar.is_none() && active.wants_bar() {
            active.bar = self.multi.as_ref().map(|multi| multi.add(file_bar(active)));
        }
        if let Some(bar) = &active.bar {
            bar.set_position(active.received());
            bar.set_message(active.message(now));
        }
    }

    /// A download ended. `line` makes its line for `--progress lines`, and only that mode calls
    /// it: on many small files, formatting a line for each that no one sees is a cost of its own.
    pub(crate) fn finished(
        &mut self,
        id: usize,
        bytes: u64,
        line: impl FnOnce() -> Option<String>,
    ) {
        self.finished += 1;
        self.finished_bytes += bytes;
        if let Some(active) = self.active.remove(&id) {
            if let Some(total) = active.total {
                self.finished_sizes.sum += total;
                self.finished_sizes.count += 1;
            }
            if let Some(bar) = active.bar {
                remove_bar(self.multi.as_ref(), &bar);
            }
        }
        if let Some(line) = (self.mode == ProgressMode::Lines).then(line).flatten() {
            to_stderr(&format!(
                "{}[{}/{}] {line}\n",
                self.label,
                self.finished,
                self.known()
            ));
        }
        self.tick();
    }

    /// Runs `write` (which prints on stdout) with the bars lifted off the terminal, so that what
    /// it prints lands above them and scrolls away like any other line.
    pub(crate) fn above<R>(&self, write: impl FnOnce() -> R) -> R {
        match &self.multi {
            Some(multi) => multi.suspend(write),
            None => write(),
        }
    }

    /// An error line: always shown (even with -q), above the bars when there are bars.
    pub(crate) fn error(&self, line: &str) {
        match &self.multi {
            // `println` writes to the bars' own target, stderr; a hidden one would drop it.
            Some(multi) if !multi.is_hidden() => {
                if multi.println(line).is_err() {
                    to_stderr(&format!("{line}\n"));
                }
            }
            _ => to_stderr(&format!("{line}\n")),
        }
    }

    /// A note for a person (not shown with -q), above the bars when there are bars.
    pub(crate) fn note(&self, line: &str) {
        if self.mode != ProgressMode::Quiet {
            self.error(line);
        }
    }

    fn known(&self) -> usize {
        self.queued.load(Ordering::Relaxed).max(self.finished)
    }

    /// Copies the workers' counters into the bars.
    pub(crate) fn tick(&mut self) {
        if self.overall.is_none() {
            return;
        }
        if let Some(quiet) = &self.quiet_ctrl_c {
            quiet.keep();
        }
        let ids: Vec<usize> = self.active.keys().copied().collect();
        for id in ids {
            self.redraw(id);
        }
        let bytes = self.finished_bytes + self.active.values().map(Active::received).sum::<u64>();
        let elapsed = self.started.elapsed();
        let rate = rate(bytes, elapsed);
        let mut message = format!(
            "{}  {}  {}",
            HumanBytes(bytes),
            format_rate(rate),
            format_duration(elapsed)
        );
        if let Some(eta) = self.bytes_left().and_then(|left| eta(left, rate)) {
            message.push_str(&format!("  ETA {}", format_eta(eta)));
        }
        if let Some(overall) = &self.overall {
            overall.set_length(self.known() as u64);
            overall.set_position(self.finished as u64);
            overall.set_message(message);
        }
    }

    /// Bytes still to come for every known file: exact for running downloads, the average size
    /// seen so far for files not started yet. `None` while a running download has not said its
    /// size, or no size is known at all.
    fn bytes_left(&self) -> Option<u64> {
        let mut sizes = Sizes {
            sum: self.finished_sizes.sum,
            count: self.finished_sizes.count,
        };
        let mut left = 0u64;
        let mut running = 0usize;
        for active in self.active.values() {
            if active.counter.is_none() {
                continue;
            }
            running += 1;
            let total = active.total?;
            sizes.sum += total;
            sizes.count += 1;
            left += total.saturating_sub(active.received());
        }
        let average = sizes.sum.checked_div(sizes.count)?;
        let waiting = self.known().saturating_sub(self.finished + running) as u64;
        Some(left.saturating_add(waiting.saturating_mul(average)))
    }

    /// Removes every bar, so the summary prints on a clean terminal.
    pub(crate) fn clear(&mut self) {
        for (_, active) in self.active.drain() {
            if let Some(bar) = active.bar {
                bar.finish_and_clear();
            }
        }
        if let Some(overall) = &self.overall {
            overall.finish_and_clear();
        }
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
        if let Some(quiet) = &mut self.quiet_ctrl_c {
            quiet.restore();
        }
    }
}

/// A bar for one file, in bytes when the download has started, a bare line before.
fn file_bar(active: &Active) -> ProgressBar {
    let (bar, template) = match (&active.counter, active.total) {
        (None, _) => (ProgressBar::no_length(), "  {wide_msg}"),
        (Some(_), Some(len)) => (
            ProgressBar::new(len),
            "  {wide_msg} {bytes:>11}/{total_bytes:<11} {bytes_per_sec:>12}",
        ),
        (Some(_), None) => (
            ProgressBar::no_length(),
            "  {wide_msg} {bytes:>11}             {bytes_per_sec:>12}",
        ),
    };
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn remove_bar(multi: Option<&MultiProgress>, bar: &ProgressBar) {
    bar.finish_and_clear();
    if let Some(multi) = multi {
        multi.remove(bar);
    }
}

/// Time left at `rate` bytes per second; `None` before there is a rate to go by.
fn eta(bytes_left: u64, rate: Option<f64>) -> Option<Duration> {
    let rate = rate.filter(|r| *r >= 1.0)?;
    Some(Duration::from_secs_f64((bytes_left as f64 / rate).min(1e9)))
}

/// `3 s`, `1 min 05 s`: whole seconds, rounded up, since an estimate needs no decimals.
fn format_eta(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if secs < 60 {
        format!("{secs} s")
    } else {
        format_duration(Duration::from_secs(secs))
    }
}

/// Writes to stderr, ignoring failure: a closed or full stderr (`2>&1 | head -1`, `2>/dev/full`)
/// must not panic the main thread, which `eprintln!` would, and with it stall the workers.
pub(crate) fn to_stderr(text: &str) {
    let _ = io::stderr().lock().write_all(text.as_bytes());
}

fn label_prefix(label: &str) -> String {
    if label.is_empty() {
        String::new()
    } else {
        format!("{label}: ")
    }
}

fn rate(bytes: u64, elapsed: Duration) -> Option<f64> {
    (elapsed.as_secs_f64() > 0.05).then(|| bytes as f64 / elapsed.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars() -> (Progress, Arc<AtomicUsize>) {
        let queued = Arc::new(AtomicUsize::new(0));
        let progress = Progress::new(ProgressMode::Bars, false, queued.clone(), "");
        (progress, queued)
    }

    fn has_bar(p: &Progress, id: usize) -> bool {
        p.active.get(&id).is_some_and(|a| a.bar.is_some())
    }

    #[test]
    fn small_files_get_no_bar_until_they_prove_big() {
        let (mut p, queued) = bars();
        queued.store(3, Ordering::Relaxed);
        let counter = Arc::new(AtomicU64::new(0));
        p.started(
            0,
            Path::new("small"),
            Some(MIN_BAR_SIZE - 1),
            counter.clone(),
        );
        p.started(1, Path::new("big"), Some(MIN_BAR_SIZE), Arc::default());
        p.started(2, Path::new("unsized"), None, counter.clone());
        assert!(!has_bar(&p, 0));
        assert!(has_bar(&p, 1));
        assert!(!has_bar(&p, 2));
        counter.store(MIN_BAR_SIZE, Ordering::Relaxed);
        p.tick();
        assert!(
            has_bar(&p, 2),
            "an unsized download gets a bar once it is big"
        );
        assert!(!has_bar(&p, 0), "a known small size stays without a bar");
    }

    #[test]
    fn a_retry_is_a_state_of_the_bar_and_ends() {
        let (mut p, _) = bars();
        p.retrying(0, "http://h/f", Duration::from_secs(2), "HTTP 503");
        let active = &p.active[&0];
        assert!(active.bar.is_some(), "a wait is shown even before a start");
        let message = active.message(Instant::now());
        assert_eq!(message, "http://h/f  retrying in 2 s (HTTP 503)");
        p.started(0, Path::new("f"), Some(10), Arc::default());
        assert!(p.active[&0].retry.is_none());
        assert!(!has_bar(&p, 0), "small once started: the bar goes");
        p.retrying(1, "http://h/g", Duration::ZERO, "reset");
        p.tick();
        assert!(
            p.active[&1].retry.is_none(),
            "a wait that is over is dropped"
        );
        assert!(!has_bar(&p, 1));
    }

    #[test]
    fn bytes_left_counts_running_files_and_guesses_waiting_ones() {
        let (mut p, queued) = bars();
        queued.store(4, Ordering::Relaxed);
        assert_eq!(p.bytes_left(), None, "no size known yet");
        let counter = Arc::new(AtomicU64::new(30));
        p.started(0, Path::new("a"), Some(100), counter);
        // 70 left of a, and 3 files not started at the average size seen, 100.
        assert_eq!(p.bytes_left(), Some(70 + 3 * 100));
        p.finished(0, 100, || None);
        p.started(1, Path::new("b"), Some(300), Arc::default());
        // 300 left of b, 2 waiting at the average of 100 and 300.
        assert_eq!(p.bytes_left(), Some(300 + 2 * 200));
        p.started(2, Path::new("c"), None, Arc::default());
        assert_eq!(p.bytes_left(), None, "a running file of unknown size");
    }

    #[test]
    fn eta_needs_a_rate_and_rounds_up() {
        assert_eq!(eta(100, None), None);
        assert_eq!(eta(100, Some(0.0)), None);
        assert_eq!(eta(100, Some(50.0)), Some(Duration::from_secs(2)));
        assert_eq!(format_eta(Duration::from_millis(1200)), "2 s");
        assert_eq!(format_eta(Duration::ZERO), "0 s");
        assert_eq!(format_eta(Duration::from_secs(65)), "1 min 05 s");
    }
}
