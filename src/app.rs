//! The flows behind the command line: a plain download run, `--compare` and `--demo`.
//!
//! Each flow resolves its resources (output directory, input list, HTTP client) before the first
//! download, so that a usage or input error exits 2 with nothing started.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cli::{Cli, Config, Mode, ProgressMode};
use crate::client::build_client;
use crate::completions;
use crate::download::{Failure, Fetcher, Outcome};
use crate::input::{Inputs, Item, Origin};
use crate::naming::{self, Namer};
use crate::output::{Stdout, SummaryRecord, UrlRecord};
use crate::pool::{Event, Pool, Sink};
use crate::progress::{to_stderr, Progress};
use crate::server::{self, Server};
use crate::split::Split;
use crate::summary::{self, Tally};
use crate::transport::Client;

/// Exit statuses, as DESIGN.md promises them.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_INTERRUPTED: i32 = 130;

/// The whole program; returns the exit status.
pub fn main() -> i32 {
    use clap::Parser;
    // clap prints its own usage errors and exits 2 (0 for --help and --version).
    let cli = Cli::parse();
    ignore_file_size_signal();
    if let Some(what) = cli.generate {
        return match completions::print(what) {
            Ok(()) => EXIT_OK,
            Err(e) => usage_error(&format!("cannot write the {what:?} output: {e}")),
        };
    }
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(msg) => return usage_error(&msg),
    };
    let cancel = Arc::new(AtomicBool::new(false));
    install_interrupt_handler(&cancel);
    let result = match config.mode {
        Mode::Download => download(&config, &cancel),
        Mode::Compare => compare(&config, &cancel),
        Mode::Demo => demo(&config, &cancel),
    };
    result.unwrap_or_else(|e| usage_error(&format!("{e:#}")))
}

fn usage_error(msg: &str) -> i32 {
    to_stderr(&format!("fetchpar: {msg}\n"));
    EXIT_USAGE
}

