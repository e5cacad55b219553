//! Which inputs this process downloads: its share of the list (`--shard K/N`), and each URL once.
//!
//! Both decisions use one stable hash of the URL: SHA-256 of the URL as fetchpar normalizes it
//! (the `url` crate's serialization: scheme and host lower-cased, default port dropped, the form
//! printed in `--json`'s `url` field, credentials included, any `#fragment` left out). Not
//! Rust's `DefaultHasher`, which is seeded at random per process: N machines must agree on every
//! URL's shard with no coordinator, today and after an upgrade. A URL belongs to shard
//! `1 + (first 8 bytes of the digest, read as a big-endian u64) mod N`, which anyone can
//! recompute:
//!
//! ```text
//! python3 -c 'import hashlib,sys; print(1 + int(hashlib.sha256(sys.argv[1].encode()).hexdigest()[:16], 16) % int(sys.argv[2]))' URL N
//! ```

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use url::Url;

use crate::input::{Entry, Origin};
use crate::packed::{Key, PackedMap};

/// The most shards accepted: far beyond any real fleet, small enough to catch a typo'd N.
pub(crate) const MAX_SHARDS: u64 = 1_000_000;

/// The environment variable read when `--shard` is not given.
pub(crate) const SHARD_ENV: &str = "FETCHPAR_SHARD";

/// This process's share: `index` (0-based) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shard {
    pub(crate) index: u64,
    pub(crate) count: u64,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.count)
    }
}

impl Shard {
    /// Whether the URL with this digest is ours.
    pub(crate) fn owns(&self, digest: &[u8; 32]) -> bool {
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first) % self.count == self.index
    }
}

/// `--shard` as written: `K/N`, or `auto/N` / `auto` to take K (and N) from a scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShardSpec {
    Fixed(Shard),
    Auto(Option<u64>),
}

const SHARD_HELP: &str = "write K/N with 1 <= K <= N (e.g. 2/4), or auto/N inside a Kubernetes \
                          Indexed Job or a Slurm job array";

impl FromStr for ShardSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<ShardSpec, String> {
        let bad = || format!("'{s}' is not a shard: {SHARD_HELP}");
        let text = s.trim();
        if text == "auto" {
            return Ok(ShardSpec::Auto(None));
        }
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let n: u64 = n.trim().parse().map_err(|_| bad())?;
        if !(1..=MAX_SHARDS).contains(&n) {
            return Err(format!(
                "'{s}' is not a shard: the count must be from 1 to {MAX_SHARDS}"
            ));
        }
        if k.trim() == "auto" {
            return Ok(ShardSpec::Auto(Some(n)));
        }
        let k: u64 = k.trim().parse().map_err(|_| bad())?;
        if !(1..=n).contains(&k) {
            return Err(format!(
                "'{s}' is not a shard: K must be from 1 to N (shards are numbered from 1)"
            ));
        }
        Ok(ShardSpec::Fixed(Shard {
            index: k - 1,
            count: n,
        }))
    }
}

