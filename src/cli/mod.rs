//! The command line: one derive struct whose doc comments are the help text, validated value
//! types (in `values`), and [`Config`], the settings resolved once from the raw flags. The two functions that
//! touch the process's signals are here, for the binary: the library never calls them.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::download;
use crate::exit::ExitCode;
use crate::input::ListSource;
use crate::modes::{Format, ProgressMode};
use crate::proxy::Proxies;
use crate::report::to_stderr;
use crate::request::{Credentials, Header, ProxyUrl, RequestOptions, UserAgent};
use crate::retry::Policy;
use crate::select::{Shard, ShardSpec, SHARD_ENV};

mod values;

use values::chunk_size;
pub use values::Size;
pub(crate) use values::{Counts, Jobs, Seconds, Split, Unquoted};

/// Most worker threads accepted: beyond this the machine, not the network, is the limit.
pub(crate) const MAX_JOBS: usize = 1024;

/// Workers when `-j` is not given.
pub(crate) const DEFAULT_JOBS: usize = 8;

/// Download many URLs concurrently, safely, and see what the concurrency bought.
///
/// URLs come from the arguments, from a list file (-i FILE), or one per line on stdin. Each saved
/// file's path is printed on stdout; progress, errors and the timing summary go to stderr.
#[derive(Debug, Parser)]
#[command(name = "fetchpar", version, max_term_width = 100)]
#[command(
    after_help = "Exit status: 0 all saved, 1 some URL failed, 2 usage or input error, \
                        130 interrupted.\nSee it work with no network: fetchpar --demo"
)]
pub struct Cli {
    /// URLs to download (http or https)
    #[arg(value_name = "URL")]
    pub(crate) urls: Vec<String>,

    /// Number of downloads to run at once [default: 8]
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub(crate) jobs: Option<Jobs>,

    /// Directory to save into (created if missing)
    #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
    pub(crate) output_dir: Option<PathBuf>,

    /// Read URLs from FILE, one per line ('-' for stdin); blank lines and '#' comments are skipped.
    /// A line may be 'URL OUTPUT' to choose the path (relative to -o; ending in '/' for a folder)
    #[arg(short = 'i', long = "input-file", value_name = "FILE")]
    pub(crate) input_file: Option<PathBuf>,

    /// Longest wait for response headers, or for any single read of the body, in seconds
    #[arg(long, value_name = "SECS", default_value = "30")]
    pub(crate) timeout: Seconds,

    /// Longest wait to establish a connection, in seconds
    #[arg(long = "connect-timeout", value_name = "SECS", default_value = "10")]
    pub(crate) connect_timeout: Seconds,

    /// Replace existing files instead of saving beside them (photo~1.jpg, …)
    #[arg(long)]
    pub(crate) overwrite: bool,

    /// Resume NAME.part files left by an earlier run (Range + If-Range), and skip files that are
    /// already complete; with --overwrite, a file under the name that is not this one (an
    /// interrupted --overwrite run's old file) is replaced, not saved beside
    #[arg(short = 'c', long = "continue")]
    pub(crate) resume: bool,

    /// wget's -N: give saved files the server's Last-Modified time; ask about an existing file
    /// with If-Modified-Since and replace it (by rename, once complete) only if the server has
    /// a newer one, else report it unchanged
    #[arg(short = 'N', long)]
    pub(crate) timestamping: bool,

    /// Trust an existing file under the name without asking the server (reported as skipped);
    /// with -c, .part files are still resumed
    #[arg(long, conflicts_with = "overwrite")]
    pub(crate) skip_existing: bool,

    /// Retries per URL after a connection error, timeout, cut-off body, 408, 429 or 5xx
    #[arg(long, value_name = "N", default_value = "3")]
    pub(crate) retries: u32,

    /// Longest wait before a retry, in seconds (caps the backoff and the server's Retry-After)
    #[arg(long = "max-retry-wait", value_name = "SECS", default_value = "60")]
    pub(crate) max_retry_wait: Seconds,

    /// Refuse bodies larger than SIZE (e.g. 500M): by Content-Length up front, else by counting
    #[arg(long = "max-filesize", value_name = "SIZE")]
    pub(crate) max_filesize: Option<Size>,

