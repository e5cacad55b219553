//! Where URLs come from: arguments, then a list file or stdin, read lazily one line at a time.
//!
//! Nothing here holds more than one line in memory, so a producer that is still writing to our
//! stdin never holds back the first download, and a list of a million URLs costs no more than a
//! list of ten.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use url::Url;

use crate::naming;
use crate::redact;

/// Longest line kept, in bytes; the rest of a longer line is skipped and the line reported.
const MAX_LINE_BYTES: usize = 64 * 1024;
/// Longest piece of a bad line quoted back in an error message.
const MAX_QUOTE_CHARS: usize = 120;

/// Where an input came from, for error messages: `argument 2` or `line 17`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    Arg(usize),
    Line(usize),
}

impl Origin {
    /// The list-file line number, for machine-readable output.
    pub(crate) fn line(self) -> Option<usize> {
        match self {
            Origin::Line(n) => Some(n),
            Origin::Arg(_) => None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Arg(n) => write!(f, "argument {n}"),
            Origin::Line(n) => write!(f, "line {n}"),
        }
    }
}

/// A URL ready to download.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) origin: Origin,
    pub(crate) url: Url,
    /// Where the list line asked for the file to go: a relative path with `/` separators, already
    /// checked to stay inside the output directory. `None`: named after the URL.
    pub(crate) output: Option<String>,
}

/// An input that cannot be downloaded; it is reported and the run goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub(crate) origin: Origin,
    /// The offending text, credentials removed and shortened for display.
    pub(crate) text: String,
    pub(crate) reason: String,
}

pub(crate) type Item = std::result::Result<Entry, Invalid>;

/// Where the URL list comes from besides the arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ListSource {
    Stdin,
    File(PathBuf),
}

/// The lazily read sequence of inputs: every argument, then every line of the list.
pub(crate) struct Inputs {
    args: std::vec::IntoIter<String>,
    arg_no: usize,
    list: Option<Box<dyn BufRead + Send>>,
    line_no: usize,
    buf: Vec<u8>,
}

impl Inputs {
    /// Opens the list (if any) now, so that a missing file is a usage error before any download.
    pub(crate) fn open(args: Vec<String>, list: Option<&ListSource>) -> Result<Inputs> {
        let list: Option<Box<dyn BufRead + Send>> = match list {
            None => None,
            Some(ListSource::Stdin) => Some(Box::new(BufReader::new(io::stdin()))),
            Some(ListSource::File(path)) => Some(Box::new(BufReader::new(open_list(path)?))),
        };
        Ok(Inputs::from_parts(args, list))
    }

    /// Inputs from any reader; the tests and `--compare` use this.
    pub(crate) fn from_parts(args: Vec<String>, list: Option<Box<dyn BufRead + Send>>) -> Inputs {
        Inputs {
            args: args.into_iter(),
            arg_no: 0,
            list,
            line_no: 0,
            buf: Vec::new(),
        }
    }
}

fn open_list(path: &Path) -> Result<File> {
    let file =
        File::open(path).with_context(|| format!("cannot read the URL list {}", path.display()))?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        anyhow::bail!("the URL list {} is a directory, not a file", path.display());
    }
    Ok(file)
}

impl Iterator for Inputs {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        if let Some(arg) = self.args.next() {
            self.arg_no += 1;
            return Some(parse(arg.trim(), Origin::Arg(self.arg_no)));
        }
        let list = self.list.as_mut()?;
        loop {
            self.line_no += 1;
            let origin = Origin::Line(self.line_no);
            let too_long = match read_line_capped(list.as_mut(), &mut self.buf, MAX_LINE_BYTES) {
                Ok(None) => {
                    self.list = None;
                    return None;
                }
                Ok(Some(too_long)) => too_long,
                Err(e) => {
                    // A read error ends the list: report it once, on the line it happened.
                    self.list = None;
                    return Some(Err(Invalid {
                        origin,
                        text: String::new(),
                        reason: format!("cannot read the URL list: {e}"),
                    }));
                }
            };
            if too_long {
                return Some(Err(invalid(
                    origin,
                    &String::from_utf8_lossy(&self.buf),
                    format!("line is longer than {} KiB", MAX_LINE_BYTES / 1024),
                )));
            }
            let text = match std::str::from_utf8(&self.buf) {
                Ok(text) => text.trim(),
                Err(_) => {
                    return Some(Err(invalid(
                        origin,
                        &String::from_utf8_lossy(&self.buf),
                        "line is not valid UTF-8".into(),
                    )))
                }
            };
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            return Some(parse_line(text, origin));
        }
    }
}

