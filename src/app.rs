//! The flows behind the command line and the library API: a plain download run, `--compare`
//! and `--demo`.
//!
//! What they promise (see the crate docs for the whole list):
//! - every flow resolves its resources (output directory, input list, HTTP client) before the
//!   first download, so that a usage or input error fails with nothing started (exit 2);
//! - a run that is interrupted or whose stdout goes away still totals what it did, and says so
//!   once, on stderr, after the last record;
//! - a run only prints when asked: the binary asks, an embedded [`crate::Run`] does not by
//!   default; every stderr line goes through [`crate::report::to_stderr`], which never panics.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cli::{Config, Mode};
use crate::client::build_client;
use crate::download::split::Split;
use crate::download::Fetcher;
use crate::exit::ExitCode;
use crate::input::{Inputs, Item};
use crate::modes::{Format, ProgressMode};
use crate::naming::Namer;
use crate::pool::Pool;
use crate::ratelimit::RateLimit;
use crate::redact;
use crate::report::output::{PassRecord, Stdout, SummaryRecord, UrlRecord};
use crate::report::progress::Progress;
use crate::report::reporter::{Report, Reporter, Show};
use crate::report::summary::{self, Caps, Sequential, Tally};
use crate::report::{har, timeline};
use crate::report::{to_stderr, Status, UrlOutcome};
use crate::select::{Selector, Verdict};
use crate::server::{self, Server};
use crate::trace::Trace;
use crate::transport::Client;

pub(crate) fn prepare_dir(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() {
        return probe_writable(Path::new("."), "the current directory");
    }
    // A file (or a dangling link) under the name: said as such, not as create_dir_all's "File
    // exists".
    if dir.symlink_metadata().is_ok() && !dir.is_dir() {
        anyhow::bail!("the output path {} is not a directory", dir.display());
    }
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the output directory {}", dir.display()))?;
    if !dir.is_dir() {
        anyhow::bail!("the output path {} is not a directory", dir.display());
    }
    probe_writable(dir, &format!("the output directory {}", dir.display()))
}

/// A directory that exists but takes no files (a read-only mount, no write permission) would
/// fail every URL after its request: one line and exit 2 before any request instead. Only
/// creating a file tells for sure (permission bits do not stop root; a read-only mount, ACLs
/// and security modules do), so one is made and removed at once.
fn probe_writable(dir: &Path, what: &str) -> Result<()> {
    crate::safefs::takes_files(dir).map_err(|e| anyhow::anyhow!("cannot write into {what}: {e}"))
}

/// How a flow ended: the exit status, and each input's outcome when they were kept.
pub(crate) struct Ended {
    pub(crate) code: ExitCode,
    pub(crate) outcomes: Vec<UrlOutcome>,
    pub(crate) tally: Tally,
}

impl Ended {
    fn code(code: ExitCode) -> Ended {
        Ended {
            code,
            outcomes: Vec::new(),
            tally: Tally {
                interrupted: code == ExitCode::Interrupted,
                ..Tally::default()
            },
        }
    }
}

/// One run of one flow: its settings, its cancel flag, and whether it may print.
pub(crate) struct Flow<'a> {
    pub(crate) config: &'a Config,
    pub(crate) cancel: &'a Arc<AtomicBool>,
    /// Records on stdout and lines on stderr, as the command line does; off when embedded.
    pub(crate) print: bool,
    /// Keep every input's outcome (embedded runs; never for an endless list).
    pub(crate) collect: bool,
}