impl ShardSpec {
    /// Turns `auto` into a shard from the scheduler's variables (`env` looks one up):
    /// `JOB_COMPLETION_INDEX` (Kubernetes, 0-based; it does not give the count, so `auto/N`) or
    /// `SLURM_ARRAY_TASK_ID` (relative to `SLURM_ARRAY_TASK_MIN`, in steps of
    /// `SLURM_ARRAY_TASK_STEP`; the count defaults to `SLURM_ARRAY_TASK_COUNT`).
    pub(crate) fn resolve(self, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard, String> {
        let count = match self {
            ShardSpec::Fixed(shard) => return Ok(shard),
            ShardSpec::Auto(count) => count,
        };
        let number = |name: &str| -> Result<Option<u64>, String> {
            match env(name) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    format!("{name}='{v}' is not a whole number, so --shard auto cannot use it")
                }),
            }
        };
        let (index, count) = if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = count.ok_or(
                "a Kubernetes Job does not tell its pods how many completions it has: \
                 write --shard auto/N with N = the Job's .spec.completions",
            )?;
            (index, count)
        } else if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
            let tasks = number("SLURM_ARRAY_TASK_COUNT")?;
            let max = number("SLURM_ARRAY_TASK_MAX")?;
            slurm_grid(id, min, step, tasks, max)?;
            let count = match count.or(tasks) {
                Some(n) => n,
                None => {
                    return Err(
                        "SLURM_ARRAY_TASK_COUNT is not set: write --shard auto/N with \
                                N = the number of array tasks"
                            .into(),
                    )
                }
            };
            ((id - min) / step, count)
        } else {
            return Err(
                "auto needs JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) or \
                        SLURM_ARRAY_TASK_ID (a Slurm job array); elsewhere write --shard K/N"
                    .into(),
            );
        };
        if !(1..=MAX_SHARDS).contains(&count) || index >= count {
            return Err(format!(
                "the scheduler's task {} does not fit in {count} shards: give the same count \
                 as the number of tasks (a Slurm array must be one range like --array=1-{count})",
                index + 1
            ));
        }
        Ok(Shard { index, count })
    }
}

/// Slurm numbers an array's tasks by the ids the user wrote (`--array=0-6:2,3`), which need not
/// be an even grid: then `(ID - MIN) / STEP` gives two tasks the same shard and none another,
/// and every task would exit 0 with URLs fetched twice and others never. Every task sees the
/// same MIN, MAX, STEP and COUNT, so each refuses alike unless the ids are exactly
/// `MIN, MIN + STEP, …, MAX`.
fn slurm_grid(
    id: u64,
    min: u64,
    step: u64,
    tasks: Option<u64>,
    max: Option<u64>,
) -> Result<(), String> {
    let even_ends = match (tasks, max) {
        (Some(tasks), Some(max)) => {
            tasks
                .checked_sub(1)
                .and_then(|n| n.checked_mul(step))
                .and_then(|n| n.checked_add(min))
                == Some(max)
        }
        _ => true,
    };
    let on_grid = id.checked_sub(min).is_some_and(|d| d % step == 0);
    if even_ends && on_grid {
        return Ok(());
    }
    let shown = |v: Option<u64>| v.map_or_else(|| "unset".to_string(), |v| v.to_string());
    Err(format!(
        "the Slurm array is not one even range of task ids (SLURM_ARRAY_TASK_ID={id}, \
         MIN={min}, MAX={}, STEP={step}, COUNT={}): shards need MAX = MIN + (COUNT - 1) x STEP \
         and (ID - MIN) a multiple of STEP, or some shard would run twice and another never; \
         submit the array as one range like --array=0-7 or --array=0-14:2",
        shown(max),
        shown(tasks)
    ))
}

/// The stable digest both decisions use (see the module comment). The `#fragment` is left
/// out: it never reaches a server, so `x#a` and `x` are one resource.
pub(crate) fn digest(url: &Url) -> [u8; 32] {
    Sha256::digest(url[..url::Position::AfterQuery].as_bytes()).into()
}

/// What to do with a valid input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Download,
    /// The same URL (with no explicit output) came first from this input.
    Duplicate(Origin),
    /// Another shard's URL: not ours to download or report.
    Elsewhere,
}

/// The producer's filter; one per pass, so `--compare`'s passes each see the whole list.
#[derive(Debug, Default)]
pub(crate) struct Selector {
    shard: Option<Shard>,
    /// URLs already queued, by the first 88 bits of their digest, with where each came from
    /// packed in 32 bits: 13 bytes per distinct URL however long the URL, never the strings
    /// (the top 16 bits are implied by where an entry sits: see [`crate::packed`]). This table
    /// is what a long list grows, so each byte counts: a million URLs are a megabyte a byte.
    /// Two different URLs sharing a key (the second would be reported as a duplicate of the
    /// first, not downloaded) is as likely as guessing a random 88-bit key: for n URLs about
    /// n^2 / 2^89, 1 in 6 × 10^14 for a million, 1 in 6 × 10^8 for a billion.
    seen: PackedMap<9, 4>,
    /// First origins too large to pack (beyond line 2^31 − 1): kept exactly, in the rare case.
    seen_far: HashMap<Key<9>, Origin>,
}

