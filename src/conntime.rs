//! How long a request spent setting up its connection: name resolution, then TCP (and a proxy's
//! tunnel) and TLS. reqwest reports no phase timings, so three hooks of ours measure them:
//!
//! - a connector [`Layer`] around reqwest's whole connector (resolve, TCP, proxy, TLS): from the
//!   call to the connection handed back;
//! - a [`Resolver`] wrapping the system's (getaddrinfo, as reqwest's default does): the lookup;
//! - a TLS session store ([`TlsStart`]): rustls asks it for a resumable session just before it
//!   writes the ClientHello, which marks where TCP ends and TLS begins.
//!
//! A timing belongs to the request whose future polled the connect to its end: each request
//! runs in a [`timed`] scope (a `tokio::task_local!`, so it works on the workers' current-thread
//! runtimes and on the shared multi-thread one alike), and the connector's future is polled
//! inside the request's. hyper-util's pool may race a connect against an idle connection; when
//! the idle one wins, the half-made connection is finished in a task of its own, outside any
//! request's scope, and its timing is dropped, never given to a request that did not wait for
//! it. A request on a reused connection therefore has none. The resolver and the TLS store note
//! their marks in a scope of the connect itself, so a connect that moves to the background takes
//! its marks along and never leaves half a timing on the request.
//!
//! The same moment, a connection the request waited for coming up, is the first sign that its
//! host is there at all: [`timed`] tells the request's `tell` of it, and [`timed_unanswered`]
//! tells it only if the answer is slow to follow (a host's first round opens on the answer, or
//! on that, see `crate::hosts`).
//!
//! Cost: a few `Instant::now()` per new connection and a thread-local look-up per request, and
//! with [`timed_unanswered`] a timer per request (C's CPU time did not move); nothing per body
//! chunk.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Resumption};
use rustls::pki_types::ServerName;

/// A new connection's set-up, as the request that waited for it saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Setup {
    /// Name resolution; `None` for an IP address (nothing to resolve).
    pub(crate) dns: Option<Duration>,
    /// After resolution: TCP, a proxy's handshake or tunnel, and TLS.
    pub(crate) connect: Duration,
    /// The TLS handshake alone (part of `connect`); `None` over plain HTTP.
    pub(crate) tls: Option<Duration>,
}

impl Setup {
    /// Everything from the start of resolution to a connection ready for the request.
    pub(crate) fn total(&self) -> Duration {
        self.dns.unwrap_or_default() + self.connect
    }

    /// Both set-ups, for a request that needed two connections (a redirect to another host).
    pub(crate) fn and(self, other: Setup) -> Setup {
        let sum = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or_default() + b.unwrap_or_default()),
        };
        Setup {
            dns: sum(self.dns, other.dns),
            connect: self.connect + other.connect,
            tls: sum(self.tls, other.tls),
        }
    }
}

/// The set-ups of two steps of one request, either of which may have reused a connection.
pub(crate) fn both(a: Option<Setup>, b: Option<Setup>) -> Option<Setup> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.and(b)),
        (a, b) => a.or(b),
    }
}

/// What one connect has noted so far.
#[derive(Clone, Copy, Debug, Default)]
struct Marks {
    dns: Option<Duration>,
    tls_start: Option<Instant>,
}

/// What the current request knows of its connections.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// The set-up of the connections it opened and waited for.
    setup: Option<Setup>,
}

/// A connect still resolving or dialling (TCP, a proxy), as the request that started it and
/// the connect itself both see it (see [`crate::redial`]).
#[derive(Debug)]
struct Dial {
    since: Instant,
    /// Cleared once TCP is up, the connect ends, or the request stops waiting for it.
    live: AtomicBool,
}

/// Told when a connection the current request waited for has come up: by then the host is
/// there, long before its answer says so (see [`timed_unanswered`]).
pub(crate) type OnConnected = Arc<dyn Fn() + Send + Sync>;