impl Flow<'_> {
    /// The flow `config.mode` names, over the inputs the configuration names.
    pub(crate) fn run(&self) -> Result<Ended> {
        match self.config.mode {
            Mode::Download => {
                // The list first: a run that cannot read it makes no output directory.
                let inputs = Inputs::open(self.config.urls.clone(), self.config.list.as_ref())?;
                prepare_dir(&self.config.output_dir)?;
                self.download(inputs)
            }
            Mode::Compare => self.compare().map(Ended::code),
            Mode::Demo => self.demo().map(Ended::code),
        }
    }

    /// A note for a person: not with `-q`, never when embedded.
    fn say(&self, text: &str) {
        if self.print && self.config.progress != ProgressMode::Quiet {
            to_stderr(text);
        }
    }

    /// An error line: even with `-q`, never when embedded.
    fn shout(&self, text: &str) {
        if self.print {
            to_stderr(text);
        }
    }

    fn summary_record(&self, threaded: &Tally, sequential: Option<&Tally>) {
        if self.print {
            let stdout = Stdout {
                format: self.config.format,
            };
            // Already reported if it fails: the records before it are what went wrong.
            let _ = stdout.json(&SummaryRecord::new(threaded, sequential));
        }
    }

    /// `--har` and `--timeline`: the passes' requests and phases, written once they are all
    /// done, with `tally` (the last pass's, comparison included) as the page's heading. A
    /// failure to write is said, costs no download, and fails the run (`code` becomes 1): a
    /// script must not take a report that is not there for one that is.
    fn write_trace(&self, reports: &[&Report], tally: &Tally, code: ExitCode) -> ExitCode {
        let traces: Vec<&Trace> = reports.iter().filter_map(|r| r.trace.as_ref()).collect();
        let mut written = true;
        if let Some(path) = &self.config.har {
            if let Err(e) = har::write(path, &traces, self.config.download.overwrite) {
                written = false;
                self.shout(&format!(
                    "fetchpar: cannot write the HAR file {}: {}\n",
                    path.display(),
                    crate::report::plain(&e)
                ));
            }
        }
        if let Some(path) = &self.config.timeline {
            let heading = timeline::Heading {
                summary: summary::render(tally),
                basis: summary::basis(tally),
            };
            let replace = self.config.download.overwrite;
            if let Err(e) = timeline::write(path, &traces, &heading, replace) {
                written = false;
                self.shout(&format!(
                    "fetchpar: cannot write the timeline {}: {}\n",
                    path.display(),
                    crate::report::plain(&e)
                ));
            }
        }
        code.or_failed(!written)
    }

    /// A pass's client, its waits ended by this run's cancel flag.
    fn client(&self) -> Result<Client> {
        build_client(self.config, self.cancel)
    }

    pub(crate) fn download(&self, inputs: Inputs) -> Result<Ended> {
        let client = self.client()?;
        self.note_shard();
        let pass = Pass {
            flow: self,
            config: self.config,
            jobs: self.config.jobs,
            dir: &self.config.output_dir,
            records: self.print,
            errors: self.print,
            label: "",
        };
        let report = pass.run(&client, inputs);
        let code = self.write_trace(&[&report], &report.tally, ExitCode::of(&report.end));
        if !report.end.stdout_closed {
            self.summary_record(&report.tally, None);
            self.say(&summary::render(&report.tally));
        }
        Ok(Ended {
            code,
            outcomes: report.outcomes,
            tally: report.tally,
        })
    }

    /// A sharded run downloads a fraction of the list on purpose; say so, or it looks like a bug.
    fn note_shard(&self) {
        if let Some(shard) = self.config.shard {
            self.say(&format!(
                "fetchpar: shard {shard}: downloading only the URLs of this shard \
                 (invalid lines are reported by shard 1)\n"
            ));
        }
    }

    fn compare(&self) -> Result<ExitCode> {
        // Both passes need the same list, so this mode reads it all first.
        let inputs = Inputs::open(self.config.urls.clone(), self.config.list.as_ref())?;
        prepare_dir(&self.config.output_dir)?;
        let Some(items) = read_all(inputs, self.cancel) else {
            self.say("fetchpar: interrupted while reading the URL list; nothing downloaded\n");
            return Ok(ExitCode::Interrupted);
        };
        self.note_shard();
        if !self.config.sweep.is_empty() {
            return self.sweep(&items, &self.config.sweep);
        }
        self.compare_items(&items, &self.config.output_dir, self.print)
    }

    /// `--compare=LIST`: one pass per worker count, each with a fresh client, all but the last
    /// into a temporary directory of its own; then one row per count.
    fn sweep(&self, items: &[Item], counts: &[usize]) -> Result<ExitCode> {
        let mut passes: Vec<Tally> = Vec::with_capacity(counts.len());
        let mut reports: Vec<Report> = Vec::with_capacity(counts.len());
        for (i, &jobs) in counts.iter().enumerate() {
            let is_last = i + 1 == counts.len();
            let scratch = tempfile::Builder::new()
                .prefix("fetchpar-compare-")
                .tempdir()
                .context("cannot create a temporary directory for a --compare pass")?;
            let label = summary::plural(jobs, "worker", "workers");
            let report = Pass {
                flow: self,
                config: self.config,
                jobs,
                dir: if is_last {
                    &self.config.output_dir
                } else {
                    scratch.path()
                },
                records: is_last && self.print,
                errors: is_last && self.print,
                label: &label,
            }
            .run(&self.client()?, Vec::from(items).into_iter());
            passes.push(report.tally.clone());
            if report.end.stdout_closed {
                // Quietly, but 0 only if this last pass saved every URL.
                return Ok(ExitCode::of(&report.end));
            }
            if report.tally.interrupted && !is_last {
                return Ok(self.scratch_interrupted(items, self.print));
            }
            if report.tally.interrupted {
                // As after any Ctrl-C: the summary, last on stdout too.
                self.summary_record(&report.tally, None);
                self.say(&summary::render(&report.tally));
                return Ok(ExitCode::Interrupted);
            }
            reports.push(report);
        }
        let (Some(first), Some(report)) = (passes.first(), reports.last_mut()) else {
            return Ok(ExitCode::Ok);
        };
        // Only a one-worker first pass is a measured "one after another".
        report.tally.sequential = (first.jobs == 1).then_some(Sequential::Measured(first.wall));
        let (tally, end) = (report.tally.clone(), report.end);
        let code = self.write_trace(
            &reports.iter().collect::<Vec<_>>(),
            &tally,
            ExitCode::of(&end),
        );
        self.sweep_records(&passes);
        self.summary_record(&tally, (first.jobs == 1).then_some(first));
        self.say(&format!(
            "{}\n{}",
            summary::render(&tally),
            summary::render_sweep(&passes)
        ));
        Ok(code)
    }

    /// Ctrl-C in a `--compare` pass into a temporary directory: its counts and its kept parts
    /// are of files now gone, so the one line says what is true: nothing was saved. With
    /// `--json`, the records a Ctrl-C owes: every URL's (not started, as the pass into the
    /// output directory never began; a duplicate or invalid line as ever) and the summary.
    fn scratch_interrupted(&self, items: &[Item], records: bool) -> ExitCode {
        self.say(
            "fetchpar: interrupted in a --compare pass, which downloads into a temporary folder \
             (now removed): nothing was saved\n",
        );
        if !records || self.config.format != Format::Json {
            return ExitCode::Interrupted;
        }
        let stdout = Stdout {
            format: self.config.format,
        };
        let mut selector = Selector::new(self.config.shard);
        let mut tally = Tally {
            jobs: self.config.jobs,
            interrupted: true,
            ..Tally::default()
        };
        for item in items {
            let done = match item {
                Item::Entry(entry) => {
                    let url = redact::url(&entry.url);
                    match selector.select(entry) {
                        Verdict::Download => UrlOutcome::not_started(url, entry.origin),
                        Verdict::Duplicate(first) => {
                            UrlOutcome::duplicate(url, entry.origin, first)
                        }
                        Verdict::Elsewhere => continue,
                    }
                }
                Item::Invalid(invalid) if selector.reports_invalid() => {
                    UrlOutcome::invalid(invalid.clone())
                }
                Item::Invalid(_) | Item::Warning(_) => continue,
            };
            tally.not_started += usize::from(done.status == Status::NotStarted);
            tally.duplicates += usize::from(done.status == Status::Duplicate);
            tally.invalid += usize::from(done.status == Status::Invalid);
            // A reader gone: the run is over anyway, and a closed stdout is never shouted.
            if stdout.json(&UrlRecord::of(&done)).is_err() {
                return ExitCode::Interrupted;
            }
        }
        let _ = stdout.json(&SummaryRecord::new(&tally, None));
        ExitCode::Interrupted
    }

    fn sweep_records(&self, passes: &[Tally]) {
        let (true, Some(first)) = (self.print, passes.first()) else {
            return;
        };
        let stdout = Stdout {
            format: self.config.format,
        };
        for pass in passes {
            let _ = stdout.json(&PassRecord::new(pass, first));
        }
    }

    /// Runs `items` with one worker into a temporary directory, then with `config.jobs` into
    /// `dir`, each with a fresh client, and prints both summaries' comparison.
    fn compare_items(&self, items: &[Item], dir: &Path, records: bool) -> Result<ExitCode> {
        let scratch = tempfile::Builder::new()
            .prefix("fetchpar-compare-")
            .tempdir()
            .context("cannot create a temporary directory for the sequential pass")?;
        let sequential = Pass {
            flow: self,
            config: self.config,
            jobs: 1,
            dir: scratch.path(),
            records: false,
            errors: false,
            label: "sequential",
        }
        .run(&self.client()?, Vec::from(items).into_iter());
        drop(scratch);
        if sequential.tally.interrupted {
            return Ok(self.scratch_interrupted(items, records));
        }
        let mut threaded = Pass {
            flow: self,
            config: self.config,
            jobs: self.config.jobs,
            dir,
            records,
            errors: self.print,
            label: "threaded",
        }
        .run(&self.client()?, Vec::from(items).into_iter());
        // The headline compares the two measured walls, as the table below it does; unless
        // Ctrl-C cut this pass short: the one-worker wall, of the whole list, is not its match,
        // and would show a speedup the run cannot back (the estimate of a plain run stands).
        let stopped = threaded.tally.interrupted;
        if !stopped {
            threaded.tally.sequential = Some(Sequential::Measured(sequential.tally.wall));
        }
        let code = self.write_trace(
            &[&sequential, &threaded],
            &threaded.tally,
            ExitCode::of(&threaded.end),
        );
        if threaded.end.stdout_closed {
            // Quietly, but 0 only if every URL was saved.
            return Ok(code);
        }
        let measured = (!stopped).then_some(&sequential.tally);
        if records {
            self.summary_record(&threaded.tally, measured);
        }
        let table = measured.map_or_else(String::new, |sequential| {
            format!("\n{}", summary::render_compare(sequential, &threaded.tally))
        });
        self.say(&format!("{}{table}", summary::render(&threaded.tally)));
        Ok(code)
    }

    fn demo(&self) -> Result<ExitCode> {
        let files = server::generated_files(DEMO_FILES, DEMO_MIN, DEMO_MAX);
        let expected: HashMap<String, Arc<[u8]>> = files
            .iter()
            .map(|(path, body)| (path.trim_start_matches('/').to_string(), body.clone()))
            .collect();
        let server = Server::with_files(files.iter().cloned().collect(), DEMO_DELAY)
            .context("cannot start the demo server on 127.0.0.1")?;
        let mut urls: Vec<String> = files.iter().map(|(path, _)| server.url(path)).collect();
        urls.sort();
        let items: Vec<Item> = Inputs::from_parts(urls, None).collect();
        let out = tempfile::Builder::new()
            .prefix("fetchpar-demo-")
            .tempdir()
            .context("cannot create a temporary directory for the demo")?;
        self.say(&format!(
            "fetchpar demo: {DEMO_FILES} files of {}–{} KiB from a local server ({}) that waits \
             {} before each response, as a distant server would.\n\
             Downloading them once with 1 worker, then with {} workers…\n\n",
            DEMO_MIN / 1024,
            DEMO_MAX / 1024,
            server.addr(),
            crate::units::format_duration(DEMO_DELAY),
            self.config.jobs
        ));
        let status = self.compare_items(&items, out.path(), false)?;
        if status != ExitCode::Ok {
            return Ok(status);
        }
        match verify_demo(out.path(), &expected) {
            Ok(n) => {
                self.say(&format!(
                    "\nAll {n} files checked byte for byte. \
                     Try it on your own list: fetchpar --compare -i urls.txt -j 8\n"
                ));
                Ok(ExitCode::Ok)
            }
            Err(e) => {
                self.shout(&format!(
                    "fetchpar: demo files differ from what was served: {e:#}\n"
                ));
                Ok(ExitCode::Failed)
            }
        }
    }
}

