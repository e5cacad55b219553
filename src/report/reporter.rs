//! The main thread's view of a pass: it counts, writes the stdout records, shows progress and
//! errors, and (for a program embedding fetchpar) keeps each input's outcome.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::outcome::{Status, UrlOutcome};
use super::output::{Stdout, UrlRecord};
use super::progress::Progress;
use super::summary::{Caps, Sequential, Tally};
use crate::download::{Note, Outcome};
use crate::estimate::{self, Estimator, Pauses, Sample};
use crate::exit::End;
use crate::input::Origin;
use crate::pool::{Event, Sink};
use crate::trace::{Phases, Row, Trace};

/// What a pass shows, and to whom.
pub(crate) struct Show {
    /// Whether this pass writes records on stdout (`--compare`'s sequential pass does not).
    pub(crate) records: bool,
    /// Whether failures and notes reach stderr (not for the sequential pass, nor when embedded).
    pub(crate) errors: bool,
    /// `-q` (or an embedded run): no notes, no summary.
    pub(crate) quiet: bool,
    /// Keep every input's [`UrlOutcome`] (an embedded run wants them; the command line, whose
    /// list may be endless, does not).
    pub(crate) collect: bool,
    /// `--skip-existing`: a file skipped without a checksum to match was only seen to be there.
    pub(crate) skip_existing: bool,
    /// `--overwrite`: the parts an interrupt leaves are resumed with `-c --overwrite`.
    pub(crate) overwrite: bool,
}

pub(crate) struct Reporter {
    progress: Progress,
    tally: Tally,
    started: Instant,
    show: Show,
    stdout: Stdout,
    cancel: Arc<AtomicBool>,
    queued: Arc<AtomicUsize>,
    /// The reader went away (`| head -1`): stop quietly.
    stdout_closed: bool,
    /// Writing failed otherwise (a full disk under `> results.jsonl`): stop, and say so.
    stdout_failed: bool,
    finished: usize,
    outcomes: Vec<UrlOutcome>,
    /// The one-after-another estimate, gathered as downloads finish.
    estimator: Estimator,
    /// The downloads under way, as the estimate watches them.
    flows: Flows,
    /// Waits before retries, which the comparison leaves out.
    pauses: Pauses,
    /// Every download's phases and requests, for `--har` and `--timeline`.
    trace: Option<Trace>,
    /// `-N`'s "cannot tell" is said once a run.
    said_no_last_modified: bool,
    said_no_ranges: bool,
}

/// What a pass leaves behind once its pool is done.
pub(crate) struct Report {
    pub(crate) tally: Tally,
    pub(crate) end: End,
    pub(crate) outcomes: Vec<UrlOutcome>,
    pub(crate) trace: Option<Trace>,
}

impl Reporter {
    pub(crate) fn new(
        progress: Progress,
        jobs: usize,
        show: Show,
        stdout: Stdout,
        cancel: Arc<AtomicBool>,
        queued: Arc<AtomicUsize>,
    ) -> Reporter {
        Reporter {
            progress,
            tally: Tally {
                jobs,
                overwrite: show.overwrite,
                ..Tally::default()
            },
            started: Instant::now(),
            show,
            stdout,
            cancel,
            queued,
            stdout_closed: false,
            stdout_failed: false,
            finished: 0,
            outcomes: Vec::new(),
            estimator: Estimator::default(),
            flows: Flows::default(),
            pauses: Pauses::default(),
            trace: None,
            said_no_last_modified: false,
            said_no_ranges: false,
        }
    }

    /// Keeps every download's phases and requests (memory grows with the list: only when a
    /// `--har` or `--timeline` file is to be written).
    pub(crate) fn keep_trace(mut self) -> Reporter {
        self.trace = Some(Trace::new(self.tally.jobs, self.started));
        self
    }

    /// The caps the user set, which the summary names when they held the run back.
    pub(crate) fn caps(mut self, caps: Caps) -> Reporter {
        self.tally.caps = caps;
        self
    }

