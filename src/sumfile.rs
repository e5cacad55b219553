//! `--checksums FILE`: the digests a release page or a data set publishes (`SHA256SUMS`), looked
//! up by each download's output name.
//!
//! Three line forms, as `sha256sum` and friends write them: `HEX  NAME` (text mode), `HEX *NAME`
//! (binary mode) and the BSD tag form `SHA256 (NAME) = HEX` (`sha256sum --tag`). Without a tag
//! the algorithm is told by the digest's length. Names are paths relative to `-o` with `./`
//! stripped: a download is looked up by its own numbered name when the list has several of one
//! name (`photo.1.jpg`), else by the name before the number, else by its URL's name as a
//! publisher writes it (see [`key_for`]).
//!
//! The whole file is read up front (it is small next to the downloads it describes), so that a
//! malformed line is a usage error before any download, with its line number.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::checksum::{Algorithm, Checksum};
use crate::input::Entry;
use crate::naming::{self, Home};

/// Digests by output name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SumFile {
    by_name: HashMap<String, Checksum>,
}

impl SumFile {
    /// Reads `path`; the error names the file and, for a bad line, its number.
    pub(crate) fn open(path: &Path) -> Result<SumFile, String> {
        let file = File::open(path)
            .map_err(|e| format!("cannot read the checksums file {}: {e}", path.display()))?;
        SumFile::read(BufReader::new(file))
            .map_err(|e| format!("checksums file {}: {e}", path.display()))
    }

    pub(crate) fn read(reader: impl BufRead) -> Result<SumFile, String> {
        let mut sums = SumFile::default();
        let mut lines: HashMap<String, usize> = HashMap::new();
        for (i, line) in reader.split(b'\n').enumerate() {
            let line_no = i + 1;
            let line = line.map_err(|e| format!("line {line_no}: {e}"))?;
            let text = std::str::from_utf8(&line)
                .map_err(|_| format!("line {line_no}: not valid UTF-8"))?
                .trim_end_matches('\r');
            // A byte-order mark, which Windows editors put first, is not part of the digest.
            let text = match line_no {
                1 => text.strip_prefix('\u{FEFF}').unwrap_or(text),
                _ => text,
            };
            if text.trim().is_empty() || text.starts_with('#') {
                continue;
            }
            let (name, sum) = parse_line(text).map_err(|e| format!("line {line_no}: {e}"))?;
            if let Some(first) = lines.get(&name) {
                if sums.by_name.get(&name) != Some(&sum) {
                    return Err(format!(
                        "line {line_no}: {name} already has another checksum on line {first}"
                    ));
                }
                continue;
            }
            lines.insert(name.clone(), line_no);
            sums.by_name.insert(name, sum);
        }
        Ok(sums)
    }

    /// The digest for a download whose path relative to `-o` (before any clash suffix) is
    /// `name`, `/`-separated.
    pub(crate) fn get(&self, name: &str) -> Option<&Checksum> {
        self.by_name.get(normalize(name).as_str())
    }

    #[cfg(test)]
    #[allow(clippy::len_without_is_empty)]
    pub(crate) fn len(&self) -> usize {
        self.by_name.len()
    }
}

/// What a download is to be checked against, decided once per file when its name (before any
/// clash suffix) is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Expected<'a> {
    /// Verify against this digest.
    Known(&'a Checksum),
    /// `--checksums` has no entry for the name: download, unverified, and say so (a warning).
    Missing(String),
    /// `--require-checksum` and no digest: fail the URL with this reason, before any request.
    Required(String),
    /// No digest was asked for.
    Unchecked,
}

/// The name `--checksums` knows a download by: its own numbered name (`sha256sum *` over an
/// earlier run's folder lists `index.1.html`), the name before the number, or its URL's name as
/// a publisher writes it (`photo~1.jpg`, saved as `photo~1_.jpg`); `name` when it knows none.
pub(crate) fn key_for<'a>(
    sums: Option<&SumFile>,
    home: Option<&'a Home>,
    name: &'a str,
    entry: &Entry,
) -> std::borrow::Cow<'a, str> {
    let Some(sums) = sums else {
        return name.into();
    };
    let own = [home.map(|home| home.spot.as_str()), Some(name)];
    if let Some(key) = own
        .into_iter()
        .flatten()
        .find(|key| sums.get(key).is_some())
    {
        return key.into();
    }
    // Made only when neither is listed: most lists name their files as the URLs do.
    if entry.output.is_none() {
        let published = naming::published(&entry.url);
        if sums.get(&published).is_some() {
            return published.into();
        }
    }
    name.into()
}

