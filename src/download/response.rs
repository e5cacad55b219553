//! What a response means for the bytes already on disk: the one place that decides whether a
//! new response's bytes may be joined to them, start over, or end the download.
//!
//! [`classify`] is pure: it takes the facts of a response ([`ResponseFacts`], gathered from the
//! headers by [`ResponseFacts::of`]) and what is known about the part on disk ([`OnDisk`]), and
//! returns a [`Decision`]. Nothing here reads a socket or a file, so the rule is tested as a
//! table. `--split` pieces are checked by [`accept_piece`], on the same facts.

use std::time::{Duration, SystemTime};

use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, LOCATION, RETRY_AFTER};
use url::Url;

use super::failure::FailureKind;
use super::sidecar::{parse_content_range, ContentRange, PartMeta};
use crate::retry;
use crate::transport::Response;

/// What a response says, as plain values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ResponseFacts {
    pub status: u16,
    /// The status's standard phrase, for messages.
    pub canonical: Option<&'static str>,
    /// The `Content-Range` header as sent (for messages), and parsed.
    pub content_range_text: Option<String>,
    pub content_range: Option<ContentRange>,
    pub content_length: Option<u64>,
    /// `ETag` and `Last-Modified` (as a [`PartMeta`] holds them; its URL fields stay empty).
    pub validators: PartMeta,
    /// `Retry-After`, as a wait from now.
    pub retry_after: Option<Duration>,
    /// The scheme of the `Location` of a redirect, resolved against the URL asked.
    pub location_scheme: Option<String>,
}

impl ResponseFacts {
    /// The adapter: reads the headers of `response` to a GET of `url`.
    pub(crate) fn of(response: &Response, url: &Url) -> ResponseFacts {
        let status = response.status();
        let headers = response.headers();
        let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let content_range_text = text(CONTENT_RANGE).map(str::to_string);
        ResponseFacts {
            status: status.as_u16(),
            canonical: status.canonical_reason(),
            content_range: content_range_text.as_deref().and_then(parse_content_range),
            content_range_text,
            content_length: text(CONTENT_LENGTH).and_then(|v| v.trim().parse().ok()),
            validators: PartMeta::from_response(String::new(), headers, None),
            retry_after: text(RETRY_AFTER)
                .and_then(|v| retry::parse_retry_after(v, SystemTime::now())),
            location_scheme: text(LOCATION)
                .and_then(|v| url.join(v).ok())
                .map(|to| to.scheme().to_string()),
        }
    }
}

/// What is known about the bytes on disk when the request went out.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct OnDisk<'a> {
    /// `Some(n)`: the request asked for the bytes from `n` on (`Range: bytes=n-`), `n` being
    /// how many are on disk. `None`: it asked for the whole body.
    pub asked_from: Option<u64>,
    /// The sidecar of those bytes: the response they came from, and the full size it gave.
    pub meta: Option<&'a PartMeta>,
}

/// What to do with a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The body continues the bytes on disk: append it. `total` is the file's full size.
    Append {
        total: Option<u64>,
    },
    /// A whole body from byte 0 (whatever was on disk is from before): write it from the start.
    Whole {
        total: Option<u64>,
    },
    /// The bytes on disk do not fit the server's file: drop them and ask again from zero.
    StartOver,
    /// The bytes on disk are the whole file, `total` bytes long.
    Complete {
        total: u64,
    },
    Fail(FailureKind),
    /// Worth another try, after the server's `Retry-After` if it gave one.
    Retry(FailureKind, Option<Duration>),
}

