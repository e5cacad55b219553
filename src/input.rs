//! Where URLs come from: arguments, then a list file or stdin, read lazily one line at a time.
//!
//! Nothing here holds more than one entry in memory, so a list of a million URLs costs no more
//! than a list of ten.
//!
//! A list line is `URL`, `URL OUTPUT`, or several URLs of one file (mirrors, TAB-separated as in
//! aria2c's input files). In a list read from a regular file (`-i FILE`), indented `key=value`
//! lines under a URL are options ([`listopts`]): an entry is then complete only
//! when the next URL line (or the end of the file) is read. A file never makes us wait for that
//! line, but a stream could (a producer that writes one URL and pauses), and a producer that is
//! still writing to our stdin must never hold back a download: from stdin or a pipe every URL
//! line is an entry at once, and option lines are refused with a reason.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use url::Url;

use crate::checksum::Checksum;
use crate::listopts::{self, Opt, Options};
use crate::naming;
use crate::redact;

/// Longest line kept, in bytes; the rest of a longer line is skipped and the line reported.
const MAX_LINE_BYTES: usize = 64 * 1024;
/// Longest piece of a bad line quoted back in an error message.
const MAX_QUOTE_CHARS: usize = 120;
/// Unknown option names remembered (each is reported once); past this, one last warning says
/// that further ones are not listed, so a hostile list cannot grow this set without bound.
const MAX_UNKNOWN_OPTIONS: usize = 64;

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
    /// Other sources of the same file, to try in order after `url` (TAB- or space-separated URLs
    /// on the list line). The file is named after `url`.
    pub(crate) mirrors: Vec<Url>,
    /// Where the list asked for the file to go (`URL OUTPUT`, or `dir=`/`out=` option lines): a
    /// relative path with `/` separators, already checked to stay inside the output directory.
    /// `None`: named after the URL.
    pub(crate) output: Option<String>,
    /// The digest the list line promised (`checksum=` option). `--checksums FILE` is looked up
    /// at download time, by output name, only when this is `None`.
    pub(crate) checksum: Option<Checksum>,
}

impl Entry {
    pub(crate) fn new(origin: Origin, url: Url) -> Entry {
        Entry {
            origin,
            url,
            mirrors: Vec::new(),
            output: None,
            checksum: None,
        }
    }
}

/// An input that cannot be downloaded; it is reported and the run goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub(crate) origin: Origin,
    /// The offending text, credentials removed and shortened for display.
    pub(crate) text: String,
    pub(crate) reason: String,
}

/// Something about the list a person should know that does not stop any download: an option
/// fetchpar ignores, a mirror it cannot use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Warning {
    pub(crate) origin: Origin,
    /// Already free of credentials.
    pub(crate) message: String,
}

/// What the inputs yield, in list order.
#[derive(Clone, Debug)]
pub(crate) enum Item {
    Entry(Entry),
    Invalid(Invalid),
    Warning(Warning),
}

impl From<std::result::Result<Entry, Invalid>> for Item {
    fn from(parsed: std::result::Result<Entry, Invalid>) -> Item {
        match parsed {
            Ok(entry) => Item::Entry(entry),
            Err(invalid) => Item::Invalid(invalid),
        }
    }
}

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
    /// Whether indented `key=value` lines are options of the URL above (see the module doc).
    options: bool,
    /// The entry whose option lines may still follow.
    pending: Option<Pending>,
    /// Items already complete, handed out before anything else is read.
    ready: VecDeque<Item>,
    /// Unknown option names already reported.
    unknown: HashSet<String>,
}

/// A URL line whose option lines are still being read.
struct Pending {
    /// An invalid URL line keeps its option lines, silently: the line itself is reported.
    parsed: std::result::Result<Entry, Invalid>,
    options: Options,
    /// The first bad option line, which makes the entry invalid.
    bad: Option<Invalid>,
}

impl Pending {
    fn finish(self) -> Item {
        let mut entry = match (self.parsed, self.bad) {
            (Err(invalid), _) | (Ok(_), Some(invalid)) => return Item::Invalid(invalid),
            (Ok(entry), None) => entry,
        };
        if self.options.names_output() {
            if entry.output.is_some() {
                return Item::Invalid(Invalid {
                    origin: entry.origin,
                    text: redact::url(&entry.url),
                    reason: "the line names its output and so do out=/dir= options: keep one"
                        .into(),
                });
            }
            match self.options.output(&entry.url) {
                Ok(output) => entry.output = output,
                Err(reason) => {
                    return Item::Invalid(Invalid {
                        origin: entry.origin,
                        text: redact::url(&entry.url),
                        reason,
                    })
                }
            }
        }
        entry.checksum = self.options.checksum;
        Item::Entry(entry)
    }
}

