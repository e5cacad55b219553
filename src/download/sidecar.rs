//! What it takes to resume a `.part` file safely: the validator of the response its bytes came
//! from, kept beside it in `NAME.part.meta`, and the `Content-Range` arithmetic.
//!
//! Without the validator a resumed download could splice two versions of a changed file: the
//! first half of the old one and the second half of the new. With it, the `Range` request carries
//! `If-Range`, the server answers 200 (start over) when the file changed, and a 206 is checked
//! against it again before a byte is appended.
//!
//! A sidecar is written whole or not at all (a temporary name, then a rename). A contiguous
//! format says the part's bytes from 0 to its length are genuine; a sparse one (`--split`
//! preallocates the file) lists the ranges that are, under a version of its own, so a fetchpar
//! that knows only the contiguous format never takes the holes for data (see `FORMATS`).
//!
//! The sidecar also identifies the URL so that `-c` never resumes a part file that belongs to
//! another URL with the same name: by [`url_key`], a SHA-256 of the URL with its credentials
//! (and fragment) removed, plus that URL with credentials hidden, for people. Nothing derived
//! from a secret is written down: an unsalted hash of a URL with a password in it gives the
//! password back to a short guess list. URLs that differ only in credentials share a part: they
//! name the same resource.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use reqwest::header::{HeaderMap, ETAG, LAST_MODIFIED};
use sha2::{Digest, Sha256};
use url::Url;

use crate::safefs;

/// Each format's first line, what its `url-sha256` hashes and whether the part is sparse.
/// Formats 1 and 2 (before issue 9) hash the full URL, credentials included ([`legacy_key`]);
/// 3 and 4 hash [`url_key`], and only they are written now. A sparse part (preallocated by
/// `--split`) lists in a `ranges` line the only ranges that hold genuine bytes, under a version of
/// its own, so that a fetchpar that knows only the contiguous format never takes the holes for
/// data: it sees a sidecar that is not its own and leaves it alone.
const FORMATS: [Format; 4] = [
    Format {
        magic: "fetchpar-part 1",
        legacy: true,
        sparse: false,
    },
    Format {
        magic: "fetchpar-part 2",
        legacy: true,
        sparse: true,
    },
    Format {
        magic: "fetchpar-part 3",
        legacy: false,
        sparse: false,
    },
    Format {
        magic: "fetchpar-part 4",
        legacy: false,
        sparse: true,
    },
];

struct Format {
    magic: &'static str,
    legacy: bool,
    sparse: bool,
}

/// Where a `.part` file came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PartMeta {
    /// The URL as the user gave it, credentials removed (for people).
    pub(crate) url: String,
    /// [`url_key`] of the URL (for matching; see [`PartMeta::is_for`]).
    pub(crate) key: String,
    /// Read from a format-1 or -2 sidecar, whose `key` is a [`legacy_key`].
    pub(crate) legacy: bool,
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<String>,
    /// The full size of the file, when the server said.
    pub(crate) total: Option<u64>,
    /// `Some`: the part is sparse, and these byte ranges (`start..end`, in order) are all that
    /// is genuine in it; `None`: the part's bytes from 0 to its length are all genuine.
    pub(crate) ranges: Option<Vec<(u64, u64)>>,
}

/// What identifies a URL in a sidecar: the SHA-256, in hex, of the URL without its user name,
/// password and fragment (none of which is the resource), and with the values of query-string
/// credentials (`X-Amz-Signature`, `token`, …: see [`crate::redact::is_secret_param`]) as
/// `***`, so nothing secret goes into it. A presigned URL signed anew still names its part.
pub(crate) fn url_key(url: &Url) -> String {
    hex_sha256(&crate::redact::params(bare(url).as_str()))
}

/// Formats 3 and 4's key before query-string credentials were hidden: one with such a
/// credential is still recognised, then rewritten with [`url_key`] (see [`PartMeta::upgrade`]).
fn query_key(url: &Url) -> String {
    hex_sha256(bare(url).as_str())
}

fn bare(url: &Url) -> Url {
    let mut bare = url.clone();
    // Fails only for URLs that cannot have credentials, which then have none to remove.
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    bare.set_fragment(None);
    bare
}

/// Formats 1 and 2's key: the full URL, credentials included. Only ever computed in memory, to
/// recognise a sidecar an older fetchpar left, which is then rewritten with [`url_key`].
pub(crate) fn legacy_key(url: &Url) -> String {
    hex_sha256(url.as_str())
}