    /// Name files as the server's Content-Disposition header says (made safe), not by the URL
    #[arg(long = "content-disposition")]
    pub(crate) content_disposition: bool,

    /// How to show progress on stderr [auto: bars on a terminal, plain lines otherwise]
    #[arg(long, value_enum, value_name = "MODE", default_value = "auto")]
    pub(crate) progress: ProgressArg,

    /// No progress and no summary: only errors on stderr
    #[arg(short, long)]
    pub(crate) quiet: bool,

    /// Fetch each file over N connections at once, one byte range each, when its server
    /// supports ranges (falls back to one connection, with a note, when it does not)
    #[arg(long, value_name = "N", default_value = "1")]
    pub(crate) split: Split,

    /// Most downloads to one host (scheme, host, port) at once; 0 (the default) caps them by -j
    /// alone. New connections to a host are opened a few at a time either way, more as its
    /// responses come
    #[arg(
        long = "per-host",
        value_name = "N",
        default_value = "0",
        hide_default_value = true
    )]
    pub per_host: usize,

    /// Receive at most RATE bytes per second over the whole run, shared by all downloads (K, M:
    /// binary units, as in wget: 500K, 2M)
    #[arg(long = "limit-rate", value_name = "RATE")]
    pub limit_rate: Option<Size>,

    /// Bytes read from the network per step (K, M: binary units) [default: 8K]
    #[arg(long = "chunk-size", value_name = "SIZE", value_parser = chunk_size)]
    pub(crate) chunk_size: Option<Size>,

    /// Download the list twice, with 1 worker (into a temporary directory) and with -j workers,
    /// and compare the two; --compare=1,4,16,64 instead runs it once per worker count (the last
    /// pass into -o) and shows where more workers stopped paying
    #[arg(
        long,
        value_name = "COUNTS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "",
        conflicts_with = "demo"
    )]
    pub(crate) compare: Option<Counts>,

    /// Show the sequential-versus-threaded comparison against a built-in local server (no
    /// network needed)
    #[arg(long, conflicts_with_all = ["urls", "input_file", "output_dir"])]
    pub(crate) demo: bool,

    /// Write one JSON object per input on stdout as each finishes (JSON Lines), then a
    /// "type":"summary" object
    #[arg(long, conflicts_with_all = ["print0", "demo"], help_heading = "Scripting")]
    pub(crate) json: bool,

    /// Write the run's requests as an HTTP Archive (HAR 1.2), for browser developer tools and
    /// HAR viewers
    #[arg(long, value_name = "FILE", help_heading = "Scripting")]
    pub(crate) har: Option<PathBuf>,

    /// Draw the run as a picture: a self-contained HTML page (open it in a browser) with a
    /// waterfall of the downloads and their phases
    #[arg(long, value_name = "FILE", help_heading = "Scripting")]
    pub(crate) timeline: Option<PathBuf>,

    /// End each printed path with NUL instead of a newline (for xargs -0)
    #[arg(short = '0', long, conflicts_with = "demo", help_heading = "Scripting")]
    pub(crate) print0: bool,

    /// Download only shard K of N of the list, chosen by a stable hash of each URL. 'auto/N' or
    /// 'auto' take K (and N) from a Kubernetes Indexed Job or a Slurm job array [env:
    /// FETCHPAR_SHARD]
    #[arg(long, value_name = "K/N", help_heading = "Scripting")]
    pub(crate) shard: Option<ShardSpec>,

    /// Print completions for SHELL (or the man page, with 'man') on stdout and exit
    #[arg(
        long,
        value_enum,
        value_name = "SHELL",
        exclusive = true,
        help_heading = "Scripting"
    )]
    pub(crate) generate: Option<Generate>,

    /// Send this header, written 'Name: value', with every request to the origin of the URL
    /// given (repeatable; see --location-trusted)
    #[arg(
        short = 'H',
        long = "header",
        value_name = "HEADER",
        value_parser = Unquoted::<Header>::new(),
        help_heading = "Requests"
    )]
    pub(crate) headers: Vec<Header>,

    /// The User-Agent header [default: fetchpar/VERSION]
    #[arg(
        short = 'A',
        long = "user-agent",
        value_name = "TEXT",
        help_heading = "Requests"
    )]
    pub(crate) user_agent: Option<UserAgent>,

    /// Basic authentication for every request to the origin of the URL given, written
    /// USER:PASSWORD (credentials in a URL win for that URL)
    #[arg(
        long,
        value_name = "LOGIN",
        value_parser = Unquoted::<Credentials>::new(),
        help_heading = "Requests"
    )]
    pub(crate) user: Option<Credentials>,

    /// Send requests through this proxy: host:port (http), http://, https://, socks5:// or
    /// socks5h:// (default: http_proxy, https_proxy, all_proxy; NO_PROXY is always honoured, '*'
    /// meaning every host)
    #[arg(
        long,
        value_name = "URL",
        value_parser = Unquoted::<ProxyUrl>::new(),
        help_heading = "Requests"
    )]
    pub(crate) proxy: Option<ProxyUrl>,

    /// Send -H headers and credentials (--user, a URL's own) to every host a redirect leads to,
    /// not only to the origin of the URL given
    #[arg(long = "location-trusted", help_heading = "Requests")]
    pub(crate) location_trusted: bool,

    /// Also trust the CA certificates in this PEM file
    #[arg(long, value_name = "FILE", help_heading = "Requests")]
    pub(crate) cacert: Option<PathBuf>,

    /// Do not verify TLS certificates (anyone on the path could then read or alter downloads)
    #[arg(short = 'k', long, help_heading = "Requests")]
    pub(crate) insecure: bool,

    /// Speak HTTP/1.1 only: never offer HTTP/2, one connection per worker
    #[arg(long = "http1.1", help_heading = "Requests")]
    pub(crate) http1_1: bool,

    /// Check each file against this list of digests (sha256sum's `HEX  NAME`, `HEX *NAME` or BSD
    /// `SHA256 (NAME) = HEX`), by its path relative to -o
    #[arg(long, value_name = "FILE", help_heading = "Integrity")]
    pub(crate) checksums: Option<PathBuf>,

    /// Fail a file that has no expected checksum (from its list line or --checksums)
    #[arg(long, help_heading = "Integrity")]
    pub(crate) require_checksum: bool,

    /// Log in with the credentials a netrc file gives each host: $NETRC, else ~/.netrc
    /// (credentials in a URL, --user and -H Authorization win)
    #[arg(long, help_heading = "Requests")]
    pub(crate) netrc: bool,

    /// Like --netrc, with this netrc file
    #[arg(long = "netrc-file", value_name = "FILE", help_heading = "Requests")]
    pub(crate) netrc_file: Option<PathBuf>,
}