impl Inputs {
    /// Opens the list (if any) now, so that a missing file is a usage error before any download.
    pub(crate) fn open(args: Vec<String>, list: Option<&ListSource>) -> Result<Inputs> {
        let (list, options): (Option<Box<dyn BufRead + Send>>, bool) = match list {
            None => (None, false),
            Some(ListSource::Stdin) => (Some(Box::new(BufReader::new(io::stdin()))), false),
            Some(ListSource::File(path)) => {
                let file = open_list(path)?;
                // A regular file never pauses, so looking one line ahead costs nothing; a FIFO
                // or /dev/stdin is a stream (see the module doc).
                let regular = file.metadata().map(|m| m.is_file()).unwrap_or(false);
                (Some(Box::new(BufReader::new(file))), regular)
            }
        };
        Ok(Inputs::from_parts(args, list).with_option_lines(options))
    }

    /// Reads indented `key=value` lines as options of the URL above; see the module doc for why
    /// only a list file does.
    pub(crate) fn with_option_lines(mut self, on: bool) -> Inputs {
        self.options = on;
        self
    }

    /// Inputs from any reader; the tests and `--compare` use this.
    pub(crate) fn from_parts(args: Vec<String>, list: Option<Box<dyn BufRead + Send>>) -> Inputs {
        Inputs {
            args: args.into_iter(),
            arg_no: 0,
            list,
            line_no: 0,
            buf: Vec::new(),
            options: false,
            pending: None,
            ready: VecDeque::new(),
            unknown: HashSet::new(),
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
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            if let Some(arg) = self.args.next() {
                self.arg_no += 1;
                return Some(parse(arg.trim(), Origin::Arg(self.arg_no)).into());
            }
            if self.list.is_none() {
                return self.pending.take().map(Pending::finish);
            }
            self.read_line();
        }
    }
}

impl Inputs {
    /// Reads one list line and files what it makes into `ready` or `pending`.
    fn read_line(&mut self) {
        let Some(list) = self.list.as_mut() else {
            return;
        };
        self.line_no += 1;
        let origin = Origin::Line(self.line_no);
        let too_long = match read_line_capped(list.as_mut(), &mut self.buf, MAX_LINE_BYTES) {
            Ok(None) => {
                self.list = None;
                return self.flush();
            }
            Ok(Some(too_long)) => too_long,
            Err(e) => {
                // A read error ends the list: report it once, on the line it happened.
                self.list = None;
                return self.push_after_flush(Item::Invalid(Invalid {
                    origin,
                    text: String::new(),
                    reason: format!("cannot read the URL list: {e}"),
                }));
            }
        };
        if too_long {
            let reason = format!("line is longer than {} KiB", MAX_LINE_BYTES / 1024);
            let bad = invalid(origin, &String::from_utf8_lossy(&self.buf), reason);
            return self.push_after_flush(Item::Invalid(bad));
        }
        let Ok(raw) = std::str::from_utf8(&self.buf) else {
            let shown = String::from_utf8_lossy(&self.buf);
            let bad = invalid(origin, &shown, "line is not valid UTF-8".into());
            return self.push_after_flush(Item::Invalid(bad));
        };
        // A byte-order mark, which Windows editors put first (and `cat` of two such lists puts
        // mid-list), is not part of the URL.
        let raw = raw.strip_prefix('\u{FEFF}').unwrap_or(raw);
        let text = raw.trim();
        if text.is_empty() || text.starts_with('#') {
            return;
        }
        if let Some((key, value)) = listopts::split(raw) {
            let (key, value, text) = (key.to_string(), value.to_string(), text.to_string());
            return self.option(&key, &value, &text, origin);
        }
        let (parsed, warnings) = parse_line_with_mirrors(text, origin);
        self.flush();
        self.ready.extend(warnings.into_iter().map(Item::Warning));
        if self.options {
            self.pending = Some(Pending {
                parsed,
                options: Options::default(),
                bad: None,
            });
        } else {
            self.ready.push_back(parsed.into());
        }
    }

