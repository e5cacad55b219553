//! Option lines under a URL in a list file, in the form aria2c's input files use:
//!
//! ```text
//! https://a.example/f.iso<TAB>https://b.example/f.iso
//!   dir=isos
//!   out=f.iso
//!   checksum=sha-256=3a7b…
//! ```
//!
//! An option line is indented and starts with `key=`, where the key is made of letters, digits
//! and `-`, so it can never be mistaken for a URL (whose scheme ends at `:`), not even one with
//! `=` in its query string. fetchpar knows `out`, `dir` and `checksum`; other aria2c options are
//! reported once per name and otherwise ignored, never silently dropped.

use url::Url;

use crate::checksum::Checksum;
use crate::input;

/// One option line, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Opt {
    /// `out=NAME`: the file name, relative to `dir` (or to `-o`).
    Out(String),
    /// `dir=DIR`: the folder, relative to `-o`.
    Dir(String),
    Checksum(Checksum),
    /// An option fetchpar does not know; only its name, since a value (a `header=`) may hold a
    /// secret.
    Unknown(String),
}

/// `Some((key, value))` when `raw` (the untrimmed line) is an option line.
pub(crate) fn split(raw: &str) -> Option<(&str, &str)> {
    if !raw.starts_with([' ', '\t']) {
        return None;
    }
    let (key, value) = raw.trim().split_once('=')?;
    let is_key = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    is_key.then_some((key, value))
}

/// Checks one option's value.
pub(crate) fn parse(key: &str, value: &str) -> Result<Opt, String> {
    if let (true, Some(reason)) = (key == "out" || key == "dir", input::control_char(value)) {
        return Err(format!("{key} {reason}"));
    }
    match key {
        "out" => {
            if input::relative_path(value, "out")?.is_empty() {
                return Err("out= needs a file name".into());
            }
            Ok(Opt::Out(value.to_string()))
        }
        "dir" => {
            input::relative_path(value, "dir")?;
            Ok(Opt::Dir(value.to_string()))
        }
        "checksum" => Checksum::parse(value).map(Opt::Checksum),
        other => Ok(Opt::Unknown(other.to_string())),
    }
}

/// What the option lines under one URL said.
#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    out: Option<String>,
    dir: Option<String>,
    pub(crate) checksum: Option<Checksum>,
}

impl Options {
    /// Records a known option; a later line wins, as in aria2c.
    pub(crate) fn set(&mut self, opt: Opt) {
        match opt {
            Opt::Out(out) => self.out = Some(out),
            Opt::Dir(dir) => self.dir = Some(dir),
            Opt::Checksum(sum) => self.checksum = Some(sum),
            Opt::Unknown(_) => {}
        }
    }

    pub(crate) fn names_output(&self) -> bool {
        self.out.is_some() || self.dir.is_some()
    }

    /// The output path `dir` and `out` make for `url`, relative to `-o`; `None` when neither was
    /// given. Both were checked by [`parse`], so this only joins them.
    pub(crate) fn output(&self, url: &Url) -> Result<Option<String>, String> {
        let dir = match &self.dir {
            Some(dir) => input::relative_path(dir, "dir")?,
            None if self.out.is_none() => return Ok(None),
            None => String::new(),
        };
        let name = match &self.out {
            Some(out) => input::output_path(out, url)?,
            None => crate::naming::from_url(url),
        };
        Ok(Some(input::join(&dir, &name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_option_lines_from_urls() {
        let cases = [
            ("  out=a.bin", Some(("out", "a.bin"))),
            ("\tchecksum=sha-1=abc", Some(("checksum", "sha-1=abc"))),
            (
                "  max-connection-per-server=4",
                Some(("max-connection-per-server", "4")),
            ),
            ("  http://h/a?x=1", None),
            ("out=a.bin", None),
            ("  =x", None),
            ("  just text", None),
        ];
        for (line, want) in cases {
            assert_eq!(split(line), want, "{line:?}");
        }
    }

    #[test]
    fn checks_option_values() {
        let cases: [(&str, &str, Result<&str, &str>); 11] = [
            (
                "out",
                "a\u{1b}[2J",
                Err("out contains a control character (U+001B)"),
            ),
            ("dir", "a\0b", Err("dir contains a NUL byte")),
            ("out", "a.bin", Ok("Out")),
            ("out", "sub/a.bin", Ok("Out")),
            ("out", "", Err("needs a file name")),
            ("out", "../a", Err("out ../a climbs out with '..'")),
            ("dir", "/tmp", Err("dir /tmp is absolute")),
            ("dir", "a/../../b", Err("climbs out")),
            ("dir", ".", Ok("Dir")),
            ("checksum", "sha-2=00", Err("unknown digest type")),
            ("split", "5", Ok("Unknown")),
        ];
        for (key, value, want) in cases {
            match (parse(key, value), want) {
                (Ok(opt), Ok(kind)) => assert!(format!("{opt:?}").starts_with(kind), "{opt:?}"),
                (Err(e), Err(why)) => assert!(e.contains(why), "{key}={value}: {e}"),
                (got, want) => panic!("{key}={value}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn dir_and_out_make_one_path_under_the_output_directory() {
        let url = Url::parse("http://h/path/file.iso").unwrap();
        type Opts = &'static [(&'static str, &'static str)];
        let cases: [(Opts, Option<&str>); 6] = [
            (&[], None),
            (&[("out", "x.iso")], Some("x.iso")),
            (&[("dir", "isos/")], Some("isos/file.iso")),
            (&[("dir", "./a//b"), ("out", "c/x")], Some("a/b/c/x")),
            (&[("dir", "."), ("out", "x")], Some("x")),
            (&[("out", "first"), ("out", "second")], Some("second")),
        ];
        for (opts, want) in cases {
            let mut o = Options::default();
            for (k, v) in opts {
                o.set(parse(k, v).unwrap());
            }
            assert_eq!(o.output(&url).unwrap().as_deref(), want, "{opts:?}");
        }
    }
}
