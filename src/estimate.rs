//! The default run's "one after another" figure: a conservative estimate of what the same
//! downloads would cost with one worker, built from what this run observed.
//!
//! Why not the sum of each download's own time: downloads that share a link, a flooded accept
//! queue or a server that serialises are each slower under concurrency, and summing those slowed
//! times overstates a sequential run (500 small files from `python3 -m http.server` at `-j 32`
//! summed to 15x the real `-j 1` time). Instead, each download is charged the two things a
//! one-worker run cannot do without:
//! - the wait for its response (connect and first byte) at the *quickest* its host ever answered
//!   in this run: queueing behind our own other requests only makes waits longer, so the
//!   quickest is the run's best evidence of a wait without that queue;
//! - its bytes at the *best* rate the run reached: all downloads together over a sliding window
//!   (one connection does not beat all of them on the same path), or the downloads of a level
//!   of concurrency together, over every stretch when that many were receiving at once (see
//!   [`Estimator::observe`]). The levels matter when concurrency lowers the throughput itself
//!   (downloads and a local server sharing two CPU cores): the aggregate rate is then below what
//!   one download reaches alone, and the tail where one runs alone shows that rate. A download
//!   whose own receiving time was shorter is charged that instead. A body of up to
//!   [`SMALL_BODY`] bytes is not charged at those rates: it comes in the same few round trips as
//!   its headers, so its time is already in the wait, and charging it at a rate measured over
//!   many latency-bound requests would count the latency twice (500 small files from
//!   `python3 -m http.server` did exactly that). It is charged at the better of the best rate
//!   any small body of its host came at (as its wait is: next to nothing where bodies come with
//!   their headers, their real pace from a server that trickles out each connection) and the
//!   run's best rate (a shared cap such as `--limit-rate` slows each of several bodies at once,
//!   not one alone).
//!
//! What it leaves out (connection set-up once per host, file creation and rename, per-request
//! CPU, waits before retries) only makes the real sequential run longer still. What it cannot
//! see: a run in which *every* request queued (a local server and more workers than cores, all
//! busy) has no quick wait to show, and a run with no stretch of few downloads long enough to
//! measure has only the aggregate rate; the estimate can then exceed a real `-j 1` run, which
//! only `--compare` measures (README, "The timing summary").
//!
//! [`Pauses`] keeps the time spent waiting before retries, which the summary leaves out of the
//! comparison: a run one after another waits too.

use std::collections::HashMap;
use std::time::Duration;

/// Width of one throughput bucket.
const BUCKET: Duration = Duration::from_millis(100);

/// Buckets kept before two neighbours are merged (and the width doubles): bounded memory
/// however long the run.
const MAX_BUCKETS: usize = 4096;

/// The sliding window for "best throughput" spans this share of the buckets (at least one): a
/// single short burst must not set the rate for the whole run.
const WINDOW_SHARE: usize = 10;

/// Downloads receiving at once, as levels kept apart (more count as the last).
const LEVELS: usize = 65;

/// A level's rate counts once bytes arrived at that level for this long in all, and for this
/// share of the time bytes were arriving: a few milliseconds of data that waited in a socket
/// buffer must not pass for a rate.
const LEVEL_MIN_TIME: Duration = Duration::from_millis(20);
const LEVEL_MIN_SHARE: f64 = 0.02;

/// Bodies up to this size cost no transfer time of their own (see the module docs).
pub(crate) const SMALL_BODY: u64 = 64 * 1024;

/// Own-rate classes per doubling of the rate: downloads are grouped by the rate they saw, so
/// that the charge for their bytes can be settled at the end without keeping every download.
const RATE_STEPS_PER_DOUBLING: f64 = 4.0;

/// Rate classes kept: up to 2^48 bytes per second, and one more for "all at once".
const RATE_CLASSES: usize = 48 * 4 + 2;

/// What one download showed, as the estimate needs it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample<'a> {
    /// Scheme, host and port: waits are compared per host.
    pub(crate) host: &'a str,
    /// Request sent to response headers, connection set-up included; `None` when no response
    /// came (the download then costs nothing here: conservative).
    pub(crate) wait: Option<Duration>,
    /// When the body started and ended arriving, from the start of the run.
    pub(crate) body: (Duration, Duration),
    pub(crate) bytes: u64,
}

/// The scheme, host and port of a URL (`http://h:8080` of `http://h:8080/a/b`): the unit
/// whose waits are compared. Userinfo, already redacted, stays in and does no harm.
pub(crate) fn host_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find(['/', '?', '#']) {
        Some(end) => &url[..after_scheme + end],
        None => url,
    }
}

