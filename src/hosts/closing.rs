//! How many downloads at once pay off against a host that closes the connection after every
//! reply.
//!
//! Every download to such a host is a new connection, and nothing says whether the server
//! behind it serves them side by side (nginx, Apache, a server far away: several at once hide
//! the round trips) or in turn (`python3 -m http.server`: one interpreter lock, so a second
//! connection only slows the first). The downloads say it. With `c` of them holding a slot at
//! once and a median hold `m` (request, reply, the file written), the host gets through `c / m`
//! files a second (Little's law): a server that overlaps them keeps `m` as `c` grows, one that
//! serves them in turn stretches `m` with `c`. So windows are compared one round of [`ROUND`]
//! downloads at a time: from [`CLOSING_WINDOW`] the window halves while the smaller one gets
//! about as far (a larger one must bring [`MARGIN`] more to be kept, the smaller costs the
//! server less); once settled it tries half and twice the window in turn, after [`FIRST_PROBE`]
//! downloads, then after twice as many each time a try did not pay; a try at twice that has
//! not brought anything after [`EARLY`] downloads ends there (against a server that serves in
//! turn every download of it is slower). A median, not a mean, so that one slow download
//! changes nothing; downloads that started under the window before are not counted in the next.

use std::time::Duration;

/// The most such a host gets: every download a new connect into its accept queue, which may
/// hold only 5 (see the module docs of [`crate::hosts`]).
pub(crate) const CLOSING_WINDOW: usize = 4;

/// Downloads per measure.
const ROUND: usize = 32;

/// Downloads after which a try at twice the window that has not paid at all ends early (see
/// [`Closing::cut_short`]).
const EARLY: usize = 8;

/// How much more a larger window must get through to be kept. A round's rate swings by a
/// quarter or more either way against a server that serves in turn (`python3 -m http.server` hands its
/// lock between threads every few milliseconds); one that overlaps doubles it when the window
/// doubles.
const MARGIN: f64 = 1.3;

/// Downloads at the settled window before the first try at another.
const FIRST_PROBE: u32 = 64;

/// The most downloads between two tries.
const LAST_PROBE: u32 = 1024;

/// What the tuner is doing.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    /// Trying a smaller window: `from`, the larger one, got through `rate`.
    Down { from: usize, rate: f64 },
    /// Trying twice the settled window `from`, which got through at best `rate`.
    Up { from: usize, rate: f64 },
    /// Settled, measuring the window as it is.
    Settled,
}

/// The state of one closing host.
#[derive(Clone, Debug)]
pub(crate) struct Closing {
    window: usize,
    cap: usize,
    step: Step,
    /// This round's holds, and the downloads holding a slot summed over its ends.
    round: Vec<Duration>,
    in_flight: usize,
    /// Downloads still to end that started under the window before.
    skip: usize,
    /// Downloads since it settled, and how many before the next try at another window.
    settled: u32,
    probe_after: u32,
    /// The settled window's rounds since it settled: their best rate, which a try at twice
    /// must beat by [`MARGIN`] (a round's rate swings widely: a try that beat only an unlucky
    /// round would move a server that serves in turn up again), and their sum and count, whose
    /// mean a try at half must come within [`MARGIN`] of.
    best: f64,
    sum: f64,
    rounds: u32,
    /// Whether the next try, where both are possible, is at half.
    down_next: bool,
    /// Whether a round has been measured.
    measured: bool,
}

impl Closing {
    /// A host found to close its connections, with `in_flight` downloads started before (not
    /// counted: they started under the larger window of a host not yet known); at most `cap`
    /// downloads at once (`--per-host`).
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
            best: 0.0,
            sum: 0.0,
            rounds: 0,
            down_next: true,
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

    /// A download held its slot for `held`, with `in_flight` downloads (this one included)
    /// holding one at the host as it ended; returns the window from now on.
    pub(crate) fn reply(&mut self, held: Duration, in_flight: usize) -> usize {
        if self.skip > 0 {
            self.skip -= 1;
            return self.window;
        }
        self.settled = self.settled.saturating_add(1);
        self.round.push(held);
        self.in_flight += in_flight.max(1);
        let before = self.window;
        if self.round.len() == EARLY {
            self.cut_short();
        } else if self.round.len() >= ROUND {
            let (c, rate) = self.measure();
            self.round.clear();
            self.in_flight = 0;
            // Too few downloads to tell (the list is running out): nothing learned.
            if self.window == 1 || c >= 1.5 {
                self.measured = true;
                self.decide(rate);
            }
        }
        if self.window != before {
            self.skip = before;
        }
        self.window
    }

