//! Expected digests of whole files: what a list line or a `SHA256SUMS` file promises, a streaming
//! hasher for the download loop, and a one-pass check of a finished file.
//!
//! The digests come from the RustCrypto crates (`sha2`, `sha1`, `md-5`), which share one
//! `Digest` trait, so every algorithm is driven the same way.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

/// Bytes read at a time by [`verify_file`].
const BLOCK: usize = 64 * 1024;
/// Hex digits of each digest shown in a mismatch message.
const SHOWN_HEX: usize = 4;

/// A digest algorithm a list or a checksums file may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Algorithm {
    Sha256,
    Sha512,
    Sha1,
    Md5,
}

impl Algorithm {
    /// From aria2c's spelling (`sha-256`) or the coreutils/BSD one (`sha256`, `SHA256`, `MD5`).
    pub(crate) fn from_name(name: &str) -> Option<Algorithm> {
        match name.to_ascii_lowercase().as_str() {
            "sha-256" | "sha256" => Some(Algorithm::Sha256),
            "sha-512" | "sha512" => Some(Algorithm::Sha512),
            "sha-1" | "sha1" => Some(Algorithm::Sha1),
            "md5" | "md-5" => Some(Algorithm::Md5),
            _ => None,
        }
    }

    /// The algorithm whose hex digest has this many digits (how `sha256sum`-style files are
    /// told apart: they do not name it).
    pub(crate) fn from_hex_len(len: usize) -> Option<Algorithm> {
        match len {
            64 => Some(Algorithm::Sha256),
            128 => Some(Algorithm::Sha512),
            40 => Some(Algorithm::Sha1),
            32 => Some(Algorithm::Md5),
            _ => None,
        }
    }

    pub(crate) fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
            Algorithm::Sha1 => 40,
            Algorithm::Md5 => 32,
        }
    }

    /// aria2c's spelling, as `--json` and messages show it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha-256",
            Algorithm::Sha512 => "sha-512",
            Algorithm::Sha1 => "sha-1",
            Algorithm::Md5 => "md5",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The digest a whole file must have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Checksum {
    pub(crate) algo: Algorithm,
    /// Lowercase hex, exactly `algo.hex_len()` digits.
    pub(crate) hex: String,
}

impl Checksum {
    /// Checks `hex` against `algo` and keeps it lowercase.
    pub(crate) fn new(algo: Algorithm, hex: &str) -> Result<Checksum, String> {
        if hex.len() != algo.hex_len() {
            return Err(format!(
                "a {algo} digest has {} hex digits, this one has {}",
                algo.hex_len(),
                hex.len()
            ));
        }
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("the {algo} digest is not hexadecimal"));
        }
        Ok(Checksum {
            algo,
            hex: hex.to_ascii_lowercase(),
        })
    }

    /// Parses aria2c's `TYPE=DIGEST` form, e.g. `sha-256=3a7b…`.
    pub(crate) fn parse(text: &str) -> Result<Checksum, String> {
        let Some((name, hex)) = text.split_once('=') else {
            return Err(format!(
                "expected TYPE=DIGEST (e.g. sha-256=HEX), found '{text}'"
            ));
        };
        let algo = Algorithm::from_name(name.trim()).ok_or_else(|| {
            format!("unknown digest type '{name}': use sha-256, sha-512, sha-1 or md5")
        })?;
        Checksum::new(algo, hex.trim())
    }

    /// A hasher for this checksum's algorithm.
    pub(crate) fn hasher(&self) -> Hasher {
        Hasher::new(self.algo)
    }

    /// Compares a finished digest with this one.
    pub(crate) fn check(&self, got_hex: &str) -> Result<(), Mismatch> {
        if self.hex.eq_ignore_ascii_case(got_hex) {
            Ok(())
        } else {
            Err(Mismatch {
                expected: self.hex.clone(),
                got: got_hex.to_ascii_lowercase(),
            })
        }
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.algo, self.hex)
    }
}

/// The bytes did not have the expected digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mismatch {
    pub(crate) expected: String,
    pub(crate) got: String,
}

impl fmt::Display for Mismatch {
    /// `checksum mismatch: expected 3a7b…, got 91c0…` (the caller adds what was left on disk).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "checksum mismatch: expected {}…, got {}…",
            abbreviate(&self.expected),
            abbreviate(&self.got)
        )
    }
}

fn abbreviate(hex: &str) -> &str {
    hex.get(..SHOWN_HEX).unwrap_or(hex)
}

/// A digest being computed over bytes as they arrive. Holds the state of one algorithm and
/// allocates nothing per update, so it can sit in the per-chunk loop.
#[derive(Clone)]
pub(crate) struct Hasher(State);

#[derive(Clone)]
enum State {
    Sha256(Sha256),
    Sha512(Sha512),
    Sha1(Sha1),
    Md5(Md5),
}

impl Hasher {
    pub(crate) fn new(algo: Algorithm) -> Hasher {
        Hasher(match algo {
            Algorithm::Sha256 => State::Sha256(Sha256::new()),
            Algorithm::Sha512 => State::Sha512(Sha512::new()),
            Algorithm::Sha1 => State::Sha1(Sha1::new()),
            Algorithm::Md5 => State::Md5(Md5::new()),
        })
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match &mut self.0 {
            State::Sha256(h) => h.update(bytes),
            State::Sha512(h) => h.update(bytes),
            State::Sha1(h) => h.update(bytes),
            State::Md5(h) => h.update(bytes),
        }
    }