tokio::task_local! {
    /// The current request's connections.
    static REQUEST: Cell<Slot>;
    /// Who to tell when one comes up.
    static TELL: Option<OnConnected>;
    /// The current request's latest connect, while it may dial.
    static DIAL: RefCell<Option<Arc<Dial>>>;
    /// The marks of the connect being polled.
    static CONNECT: Cell<Marks>;
}

/// Runs a request's future, and gives back with its output the set-up of any connection it
/// opened and waited for (`None` on a reused connection); `tell` hears of each such connection
/// as it comes up.
pub(crate) async fn timed<F: Future>(
    request: F,
    tell: Option<OnConnected>,
) -> (F::Output, Option<Setup>) {
    let scoped = async {
        let out = request.await;
        (out, REQUEST.with(Cell::get).setup)
    };
    let dialed = DIAL.scope(RefCell::new(None), scoped);
    let told = REQUEST.scope(Cell::new(Slot::default()), dialed);
    TELL.scope(tell, told).await
}

/// [`timed`], but `tell` hears only that the host is there and slow to answer: the request has
/// waited `after` for its answer since its connection came up (or since it began, on a
/// connection it reused). An answer within that says more of the host than the connection does
/// (see `crate::hosts::FIRST_ANSWER`).
pub(crate) async fn timed_unanswered<F: Future>(
    request: F,
    tell: Option<OnConnected>,
    after: Duration,
) -> (F::Output, Option<Setup>) {
    let Some(tell) = tell else {
        return timed(request, None).await;
    };
    let up = Arc::new(AtomicBool::new(false));
    let mark: OnConnected = {
        let up = up.clone();
        Arc::new(move || up.store(true, Ordering::Relaxed))
    };
    timed(unanswered(request, up, tell, after), Some(mark)).await
}

/// Where [`unanswered`] is in its wait.
enum Wait {
    /// Since the request began; at its end, a request still dialling waits for its connection.
    Begun(Pin<Box<tokio::time::Sleep>>),
    /// Waiting for its connection to come up.
    Dialling,
    /// Since its connection came up.
    Up(Pin<Box<tokio::time::Sleep>>),
    Told,
}

/// Runs `request` inside [`timed`]'s scope (where [`dialing_since`] sees its connect), telling
/// `tell` as [`timed_unanswered`] says; `up` is set as its connection comes up.
async fn unanswered<F: Future>(
    request: F,
    up: Arc<AtomicBool>,
    tell: OnConnected,
    after: Duration,
) -> F::Output {
    let mut request = std::pin::pin!(request);
    let sleep = || Box::pin(tokio::time::sleep(after));
    let mut wait = Wait::Begun(sleep());
    std::future::poll_fn(|cx| loop {
        if let Poll::Ready(out) = request.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        let up = up.load(Ordering::Relaxed);
        let over = match &mut wait {
            Wait::Begun(sleep) | Wait::Up(sleep) => sleep.as_mut().poll(cx).is_ready(),
            Wait::Dialling | Wait::Told => false,
        };
        wait = match wait {
            Wait::Begun(_) | Wait::Dialling if up => Wait::Up(sleep()),
            // Not dialling: on a connection it reused (or one up but for its TLS handshake).
            Wait::Begun(_) if over && dialing_since().is_none() => {
                tell();
                Wait::Told
            }
            Wait::Begun(_) if over => Wait::Dialling,
            Wait::Up(_) if over => {
                tell();
                Wait::Told
            }
            _ => return Poll::Pending,
        };
    })
    .await
}

/// Since when the current request's connect has been resolving or dialling (TCP, a proxy), if it
/// is; `None` outside [`timed`], before a connect, once TLS or the request itself is under
/// way, and once the request went on with an idle connection instead.
pub(crate) fn dialing_since() -> Option<Instant> {
    DIAL.try_with(|dial| {
        let dial = dial.borrow();
        dial.as_ref()
            .filter(|d| d.live.load(Ordering::Relaxed))
            .map(|d| d.since)
    })
    .ok()
    .flatten()
}