fn hex_sha256(text: &str) -> String {
    // The digest's own hex formatting: one string, not one per byte (this runs for every
    // download, sidecar or not).
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

/// `out/x.bin.part` → `out/x.bin.part.meta`.
pub(crate) fn meta_path(part: &Path) -> PathBuf {
    let mut os = part.as_os_str().to_owned();
    os.push(".meta");
    PathBuf::from(os)
}

impl PartMeta {
    /// The validators of a 200 response.
    pub(crate) fn from_response(url: String, headers: &HeaderMap, total: Option<u64>) -> PartMeta {
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
            legacy: false,
            etag: text(ETAG),
            last_modified: text(LAST_MODIFIED),
            total,
            ranges: None,
        }
    }

    /// Whether this sidecar describes a part of `url`, whatever its format.
    pub(crate) fn is_for(&self, url: &Url) -> bool {
        if self.legacy {
            return self.key == legacy_key(url);
        }
        self.key == url_key(url) || self.key == query_key(url)
    }

    /// Rewrites a sidecar of `part` (already matched to `url`) keyed on a hash of a secret (a
    /// format-1 or -2 one, or one keyed on [`query_key`]) in a current format with [`url_key`],
    /// so the secret-derived hash leaves the disk; a sidecar already current is left as it is.
    pub(crate) fn upgrade(&mut self, url: &Url, part: &Path) -> io::Result<()> {
        if !self.legacy && self.key == url_key(url) {
            return Ok(());
        }
        // Its `url` line may show the credential too: written before it was hidden.
        self.url = crate::redact::url(url);
        self.key = url_key(url);
        self.legacy = false;
        self.save(part, true)
    }

    /// Whether there is anything to check a resumed response against (a weak ETag alone is not).
    pub(crate) fn has_validator(&self) -> bool {
        self.if_range().is_some()
    }

    /// The `If-Range` value: a strong ETag, else the date (a weak ETag may not be used there).
    pub(crate) fn if_range(&self) -> Option<&str> {
        match &self.etag {
            Some(etag) if !etag.starts_with("W/") => Some(etag),
            _ => self.last_modified.as_deref(),
        }
    }

    /// Whether `now` (the validators of a response) names the same version as this sidecar:
    /// by a strong ETag when these bytes came with one; otherwise by Last-Modified (also when
    /// the ETag was weak: a weak tag only says two versions are equivalent, not byte-equal).
    pub(crate) fn same_validators(&self, now: &PartMeta) -> bool {
        match (&self.etag, &self.last_modified) {
            (Some(etag), _) if !etag.starts_with("W/") => now.etag.as_ref() == Some(etag),
            (_, Some(date)) => now.last_modified.as_ref() == Some(date),
            _ => false,
        }
    }

    /// Writes the sidecar of `part`, whole or not at all: written under a temporary name, then
    /// renamed (a full disk leaves no empty or cut sidecar behind to mislead the next run).
    /// `owned`: the sidecar there is ours (this run wrote it, or it matched our URL), so it may
    /// be replaced; otherwise it is put only where nothing exists. Never through a symlink.
    pub(crate) fn save(&self, part: &Path, owned: bool) -> io::Result<()> {
        // Always a current format: a legacy key is only ever read (see `upgrade`).
        let magic = if self.ranges.is_some() {
            FORMATS[3].magic
        } else {
            FORMATS[2].magic
        };
        let mut text = format!("{magic}\nurl {}\nurl-sha256 {}\n", self.url, self.key);
        if let Some(etag) = &self.etag {
            text.push_str(&format!("etag {etag}\n"));
        }
        if let Some(date) = &self.last_modified {
            text.push_str(&format!("last-modified {date}\n"));
        }
        if let Some(total) = self.total {
            text.push_str(&format!("total {total}\n"));
        }
        if let Some(ranges) = &self.ranges {
            text.push_str("ranges");
            for (start, end) in ranges {
                text.push_str(&format!(" {start}-{end}"));
            }
            text.push('\n');
        }
        let path = meta_path(part);
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let prefix = format!(
            ".{}.",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        // Dropped on any error before the rename: the temporary file goes with it.
        let mut temp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .tempfile_in(dir)?;
        temp.write_all(text.as_bytes())?;
        if owned && safefs::regular_len(&path).is_some() {
            temp.persist(&path).map_err(|e| e.error)?;
        } else {
            // Fails on anything there, a dangling symlink included.
            temp.persist_noclobber(&path).map_err(|e| e.error)?;
        }
        Ok(())
    }

    /// Reads the sidecar of `part`; `None` if it is missing, not a regular file, or not ours.
    pub(crate) fn load(part: &Path) -> Option<PartMeta> {
        let file = safefs::open_regular(&meta_path(part), OpenOptions::new().read(true)).ok()?;
        let mut text = String::new();
        // A sidecar is a few lines: anything big is not one of ours.
        file.take(64 * 1024).read_to_string(&mut text).ok()?;
        let mut lines = text.lines();
        let first = lines.next()?;
        let format = FORMATS.iter().find(|f| f.magic == first)?;
        let sparse = format.sparse;
        let mut meta = PartMeta {
            legacy: format.legacy,
            ..PartMeta::default()
        };
        for line in lines {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "url" => meta.url = value.to_string(),
                "url-sha256" => meta.key = value.to_string(),
                "etag" => meta.etag = Some(value.to_string()),
                "last-modified" => meta.last_modified = Some(value.to_string()),
                "total" => meta.total = value.parse().ok(),
                "ranges" => meta.ranges = Some(parse_ranges(value)?),
                _ => {}
            }
        }
        // A sparse part whose genuine ranges are not known is not one to trust.
        if sparse != meta.ranges.is_some() {
            return None;
        }
        (!meta.key.is_empty()).then_some(meta)
    }
}

