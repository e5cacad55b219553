//! Reporting: everything the main thread tells people and scripts about a run, beside the
//! download path rather than in it. Workers never print; they send [`crate::pool::Event`]s,
//! and [`reporter::Reporter`] turns them into:
//!
//! - [`output`]: stdout records (paths, NUL-separated paths, or JSON Lines), data only;
//! - [`progress`]: stderr for people (bars, plain lines, errors), through [`to_stderr`], the one
//!   writer that never panics on a closed or full stderr;
//! - [`summary`]: the end-of-run figures and the `--compare` table, pure formatting;
//! - [`outcome`]: each input's [`UrlOutcome`], what a program embedding fetchpar gets back.

pub(crate) mod har;
pub(crate) mod outcome;
pub(crate) mod output;
pub(crate) mod progress;
pub(crate) mod reporter;
pub(crate) mod summary;

pub use outcome::{Status, UrlOutcome};
pub(crate) use progress::to_stderr;