/// Reads one line (without its `\n`) into `buf`, keeping at most `cap` bytes and skipping the
/// rest. `None` at end of input; `Some(true)` when the line was longer than `cap`.
fn read_line_capped(
    reader: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    cap: usize,
) -> io::Result<Option<bool>> {
    buf.clear();
    let mut seen_any = false;
    let mut too_long = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(seen_any.then_some(too_long));
        }
        seen_any = true;
        let (piece, found_newline) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i)),
            None => (available, None),
        };
        let room = cap.saturating_sub(buf.len());
        if piece.len() > room {
            too_long = true;
        }
        buf.extend_from_slice(&piece[..piece.len().min(room)]);
        let used = found_newline.map_or(piece.len(), |i| i + 1);
        reader.consume(used);
        if found_newline.is_some() {
            return Ok(Some(too_long));
        }
    }
}

fn invalid(origin: Origin, raw: &str, reason: String) -> Invalid {
    let shown: String = redact::text(raw)
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .take(MAX_QUOTE_CHARS)
        .collect();
    Invalid {
        origin,
        text: shown,
        reason,
    }
}

/// Checks one trimmed list line: `URL`, or `URL<whitespace>OUTPUT` where OUTPUT (the rest of the
/// line, so it may contain spaces) is a path relative to the output directory. An OUTPUT ending
/// in `/` is a folder: the file inside it is named after the URL.
pub(crate) fn parse_line(text: &str, origin: Origin) -> Item {
    let Some((url_text, rest)) = text.split_once(|c: char| c.is_whitespace()) else {
        return parse(text, origin);
    };
    let output = rest.trim();
    if let Some(reason) = control_char(output) {
        return Err(invalid(origin, text, format!("output path {reason}")));
    }
    // Errors quote the whole line: `this is garbage` reads better than `this`.
    let mut entry = parse(url_text, origin).map_err(|e| invalid(origin, text, e.reason))?;
    match output_path(output, &entry.url) {
        Ok(path) => {
            entry.output = Some(path);
            Ok(entry)
        }
        Err(reason) => Err(invalid(origin, text, reason)),
    }
}

