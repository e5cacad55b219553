//! How many downloads at once pay off against a host that closes the connection after every
//! reply.
//!
//! Every download to such a host is a new connection, and nothing says whether the server
//! behind it serves them side by side (nginx, Apache, a server far away: several at once hide
//! the round trips) or in turn (`python3 -m http.server`: one interpreter lock, so a second
//! connection only slows the first). The replies say it. With `c` downloads in flight and a
//! median time to headers `m`, the host answers `c / m` requests a second (Little's law); a
//! server that overlaps them keeps `m` as `c` grows, one that serves them in turn stretches `m`
//! with `c`. So the window is tried one round of [`ROUND`] replies at a time: from
//! [`CLOSING_WINDOW`] it halves while the smaller window answers about as fast (a larger one must
//! bring [`MARGIN`] more to be kept), and it tries twice the window it settled on after
//! [`FIRST_PROBE`] replies, then after twice as many each time that did not pay. A median of a
//! round, not a mean, so that one slow reply changes nothing; the replies of downloads that
//! started under the window before are not counted in the next.

use std::time::Duration;

/// The most such a host gets: every download a new connect into its accept queue, which may
/// hold only 5 (see the module docs of [`crate::hosts`]).
pub(crate) const CLOSING_WINDOW: usize = 4;

/// Replies per measure.
const ROUND: usize = 32;

/// How much more a larger window must answer to be kept. A round's rate swings by a quarter
/// either way against a server that serves in turn (`python3 -m http.server` hands its lock
/// between threads every few milliseconds); one that overlaps doubles it when the window
/// doubles. The smaller window also costs the server less.
const MARGIN: f64 = 1.3;

/// Replies at the settled window before the first try at twice it.
const FIRST_PROBE: u32 = 64;

/// The most replies between two tries.
const LAST_PROBE: u32 = 1024;

/// What the tuner is doing.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    /// Trying ever smaller windows; the last one measured and its rate.
    Down { from: usize, rate: f64 },
    /// Trying twice the settled window.
    Up { from: usize },
    /// Settled, measuring the window as it is.
    Settled,
}

/// The state of one closing host.
#[derive(Clone, Debug)]
pub(crate) struct Closing {
    window: usize,
    cap: usize,
    step: Step,
    /// This round's latencies, and the downloads in flight summed over its replies.
    round: Vec<Duration>,
    in_flight: usize,
    /// Replies still to come from downloads started under the window before.
    skip: usize,
    /// Replies since it settled, and how many before the next try at twice the window.
    settled: u32,
    probe_after: u32,
    /// The settled window's best round since it settled or last tried twice: what a try at
    /// twice it must beat by [`MARGIN`]. The best, not a mean: a round's rate swings widely, and a try that beats only
    /// an unlucky round would move a server that serves in turn up again.
    settled_rate: Option<f64>,
    /// Whether a round has been measured.
    measured: bool,
}

impl Closing {
    /// A host found to close its connections, with `in_flight` downloads started before (their
    /// replies are not counted: they came in under the larger window of a host not yet known);
    /// at most `cap` downloads at once (`--per-host`).
    pub(crate) fn new(cap: usize, in_flight: usize) -> Closing {
        let cap = CLOSING_WINDOW.min(cap).max(1);
        Closing {
            window: cap,
            cap,
            step: Step::Down {
                from: cap,
                rate: 0.0,
            },
            round: Vec::with_capacity(ROUND),
            in_flight: 0,
            skip: in_flight,
            settled: 0,
            probe_after: FIRST_PROBE,
            settled_rate: None,
            measured: false,
        }
    }

    pub(crate) fn window(&self) -> usize {
        self.window
    }

    /// Whether a round has been measured: worth remembering while the host has nothing running
    /// (see `Host::idle`). A host with one URL or a few is not, so that a list of a million
    /// such hosts does not keep a million entries.
    pub(crate) fn learned(&self) -> bool {
        self.measured
    }

    /// A reply's headers came `latency` after its request went out, with `in_flight` downloads
    /// (this one included) running at the host; returns the window from now on.
    pub(crate) fn reply(&mut self, latency: Duration, in_flight: usize) -> usize {
        if self.skip > 0 {
            self.skip -= 1;
            return self.window;
        }
        self.settled = self.settled.saturating_add(1);
        self.round.push(latency);
        self.in_flight += in_flight.max(1);
        if self.round.len() < ROUND {
            return self.window;
        }
        let c = self.in_flight as f64 / self.round.len() as f64;
        let m = median(&mut self.round).as_secs_f64().max(1e-6);
        self.round.clear();
        self.in_flight = 0;
        let before = self.window;
        // Too few downloads to tell (the list is running out): nothing learned.
        if self.window == 1 || c >= 1.5 {
            self.measured = true;
            self.decide(c / m);
        }
        if self.window != before {
            self.skip = before;
        }
        self.window
    }