/// A connect begins for the current request, if any: the mark it shares with the request.
fn dial_begins(since: Instant) -> Option<Arc<Dial>> {
    let dial = Arc::new(Dial {
        since,
        live: AtomicBool::new(true),
    });
    DIAL.try_with(|slot| *slot.borrow_mut() = Some(dial.clone()))
        .ok()
        .map(|()| dial)
}

/// The current request's connect dials no more (its TCP connection is up).
fn dial_ends() {
    let _ = DIAL.try_with(|slot| {
        if let Some(dial) = slot.borrow().as_ref() {
            dial.live.store(false, Ordering::Relaxed);
        }
    });
}

/// The connector layer: see the module's notes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Layer;

impl<S> tower_layer::Layer<S> for Layer {
    type Service = Timed<S>;

    fn layer(&self, inner: S) -> Timed<S> {
        Timed(inner)
    }
}

/// reqwest's connector, timed.
#[derive(Clone, Debug)]
pub(crate) struct Timed<S>(S);

type Boxed<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, R> tower_service::Service<R> for Timed<S>
where
    S: tower_service::Service<R>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Boxed<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, target: R) -> Self::Future {
        let start = Instant::now();
        let connect = self.0.call(target);
        Box::pin(async move {
            let dial = dial_begins(start);
            let marked = async {
                let out = connect.await;
                (out, CONNECT.with(Cell::get))
            };
            let mut marked = std::pin::pin!(CONNECT.scope(Cell::new(Marks::default()), marked));
            let (out, marks) = std::future::poll_fn(|cx| {
                // Polled outside the request's scope: the request went on with an idle
                // connection and hyper finishes this one in a task of its own. Without this the
                // request would look as if still dialling, and be sent again (`redial`).
                if DIAL.try_with(|_| ()).is_err() {
                    if let Some(dial) = &dial {
                        dial.live.store(false, Ordering::Relaxed);
                    }
                }
                marked.as_mut().poll(cx)
            })
            .await;
            if let Some(dial) = &dial {
                dial.live.store(false, Ordering::Relaxed);
            }
            if out.is_ok() {
                deliver(start, marks);
            }
            out
        })
    }
}

/// Gives a finished connect's set-up to the request polling it, if one is (see the module's
/// notes for when none is).
fn deliver(start: Instant, marks: Marks) {
    let end = Instant::now();
    let total = end.saturating_duration_since(start);
    let dns = marks.dns.map(|d| d.min(total));
    let setup = Setup {
        dns,
        connect: total - dns.unwrap_or_default(),
        tls: marks.tls_start.map(|t| end.saturating_duration_since(t)),
    };
    // Outside a request's scope (a connect finished in the background) the timing is dropped.
    let _ = REQUEST.try_with(|slot| {
        let mut s = slot.get();
        s.setup = both(s.setup, Some(setup));
        slot.set(s);
    });
    let _ = TELL.try_with(|tell| tell.as_ref().map(|tell| tell()));
}

/// Notes a mark on the connect being polled, if any.
fn mark(note: impl FnOnce(&mut Marks)) {
    let _ = CONNECT.try_with(|cell| {
        let mut marks = cell.get();
        note(&mut marks);
        cell.set(marks);
    });
}

/// The system's resolver (getaddrinfo on tokio's blocking pool, as reqwest's default), timed.
/// Its errors are the system's, word for word, which the failure lines and the host table
/// read (see `download::failure::host_learned`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Resolver;

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let start = Instant::now();
            // Port 0: reqwest puts the URL's port in.
            let found = tokio::net::lookup_host((host.as_str(), 0)).await;
            mark(|m| m.dns = Some(m.dns.unwrap_or_default() + start.elapsed()));
            let addrs: Vec<SocketAddr> = found?.collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// TLS resumption as rustls does it by default (an in-memory cache of 256 server names), plus
