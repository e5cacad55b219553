//! What it takes to resume a `.part` file safely: the validator of the response its bytes came
//! from, kept beside it in `NAME.part.meta`, and the `Content-Range` arithmetic.
//!
//! Without the validator a resumed download could splice two versions of a changed file: the
//! first half of the old one and the second half of the new. With it, the `Range` request carries
//! `If-Range`, the server answers 200 (start over) when the file changed, and a 206 is checked
//! against it again before a byte is appended.
//!
//! The sidecar also identifies the URL so that `-c` never resumes a part file that belongs to
//! another URL with the same name: by a SHA-256 of the full URL (so URLs that differ only in
//! their credentials do not share a part, and no secret is written down), plus the URL with
//! credentials removed, for people.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use reqwest::header::{HeaderMap, ETAG, LAST_MODIFIED};
use sha2::{Digest, Sha256};
use url::Url;

use crate::safefs;

const MAGIC: &str = "fetchpar-part 1";

/// Where a `.part` file came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartMeta {
    /// The URL as the user gave it, credentials removed (for people).
    pub url: String,
    /// [`url_key`] of the full URL (for matching).
    pub key: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The full size of the file, when the server said.
    pub total: Option<u64>,
}

/// What identifies a URL in a sidecar: the SHA-256 of the full URL, credentials included, in hex.
pub fn url_key(url: &Url) -> String {
    Sha256::digest(url.as_str().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `out/x.bin.part` → `out/x.bin.part.meta`.
pub fn meta_path(part: &Path) -> PathBuf {
    let mut os = part.as_os_str().to_owned();
    os.push(".meta");
    PathBuf::from(os)
}

impl PartMeta {
    /// The validators of a 200 response.
    pub fn from_response(url: String, headers: &HeaderMap, total: Option<u64>) -> PartMeta {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        PartMeta {
            url,
            key: String::new(),
            etag: text(ETAG),
            last_modified: text(LAST_MODIFIED),
            total,
        }
    }

    /// Whether there is anything to check a resumed response against.
    pub fn has_validator(&self) -> bool {
        self.etag.is_some() || self.last_modified.is_some()
    }

    /// The `If-Range` value: a strong ETag, else the date (a weak ETag may not be used there).
    pub fn if_range(&self) -> Option<&str> {
        match &self.etag {
            Some(etag) if !etag.starts_with("W/") => Some(etag),
            _ => self.last_modified.as_deref(),
        }
    }

    /// Whether `now` (the validators of a response) names the same version as this sidecar.
    pub(crate) fn same_validators(&self, now: &PartMeta) -> bool {
        match (&self.etag, &now.etag) {
            (Some(a), Some(b)) => a == b,
            _ => match (&self.last_modified, &now.last_modified) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            },
        }
    }

    /// Writes the sidecar of `part`. `owned`: the sidecar there is ours (this run wrote it, or
    /// it matched our URL), so it may be replaced; otherwise it is created only where nothing
    /// exists. Never through a symlink.
    pub fn save(&self, part: &Path, owned: bool) -> io::Result<()> {
        let mut text = format!("{MAGIC}\nurl {}\nurl-sha256 {}\n", self.url, self.key);
        if let Some(etag) = &self.etag {
            text.push_str(&format!("etag {etag}\n"));
        }
        if let Some(date) = &self.last_modified {
            text.push_str(&format!("last-modified {date}\n"));
        }
        if let Some(total) = self.total {
            text.push_str(&format!("total {total}\n"));
        }
        let path = meta_path(part);
        let mut file = if owned && safefs::occupied(&path) {
            safefs::open_regular(&path, OpenOptions::new().write(true).truncate(true))?
        } else {
            // `create_new` fails on anything there, a dangling symlink included.
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?
        };
        file.write_all(text.as_bytes())
    }

    /// Reads the sidecar of `part`; `None` if it is missing, not a regular file, or not ours.
    pub fn load(part: &Path) -> Option<PartMeta> {
        let file = safefs::open_regular(&meta_path(part), OpenOptions::new().read(true)).ok()?;
        let mut text = String::new();
        // A sidecar is a few lines: anything big is not one of ours.
        file.take(64 * 1024).read_to_string(&mut text).ok()?;
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let mut meta = PartMeta::default();
        for line in lines {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "url" => meta.url = value.to_string(),
                "url-sha256" => meta.key = value.to_string(),
                "etag" => meta.etag = Some(value.to_string()),
                "last-modified" => meta.last_modified = Some(value.to_string()),
                "total" => meta.total = value.parse().ok(),
                _ => {}
            }
        }
        (!meta.key.is_empty()).then_some(meta)
    }
}

