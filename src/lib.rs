//! fetchpar downloads many URLs at once, safely, and tells you how much the concurrency bought.
//!
//! The binary (`src/main.rs`) and the integration tests use this library through [`app::main`]
//! and the modules below. Data flows one way:
//!
//! ```text
//!  inputs (args, -i FILE, stdin)                         [input]
//!    │  read lazily, line by line, line numbers kept
//!    ▼
//!  producer thread ──► bounded crossbeam channel (2 × jobs)   [pool]
//!                           │
//!           ┌───────────────┼───────────────┐
//!           ▼               ▼               ▼
//!       worker 1   …    worker j      (scoped std::threads, each with its own small runtime
//!           │                          driving reqwest, keep-alive reused: [transport])
//!           │  name → reserve path → GET → 8 KiB chunks into NAME.part → verify → rename
//!           │                                           [naming, download]
//!           ▼
//!  events channel ──► main thread: progress + stdout records + summary
//!                                           [progress, summary]
//! ```
//!
//! Workers never print: they send [`pool::Event`]s and bump atomic byte counters; the main thread
//! alone owns the terminal and stdout. Cancellation (Ctrl-C, a closed stdout) is one shared
//! `AtomicBool` that the producer and every worker check between lines and chunks.
//!
//! Around that spine:
//! - [`cli`] turns flags into a validated [`cli::Config`] once; [`request`] turns the request
//!   options (headers, auth, proxy, TLS) into client settings.
//! - [`select`] sits in the producer: duplicate URLs and `--shard K/N`. It and [`naming`] keep
//!   the only per-URL state, in [`sharded`] tables that grow without a spike.
//! - [`download`] is one URL to one file, with [`retry`] (what to retry and when), [`resume`]
//!   (`NAME.part.meta` sidecars and `Content-Range`), [`disposition`] (`--content-disposition`
//!   names), [`safefs`] (opening existing files without following symlinks) and [`split`]
//!   (one file over several ranged connections, `--split N`).
//! - [`output`] writes stdout records (paths, NUL-separated paths or JSON Lines);
//!   [`progress`] and [`summary`] are stderr; [`redact`] keeps credentials out of all of it.
//! - [`app`] runs the normal, `--compare` and `--demo` flows; [`completions`] is `--generate`;
//!   [`server`] is the small loopback HTTP server behind `--demo` and the tests.

pub mod app;
pub mod cli;
pub mod client;
pub mod completions;
pub mod disposition;
pub mod download;
pub mod input;
pub mod naming;
pub mod output;
pub mod pool;
pub mod progress;
pub mod redact;
pub mod request;
pub mod resume;
pub mod retry;
pub mod safefs;
pub mod select;
pub mod server;
pub mod sharded;
pub mod split;
pub mod summary;
pub mod transport;
