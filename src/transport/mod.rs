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
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, LOCATION};
use reqwest::{Url, Version};
use tokio::runtime::{Builder, Runtime};

use crate::client::{Kind, Recipe};
use crate::conntime::Setup;
use crate::download::MAX_REDIRECTS;
use crate::request::HeaderScope;

mod response;
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
        RequestBuilder {
            client: self,
            url,
            headers: HeaderMap::new(),
            bad_header: None,
            separate: false,
            at_once: false,
            record: false,
            on_presence: None,
            gone: None,
        }
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

/// A GET being put together; [`RequestBuilder::send`] waits for the response headers.
pub(crate) struct RequestBuilder<'a> {
    client: &'a Client,
    url: Url,
    headers: HeaderMap,
    bad_header: Option<String>,
    separate: bool,
    /// No wait for an idle connection to come back to the pool ([`Self::dial_at_once`]).
    at_once: bool,
    /// Keep each hop of a redirect chain for the trace ([`Self::record_hops`]).
    record: bool,
    /// Told what a hop showed of its host before the final answer ([`Self::on_presence`]).
    on_presence: Option<OnPresence>,
    /// Asked before each redirect is followed.
    gone: Option<GoneHop>,
}

/// Says whether a redirect hop's host is gone, with the line its URLs failed with.
pub(crate) type GoneHop = Arc<dyn Fn(&Url) -> Option<String> + Send + Sync>;

/// What a request showed of a hop's host before its final answer (see
/// [`RequestBuilder::on_presence`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Presence {
    /// It answered: a redirect, on the way elsewhere.
    Answered,
    /// The request has waited [`crate::hosts::FIRST_ANSWER`] for its answer on a connection to
    /// it that is up: it is there, and slow to answer.
    Slow,
    /// The same on a connection to a plain-HTTP proxy, which comes up whether the host behind
    /// it is there or not.
    SlowBehindProxy,
}

/// Hears what a request showed of its hops' hosts, with the hop's URL.
pub(crate) type OnPresence = Arc<dyn Fn(&Url, Presence) + Send + Sync>;