/// The rule. A ranged answer is joined to the bytes on disk only when it is a 206 that starts
/// exactly at their end and carries the same validator as the response they came from; a 416
/// says they are complete only when it gives their exact length (and the sidecar's, if known).
pub(crate) fn classify(facts: &ResponseFacts, disk: OnDisk<'_>) -> Decision {
    let code = facts.status;
    match (code, disk.asked_from) {
        (206, Some(have)) => match facts.content_range {
            Some(ContentRange::Bytes { start, total, .. })
                if start == have
                    && disk
                        .meta
                        .is_some_and(|m| m.same_validators(&facts.validators)) =>
            {
                Decision::Append {
                    total: total.or_else(|| facts.content_length.map(|n| n + start)),
                }
            }
            // A range from another version or at the wrong offset: the part is useless.
            _ => Decision::StartOver,
        },
        (416, Some(have)) => {
            let expected = disk.meta.and_then(|m| m.total);
            match facts.content_range {
                Some(ContentRange::Unsatisfied { total })
                    if total == have && expected.is_none_or(|e| e == total) =>
                {
                    Decision::Complete { total }
                }
                // The part does not fit the server's file (longer, or another size).
                _ => Decision::StartOver,
            }
        }
        (206, None) => Decision::Fail(FailureKind::UnaskedPartial),
        (200..=299, _) => Decision::Whole {
            total: facts.content_length,
        },
        // The client follows every redirect it may; one it handed back leads nowhere we go.
        (300..=399, _) => Decision::Fail(match &facts.location_scheme {
            Some(scheme) if !matches!(scheme.as_str(), "http" | "https") => {
                FailureKind::RedirectScheme(scheme.clone())
            }
            _ => FailureKind::RedirectNowhere {
                status: code,
                canonical: facts.canonical,
            },
        }),
        _ => {
            let kind = FailureKind::Http {
                status: code,
                canonical: facts.canonical,
            };
            if retry::retryable_status(code) {
                Decision::Retry(kind, facts.retry_after)
            } else {
                Decision::Fail(kind)
            }
        }
    }
}