    /// Clears the display and totals the pass. `read_all`: the producer read the inputs to
    /// their end.
    pub(crate) fn close(mut self, read_all: bool) -> Report {
        self.progress.clear();
        self.watch(true);
        self.tally.wall = self.started.elapsed();
        self.tally.sequential = self.estimator.estimate().map(Sequential::Estimated);
        self.tally.paused = self.pauses.total(self.tally.wall);
        let mut cut_short = false;
        if self.cancel.load(Ordering::SeqCst) {
            // A stdout that failed or closed also stops the run, but that is not an interrupt.
            self.tally.interrupted = !(self.stdout_failed || self.stdout_closed);
            self.tally.not_started = self
                .queued
                .load(Ordering::SeqCst)
                .saturating_sub(self.finished);
            // URLs queued but never started, or never even read, were not saved either.
            cut_short = self.tally.not_started > 0 || !read_all;
        }
        let end = End {
            stdout_closed: self.stdout_closed,
            stdout_failed: self.stdout_failed,
            interrupted: self.tally.interrupted,
            failed: self.tally.failed,
            cut_short,
        };
        Report {
            tally: self.tally,
            end,
            outcomes: self.outcomes,
            trace: self.trace,
        }
    }

    /// Writes one record unless stdout is gone. Any write error stops the run: the records are
    /// the point of it. Downloads still running stop at their next chunk and keep their bytes in
    /// `NAME.part`, so nothing incomplete is ever left under a final name.
    fn write(&mut self, write: impl FnOnce(&Stdout) -> io::Result<()>) {
        if !self.show.records || self.stdout_closed || self.stdout_failed {
            return;
        }
        // Above the bars: a path printed under them would be drawn over at the next redraw.
        let stdout = &self.stdout;
        match self.progress.above(|| write(stdout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                // The reader has what it wanted: like Ctrl-C, without the noise and not 130.
                // The exit status still says whether every URL was saved (see `ExitCode::of`).
                self.stdout_closed = true;
                self.cancel.store(true, Ordering::SeqCst);
            }
            Err(e) => {
                self.progress.error(&format!(
                    "fetchpar: cannot write to stdout ({e}): stopping; partial downloads \
                     are kept as .part files"
                ));
                self.stdout_failed = true;
                self.cancel.store(true, Ordering::SeqCst);
            }
        }
    }

    fn keep(&mut self, done: UrlOutcome) {
        if self.show.collect {
            self.outcomes.push(done);
        }
    }

    /// Tells the estimate how many downloads are receiving, and (at most every
    /// [`OBSERVE_EVERY`], or when `now`) how many bytes have come: O(workers) atomic loads.
    fn watch(&mut self, now: bool) {
        let at = Instant::now();
        let due = now || self.flows.last.is_none_or(|t| at - t >= OBSERVE_EVERY);
        if !due {
            self.estimator.receiving(self.flows.receiving);
            return;
        }
        self.flows.last = Some(at);
        let offset = at.saturating_duration_since(self.started);
        let received = self.flows.received();
        self.estimator
            .observe(offset, received, self.flows.receiving);
    }

    fn finished(&mut self, id: usize, url: String, origin: Origin, mut outcome: Outcome) {
        self.flows.end(id);
        self.watch(false);
        for note in std::mem::take(&mut outcome.notes) {
            self.note(&url, note);
        }
        let described = outcome.result.as_ref().err().map(|f| f.describe());
        if !outcome.skipped() {
            let sample = sample(&url, &outcome.phases, outcome.bytes, self.started);
            self.estimator.add(&sample);
            if let Some(trace) = self.trace.as_mut() {
                trace.rows.push(row(&url, &mut outcome));
            }
        }
        let done = UrlOutcome::finished(url, origin, outcome);
        self.write(|out| out.json(&UrlRecord::of(&done)));
        self.finished += 1;
        if done.partial.is_some() {
            self.tally.parts_kept += 1;
            if !done.resumable {
                self.tally.parts_restart += 1;
            }
        }
        self.tally.bytes += done.bytes;
        if done.status != Status::Skipped {
            self.tally.downloads += 1;
            self.tally.busy += done.elapsed;
        }
        match (done.status, described) {
            (Status::Skipped, _) => self.skipped(id, &done),
            (Status::Unchanged, _) => self.unchanged(id, &done),
            (_, Some(described)) => self.failed(id, &done, described),
            _ => self.saved(id, &done),
        }
        self.keep(done);
    }

    fn skipped(&mut self, id: usize, done: &UrlOutcome) {
        self.tally.skipped += 1;
        let Some(path) = &done.path else { return };
        let why = match (self.show.skip_existing, &done.checksum) {
            (true, None) => {
                self.tally.unchecked += 1;
                "already there: --skip-existing checks nothing"
            }
            _ => "already complete",
        };
        self.progress.finished(id, 0, || {
            Some(format!("skipped {} ({why})", path.display()))
        });
        self.write(|out| out.path(path));
    }