    /// The round so far: how many downloads held a slot at once, on average, and what the
    /// host got through (`c / m`, see the module docs).
    fn measure(&mut self) -> (f64, f64) {
        let c = self.in_flight as f64 / self.round.len() as f64;
        let m = median(&mut self.round).as_secs_f64().max(1e-6);
        (c, c / m)
    }

    /// Ends a try at twice the window after [`EARLY`] downloads if they got through no more
    /// than the settled window did at its best: a server that serves in turn, where every
    /// download of the try is slower than one at the settled window, so that a full round of
    /// them costs more than the try can tell (a try that pays brings about twice as much).
    fn cut_short(&mut self) {
        let Step::Up {
            from,
            rate: smaller,
        } = self.step
        else {
            return;
        };
        let (c, rate) = self.measure();
        if c >= 1.5 && rate <= smaller {
            self.round.clear();
            self.in_flight = 0;
            self.back_to(from);
        }
    }

    fn decide(&mut self, rate: f64) {
        match self.step {
            Step::Down { from, rate: larger } if self.window < from && larger > rate * MARGIN => {
                // The larger window paid: back to it, and the next try comes later.
                self.back_to(from);
            }
            Step::Down { .. } if self.window > 1 => {
                self.step = Step::Down {
                    from: self.window,
                    rate,
                };
                self.window = half(self.window);
            }
            Step::Down { .. } => self.settle(1),
            Step::Up {
                from,
                rate: smaller,
            } if rate <= smaller * MARGIN => self.back_to(from),
            Step::Up { .. } => self.settle(self.window),
            Step::Settled => self.settled_round(rate),
        }
    }

    /// A round at the settled window; when it is time, the next try, at half or twice it.
    fn settled_round(&mut self, rate: f64) {
        self.best = self.best.max(rate);
        self.sum += rate;
        self.rounds += 1;
        if self.settled < self.probe_after {
            return;
        }
        let down = self.window > 1 && (self.window == self.cap || self.down_next);
        self.down_next = !down;
        if down {
            self.step = Step::Down {
                from: self.window,
                rate: self.sum / f64::from(self.rounds),
            };
            self.window = half(self.window);
        } else if self.window < self.cap {
            self.step = Step::Up {
                from: self.window,
                rate: self.best,
            };
            self.window = (self.window * 2).min(self.cap);
        }
    }

    /// Settles on `window` after a move that paid (or the first descent): tries come soon.
    fn settle(&mut self, window: usize) {
        self.probe_after = FIRST_PROBE;
        self.settle_quietly(window);
    }

    /// Back to `window` after a try that did not pay: the next comes after twice as many.
    fn back_to(&mut self, window: usize) {
        self.probe_after = (self.probe_after * 2).min(LAST_PROBE);
        self.settle_quietly(window);
    }

    fn settle_quietly(&mut self, window: usize) {
        self.window = window;
        self.step = Step::Settled;
        self.settled = 0;
        self.best = 0.0;
        self.sum = 0.0;
        self.rounds = 0;
    }
}

/// Half a window, rounded up: a `--per-host 3` goes to 2 before 1.
fn half(window: usize) -> usize {
    window - window / 2
}