/// The estimate and its basis, for the summary, the JSON record and the timeline.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Estimate {
    /// The conservative one-after-another time: `waits + transfer`.
    pub(crate) total: Duration,
    /// Sum over downloads of their host's quickest wait.
    pub(crate) waits: Duration,
    /// All bytes at `best_rate`.
    pub(crate) transfer: Duration,
    /// Best aggregate throughput reached, bytes per second (0 when no bytes came).
    pub(crate) best_rate: f64,
    /// Distinct hosts seen.
    pub(crate) hosts: usize,
}

#[derive(Clone, Copy, Debug)]
struct HostWait {
    quickest: Duration,
    downloads: u64,
    /// Bytes of this host's small bodies, and the best rate one of them came at.
    small_bytes: u64,
    small_rate: f64,
}

/// Gathers samples as downloads finish, in O(hosts + buckets) memory.
#[derive(Clone, Debug)]
pub(crate) struct Estimator {
    hosts: HashMap<String, HostWait>,
    /// Body bytes received per bucket of `width`.
    buckets: Vec<f64>,
    width: Duration,
    bytes: u64,
    /// Earliest body start and latest body end seen.
    span: Option<(Duration, Duration)>,
    /// Per class of own rate: (bytes, seconds receiving).
    by_rate: Vec<(f64, f64)>,
    /// Per number of downloads receiving at once: (bytes, seconds), from [`Estimator::observe`].
    levels: Vec<(f64, f64)>,
    /// The last observation.
    last: Option<Observed>,
}

/// What the main thread saw at one moment of the run.
#[derive(Clone, Copy, Debug)]
struct Observed {
    at: Duration,
    /// Body bytes received by then, all downloads together.
    received: u64,
    /// The most downloads receiving at once since then.
    peak: usize,
}

impl Default for Estimator {
    fn default() -> Self {
        Estimator {
            hosts: HashMap::new(),
            buckets: Vec::new(),
            width: BUCKET,
            bytes: 0,
            span: None,
            by_rate: vec![(0.0, 0.0); RATE_CLASSES],
            levels: vec![(0.0, 0.0); LEVELS],
            last: None,
        }
    }
}

impl Estimator {
    pub(crate) fn add(&mut self, s: &Sample<'_>) {
        let host = match self.hosts.get_mut(s.host) {
            Some(h) => h,
            None => self.hosts.entry(s.host.to_string()).or_insert(HostWait {
                quickest: Duration::MAX,
                downloads: 0,
                small_bytes: 0,
                small_rate: 0.0,
            }),
        };
        host.downloads += 1;
        if let Some(wait) = s.wait {
            host.quickest = host.quickest.min(wait);
        }
        let (start, end) = (s.body.0, s.body.1.max(s.body.0));
        if (1..=SMALL_BODY).contains(&s.bytes) {
            host.small_bytes += s.bytes;
            let seconds = (end - start).as_secs_f64();
            let rate = if seconds > 0.0 {
                s.bytes as f64 / seconds
            } else {
                f64::INFINITY
            };
            host.small_rate = host.small_rate.max(rate);
        }
        self.bytes += s.bytes;
        if s.bytes > 0 {
            self.span = Some(match self.span {
                Some((a, b)) => (a.min(start), b.max(end)),
                None => (start, end),
            });
            self.spread(start, end, s.bytes as f64);
        }
        if s.bytes > SMALL_BODY {
            let seconds = (end - start).as_secs_f64();
            let class = &mut self.by_rate[rate_class(s.bytes as f64, seconds)];
            class.0 += s.bytes as f64;
            class.1 += seconds;
        }
    }

    /// How many downloads are receiving now (called whenever that changes): the level the
    /// bytes until the next [`Estimator::observe`] are counted at is the most seen meanwhile.
    pub(crate) fn receiving(&mut self, now: usize) {
        if let Some(last) = self.last.as_mut() {
            last.peak = last.peak.max(now);
        }
    }

    /// The run's body bytes so far, `received`, at `at` from its start, with `receiving`
    /// downloads receiving now: the bytes since the last observation count at the level of
    /// concurrency they arrived at.
    pub(crate) fn observe(&mut self, at: Duration, received: u64, receiving: usize) {
        if let Some(last) = self.last {
            if at <= last.at {
                self.receiving(receiving);
                return;
            }
            if last.peak > 0 {
                let level = &mut self.levels[last.peak.min(LEVELS - 1)];
                level.0 += received.saturating_sub(last.received) as f64;
                level.1 += (at - last.at).as_secs_f64();
            }
        }
        let received = self.last.map_or(received, |l| l.received.max(received));
        self.last = Some(Observed {
            at,
            received,
            peak: receiving,
        });
    }