/// Removes the sidecar of `part`, if any: only for a sidecar that is ours.
pub fn remove(part: &Path) {
    let _ = fs::remove_file(meta_path(part));
}

/// A `Content-Range` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentRange {
    /// `bytes START-END/TOTAL` (`TOTAL` may be `*`).
    Bytes {
        start: u64,
        end: u64,
        total: Option<u64>,
    },
    /// `bytes */TOTAL`, sent with 416.
    Unsatisfied { total: u64 },
}

pub fn parse_content_range(value: &str) -> Option<ContentRange> {
    let spec = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = spec.split_once('/')?;
    let total = total.trim();
    if range.trim() == "*" {
        return Some(ContentRange::Unsatisfied {
            total: total.parse().ok()?,
        });
    }
    let (start, end) = range.split_once('-')?;
    let (start, end) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    let total = match total {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    (start <= end && total.is_none_or(|t| end < t)).then_some(ContentRange::Bytes {
        start,
        end,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(reqwest::header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn sidecar_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("x.bin.part");
        let meta = PartMeta {
            url: "http://***@h/x.bin".into(),
            key: url_key(&Url::parse("http://u:p@h/x.bin").unwrap()),
            etag: Some("\"v1\"".into()),
            last_modified: Some("Sun, 22 Nov 2026 10:00:00 GMT".into()),
            total: Some(1234),
        };
        meta.save(&part, false).unwrap();
        assert_eq!(meta_path(&part), dir.path().join("x.bin.part.meta"));
        assert_eq!(PartMeta::load(&part), Some(meta.clone()));
        // Not ours: not replaced. Ours: replaced.
        assert!(meta.save(&part, false).is_err());
        let changed = PartMeta {
            total: Some(99),
            ..meta.clone()
        };
        changed.save(&part, true).unwrap();
        assert_eq!(PartMeta::load(&part), Some(changed));
        assert_ne!(
            url_key(&Url::parse("http://u:p@h/x.bin").unwrap()),
            url_key(&Url::parse("http://u:q@h/x.bin").unwrap())
        );
        remove(&part);
        assert_eq!(PartMeta::load(&part), None);
        fs::write(meta_path(&part), "something else\nurl x\n").unwrap();
        assert_eq!(PartMeta::load(&part), None);
    }

    fn same(meta: &PartMeta, headers: &HeaderMap) -> bool {
        meta.same_validators(&PartMeta::from_response(String::new(), headers, None))
    }

    #[test]
    fn validators_compare_etag_first() {
        let meta = PartMeta::from_response(
            "u".into(),
            &headers(&[(ETAG, "\"v1\""), (LAST_MODIFIED, "d1")]),
            None,
        );
        assert_eq!(meta.if_range(), Some("\"v1\""));
        assert!(same(&meta, &headers(&[(ETAG, "\"v1\"")])));
        assert!(!same(
            &meta,
            &headers(&[(ETAG, "\"v2\""), (LAST_MODIFIED, "d1")])
        ));
        assert!(same(&meta, &headers(&[(LAST_MODIFIED, "d1")])));
        assert!(!same(&meta, &HeaderMap::new()));
        let weak = PartMeta::from_response(
            "u".into(),
            &headers(&[(ETAG, "W/\"v1\""), (LAST_MODIFIED, "d1")]),
            None,
        );
        assert_eq!(weak.if_range(), Some("d1"));
        let none = PartMeta::from_response("u".into(), &HeaderMap::new(), None);
        assert!(!none.has_validator());
        assert_eq!(none.if_range(), None);
    }

    #[test]
    fn content_ranges_parse() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some(ContentRange::Bytes {
                start: 100,
                end: 199,
                total: Some(200)
            })
        );
        assert_eq!(
            parse_content_range("bytes 0-9/*"),
            Some(ContentRange::Bytes {
                start: 0,
                end: 9,
                total: None
            })
        );
        assert_eq!(
            parse_content_range("bytes */200"),
            Some(ContentRange::Unsatisfied { total: 200 })
        );
        assert_eq!(parse_content_range("bytes 10-5/200"), None);
        assert_eq!(parse_content_range("bytes 0-200/200"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }
}
