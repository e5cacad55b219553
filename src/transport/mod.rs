//! HTTP for the workers: reqwest's async client, driven from the workers' own `std::thread`s.
//! A worker waits for the network as if blocking; on a thread that runs several workers as
//! fibers, the wait suspends only its fiber ([`crate::fiber::block_on`]).
//!
//! Two ways, chosen per request:
//!
//! - **Per thread** (plain `http://`, `--http1.1`, an HTTPS host known to speak HTTP/1.1, and
//!   every `--split` piece): a small current-thread tokio runtime and a reqwest client that the
//!   thread owns, with one keep-alive connection reused from file to file. Why not
//!   `reqwest::blocking`: it hands every request and every body chunk to a background runtime
//!   thread and back, two thread wake-ups per step (`benches/handoff.rs` measures that hand-off;
//!   README "Performance" has the figures). A pooled connection's task lives on the runtime that
//!   opened it, and a current-thread runtime runs only while its own thread is inside
//!   `block_on`: so each thread has its own runtime and its own client. The fibers of one
//!   thread share its client; their requests run over the runtime the fibers run over, which
//!   drives them while all the fibers wait (the thread's own runtime then stays idle).
//! - **Shared** (HTTPS, which may negotiate HTTP/2 by ALPN): one reqwest client on one small
//!   multi-thread runtime for the whole pass, so that all downloads from an HTTP/2 host are
//!   streams of one connection, as curl and browsers do, instead of one connection (and one TLS
//!   handshake) per worker. The runtime's thread drives the connections; a worker still sends its
//!   request and reads its body itself, inside `block_on`, so only the wake-ups cross threads.
//!   Workers running as fibers skip that hop: a connection one of them opens is driven by the
//!   runtime its fibers run over, which every worker thread keeps going until all are done
//!   (see [`crate::pool`]), so the workers of the other threads may share it meanwhile.
//!   The first request to an HTTPS host goes alone; the others wait for its answer, then share
//!   its connection (HTTP/2), or, if it answered over HTTP/1.1, take the per-thread way, where
//!   nothing crosses threads.
//!
//! Redirects are followed here, not by reqwest, on both ways: each hop is routed on its own (a
//! redirect from `http://` to `https://` may move from the thread's client to the shared one)
//! and carries the headers the [`HeaderScope`] gives its origin, so the user's headers and
//! credentials never reach another origin (reqwest would carry every header but a few named
//! ones, and those only off another host or port).
//!
//! Every wait for a response or a body chunk looks at the run's cancel flag every [`TICK`], so a
//! worker stuck on a silent server still stops soon after Ctrl-C. [`Response`] is not `Send`: it
//! is read on the thread that got it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use reqwest::{Url, Version};
use tokio::runtime::{Builder, Runtime};

use crate::client::{Kind, Recipe};
use crate::request::HeaderScope;

mod request;
mod response;
pub(crate) use request::{GoneHop, OnPresence, Presence, RequestBuilder};
pub(crate) use response::Response;

/// How often a wait on the network looks at the cancel flag.
pub(crate) const TICK: Duration = Duration::from_millis(50);

/// Threads of the shared runtime: they only drive connections (TLS, HTTP/2 framing); the
/// workers do the rest.
const SHARED_THREADS: usize = 1;

/// A pass's HTTP client; cheap to clone and share between workers.
#[derive(Clone)]
pub(crate) struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    recipe: Recipe,
    /// Which headers each hop of a request carries, on either way.
    scope: HeaderScope,
    cancel: Arc<AtomicBool>,
    /// Started on the first HTTPS request; `None` if it could not be (then per thread it is).
    shared: OnceLock<Option<Shared>>,
    /// Which requests each host answered, to tell a lost connect (see [`crate::redial`]).
    answers: crate::redial::Answers,
}

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    // Not `#[from]`/`#[source]`: the message is reqwest's own, and a chain would repeat it.
    #[error("{0}")]
    Http(reqwest::Error),
    /// This thread could not start its runtime or its client (out of file descriptors, say).
    #[error("cannot set up HTTP on this thread: {0}")]
    Runtime(io::Error),
    /// The cancel flag was set while waiting.
    #[error("interrupted")]
    Cancelled,
    /// Redirects that lead nowhere: a loop, or too many. Retrying would go the same way.
    #[error("{0}")]
    Redirect(String),
    /// A redirect to a host given up on for this run (see [`GoneHop`]), not followed.
    #[error("redirected to {hop}: {line}")]
    HopGone { hop: String, line: String },
}