/// Checks an OUTPUT path from a list line and returns it normalized (`/`-separated, no `.` or
/// empty components). It may not be absolute or contain `..`: a list file, which may come from
/// anywhere, must not be able to write outside the output directory.
fn output_path(raw: &str, url: &Url) -> Result<String, String> {
    let fix = "give a path relative to the output directory (-o), without '..'";
    let absolute = raw.starts_with(['/', '\\'])
        || std::path::Path::new(raw).is_absolute()
        || raw.as_bytes().get(1) == Some(&b':');
    if absolute {
        return Err(format!("output path {raw} is absolute: {fix}"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in raw.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return Err(format!("output path {raw} climbs out with '..': {fix}")),
            part => parts.push(part),
        }
    }
    // `dir/` (or `.`) names a folder: the file in it is named after the URL, as usual.
    if raw.ends_with(['/', '\\']) || parts.is_empty() {
        parts.push("");
        let name = naming::from_url(url);
        let mut path = parts.join("/");
        path.push_str(&name);
        return Ok(path);
    }
    Ok(parts.join("/"))
}

fn control_char(text: &str) -> Option<String> {
    let c = text.chars().find(|c| c.is_control())?;
    Some(if c == '\0' {
        "contains a NUL byte".to_string()
    } else {
        format!("contains control character {:?}", c)
    })
}

/// Checks one trimmed input: it must be a single absolute http or https URL with a host.
pub(crate) fn parse(text: &str, origin: Origin) -> Item {
    if let Some(reason) = control_char(text) {
        return Err(invalid(origin, text, reason));
    }
    if text.split_whitespace().nth(1).is_some() {
        return Err(invalid(
            origin,
            text,
            "expected one URL, found spaces".into(),
        ));
    }
    let url = match Url::parse(text) {
        Ok(url) => url,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            return Err(invalid(
                origin,
                text,
                "not a URL (add http:// or https:// in front)".into(),
            ))
        }
        Err(e) => return Err(invalid(origin, text, format!("not a valid URL: {e}"))),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(
            origin,
            text,
            format!("unsupported scheme '{}': only http and https", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(origin, text, "URL has no host".into()));
    }
    Ok(Entry {
        origin,
        url,
        output: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(list: &[u8]) -> Vec<Item> {
        let reader: Box<dyn BufRead + Send> = Box::new(io::Cursor::new(list.to_vec()));
        Inputs::from_parts(vec![], Some(reader)).collect()
    }

    #[test]
    fn skips_blanks_and_comments_and_keeps_line_numbers() {
        let got = items(b"# list\n\n  http://h/a  \r\n\t\nhttps://h/b");
        let origins: Vec<_> = got.iter().map(|i| i.as_ref().unwrap().origin).collect();
        assert_eq!(origins, [Origin::Line(3), Origin::Line(5)]);
        assert_eq!(got[0].as_ref().unwrap().url.as_str(), "http://h/a");
    }

    #[test]
    fn reports_bad_lines_with_numbers() {
        let got = items(b"ftp://h/x\ngarbage\nhttp://\nhttp://h/ok\n");
        let bad: Vec<_> = got.iter().filter_map(|i| i.as_ref().err()).collect();
        assert_eq!(bad.len(), 3);
        assert_eq!(bad[0].origin, Origin::Line(1));
        assert!(bad[0].reason.contains("unsupported scheme 'ftp'"));
        assert_eq!(bad[1].origin, Origin::Line(2));
        assert!(bad[1].reason.contains("add http://"));
        assert_eq!(bad[2].origin, Origin::Line(3));
        assert!(got[3].is_ok());
    }

    #[test]
    fn survives_invalid_utf8_nul_and_long_lines() {
        let mut list = b"http://h/\xff\xfe\nhttp://h/a\0b\n".to_vec();
        list.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES * 2));
        list.extend_from_slice(b"\nhttp://h/last\n");
        let got = items(&list);
        assert_eq!(got.len(), 4);
        assert!(got[0].as_ref().unwrap_err().reason.contains("UTF-8"));
        assert!(got[1].as_ref().unwrap_err().reason.contains("NUL"));
        let long = got[2].as_ref().unwrap_err();
        assert!(long.reason.contains("longer than"));
        assert!(long.text.chars().count() <= MAX_QUOTE_CHARS);
        assert_eq!(got[3].as_ref().unwrap().origin, Origin::Line(4));
    }

    #[test]
    fn secrets_in_bad_lines_are_hidden() {
        let got = items(b"htp://u:hunter2@h/x\n");
        let bad = got[0].as_ref().unwrap_err();
        assert!(!bad.text.contains("hunter2"), "{bad:?}");
    }

    #[test]
    fn a_line_may_name_its_output() {
        let got = items(
            b"http://h/a.bin sub/dir/x.bin\n\
              http://h/b.bin\t  ./my file.txt \r\n\
              http://h/c.bin keep/\n\
              http://h/d.bin a//./b\n\
              http://h/e.bin ../up\n\
              http://h/f.bin /etc/passwd\n\
              http://h/g.bin a/../../b\n\
              http://h/h.bin C:\\x\n\
              nope out.txt\n",
        );
        let outputs: Vec<_> = got[..4]
            .iter()
            .map(|i| i.as_ref().unwrap().output.clone().unwrap())
            .collect();
        assert_eq!(
            outputs,
            ["sub/dir/x.bin", "my file.txt", "keep/c.bin", "a/b"]
        );
        for (bad, why) in got[4..8]
            .iter()
            .zip(["'..'", "absolute", "'..'", "absolute"])
        {
            let bad = bad.as_ref().unwrap_err();
            assert!(bad.reason.contains(why), "{bad:?}");
            assert!(bad.reason.contains("relative to the output directory"));
        }
        assert_eq!(got[4].as_ref().unwrap_err().origin, Origin::Line(5));
        assert!(got[8].as_ref().unwrap_err().reason.contains("not a URL"));
    }

    #[test]
    fn arguments_never_take_an_output() {
        let got: Vec<_> = Inputs::from_parts(vec!["http://h/a b".into()], None).collect();
        assert!(got[0].as_ref().unwrap_err().reason.contains("spaces"));
    }

    #[test]
    fn arguments_come_first_and_are_numbered() {
        let reader: Box<dyn BufRead + Send> = Box::new(io::Cursor::new(b"http://h/l".to_vec()));
        let got: Vec<_> =
            Inputs::from_parts(vec!["http://h/a".into(), "nope".into()], Some(reader)).collect();
        assert_eq!(got[0].as_ref().unwrap().origin, Origin::Arg(1));
        assert_eq!(got[1].as_ref().unwrap_err().origin, Origin::Arg(2));
        assert_eq!(got[2].as_ref().unwrap().origin, Origin::Line(1));
    }
}