/// `Origin` in 32 bits: the top bit tells an argument from a list line, the rest its number.
const ARG_BIT: u32 = 1 << 31;

fn pack(origin: Origin) -> Option<u32> {
    let (n, tag) = match origin {
        Origin::Arg(n) => (n, ARG_BIT),
        Origin::Line(n) => (n, 0),
    };
    u32::try_from(n)
        .ok()
        .filter(|n| n & ARG_BIT == 0)
        .map(|n| n | tag)
}

fn unpack(packed: u32) -> Origin {
    let n = (packed & !ARG_BIT) as usize;
    if packed & ARG_BIT == 0 {
        Origin::Line(n)
    } else {
        Origin::Arg(n)
    }
}

impl Selector {
    pub(crate) fn new(shard: Option<Shard>) -> Selector {
        Selector {
            shard,
            seen: PackedMap::default(),
            seen_far: HashMap::new(),
        }
    }

    pub(crate) fn select(&mut self, entry: &Entry) -> Verdict {
        let digest = digest(&entry.url);
        if let Some(shard) = self.shard {
            if !shard.owns(&digest) {
                return Verdict::Elsewhere;
            }
        }
        // A line that names its output asked for that copy: never folded into another.
        if entry.output.is_some() {
            return Verdict::Download;
        }
        let mut rest = [0u8; 9];
        rest.copy_from_slice(&digest[2..11]);
        let key = Key {
            top: u16::from_be_bytes([digest[0], digest[1]]),
            rest,
        };
        if let Some(first) = self.seen_far.get(&key) {
            return Verdict::Duplicate(*first);
        }
        let Some(packed) = pack(entry.origin) else {
            if let Some(first) = self.seen.get(&key) {
                return Verdict::Duplicate(unpack(u32::from_be_bytes(first)));
            }
            self.seen_far.insert(key, entry.origin);
            return Verdict::Download;
        };
        match self.seen.insert_new(key, packed.to_be_bytes()) {
            Ok(()) => Verdict::Download,
            Err(first) => Verdict::Duplicate(unpack(u32::from_be_bytes(first))),
        }
    }