/// Which client carries a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Thread,
    Shared,
}

struct Local {
    id: u64,
    runtime: Runtime,
    client: reqwest::Client,
}

thread_local! {
    static LOCAL: RefCell<Option<std::rc::Rc<Local>>> = const { RefCell::new(None) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The shared client and the runtime that drives its connections.
struct Shared {
    /// Always `Some` until dropped.
    runtime: Option<Runtime>,
    client: reqwest::Client,
    /// What each HTTPS origin turned out to speak.
    hosts: Mutex<HashMap<url::Origin, Host>>,
    /// Signalled when a probe ends.
    settled: Condvar,
}

/// What the shared client knows of an HTTPS origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Host {
    /// Its first request is on the way; the others wait for its answer. Without this, every
    /// worker would open a connection of its own (and pay a TLS handshake) before the first
    /// one could tell them that HTTP/2 lets them share it.
    Probing,
    /// HTTP/2 (or unknown, after a failed probe): share the shared client's connections.
    Share,
    /// Answered over HTTP/1.1: nothing to share, each worker uses its own connection.
    Own,
}

/// The first request to an origin; settles what the others waiting on it do, whatever way
/// the request ends.
struct Probe<'a> {
    shared: &'a Shared,
    origin: url::Origin,
}

impl Probe<'_> {
    fn settle(self, response: &reqwest::Response) {
        // A redirect elsewhere tells nothing of this origin: keep sharing.
        let own = response.version() < Version::HTTP_2 && response.url().origin() == self.origin;
        self.shared
            .set(&self.origin, if own { Host::Own } else { Host::Share });
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        // No answer: let the others go at once (a dead host must not time them out one by
        // one); settled already if there was one.
        let mut hosts = self.shared.lock();
        if hosts.get(&self.origin) == Some(&Host::Probing) {
            hosts.insert(self.origin.clone(), Host::Share);
        }
        drop(hosts);
        self.shared.settled.notify_all();
    }
}

