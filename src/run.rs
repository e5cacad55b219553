//! The library API: a run built in code, given URLs, giving back each outcome.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::app::{Ended, Flow};
use crate::cli::{Cli, Config};
use crate::exit::ExitCode;
use crate::input::Inputs;
use crate::report::{to_stderr, UrlOutcome};

/// A download run: the settings of the command line, built in code, and a cancel flag.
///
/// [`Run::new`] starts from the command line's defaults; [`Run::with_args`] reads the same flags
/// as the command line (`["--retries", "0", "-H", "X-Token: 1"]`), and the builder methods set the
/// common ones. A setting that is not valid is reported by [`Run::download`], as an [`Error`],
/// before anything is downloaded.
///
/// An embedded run prints nothing (unless [`Run::print`] asks it to), installs no signal
/// handler, and never ends the process: it returns when every URL is done, or soon after its
/// cancel flag is set.
#[derive(Debug)]
pub struct Run {
    config: Result<Config, String>,
    cancel: Arc<AtomicBool>,
    print: bool,
}

impl Default for Run {
    fn default() -> Run {
        Run::new()
    }
}

impl Run {
    /// A run with the command line's defaults: 8 workers, into the current directory.
    pub fn new() -> Run {
        Run::with_args(std::iter::empty::<&str>())
    }

    /// A run with these command-line flags (no program name, no URLs: those go to
    /// [`Run::download`]). The environment is not consulted: no `FETCHPAR_SHARD`, no terminal.
    pub fn with_args<I, S>(args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args =
            std::iter::once(OsString::from("fetchpar")).chain(args.into_iter().map(Into::into));
        let config = match <Cli as clap::Parser>::try_parse_from(args) {
            Ok(cli) => cli.embedded(),
            Err(e) => Err(e.to_string().trim_end().to_string()),
        };
        Run::build(config)
    }

    /// A run of what the command line asked for (see [`Cli::into_config`]).
    pub fn from_config(config: Config) -> Run {
        Run::build(Ok(config))
    }

    fn build(config: Result<Config, String>) -> Run {
        Run {
            config,
            cancel: Arc::new(AtomicBool::new(false)),
            print: false,
        }
    }

    /// Downloads at once, from 1 to 1024.
    pub fn jobs(mut self, jobs: usize) -> Run {
        self.config = self.config.and_then(|mut c| {
            if !(1..=crate::cli::MAX_JOBS).contains(&jobs) {
                return Err(format!(
                    "the number of jobs must be from 1 to {}",
                    crate::cli::MAX_JOBS
                ));
            }
            c.jobs = jobs;
            Ok(c)
        });
        self
    }

    /// Where files go (created if missing).
    pub fn output_dir(mut self, dir: impl Into<PathBuf>) -> Run {
        let dir = dir.into();
        if let Ok(config) = &mut self.config {
            config.output_dir = dir;
        }
        self
    }

    /// Stops the run soon after `cancel` is set (by a signal handler, a timer, another thread):
    /// downloads stop at their next chunk or wait, keep their bytes in `NAME.part`, and the run
    /// returns with [`Finished::interrupted`] set.
    pub fn cancel_flag(mut self, cancel: Arc<AtomicBool>) -> Run {
        self.cancel = cancel;
        self
    }

    /// Whether to print as the command line does: records on stdout, progress, errors and the
    /// summary on stderr. Off by default.
    pub fn print(mut self, print: bool) -> Run {
        self.print = print;
        self
    }

    /// Downloads `urls` (each may be followed by an output name, as in a list file) and returns
    /// every input's outcome, in the order they finished.
    pub fn download<I, S>(&self, urls: I) -> Result<Finished, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let config = self.config()?;
        let urls: Vec<String> = urls.into_iter().map(Into::into).collect();
        let flow = self.flow(config, true);
        crate::app::prepare_dir(&config.output_dir).map_err(Error::from)?;
        let ended = flow.download(Inputs::from_parts(urls, None))?;
        Ok(Finished::from(ended))
    }

    /// Runs what the configuration names: its URLs and list, `--compare` or `--demo`. This is
    /// the command-line program; its outcomes are not kept (a list may be endless).
    pub fn execute(&self) -> Result<Finished, Error> {
        let config = self.config()?;
        Ok(Finished::from(self.flow(config, false).run()?))
    }

    fn config(&self) -> Result<&Config, Error> {
        self.config.as_ref().map_err(|message| Error {
            message: message.clone(),
        })
    }

    fn flow<'a>(&'a self, config: &'a Config, collect: bool) -> Flow<'a> {
        Flow {
            config,
            cancel: &self.cancel,
            print: self.print,
            collect,
        }
    }
}

/// What a run did.
#[derive(Debug)]
#[non_exhaustive]
pub struct Finished {
    /// Each input's outcome, in the order they finished (empty for [`Run::execute`]).
    pub outcomes: Vec<UrlOutcome>,
    /// The cancel flag stopped the run: some URLs may not have been started.
    pub interrupted: bool,
    /// Files saved (not counting those already complete).
    pub saved: usize,
    /// Downloads that failed, and inputs that were not URLs.
    pub failed: usize,
    exit: ExitCode,
}

impl Finished {
    /// What the command line exits with for this run.
    pub fn exit_code(&self) -> ExitCode {
        self.exit
    }
}

impl From<Ended> for Finished {
    fn from(ended: Ended) -> Finished {
        Finished {
            outcomes: ended.outcomes,
            interrupted: ended.tally.interrupted,
            saved: ended.tally.saved,
            failed: ended.tally.failed,
            exit: ended.code,
        }
    }
}

/// A usage or input error: a bad setting, an output directory that cannot be made, a list file
/// that cannot be read. Nothing was downloaded.
#[derive(Debug)]
pub struct Error {
    message: String,
}

impl Error {
    /// Prints `fetchpar: MESSAGE` on stderr (a closed stderr is ignored) and returns the exit
    /// status of a usage error.
    pub fn report(&self) -> ExitCode {
        to_stderr(&format!("fetchpar: {}\n", self.message));
        ExitCode::Usage
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Error {
        Error {
            message: format!("{e:#}"),
        }
    }
}

impl From<String> for Error {
    fn from(message: String) -> Error {
        Error { message }
    }
}
