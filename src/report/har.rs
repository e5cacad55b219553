//! `--har FILE`: the run as an HTTP Archive (HAR 1.2), for browser developer tools and HAR
//! viewers. One page per pass (`--compare` has several), one entry per request: retries,
//! `--split` pieces and each hop of a redirect chain (with its `redirectURL`, as Chrome lists
//! them) have their own.
//!
//! What fetchpar cannot know is `-1`, as the format allows: `blocked` always; `dns`, `connect`
//! and `ssl` on a reused connection (see [`crate::conntime`]), `dns` for an IP address and `ssl`
//! over plain HTTP. `connect` includes `ssl`, and `wait` excludes all set-up.
//!
//! The request headers are those the request was built with (see
//! `transport::RequestBuilder::headers_to_send`), every credential `***` (`--user`, netrc, URL
//! userinfo, `-H Authorization`/`Cookie`/API keys); so are response headers that carry
//! credentials, and URLs (a `Location` too) have their userinfo and query-string credentials
//! redacted (see [`crate::redact`]). `httpVersion` is written as Chrome writes
//! it (`HTTP/1.1`, `http/2.0`).

use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::trace::{Exchange, Trace};

/// The whole archive for these passes.
pub(crate) fn archive(passes: &[&Trace]) -> Value {
    let pages: Vec<Value> = passes
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({
                "startedDateTime": iso8601(t.started_at),
                "id": page_id(i),
                "title": format!("fetchpar pass {}: {} ({} downloads)", i + 1,
                    workers(t.jobs), t.rows.len()),
                "pageTimings": {},
            })
        })
        .collect();
    let mut entries: Vec<(SystemTime, Value)> = Vec::new();
    for (i, t) in passes.iter().enumerate() {
        for e in t.rows.iter().flat_map(|r| &r.exchanges) {
            let Some(sent) = e.sent else { continue };
            let started = t.wall_clock(sent);
            entries.push((started, entry(&page_id(i), started, e)));
        }
    }
    entries.sort_by_key(|(at, _)| *at);
    json!({
        "log": {
            "version": "1.2",
            "creator": {"name": "fetchpar", "version": env!("CARGO_PKG_VERSION")},
            "pages": pages,
            "entries": entries.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
        }
    })
}

fn workers(n: usize) -> String {
    format!("{n} worker{}", if n == 1 { "" } else { "s" })
}

fn page_id(i: usize) -> String {
    format!("pass-{}", i + 1)
}

/// Milliseconds, three decimals.
fn ms(d: Duration) -> f64 {
    thousandths(d.as_secs_f64() * 1e3)
}

fn thousandths(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

fn entry(page: &str, started: SystemTime, e: &Exchange) -> Value {
    let timings = timings(e);
    let time: f64 = ["blocked", "dns", "connect", "send", "wait", "receive"]
        .iter()
        .filter_map(|k| timings[*k].as_f64())
        .filter(|v| *v > 0.0)
        .sum();
    let header = |(name, value): &(String, String)| json!({"name": name, "value": value});
    let version = http_version(e.version);
    // What was sent: hyper writes HTTP/1.1 on every HTTP/1 connection, whatever the answer's
    // version (`python3 -m http.server` answers HTTP/1.0).
    let asked = match e.version {
        Some(reqwest::Version::HTTP_2) | None => version,
        Some(_) => "HTTP/1.1",
    };
    // HTTP/2 sends names in lower case.
    let h2 = e.version == Some(reqwest::Version::HTTP_2);
    let sent = |(name, value): &(String, String)| match h2 {
        true => header(&(name.to_ascii_lowercase(), value.clone())),
        false => header(&(name.clone(), value.clone())),
    };
    let mime = e
        .response_headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .map_or("x-unknown", |(_, v)| v.as_str());
    let mut entry = json!({
        "pageref": page,
        "startedDateTime": iso8601(started),
        "time": (time * 1e3).round() / 1e3,
        "request": {
            "method": "GET",
            "url": e.url,
            "httpVersion": asked,
            "cookies": [],
            "headers": e.request_headers.iter().map(sent).collect::<Vec<_>>(),
            "queryString": query_string(&e.url),
            "headersSize": -1,
            "bodySize": 0,
        },
        "response": {
            "status": e.status.unwrap_or(0),
            "statusText": e.status
                .and_then(|s| reqwest::StatusCode::from_u16(s).ok())
                .and_then(|s| s.canonical_reason())
                .unwrap_or(""),
            "httpVersion": version,
            "cookies": [],
            "headers": e.response_headers.iter().map(header).collect::<Vec<_>>(),
            "content": {"size": e.bytes, "mimeType": mime},
            "redirectURL": e.redirect.as_deref().unwrap_or(""),
            "headersSize": -1,
            "bodySize": e.bytes,
        },
        "cache": {},
        "timings": timings,
    });
    if let Some(piece) = e.piece {
        entry["_piece"] = json!(piece);
    }
    if let Some(error) = &e.error {
        entry["_error"] = json!(error);
    }
    entry
}

/// HAR timings: `send` is folded into `wait` (fetchpar does not see the request leave), and
/// `wait` is the first-byte wait less the connection set-up this request waited for. Set-up
/// is only known for a new connection: `-1` on a reused one, as the format asks.
fn timings(e: &Exchange) -> Value {
    let between = |a: Option<_>, b: Option<_>| match (a, b) {
        (Some(a), Some(b)) => Some(ms(std::time::Instant::saturating_duration_since(&b, a))),
        _ => None,
    };
    let known = |d: Option<Duration>| d.map_or(-1.0, ms);
    let setup = e.setup;
    let first_byte = between(e.sent, e.headers.or(e.end)).unwrap_or(0.0);
    let wait = thousandths((first_byte - setup.map_or(0.0, |s| ms(s.total()))).max(0.0));
    let receive = between(e.headers, e.end).unwrap_or(0.0);
    json!({
        "blocked": -1,
        "dns": known(setup.and_then(|s| s.dns)),
        "connect": known(setup.map(|s| s.connect)),
        "ssl": known(setup.and_then(|s| s.tls)),
        "send": 0,
        "wait": wait,
        "receive": receive,
    })
}

/// The version as Chrome's HAR export writes it: `HTTP/1.1` from the status line, `http/2.0`
/// for h2; `unknown` when no response came.
fn http_version(version: Option<reqwest::Version>) -> &'static str {
    use reqwest::Version;
    match version {
        Some(Version::HTTP_09) => "HTTP/0.9",
        Some(Version::HTTP_10) => "HTTP/1.0",
        Some(Version::HTTP_11) => "HTTP/1.1",
        Some(Version::HTTP_2) => "http/2.0",
        Some(Version::HTTP_3) => "http/3.0",
        _ => "unknown",
    }
}