/// A `--split` piece's rule: a ranged GET for `start..end` is accepted only as a 206 for
/// exactly that range of a file of exactly `total` bytes (the piece's `If-Range` makes a
/// changed file answer 200; without a validator, the length is all that shows a change).
/// The error is the line a failed piece reports.
pub(crate) fn accept_piece(
    facts: &ResponseFacts,
    start: u64,
    end: u64,
    total: u64,
) -> Result<(), String> {
    let code = facts.status;
    if code != 206 {
        // A 200 answers an If-Range whose validator no longer matches; a 416, a range past a
        // shorter file. Any other status says nothing about the file.
        let hint = if matches!(code, 200 | 416) {
            " (the file may have changed)"
        } else {
            ""
        };
        return Err(format!(
            "a ranged request got HTTP {code} instead of 206{hint}"
        ));
    }
    match facts.content_range {
        Some(ContentRange::Bytes {
            start: s,
            end: e,
            total: t,
        }) if s == start && e == end - 1 => match t {
            Some(t) if t == total => Ok(()),
            Some(t) => Err(format!(
                "the file changed on the server (length {t}, was {total})"
            )),
            None => Err(format!(
                "the file changed on the server (length unknown, was {total})"
            )),
        },
        _ => Err(format!(
            "asked for bytes {start}-{} but the server sent '{}'",
            end - 1,
            facts.content_range_text.as_deref().unwrap_or("")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(etag: Option<&str>, date: Option<&str>, total: Option<u64>) -> PartMeta {
        PartMeta {
            etag: etag.map(str::to_string),
            last_modified: date.map(str::to_string),
            total,
            ..PartMeta::default()
        }
    }

    fn facts(status: u16, range: Option<ContentRange>, etag: Option<&str>) -> ResponseFacts {
        ResponseFacts {
            status,
            content_range: range,
            validators: meta(etag, None, None),
            ..ResponseFacts::default()
        }
    }

    fn bytes(start: u64, end: u64, total: Option<u64>) -> Option<ContentRange> {
        Some(ContentRange::Bytes { start, end, total })
    }

    #[test]
    fn joins_only_what_fits_the_bytes_on_disk() {
        let v1 = meta(Some("\"v1\""), None, Some(100));
        let dated = meta(None, Some("d1"), None);
        let on = |have, m| OnDisk {
            asked_from: Some(have),
            meta: m,
        };
        let whole = OnDisk::default();
        let unsat = |total| Some(ContentRange::Unsatisfied { total });
        let append = |total| Decision::Append { total };
        #[rustfmt::skip]
        let table: Vec<(ResponseFacts, OnDisk<'_>, Decision)> = vec![
            // 206 at the offset, same validator: join.
            (facts(206, bytes(40, 99, Some(100)), Some("\"v1\"")), on(40, Some(&v1)), append(Some(100))),
            // Unknown total: from Content-Length.
            (ResponseFacts { content_length: Some(60), ..facts(206, bytes(40, 99, None), Some("\"v1\"")) },
             on(40, Some(&v1)), append(Some(100))),
            (facts(206, bytes(40, 99, None), Some("\"v1\"")), on(40, Some(&v1)), append(None)),
            // Wrong offset, other validator, no validator, no sidecar, no Content-Range.
            (facts(206, bytes(41, 99, Some(100)), Some("\"v1\"")), on(40, Some(&v1)), Decision::StartOver),
            (facts(206, bytes(40, 99, Some(100)), Some("\"v2\"")), on(40, Some(&v1)), Decision::StartOver),
            (facts(206, bytes(40, 99, Some(100)), None), on(40, Some(&v1)), Decision::StartOver),
            (facts(206, bytes(40, 99, Some(100)), Some("\"v1\"")), on(40, None), Decision::StartOver),
            (facts(206, None, Some("\"v1\"")), on(40, Some(&v1)), Decision::StartOver),
            // Last-Modified when there is no ETag.
            (ResponseFacts { validators: meta(None, Some("d1"), None), ..facts(206, bytes(5, 9, Some(10)), None) },
             on(5, Some(&dated)), append(Some(10))),
            // 416: complete only at exactly the length on disk (and the sidecar's).
            (facts(416, unsat(40), None), on(40, None), Decision::Complete { total: 40 }),
            (facts(416, unsat(100), None), on(100, Some(&v1)), Decision::Complete { total: 100 }),
            (facts(416, unsat(40), None), on(40, Some(&v1)), Decision::StartOver),
            (facts(416, unsat(50), None), on(40, None), Decision::StartOver),
            (facts(416, None, None), on(40, None), Decision::StartOver),
            // A whole body starts over from byte 0, asked for or not.
            (ResponseFacts { content_length: Some(7), ..facts(200, None, None) }, on(40, Some(&v1)),
             Decision::Whole { total: Some(7) }),
            (facts(200, None, None), whole, Decision::Whole { total: None }),
            (facts(204, None, None), whole, Decision::Whole { total: None }),
            // Part of the file when all of it was asked for; 416 unasked is an HTTP error.
            (facts(206, bytes(0, 9, Some(10)), None), whole, Decision::Fail(FailureKind::UnaskedPartial)),
            (facts(416, unsat(10), None), whole, Decision::Fail(FailureKind::Http { status: 416, canonical: None })),
            (facts(404, None, None), on(40, Some(&v1)), Decision::Fail(FailureKind::Http { status: 404, canonical: None })),
            (facts(503, None, None), whole, Decision::Retry(FailureKind::Http { status: 503, canonical: None }, None)),
            (ResponseFacts { retry_after: Some(Duration::from_secs(3)), ..facts(429, None, None) }, whole,
             Decision::Retry(FailureKind::Http { status: 429, canonical: None }, Some(Duration::from_secs(3)))),
            (ResponseFacts { location_scheme: Some("ftp".into()), ..facts(302, None, None) }, whole,
             Decision::Fail(FailureKind::RedirectScheme("ftp".into()))),
            (facts(302, None, None), whole,
             Decision::Fail(FailureKind::RedirectNowhere { status: 302, canonical: None })),
        ];
        for (i, (facts, disk, want)) in table.iter().enumerate() {
            assert_eq!(&classify(facts, *disk), want, "row {i}");
        }
    }

    #[test]
    fn pieces_take_only_their_exact_range_of_the_planned_file() {
        let ok = facts(206, bytes(10, 19, Some(100)), None);
        assert_eq!(accept_piece(&ok, 10, 20, 100), Ok(()));
        let cases = [
            (
                facts(200, None, None),
                "a ranged request got HTTP 200 instead of 206 (the file may have changed)",
            ),
            (
                facts(503, None, None),
                "a ranged request got HTTP 503 instead of 206",
            ),
            (
                facts(206, bytes(10, 19, Some(90)), None),
                "the file changed on the server (length 90, was 100)",
            ),
            (
                facts(206, bytes(10, 19, None), None),
                "the file changed on the server (length unknown, was 100)",
            ),
            (
                ResponseFacts {
                    content_range_text: Some("bytes 0-9/100".into()),
                    ..facts(206, bytes(0, 9, Some(100)), None)
                },
                "asked for bytes 10-19 but the server sent 'bytes 0-9/100'",
            ),
        ];
        for (facts, line) in cases {
            assert_eq!(accept_piece(&facts, 10, 20, 100), Err(line.to_string()));
        }
    }
}