    fn unchanged(&mut self, id: usize, done: &UrlOutcome) {
        self.tally.unchanged += 1;
        let Some(path) = &done.path else { return };
        // With an expected digest the server is not asked: the file matched it.
        let why = match done.checksum {
            Some(_) => "matches its expected checksum",
            None => "not modified on the server",
        };
        self.progress.finished(id, 0, || {
            Some(format!("unchanged {} ({why})", path.display()))
        });
        self.write(|out| out.path(path));
    }

    /// A download's warning, which fails nothing.
    fn note(&mut self, url: &str, note: Note) {
        if !self.show.errors {
            return;
        }
        let line = match note {
            Note::NoChecksum(what) => format!("fetchpar: {url}: warning: {what}"),
            Note::NoLastModified if self.said_no_last_modified => return,
            Note::RangesIgnored if self.said_no_ranges => return,
            Note::RangesIgnored => {
                self.said_no_ranges = true;
                format!(
                    "fetchpar: {url}: note: the server does not support ranges, so the download \
                     started again from zero instead of resuming (said once)"
                )
            }
            Note::Changed => format!(
                "fetchpar: {url}: note: the file changed on the server since the bytes on disk \
                 came (another ETag or Last-Modified), so it was downloaded again from zero"
            ),
            Note::NameTaken(path) => format!(
                "fetchpar: {url}: note: {} appeared while this download ran (another fetchpar \
                 run?), so it was saved beside it",
                path.display()
            ),
            Note::NameHeld { held, saved } => format!(
                "fetchpar: {url}: note: {} was already there beside its .part (an interrupted \
                 --overwrite run leaves both): the download was saved beside it as {}, the file \
                 under the name left as it was; move the new one over it to replace it",
                held.display(),
                saved.display()
            ),
            Note::OthersPart(part) => format!(
                "fetchpar: {url}: note: {} has no sidecar naming this URL, so it is not resumed: \
                 left as it is, the URL goes beside it",
                part.display()
            ),
            Note::NotTheServers(path) => format!(
                "fetchpar: {url}: note: {} is not this URL's file: left as it is, the URL goes \
                 beside it",
                path.display()
            ),
            Note::NoLastModified => {
                self.said_no_last_modified = true;
                format!(
                    "fetchpar: {url}: warning: the server sends no usable Last-Modified (none, or \
                     not an HTTP date), so -N cannot tell whether files changed: downloading \
                     them again (said once)"
                )
            }
        };
        self.progress.note(&line);
    }

    fn saved(&mut self, id: usize, done: &UrlOutcome) {
        self.tally.saved += 1;
        let Some(path) = &done.path else { return };
        self.progress.finished(id, done.bytes, || {
            let retried = match done.retries {
                0 => String::new(),
                1 => ", after 1 retry".to_string(),
                n => format!(", after {n} retries"),
            };
            Some(format!(
                "saved {} ({} in {}{retried})",
                path.display(),
                indicatif::HumanBytes(done.bytes),
                crate::units::format_duration(done.elapsed)
            ))
        });
        self.write(|out| out.path(path));
    }

    fn failed(&mut self, id: usize, done: &UrlOutcome, described: String) {
        let line = format!("{}: {described}", done.url.as_deref().unwrap_or_default());
        self.progress.finished(id, done.bytes, || None);
        // Downloads stopped by our own Ctrl-C are summed up once, not each shouted.
        let hushed = self.show.quiet || self.stdout_closed || self.stdout_failed;
        if self.show.errors && !(done.interrupted && hushed) {
            self.progress.error(&format!("fetchpar: {line}"));
        }
        self.tally.record_failure(line);
    }

    fn invalid(&mut self, done: UrlOutcome, origin: Origin) {
        self.write(|out| out.json(&UrlRecord::of(&done)));
        self.tally.invalid += 1;
        let reason = done.error.as_deref().unwrap_or_default();
        let line = match &done.url {
            None => format!("{origin}: {reason}"),
            Some(text) => format!("{origin}: {text}: {reason}"),
        };
        if self.show.errors {
            self.progress.error(&format!("fetchpar: {line}"));
        }
        self.tally.record_failure(line);
        self.keep(done);
    }

    fn duplicate(&mut self, url: String, origin: Origin, first: Origin) {
        let note = format!("fetchpar: {origin}: {url}: same URL as {first}, downloaded once");
        let done = UrlOutcome::duplicate(url, origin, first);
        self.write(|out| out.json(&UrlRecord::of(&done)));
        self.tally.duplicates += 1;
        if self.show.errors {
            self.progress.note(&note);
        }
        self.keep(done);
    }
}