impl RequestBuilder<'_> {
    pub(crate) fn header(mut self, name: HeaderName, value: impl AsRef<str>) -> Self {
        match HeaderValue::from_str(value.as_ref()) {
            Ok(v) => {
                self.headers.insert(name, v);
            }
            Err(_) => self.bad_header = Some(name.to_string()),
        }
        self
    }

    /// Over this thread's own connection, never a stream of the shared one: `--split` pieces
    /// pay off only where the server limits each connection.
    pub(crate) fn separate_connection(mut self) -> Self {
        self.separate = true;
        self
    }

    /// Dials without first letting this thread's last connection go back to the pool: for a
    /// host known to close every connection, none is coming back.
    pub(crate) fn dial_at_once(mut self) -> Self {
        self.at_once = true;
        self
    }

    /// Keeps, for `--har`, each request of a redirect chain (see [`Response::take_hops`]).
    pub(crate) fn record_hops(mut self) -> Self {
        self.record = true;
        self
    }

    /// Tells `tell` what each hop showed of its host before the final answer: a redirect's
    /// answer, or a wait of [`crate::hosts::FIRST_ANSWER`] for the answer on a connection that is
    /// up (see `conntime::timed_unanswered`).
    pub(crate) fn on_presence(mut self, tell: OnPresence) -> Self {
        self.on_presence = Some(tell);
        self
    }

    /// Follows no redirect to a host that `gone` says is gone.
    pub(crate) fn refuse_gone(mut self, gone: GoneHop) -> Self {
        self.gone = Some(gone);
        self
    }

    /// Sends the GET and follows redirects (at most [`MAX_REDIRECTS`]), each hop routed on its
    /// own and with the headers its origin may have; a 3xx that leads nowhere followable (no
    /// `Location`, another scheme) is handed back as it is, for the caller to explain.
    pub(crate) fn send(self) -> Result<Response, Error> {
        self.send_keeping_hops(&mut Vec::new())
    }

    /// As [`Self::send`]; with [`Self::record_hops`], a chain that fails leaves its hops in
    /// `hops`, the failed request last (with no status) when it got no answer.
    pub(crate) fn send_keeping_hops(
        self,
        hops: &mut Vec<crate::trace::Exchange>,
    ) -> Result<Response, Error> {
        let asked = &self.url;
        let mut hop = asked.clone();
        let mut visited: Vec<Url> = Vec::new();
        let mut setup = None;
        loop {
            let sent = std::time::Instant::now();
            let (via, inner, opened) = match self.send_hop(&hop) {
                Ok(answered) => answered,
                Err(e) if self.record && !hops.is_empty() => {
                    let headers = self.headers_to(&hop);
                    hops.push(crate::trace::unanswered(&hop, &headers, sent));
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            let times = (sent, std::time::Instant::now(), opened);
            setup = crate::conntime::both(setup, opened);
            let next = redirect_target(&inner, &hop);
            if self.record && (next.is_some() || !hops.is_empty()) {
                let headers = self.headers_to(&hop);
                hops.push(crate::trace::hop(
                    &hop,
                    &headers,
                    &inner,
                    times,
                    next.as_ref(),
                ));
            }
            let Some(next) = next else {
                return Ok(Response {
                    inner,
                    client: self.client.clone(),
                    via,
                    setup,
                    hops: std::mem::take(hops),
                    current: bytes::Bytes::new(),
                    not_send: PhantomData,
                });
            };
            // To the same host, its final answer says more (whether it keeps its connections).
            if let Some(tell) = self
                .on_presence
                .as_ref()
                .filter(|_| next.origin() != hop.origin())
            {
                tell(&hop, Presence::Answered);
            }
            visited.push(std::mem::replace(&mut hop, next));
            if visited.contains(&hop) {
                return Err(Error::Redirect("redirect loop".into()));
            }
            if visited.len() > MAX_REDIRECTS {
                return Err(Error::Redirect(format!(
                    "too many redirects (more than {MAX_REDIRECTS})"
                )));
            }
            if let Some(line) = self.gone.as_ref().and_then(|gone| gone(&hop)) {
                let hop = crate::redact::url(&hop);
                return Err(Error::HopGone { hop, line });
            }
        }
    }

    /// One request of the chain, to `hop`, by the way its origin takes, with the set-up of the
    /// connection it opened, if it opened one.
    fn send_hop(&self, hop: &Url) -> Result<(Via, reqwest::Response, Option<Setup>), Error> {
        let client = self.client;
        // Credentials in the URL change no origin: the route is the hop's own.
        let (via, probe) = client.route(hop, self.separate)?;
        let (inner, setup) = client.with(via, |runtime, http| {
            let request = self.prepare(http, hop);
            let again = request.try_clone();
            let host = hop.origin();
            // A plain-HTTP proxy's connection says nothing of the origin behind it.
            let reaches = client.proxies().reaches_origin(hop);
            let slow = if reaches {
                Presence::Slow
            } else {
                Presence::SlowBehindProxy
            };
            let tell = self.on_presence.clone().map(|tell| {
                let hop = hop.clone();
                Arc::new(move || tell(&hop, slow)) as crate::conntime::OnConnected
            });
            let at_once = self.at_once;
            client.wait(runtime, || async {
                // The connection this thread's last download used goes back to the pool in a
                // task of its own, which runs only when this thread's fibers all wait: let it
                // run first, or this request finds no idle connection and dials another.
                if !at_once {
                    tokio::task::yield_now().await;
                }
                let answers = &client.inner.answers;
                let sending = crate::redial::send(&host, answers, request.send(), || {
                    again.map(reqwest::RequestBuilder::send)
                });
                let (sent, setup) = crate::conntime::timed_unanswered(
                    sending,
                    tell.clone(),
                    crate::hosts::FIRST_ANSWER,
                )
                .await;
                sent.map(|response| (response, setup))
            })
        })?;
        if let Some(probe) = probe {
            probe.settle(&inner);
        }
        Ok((via, inner, setup))
    }

    /// The request to `hop` as reqwest will send it: the one place its headers come together.
    fn prepare(&self, http: &reqwest::Client, hop: &Url) -> reqwest::RequestBuilder {
        let scope = &self.client.inner.scope;
        let (to, scoped) = scope.for_hop(&self.url, hop);
        // Per hop, on either way, and only where --user would go: a redirect elsewhere must not
        // take the password along, and with --location-trusted it takes the asked URL's, as
        // --user's goes (not the entry of the host it lands on). None where the hop carries
        // the asked URL's credentials, or --user / -H Authorization apply.
        let netrc = match scope.carries_credentials(&self.url, hop) {
            true => self
                .client
                .inner
                .recipe
                .request
                .netrc_authorization(&self.url),
            false => None,
        };
        let mut request = http.get(to).headers(scoped);
        if let Some(value) = netrc {
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        // The caller's own headers (Range, If-Range) win, as they did over defaults.
        request = request.headers(self.headers.clone());
        if let Some(name) = &self.bad_header {
            // Let reqwest report it as a builder error, as the blocking client would.
            request = request.header(name.as_str(), "\u{0}");
        }
        request
    }

    /// The headers the request to the URL asked for carries, built as [`Self::send`] builds
    /// them (credentials included: `--har` redacts them, see [`crate::trace::request_headers`]).
    /// Empty when the request cannot be built (it will then fail to send, saying why).
    pub(crate) fn headers_to_send(&self) -> HeaderMap {
        self.headers_to(&self.url)
    }

    /// The headers the request to `hop` of the chain carries (see [`Self::headers_to_send`]).
    fn headers_to(&self, hop: &Url) -> HeaderMap {
        let built = self.client.with(Via::Thread, |_, http| {
            self.prepare(http, hop).build().map_err(Error::Http)
        });
        built.map(|r| r.headers().clone()).unwrap_or_default()
    }
}

/// Where a redirect response sends a GET next: an http(s) URL from its `Location`, resolved
/// against the URL it answered. `None` for anything else, which the caller gets as it is.
fn redirect_target(response: &reqwest::Response, hop: &Url) -> Option<Url> {
    if !matches!(response.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = response.headers().get(LOCATION)?.to_str().ok()?;
    let mut next = hop.join(location).ok()?;
    next.set_fragment(None);
    matches!(next.scheme(), "http" | "https").then_some(next)
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