    fn decide(&mut self, rate: f64) {
        match self.step {
            Step::Down { from, rate: larger } if self.window < from && larger > rate * MARGIN => {
                // The larger window paid: back to it.
                self.settle(from);
            }
            Step::Down { .. } if self.window > 1 => {
                self.step = Step::Down {
                    from: self.window,
                    rate,
                };
                self.window /= 2;
            }
            Step::Down { .. } => self.settle(1),
            Step::Up { .. } if rate > self.settled_rate.unwrap_or(0.0) * MARGIN => {
                // It paid: stay, and try the next step up as soon as after the first settling.
                self.probe_after = FIRST_PROBE;
                self.settle(self.window);
            }
            Step::Up { from } => {
                self.probe_after = (self.probe_after * 2).min(LAST_PROBE);
                self.settle(from);
            }
            Step::Settled => {
                self.settled_rate = Some(self.settled_rate.map_or(rate, |r| r.max(rate)));
                if self.window < self.cap && self.settled >= self.probe_after {
                    self.step = Step::Up { from: self.window };
                    self.window = (self.window * 2).min(self.cap);
                }
            }
        }
    }

    /// Settles on `window`, whose rate is still to be measured.
    fn settle(&mut self, window: usize) {
        self.window = window;
        self.step = Step::Settled;
        self.settled = 0;
        self.settled_rate = None;
    }
}

fn median(latencies: &mut [Duration]) -> Duration {
    let mid = latencies.len() / 2;
    *latencies.select_nth_unstable(mid).1
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A server that takes `alone` for a request with nothing else in flight and overlaps a
    /// share `overlap` of the others (0: strictly in turn, 1: fully side by side), replying to
    /// `n` requests with as many in flight as the tuner's window; the windows it went through.
    fn serve(tuner: &mut Closing, alone: Duration, overlap: f64, n: usize) -> Vec<usize> {
        let mut windows = vec![tuner.window()];
        for _ in 0..n {
            let c = tuner.window();
            let latency = alone.mul_f64(1.0 + (c - 1) as f64 * (1.0 - overlap));
            let w = tuner.reply(latency, c);
            if windows.last() != Some(&w) {
                windows.push(w);
            }
        }
        windows
    }

    #[test]
    fn a_server_that_answers_in_turn_gets_one_at_a_time() {
        let mut t = Closing::new(32, 0);
        assert_eq!(serve(&mut t, MS, 0.0, 4 * ROUND), [4, 2, 1]);
        assert!(t.learned());
    }

    #[test]
    fn a_server_that_overlaps_keeps_its_window() {
        let mut t = Closing::new(32, 0);
        assert_eq!(serve(&mut t, 100 * MS, 1.0, 20 * ROUND), [4, 2, 4]);
        let mut t = Closing::new(32, 0);
        let w = serve(&mut t, 100 * MS, 0.8, 20 * ROUND);
        assert_eq!(w.last(), Some(&4), "mostly side by side: {w:?}");
        // Four bring a fifth more than two here: under the margin, two are kept (four tried
        // now and then).
        let mut t = Closing::new(32, 0);
        serve(&mut t, 100 * MS, 0.5, 20 * ROUND);
        let at_two = (0..20 * ROUND)
            .filter(|_| {
                let w = t.window();
                t.reply((100 * MS).mul_f64(1.0 + (w - 1) as f64 * 0.5), w);
                w == 2
            })
            .count();
        assert!(at_two * 4 >= 20 * ROUND * 3, "{at_two} of {}", 20 * ROUND);
    }

    #[test]
    fn never_past_per_host() {
        let mut t = Closing::new(2, 0);
        assert_eq!(t.window(), 2);
        assert_eq!(serve(&mut t, 100 * MS, 1.0, 20 * ROUND), [2, 1, 2]);
    }

    #[test]
    fn settled_it_tries_twice_ever_less_often_and_goes_up_when_that_pays() {
        let mut t = Closing::new(32, 0);
        serve(&mut t, MS, 0.0, 4 * ROUND);
        assert_eq!(t.window(), 1);
        // Where each try at two starts, over a long list served in turn.
        let mut tries = Vec::new();
        for i in 0..4000 {
            let before = t.window();
            let w = t.reply(MS * before as u32, before);
            if before == 1 && w == 2 {
                tries.push(i);
            }
        }
        let gaps: Vec<_> = tries.windows(2).map(|p| p[1] - p[0]).collect();
        assert!(gaps.len() >= 3, "{tries:?}");
        assert!(
            gaps.windows(2).all(|g| g[1] >= g[0]),
            "ever less often: {gaps:?}"
        );
        assert!(*gaps.last().unwrap() as u32 >= LAST_PROBE, "{gaps:?}");
        assert_eq!(t.window(), 1, "none paid");
        // The server changed its ways: the next try finds two pays, and then four.
        let w = serve(&mut t, 50 * MS, 1.0, 3 * LAST_PROBE as usize);
        assert_eq!(w.last(), Some(&CLOSING_WINDOW), "{w:?}");
    }

    #[test]
    fn one_slow_reply_in_a_round_changes_nothing() {
        let mut t = Closing::new(32, 0);
        for i in 0..20 * ROUND {
            let latency = if i % ROUND == 3 { 900 * MS } else { 100 * MS };
            t.reply(latency, t.window());
        }
        assert_eq!(t.window(), CLOSING_WINDOW);
    }

    #[test]
    fn a_list_running_out_is_no_sign_of_a_server_in_turn() {
        let mut t = Closing::new(32, 0);
        // One download in flight: its latency says nothing of what a second would do.
        for _ in 0..4 * ROUND {
            t.reply(5 * MS, 1);
        }
        assert_eq!(t.window(), CLOSING_WINDOW);
    }
}