/// How often, at most, the bytes received are added up for the estimate.
const OBSERVE_EVERY: Duration = Duration::from_millis(1);

/// The downloads under way: their byte counters, and whether each is receiving now (not
/// waiting to retry).
#[derive(Default)]
struct Flows {
    counters: HashMap<usize, (Arc<AtomicU64>, bool)>,
    receiving: usize,
    /// Bytes of the downloads that have ended.
    ended: u64,
    last: Option<Instant>,
}

impl Flows {
    fn start(&mut self, id: usize, counter: &Arc<AtomicU64>) {
        let was = self.counters.insert(id, (counter.clone(), true));
        if !was.is_some_and(|(_, receiving)| receiving) {
            self.receiving += 1;
        }
    }

    fn pause(&mut self, id: usize) {
        if let Some((_, receiving)) = self.counters.get_mut(&id) {
            if std::mem::take(receiving) {
                self.receiving -= 1;
            }
        }
    }

    fn end(&mut self, id: usize) {
        if let Some((counter, receiving)) = self.counters.remove(&id) {
            self.ended += counter.load(Ordering::Relaxed);
            self.receiving -= usize::from(receiving);
        }
    }

    fn received(&self) -> u64 {
        let running: u64 = self
            .counters
            .values()
            .map(|(counter, _)| counter.load(Ordering::Relaxed))
            .sum();
        self.ended + running
    }
}

/// A finished download as the trace keeps it (its exchanges move over).
fn row(url: &str, outcome: &mut Outcome) -> Row {
    let (status, failure) = match &outcome.result {
        Ok(saved) => (Some(saved.http_status), None),
        Err(f) => (f.http_status, Some(f.reason.to_string())),
    };
    Row {
        url: url.to_string(),
        phases: outcome.phases,
        bytes: outcome.bytes,
        status,
        retries: outcome.retries,
        failure,
        exchanges: std::mem::take(&mut outcome.exchanges),
    }
}

/// What the estimate needs of one finished download.
fn sample<'a>(url: &'a str, phases: &Phases, bytes: u64, run_start: Instant) -> Sample<'a> {
    let start = Phases::offset(run_start, phases.headers).unwrap_or_default();
    let end = Phases::offset(run_start, phases.body_end).unwrap_or(start);
    Sample {
        host: estimate::host_of(url),
        wait: phases.first_byte(),
        body: (start, end),
        bytes,
    }
}

impl Sink for Reporter {
    fn event(&mut self, event: Event) {
        match event {
            Event::Started {
                id,
                path,
                total,
                counter,
                ..
            } => {
                self.flows.start(id, &counter);
                self.watch(false);
                self.progress.started(id, &path, total, counter);
            }
            Event::Retrying {
                id,
                url,
                wait,
                reason,
            } => {
                self.pauses.add(self.started.elapsed(), wait);
                self.flows.pause(id);
                self.watch(false);
                self.progress.retrying(id, &url, wait, &reason);
            }
            Event::Finished {
                id,
                url,
                origin,
                outcome,
            } => self.finished(id, url, origin, outcome),
            Event::Invalid(invalid) => {
                let origin = invalid.origin;
                self.invalid(UrlOutcome::invalid(invalid), origin);
            }
            Event::Warning(warning) => {
                if self.show.errors {
                    self.progress.note(&format!(
                        "fetchpar: {}: warning: {}",
                        warning.origin, warning.message
                    ));
                }
            }
            Event::Duplicate { url, origin, first } => self.duplicate(url, origin, first),
            Event::NotStarted { url, origin } => {
                // Counted in the summary's `not_started` (see `close`); here only its record.
                let done = UrlOutcome::not_started(url, origin);
                self.write(|out| out.json(&UrlRecord::of(&done)));
                self.keep(done);
            }
            Event::Note(text) => {
                if self.show.errors {
                    self.progress.note(&format!("fetchpar: note: {text}"));
                }
            }
        }
    }

    fn tick(&mut self) {
        // A reader gone while there was nothing to print stops the run now, not at the next
        // path: the downloads under way stop at their next chunk, as after a failed write.
        let writing = self.show.records && !(self.stdout_closed || self.stdout_failed);
        if writing && self.stdout.reader_gone() {
            self.stdout_closed = true;
            self.cancel.store(true, Ordering::SeqCst);
        }
        self.watch(true);
        self.progress.tick();
    }
}