/// What `--generate` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Generate {
    Bash,
    Zsh,
    Fish,
    Powershell,
    Elvish,
    Man,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProgressArg {
    Auto,
    Bars,
    Lines,
    None,
}

/// Which flow to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Download,
    Compare,
    Demo,
}

/// Everything a run needs, validated: made by [`Cli::into_config`], run by
/// [`crate::Run::from_config`].
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) mode: Mode,
    pub(crate) jobs: usize,
    /// `--compare=LIST`: one pass per worker count; empty otherwise.
    pub(crate) sweep: Vec<usize>,
    /// Where files go; empty means the current directory (so printed paths stay short).
    pub(crate) output_dir: PathBuf,
    pub(crate) urls: Vec<String>,
    pub(crate) list: Option<ListSource>,
    /// What every download is asked to do (overwrite, timeout, retries, resume, limits,
    /// `--split`, `--chunk-size`).
    pub(crate) download: download::Settings,
    pub(crate) connect_timeout: Duration,
    pub(crate) progress: ProgressMode,
    /// Colour on stderr: only on a terminal, without NO_COLOR, and not with TERM=dumb.
    pub(crate) colour: bool,
    pub(crate) format: Format,
    pub(crate) request: RequestOptions,
    pub(crate) shard: Option<Shard>,
    /// `--har FILE`.
    pub(crate) har: Option<PathBuf>,
    /// `--timeline FILE`.
    pub(crate) timeline: Option<PathBuf>,
    /// `--http1.1`: never offer HTTP/2.
    pub(crate) http1_only: bool,
}

impl Cli {
    /// Resolves the flags against the environment (terminals and variables); a message for a
    /// usage error.
    pub fn into_config(self) -> Result<Config, crate::Error> {
        self.resolve_in(
            std::io::stdin().is_terminal(),
            std::io::stderr().is_terminal(),
            &|name| std::env::var(name).ok(),
        )
        .map_err(crate::Error::from)
    }