/// the mark of a handshake's start: rustls looks for a session to resume just before it writes
/// the ClientHello.
#[derive(Debug)]
pub(crate) struct TlsStart(ClientSessionMemoryCache);

/// The resumption setting for fetchpar's TLS configurations.
pub(crate) fn resumption() -> Resumption {
    Resumption::store(Arc::new(TlsStart(ClientSessionMemoryCache::new(256))))
}

fn tls_begins() {
    // The first mark wins: a TLS proxy's handshake comes before the origin's.
    mark(|m| {
        m.tls_start.get_or_insert_with(Instant::now);
    });
    // The TCP connection is up: a slow handshake is no lost SYN.
    dial_ends();
}

impl ClientSessionStore for TlsStart {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: rustls::NamedGroup) {
        self.0.set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        tls_begins();
        self.0.kx_hint(server_name)
    }

    fn set_tls12_session(
        &self,
        server_name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.0.set_tls12_session(server_name, value);
    }

    fn tls12_session(
        &self,
        server_name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        tls_begins();
        self.0.tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.0.remove_tls12_session(server_name);
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.0.insert_tls13_ticket(server_name, value);
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        tls_begins();
        self.0.take_tls13_ticket(server_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_layer::Layer as _;
    use tower_service::Service;

    /// A connector that resolves `name` with [`Resolver`] and then hands back the addresses.
    #[derive(Clone)]
    struct Lookup(&'static str);

    impl Service<()> for Lookup {
        type Response = Vec<SocketAddr>;
        type Error = Box<dyn std::error::Error + Send + Sync>;
        type Future = Boxed<Vec<SocketAddr>, Self::Error>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: ()) -> Self::Future {
            let name: Name = self.0.parse().unwrap();
            Box::pin(async move { Ok(Resolver.resolve(name).await?.collect()) })
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A `tell` that counts how often it was told.
    fn counting() -> (Arc<std::sync::atomic::AtomicUsize>, OnConnected) {
        let told = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = told.clone();
        let tell: OnConnected = Arc::new(move || {
            count.fetch_add(1, Ordering::SeqCst);
        });
        (told, tell)
    }

    #[test]
    fn a_connect_polled_by_the_request_is_its_own() {
        let (told, tell) = counting();
        let (found, setup) = runtime().block_on(timed(
            async { Layer.layer(Lookup("localhost")).call(()).await },
            Some(tell),
        ));
        assert!(!found.unwrap().is_empty());
        assert_eq!(told.load(Ordering::SeqCst), 1, "told once, as it came up");
        let setup = setup.expect("the request waited for this connect");
        assert!(setup.dns.is_some(), "{setup:?}");
        assert_eq!(setup.tls, None);
        // Outside any request there is no one to give a timing to, and nothing breaks.
        let alone = runtime().block_on(Layer.layer(Lookup("localhost")).call(()));
        assert!(alone.is_ok());
    }

    #[test]
    fn a_connection_is_told_of_only_while_its_answer_is_slow_to_come() {
        let (told, tell) = counting();
        let answered_in = |pause: Duration| {
            runtime().block_on(timed_unanswered(
                async {
                    let up = Layer.layer(Lookup("localhost")).call(()).await;
                    tokio::time::sleep(pause).await;
                    up
                },
                Some(tell.clone()),
                Duration::from_millis(20),
            ))
        };
        let (found, setup) = answered_in(Duration::ZERO);
        assert!(found.is_ok() && setup.is_some());
        assert_eq!(told.load(Ordering::SeqCst), 0, "answered at once: not told");
        let (found, _) = answered_in(Duration::from_millis(200));
        assert!(found.is_ok());
        assert_eq!(told.load(Ordering::SeqCst), 1, "told once, while it waited");
        // On a connection reused (no connect at all): told once it has waited as long.
        let (_, setup) = runtime().block_on(timed_unanswered(
            async { tokio::time::sleep(Duration::from_millis(200)).await },
            Some(tell.clone()),
            Duration::from_millis(20),
        ));
        assert_eq!(setup, None);
        assert_eq!(told.load(Ordering::SeqCst), 2);
        runtime().block_on(timed_unanswered(
            async {},
            Some(tell.clone()),
            Duration::from_millis(20),
        ));
        assert_eq!(told.load(Ordering::SeqCst), 2, "answered at once");
    }

    #[test]
    fn a_connect_finished_in_the_background_is_nobodys() {
        let rt = runtime();
        let told = Arc::new(AtomicBool::new(false));
        let flag = told.clone();
        let tell: OnConnected = Arc::new(move || flag.store(true, Ordering::SeqCst));
        let (_, setup) = rt.block_on(timed(
            async {
                // As hyper-util's pool does when an idle connection wins the race: the connect
                // goes on in a task of its own.
                let connect = Layer.layer(Lookup("localhost")).call(());
                tokio::spawn(connect).await.unwrap()
            },
            Some(tell),
        ));
        assert_eq!(setup, None);
        assert!(
            !told.load(Ordering::SeqCst),
            "a connect it did not wait for is not its own"
        );
    }

    /// A connector whose connect dials until `go` fires.
    #[derive(Clone)]
    struct Stuck(Arc<tokio::sync::Notify>);

    impl Service<()> for Stuck {
        type Response = ();
        type Error = Box<dyn std::error::Error + Send + Sync>;
        type Future = Boxed<(), Self::Error>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: ()) -> Self::Future {
            let go = self.0.clone();
            Box::pin(async move {
                go.notified().await;
                Ok(())
            })
        }
    }

    #[test]
    fn a_request_that_leaves_its_connect_to_the_background_dials_no_more() {
        let rt = runtime();
        let go = Arc::new(tokio::sync::Notify::new());
        let (seen, _) = rt.block_on(timed(
            async {
                let mut connect = Layer.layer(Stuck(go.clone())).call(());
                // Polled once by the request: it dials.
                assert!(futures_poll_once(&mut connect).await.is_pending());
                let dialing = dialing_since().is_some();
                // Then hyper-util's pool hands the request an idle connection and finishes the
                // connect in a task of its own.
                let background = tokio::spawn(connect);
                tokio::task::yield_now().await;
                let after = dialing_since();
                go.notify_one();
                background.await.unwrap().unwrap();
                (dialing, after)
            },
            None,
        ));
        assert_eq!(seen, (true, None));
    }

    /// Polls `future` once.
    async fn futures_poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
    }

    #[test]
    fn resolver_errors_are_the_systems_word_for_word() {
        let name = "no-such-host.invalid";
        let ours = runtime()
            .block_on(Resolver.resolve(name.parse().unwrap()))
            .err()
            .map(|e| e.to_string());
        let system = std::net::ToSocketAddrs::to_socket_addrs(&(name, 0))
            .err()
            .map(|e| e.to_string());
        assert_eq!(ours, system);
    }

    #[test]
    fn set_ups_of_two_hops_add_up() {
        let ms = Duration::from_millis;
        let a = Setup {
            dns: Some(ms(2)),
            connect: ms(3),
            tls: None,
        };
        let b = Setup {
            dns: None,
            connect: ms(10),
            tls: Some(ms(6)),
        };
        assert_eq!(both(None, None), None);
        assert_eq!(both(Some(a), None), Some(a));
        let sum = both(Some(a), Some(b)).unwrap();
        assert_eq!(
            (sum.dns, sum.connect, sum.tls),
            (Some(ms(2)), ms(13), Some(ms(6)))
        );
        assert_eq!(sum.total(), ms(15));
    }
}
