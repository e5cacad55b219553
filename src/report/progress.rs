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
use crate::units::{format_duration, format_rate};

struct Active {
    bar: Option<ProgressBar>,
    counter: Arc<AtomicU64>,
}

pub(crate) struct Progress {
    mode: ProgressMode,
    multi: Option<MultiProgress>,
    overall: Option<ProgressBar>,
    active: HashMap<usize, Active>,
    queued: Arc<AtomicUsize>,
    finished: usize,
    /// Bytes of downloads that have finished; running ones are added from their counters.
    finished_bytes: u64,
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
            mode,
            multi,
            overall,
            active: HashMap::new(),
            queued,
            finished: 0,
            finished_bytes: 0,
            started: Instant::now(),
            label: label_prefix(label),
        }
    }

    /// A download's headers are in: give it a bar.
    pub(crate) fn started(
        &mut self,
        id: usize,
        path: &Path,
        total: Option<u64>,
        counter: Arc<AtomicU64>,
    ) {
        let bar = self.multi.as_ref().map(|multi| {
            let bar = multi.add(match total {
                Some(len) => ProgressBar::new(len),
                None => ProgressBar::no_length(),
            });
            let template = if total.is_some() {
                "  {wide_msg} {bytes:>11}/{total_bytes:<11} {bytes_per_sec:>12}"
            } else {
                "  {wide_msg} {bytes:>11}             {bytes_per_sec:>12}"
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message(path.display().to_string());
            bar
        });
        self.active.insert(id, Active { bar, counter });
    }

    /// A download ended; `line` is the plain-text line for lines mode.
    pub(crate) fn finished(&mut self, id: usize, bytes: u64, line: Option<&str>) {
        self.finished += 1;
        self.finished_bytes += bytes;
        if let Some(active) = self.active.remove(&id) {
            if let Some(bar) = active.bar {
                bar.finish_and_clear();
                if let Some(multi) = &self.multi {
                    multi.remove(&bar);
                }
            }
        }
        if let (ProgressMode::Lines, Some(line)) = (self.mode, line) {
            to_stderr(&format!(
                "{}[{}/{}] {line}\n",
                self.label,
                self.finished,
                self.known()
            ));
        }
        self.tick();
    }

    /// An error line: always shown (even with -q), above the bars when there are bars.
    pub(crate) fn error(&self, line: &str) {
        match &self.multi {
            Some(multi) => multi.suspend(|| to_stderr(&format!("{line}\n"))),
            None => to_stderr(&format!("{line}\n")),
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
        let Some(overall) = &self.overall else { return };
        let mut bytes = self.finished_bytes;
        for active in self.active.values() {
            let n = active.counter.load(Ordering::Relaxed);
            bytes += n;
            if let Some(bar) = &active.bar {
                bar.set_position(n);
            }
        }
        overall.set_length(self.known() as u64);
        overall.set_position(self.finished as u64);
        let elapsed = self.started.elapsed();
        overall.set_message(format!(
            "{}  {}  {}",
            HumanBytes(bytes),
            format_rate(rate(bytes, elapsed)),
            format_duration(elapsed)
        ));
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