impl Shared {
    fn start(recipe: &Recipe) -> Option<Shared> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(SHARED_THREADS)
            .thread_name("fetchpar-http2")
            .enable_all()
            .build()
            .ok()?;
        let client = recipe.build(Kind::Shared).ok()?;
        Some(Shared {
            runtime: Some(runtime),
            client,
            hosts: Mutex::new(HashMap::new()),
            settled: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<url::Origin, Host>> {
        // The map holds no invariant a panicking holder could break.
        self.hosts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, origin: &url::Origin, host: Host) {
        self.lock().insert(origin.clone(), host);
    }

    /// Which way a request to `url` goes, with the probe if it is the origin's first; waits
    /// while another request probes the origin.
    fn admit(&self, url: &Url, cancel: &AtomicBool) -> Result<(Via, Option<Probe<'_>>), Error> {
        let origin = url.origin();
        let mut hosts = self.lock();
        loop {
            match hosts.get(&origin) {
                None => {
                    hosts.insert(origin.clone(), Host::Probing);
                    let probe = Probe {
                        shared: self,
                        origin,
                    };
                    return Ok((Via::Shared, Some(probe)));
                }
                Some(Host::Share) => return Ok((Via::Shared, None)),
                Some(Host::Own) => return Ok((Via::Thread, None)),
                Some(Host::Probing) if cancel.load(Ordering::Relaxed) => {
                    return Err(Error::Cancelled)
                }
                Some(Host::Probing) if crate::fiber::active() => {
                    // A fiber cannot wait on `settled`; the probe's answer comes soon.
                    drop(hosts);
                    crate::fiber::sleep(std::time::Duration::from_millis(1));
                    hosts = self.lock();
                }
                Some(Host::Probing) => {
                    hosts = match self.settled.wait_timeout(hosts, TICK) {
                        Ok((hosts, _)) => hosts,
                        Err(poisoned) => poisoned.into_inner().0,
                    };
                }
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // A DNS lookup stuck in the blocking pool must not hold up the end of the run.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Client {
    /// The recipe is tried once here so that a bad setting (an unreadable `--cacert`, say) fails
    /// before any download, as a usage error.
    pub(crate) fn new(recipe: Recipe, cancel: Arc<AtomicBool>) -> anyhow::Result<Client> {
        recipe.build(Kind::PerThread)?;
        Ok(Client {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                scope: recipe.request.header_scope(),
                recipe,
                cancel,
                shared: OnceLock::new(),
                answers: Default::default(),
            }),
        })
    }

    pub(crate) fn get(&self, url: Url) -> RequestBuilder<'_> {
        RequestBuilder::new(self, url)
    }

    /// The run's proxy table, for failures that must name the proxy a URL went through.
    pub(crate) fn proxies(&self) -> &crate::proxy::Proxies {
        &self.inner.recipe.request.proxies
    }

    fn shared(&self) -> Option<&Shared> {
        self.inner
            .shared
            .get_or_init(|| Shared::start(&self.inner.recipe))
            .as_ref()
    }

    fn route(&self, url: &Url, separate: bool) -> Result<(Via, Option<Probe<'_>>), Error> {
        if separate || !self.inner.recipe.offers_h2() || url.scheme() != "https" {
            return Ok((Via::Thread, None));
        }
        match self.shared() {
            Some(shared) => shared.admit(url, &self.inner.cancel),
            None => Ok((Via::Thread, None)),
        }
    }

    /// Runs `f` with the runtime and client of `via`, making this thread's on first use.
    fn with<T>(
        &self,
        via: Via,
        f: impl FnOnce(&Runtime, &reqwest::Client) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if via == Via::Shared {
            return match self.shared() {
                Some(Shared {
                    runtime: Some(runtime),
                    client,
                    ..
                }) => f(runtime, client),
                _ => Err(Error::Runtime(io::Error::other("no shared runtime"))),
            };
        }
        // Not borrowed while `f` runs: on a fiber, another fiber of this thread may run meanwhile.
        let local = LOCAL.with(|cell| {
            let mut local = cell.borrow_mut();
            if local.as_ref().is_none_or(|l| l.id != self.inner.id) {
                let runtime = Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(Error::Runtime)?;
                let client = self
                    .inner
                    .recipe
                    .build(Kind::PerThread)
                    .map_err(|e| Error::Runtime(io::Error::other(format!("{e:#}"))))?;
                *local = Some(std::rc::Rc::new(Local {
                    id: self.inner.id,
                    runtime,
                    client,
                }));
            }
            local
                .clone()
                .ok_or_else(|| Error::Runtime(io::Error::other("no runtime")))
        })?;
        f(&local.runtime, &local.client)
    }

    /// Waits for the future `make` makes on `runtime`, giving up with [`Error::Cancelled`] soon
    /// after the cancel flag is set.
    fn wait<T, F>(&self, runtime: &Runtime, make: impl FnOnce() -> F) -> Result<T, Error>
    where
        F: Future<Output = reqwest::Result<T>>,
    {
        let cancel = &self.inner.cancel;
        crate::fiber::block_on(runtime, async {
            // Made inside the runtime: reqwest sets up its timers as soon as a request is sent.
            let mut fut = std::pin::pin!(make());
            loop {
                if cancel.load(Ordering::Relaxed) {
                    return Err(Error::Cancelled);
                }
                // The future is polled first: a chunk already in memory arms no timer.
                if let Ok(result) = tokio::time::timeout(TICK, &mut fut).await {
                    return result.map_err(Error::Http);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::RequestOptions;
    use crate::server::{Reply, Server};
    use std::thread;

    pub(super) fn client(cancel: &Arc<AtomicBool>) -> Client {
        let recipe = Recipe {
            request: RequestOptions::default(),
            // Without the cancel flag, the waits below would end in a timeout error instead.
            timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(20),
            http1_only: false,
            workers: 1,
        };
        Client::new(recipe, cancel.clone()).unwrap()
    }

    /// Sets the flag a little later, as Ctrl-C would while a worker waits.
    pub(super) fn cancel_soon(cancel: &Arc<AtomicBool>) -> thread::JoinHandle<()> {
        let cancel = cancel.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            cancel.store(true, Ordering::SeqCst);
        })
    }

    #[test]
    fn a_wait_for_headers_ends_when_cancelled() {
        let server =
            Server::start(|_| Reply::file(&b"late"[..]).with_delay(Duration::from_secs(30)))
                .unwrap();
        let cancel = Arc::new(AtomicBool::new(false));
        let setter = cancel_soon(&cancel);
        let url = Url::parse(&server.url("/slow")).unwrap();
        let result = client(&cancel).get(url).send();
        assert!(
            matches!(result, Err(Error::Cancelled)),
            "{:?}",
            result.err()
        );
        setter.join().unwrap();
    }
}
