//! Checking a download against its expected digest before it gets its final name.
//!
//! The digest is computed while the body streams whenever the bytes reach the part in file
//! order (a resume first reads back the prefix already on disk, once); when they did not
//! (`--split` pieces fill the part out of order, a `416` said an earlier part was complete),
//! the finished part is read once instead.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use crate::checksum::{verify_file, Checksum, Hasher, HashingWriter, Mismatch};

/// The expected digest of one download and the running hash of the part's prefix.
pub(crate) struct Verify {
    pub(crate) expected: Checksum,
    /// The hash of the part's first `hashed` bytes; `None` when it cannot be trusted.
    hasher: Option<Hasher>,
    hashed: u64,
}

impl Verify {
    pub(crate) fn new(expected: Checksum) -> Verify {
        Verify {
            expected,
            hasher: None,
            hashed: 0,
        }
    }

    /// Makes the running hash cover exactly the first `have` bytes of `part`, reading them
    /// back if it does not already (a resume, a mirror switch after a cut, a restart).
    fn catch_up(&mut self, part: &Path, have: u64) -> io::Result<()> {
        if self.hasher.is_some() && self.hashed == have {
            return Ok(());
        }
        let mut hasher = self.expected.hasher();
        if have > 0 {
            let read = hasher.update_from(&mut File::open(part)?.take(have))?;
            if read != have {
                return Err(io::Error::other("the part file is shorter than its bytes"));
            }
        }
        self.hasher = Some(hasher);
        self.hashed = have;
        Ok(())
    }

    /// Runs `write` (which appends to `file`, counting in `have`) with the bytes hashed on
    /// their way to the file. A local error reading the prefix back just leaves the hash to
    /// [`Verify::check`]'s read of the finished part.
    pub(crate) fn streaming<F, W, R>(
        &mut self,
        part: &Path,
        file: &mut F,
        have: &mut u64,
        write: W,
    ) -> R
    where
        F: Write,
        W: FnOnce(&mut dyn Write, &mut u64) -> (R, bool),
    {
        let Some(hasher) = self.catch_up(part, *have).ok().and(self.hasher.take()) else {
            return write(file, have).0;
        };
        let mut out = HashingWriter::new(file, hasher);
        let (r, clean) = write(&mut out, have);
        // After a write error the hash may hold bytes that the count does not: drop it.
        if clean {
            self.hasher = Some(out.into_parts().1);
            self.hashed = *have;
        }
        r
    }

    /// Bytes went in out of order (`--split`): the running hash no longer applies.
    pub(crate) fn forget(&mut self) {
        self.hasher = None;
    }

    /// The verdict on the finished part of `have` bytes: from the running hash when it covers
    /// them, else by reading the part once.
    pub(crate) fn check(&mut self, part: &Path, have: u64) -> io::Result<Result<(), Mismatch>> {
        match self.hasher.take() {
            Some(hasher) if self.hashed == have => Ok(self.expected.check(&hasher.finish())),
            _ => verify_file(part, &self.expected),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::Algorithm;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn a_resumed_part_is_hashed_from_its_first_byte() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("x.part");
        std::fs::write(&part, b"ab").unwrap();
        let mut v = Verify::new(Checksum::new(Algorithm::Sha256, ABC).unwrap());
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&part)
            .unwrap();
        let mut have = 2;
        v.streaming(&part, &mut file, &mut have, |out, have| {
            out.write_all(b"c").unwrap();
            *have += 1;
            ((), true)
        });
        assert_eq!(v.hashed, 3);
        assert_eq!(v.check(&part, 3).unwrap(), Ok(()));
    }

    #[test]
    fn out_of_order_bytes_are_checked_by_reading_the_part() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("x.part");
        std::fs::write(&part, b"abd").unwrap();
        let mut v = Verify::new(Checksum::new(Algorithm::Sha256, ABC).unwrap());
        v.forget();
        let mismatch = v.check(&part, 3).unwrap().unwrap_err();
        assert_eq!(mismatch.expected, ABC);
        assert!(mismatch
            .to_string()
            .starts_with("checksum mismatch: expected ba78…, got "));
    }
}
