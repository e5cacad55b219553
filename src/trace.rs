//! When each phase of one download began and ended: what the `--json` records' phase timings,
//! the summary's estimate (see [`crate::estimate`]) and any picture of the run are drawn from.
//!
//! Workers fill [`Phases`] with monotonic instants as they go (a handful of `Instant::now()` per
//! download, none per chunk); the main thread turns them into durations and offsets.

use std::time::{Duration, Instant, SystemTime};

use reqwest::header::HeaderMap;

/// One download's phases. Each instant is `None` when the download never got that far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Phases {
    /// When the job was put in the queue.
    pub(crate) queued: Option<Instant>,
    /// When a worker took it.
    pub(crate) began: Option<Instant>,
    /// When the request that brought the body (the last attempt's) was sent.
    pub(crate) sent: Option<Instant>,
    /// Connection set-up (TCP and TLS) for that request, when it opened a new connection and
    /// that was measured; `None` on a reused connection.
    pub(crate) connect: Option<Duration>,
    /// When its response headers were in.
    pub(crate) headers: Option<Instant>,
    /// When the body had all arrived (or stopped arriving).
    pub(crate) body_end: Option<Instant>,
    /// When the file had its final name (or the download had failed).
    pub(crate) ended: Option<Instant>,
}

fn between(a: Option<Instant>, b: Option<Instant>) -> Option<Duration> {
    Some(b?.saturating_duration_since(a?))
}

impl Phases {
    /// Waiting in the queue for a worker.
    pub(crate) fn queued(&self) -> Option<Duration> {
        between(self.queued, self.began)
    }

    /// Request sent to response headers (connection set-up included when there was one).
    pub(crate) fn first_byte(&self) -> Option<Duration> {
        between(self.sent, self.headers)
    }

    /// Response headers to the end of the body.
    pub(crate) fn receive(&self) -> Option<Duration> {
        between(self.headers, self.body_end)
    }

    /// End of the body to the final name.
    pub(crate) fn commit(&self) -> Option<Duration> {
        between(self.body_end, self.ended)
    }

    /// These phases with `earlier`'s queueing and start: for a new attempt of the same download.
    pub(crate) fn keep_queueing(self, earlier: &Phases) -> Phases {
        Phases {
            queued: earlier.queued,
            began: earlier.began,
            ..self
        }
    }

    /// Offset of `at` from the start of the run, if both are known.
    pub(crate) fn offset(run_start: Instant, at: Option<Instant>) -> Option<Duration> {
        Some(at?.saturating_duration_since(run_start))
    }
}

/// One request and its response, as `--har` lists it (only gathered when asked for: it keeps
/// the response headers). Every retry and every `--split` piece is one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Exchange {
    /// Credentials already removed.
    pub(crate) url: String,
    /// Every header the request carried but those the HTTP stack adds itself (`Host`, and
    /// `Proxy-Authorization` through a proxy), credentials redacted ([`request_headers`]).
    pub(crate) request_headers: Vec<(String, String)>,
    /// The response's HTTP version.
    pub(crate) version: Option<reqwest::Version>,
    pub(crate) sent: Option<Instant>,
    /// Connection set-up, when this request opened a connection (see [`crate::conntime`]).
    pub(crate) setup: Option<crate::conntime::Setup>,
    pub(crate) headers: Option<Instant>,
    pub(crate) end: Option<Instant>,
    /// `None` when no response came.
    pub(crate) status: Option<u16>,
    /// Secrets (`Set-Cookie` and the like) redacted.
    pub(crate) response_headers: Vec<(String, String)>,
    /// Body bytes received.
    pub(crate) bytes: u64,
    /// The `--split` piece it fetched, if one.
    pub(crate) piece: Option<usize>,
    /// Why it ended without a usable body, if it did.
    pub(crate) error: Option<String>,
    /// Where a redirect sent the next request (credentials redacted).
    pub(crate) redirect: Option<String>,
}

/// One request of a redirect chain, as the transport saw it (see
/// `transport::RequestBuilder::record_hops`): its own URL, headers and timing, and for a
/// redirect where it led, so that `--har` lists each hop as a browser does.
pub(crate) fn hop(
    url: &url::Url,
    request_headers: &HeaderMap,
    response: &reqwest::Response,
    (sent, answered, setup): (Instant, Instant, Option<crate::conntime::Setup>),
    to: Option<&url::Url>,
) -> Exchange {
    let answered = Some(answered);
    Exchange {
        url: crate::redact::url(url),
        request_headers: self::request_headers(request_headers),
        version: Some(response.version()),
        sent: Some(sent),
        setup,
        headers: answered,
        end: answered,
        status: Some(response.status().as_u16()),
        response_headers: headers_of(response.headers()),
        redirect: to.map(crate::redact::url),
        ..Exchange::default()
    }
}

/// The request of a redirect chain that got no answer (refused, timed out): its URL, headers
/// and when it was sent; the attempt's error is added by whoever traces it.
pub(crate) fn unanswered(url: &url::Url, request_headers: &HeaderMap, sent: Instant) -> Exchange {
    Exchange {
        url: crate::redact::url(url),
        request_headers: self::request_headers(request_headers),
        sent: Some(sent),
        ..Exchange::default()
    }
}