/// The list line's `checksum=` wins; otherwise `--checksums` by output name.
pub(crate) fn expected<'a>(
    line: Option<&'a Checksum>,
    sums: Option<&'a SumFile>,
    name: &str,
    require: bool,
) -> Expected<'a> {
    if let Some(sum) = line.or_else(|| sums.and_then(|s| s.get(name))) {
        return Expected::Known(sum);
    }
    let source = if sums.is_some() {
        "no entry in the checksums file"
    } else {
        "no checksum= option on its list line"
    };
    if require {
        Expected::Required(format!("{name}: {source}, and --require-checksum is on"))
    } else if sums.is_some() {
        Expected::Missing(format!("{name}: {source}; saved without verifying"))
    } else {
        Expected::Unchecked
    }
}

/// One non-blank, non-comment line: `(name, checksum)`.
fn parse_line(text: &str) -> Result<(String, Checksum), String> {
    if let Some(parsed) = parse_bsd(text) {
        return parsed;
    }
    // coreutils marks a name it had to escape (a `\` or newline in it) with a leading `\`.
    let (escaped, text) = match text.strip_prefix('\\') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let Some((hex, rest)) = text.split_once(' ') else {
        return Err("expected 'HEX  NAME', 'HEX *NAME' or 'SHA256 (NAME) = HEX'".into());
    };
    let name = rest
        .strip_prefix(['*', ' '])
        .ok_or("expected two spaces or ' *' between the digest and the name")?;
    let algo = Algorithm::from_hex_len(hex.len()).ok_or_else(|| {
        format!(
            "a digest of {} hex digits is none of sha256, sha512, sha1, md5",
            hex.len()
        )
    })?;
    let sum = Checksum::new(algo, hex)?;
    let name = if escaped {
        unescape(name)?
    } else {
        name.into()
    };
    Ok((checked_name(&name)?, sum))
}

/// `SHA256 (NAME) = HEX`; `None` when the line is not in this form at all.
fn parse_bsd(text: &str) -> Option<Result<(String, Checksum), String>> {
    let (tag, rest) = text.split_once(" (")?;
    let (name, hex) = rest.rsplit_once(") = ")?;
    if tag.is_empty() || tag.contains(' ') {
        return None;
    }
    Some((|| {
        let algo = Algorithm::from_name(tag).ok_or_else(|| {
            format!("unknown digest tag '{tag}': use SHA256, SHA512, SHA1 or MD5")
        })?;
        let sum = Checksum::new(algo, hex.trim())?;
        Ok((checked_name(name)?, sum))
    })())
}

fn unescape(name: &str) -> Result<String, String> {
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            _ => return Err("bad escape in the name".into()),
        }
    }
    Ok(out)
}

fn checked_name(name: &str) -> Result<String, String> {
    let name = normalize(name);
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    Ok(name)
}