    /// `--generate`: prints the completions or the man page it asks for and returns the exit
    /// status; `None` when this is a download run.
    pub fn print_generated(&self) -> Option<ExitCode> {
        let what = self.generate?;
        Some(match crate::completions::print(what) {
            Ok(()) => ExitCode::Ok,
            Err(e) => crate::Error::from(format!("cannot write the {what:?} output: {e}")).report(),
        })
    }

    /// The configuration of an embedded run ([`crate::Run::with_args`]): the flags alone, with
    /// no terminal and no environment; URLs come later, so none is required here.
    pub(crate) fn embedded(self) -> Result<Config, String> {
        let (mode, list) = self.mode_and_list(true);
        self.build(mode, list, false, &|_| None)
    }

    #[cfg(test)]
    fn resolve(self, stdin_is_tty: bool, stderr_is_tty: bool) -> Result<Config, String> {
        self.resolve_in(stdin_is_tty, stderr_is_tty, &|_| None)
    }

    fn resolve_in(
        self,
        stdin_is_tty: bool,
        stderr_is_tty: bool,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, String> {
        let (mode, list) = self.mode_and_list(stdin_is_tty);
        if mode != Mode::Demo && self.urls.is_empty() && list.is_none() {
            return Err(
                "no URLs given: pass them as arguments, with -i FILE, or on stdin \
                        (or try fetchpar --demo)"
                    .into(),
            );
        }
        self.build(mode, list, stderr_is_tty, env)
    }

    /// Which flow, and where the list comes from (stdin when it is piped and nothing else is
    /// given).
    fn mode_and_list(&self, stdin_is_tty: bool) -> (Mode, Option<ListSource>) {
        let mode = if self.demo {
            Mode::Demo
        } else if self.compare.is_some() {
            Mode::Compare
        } else {
            Mode::Download
        };
        let list = match &self.input_file {
            Some(path) if path.as_os_str() == "-" => Some(ListSource::Stdin),
            Some(path) => Some(ListSource::File(path.clone())),
            None if self.urls.is_empty() && mode != Mode::Demo && !stdin_is_tty => {
                Some(ListSource::Stdin)
            }
            None => None,
        };
        (mode, list)
    }

    fn progress(&self, stderr_is_tty: bool) -> ProgressMode {
        match (self.quiet, self.progress) {
            (true, _) => ProgressMode::Quiet,
            (false, ProgressArg::None) => ProgressMode::None,
            (false, ProgressArg::Lines) => ProgressMode::Lines,
            (false, ProgressArg::Bars) => ProgressMode::Bars,
            (false, ProgressArg::Auto) if stderr_is_tty => ProgressMode::Bars,
            (false, ProgressArg::Auto) => ProgressMode::Lines,
        }
    }

    /// `--shard`, else the environment's `FETCHPAR_SHARD`.
    fn shard(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Shard>, String> {
        if let Some(spec) = self.shard {
            return spec
                .resolve(env)
                .map(Some)
                .map_err(|e| format!("--shard: {e}"));
        }
        let Some(v) = env(SHARD_ENV).filter(|v| !v.trim().is_empty()) else {
            return Ok(None);
        };
        let spec: ShardSpec = v.parse().map_err(|e| format!("{SHARD_ENV}: {e}"))?;
        spec.resolve(env)
            .map(Some)
            .map_err(|e| format!("{SHARD_ENV}: {e}"))
    }

    fn format(&self) -> Format {
        if self.json {
            Format::Json
        } else if self.print0 {
            Format::Print0
        } else {
            Format::Paths
        }
    }

    /// The `--har` and `--timeline` files (see [`crate::report::check_files`]); `-j` and a
    /// `--compare` list both say how many workers.
    fn check_reports_and_sweep(&self, sweep: &[usize]) -> Result<(), String> {
        let (har, timeline) = (self.har.as_deref(), self.timeline.as_deref());
        let output = self
            .output_dir
            .as_deref()
            .unwrap_or(std::path::Path::new(""));
        crate::report::check_files(har, timeline, output, self.overwrite)?;
        if !sweep.is_empty() && self.jobs.is_some() {
            return Err(
                "-j cannot be combined with --compare=LIST: the list gives the worker counts"
                    .into(),
            );
        }
        Ok(())
    }

    fn build(
        self,
        mode: Mode,
        list: Option<ListSource>,
        stderr_is_tty: bool,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, String> {
        let progress = self.progress(stderr_is_tty);
        let shard = self.shard(env)?;
        let sweep = self.compare.clone().unwrap_or_default().0;
        self.check_reports_and_sweep(&sweep)?;
        let format = self.format();
        let checksums = match &self.checksums {
            Some(path) => Some(std::sync::Arc::new(crate::sumfile::SumFile::open(path)?)),
            None => None,
        };
        let output_dir = match self.output_dir {
            Some(dir) if dir.as_os_str() != "." => dir,
            _ => PathBuf::new(),
        };
        let netrc = netrc(self.netrc, self.netrc_file.as_deref(), env)?;
        let proxies = Proxies::new(self.proxy.as_ref().map(|p| &p.0), env)?;
        let proxies = Arc::new(proxies);
        Ok(Config {
            mode,
            jobs: self.jobs.map_or(DEFAULT_JOBS, |j| j.0),
            sweep,
            output_dir,
            urls: self.urls,
            list,
            download: download::Settings {
                overwrite: self.overwrite,
                timeout: self.timeout.0,
                retry: Policy {
                    retries: self.retries,
                    max_wait: self.max_retry_wait.0,
                },
                resume: self.resume,
                max_filesize: self.max_filesize.map(|s| s.0),
                content_disposition: self.content_disposition,
                split: self.split.0,
                chunk: self.chunk_size.map_or(download::CHUNK, |s| s.0 as usize),
                per_host: self.per_host,
                limit_rate: self.limit_rate.map(|s| s.0),
                trace: self.har.is_some() || self.timeline.is_some(),
                checksums,
                require_checksum: self.require_checksum,
                timestamping: self.timestamping,
                skip_existing: self.skip_existing,
            },
            connect_timeout: self.connect_timeout.0,
            progress,
            colour: colour(stderr_is_tty, env),
            format,
            request: RequestOptions {
                headers: self.headers,
                user_agent: self.user_agent,
                user: self.user,
                proxies,
                cacert: self.cacert,
                insecure: self.insecure,
                location_trusted: self.location_trusted,
                netrc,
            },
            shard,
            har: self.har,
            timeline: self.timeline,
            http1_only: self.http1_1,
        })
    }
}

/// For the binary: a write past RLIMIT_FSIZE (`ulimit -f`) raises SIGXFSZ, which kills the
/// process by default, with no summary and no cleanup. Ignored, the write fails with EFBIG
/// instead, and that file fails like any other write error while the run goes on.
pub fn ignore_file_size_signal() {
    #[cfg(unix)]
    // SAFETY: installing SIG_IGN for one signal, before any thread is started, touches no
    // Rust-visible state.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// For the binary: the first Ctrl-C sets `cancel` (stop starting downloads, stop running ones
/// at their next chunk or wait); a second one leaves at once, with status 130.
pub fn interrupt_on_ctrl_c(cancel: &Arc<AtomicBool>) {
    let cancel = cancel.clone();
    let installed = ctrlc::set_handler(move || {
        if cancel.swap(true, Ordering::SeqCst) {
            // The bars are left as they are, but not the terminal's setting.
            crate::report::echo::restore();
            std::process::exit(ExitCode::Interrupted.code());
        }
    });
    if let Err(e) = installed {
        to_stderr(&format!(
            "fetchpar: warning: Ctrl-C will stop at once, without a summary: {e}\n"
        ));
    }
}

/// The netrc of `--netrc` / `--netrc-file`, read once; a file others can read is said once, here
/// on the main thread before any download.
fn netrc(
    wanted: bool,
    file: Option<&std::path::Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<std::sync::Arc<crate::netrc::Netrc>>, String> {
    let (path, required) = match (file, wanted) {
        (Some(path), _) => (path.to_path_buf(), true),
        (None, true) => match crate::netrc::default_path(env) {
            Some(path) => (path, env("NETRC").is_some()),
            None => return Ok(None),
        },
        (None, false) => return Ok(None),
    };
    let (netrc, warning) = crate::netrc::load(&path, required)?;
    if let Some(warning) = warning {
        to_stderr(&format!("fetchpar: warning: {warning}\n"));
    }
    Ok(Some(std::sync::Arc::new(netrc)))
}

/// The NO_COLOR convention (no-color.org): set and not empty means no colour; a dumb terminal
/// cannot show it; and a pipe or file should not get escape codes.
fn colour(stderr_is_tty: bool, env: &dyn Fn(&str) -> Option<String>) -> bool {
    stderr_is_tty
        && env("NO_COLOR").is_none_or(|v| v.is_empty())
        && env("TERM").is_none_or(|t| t != "dumb")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("fetchpar").chain(args.iter().copied()))
    }

    #[test]
    fn jobs_are_validated() {
        assert_eq!("8".parse::<Jobs>(), Ok(Jobs(8)));
        assert!("0".parse::<Jobs>().unwrap_err().contains("from 1 to"));
        assert!("x"
            .parse::<Jobs>()
            .unwrap_err()
            .contains("not a whole number"));
        assert!("100000".parse::<Jobs>().is_err());
        assert!(cli(&["-j", "0", "http://h/"]).is_err());
    }

    #[test]
    fn seconds_are_validated() {
        assert_eq!(
            "2.5".parse::<Seconds>(),
            Ok(Seconds(Duration::from_millis(2500)))
        );
        assert!("0".parse::<Seconds>().is_err());
        assert!("-1".parse::<Seconds>().is_err());
        assert!("NaN".parse::<Seconds>().is_err());
        assert!("soon".parse::<Seconds>().is_err());
        // Below a millisecond would become no time at all.
        let tiny = "1e-10".parse::<Seconds>().unwrap_err();
        assert!(tiny.contains("at least 0.001"), "{tiny}");
        assert!("0.0009".parse::<Seconds>().is_err());
        assert_eq!(
            "0.001".parse::<Seconds>(),
            Ok(Seconds(Duration::from_millis(1)))
        );
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!("4096".parse::<Size>(), Ok(Size(4096)));
        assert_eq!("512K".parse::<Size>(), Ok(Size(512 * 1024)));
        assert_eq!("10M".parse::<Size>(), Ok(Size(10 << 20)));
        assert_eq!("1.5G".parse::<Size>(), Ok(Size(3 << 29)));
        assert_eq!("2GiB".parse::<Size>(), Ok(Size(2 << 30)));
        assert_eq!("64 kb".parse::<Size>(), Ok(Size(64 * 1024)));
        assert!("0".parse::<Size>().is_err());
        assert!("ten".parse::<Size>().is_err());
        assert!("5X".parse::<Size>().is_err());
    }

    #[test]
    fn split_and_chunk_size_are_validated() {
        let c = cli(&["--split", "4", "--chunk-size", "64K", "http://h/"])
            .unwrap()
            .resolve(true, false)
            .unwrap();
        assert_eq!((c.download.split, c.download.chunk), (4, 64 * 1024));
        let c = cli(&["http://h/"]).unwrap().resolve(true, false).unwrap();
        assert_eq!(
            (c.download.split, c.download.chunk),
            (1, crate::download::CHUNK)
        );
        assert!(cli(&["--split", "0", "http://h/"]).is_err());
        assert!(cli(&["--split", "17", "http://h/"]).is_err());
        assert!(cli(&["--chunk-size", "100", "http://h/"]).is_err());
        assert!(cli(&["--chunk-size", "1G", "http://h/"]).is_err());
    }

    #[test]
    fn stdin_is_the_list_only_when_piped_and_nothing_else_given() {
        let c = cli(&[]).unwrap().resolve(false, false).unwrap();
        assert_eq!(c.list, Some(ListSource::Stdin));
        let c = cli(&["http://h/"]).unwrap().resolve(false, false).unwrap();
        assert_eq!(c.list, None);
        let err = cli(&[]).unwrap().resolve(true, false).unwrap_err();
        assert!(err.contains("no URLs given"));
        let c = cli(&["-i", "-"]).unwrap().resolve(true, false).unwrap();
        assert_eq!(c.list, Some(ListSource::Stdin));
    }

    #[test]
    fn progress_follows_the_terminal() {
        let c = cli(&["http://h/"]).unwrap().resolve(true, true).unwrap();
        assert_eq!(c.progress, ProgressMode::Bars);
        let c = cli(&["http://h/"]).unwrap().resolve(true, false).unwrap();
        assert_eq!(c.progress, ProgressMode::Lines);
        let c = cli(&["-q", "--progress", "bars", "http://h/"])
            .unwrap()
            .resolve(true, true)
            .unwrap();
        assert_eq!(c.progress, ProgressMode::Quiet);
    }

    #[test]
    fn demo_needs_no_urls_and_rejects_them() {
        let c = cli(&["--demo"]).unwrap().resolve(true, false).unwrap();
        assert_eq!(c.mode, Mode::Demo);
        assert!(cli(&["--demo", "http://h/"]).is_err());
    }

    #[test]
    fn reliability_flags_resolve() {
        let c = cli(&["http://h/"]).unwrap().resolve(true, false).unwrap();
        assert_eq!(c.download.retry, Policy::default());
        assert!(
            !c.download.resume
                && c.download.max_filesize.is_none()
                && !c.download.content_disposition
        );
        let c = cli(&[
            "-c",
            "--retries",
            "0",
            "--max-retry-wait",
            "0.5",
            "--max-filesize",
            "1M",
            "--content-disposition",
            "http://h/",
        ])
        .unwrap()
        .resolve(true, false)
        .unwrap();
        assert_eq!(c.download.retry.retries, 0);
        assert_eq!(c.download.retry.max_wait, Duration::from_millis(500));
        assert!(c.download.resume && c.download.content_disposition);
        assert_eq!(c.download.max_filesize, Some(1 << 20));
        // -c --overwrite: resume, and replace what is under the name (see find_earlier).
        assert!(cli(&["-c", "--overwrite", "http://h/"]).is_ok());
        assert!(cli(&["--retries", "-1", "http://h/"]).is_err());
    }

    #[test]
    fn colour_only_on_a_capable_terminal() {
        let none = |_: &str| None;
        assert!(colour(true, &none));
        assert!(!colour(false, &none));
        let no_color = |n: &str| (n == "NO_COLOR").then(|| "1".to_string());
        assert!(!colour(true, &no_color));
        let empty = |n: &str| (n == "NO_COLOR").then(String::new);
        assert!(colour(true, &empty));
        let dumb = |n: &str| (n == "TERM").then(|| "dumb".to_string());
        assert!(!colour(true, &dumb));
        let c = cli(&["http://h/"]).unwrap().resolve(true, false).unwrap();
        assert!(!c.colour);
    }

    #[test]
    fn shard_comes_from_the_flag_or_the_environment() {
        let env = |n: &str| match n {
            "FETCHPAR_SHARD" => Some("auto/3".to_string()),
            "JOB_COMPLETION_INDEX" => Some("1".to_string()),
            _ => None,
        };
        let c = cli(&["http://h/"])
            .unwrap()
            .resolve_in(true, false, &env)
            .unwrap();
        assert_eq!(c.shard, Some(Shard { index: 1, count: 3 }));
        let c = cli(&["--shard", "1/2", "http://h/"])
            .unwrap()
            .resolve_in(true, false, &env)
            .unwrap();
        assert_eq!(c.shard, Some(Shard { index: 0, count: 2 }));
        let bad = |n: &str| (n == "FETCHPAR_SHARD").then(|| "9/2".to_string());
        let err = cli(&["http://h/"])
            .unwrap()
            .resolve_in(true, false, &bad)
            .unwrap_err();
        assert!(err.starts_with("FETCHPAR_SHARD: "), "{err}");
        assert!(cli(&["--shard", "0/2", "http://h/"]).is_err());
    }

    #[test]
    fn json_and_print0_exclude_each_other() {
        assert!(cli(&["--json", "-0", "http://h/"]).is_err());
        let c = cli(&["-0", "http://h/"])
            .unwrap()
            .resolve(true, false)
            .unwrap();
        assert_eq!(c.format, Format::Print0);
        assert!(cli(&["--generate", "bash", "http://h/"]).is_err());
    }

    #[test]
    fn dot_output_dir_prints_short_paths() {
        let c = cli(&["-o", ".", "http://h/"])
            .unwrap()
            .resolve(true, false)
            .unwrap();
        assert_eq!(c.output_dir, PathBuf::new());
    }
}
