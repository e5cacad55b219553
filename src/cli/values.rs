//! The validated values of the command line: each flag's text parsed once, by its `FromStr`,
//! into a type that can only hold what the flag allows, with one error line that says what to
//! give instead (and never quotes a value back: it may be a secret).

use std::ffi::OsStr;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;

use super::MAX_JOBS;

/// Parses a value with its `FromStr`, but on error never quotes it back as clap's own message
/// would ("invalid value 'Authorization: Bearer …'"): it may be a password or a token.
#[derive(Clone)]
pub(crate) struct Unquoted<T>(PhantomData<fn() -> T>);

impl<T> Unquoted<T> {
    pub(crate) fn new() -> Unquoted<T> {
        Unquoted(PhantomData)
    }
}

impl<T> Default for Unquoted<T> {
    fn default() -> Unquoted<T> {
        Unquoted::new()
    }
}

impl<T> TypedValueParser for Unquoted<T>
where
    T: FromStr<Err = String> + Clone + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let parsed = match value.to_str() {
            Some(text) => text.parse::<T>(),
            None => Err("it is not valid UTF-8".to_string()),
        };
        parsed.map_err(|reason| {
            let name = arg.map_or_else(String::new, ToString::to_string);
            clap::Error::raw(
                ErrorKind::ValueValidation,
                format!("invalid value for '{name}': {reason}"),
            )
            .format(&mut cmd.clone())
        })
    }
}

/// The worker count: a whole number from 1 to [`MAX_JOBS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Jobs(pub(crate) usize);

impl FromStr for Jobs {
    type Err = String;

    fn from_str(s: &str) -> Result<Jobs, String> {
        match s.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_JOBS).contains(&n) => Ok(Jobs(n)),
            Ok(_) => Err(format!(
                "the number of jobs must be from 1 to {MAX_JOBS} (try -j 8)"
            )),
            Err(_) => Err(format!("'{s}' is not a whole number (try -j 8)")),
        }
    }
}

/// `--compare`'s worker counts: empty for plain `--compare` (1 against `-j`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts(pub(crate) Vec<usize>);

impl FromStr for Counts {
    type Err = String;

    fn from_str(s: &str) -> Result<Counts, String> {
        if s.trim().is_empty() {
            return Ok(Counts::default());
        }
        let mut counts = s
            .split(',')
            .map(|n| n.parse::<Jobs>().map(|j| j.0))
            .collect::<Result<Vec<usize>, String>>()
            .map_err(|e| e.replace("(try -j 8)", "(try --compare=1,4,16)"))?;
        // From the fewest up: the table's speedups are over its first row, and where more
        // workers stopped paying is read going up.
        counts.sort_unstable();
        if counts.len() < 2 {
            return Err("give at least two worker counts (try --compare=1,4,16)".into());
        }
        // A count twice would run the same pass twice and make the table look like a trend.
        if let Some(n) = counts.windows(2).find(|w| w[0] == w[1]).map(|w| w[0]) {
            return Err(format!(
                "the worker count {n} is given twice: give each count once (try --compare=1,4,16)"
            ));
        }
        Ok(Counts(counts))
    }
}

/// Connections per file for `--split`: 1 (no splitting) to [`crate::download::split::MAX_SPLIT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Split(pub(crate) usize);

impl FromStr for Split {
    type Err = String;

    fn from_str(s: &str) -> Result<Split, String> {
        let max = crate::download::split::MAX_SPLIT;
        match s.trim().parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(Split(n)),
            Ok(_) => Err(format!(
                "the number of connections per file must be from 1 to {max} (try --split 4)"
            )),
            Err(_) => Err(format!("'{s}' is not a whole number (try --split 4)")),
        }
    }
}

/// Smallest and largest `--chunk-size`.
pub(crate) const MIN_CHUNK: u64 = 1024;
pub(crate) const MAX_CHUNK: u64 = 16 << 20;

pub(super) fn chunk_size(s: &str) -> Result<Size, String> {
    let size: Size = s.parse()?;
    if !(MIN_CHUNK..=MAX_CHUNK).contains(&size.0) {
        return Err(format!(
            "'{s}' is out of range: give a chunk size from 1K to 16M (try 64K)"
        ));
    }
    Ok(size)
}

/// A positive number of seconds, fractions allowed (`0.5`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Seconds(pub(crate) Duration);

impl FromStr for Seconds {
    type Err = String;

    fn from_str(s: &str) -> Result<Seconds, String> {
        let secs: f64 = s
            .trim()
            .parse()
            .map_err(|_| format!("'{s}' is not a number of seconds (try 30 or 2.5)"))?;
        if !(0.001..=86_400.0).contains(&secs) {
            return Err(format!(
                "'{s}' is out of range: give a number of seconds, at least 0.001 and at most 86400"
            ));
        }
        Ok(Seconds(Duration::from_secs_f64(secs)))
    }
}

/// A byte count: `1048576`, `512K`, `10M`, `1.5G`, `2GiB` (binary units: K = 1024).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Size, String> {
        let text = s.trim();
        let digits_end = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(digits_end);
        let unit = unit.trim().to_ascii_uppercase();
        let unit = unit.trim_end_matches("IB").trim_end_matches('B');
        let scale: u64 = match unit {
            "" => 1,
            "K" => 1 << 10,
            "M" => 1 << 20,
            "G" => 1 << 30,
            "T" => 1 << 40,
            _ => return Err(format!("'{s}' is not a size (try 4096, 512K, 10M or 2G)")),
        };
        let value: f64 = number
            .parse()
            .map_err(|_| format!("'{s}' is not a size (try 4096, 512K, 10M or 2G)"))?;
        let bytes = value * scale as f64;
        if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
            return Err(format!("'{s}' is out of range: give at least one byte"));
        }
        Ok(Size(bytes as u64))
    }
}