/// `./a/./b` and `a//b` are `a/b`: how a name is written must not decide whether it is found.
fn normalize(name: &str) -> String {
    name.split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const SHA1: &str = "a9993e364706816aba3e25717850c26c9cd0d89d";
    const MD5: &str = "900150983cd24fb0d6963f7d28e17f72";

    #[test]
    fn a_byte_order_mark_before_the_first_digest_is_not_part_of_it() {
        let text = format!("\u{FEFF}{SHA256}  a.bin\n{MD5}  b.bin\n");
        let sums = SumFile::read(text.as_bytes()).unwrap();
        assert_eq!(sums.len(), 2);
        assert!(sums.get("a.bin").is_some());
    }

    #[test]
    fn reads_every_line_form() {
        let upper = SHA256.to_ascii_uppercase();
        let cases: [(String, &str, Algorithm, &str); 8] = [
            (
                format!("{SHA256}  a.bin"),
                "a.bin",
                Algorithm::Sha256,
                SHA256,
            ),
            (
                format!("{SHA256} *b.bin"),
                "b.bin",
                Algorithm::Sha256,
                SHA256,
            ),
            (
                format!("{upper}  ./c d.bin"),
                "c d.bin",
                Algorithm::Sha256,
                SHA256,
            ),
            (format!("{SHA1}  sub/./e"), "sub/e", Algorithm::Sha1, SHA1),
            (format!("{MD5} *f"), "f", Algorithm::Md5, MD5),
            (
                format!("SHA256 (g (1).iso) = {SHA256}"),
                "g (1).iso",
                Algorithm::Sha256,
                SHA256,
            ),
            (format!("MD5 (./h) = {MD5}"), "h", Algorithm::Md5, MD5),
            (
                format!("\\{SHA1}  back\\\\slash"),
                "back\\slash",
                Algorithm::Sha1,
                SHA1,
            ),
        ];
        for (line, name, algo, hex) in cases {
            let (got_name, sum) = parse_line(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(
                (got_name.as_str(), sum.algo, sum.hex.as_str()),
                (name, algo, hex)
            );
        }
    }

    #[test]
    fn rejects_malformed_lines_with_a_reason() {
        let cases: [(String, &str); 7] = [
            ("nonsense".into(), "expected 'HEX  NAME'"),
            (format!("{SHA256} a.bin"), "two spaces or ' *'"),
            ("abc  a.bin".into(), "3 hex digits"),
            (format!("{}  a.bin", "z".repeat(64)), "not hexadecimal"),
            (format!("SHA256 (a.bin) = {SHA1}"), "has 64 hex digits"),
            (
                format!("CRC32 (a.bin) = {SHA1}"),
                "unknown digest tag 'CRC32'",
            ),
            (format!("{SHA256}  ./"), "name is empty"),
        ];
        for (line, why) in cases {
            let err = parse_line(&line).unwrap_err();
            assert!(err.contains(why), "{line}: {err}");
        }
    }

    #[test]
    fn what_a_download_is_checked_against() {
        let sums = SumFile::read(format!("{MD5}  a\n").as_bytes()).unwrap();
        let line = Checksum::new(Algorithm::Sha1, SHA1).unwrap();
        let short = |e: Expected<'_>| match e {
            Expected::Known(c) => format!("known {}", c.algo),
            Expected::Missing(m) => format!("missing {m}"),
            Expected::Required(m) => format!("required {m}"),
            Expected::Unchecked => "unchecked".into(),
        };
        let cases = [
            (Some(&line), Some(&sums), "a", false, "known sha-1"),
            (None, Some(&sums), "./a", true, "known md5"),
            (
                None,
                Some(&sums),
                "b",
                false,
                "missing b: no entry in the checksums file; saved",
            ),
            (
                None,
                Some(&sums),
                "b",
                true,
                "required b: no entry in the checksums file, and",
            ),
            (
                None,
                None,
                "b",
                true,
                "required b: no checksum= option on its list line",
            ),
            (None, None, "b", false, "unchecked"),
        ];
        for (line, sums, name, require, want) in cases {
            let got = short(expected(line, sums, name, require));
            assert!(got.starts_with(want), "{name} {require}: {got}");
        }
    }

    #[test]
    fn a_file_is_looked_up_by_output_name_and_errors_carry_line_numbers() {
        let text = format!(
            "# SHA256SUMS\n\n{SHA256}  ./a.bin\r\n{SHA256} *a.bin\nSHA1 (dir/b) = {SHA1}\n"
        );
        let sums = SumFile::read(text.as_bytes()).unwrap();
        assert_eq!(sums.len(), 2);
        assert_eq!(sums.get("a.bin").map(|c| c.algo), Some(Algorithm::Sha256));
        assert_eq!(sums.get("./dir/b").map(|c| c.algo), Some(Algorithm::Sha1));
        assert_eq!(sums.get("a.1.bin"), None);

        let bad = format!("{SHA256}  a\n\nbroken line\n");
        let err = SumFile::read(bad.as_bytes()).unwrap_err();
        assert!(err.starts_with("line 3: "), "{err}");
        let twice = format!("{SHA256}  a\n{MD5}  ./a\n");
        let err = SumFile::read(twice.as_bytes()).unwrap_err();
        assert!(
            err.contains("line 2: a already has another checksum on line 1"),
            "{err}"
        );
    }
}