    /// Invalid lines have no URL to hash: shard 1 reports them all, so across the fleet each is
    /// reported exactly once.
    pub(crate) fn reports_invalid(&self) -> bool {
        self.shard.is_none_or(|s| s.index == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(url: &str, line: usize, output: Option<&str>) -> Entry {
        Entry {
            output: output.map(str::to_string),
            ..Entry::new(Origin::Line(line), Url::parse(url).unwrap())
        }
    }

    #[test]
    fn specs_parse_and_explain_mistakes() {
        let fixed = |index, count| Ok(ShardSpec::Fixed(Shard { index, count }));
        assert_eq!("1/1".parse(), fixed(0, 1));
        assert_eq!(" 3/4 ".parse(), fixed(2, 4));
        assert_eq!("auto".parse(), Ok(ShardSpec::Auto(None)));
        assert_eq!("auto/8".parse(), Ok(ShardSpec::Auto(Some(8))));
        for bad in ["0/4", "5/4", "1/0", "4", "a/b", "", "1/2/3", "-1/4"] {
            let err = bad.parse::<ShardSpec>().unwrap_err();
            assert!(err.contains("shard"), "{bad}: {err}");
        }
        assert!("5/4"
            .parse::<ShardSpec>()
            .unwrap_err()
            .contains("from 1 to N"));
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn auto_reads_kubernetes_and_slurm() {
        let k8s = env(&[("JOB_COMPLETION_INDEX", "2")]);
        let got = ShardSpec::Auto(Some(4)).resolve(&k8s).unwrap();
        assert_eq!(got, Shard { index: 2, count: 4 });
        assert_eq!(got.to_string(), "3/4");
        let err = ShardSpec::Auto(None).resolve(&k8s).unwrap_err();
        assert!(err.contains(".spec.completions"), "{err}");
        assert!(ShardSpec::Auto(Some(2)).resolve(&k8s).is_err());

        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
        ]);
        let got = ShardSpec::Auto(None).resolve(&slurm).unwrap();
        assert_eq!(got, Shard { index: 6, count: 8 });
        let stepped = env(&[
            ("SLURM_ARRAY_TASK_ID", "10"),
            ("SLURM_ARRAY_TASK_STEP", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]);
        assert_eq!(
            ShardSpec::Auto(None).resolve(&stepped),
            Ok(Shard { index: 2, count: 3 })
        );
        let err = ShardSpec::Auto(None).resolve(&env(&[])).unwrap_err();
        assert!(err.contains("K/N"), "{err}");
        let err = ShardSpec::Auto(Some(2))
            .resolve(&env(&[("JOB_COMPLETION_INDEX", "x")]))
            .unwrap_err();
        assert!(err.contains("not a whole number"), "{err}");
    }

    #[test]
    fn slurm_arrays_must_be_one_even_range() {
        let array = |id: &'static str, max: &'static str, step: &'static str, count| {
            let vars = [
                ("SLURM_ARRAY_TASK_ID", id),
                ("SLURM_ARRAY_TASK_MIN", "0"),
                ("SLURM_ARRAY_TASK_MAX", max),
                ("SLURM_ARRAY_TASK_STEP", step),
                ("SLURM_ARRAY_TASK_COUNT", count),
            ];
            let lookup = env(&vars);
            ShardSpec::Auto(None).resolve(&lookup)
        };
        // --array=0-6:2,3 (ids 0 2 3 4 6): 3 and 4 would both be shard 2, shard 4 nobody's.
        for id in ["0", "2", "3", "4", "6"] {
            for step in ["1", "2"] {
                let err = array(id, "6", step, "5").unwrap_err();
                assert!(err.contains(&format!("SLURM_ARRAY_TASK_ID={id}")), "{err}");
                assert!(err.contains("MAX=6") && err.contains("COUNT=5"), "{err}");
                assert!(err.contains("MAX = MIN + (COUNT - 1) x STEP"), "{err}");
            }
        }
        // --array=0-6:2 (ids 0 2 4 6) is a grid; an id off it is refused.
        assert_eq!(array("4", "6", "2", "4"), Ok(Shard { index: 2, count: 4 }));
        assert_eq!(array("6", "6", "2", "4"), Ok(Shard { index: 3, count: 4 }));
        assert!(array("3", "6", "2", "4").is_err());
        // An id below MIN is never on the grid.
        let below = env(&[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_MIN", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
        ]);
        assert!(ShardSpec::Auto(None).resolve(&below).is_err());
    }

    #[test]
    fn a_fragment_is_not_part_of_the_url() {
        let mut s = Selector::new(None);
        assert_eq!(
            s.select(&entry("http://h/a?q=1#x", 1, None)),
            Verdict::Download
        );
        assert_eq!(
            s.select(&entry("http://h/a?q=1", 2, None)),
            Verdict::Duplicate(Origin::Line(1))
        );
        assert_eq!(
            s.select(&entry("http://h/a?q=1#y", 3, None)),
            Verdict::Duplicate(Origin::Line(1))
        );
        let d = digest(&Url::parse("http://h/0.bin#part").unwrap());
        assert_eq!(d, digest(&Url::parse("http://h/0.bin").unwrap()));
    }

    #[test]
    fn shards_split_a_list_exactly_once() {
        let urls: Vec<Url> = (0..500)
            .map(|i| Url::parse(&format!("http://h/{i}.bin")).unwrap())
            .collect();
        for count in [1, 2, 3, 7] {
            let mut owners = vec![0; urls.len()];
            for index in 0..count {
                let shard = Shard { index, count };
                for (n, url) in urls.iter().enumerate() {
                    owners[n] += usize::from(shard.owns(&digest(url)));
                }
            }
            assert!(owners.iter().all(|&o| o == 1), "N = {count}");
        }
    }

    #[test]
    fn the_hash_is_the_documented_one() {
        // From coreutils and the README's python line, not from this code:
        // printf %s http://h/0.bin | sha256sum  →  08ccac9f266f8b24…; shard 1 of 4, 4 of 7.
        let d = digest(&Url::parse("http://h/0.bin").unwrap());
        assert_eq!(d[..8], [0x08, 0xcc, 0xac, 0x9f, 0x26, 0x6f, 0x8b, 0x24]);
        assert!(Shard { index: 0, count: 4 }.owns(&d));
        assert!(Shard { index: 3, count: 7 }.owns(&d));
    }

    #[test]
    fn duplicates_are_caught_unless_an_output_is_named() {
        let mut s = Selector::new(None);
        assert_eq!(s.select(&entry("http://h/a", 1, None)), Verdict::Download);
        assert_eq!(
            s.select(&entry("HTTP://H:80/a", 2, None)),
            Verdict::Duplicate(Origin::Line(1))
        );
        assert_eq!(
            s.select(&entry("http://h/a", 3, Some("copy"))),
            Verdict::Download
        );
        assert_eq!(s.select(&entry("http://h/b", 4, None)), Verdict::Download);
        assert!(s.reports_invalid());
        let other = Selector::new(Some(Shard { index: 1, count: 2 }));
        assert!(!other.reports_invalid());
    }

    #[test]
    fn a_long_list_finds_every_duplicate_and_only_those() {
        // Enough URLs for the table to merge its recent keys into its sorted array many times.
        let n = 60_000;
        let url = |i: usize| format!("http://h/{i}.bin");
        let mut s = Selector::new(None);
        for i in 1..=n {
            assert_eq!(s.select(&entry(&url(i), i, None)), Verdict::Download, "{i}");
        }
        for i in 1..=n {
            let again = s.select(&entry(&url(i), n + i, None));
            assert_eq!(again, Verdict::Duplicate(Origin::Line(i)), "{i}");
        }
        for i in n + 1..n + 2000 {
            assert_eq!(s.select(&entry(&url(i), n + i, None)), Verdict::Download);
        }
    }

    #[test]
    fn a_duplicate_names_its_first_origin_exactly() {
        let mut s = Selector::new(None);
        let arg = Entry {
            origin: Origin::Arg(3),
            ..entry("http://h/arg", 0, None)
        };
        assert_eq!(s.select(&arg), Verdict::Download);
        assert_eq!(
            s.select(&entry("http://h/arg", 9, None)),
            Verdict::Duplicate(Origin::Arg(3))
        );
        // Numbers that do not fit the packed form are kept exactly all the same.
        for (n, url) in [
            ((1usize << 31) - 1, "http://h/edge"),
            (1 << 31, "http://h/far"),
        ] {
            assert_eq!(s.select(&entry(url, n, None)), Verdict::Download);
            assert_eq!(
                s.select(&entry(url, 1, None)),
                Verdict::Duplicate(Origin::Line(n)),
                "{n}"
            );
        }
        if usize::BITS > 32 {
            let huge = entry("http://h/huge", usize::MAX, None);
            assert_eq!(s.select(&huge), Verdict::Download);
            assert_eq!(
                s.select(&entry("http://h/huge", 1, None)),
                Verdict::Duplicate(Origin::Line(usize::MAX))
            );
        }
    }
}
