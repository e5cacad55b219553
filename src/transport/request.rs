//! One GET as a worker sends it: its headers, and the redirect chain followed hop by hop, each
//! hop routed on its own and carrying only the headers its origin may see (see the module docs
//! of [`crate::transport`]); what each hop showed of its host goes to the caller's
//! [`OnPresence`].

use std::marker::PhantomData;
use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, LOCATION};
use reqwest::Url;

use super::{Client, Error, Response, Via};
use crate::conntime::Setup;
use crate::download::MAX_REDIRECTS;

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

impl<'a> RequestBuilder<'a> {
    pub(super) fn new(client: &'a Client, url: Url) -> RequestBuilder<'a> {
        RequestBuilder {
            client,
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
