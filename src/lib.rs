//! fetchpar downloads many URLs at once, safely, and tells you how much the concurrency bought.
//!
//! # Library API
//!
//! A program can embed fetchpar: build a [`Run`] (the command line's defaults, its flags as
//! [`Run::with_args`], or a [`cli::Config`] the flags resolved), give it URLs, and get back each
//! input's [`UrlOutcome`] and whether the run was interrupted. An embedded run prints nothing
//! unless [`Run::print`] asks it to, installs no signal handler (set the flag given to
//! [`Run::cancel_flag`] to stop it) and never ends the process. The `fetchpar` binary is a thin
//! user of this API (`src/main.rs`); [`ExitCode`] is the status it exits with.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # // A loopback server, standing in for the remote one.
//! # let server = fetchpar::server::Server::start(|_| {
//! #     fetchpar::server::Reply::file(b"hello".to_vec())
//! # })?;
//! # let (a, b) = (server.url("/a.txt"), server.url("/b.txt"));
//! let dir = tempfile::tempdir()?;
//! let finished = fetchpar::Run::with_args(["--retries", "0"])
//!     .jobs(4)
//!     .output_dir(dir.path())
//!     .download([a, b])?;
//! assert!(!finished.interrupted);
//! assert_eq!(finished.exit_code(), fetchpar::ExitCode::Ok);
//! for outcome in &finished.outcomes {
//!     assert_eq!(outcome.status, fetchpar::Status::Saved);
//!     assert_eq!((outcome.bytes, outcome.http_status), (5, Some(200)));
//!     let path = outcome.path.as_ref().ok_or("no path")?;
//!     assert_eq!(std::fs::read(path)?, b"hello");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Architecture
//!
//! Flows on top, reporting beside the download path, and shared foundations below; every arrow
//! points down or sideways, never back up:
//!
//! ```text
//!  main.rs (binary) ──► run (library API: Run, Finished) ──► app (flows: normal, --compare, --demo)
//!                                                              │
//!  cli (flags → Config) ◄─────────────────────────────────────┤   completions (--generate)
//!                                                              ▼
//!  inputs (args, -i FILE, stdin)                      [input]
//!    │  read lazily, line by line, line numbers kept
//!    ▼
//!  producer thread ──► bounded crossbeam channel (2 × jobs)   [pool, select]
//!    (gives each URL its home path, in list order)             [naming]
//!                           │
//!           ┌───────────────┼───────────────┐
//!           ▼               ▼               ▼
//!       worker 1   …    worker j      (fibers, j / cores to each of `cores` scoped
//!           │                          std::threads, each thread with its own small runtime
//!           │                          driving reqwest, keep-alive reused)        [fiber]
//!           │  home path (or one beside it) → GET → 8 KiB chunks into NAME.part → verify → rename
//!           │                 [naming, download/{mod,response,part,stream,split,sidecar,…}]
//!           │                                       [transport, request: HTTP]
//!           ▼
//!  events channel ──► main thread                     [report: reporter, output, progress,
//!                                                      summary, outcome]
//!
//!  below everyone: exit (ExitCode), modes (Format, ProgressMode), units (durations, rates),
//!  sharded (a map that grows without a spike), redact (credentials out of every output); server (loopback, for --demo)
//! ```
//!
//! - [`run`](Run) is the library API; `app` runs the flows and builds each pass (a pool, a
//!   reporter, an HTTP client whose waits end on cancel).
//! - `cli` turns flags into a validated [`cli::Config`] once; `completions` is `--generate`.
//! - `input` reads inputs; `select` (in the producer) drops duplicates and other shards' URLs;
//!   `pool` is the producer, the workers and the main thread's event loop; `fiber` runs a
//!   thread's share of the workers as stackful coroutines, so that a wait on the network
//!   suspends a worker, not its thread.
//! - `download` is one URL to one file; its folder holds one job a file: the fetch/retry loop
//!   (`mod`), the pure rule that decides what a response means for bytes on disk (`response`),
//!   the life of `NAME.part` and its sidecar (`part`, `sidecar`), the body-streaming loop
//!   (`stream`), typed failures (`failure`), `--content-disposition` names (`disposition`),
//!   `--split N` (`split`) and expected digests (`verify`, over `checksum` and `sumfile`). Beside it: `retry` (what to retry and when), `safefs` (opening files
//!   without following symlinks) and `naming` (safe names, reserved before any file opens).
//! - `transport` drives reqwest on each worker's own runtime; `request` turns the request
//!   options (headers, auth, proxy, TLS) into client settings.
//! - `report` is the main thread's side: stdout records, stderr progress and summary.
//! - `exit`, `modes`, `units`, `sharded` and `redact` are small shared foundations used from
//!   above.
//!
//! # Promises the code keeps
//!
//! - stdout carries data only (one path per saved file, NUL-ended with `-0`, JSON Lines with
//!   `--json`); stderr is for people, and a closed stdout or stderr ends the run quietly, never
//!   with a panic.
//! - Workers never print; the main thread owns stdout and stderr. Cancellation (Ctrl-C, a closed
//!   stdout, an embedding program's flag) is one shared `AtomicBool` that the producer and every
//!   worker check between lines and chunks, and that ends every wait on the network.
//! - A file under its final name is complete; bytes in flight live in `NAME.part` and are renamed
//!   into place only once checked. Nothing is written outside the output directory, an existing
//!   file is never overwritten unless asked, and two URLs never write the same path.
//! - Exit status: 0 every URL saved, 1 some failed, 2 usage or input error before any download,
//!   130 interrupted ([`ExitCode`]).
//! - Credentials in URLs, `--user`, headers or netrc never appear in any output.

pub(crate) mod app;
pub(crate) mod checksum;
pub mod cli;
pub(crate) mod client;
pub(crate) mod completions;
pub(crate) mod conntime;
pub(crate) mod download;
pub(crate) mod estimate;
pub(crate) mod exit;
pub(crate) mod fdlimit;
pub(crate) mod fiber;
pub(crate) mod hosts;
pub(crate) mod input;
pub(crate) mod listopts;
pub(crate) mod modes;
pub(crate) mod naming;
pub(crate) mod netrc;
pub(crate) mod packed;
pub(crate) mod pool;
pub(crate) mod proxy;
pub(crate) mod ratelimit;
pub(crate) mod redact;
pub(crate) mod redial;
pub(crate) mod report;
pub(crate) mod request;
pub(crate) mod retry;
mod run;
pub(crate) mod safefs;
pub(crate) mod select;
#[doc(hidden)]
pub mod server;
pub(crate) mod sharded;
pub(crate) mod sumfile;
pub(crate) mod tls;
pub(crate) mod trace;
pub(crate) mod transport;
pub(crate) mod units;

pub use exit::ExitCode;
pub use fdlimit::raise as raise_open_file_limit;
pub use report::{Status, UrlOutcome};
pub use run::{Error, Finished, Run};
