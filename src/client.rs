//! The recipe for fetchpar's reqwest clients: which settings every client gets, and the two
//! kinds [`crate::transport`] makes from it (one per worker thread, one shared for HTTP/2).
//!
//! It holds only what a client needs (the request options, the timeouts, `--http1.1`), so that
//! building a client does not drag the whole configuration along.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::redirect;

use crate::cli::Config;
use crate::request::RequestOptions;
use crate::transport::Client;

/// Everything a reqwest client of fetchpar is built from.
#[derive(Clone, Debug)]
pub(crate) struct Recipe {
    pub(crate) request: RequestOptions,
    /// Per read, not a total deadline (see [`Recipe::build`]).
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    /// `--http1.1`: never offer `h2` in ALPN.
    pub(crate) http1_only: bool,
    /// The most workers a pass runs: a worker thread's client keeps as many idle connections
    /// to one host, since that many of its fibers may share it (see [`Kind::PerThread`]).
    pub(crate) workers: usize,
}

/// Which client of a pass is being built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A worker thread's own, which the workers it runs as fibers share: their keep-alive
    /// connections, reused from file to file. It keeps one idle connection per worker: with
    /// one in all, the connections of workers that ended together were closed, and the next
    /// downloads dialled anew (benches/run C counts the connections).
    PerThread,
    /// The one client every worker shares for HTTP/2 hosts: its connections carry many
    /// downloads at once, and an HTTPS host that turns out to speak HTTP/1.1 may need several.
    Shared,
}

impl Recipe {
    pub(crate) fn from_config(config: &Config) -> Recipe {
        Recipe {
            request: config.request.clone(),
            timeout: config.download.timeout,
            connect_timeout: config.connect_timeout,
            http1_only: config.http1_only,
            workers: config.sweep.iter().copied().fold(config.jobs, usize::max),
        }
    }

    /// Whether the transport should share HTTP/2 connections between workers.
    pub(crate) fn offers_h2(&self) -> bool {
        !self.http1_only
    }

    pub(crate) fn build(&self, kind: Kind) -> Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            // Per read, not a total deadline: it applies to the wait for headers and to each body
            // read, so a large file that keeps flowing is never cut off.
            .read_timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            // The transport follows redirects itself, choosing each hop's headers by its
            // origin (see crate::transport).
            .redirect(redirect::Policy::none())
            // No Referer: it would carry the URL asked for, query-string tokens included.
            .referer(false)
            // Connection set-up timings for the trace and the records (see crate::conntime).
            .dns_resolver(Arc::new(crate::conntime::Resolver))
            .connector_layer(crate::conntime::Layer);
        if kind == Kind::PerThread {
            builder = builder.pool_max_idle_per_host(self.workers.max(1));
        }
        if self.http1_only {
            // Also takes `h2` out of the ALPN offer.
            builder = builder.http1_only();
        }
        self.request
            .apply(builder, self.offers_h2())?
            .build()
            .context("cannot set up the HTTP client")
    }
}

/// The HTTP client of a pass (see [`crate::transport`]); `cancel` is the run's Ctrl-C flag,
/// which a request or body read waiting on the network notices within a tick.
pub(crate) fn build_client(config: &Config, cancel: &Arc<AtomicBool>) -> Result<Client> {
    Client::new(Recipe::from_config(config), cancel.clone())
}