/// Header names whose values are credentials in one direction or the other.
const SECRET_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "proxy-authenticate",
];

/// A request's headers for the trace, with credentials replaced by `***`: those fetchpar
/// treats as secret everywhere (`-H` values it marks, basic auth, netrc), and any value the HTTP
/// stack marks sensitive. Names as HTTP/1.1 sends them (`User-Agent`).
pub(crate) fn request_headers(map: &HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(name, value)| {
            let secret = value.is_sensitive()
                || crate::request::is_secret(name)
                || SECRET_HEADERS.contains(&name.as_str());
            let value = match secret {
                true => "***".to_string(),
                false => String::from_utf8_lossy(value.as_bytes()).into_owned(),
            };
            (title_case(name.as_str()), value)
        })
        .collect()
}

/// `user-agent` as `User-Agent`, as reqwest writes names on an HTTP/1.1 connection.
fn title_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper { c.to_ascii_uppercase() } else { c });
        upper = c == '-';
    }
    out
}

/// Response headers whose value is a URL, which may carry a token: a redirect to a presigned
/// URL hands over the credential in its `Location`.
const URL_HEADERS: [&str; 2] = ["location", "content-location"];

/// A response's headers for the trace, with credentials replaced by `***`, and URLs shown as
/// [`crate::redact`] shows them.
pub(crate) fn headers_of(map: &HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(name, value)| {
            let text = String::from_utf8_lossy(value.as_bytes());
            let value = match name.as_str() {
                n if SECRET_HEADERS.contains(&n) => "***".to_string(),
                n if URL_HEADERS.contains(&n) => crate::redact::text(&text),
                _ => text.into_owned(),
            };
            (name.as_str().to_string(), value)
        })
        .collect()
}

/// One download as a picture or an archive shows it.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    /// Credentials already removed.
    pub(crate) url: String,
    pub(crate) phases: Phases,
    pub(crate) bytes: u64,
    pub(crate) status: Option<u16>,
    pub(crate) retries: u32,
    /// Why it failed, if it did.
    pub(crate) failure: Option<String>,
    pub(crate) exchanges: Vec<Exchange>,
}

/// A pass's downloads, kept by the main thread only when `--har` or `--timeline` asks.
#[derive(Clone, Debug)]
pub(crate) struct Trace {
    /// The pass's worker count.
    pub(crate) jobs: usize,
    /// When the pass started, on the monotonic clock and on the wall clock.
    pub(crate) start: Instant,
    pub(crate) started_at: SystemTime,
    pub(crate) rows: Vec<Row>,
}

impl Trace {
    pub(crate) fn new(jobs: usize, start: Instant) -> Trace {
        Trace {
            jobs,
            start,
            started_at: SystemTime::now(),
            rows: Vec::new(),
        }
    }

    /// The wall-clock time of a monotonic instant of this pass.
    pub(crate) fn wall_clock(&self, at: Instant) -> SystemTime {
        self.started_at + at.saturating_duration_since(self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_differences_and_missing_ends_give_none() {
        let t0 = Instant::now();
        let at = |ms| Some(t0 + Duration::from_millis(ms));
        let p = Phases {
            queued: at(0),
            began: at(5),
            sent: at(6),
            connect: None,
            headers: at(56),
            body_end: at(156),
            ended: at(158),
        };
        assert_eq!(p.queued(), Some(Duration::from_millis(5)));
        assert_eq!(p.first_byte(), Some(Duration::from_millis(50)));
        assert_eq!(p.receive(), Some(Duration::from_millis(100)));
        assert_eq!(p.commit(), Some(Duration::from_millis(2)));
        let refused = Phases {
            body_end: None,
            headers: None,
            ..p
        };
        assert_eq!(refused.first_byte(), None);
        assert_eq!(refused.receive(), None);
        assert_eq!(Phases::offset(t0, at(6)), Some(Duration::from_millis(6)));
    }

    #[test]
    fn secret_response_headers_are_redacted() {
        let mut map = HeaderMap::new();
        map.insert("set-cookie", "session=s3cret".parse().unwrap());
        map.insert("content-type", "text/plain".parse().unwrap());
        let h = headers_of(&map);
        assert!(h.contains(&("set-cookie".into(), "***".into())));
        assert!(h.contains(&("content-type".into(), "text/plain".into())));
        assert!(!format!("{h:?}").contains("s3cret"));
    }

    #[test]
    fn a_location_keeps_its_url_but_not_its_token() {
        let mut map = HeaderMap::new();
        map.insert("location", "/b?sig=s3cret&n=1".parse().unwrap());
        map.insert("content-location", "http://u:pw@h/c".parse().unwrap());
        let h = headers_of(&map);
        assert!(h.contains(&("location".into(), "/b?sig=***&n=1".into())));
        assert!(h.contains(&("content-location".into(), "http://***@h/c".into())));
    }
}