    /// The entry above is complete: hand it out.
    fn flush(&mut self) {
        if let Some(pending) = self.pending.take() {
            self.ready.push_back(pending.finish());
        }
    }

    fn push_after_flush(&mut self, item: Item) {
        self.flush();
        self.ready.push_back(item);
    }

    /// An indented `key=value` line.
    fn option(&mut self, key: &str, value: &str, text: &str, origin: Origin) {
        let pending = match (&mut self.pending, self.options) {
            (Some(pending), true) => pending,
            (None, true) => {
                let reason = "an option line needs a URL line above it".into();
                return self
                    .ready
                    .push_back(Item::Invalid(invalid(origin, text, reason)));
            }
            (_, false) => {
                let reason = "option lines (key=value) are read only from a list file (-i FILE): \
                              from a stream each URL starts as soon as its line arrives"
                    .into();
                return self.push_after_flush(Item::Invalid(invalid(origin, text, reason)));
            }
        };
        if pending.parsed.is_err() {
            return;
        }
        match listopts::parse(key, value) {
            Err(reason) => {
                if pending.bad.is_none() {
                    pending.bad = Some(invalid(origin, text, reason));
                }
            }
            Ok(Opt::Unknown(name)) => self.unknown_option(name, origin),
            Ok(opt) => pending.options.set(opt),
        }
    }