/// Reads the whole list on a thread of its own, so that Ctrl-C is honoured even while a
/// producer is still writing to our stdin; `None` when interrupted.
fn read_all(inputs: Inputs, cancel: &AtomicBool) -> Option<Vec<Item>> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    // Detached: a read of stdin cannot be interrupted, and the process exits without it.
    let _reader = std::thread::Builder::new()
        .name("fetchpar-list".into())
        .spawn(move || {
            let _ = tx.send(inputs.collect::<Vec<Item>>());
        })
        .ok()?;
    loop {
        match rx.recv_timeout(crate::pool::TICK) {
            Ok(items) => return Some(items),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) if !cancel.load(Ordering::SeqCst) => {
            }
            Err(_) => return None,
        }
    }
}

/// Files the demo serves, their size range, and the delay before each response.
const DEMO_FILES: usize = 24;
const DEMO_MIN: usize = 200 * 1024;
const DEMO_MAX: usize = 400 * 1024;
const DEMO_DELAY: Duration = Duration::from_millis(150);

fn verify_demo(dir: &Path, expected: &HashMap<String, Arc<[u8]>>) -> Result<usize> {
    for (name, body) in expected {
        let got = fs::read(dir.join(name)).with_context(|| format!("{name} is missing"))?;
        if got[..] != body[..] {
            anyhow::bail!("{name} has different bytes");
        }
    }
    Ok(expected.len())
}