fn query_string(url: &str) -> Vec<Value> {
    url::Url::parse(url)
        .map(|u| {
            u.query_pairs()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect()
        })
        .unwrap_or_default()
}

/// `2026-11-28T18:10:00.123Z`.
fn iso8601(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        (rest % 3600) / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Writes the archive beside `path` and renames it into place, so a reader never sees half.
pub(crate) fn write(path: &Path, passes: &[&Trace], replace: bool) -> io::Result<()> {
    super::write_file(path, replace, |file| {
        let mut out = io::BufWriter::new(file);
        serde_json::to_writer_pretty(&mut out, &archive(passes)).map_err(io::Error::other)?;
        out.write_all(b"\n")?;
        out.flush()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Phases, Row};
    use std::time::Instant;

    #[test]
    fn dates_are_iso8601_utc() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_889_400_123);
        assert_eq!(iso8601(t), "2026-11-28T18:10:00.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(iso8601(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn an_entry_per_request_with_unknowns_as_minus_one() {
        let start = Instant::now();
        let at = |ms| Some(start + Duration::from_millis(ms));
        let exchange = |sent, status| Exchange {
            url: "http://***@h/a?x=1".into(),
            sent: at(sent),
            headers: at(sent + 50),
            end: at(sent + 150),
            status,
            bytes: 10,
            response_headers: vec![("set-cookie".into(), "***".into())],
            ..Exchange::default()
        };
        let mut trace = Trace::new(2, start);
        trace.rows.push(Row {
            url: "http://***@h/a?x=1".into(),
            phases: Phases::default(),
            bytes: 10,
            status: Some(200),
            retries: 1,
            failure: None,
            exchanges: vec![exchange(0, Some(503)), exchange(200, Some(200))],
        });
        let har = archive(&[&trace]);
        let entries = har["log"]["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["response"]["status"], 503);
        let t = &entries[1]["timings"];
        assert_eq!(t["connect"], -1.0);
        assert_eq!(t["wait"], 50.0);
        assert_eq!(t["receive"], 100.0);
        assert_eq!(entries[1]["time"], 150.0);
        assert_eq!(entries[1]["request"]["queryString"][0]["name"], "x");
        assert_eq!(har["log"]["pages"][0]["id"], "pass-1");
    }

    #[test]
    fn the_request_is_http_1_1_whatever_an_http_1_server_answers() {
        let e = |version| Exchange {
            url: "http://h/a".into(),
            version: Some(version),
            ..Exchange::default()
        };
        let versions = |v| {
            let entry = entry("pass-1", UNIX_EPOCH, &e(v));
            (
                entry["request"]["httpVersion"].clone(),
                entry["response"]["httpVersion"].clone(),
            )
        };
        assert_eq!(
            versions(reqwest::Version::HTTP_10),
            (json!("HTTP/1.1"), json!("HTTP/1.0"))
        );
        assert_eq!(
            versions(reqwest::Version::HTTP_2),
            (json!("http/2.0"), json!("http/2.0"))
        );
    }
}