fn median(latencies: &mut [Duration]) -> Duration {
    let mid = latencies.len() / 2;
    *latencies.select_nth_unstable(mid).1
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A server that takes `alone` for a download with nothing else in flight and overlaps a
    /// share `overlap` of the others (0: strictly in turn, 1: fully side by side), serving `n`
    /// downloads with as many in flight as the tuner's window; the window of each.
    fn serve(tuner: &mut Closing, alone: Duration, overlap: f64, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| {
                let c = tuner.window();
                tuner.reply(alone.mul_f64(1.0 + (c - 1) as f64 * (1.0 - overlap)), c);
                c
            })
            .collect()
    }

    /// The windows `serve` went through, in order.
    fn moves(windows: &[usize]) -> Vec<usize> {
        let mut moves = windows.to_vec();
        moves.dedup();
        moves
    }

    /// The share of `windows` at `w`.
    fn share(windows: &[usize], w: usize) -> f64 {
        windows.iter().filter(|&&x| x == w).count() as f64 / windows.len() as f64
    }

    #[test]
    fn a_server_that_answers_in_turn_gets_one_at_a_time() {
        let mut t = Closing::new(32, 0);
        assert_eq!(moves(&serve(&mut t, MS, 0.0, 4 * ROUND)), [4, 2, 1]);
        assert!(t.learned());
        let later = serve(&mut t, MS, 0.0, 4000);
        assert!(share(&later, 1) > 0.9, "{:?}", moves(&later));
    }

    #[test]
    fn a_server_that_overlaps_keeps_its_window() {
        let mut t = Closing::new(32, 0);
        assert_eq!(moves(&serve(&mut t, 100 * MS, 1.0, 3 * ROUND)), [4, 2, 4]);
        let later = serve(&mut t, 100 * MS, 1.0, 4000);
        assert!(share(&later, 4) > 0.9, "{:?}", moves(&later));
        let mut t = Closing::new(32, 0);
        let w = serve(&mut t, 100 * MS, 0.8, 4000);
        assert!(share(&w, 4) > 0.9, "mostly side by side: {:?}", moves(&w));
        // Four bring a fifth more than two here: under the margin, two are kept.
        let mut t = Closing::new(32, 0);
        let w = serve(&mut t, 100 * MS, 0.5, 4000);
        assert!(share(&w, 2) > 0.75, "half side by side: {:?}", moves(&w));
    }

    #[test]
    fn an_odd_cap_halves_to_the_window_above_half() {
        let mut t = Closing::new(3, 0);
        assert_eq!(moves(&serve(&mut t, MS, 0.0, 4 * ROUND)), [3, 2, 1]);
    }

    #[test]
    fn never_past_per_host() {
        let mut t = Closing::new(2, 0);
        let w = serve(&mut t, 100 * MS, 1.0, 4000);
        assert_eq!(w.iter().max(), Some(&2));
        assert!(share(&w, 2) > 0.9, "{:?}", moves(&w));
    }

    /// A tuner (at most `cap`) settled at one by a server that takes `alone` a download, in turn.
    fn settled_at_one(cap: usize, alone: Duration) -> Closing {
        let mut t = Closing::new(cap, 0);
        serve(&mut t, alone, 0.0, 4 * ROUND);
        assert_eq!(t.window(), 1);
        t
    }

    #[test]
    fn settled_it_tries_another_window_ever_less_often_and_moves_when_that_pays() {
        let mut t = settled_at_one(32, MS);
        // Where each try at two starts, over a long list served in turn.
        let w = serve(&mut t, MS, 0.0, 4000);
        let tries: Vec<usize> = (1..w.len())
            .filter(|&i| w[i - 1] == 1 && w[i] == 2)
            .collect();
        let gaps: Vec<usize> = tries.windows(2).map(|p| p[1] - p[0]).collect();
        assert!(gaps.len() >= 3, "{tries:?}");
        assert!(
            gaps.windows(2).all(|g| g[1] >= g[0]),
            "ever less often: {gaps:?}"
        );
        assert!(*gaps.last().unwrap() as u32 >= LAST_PROBE, "{gaps:?}");
        // The server changed its ways: a try finds two pays, and then four.
        let w = serve(&mut t, 50 * MS, 1.0, 3 * LAST_PROBE as usize);
        assert_eq!(w.last(), Some(&CLOSING_WINDOW), "{:?}", moves(&w));
    }

    #[test]
    fn a_try_at_two_that_brings_nothing_ends_early() {
        let mut t = settled_at_one(32, MS);
        let w = serve(&mut t, MS, 0.0, 4000);
        let lengths: Vec<usize> = w
            .split(|&x| x == 1)
            .filter(|run| !run.is_empty())
            .map(<[usize]>::len)
            .collect();
        assert!(lengths.len() >= 3, "{lengths:?}");
        // The download that started at one is not counted, then EARLY at two.
        assert!(lengths.iter().all(|&n| n == EARLY + 1), "{lengths:?}");
        // Against a server far away the try runs its round, and two are kept.
        let mut t = settled_at_one(2, 100 * MS);
        let w = serve(&mut t, 100 * MS, 1.0, 4 * ROUND);
        assert!(share(&w, 2) > 0.5, "{:?}", moves(&w));
    }

    #[test]
    fn a_server_stuck_at_four_after_a_lucky_first_round_is_tried_at_two_again() {
        let mut t = Closing::new(32, 0);
        // A first round that got through four times as much as the server does later.
        for _ in 0..ROUND {
            t.reply(MS, 4);
        }
        let w = serve(&mut t, MS, 0.0, 4000);
        assert!(share(&w, 1) > 0.75, "{:?}", moves(&w));
    }

    #[test]
    fn one_slow_download_in_a_round_changes_nothing() {
        let mut t = Closing::new(32, 0);
        let mut at_four = 0;
        for i in 0..4000 {
            let w = t.window();
            at_four += usize::from(w == CLOSING_WINDOW);
            let held = if i % ROUND == 3 { 900 * MS } else { 100 * MS };
            t.reply(held, w);
        }
        assert!(at_four > 3600, "{at_four} of 4000 at four");
    }

    #[test]
    fn a_list_running_out_is_no_sign_of_a_server_in_turn() {
        let mut t = Closing::new(32, 0);
        // One download in flight: its hold says nothing of what a second would do.
        for _ in 0..4 * ROUND {
            t.reply(5 * MS, 1);
        }
        assert_eq!(t.window(), CLOSING_WINDOW);
        assert!(!t.learned());
    }
}