/// A write past RLIMIT_FSIZE (`ulimit -f`) raises SIGXFSZ, which kills the process by default,
/// with no summary and no cleanup. Ignored, the write fails with EFBIG instead, and that file
/// fails like any other write error while the run goes on.
fn ignore_file_size_signal() {
    #[cfg(unix)]
    // SAFETY: installing SIG_IGN for one signal, before any thread is started, touches no
    // Rust-visible state.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// First Ctrl-C: stop starting downloads and stop running ones at their next chunk.
/// Second Ctrl-C: leave at once.
fn install_interrupt_handler(cancel: &Arc<AtomicBool>) {
    let cancel = cancel.clone();
    let installed = ctrlc::set_handler(move || {
        if cancel.swap(true, Ordering::SeqCst) {
            std::process::exit(EXIT_INTERRUPTED);
        }
    });
    if let Err(e) = installed {
        to_stderr(&format!(
            "fetchpar: warning: Ctrl-C will stop at once, without a summary: {e}\n"
        ));
    }
}

fn prepare_dir(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the output directory {}", dir.display()))?;
    if !dir.is_dir() {
        anyhow::bail!("the output path {} is not a directory", dir.display());
    }
    Ok(())
}

fn exit_status(tally: &Tally) -> i32 {
    if tally.interrupted {
        EXIT_INTERRUPTED
    } else if tally.failed > 0 {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

fn download(config: &Config, cancel: &Arc<AtomicBool>) -> Result<i32> {
    prepare_dir(&config.output_dir)?;
    let inputs = Inputs::open(config.urls.clone(), config.list.as_ref())?;
    let client = build_client(config, cancel)?;
    note_shard(config);
    let pass = Pass {
        config,
        jobs: config.jobs,
        dir: &config.output_dir,
        print_paths: true,
        show_errors: true,
        label: "",
    };
    let result = pass.run(&client, inputs, cancel);
    if result.stdout_closed {
        return Ok(EXIT_OK);
    }
    let stdout = Stdout {
        format: config.format,
    };
    // Already reported if it fails: the records before it are what went wrong.
    let _ = stdout.json(&SummaryRecord::new(&result.tally, None));
    if config.progress != ProgressMode::Quiet {
        to_stderr(&summary::render(&result.tally));
    }
    Ok(result.status())
}

/// A sharded run downloads a fraction of the list on purpose; say so, or it looks like a bug.
fn note_shard(config: &Config) {
    if let (Some(shard), false) = (config.shard, config.progress == ProgressMode::Quiet) {
        to_stderr(&format!(
            "fetchpar: shard {shard}: downloading only the URLs of this shard \
             (invalid lines are reported by shard 1)\n"
        ));
    }
}

fn compare(config: &Config, cancel: &Arc<AtomicBool>) -> Result<i32> {
    prepare_dir(&config.output_dir)?;
    // Both passes need the same list, so this mode reads it all first.
    let inputs = Inputs::open(config.urls.clone(), config.list.as_ref())?;
    let Some(items) = read_all(inputs, cancel) else {
        if config.progress != ProgressMode::Quiet {
            to_stderr("fetchpar: interrupted while reading the URL list; nothing downloaded\n");
        }
        return Ok(EXIT_INTERRUPTED);
    };
    note_shard(config);
    compare_items(config, &items, cancel, &config.output_dir, true)
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

/// Runs `items` with one worker into a temporary directory, then with `config.jobs` into `dir`,
/// each with a fresh client, and prints both summaries' comparison.
fn compare_items(
    config: &Config,
    items: &[Item],
    cancel: &Arc<AtomicBool>,
    dir: &Path,
    print_paths: bool,
) -> Result<i32> {
    let scratch = tempfile::Builder::new()
        .prefix("fetchpar-compare-")
        .tempdir()
        .context("cannot create a temporary directory for the sequential pass")?;
    let sequential = Pass {
        config,
        jobs: 1,
        dir: scratch.path(),
        print_paths: false,
        show_errors: false,
        label: "sequential",
    }
    .run(
        &build_client(config, cancel)?,
        Vec::from(items).into_iter(),
        cancel,
    );
    drop(scratch);
    if sequential.tally.interrupted {
        if config.progress != ProgressMode::Quiet {
            to_stderr(&summary::render(&sequential.tally));
        }
        return Ok(EXIT_INTERRUPTED);
    }
    let threaded = Pass {
        config,
        jobs: config.jobs,
        dir,
        print_paths,
        show_errors: true,
        label: "threaded",
    }
    .run(
        &build_client(config, cancel)?,
        Vec::from(items).into_iter(),
        cancel,
    );
    if threaded.stdout_closed {
        return Ok(EXIT_OK);
    }
    if print_paths {
        let stdout = Stdout {
            format: config.format,
        };
        let _ = stdout.json(&SummaryRecord::new(
            &threaded.tally,
            Some(&sequential.tally),
        ));
    }
    if config.progress != ProgressMode::Quiet {
        to_stderr(&format!(
            "{}\n{}",
            summary::render(&threaded.tally),
            summary::render_compare(&sequential.tally, &threaded.tally)
        ));
    }
    Ok(threaded.status())
}

/// Files the demo serves, their size range, and the delay before each response.
const DEMO_FILES: usize = 24;
const DEMO_MIN: usize = 200 * 1024;
const DEMO_MAX: usize = 400 * 1024;
const DEMO_DELAY: Duration = Duration::from_millis(150);

fn demo(config: &Config, cancel: &Arc<AtomicBool>) -> Result<i32> {
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
    if config.progress != ProgressMode::Quiet {
        to_stderr(&format!(
            "fetchpar demo: {DEMO_FILES} files of {}–{} KiB from a local server ({}) that waits {} \
             before each response, as a distant server would.\n\
             Downloading them once with 1 worker, then with {} workers…\n\n",
            DEMO_MIN / 1024,
            DEMO_MAX / 1024,
            server.addr(),
            summary::format_duration(DEMO_DELAY),
            config.jobs
        ));
    }
    let status = compare_items(config, &items, cancel, out.path(), false)?;
    if status != EXIT_OK {
        return Ok(status);
    }
    match verify_demo(out.path(), &expected) {
        Ok(n) => {
            if config.progress != ProgressMode::Quiet {
                to_stderr(&format!(
                    "\nAll {n} files checked byte for byte. \
                     Try it on your own list: fetchpar --compare -i urls.txt -j 8\n"
                ));
            }
            Ok(EXIT_OK)
        }
        Err(e) => {
            to_stderr(&format!(
                "fetchpar: demo files differ from what was served: {e:#}\n"
            ));
            Ok(EXIT_FAILED)
        }
    }
}

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
    config: &'a Config,
    jobs: usize,
    dir: &'a Path,
    print_paths: bool,
    show_errors: bool,
    label: &'a str,
}

struct PassResult {
    tally: Tally,
    stdout_closed: bool,
    stdout_failed: bool,
}

impl PassResult {
    fn status(&self) -> i32 {
        if self.stdout_failed {
            EXIT_FAILED
        } else {
            exit_status(&self.tally)
        }
    }
}

impl Pass<'_> {
    fn run<I>(&self, client: &Client, inputs: I, cancel: &Arc<AtomicBool>) -> PassResult
    where
        I: Iterator<Item = Item> + Send + 'static,
    {
        let namer = Namer::new(self.dir, self.config.overwrite);
        let split = Split::new(self.config.split);
        let queued = Arc::new(AtomicUsize::new(0));
        let pool = Pool {
            jobs: self.jobs,
            fetcher: Fetcher {
                client,
                namer: &namer,
                cancel,
                overwrite: self.config.overwrite,
                timeout: self.config.timeout,
                retry: self.config.retry,
                resume: self.config.resume,
                max_filesize: self.config.max_filesize,
                content_disposition: self.config.content_disposition,
                chunk: self.config.chunk_size,
                split: &split,
            },
            cancel,
            queued: &queued,
            shard: self.config.shard,
        };
        let mut reporter = Reporter {
            progress: Progress::new(
                self.config.progress,
                self.config.colour,
                queued.clone(),
                self.label,
            ),
            tally: Tally {
                jobs: self.jobs,
                ..Tally::default()
            },
            started: Instant::now(),
            print_paths: self.print_paths,
            stdout: Stdout {
                format: self.config.format,
            },
            show_errors: self.show_errors,
            quiet: self.config.progress == ProgressMode::Quiet,
            cancel: cancel.clone(),
            queued: queued.clone(),
            stdout_closed: false,
            stdout_failed: false,
            finished: 0,
            running: HashMap::new(),
        };
        pool.run(inputs, &mut reporter);
        reporter.close();
        if let Some(note) = split.note() {
            if self.show_errors && !reporter.quiet {
                eprintln!("fetchpar: {note}");
            }
        }
        PassResult {
            tally: reporter.tally,
            stdout_closed: reporter.stdout_closed,
            stdout_failed: reporter.stdout_failed,
        }
    }
}

/// The main thread's view of a pass: counts, prints paths, shows progress and errors.
struct Reporter {
    progress: Progress,
    tally: Tally,
    started: Instant,
    /// Whether this pass writes records on stdout (`--compare`'s sequential pass does not).
    print_paths: bool,
    stdout: Stdout,
    show_errors: bool,
    quiet: bool,
    cancel: Arc<AtomicBool>,
    queued: Arc<AtomicUsize>,
    /// The reader went away (`| head -1`): stop quietly.
    stdout_closed: bool,
    /// Writing failed otherwise (a full disk under `> results.jsonl`): stop, and say so.
    stdout_failed: bool,
    finished: usize,
    /// Downloads whose body is streaming, for reporting them if Ctrl-C has to leave them behind.
    running: HashMap<usize, Running>,
}

struct Running {
    url: String,
    origin: Origin,
    path: PathBuf,
    counter: Arc<AtomicU64>,
    since: Instant,
}

impl Reporter {
    /// Writes one record unless stdout is gone. Any write error stops the run: the records are
    /// the point of it. Downloads still running stop at their next chunk and keep their bytes in
    /// `NAME.part`, so nothing incomplete is ever left under a final name.
    fn write(&mut self, write: impl FnOnce(&Stdout) -> io::Result<()>) {
        if !self.print_paths || self.stdout_closed || self.stdout_failed {
            return;
        }
        match write(&self.stdout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                // The reader has what it wanted: like Ctrl-C, without the noise, exit 0.
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

    fn close(&mut self) {
        self.progress.clear();
        self.tally.wall = self.started.elapsed();
        if self.cancel.load(Ordering::SeqCst) {
            // A stdout that failed or closed also stops the run, but that is not an interrupt.
            self.tally.interrupted = !(self.stdout_failed || self.stdout_closed);
            self.tally.not_started = self
                .queued
                .load(Ordering::SeqCst)
                .saturating_sub(self.finished);
        }
    }
}

impl Sink for Reporter {
    fn event(&mut self, event: Event) {
        match event {
            Event::Started {
                id,
                url,
                origin,
                path,
                total,
                counter,
            } => {
                self.progress.started(id, &path, total, counter.clone());
                self.running.insert(
                    id,
                    Running {
                        url,
                        origin,
                        path,
                        counter,
                        since: Instant::now(),
                    },
                );
            }
            Event::Finished {
                id,
                url,
                origin,
                outcome,
            } => {
                self.running.remove(&id);
                self.write(|out| out.json(&UrlRecord::outcome(&url, origin, &outcome)));
                self.finished += 1;
                if matches!(&outcome.result, Err(f) if f.left.is_some()) {
                    self.tally.parts_kept += 1;
                }
                self.tally.bytes += outcome.bytes;
                match &outcome.result {
                    Ok(saved) if saved.skipped => {
                        self.tally.skipped += 1;
                        let line = format!("skipped {} (already complete)", saved.path.display());
                        self.progress.finished(id, 0, Some(&line));
                        self.write(|out| out.path(&saved.path));
                        return;
                    }
                    _ => {}
                }
                self.tally.downloads += 1;
                self.tally.busy += outcome.elapsed;
                match &outcome.result {
                    Ok(saved) => {
                        self.tally.saved += 1;
                        let retried = match outcome.retries {
                            0 => String::new(),
                            1 => ", after 1 retry".to_string(),
                            n => format!(", after {n} retries"),
                        };
                        let line = format!(
                            "saved {} ({} in {}{retried})",
                            saved.path.display(),
                            indicatif::HumanBytes(outcome.bytes),
                            summary::format_duration(outcome.elapsed)
                        );
                        self.progress.finished(id, outcome.bytes, Some(&line));
                        self.write(|out| out.path(&saved.path));
                    }
                    Err(failure) => {
                        let line = format!("{url}: {}", failure.describe());
                        self.progress.finished(id, outcome.bytes, None);
                        // Downloads stopped by our own Ctrl-C are summed up once, not each shouted.
                        let hushed = self.quiet || self.stdout_closed || self.stdout_failed;
                        if self.show_errors && !(failure.interrupted && hushed) {
                            self.progress.error(&format!("fetchpar: {line}"));
                        }
                        self.tally.record_failure(line);
                    }
                }
            }
            Event::Invalid(invalid) => {
                self.write(|out| out.json(&UrlRecord::invalid(&invalid)));
                self.tally.invalid += 1;
                let line = if invalid.text.is_empty() {
                    format!("{}: {}", invalid.origin, invalid.reason)
                } else {
                    format!("{}: {}: {}", invalid.origin, invalid.text, invalid.reason)
                };
                if self.show_errors {
                    self.progress.error(&format!("fetchpar: {line}"));
                }
                self.tally.record_failure(line);
            }
            Event::Duplicate { url, origin, first } => {
                self.write(|out| out.json(&UrlRecord::duplicate(&url, origin, first)));
                self.tally.duplicates += 1;
                if self.show_errors {
                    self.progress.note(&format!(
                        "fetchpar: {origin}: {url}: same URL as {first}, downloaded once"
                    ));
                }
            }
        }
    }

    fn tick(&mut self) {
        self.progress.tick();
    }

    fn abandon(&mut self) -> ! {
        // Downloads still stuck in a read never report back: report them as interrupted here,
        // with what they left on disk, exactly as if they had stopped at their next chunk.
        let stuck: Vec<usize> = self.running.keys().copied().collect();
        for id in stuck {
            let Some(run) = self.running.remove(&id) else {
                continue;
            };
            let bytes = run.counter.load(Ordering::Relaxed);
            let part = naming::part_path(&run.path);
            let outcome = Outcome {
                result: Err(Failure {
                    reason: "interrupted".into(),
                    http_status: None,
                    left: (bytes > 0 || part.exists()).then_some(part),
                    interrupted: true,
                }),
                bytes,
                elapsed: run.since.elapsed(),
                retries: 0,
            };
            self.event(Event::Finished {
                id,
                url: run.url,
                origin: run.origin,
                outcome,
            });
        }
        self.close();
        // Scripts get their summary record even when stuck downloads are left behind.
        let record = SummaryRecord::new(&self.tally, None);
        self.write(|out| out.json(&record));
        if !self.quiet && !self.stdout_closed {
            to_stderr(&summary::render(&self.tally));
        }
        let status = if self.stdout_closed {
            EXIT_OK
        } else if self.stdout_failed {
            EXIT_FAILED
        } else {
            EXIT_INTERRUPTED
        };
        std::process::exit(status)
    }
}
