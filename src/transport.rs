//! HTTP for the workers: reqwest's async client, driven from the workers' own `std::thread`s.
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
//!   `block_on`: so each thread has its own runtime and its own client.
//! - **Shared** (HTTPS, which may negotiate HTTP/2 by ALPN): one reqwest client on one small
//!   multi-thread runtime for the whole pass, so that all downloads from an HTTP/2 host are
//!   streams of one connection, as curl and browsers do, instead of one connection (and one TLS
//!   handshake) per worker. The runtime's thread drives the connections; a worker still sends its
//!   request and reads its body itself, inside `block_on`, so only the wake-ups cross threads.
//!   An HTTPS host that answers over HTTP/1.1 is remembered and gets the per-thread way from then
//!   on, where nothing crosses threads.
//!
//! Every wait for a response or a body chunk looks at the run's cancel flag every [`TICK`], so a
//! worker stuck on a silent server still stops soon after Ctrl-C. [`Response`] is not `Send`: it
//! is read on the thread that got it.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::io::{self, Read};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url, Version};
use tokio::runtime::{Builder, Runtime};

use crate::client::{Kind, Recipe};

/// How often a wait on the network looks at the cancel flag.
pub const TICK: Duration = Duration::from_millis(50);

/// Threads of the shared runtime: they only drive connections (TLS, HTTP/2 framing); the
/// workers do the rest.
const SHARED_THREADS: usize = 1;

/// A pass's HTTP client; cheap to clone and share between workers.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    recipe: Recipe,
    cancel: Arc<AtomicBool>,
    /// Started on the first HTTPS request; `None` if it could not be (then per thread it is).
    shared: OnceLock<Option<Shared>>,
}

/// Why a request got no response.
#[derive(Debug)]
pub enum Error {
    Http(reqwest::Error),
    /// This thread could not start its runtime or its client (out of file descriptors, say).
    Runtime(io::Error),
    /// The cancel flag was set while waiting.
    Cancelled,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Http(e) => e.fmt(f),
            Error::Runtime(e) => write!(f, "cannot set up HTTP on this thread: {e}"),
            Error::Cancelled => f.write_str("interrupted"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Http(e) => Some(e),
            Error::Runtime(e) => Some(e),
            Error::Cancelled => None,
        }
    }
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
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The shared client and the runtime that drives its connections.
struct Shared {
    /// Always `Some` until dropped.
    runtime: Option<Runtime>,
    client: reqwest::Client,
    /// HTTPS origins that answered over HTTP/1.1: nothing to share there.
    http1: RwLock<HashSet<url::Origin>>,
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
            http1: RwLock::new(HashSet::new()),
        })
    }

    fn speaks_http1(&self, url: &Url) -> bool {
        self.http1
            .read()
            .is_ok_and(|set| set.contains(&url.origin()))
    }

    /// Remembers a host that answered over HTTP/1.1, unless a redirect makes that unclear.
    fn learn(&self, asked: &Url, response: &reqwest::Response) {
        let origin = asked.origin();
        if response.version() >= Version::HTTP_2 || response.url().origin() != origin {
            return;
        }
        if let Ok(mut set) = self.http1.write() {
            set.insert(origin);
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
    pub fn new(recipe: Recipe, cancel: Arc<AtomicBool>) -> anyhow::Result<Client> {
        recipe.build(Kind::PerThread)?;
        Ok(Client {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                recipe,
                cancel,
                shared: OnceLock::new(),
            }),
        })
    }

    pub fn get(&self, url: Url) -> RequestBuilder<'_> {
        RequestBuilder {
            client: self,
            url,
            headers: HeaderMap::new(),
            bad_header: None,
            separate: false,
        }
    }

    fn shared(&self) -> Option<&Shared> {
        self.inner
            .shared
            .get_or_init(|| Shared::start(&self.inner.recipe))
            .as_ref()
    }

    fn route(&self, url: &Url, separate: bool) -> Via {
        if separate || !self.inner.recipe.offers_h2() || url.scheme() != "https" {
            return Via::Thread;
        }
        match self.shared() {
            Some(shared) if !shared.speaks_http1(url) => Via::Shared,
            _ => Via::Thread,
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
        LOCAL.with(|cell| {
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
                *local = Some(Local {
                    id: self.inner.id,
                    runtime,
                    client,
                });
            }
            match local.as_ref() {
                Some(l) => f(&l.runtime, &l.client),
                None => Err(Error::Runtime(io::Error::other("no runtime"))),
            }
        })
    }

    /// Waits for the future `make` makes on `runtime`, giving up with [`Error::Cancelled`] soon after the cancel
    /// flag is set.
    fn wait<T, F>(&self, runtime: &Runtime, make: impl FnOnce() -> F) -> Result<T, Error>
    where
        F: Future<Output = reqwest::Result<T>>,
    {
        let cancel = &self.inner.cancel;
        runtime.block_on(async {
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
pub struct RequestBuilder<'a> {
    client: &'a Client,
    url: Url,
    headers: HeaderMap,
    bad_header: Option<String>,
    separate: bool,
}

impl RequestBuilder<'_> {
    pub fn header(mut self, name: HeaderName, value: impl AsRef<str>) -> Self {
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
    pub fn separate_connection(mut self) -> Self {
        self.separate = true;
        self
    }

    pub fn send(self) -> Result<Response, Error> {
        let RequestBuilder {
            client,
            url,
            headers,
            bad_header,
            separate,
        } = self;
        let via = client.route(&url, separate);
        let asked = (via == Via::Shared).then(|| url.clone());
        let inner = client.with(via, |runtime, http| {
            let mut request = http.get(url).headers(headers);
            if let Some(name) = bad_header {
                // Let reqwest report it as a builder error, as the blocking client would.
                request = request.header(name.as_str(), "\u{0}");
            }
            client.wait(runtime, || request.send())
        })?;
        if let (Some(asked), Some(shared)) = (asked, client.shared()) {
            shared.learn(&asked, &inner);
        }
        Ok(Response {
            inner,
            client: client.clone(),
            via,
            current: bytes::Bytes::new(),
            not_send: PhantomData,
        })
    }
}

/// Response headers, and the body as a blocking [`Read`] on the thread that sent the request.
pub struct Response {
    inner: reqwest::Response,
    client: Client,
    via: Via,
    current: bytes::Bytes,
    not_send: PhantomData<*const ()>,
}

impl Response {
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The final URL, after redirects.
    pub fn url(&self) -> &Url {
        self.inner.url()
    }

    /// Body bytes already in memory: the next read of up to this many will not wait.
    pub fn buffered(&self) -> usize {
        self.current.len()
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.current.is_empty() {
            let Response {
                inner, client, via, ..
            } = self;
            let next = client.with(*via, |runtime, _| client.wait(runtime, || inner.chunk()));
            match next {
                Ok(Some(chunk)) => self.current = chunk,
                Ok(None) => return Ok(0),
                Err(Error::Http(e)) => return Err(io::Error::other(e)),
                Err(Error::Runtime(e)) => return Err(e),
                // Readers check the flag when told to try again, and stop.
                Err(Error::Cancelled) => {
                    return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"))
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}
