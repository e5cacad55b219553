//! HTTP for the workers: reqwest's async client, driven on the calling thread by a small
//! current-thread tokio runtime that the thread owns.
//!
//! Why not `reqwest::blocking`: it hands every request and every body chunk to one background
//! runtime thread and back, two thread wake-ups per step. `benches/handoff.rs` measured that
//! hand-off alone at ~20% of wall and ~35% of CPU per small request and half the CPU of a 1 GiB
//! body. In the whole program the gain is smaller but real where it matters for workload B: one
//! 1 GiB file from nginx took a median 1.00 s of CPU against 1.15 s with the blocking client
//! (curl: 1.04 s), wall 1.19 s against 1.28 s; on 2000 small files (C) the two are level, the
//! per-file file-system work dominating there. The pool of std::threads, the blocking `Read`
//! interface of the hot loop, and reqwest itself all stay.
//!
//! A pooled connection's task lives on the runtime that opened it, and a current-thread runtime
//! only runs while its own thread is inside `block_on`; so each thread gets its own runtime and
//! its own reqwest client (its own keep-alive pool: one connection per worker, reused from file
//! to file). [`Response`] is therefore not `Send`: it must be read on the thread that got it.

use std::cell::RefCell;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io::{self, Read};
use std::marker::PhantomData;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use tokio::runtime::{Builder, Runtime};

type Make = dyn Fn() -> anyhow::Result<reqwest::Client> + Send + Sync;

/// A recipe for per-thread clients; cheap to share between workers.
#[derive(Clone)]
pub struct Client {
    id: u64,
    make: Arc<Make>,
    /// The run's cancel flag: a wait for headers or for body bytes gives up when it is set.
    cancel: Arc<AtomicBool>,
}

/// How often a wait for the network looks at the cancel flag: what Ctrl-C may take to stop a
/// download blocked on a silent server.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// Why a request got no response.
#[derive(Debug)]
pub enum Error {
    Http(reqwest::Error),
    /// This thread could not start its runtime or its client (out of file descriptors, say).
    Runtime(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Http(e) => e.fmt(f),
            Error::Runtime(e) => write!(f, "cannot set up HTTP on this thread: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Http(e) => Some(e),
            Error::Runtime(e) => Some(e),
        }
    }
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

impl Client {
    /// `make` builds one client (called once per thread that uses this `Client`); it is tried
    /// once here so that a bad setting (an unreadable `--cacert`, say) fails before any
    /// download, as a usage error.
    pub fn new<F>(make: F) -> anyhow::Result<Client>
    where
        F: Fn() -> anyhow::Result<reqwest::Client> + Send + Sync + 'static,
    {
        make()?;
        Ok(Client {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            make: Arc::new(make),
            cancel: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Makes every wait of this client (and its clones) end soon after `cancel` is set: a send
    /// then fails with an [`io::ErrorKind::Interrupted`] runtime error, a body read returns
    /// that kind of error, and the caller, seeing the flag, stops. Without this a worker
    /// blocked on a silent server would hold the pool's scoped threads for up to `--timeout`.
    pub fn cancel_on(&mut self, cancel: Arc<AtomicBool>) {
        self.cancel = cancel;
    }

    pub fn get(&self, url: Url) -> RequestBuilder<'_> {
        RequestBuilder {
            client: self,
            url,
            headers: HeaderMap::new(),
            bad_header: None,
        }
    }

    /// Runs `f` with this thread's runtime and client, making them on first use.
    fn with_local<T>(
        &self,
        f: impl FnOnce(&Runtime, &reqwest::Client) -> Result<T, Error>,
    ) -> Result<T, Error> {
        LOCAL.with(|cell| {
            let mut local = cell.borrow_mut();
            if local.as_ref().is_none_or(|l| l.id != self.id) {
                let runtime = Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(Error::Runtime)?;
                let client = (self.make)()
                    .map_err(|e| Error::Runtime(io::Error::other(format!("{e:#}"))))?;
                *local = Some(Local {
                    id: self.id,
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
}

/// A GET being put together; [`RequestBuilder::send`] waits for the response headers.
pub struct RequestBuilder<'a> {
    client: &'a Client,
    url: Url,
    headers: HeaderMap,
    bad_header: Option<String>,
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

    pub fn send(self) -> Result<Response, Error> {
        let RequestBuilder {
            client,
            url,
            headers,
            bad_header,
        } = self;
        client.with_local(|runtime, http| {
            let mut request = http.get(url).headers(headers);
            if let Some(name) = bad_header {
                // Let reqwest report it as a builder error, as the blocking client would.
                request = request.header(name.as_str(), "\u{0}");
            }
            // Inside the runtime: reqwest sets up its timers when the request is sent.
            let cancel = &client.cancel;
            let response = runtime
                .block_on(async move { unless_cancelled(request.send(), cancel).await })
                .ok_or_else(|| Error::Runtime(cancelled()))?
                .map_err(Error::Http)?;
            Ok(Response {
                inner: response,
                client: client.clone(),
                current: bytes::Bytes::new(),
                not_send: PhantomData,
            })
        })
    }
}

/// Response headers, and the body as a blocking [`Read`] on the thread that sent the request.
pub struct Response {
    inner: reqwest::Response,
    client: Client,
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

    /// The HTTP version of the response.
    pub fn version(&self) -> reqwest::Version {
        self.inner.version()
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
            let inner = &mut self.inner;
            let cancel = &self.client.cancel;
            let next = self.client.with_local(|runtime, _| {
                runtime
                    .block_on(unless_cancelled(inner.chunk(), cancel))
                    .ok_or_else(|| Error::Runtime(cancelled()))?
                    .map_err(Error::Http)
            });
            match next {
                Ok(Some(chunk)) => self.current = chunk,
                Ok(None) => return Ok(0),
                Err(Error::Http(e)) => return Err(io::Error::other(e)),
                Err(Error::Runtime(e)) => return Err(e),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}

fn cancelled() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, "interrupted")
}

/// Runs `fut` to its end, or gives up (`None`) once `cancel` is set, looking every
/// [`CANCEL_POLL`]. Dropping reqwest's `send` or `chunk` future loses nothing that matters: the
/// response is abandoned either way. A future that is ready at once (bytes already in) never
/// arms a timer, so the hot loop pays nothing for this.
async fn unless_cancelled<F: Future>(fut: F, cancel: &AtomicBool) -> Option<F::Output> {
    let mut fut = pin!(fut);
    if let Poll::Ready(out) = poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        return Some(out);
    }
    loop {
        if cancel.load(Ordering::Relaxed) {
            return None;
        }
        let mut tick = pin!(tokio::time::sleep(CANCEL_POLL));
        let out = poll_fn(|cx| match fut.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            Poll::Pending => tick.as_mut().poll(cx).map(|()| None),
        })
        .await;
        if out.is_some() {
            return out;
        }
    }
}