    /// Feeds everything `reader` holds, 64 KiB at a time (a `.part` being resumed is read back
    /// once this way before the rest streams in); returns the bytes read.
    pub(crate) fn update_from(&mut self, reader: &mut impl Read) -> io::Result<u64> {
        let mut block = vec![0u8; BLOCK];
        let mut total = 0;
        loop {
            let n = match reader.read(&mut block) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.update(&block[..n]);
            total += n as u64;
        }
    }

    /// The digest in lowercase hex.
    pub(crate) fn finish(self) -> String {
        match self.0 {
            State::Sha256(h) => to_hex(&h.finalize()),
            State::Sha512(h) => to_hex(&h.finalize()),
            State::Sha1(h) => to_hex(&h.finalize()),
            State::Md5(h) => to_hex(&h.finalize()),
        }
    }
}

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing into a String cannot fail.
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Reads `path` once, in 64 KiB blocks, and compares its digest with `expected`. The outer
/// error is the file's (unreadable, gone); the inner one is a wrong digest.
pub(crate) fn verify_file(path: &Path, expected: &Checksum) -> io::Result<Result<(), Mismatch>> {
    let mut hasher = expected.hasher();
    hasher.update_from(&mut File::open(path)?)?;
    Ok(expected.check(&hasher.finish()))
}

/// A writer that hashes exactly the bytes its inner writer accepted, so the download loop can
/// verify while it streams without a change: wrap the `.part` file in it. Only valid when the
/// bytes arrive in file order from offset 0 (or after [`Hasher::update_from`] fed the bytes
/// already on disk); `--split` and mirror switches verify the finished part with
/// [`verify_file`] instead.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W, hasher: Hasher) -> HashingWriter<W> {
        HashingWriter { inner, hasher }
    }

    pub(crate) fn into_parts(self) -> (W, Hasher) {
        (self.inner, self.hasher)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Digests of "abc" as published with each algorithm.
    const ABC: [(Algorithm, &str); 4] = [
        (
            Algorithm::Sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        (
            Algorithm::Sha512,
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        ),
        (Algorithm::Sha1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
        (Algorithm::Md5, "900150983cd24fb0d6963f7d28e17f72"),
    ];

    #[test]
    fn each_algorithm_hashes_in_pieces_as_in_one() {
        for (algo, hex) in ABC {
            let mut h = Hasher::new(algo);
            h.update(b"a");
            h.update(b"");
            h.update(b"bc");
            assert_eq!(h.finish(), hex, "{algo}");
            assert_eq!(Algorithm::from_hex_len(hex.len()), Some(algo));
        }
    }

    #[test]
    fn parses_aria2c_checksum_values() {
        let sha1 = "A9993E364706816ABA3E25717850C26C9CD0D89D";
        type Want = Result<(Algorithm, &'static str), &'static str>;
        let cases: [(String, Want); 7] = [
            (format!("sha-1={sha1}"), Ok((Algorithm::Sha1, ABC[2].1))),
            (format!("SHA1={sha1}"), Ok((Algorithm::Sha1, ABC[2].1))),
            (format!("md5={}", ABC[3].1), Ok((Algorithm::Md5, ABC[3].1))),
            (format!("sha-256={sha1}"), Err("has 64 hex digits")),
            (format!("crc32={sha1}"), Err("unknown digest type 'crc32'")),
            ("sha-1".into(), Err("expected TYPE=DIGEST")),
            (format!("md5={}", "g".repeat(32)), Err("not hexadecimal")),
        ];
        for (text, want) in cases {
            let got = Checksum::parse(&text);
            match (got, want) {
                (Ok(c), Ok((algo, hex))) => assert_eq!((c.algo, c.hex.as_str()), (algo, hex)),
                (Err(e), Err(why)) => assert!(e.contains(why), "{text}: {e}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_mismatch_shows_four_digits_of_each() {
        let want = Checksum::new(Algorithm::Sha256, ABC[0].1).unwrap();
        let mut h = want.hasher();
        h.update(b"abd");
        let err = want.check(&h.finish()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("checksum mismatch: expected ba78…, got {}…", &err.got[..4])
        );
        assert_ne!(&err.got[..4], "ba78");
    }

    /// Accepts at most 2 bytes per write, as a short write may.
    struct Trickle(Vec<u8>);
    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(2);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_hashing_writer_hashes_what_was_written_after_a_resumed_prefix() {
        let mut hasher = Hasher::new(Algorithm::Md5);
        assert_eq!(hasher.update_from(&mut &b"a"[..]).unwrap(), 1);
        let mut w = HashingWriter::new(Trickle(Vec::new()), hasher);
        assert_eq!(w.write(b"bcdef").unwrap(), 2);
        let (inner, hasher) = w.into_parts();
        assert_eq!(inner.0, b"bc");
        // "a" then "bc": exactly what was accepted, in order.
        assert_eq!(hasher.finish(), ABC[3].1);
    }

    #[test]
    fn verifies_a_file_larger_than_one_block() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let body: Vec<u8> = (0..BLOCK * 2 + 17).map(|i| (i % 251) as u8).collect();
        file.write_all(&body).unwrap();
        let mut h = Hasher::new(Algorithm::Sha512);
        h.update(&body);
        let right = Checksum::new(Algorithm::Sha512, &h.finish()).unwrap();
        assert_eq!(verify_file(file.path(), &right).unwrap(), Ok(()));
        let wrong = Checksum::new(Algorithm::Sha512, &"0".repeat(128)).unwrap();
        let mismatch = verify_file(file.path(), &wrong).unwrap().unwrap_err();
        assert_eq!(mismatch.got, right.hex);
        assert!(verify_file(&file.path().join("missing"), &right).is_err());
    }
}