    /// Says once per name that an option is ignored.
    fn unknown_option(&mut self, name: String, origin: Origin) {
        let message = if self.unknown.contains(&name) || self.unknown.len() > MAX_UNKNOWN_OPTIONS {
            return;
        } else if self.unknown.len() == MAX_UNKNOWN_OPTIONS {
            "more options fetchpar does not support follow; they are ignored and not listed"
                .to_string()
        } else {
            format!("option '{name}' is not supported by fetchpar and is ignored (said once)")
        };
        self.unknown.insert(name);
        self.ready
            .push_back(Item::Warning(Warning { origin, message }));
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

/// Checks one trimmed list line: `URL`, `URL MIRROR…` (every field after the first is an absolute
/// URL; aria2c separates them with TABs), or `URL<whitespace>OUTPUT` where OUTPUT (the rest of the
/// line, so it may contain spaces) is a path relative to the output directory. A mirror that
/// cannot be used (another scheme) is skipped with a warning, so an aria2c line mixing `ftp://`
/// and `https://` sources still downloads.
pub(crate) fn parse_line_with_mirrors(
    text: &str,
    origin: Origin,
) -> (std::result::Result<Entry, Invalid>, Vec<Warning>) {
    let mut fields = text.split_whitespace();
    let second = fields.nth(1);
    if !second.is_some_and(looks_like_url) {
        return (parse_line(text, origin), Vec::new());
    }
    let mut warnings = Vec::new();
    let mut urls = Vec::new();
    for field in text.split_whitespace() {
        if !looks_like_url(field) {
            let reason = format!(
                "'{field}' follows a mirror URL: every field after a mirror must be a URL \
                 (name the file with an out= option line)"
            );
            return (Err(invalid(origin, text, reason)), warnings);
        }
        match parse(field, origin) {
            Ok(entry) => urls.push(entry.url),
            Err(bad) => warnings.push(Warning {
                origin,
                message: format!("source {} skipped: {}", bad.text, bad.reason),
            }),
        }
    }
    if urls.is_empty() {
        let reason = "none of these URLs is http or https".into();
        return (Err(invalid(origin, text, reason)), warnings);
    }
    let url = urls.remove(0);
    let mut entry = Entry::new(origin, url);
    entry.mirrors = urls;
    (Ok(entry), warnings)
}

/// An absolute URL of any scheme (`C:\x` parses as a URL too, but is a path).
fn looks_like_url(field: &str) -> bool {
    field.contains("://") && Url::parse(field).is_ok()
}

/// `URL` or `URL OUTPUT` (see [`parse_line_with_mirrors`]).
fn parse_line(text: &str, origin: Origin) -> std::result::Result<Entry, Invalid> {
    let Some((url_text, rest)) = text.split_once(|c: char| c.is_whitespace()) else {
        return parse(text, origin);
    };
    let output = rest.trim();
    // `URL  # a note`: a comment, not a file named `# a note` (`./#x` names such a file).
    if output.starts_with('#') {
        return parse(url_text, origin);
    }
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
/// empty components). An OUTPUT ending in `/` (or `.`) is a folder: the file inside it is named
/// after the URL.
pub(crate) fn output_path(raw: &str, url: &Url) -> Result<String, String> {
    let path = relative_path(raw, "output path")?;
    // `dir/` (or `.`, or `dir/.`) names a folder: the file in it is named after the URL, as
    // usual.
    if matches!(raw.rsplit(['/', '\\']).next(), Some("" | ".")) || path.is_empty() {
        return Ok(join(&path, &naming::from_url(url)));
    }
    if naming::looks_like_ours(&path) {
        return Err(format!(
            "output path {raw} ends in .part or .part.meta, which fetchpar keeps for its \
             unfinished downloads: choose another name"
        ));
    }
    let base = path.rsplit('/').next().unwrap_or(&path);
    if naming::looks_beside(base) {
        return Err(format!(
            "output path {raw} has the shape of x~1.bin, which fetchpar keeps for a file saved \
             beside a name something else holds: choose another name"
        ));
    }
    Ok(path)
}

/// Checks a path given in a list (`what` names it in errors) and returns it normalized, `""`
/// for the output directory itself. It may not be absolute or contain `..`: a list file, which
/// may come from anywhere, must not be able to write outside the output directory.
pub(crate) fn relative_path(raw: &str, what: &str) -> Result<String, String> {
    let fix = "give a path relative to the output directory (-o), without '..'";
    let absolute = raw.starts_with(['/', '\\'])
        || std::path::Path::new(raw).is_absolute()
        || raw.as_bytes().get(1) == Some(&b':');
    if absolute {
        return Err(format!("{what} {raw} is absolute: {fix}"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in raw.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return Err(format!("{what} {raw} climbs out with '..': {fix}")),
            part => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

/// `dir` and `name`, both already relative and normalized, as one path.
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

pub(crate) fn control_char(text: &str) -> Option<String> {
    let c = text.chars().find(|c| c.is_control())?;
    Some(if c == '\0' {
        "contains a NUL byte".to_string()
    } else {
        format!("contains a control character (U+{:04X})", u32::from(c))
    })
}

/// Checks one trimmed input: it must be a single absolute http or https URL with a host.
pub(crate) fn parse(text: &str, origin: Origin) -> std::result::Result<Entry, Invalid> {
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
    Ok(Entry::new(origin, url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(list: &[u8]) -> Vec<Item> {
        let reader: Box<dyn BufRead + Send> = Box::new(io::Cursor::new(list.to_vec()));
        Inputs::from_parts(vec![], Some(reader)).collect()
    }

    /// What a list file gives (option lines on).
    fn file_items(list: &str) -> Vec<Item> {
        let reader: Box<dyn BufRead + Send> = Box::new(io::Cursor::new(list.as_bytes().to_vec()));
        Inputs::from_parts(vec![], Some(reader))
            .with_option_lines(true)
            .collect()
    }

    #[track_caller]
    fn ok(item: &Item) -> &Entry {
        match item {
            Item::Entry(entry) => entry,
            other => panic!("expected an entry, got {other:?}"),
        }
    }

    #[track_caller]
    fn err(item: &Item) -> &Invalid {
        match item {
            Item::Invalid(invalid) => invalid,
            other => panic!("expected an invalid line, got {other:?}"),
        }
    }

    #[test]
    fn a_byte_order_mark_and_a_comment_after_the_url_are_not_part_of_the_line() {
        // A second mark mid-list: two lists put together with `cat`.
        let list = "\u{FEFF}http://h/a\nhttp://h/b   # the second\n\u{FEFF}http://h/c ./#x";
        let got = items(list.as_bytes());
        let urls: Vec<&str> = got.iter().map(|i| ok(i).url.as_str()).collect();
        assert_eq!(urls, ["http://h/a", "http://h/b", "http://h/c"]);
        let outputs: Vec<Option<&str>> = got.iter().map(|i| ok(i).output.as_deref()).collect();
        assert_eq!(outputs, [None, None, Some("#x")]);
    }

    #[test]
    fn skips_blanks_and_comments_and_keeps_line_numbers() {
        let got = items(b"# list\n\n  http://h/a  \r\n\t\nhttps://h/b");
        let origins: Vec<_> = got.iter().map(|i| ok(i).origin).collect();
        assert_eq!(origins, [Origin::Line(3), Origin::Line(5)]);
        assert_eq!(ok(&got[0]).url.as_str(), "http://h/a");
    }

    #[test]
    fn reports_bad_lines_with_numbers() {
        let got = items(b"ftp://h/x\ngarbage\nhttp://\nhttp://h/ok\n");
        let bad: Vec<_> = got
            .iter()
            .filter_map(|i| match i {
                Item::Invalid(bad) => Some(bad),
                _ => None,
            })
            .collect();
        assert_eq!(bad.len(), 3);
        assert_eq!(bad[0].origin, Origin::Line(1));
        assert!(bad[0].reason.contains("unsupported scheme 'ftp'"));
        assert_eq!(bad[1].origin, Origin::Line(2));
        assert!(bad[1].reason.contains("add http://"));
        assert_eq!(bad[2].origin, Origin::Line(3));
        ok(&got[3]);
    }

    #[test]
    fn survives_invalid_utf8_nul_and_long_lines() {
        let mut list = b"http://h/\xff\xfe\nhttp://h/a\0b\n".to_vec();
        list.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES * 2));
        list.extend_from_slice(b"\nhttp://h/last\n");
        let got = items(&list);
        assert_eq!(got.len(), 4);
        assert!(err(&got[0]).reason.contains("UTF-8"));
        assert!(err(&got[1]).reason.contains("NUL"));
        let long = err(&got[2]);
        assert!(long.reason.contains("longer than"));
        assert!(long.text.chars().count() <= MAX_QUOTE_CHARS);
        assert_eq!(ok(&got[3]).origin, Origin::Line(4));
    }

    #[test]
    fn secrets_in_bad_lines_are_hidden() {
        let got = items(b"htp://u:hunter2@h/x\n");
        let bad = err(&got[0]);
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
            .map(|i| ok(i).output.clone().unwrap())
            .collect();
        assert_eq!(
            outputs,
            ["sub/dir/x.bin", "my file.txt", "keep/c.bin", "a/b"]
        );
        for (bad, why) in got[4..8]
            .iter()
            .zip(["'..'", "absolute", "'..'", "absolute"])
        {
            let bad = err(bad);
            assert!(bad.reason.contains(why), "{bad:?}");
            assert!(bad.reason.contains("relative to the output directory"));
        }
        assert_eq!(err(&got[4]).origin, Origin::Line(5));
        assert!(err(&got[8]).reason.contains("not a URL"));
    }

    #[test]
    fn arguments_never_take_an_output() {
        let got: Vec<_> = Inputs::from_parts(vec!["http://h/a b".into()], None).collect();
        assert!(err(&got[0]).reason.contains("spaces"));
    }

    #[test]
    fn arguments_come_first_and_are_numbered() {
        let reader: Box<dyn BufRead + Send> = Box::new(io::Cursor::new(b"http://h/l".to_vec()));
        let got: Vec<_> =
            Inputs::from_parts(vec!["http://h/a".into(), "nope".into()], Some(reader)).collect();
        assert_eq!(ok(&got[0]).origin, Origin::Arg(1));
        assert_eq!(err(&got[1]).origin, Origin::Arg(2));
        assert_eq!(ok(&got[2]).origin, Origin::Line(1));
    }

    #[test]
    fn line_forms_table() {
        // (line, primary URL or error, mirrors, output)
        type Want =
            Result<(&'static str, &'static [&'static str], Option<&'static str>), &'static str>;
        let cases: [(&str, Want); 14] = [
            ("http://h/a", Ok(("http://h/a", &[], None))),
            (
                "http://h/a out.bin",
                Ok(("http://h/a", &[], Some("out.bin"))),
            ),
            (
                "http://h/a\tmy file",
                Ok(("http://h/a", &[], Some("my file"))),
            ),
            (
                "http://h/a\thttp://m/a",
                Ok(("http://h/a", &["http://m/a"], None)),
            ),
            (
                "http://h/a https://m/a\thttp://n/a",
                Ok(("http://h/a", &["https://m/a", "http://n/a"], None)),
            ),
            ("ftp://f/a\thttp://m/a", Ok(("http://m/a", &[], None))),
            (
                "http://h/a\thttp://m/a out.bin",
                Err("every field after a mirror must be a URL"),
            ),
            (
                "ftp://f/a\tftp://g/a",
                Err("none of these URLs is http or https"),
            ),
            ("http://h/a C:\\x", Err("absolute")),
            (
                "http://h/a big.bin.part",
                Err("keeps for its unfinished downloads"),
            ),
            (
                "http://h/a d/x.Part.Meta",
                Err("keeps for its unfinished downloads"),
            ),
            ("http://h/a d.1/x~1.bin", Err("beside a name")),
            ("http://h/a x~12", Err("beside a name")),
            (
                "http://h/a a~1.d/x~b.bin",
                Ok(("http://h/a", &[], Some("a~1.d/x~b.bin"))),
            ),
        ];
        for (line, want) in cases {
            let (got, _) = parse_line_with_mirrors(line, Origin::Line(1));
            match (got, want) {
                (Ok(e), Ok((url, mirrors, output))) => {
                    assert_eq!(e.url.as_str(), url, "{line}");
                    let got: Vec<&str> = e.mirrors.iter().map(Url::as_str).collect();
                    assert_eq!(got, mirrors, "{line}");
                    assert_eq!(e.output.as_deref(), output, "{line}");
                }
                (Err(e), Err(why)) => assert!(e.reason.contains(why), "{line}: {e:?}"),
                (got, want) => panic!("{line}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn an_unusable_mirror_is_a_warning_without_its_secret() {
        let (got, warnings) =
            parse_line_with_mirrors("http://h/a\tftp://u:pw@f/a", Origin::Line(7));
        assert!(got.is_ok());
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].origin, Origin::Line(7));
        assert!(warnings[0].message.contains("unsupported scheme 'ftp'"));
        assert!(!warnings[0].message.contains("pw"), "{:?}", warnings[0]);
    }

    #[test]
    fn a_real_aria2c_input_file_parses() {
        let got = file_items(include_str!("../tests/fixtures/aria2c-input.txt"));
        let mut entries = Vec::new();
        let mut warnings = Vec::new();
        let mut invalid = Vec::new();
        for item in &got {
            match item {
                Item::Entry(e) => entries.push(e),
                Item::Warning(w) => warnings.push(w),
                Item::Invalid(i) => invalid.push(i),
            }
        }
        let iso = entries[0];
        assert_eq!(iso.origin, Origin::Line(2));
        assert_eq!(
            iso.url.as_str(),
            "https://releases.example.org/iso/distro-1.0.iso"
        );
        assert_eq!(iso.mirrors.len(), 1);
        assert_eq!(iso.output.as_deref(), Some("isos/distro.iso"));
        let sum = iso.checksum.as_ref().unwrap();
        assert_eq!(sum.algo, crate::checksum::Algorithm::Sha256);
        assert!(sum.hex.starts_with("ba7816bf"));
        let csv = entries[1];
        assert_eq!(csv.output, None);
        assert_eq!(
            csv.checksum.as_ref().map(|c| c.algo),
            Some(crate::checksum::Algorithm::Md5)
        );
        assert_eq!(entries[2].output.as_deref(), Some("docs/readme.txt"));
        assert_eq!(entries[3].origin, Origin::Line(17));
        assert_eq!(entries.len(), 4);
        // `out=../notes.txt` makes its entry invalid, on the option's line.
        assert_eq!(invalid.len(), 1);
        assert_eq!(invalid[0].origin, Origin::Line(16));
        assert!(invalid[0].reason.contains("climbs out"), "{:?}", invalid[0]);
        // The ftp mirror, then split, max-connection-per-server and header: each said once.
        let said: Vec<(Origin, &str)> = warnings
            .iter()
            .map(|w| (w.origin, w.message.as_str()))
            .collect();
        assert_eq!(said.len(), 4, "{said:?}");
        assert!(said[0].1.contains("ftp://ftp.example.com"));
        for ((origin, message), (line, name)) in said[1..].iter().zip([
            (6, "'split'"),
            (7, "'max-connection-per-server'"),
            (11, "'header'"),
        ]) {
            assert_eq!(*origin, Origin::Line(line));
            assert!(
                message.contains(name) && message.contains("not supported"),
                "{message}"
            );
        }
        assert!(!said.iter().any(|(_, m)| m.contains("s3cr3t")));
    }

    #[test]
    fn option_lines_table() {
        // (list, what the first item is)
        let cases: [(&str, &str); 9] = [
            ("http://h/a\n  out=b\n", "Entry(b)"),
            ("http://h/a\n  dir=d\n\n# c\n  out=b\n", "Entry(d/b)"),
            ("http://h/a?q=1\n  dir=d\n", "Entry(d/a)"),
            (
                "  out=b\nhttp://h/a\n",
                "Invalid(needs a URL line above it)",
            ),
            ("http://h/a\n  dir=/etc\n", "Invalid(is absolute)"),
            (
                "http://h/a\n  checksum=sha-256=00\n",
                "Invalid(64 hex digits)",
            ),
            ("http://h/a x\n  out=b\n", "Invalid(names its output)"),
            ("nope\n  out=b\nhttp://h/c\n", "Invalid(not a URL)"),
            ("  http://h/a\n  http://h/b\n", "Entry(-)"),
        ];
        for (list, want) in cases {
            let got = file_items(list);
            let shown = match &got[0] {
                Item::Entry(e) => format!("Entry({})", e.output.as_deref().unwrap_or("-")),
                Item::Invalid(i) => format!("Invalid({})", i.reason),
                Item::Warning(w) => format!("Warning({})", w.message),
            };
            let (kind, detail) = want.split_once('(').unwrap();
            assert!(
                shown.starts_with(kind) && shown.contains(detail.trim_end_matches(')')),
                "{list:?}: {shown}"
            );
        }
        // An invalid URL line swallows its options; the next URL still comes through.
        let got = file_items("nope\n  out=b\nhttp://h/c\n");
        assert_eq!(got.len(), 2);
        assert_eq!(ok(&got[1]).origin, Origin::Line(3));
    }

    #[test]
    fn an_entry_is_complete_when_the_next_url_line_arrives() {
        // The producer has written one URL line and the start of the next: the first entry must
        // be out before the reader asks for more (this reader fails if asked past its end).
        struct Then(io::Cursor<Vec<u8>>);
        impl io::Read for Then {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                match self.0.read(buf)? {
                    0 => Err(io::Error::other("would block")),
                    n => Ok(n),
                }
            }
        }
        let reader = Then(io::Cursor::new(
            b"http://h/a\n  out=x\nhttp://h/b\n".to_vec(),
        ));
        let mut inputs = Inputs::from_parts(vec![], Some(Box::new(BufReader::new(reader))))
            .with_option_lines(true);
        assert_eq!(ok(&inputs.next().unwrap()).output.as_deref(), Some("x"));
        // From a stream (option lines off) an entry is out as soon as its own line is.
        let reader = Then(io::Cursor::new(b"http://h/a\n".to_vec()));
        let mut inputs = Inputs::from_parts(vec![], Some(Box::new(BufReader::new(reader))));
        assert_eq!(ok(&inputs.next().unwrap()).url.as_str(), "http://h/a");
    }

    #[test]
    fn a_stream_refuses_option_lines_and_unknown_names_are_capped() {
        let got = items(b"http://h/a\n  out=b\n");
        assert_eq!(ok(&got[0]).output, None);
        assert!(err(&got[1]).reason.contains("only from a list file"));
        let mut list = String::from("http://h/a\n");
        for i in 0..MAX_UNKNOWN_OPTIONS + 10 {
            list.push_str(&format!("  opt{i}=1\n  opt{i}=2\n"));
        }
        let warnings = file_items(&list)
            .iter()
            .filter(|i| matches!(i, Item::Warning(_)))
            .count();
        assert_eq!(warnings, MAX_UNKNOWN_OPTIONS + 1);
    }

    #[test]
    fn an_output_ending_in_a_dot_names_a_folder() {
        let url = Url::parse("http://h/a/f7.bin").unwrap();
        for raw in ["sub/", "sub/.", "sub\\.", "./sub/./."] {
            assert_eq!(output_path(raw, &url).as_deref(), Ok("sub/f7.bin"), "{raw}");
        }
        assert_eq!(output_path(".", &url).as_deref(), Ok("f7.bin"));
        assert_eq!(output_path("sub/x", &url).as_deref(), Ok("sub/x"));
    }
}