/// One run of the pool over a list, with its own namer and display.
struct Pass<'a> {
    flow: &'a Flow<'a>,
    config: &'a Config,
    jobs: usize,
    dir: &'a Path,
    /// Records on stdout.
    records: bool,
    /// Failures and notes on stderr.
    errors: bool,
    label: &'a str,
}

impl Pass<'_> {
    fn run<I>(&self, client: &Client, inputs: I) -> Report
    where
        I: Iterator<Item = Item> + Send + 'static,
    {
        let cancel = self.flow.cancel;
        let settings = &self.config.download;
        let namer = Arc::new(Namer::new(self.dir, settings.overwrite));
        let split = Split::new(settings.split);
        let rate = settings.limit_rate.map(RateLimit::new);
        let queued = Arc::new(AtomicUsize::new(0));
        let read_all = Arc::new(AtomicBool::new(false));
        let pool = Pool {
            jobs: self.jobs,
            fetcher: Fetcher::new(settings, client, &namer, cancel, &split, rate.as_ref()),
            cancel,
            queued: &queued,
            read_all: &read_all,
            shard: self.config.shard,
        };
        let mut reporter = self.reporter(&queued);
        let peak = pool.run(inputs, &mut reporter);
        let mut report = reporter.close(read_all.load(Ordering::SeqCst));
        report.tally.peak = peak;
        for note in split.notes().into_iter().filter(|_| self.errors) {
            self.flow.say(&format!("fetchpar: {note}\n"));
        }
        report
    }

    fn reporter(&self, queued: &Arc<AtomicUsize>) -> Reporter {
        let config = self.config;
        let progress = if self.flow.print {
            config.progress
        } else {
            ProgressMode::Quiet
        };
        let show = Show {
            records: self.records,
            errors: self.errors,
            quiet: progress == ProgressMode::Quiet,
            collect: self.flow.collect,
            skip_existing: config.download.skip_existing,
            overwrite: config.download.overwrite,
        };
        let reporter = Reporter::new(
            Progress::new(progress, config.colour, queued.clone(), self.label),
            self.jobs,
            show,
            Stdout {
                format: config.format,
            },
            self.flow.cancel.clone(),
            queued.clone(),
        )
        .caps(Caps {
            per_host: Some(config.download.per_host).filter(|&n| n > 0),
            limit_rate: config.download.limit_rate,
        });
        if config.download.trace {
            reporter.keep_trace()
        } else {
            reporter
        }
    }
}