    /// The best rate of any level of concurrency that lasted long enough to tell (see
    /// [`LEVEL_MIN_TIME`]): when concurrency itself lowers the throughput (downloads and a local
    /// server sharing few CPU cores), the levels with fewer downloads show what one reaches.
    fn level_rate(&self) -> f64 {
        let span = self.span.map_or(0.0, |(a, b)| (b - a).as_secs_f64());
        let enough = LEVEL_MIN_TIME.as_secs_f64().max(span * LEVEL_MIN_SHARE);
        self.levels
            .iter()
            .filter(|&&(_, seconds)| seconds >= enough)
            .map(|&(bytes, seconds)| bytes / seconds)
            .fold(0.0, f64::max)
    }

    /// Every download's bytes at `best_rate`, or in its own receiving time when shorter (taken
    /// per class of own rate, which is never more than per download).
    fn transfer(&self, best_rate: f64) -> Duration {
        if best_rate <= 0.0 {
            return Duration::ZERO;
        }
        let seconds: f64 = self
            .by_rate
            .iter()
            .map(|&(bytes, own)| own.min(bytes / best_rate))
            .sum();
        Duration::from_secs_f64(seconds.max(0.0))
    }

    /// Adds `bytes` evenly over `[start, end]` to the buckets it covers.
    fn spread(&mut self, start: Duration, end: Duration, bytes: f64) {
        while self.index(end) >= MAX_BUCKETS {
            self.coarsen();
        }
        let (first, last) = (self.index(start), self.index(end));
        if self.buckets.len() <= last {
            self.buckets.resize(last + 1, 0.0);
        }
        let length = (end - start).as_secs_f64();
        if first == last || length <= 0.0 {
            self.buckets[last] += bytes;
            return;
        }
        let w = self.width.as_secs_f64();
        for i in first..=last {
            let lo = (i as f64 * w).max(start.as_secs_f64());
            let hi = ((i + 1) as f64 * w).min(end.as_secs_f64());
            self.buckets[i] += bytes * (hi - lo).max(0.0) / length;
        }
    }

    fn index(&self, at: Duration) -> usize {
        (at.as_nanos() / self.width.as_nanos().max(1)) as usize
    }

    fn coarsen(&mut self) {
        self.buckets = self
            .buckets
            .chunks(2)
            .map(|pair| pair.iter().sum())
            .collect();
        self.width *= 2;
    }

    /// Best aggregate throughput over a sliding window of buckets; at least the average over
    /// the time bytes were arriving.
    pub(crate) fn best_rate(&self) -> f64 {
        let Some((start, end)) = self.span else {
            return 0.0;
        };
        let average = self.bytes as f64 / (end - start).as_secs_f64().max(1e-3);
        let n = self.buckets.len();
        let window = (n / WINDOW_SHARE).max(1);
        if n < window {
            return average.max(self.level_rate());
        }
        let mut sum: f64 = self.buckets[..window].iter().sum();
        let mut best = sum;
        for i in window..n {
            sum += self.buckets[i] - self.buckets[i - window];
            best = best.max(sum);
        }
        let seconds = self.width.as_secs_f64() * window as f64;
        average.max(best / seconds).max(self.level_rate())
    }

    /// The estimate, or `None` when nothing was downloaded.
    pub(crate) fn estimate(&self) -> Option<Estimate> {
        if self.hosts.is_empty() {
            return None;
        }
        let waits = self
            .hosts
            .values()
            .filter(|h| h.quickest != Duration::MAX)
            .map(|h| {
                h.quickest
                    .saturating_mul(u32::try_from(h.downloads).unwrap_or(u32::MAX))
            })
            .fold(Duration::ZERO, Duration::saturating_add);
        let best_rate = self.best_rate();
        let transfer = self.transfer(best_rate) + self.small_transfer(best_rate);
        Some(Estimate {
            total: waits + transfer,
            waits,
            transfer,
            best_rate,
            hosts: self.hosts.len(),
        })
    }
}

impl Estimator {
    /// Small bodies at the better of two rates: the best any small body of their host came at
    /// (next to nothing where bodies come with their headers; their real pace from a server
    /// that trickles out each connection), and the best the whole run reached (one after
    /// another, a body has the line to itself: a shared cap such as `--limit-rate` slows each
    /// of several at once, not one alone).
    fn small_transfer(&self, best_rate: f64) -> Duration {
        let seconds: f64 = self
            .hosts
            .values()
            .filter(|h| h.small_bytes > 0)
            .map(|h| h.small_bytes as f64 / h.small_rate.max(best_rate))
            .filter(|s| s.is_finite())
            .sum();
        Duration::try_from_secs_f64(seconds).unwrap_or(Duration::ZERO)
    }
}