/// `0-100 300-400`: ranges in order, none empty, none overlapping.
fn parse_ranges(value: &str) -> Option<Vec<(u64, u64)>> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for item in value.split_whitespace() {
        let (start, end) = item.split_once('-')?;
        let (start, end): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
        if start >= end || ranges.last().is_some_and(|&(_, e)| e > start) {
            return None;
        }
        ranges.push((start, end));
    }
    Some(ranges)
}

/// Removes the sidecar of `part`, if any: only for a sidecar that is ours.
pub(crate) fn remove(part: &Path) {
    let _ = fs::remove_file(meta_path(part));
}

/// A `Content-Range` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ContentRange {
    /// `bytes START-END/TOTAL` (`TOTAL` may be `*`).
    Bytes {
        start: u64,
        end: u64,
        total: Option<u64>,
    },
    /// `bytes */TOTAL`, sent with 416.
    Unsatisfied { total: u64 },
}

pub(crate) fn parse_content_range(value: &str) -> Option<ContentRange> {
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

    #[test]
    fn keys_are_the_lowercase_hex_sha256_that_sidecars_on_disk_hold() {
        // Sidecars written by earlier runs must still match: the text of the key is fixed.
        assert_eq!(
            hex_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let url = Url::parse("http://u:p@h/x.bin#f").unwrap();
        assert_eq!(url_key(&url), hex_sha256("http://h/x.bin"));
    }

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
            legacy: false,
            etag: Some("\"v1\"".into()),
            last_modified: Some("Sun, 22 Nov 2026 10:00:00 GMT".into()),
            total: Some(1234),
            ranges: None,
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
        remove(&part);
        assert_eq!(PartMeta::load(&part), None);
        fs::write(meta_path(&part), "something else\nurl x\n").unwrap();
        assert_eq!(PartMeta::load(&part), None);
        // Nothing but the sidecar is left in the folder: no temporary file.
        fs::remove_file(meta_path(&part)).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn sparse_parts_list_their_genuine_ranges_in_a_version_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("s.bin.part");
        let meta = PartMeta {
            key: "k".into(),
            etag: Some("\"v1\"".into()),
            total: Some(400),
            ranges: Some(vec![(0, 100), (300, 400)]),
            ..PartMeta::default()
        };
        meta.save(&part, false).unwrap();
        let text = fs::read_to_string(meta_path(&part)).unwrap();
        // Format 4 since issue 9 (format 2 with the credential-free key): still its own version.
        assert!(text.starts_with("fetchpar-part 4\n"), "{text}");
        assert!(text.contains("\nranges 0-100 300-400\n"), "{text}");
        assert_eq!(PartMeta::load(&part), Some(meta.clone()));
        let none = PartMeta {
            ranges: Some(Vec::new()),
            ..meta.clone()
        };
        none.save(&part, true).unwrap();
        assert_eq!(PartMeta::load(&part), Some(none));
        for bad in [
            "fetchpar-part 2\nurl-sha256 k\n",
            "fetchpar-part 2\nurl-sha256 k\nranges 5-5\n",
            "fetchpar-part 2\nurl-sha256 k\nranges 0-10 5-20\n",
            "fetchpar-part 1\nurl-sha256 k\nranges 0-10\n",
            "fetchpar-part 4\nurl-sha256 k\n",
            "fetchpar-part 3\nurl-sha256 k\nranges 0-10\n",
        ] {
            fs::write(meta_path(&part), bad).unwrap();
            assert_eq!(PartMeta::load(&part), None, "{bad}");
        }
    }

    #[test]
    fn keys_hold_nothing_derived_from_credentials() {
        let url = |s: &str| Url::parse(s).unwrap();
        let key = url_key(&url("http://u:p@h/x.bin#f"));
        // The same resource whatever the credentials or fragment (issue 9).
        assert_eq!(key, url_key(&url("http://h/x.bin")));
        assert_eq!(key, url_key(&url("http://other:q@h/x.bin")));
        assert_ne!(key, url_key(&url("http://h/y.bin")));
        assert_ne!(key, legacy_key(&url("http://u:p@h/x.bin")));
        assert_eq!(key, hex_sha256("http://h/x.bin"));
        // Nor from a query-string credential; the other parameters still tell URLs apart.
        let signed = url_key(&url("http://h/x.bin?X-Amz-Signature=s1&v=1"));
        assert_eq!(signed, hex_sha256("http://h/x.bin?X-Amz-Signature=***&v=1"));
        assert_eq!(
            signed,
            url_key(&url("http://h/x.bin?X-Amz-Signature=s2&v=1"))
        );
        assert_ne!(
            signed,
            url_key(&url("http://h/x.bin?X-Amz-Signature=s1&v=2"))
        );
    }

    #[test]
    fn a_sidecar_keyed_on_a_query_credential_is_recognised_then_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("x.bin.part");
        let signed = Url::parse("http://h/x.bin?token=s3cret").unwrap();
        let old_key = hex_sha256("http://h/x.bin?token=s3cret");
        fs::write(
            meta_path(&part),
            format!("fetchpar-part 3\nurl http://h/x.bin?token=s3cret\nurl-sha256 {old_key}\n"),
        )
        .unwrap();
        let mut meta = PartMeta::load(&part).unwrap();
        assert!(meta.is_for(&signed));
        assert!(!meta.is_for(&Url::parse("http://h/x.bin?token=other").unwrap()));
        meta.upgrade(&signed, &part).unwrap();
        let text = fs::read_to_string(meta_path(&part)).unwrap();
        assert!(
            !text.contains(&old_key) && !text.contains("s3cret"),
            "{text}"
        );
        assert!(PartMeta::load(&part).unwrap().is_for(&signed));
    }

    #[test]
    fn a_format_1_sidecar_is_recognised_then_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("x.bin.part");
        let full = Url::parse("http://u:secret@h/x.bin").unwrap();
        let old_key = legacy_key(&full);
        fs::write(
            meta_path(&part),
            format!("fetchpar-part 1\nurl http://***@h/x.bin\nurl-sha256 {old_key}\netag \"v1\"\n"),
        )
        .unwrap();
        let mut meta = PartMeta::load(&part).unwrap();
        assert!(meta.legacy && meta.is_for(&full));
        assert!(!meta.is_for(&Url::parse("http://u:other@h/x.bin").unwrap()));
        meta.upgrade(&full, &part).unwrap();
        let text = fs::read_to_string(meta_path(&part)).unwrap();
        assert!(text.starts_with("fetchpar-part 3\n"), "{text}");
        assert!(!text.contains(&old_key), "{text}");
        let again = PartMeta::load(&part).unwrap();
        assert!(!again.legacy && again.is_for(&full));
        assert!(again.is_for(&Url::parse("http://h/x.bin").unwrap()));
        assert_eq!(again.etag.as_deref(), Some("\"v1\""));
        // A sparse one of today's (format 2) likewise, its ranges kept.
        fs::write(
            meta_path(&part),
            format!("fetchpar-part 2\nurl-sha256 {old_key}\netag \"v1\"\nranges 0-10 20-30\n"),
        )
        .unwrap();
        let mut meta = PartMeta::load(&part).unwrap();
        assert!(meta.legacy && meta.is_for(&full));
        meta.upgrade(&full, &part).unwrap();
        let text = fs::read_to_string(meta_path(&part)).unwrap();
        assert!(text.starts_with("fetchpar-part 4\n"), "{text}");
        assert!(!text.contains(&old_key), "{text}");
        let again = PartMeta::load(&part).unwrap();
        assert!(!again.legacy && again.is_for(&full));
        assert_eq!(again.ranges, Some(vec![(0, 10), (20, 30)]));
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
        // A strong ETag is the validator: the date alone does not stand in for it.
        assert!(!same(&meta, &headers(&[(LAST_MODIFIED, "d1")])));
        assert!(!same(&meta, &HeaderMap::new()));
        let weak = PartMeta::from_response(
            "u".into(),
            &headers(&[(ETAG, "W/\"v1\""), (LAST_MODIFIED, "d1")]),
            None,
        );
        assert_eq!(weak.if_range(), Some("d1"));
        // A weak ETag never matches by itself; the date decides.
        assert!(!same(&weak, &headers(&[(ETAG, "W/\"v1\"")])));
        assert!(same(
            &weak,
            &headers(&[(ETAG, "W/\"v2\""), (LAST_MODIFIED, "d1")])
        ));
        let only_weak = PartMeta::from_response("u".into(), &headers(&[(ETAG, "W/\"v1\"")]), None);
        assert!(!same(&only_weak, &headers(&[(ETAG, "W/\"v1\"")])));
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
