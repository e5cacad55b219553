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
    pub(crate) status: u16,
    /// The status's standard phrase, for messages.
    pub(crate) canonical: Option<&'static str>,
    /// The `Content-Range` header as sent (for messages), and parsed.
    pub(crate) content_range_text: Option<String>,
    pub(crate) content_range: Option<ContentRange>,
    pub(crate) content_length: Option<u64>,
    /// `ETag` and `Last-Modified` (as a [`PartMeta`] holds them; its URL fields stay empty).
    pub(crate) validators: PartMeta,
    /// `Retry-After`, as a wait from now.
    pub(crate) retry_after: Option<Duration>,
    /// The scheme of the `Location` of a redirect, resolved against the URL asked.
    pub(crate) location_scheme: Option<String>,
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
    pub(crate) asked_from: Option<u64>,
    /// The sidecar of those bytes: the response they came from, and the full size it gave.
    pub(crate) meta: Option<&'a PartMeta>,
    /// An expected checksum of the whole file is known and is checked before the file gets its
    /// name: it proves a join that no validator vouches for (see [`join`]).
    pub(crate) proof: bool,
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
    /// A bare 416 (Apache sends no `Content-Range: bytes */SIZE`): there is nothing past the
    /// bytes on disk, but whether they are all of the file takes learning its size another way,
    /// then classifying again with it.
    AskSize,
    Fail(FailureKind),
    /// Worth another try, after the server's `Retry-After` if it gave one.
    Retry(FailureKind, Option<Duration>),
}

/// Why a ranged answer may not be joined to bytes already on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mismatch {
    /// Not a 206 at all.
    Status(u16),
    /// Another range than the one asked for; the `Content-Range` as sent.
    Range(Option<String>),
    /// The asked-for range, with a body of another length (`Content-Length`): bytes that are
    /// not that range, whatever its first ones are.
    Body { range: u64, sent: u64 },
    /// Another complete length than the one the bytes on disk belong to.
    Length { now: Option<u64>, was: u64 },
    /// Another version of the file, or no validator that could tell.
    Validator,
}

impl Mismatch {
    /// Whether it shows that the server's file is not the one the bytes came from. A 200 answers
    /// an `If-Range` that no longer matches, a 416 a range past a shorter file; any other status
    /// (a 503) says nothing about the file.
    pub(crate) fn file_changed(&self) -> bool {
        !matches!(self, Mismatch::Status(code) if !matches!(code, 200 | 416))
    }

    /// The line a refused range reports; `start..end` is the range asked for.
    pub(crate) fn line(&self, start: u64, end: Option<u64>) -> String {
        match self {
            Mismatch::Status(code) => {
                let hint = if self.file_changed() {
                    " (the file may have changed)"
                } else {
                    ""
                };
                format!("a ranged request got HTTP {code} instead of 206{hint}")
            }
            Mismatch::Range(sent) => format!(
                "asked for bytes {start}-{} but the server sent '{}'",
                end.map_or(String::new(), |end| (end - 1).to_string()),
                sent.as_deref().unwrap_or("")
            ),
            Mismatch::Body { range, sent } => format!(
                "asked for {range} bytes from {start} and the server sent that range with a \
                 body of {sent} bytes"
            ),
            Mismatch::Length {
                now: Some(now),
                was,
            } => {
                format!("the file changed on the server (length {now}, was {was})")
            }
            Mismatch::Length { now: None, was } => {
                format!("the file changed on the server (length unknown, was {was})")
            }
            Mismatch::Validator => {
                "the server sent another version of the file (its ETag or Last-Modified differs, \
                 or there is none to check)"
                    .to_string()
            }
        }
    }
}

/// The one rule for joining bytes, used by the in-run retry, `-c` and every `--split` piece:
/// the answer to a request for the bytes from `start` (up to `end`, exclusive, when given) may
/// be joined to bytes that came from the response `known` describes only when it is a 206 for
/// exactly that range, of a file of the length `known` gives (when it gave one), carrying the
/// same validator (a strong ETag when `known` has one, else Last-Modified; a weak ETag alone
/// never does). `proof` (an expected checksum that will check the whole file) stands in for the
/// validator, never for the range or the length: those mismatches prove a change outright.
/// Returns the file's complete length, when known.
pub(crate) fn join(
    known: &PartMeta,
    facts: &ResponseFacts,
    start: u64,
    end: Option<u64>,
    proof: bool,
) -> Result<Option<u64>, Mismatch> {
    if facts.status != 206 {
        return Err(Mismatch::Status(facts.status));
    }
    let now = match facts.content_range {
        Some(ContentRange::Bytes {
            start: s,
            end: e,
            total,
        }) if s == start && end.is_none_or(|end| e + 1 == end) => {
            // An open range runs to the end of the file: its length gives the total too.
            total.or_else(|| {
                end.is_none()
                    .then_some(facts.content_length)
                    .flatten()
                    .map(|n| n + s)
            })
        }
        _ => return Err(Mismatch::Range(facts.content_range_text.clone())),
    };
    // A server that labels the whole file as the range (or any other body) would have it
    // joined at the offset: the body must be as long as the range it claims.
    if let Some(ContentRange::Bytes {
        start: s, end: e, ..
    }) = facts.content_range
    {
        let range = (e - s).saturating_add(1);
        match facts.content_length {
            Some(sent) if sent != range => return Err(Mismatch::Body { range, sent }),
            _ => {}
        }
    }
    if let Some(was) = known.total {
        if now != Some(was) {
            return Err(Mismatch::Length { now, was });
        }
    }
    if !proof && !known.same_validators(&facts.validators) {
        return Err(Mismatch::Validator);
    }
    Ok(now)
}