/// The wall time during which at least one download was waiting before a retry: the union of
/// those waits, which arrive in the order they began (O(1) memory).
#[derive(Clone, Debug, Default)]
pub(crate) struct Pauses {
    /// Closed stretches, in all.
    total: Duration,
    /// The stretch still open: its start and end.
    open: Option<(Duration, Duration)>,
}

impl Pauses {
    /// A wait from `start` for `wait`.
    pub(crate) fn add(&mut self, start: Duration, wait: Duration) {
        let end = start + wait;
        self.open = match self.open {
            Some((a, b)) if start <= b => Some((a, b.max(end))),
            Some((a, b)) => {
                self.total += b - a;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }

    /// The union of the waits up to `now` (a wait cut short by the end of the run counts only
    /// as far as it went).
    pub(crate) fn total(&self, now: Duration) -> Duration {
        let open = self
            .open
            .map_or(Duration::ZERO, |(a, b)| b.min(now).saturating_sub(a));
        self.total + open
    }
}

/// The class of a download that received `bytes` in `seconds`: by the logarithm of its rate.
fn rate_class(bytes: f64, seconds: f64) -> usize {
    let rate = bytes / seconds;
    if !rate.is_finite() {
        return RATE_CLASSES - 1;
    }
    let class = (rate.max(1.0).log2() * RATE_STEPS_PER_DOUBLING).floor();
    (class as usize).min(RATE_CLASSES - 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn sample(host: &str, wait: u64, body: (u64, u64), bytes: u64) -> Sample<'_> {
        Sample {
            host,
            wait: Some(ms(wait)),
            body: (ms(body.0), ms(body.1)),
            bytes,
        }
    }

    #[test]
    fn hosts_are_scheme_host_and_port() {
        assert_eq!(host_of("http://h:8080/a/b?q"), "http://h:8080");
        assert_eq!(host_of("https://h"), "https://h");
        assert_eq!(host_of("https://h?x=/y"), "https://h");
    }

    #[test]
    fn nothing_downloaded_gives_no_estimate() {
        assert_eq!(Estimator::default().estimate(), None);
    }

    #[test]
    fn each_download_is_charged_its_hosts_quickest_wait() {
        let mut e = Estimator::default();
        // Waits grew under concurrency (a flooded accept queue): only the quickest counts.
        e.add(&sample("http://a", 50, (50, 50), 0));
        e.add(&sample("http://a", 400, (400, 400), 0));
        e.add(&sample("http://a", 900, (900, 900), 0));
        e.add(&sample("http://b", 20, (20, 20), 0));
        let est = e.estimate().unwrap();
        assert_eq!(est.waits, ms(3 * 50 + 20));
        assert_eq!(est.transfer, Duration::ZERO);
        assert_eq!(est.total, ms(170));
        assert_eq!(est.hosts, 2);
    }

    #[test]
    fn a_download_without_a_response_costs_no_wait() {
        let mut e = Estimator::default();
        e.add(&Sample {
            host: "http://a",
            wait: None,
            body: (ms(0), ms(0)),
            bytes: 0,
        });
        assert_eq!(e.estimate().unwrap().total, Duration::ZERO);
    }

    #[test]
    fn bytes_go_at_the_best_aggregate_rate_not_each_downloads_own() {
        let mut e = Estimator::default();
        // Ten downloads share a 10 MB/s link for one second: each saw 1 MB/s. Summing their
        // own times says 10 s; one after another at the link's rate takes 1 s.
        for _ in 0..10 {
            e.add(&sample("http://a", 0, (0, 1000), 1_000_000));
        }
        let est = e.estimate().unwrap();
        assert!((est.best_rate - 10_000_000.0).abs() < 1.0, "{est:?}");
        assert!((est.transfer.as_secs_f64() - 1.0).abs() < 1e-6, "{est:?}");
    }

    #[test]
    fn a_small_body_costs_its_hosts_quickest_time_not_the_runs_rate() {
        let mut e = Estimator::default();
        // Latency-bound: 100 small bodies, one every 10 ms, each arriving in 0.1 ms.
        for i in 0..100 {
            e.add(&Sample {
                host: "http://a",
                wait: Some(ms(9)),
                body: (ms(i * 10), ms(i * 10) + Duration::from_micros(100)),
                bytes: 2000,
            });
        }
        let est = e.estimate().unwrap();
        assert_eq!(est.waits, ms(900));
        // Not 100 × 2000 bytes at the run's 200 KB/s (1 s): each at its own 0.1 ms.
        assert_eq!(est.transfer, ms(10), "{est:?}");
    }

    #[test]
    fn small_bodies_trickled_out_cost_their_time_at_the_runs_best_rate() {
        let mut e = Estimator::default();
        // Four 60 KB bodies at once from a server that sends 20 KB/s a connection: not free,
        // but no slower than the 80 KB/s the four reached together.
        for _ in 0..4 {
            e.add(&sample("http://trickle", 1, (1, 3001), 60_000));
        }
        let est = e.estimate().unwrap();
        let secs = est.transfer.as_secs_f64();
        assert!((2.9..=3.1).contains(&secs), "{est:?}");
    }

    #[test]
    fn a_short_burst_does_not_set_the_rate() {
        let mut e = Estimator::default();
        for i in 0..100 {
            e.add(&sample("http://a", 0, (i * 100, i * 100 + 100), 100_000));
        }
        // One download of 5 MB in a single bucket: spread over the window, not taken alone.
        e.add(&sample("http://a", 0, (5000, 5000), 5_000_000));
        let rate = e.best_rate();
        assert!(rate < 20_000_000.0, "{rate}");
        assert!(rate >= 1_000_000.0, "{rate}");
    }

    #[test]
    fn a_download_alone_shows_the_rate_one_reaches_when_concurrency_lowers_it() {
        let mut e = Estimator::default();
        // Eight downloads share two CPU cores with a local server: 100 MB/s together for one
        // second, then the last one alone at 300 MB/s for a tenth of a second.
        for _ in 0..7 {
            e.add(&sample("http://a", 0, (0, 1000), 12_500_000));
        }
        e.add(&sample("http://a", 0, (0, 1100), 42_500_000));
        e.observe(ms(0), 0, 8);
        e.observe(ms(1000), 100_000_000, 1);
        e.observe(ms(1100), 130_000_000, 0);
        let est = e.estimate().unwrap();
        assert!((est.best_rate - 300_000_000.0).abs() < 1.0, "{est:?}");
        assert!(
            (est.transfer.as_secs_f64() - 130.0 / 300.0).abs() < 1e-3,
            "{est:?}"
        );
    }

    #[test]
    fn a_level_too_short_to_tell_sets_no_rate() {
        let mut e = Estimator::default();
        e.add(&sample("http://a", 0, (0, 1000), 100_000_000));
        e.observe(ms(0), 0, 8);
        e.observe(ms(1000), 90_000_000, 1);
        // 10 MB in 5 ms: bytes that waited in a socket buffer, not a rate.
        e.observe(ms(1005), 100_000_000, 0);
        assert!(e.best_rate() < 110_000_000.0, "{}", e.best_rate());
    }

    #[test]
    fn a_level_is_the_most_downloads_receiving_between_observations() {
        let mut e = Estimator::default();
        e.add(&sample("http://a", 0, (0, 1000), 100_000_000));
        e.observe(ms(0), 0, 1);
        // A second download ran for part of the stretch, seen only between observations.
        e.receiving(2);
        e.receiving(1);
        e.observe(ms(500), 50_000_000, 1);
        assert_eq!(e.levels[1], (0.0, 0.0));
        assert_eq!(e.levels[2], (50_000_000.0, 0.5));
    }

    #[test]
    fn pauses_count_the_time_any_download_waited_once() {
        let mut p = Pauses::default();
        assert_eq!(p.total(ms(100)), Duration::ZERO);
        p.add(ms(100), ms(1000));
        p.add(ms(600), ms(1000)); // overlaps: 100..1600
        p.add(ms(2000), ms(500)); // apart: 2000..2500
        assert_eq!(p.total(ms(3000)), ms(1500 + 500));
        // A run that ended in the middle of a wait counts it only as far as it went.
        assert_eq!(p.total(ms(2100)), ms(1500 + 100));
    }

    #[test]
    fn long_runs_keep_a_bounded_number_of_buckets() {
        let mut e = Estimator::default();
        e.add(&sample("http://a", 0, (0, 3_600_000), 3_600));
        e.add(&sample("http://a", 0, (3_600_000, 7_200_000), 3_600));
        assert!(e.buckets.len() <= MAX_BUCKETS);
        let rate = e.best_rate();
        assert!((0.9..1.5).contains(&rate), "{rate}");
    }
}