/// The rule for a whole download. A ranged answer is joined to the bytes on disk only as
/// [`join`] says; a 416 says they are complete only when it gives their exact length (and the
/// sidecar's, if known).
pub(crate) fn classify(facts: &ResponseFacts, disk: OnDisk<'_>) -> Decision {
    let code = facts.status;
    match (code, disk.asked_from) {
        (206, Some(have)) => {
            let unknown = PartMeta::default();
            let known = disk.meta.unwrap_or(&unknown);
            match join(known, facts, have, None, disk.proof) {
                Ok(total) => Decision::Append { total },
                // A range from another version, of another length or at the wrong offset: the
                // part is useless.
                Err(_) => Decision::StartOver,
            }
        }
        (416, Some(have)) => {
            let expected = disk.meta.and_then(|m| m.total);
            match facts.content_range {
                Some(ContentRange::Unsatisfied { total })
                    if total == have && expected.is_none_or(|e| e == total) =>
                {
                    Decision::Complete { total }
                }
                None => Decision::AskSize,
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

/// `-N`: whether the answer to `If-Modified-Since: since` leaves the file on disk as it is. A
/// 304 says so; so does a 200 whose `Last-Modified` is not later than `since`, from a server
/// that does not compare dates the way the header asks (nginx's default
/// `if_modified_since exact` answers 200 whenever they differ, older too), which would
/// otherwise replace a newer file with an older one. Whole seconds, as HTTP dates have. A 200
/// without a readable `Last-Modified` cannot tell: it replaces the file.
pub(crate) fn still_current(facts: &ResponseFacts, since: SystemTime) -> bool {
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
    };
    let served = facts
        .validators
        .last_modified
        .as_deref()
        .and_then(|d| httpdate::parse_http_date(d).ok());
    match (facts.status, served) {
        (304, _) => true,
        (200, Some(served)) => match (secs(served), secs(since)) {
            (Ok(served), Ok(local)) => served <= local,
            // A file on disk dated before 1970 is older than anything a server can date.
            (Ok(_), Err(_)) => false,
            (Err(_), _) => true,
        },
        _ => false,
    }
}

/// The size of the file as learnt from an answer to `Range: bytes=0-0` (its `Content-Range`
/// total) or from a 200 or a HEAD (its `Content-Length`); `None` if it does not say.
pub(crate) fn size_of(facts: &ResponseFacts) -> Option<u64> {
    match (facts.status, facts.content_range) {
        (206, Some(ContentRange::Bytes { total, .. })) => total,
        (200, None) => facts.content_length,
        _ => None,
    }
}

/// A `--split` piece's rule: [`join`] for exactly the range `start..end` of the file the first
/// response described (`known`: its validators and its total). The error says why not.
pub(crate) fn accept_piece(
    facts: &ResponseFacts,
    start: u64,
    end: u64,
    known: &PartMeta,
    proof: bool,
) -> Result<(), Mismatch> {
    join(known, facts, start, Some(end), proof).map(drop)
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
            proof: false,
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
            // The length unknown while the bytes on disk have one: no join.
            (facts(206, bytes(40, 99, None), Some("\"v1\"")), on(40, Some(&v1)), Decision::StartOver),
            // Wrong offset, other validator, no validator, no sidecar, no Content-Range.
            (facts(206, bytes(41, 99, Some(100)), Some("\"v1\"")), on(40, Some(&v1)), Decision::StartOver),
            (facts(206, bytes(40, 99, Some(100)), Some("\"v2\"")), on(40, Some(&v1)), Decision::StartOver),
            (facts(206, bytes(40, 99, Some(100)), None), on(40, Some(&v1)), Decision::StartOver),
            (facts(206, bytes(40, 99, Some(100)), Some("\"v1\"")), on(40, None), Decision::StartOver),
            (facts(206, None, Some("\"v1\"")), on(40, Some(&v1)), Decision::StartOver),
            // The range as asked, with a body of another length (the whole file labelled as it).
            (ResponseFacts { content_length: Some(100), ..facts(206, bytes(40, 99, Some(100)), Some("\"v1\"")) },
             on(40, Some(&v1)), Decision::StartOver),
            // Last-Modified when there is no ETag.
            (ResponseFacts { validators: meta(None, Some("d1"), None), ..facts(206, bytes(5, 9, Some(10)), None) },
             on(5, Some(&dated)), append(Some(10))),
            // 416: complete only at exactly the length on disk (and the sidecar's).
            (facts(416, unsat(40), None), on(40, None), Decision::Complete { total: 40 }),
            (facts(416, unsat(100), None), on(100, Some(&v1)), Decision::Complete { total: 100 }),
            (facts(416, unsat(40), None), on(40, Some(&v1)), Decision::StartOver),
            (facts(416, unsat(50), None), on(40, None), Decision::StartOver),
            // A bare 416: the size must be learnt another way.
            (facts(416, None, None), on(40, None), Decision::AskSize),
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

    /// Every combination of validators, offset, complete length and proof, for a whole-file
    /// resume and for a `--split` piece. The expectation is the rule as the design states it.
    #[test]
    fn join_rule_every_combination() {
        let v = |etag: Option<&str>, date: Option<&str>| meta(etag, date, None);
        #[rustfmt::skip]
        let validators = [
            // (the bytes on disk came with, the 206 carries, the same version?)
            (v(Some("\"a\""), None), v(Some("\"a\""), None), true),
            (v(Some("\"a\""), None), v(Some("\"b\""), None), false),
            (v(Some("\"a\""), Some("d1")), v(None, Some("d1")), false),
            (v(Some("\"a\""), Some("d1")), v(Some("\"a\""), Some("d2")), true),
            (v(Some("\"a\""), None), v(Some("W/\"a\""), None), false),
            (v(Some("W/\"a\""), None), v(Some("W/\"a\""), None), false),
            (v(Some("W/\"a\""), Some("d1")), v(Some("W/\"b\""), Some("d1")), true),
            (v(Some("W/\"a\""), Some("d1")), v(Some("W/\"a\""), Some("d2")), false),
            (v(None, Some("d1")), v(None, Some("d1")), true),
            (v(None, Some("d1")), v(None, Some("d2")), false),
            (v(None, Some("d1")), v(None, None), false),
            (v(None, None), v(None, None), false),
            (v(None, None), v(Some("\"a\""), Some("d1")), false),
        ];
        // (Content-Range start, its total, Content-Length): the complete length they give.
        let answers = [
            (40, Some(100), None, Some(100)),
            (40, Some(150), None, Some(150)),
            (40, None, Some(60), Some(100)),
            (40, None, Some(110), Some(150)),
            (40, Some(100), Some(100), Some(100)),
            (40, None, None, None),
            (41, Some(100), None, Some(100)),
        ];
        let mut rows = 0;
        for (on_disk, now, same) in &validators {
            for known_total in [Some(100), None] {
                for answer in answers {
                    for (proof, status) in [false, true]
                        .into_iter()
                        .flat_map(|p| [206, 200, 416, 503].map(|s| (p, s)))
                    {
                        let case = Case {
                            on_disk,
                            now,
                            same: *same,
                            known_total,
                            answer,
                            proof,
                            status,
                        };
                        case.check();
                        rows += 1;
                    }
                }
            }
        }
        assert_eq!(rows, 13 * 2 * 7 * 2 * 4);
    }

    /// One combination of [`join_rule_every_combination`].
    struct Case<'a> {
        on_disk: &'a PartMeta,
        now: &'a PartMeta,
        same: bool,
        known_total: Option<u64>,
        /// (Content-Range start, its total, Content-Length, the complete length they give)
        answer: (u64, Option<u64>, Option<u64>, Option<u64>),
        proof: bool,
        status: u16,
    }

    impl Case<'_> {
        fn check(&self) {
            let (start, total, length, gives) = self.answer;
            let (proof, status) = (self.proof, self.status);
            let f = ResponseFacts {
                status,
                content_range: bytes(start, 99, total),
                content_length: length,
                validators: self.now.clone(),
                ..ResponseFacts::default()
            };
            let known = PartMeta {
                total: self.known_total,
                ..self.on_disk.clone()
            };
            // A body as long as the range it claims (bytes 40-99: 60); 110 is not.
            let whole_body = length.is_none_or(|n| n == 100 - start);
            let fits =
                start == 40 && whole_body && self.known_total.is_none_or(|t| gives == Some(t));
            let joins = status == 206 && fits && (proof || self.same);
            let disk = OnDisk {
                asked_from: Some(40),
                meta: Some(&known),
                proof,
            };
            let got = classify(&f, disk);
            let want = match status {
                206 if joins => Decision::Append { total: gives },
                206 | 416 => Decision::StartOver,
                200 => Decision::Whole { total: length },
                _ => got.clone(),
            };
            assert_eq!(got, want, "{f:?} on {known:?}, proof {proof}");
            assert_eq!(join(&known, &f, 40, None, proof).is_ok(), joins);
            // A piece is the range 40..100 of a file planned at 100 bytes.
            let planned = PartMeta {
                total: Some(100),
                ..self.on_disk.clone()
            };
            let piece = status == 206
                && start == 40
                && whole_body
                && total == Some(100)
                && (proof || self.same);
            let accepted = accept_piece(&f, 40, 100, &planned, proof);
            assert_eq!(accepted.is_ok(), piece, "piece {f:?}, proof {proof}");
        }
    }

    #[test]
    fn pieces_take_only_their_exact_range_of_the_planned_file() {
        let planned = meta(Some("\"v1\""), None, Some(100));
        let piece = |status, range, etag| facts(status, range, etag);
        let ok = piece(206, bytes(10, 19, Some(100)), Some("\"v1\""));
        assert_eq!(accept_piece(&ok, 10, 20, &planned, false), Ok(()));
        let cases = [
            (
                piece(200, None, None),
                "a ranged request got HTTP 200 instead of 206 (the file may have changed)",
                true,
            ),
            (
                piece(503, None, None),
                "a ranged request got HTTP 503 instead of 206",
                false,
            ),
            (
                piece(206, bytes(10, 19, Some(90)), Some("\"v1\"")),
                "the file changed on the server (length 90, was 100)",
                true,
            ),
            (
                piece(206, bytes(10, 19, None), Some("\"v1\"")),
                "the file changed on the server (length unknown, was 100)",
                true,
            ),
            (
                ResponseFacts {
                    content_range_text: Some("bytes 0-9/100".into()),
                    ..piece(206, bytes(0, 9, Some(100)), Some("\"v1\""))
                },
                "asked for bytes 10-19 but the server sent 'bytes 0-9/100'",
                true,
            ),
            (
                ResponseFacts {
                    content_length: Some(100),
                    ..piece(206, bytes(10, 19, Some(100)), Some("\"v1\""))
                },
                "asked for 10 bytes from 10 and the server sent that range with a body of 100 \
                 bytes",
                true,
            ),
            (
                piece(206, bytes(10, 19, Some(100)), Some("\"v2\"")),
                "the server sent another version of the file (its ETag or Last-Modified \
                 differs, or there is none to check)",
                true,
            ),
        ];
        for (facts, line, changed) in cases {
            let refused = accept_piece(&facts, 10, 20, &planned, false).unwrap_err();
            assert_eq!(refused.line(10, Some(20)), line);
            assert_eq!(refused.file_changed(), changed, "{line}");
        }
    }

    #[test]
    fn sizes_come_from_a_first_byte_range_or_a_length() {
        let f = |status, range, length| ResponseFacts {
            status,
            content_range: range,
            content_length: length,
            ..ResponseFacts::default()
        };
        assert_eq!(size_of(&f(206, bytes(0, 0, Some(500)), Some(1))), Some(500));
        assert_eq!(size_of(&f(206, bytes(0, 0, None), Some(1))), None);
        assert_eq!(size_of(&f(200, None, Some(500))), Some(500));
        assert_eq!(size_of(&f(200, None, None)), None);
        assert_eq!(size_of(&f(404, None, Some(9))), None);
    }

    #[test]
    fn a_file_stays_current_unless_the_server_dates_its_own_later() {
        let local = httpdate::parse_http_date("Sat, 01 Jun 2024 12:00:00 GMT").unwrap();
        // Within that second: HTTP dates have no fractions.
        let since = local + Duration::from_millis(700);
        let f = |status, date: Option<&str>| ResponseFacts {
            status,
            validators: meta(None, date, None),
            ..ResponseFacts::default()
        };
        #[rustfmt::skip]
        let table = [
            (f(304, None), true),
            (f(200, Some("Sun, 01 Jan 2023 12:00:00 GMT")), true),
            (f(200, Some("Sat, 01 Jun 2024 12:00:00 GMT")), true),
            (f(200, Some("Sat, 01 Jun 2024 12:00:01 GMT")), false),
            (f(200, None), false),
            (f(200, Some("not a date")), false),
            // Another success is not the answer to the question: it is downloaded as usual.
            (f(203, Some("Sun, 01 Jan 2023 12:00:00 GMT")), false),
        ];
        for (facts, current) in table {
            assert_eq!(still_current(&facts, since), current, "{facts:?}");
        }
        let before_1970 = SystemTime::UNIX_EPOCH - Duration::from_secs(60);
        assert!(!still_current(
            &f(200, Some("Thu, 01 Jan 1970 00:00:00 GMT")),
            before_1970
        ));
    }
}
