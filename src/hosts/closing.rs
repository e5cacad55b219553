//! How many downloads at once pay off against a host that closes the connection after every
//! reply.
//!
//! Every download to such a host is a new connection, and nothing says whether the server
//! behind it serves them side by side (nginx, Apache, a server far away: several at once hide
//! the round trips) or in turn (`python3 -m http.server`: one interpreter lock, so a second
//! connection only slows the first). The downloads say it: a round of [`ROUND`] of them ends at
//! some rate, files a second from its first end to its last. A server that overlaps gets
//! through about twice as much at twice the window; one that serves in turn gets no more, or
//! less. So from [`CLOSING_WINDOW`] the window halves a round at a time, down to one unless a
//! smaller window falls [`FAR_BEHIND`] the best above it (a server that serves in turn may do
//! no better at two than at four, and much better at one: its slot is handed on as a small
//! reply comes in, see `pool::handoff`), and settles at the smallest window that got within
//! [`MARGIN`] of the best (the smaller costs the server less). Once settled it tries half and
//! twice the window in turn, after [`FIRST_PROBE`] downloads, then after twice as many each
//! time a try did not pay. A try whose answer is plain after [`EARLY`] downloads ends there: at
//! twice the window, one that got no more through; at half, one that got as much, which goes
//! on down. Downloads that started under the window before are not counted in the next.

use std::time::{Duration, Instant};

/// The most such a host gets: every download a new connect into its accept queue, which may
/// hold only 5 (see the module docs of [`crate::hosts`]).
pub(crate) const CLOSING_WINDOW: usize = 4;

/// Downloads per measure.
const ROUND: usize = 32;

/// Downloads after which a try whose answer is plain ends early (see [`Closing::early`]).
const EARLY: usize = 8;

/// How much more a larger window must get through to be kept. A round's rate swings by a
/// quarter or more either way against a server that serves in turn (`python3 -m http.server` hands its
/// lock between threads every few milliseconds); one that overlaps doubles it when the window
/// doubles.
const MARGIN: f64 = 1.3;

/// How far behind the best window above a smaller one may fall and the descent still go on:
/// against a server that overlaps, half the window gets through about half as much.
const FAR_BEHIND: f64 = 1.6;

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
    /// This round's downloads, their holds summed, and the downloads holding a slot summed
    /// over their ends.
    ended: usize,
    held: Duration,
    in_flight: usize,
    /// When this round's first and latest counted downloads ended.
    span: Option<(Instant, Instant)>,
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
    /// The windows a descent has measured, with what each got through.
    seen: Vec<(usize, f64)>,
    /// Whether it has settled once (the first descent is over).
    settled_once: bool,
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
            ended: 0,
            held: Duration::ZERO,
            in_flight: 0,
            span: None,
            skip: in_flight,
            settled: 0,
            probe_after: FIRST_PROBE,
            best: 0.0,
            sum: 0.0,
            rounds: 0,
            down_next: true,
            seen: Vec::new(),
            settled_once: false,
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
        self.reply_at(held, in_flight, Instant::now())
    }

    /// [`Closing::reply`] of a download that ended at `now`.
    fn reply_at(&mut self, held: Duration, in_flight: usize, now: Instant) -> usize {
        if self.skip > 0 {
            self.skip -= 1;
            return self.window;
        }
        self.settled = self.settled.saturating_add(1);
        self.ended += 1;
        self.held += held;
        self.in_flight += in_flight.max(1);
        self.span = Some((self.span.map_or(now, |s| s.0), now));
        let before = self.window;
        if self.ended == EARLY {
            self.early();
        } else if self.ended >= ROUND {
            let (c, rate) = self.measure();
            self.new_round();
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

    fn new_round(&mut self) {
        self.ended = 0;
        self.held = Duration::ZERO;
        self.in_flight = 0;
        self.span = None;
    }

    /// The round so far: how many downloads held a slot at once, on average, and what the
    /// host got through, files a second from the round's first end to its last. (`c` over the
    /// median hold, Little's law, read up to twice that in a round at a window that crowds the
    /// server: most downloads answered at once, a few after waiting in its accept queue.) Its
    /// mean hold stands in only while no time has passed between ends.
    fn measure(&mut self) -> (f64, f64) {
        let n = self.ended.max(1);
        let c = self.in_flight as f64 / n as f64;
        let took = self.span.map_or(0.0, |(first, last)| {
            last.duration_since(first).as_secs_f64()
        });
        if took > 0.0 {
            return (c, (n - 1) as f64 / took);
        }
        (c, c * n as f64 / self.held.as_secs_f64().max(1e-6))
    }

    /// After [`EARLY`] downloads of a try, ends it where the answer is plain already. A server
    /// that serves in turn makes every download of a larger window slower than one of the
    /// smaller, so that a full round of them costs more than it can tell: a try at twice the
    /// window that got through no more than the settled one did at its best goes back, and a
    /// try at half that got through as much as the larger one goes on down. (Against a server
    /// that overlaps, each of these is off by about twice: a full round decides.)
    fn early(&mut self) {
        let (c, rate) = self.measure();
        let plain = match self.step {
            Step::Up { rate: smaller, .. } => c >= 1.5 && rate <= smaller,
            Step::Down { from, rate: larger } => {
                (self.window == 1 || c >= 1.5) && self.window < from && rate >= larger
            }
            Step::Settled => false,
        };
        if plain {
            self.new_round();
            self.decide(rate);
        }
    }

    fn decide(&mut self, rate: f64) {
        match self.step {
            Step::Down { .. } => self.descend(rate),
            Step::Up {
                from,
                rate: smaller,
            } if rate <= smaller * MARGIN => self.back_to(from),
            Step::Up { .. } => self.settle(self.window),
            Step::Settled => self.settled_round(rate),
        }
    }

    /// A window of a descent got through `rate`: on down while it is not far behind the best
    /// above it (a server that serves in turn may get as little through at two as at four and
    /// much more at one); else, or at one, settles at the smallest window that got within
    /// [`MARGIN`] of the best (the smaller costs the server less).
    fn descend(&mut self, rate: f64) {
        self.seen.push((self.window, rate));
        let top = self.top();
        // Past a window that got less than the one above only on the first descent: later
        // tries at half go on only while the smaller gets about as far.
        let behind = if self.settled_once {
            MARGIN
        } else {
            FAR_BEHIND
        };
        if self.window > 1 && rate * behind >= top {
            self.step = Step::Down {
                from: self.window,
                rate,
            };
            self.window = half(self.window);
            return;
        }
        let start = self.seen.first().map_or(self.window, |s| s.0);
        let chosen = self
            .seen
            .iter()
            .filter(|s| s.1 * MARGIN >= top)
            .map(|s| s.0)
            .min()
            .unwrap_or(start);
        self.seen.clear();
        if chosen < start {
            self.settle(chosen);
        } else {
            // The larger window paid: back to it, and the next try comes later.
            self.back_to(chosen);
        }
    }

    /// The best rate of this descent so far.
    fn top(&self) -> f64 {
        self.seen.iter().map(|s| s.1).fold(0.0, f64::max)
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
            let rate = self.sum / f64::from(self.rounds);
            self.seen = vec![(self.window, rate)];
            self.step = Step::Down {
                from: self.window,
                rate,
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
        self.settled_once = true;
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    thread_local! {
        static CLOCK: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
    }

    /// A download held for `held` with `c` in flight ends: `held / c` after the one before, on
    /// the test's own clock (a host kept busy at its window).
    fn reply(t: &mut Closing, held: Duration, c: usize) -> usize {
        let now = CLOCK.with(|clock| {
            let now = clock.get().unwrap_or_else(Instant::now) + held / c.max(1) as u32;
            clock.set(Some(now));
            now
        });
        t.reply_at(held, c, now)
    }

    /// A server that takes `alone` for a download with nothing else in flight and overlaps a
    /// share `overlap` of the others (0: strictly in turn, 1: fully side by side), serving `n`
    /// downloads with as many in flight as the tuner's window; the window of each.
    fn serve(tuner: &mut Closing, alone: Duration, overlap: f64, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| {
                let c = tuner.window();
                reply(
                    tuner,
                    alone.mul_f64(1.0 + (c - 1) as f64 * (1.0 - overlap)),
                    c,
                );
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
        let first = serve(&mut t, MS, 0.0, 2 * ROUND);
        assert_eq!(moves(&first), [4, 2, 1]);
        // Two got as far as four within EARLY downloads (after the four started at four): on
        // down at once, not after a round.
        let at_two = first.iter().filter(|&&w| w == 2).count();
        assert!(at_two <= CLOSING_WINDOW + EARLY, "{at_two} at two");
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
        assert_eq!(moves(&serve(&mut t, MS, 0.0, 2 * ROUND)), [3, 2, 1]);
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
        serve(&mut t, alone, 0.0, 2 * ROUND);
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
            reply(&mut t, MS, 4);
        }
        let w = serve(&mut t, MS, 0.0, 4000);
        assert!(share(&w, 1) > 0.75, "{:?}", moves(&w));
    }

    #[test]
    fn a_server_no_better_at_two_than_at_four_is_tried_at_one() {
        // Four at once get through 4000 a second, two 2800, one 5000 (`python3 -m http.server`
        // with its slot handed on early: every connection beside another slows it).
        let hold = |w: usize| match w {
            4 => MS,
            2 => MS * 5 / 7,
            _ => MS / 5,
        };
        let mut t = Closing::new(32, 0);
        let mut windows = Vec::new();
        for _ in 0..4 * ROUND {
            let w = t.window();
            windows.push(w);
            reply(&mut t, hold(w), w);
        }
        assert_eq!(moves(&windows)[..3], [4, 2, 1], "{:?}", moves(&windows));
        let later: Vec<usize> = (0..4000)
            .map(|_| {
                let w = t.window();
                reply(&mut t, hold(w), w);
                w
            })
            .collect();
        assert!(share(&later, 1) > 0.9, "{:?}", moves(&later));
    }

    #[test]
    fn holds_spread_by_a_crowded_queue_do_not_read_as_more() {
        let mut t = Closing::new(32, 0);
        // Four at once: most answered at once, a quarter after waiting in the accept queue,
        // 4 / 3.25 ms in all; the median, 1 ms, would have read as 4 / 1 ms.
        for i in 0..ROUND {
            reply(&mut t, if i % 4 == 0 { 10 * MS } else { MS }, 4);
        }
        assert_eq!(t.window(), 2);
        // Two at once, 1.5 ms each: about what four got through, so on down (after the four
        // downloads that started at four, and a round).
        serve(&mut t, 3 * MS / 2, 1.0, CLOSING_WINDOW + ROUND);
        assert_eq!(t.window(), 1);
    }

    #[test]
    fn one_slow_download_in_a_round_changes_nothing() {
        let mut t = Closing::new(32, 0);
        let mut at_four = 0;
        for i in 0..4000 {
            let w = t.window();
            at_four += usize::from(w == CLOSING_WINDOW);
            let held = if i % ROUND == 3 { 900 * MS } else { 100 * MS };
            reply(&mut t, held, w);
        }
        assert!(at_four > 3600, "{at_four} of 4000 at four");
    }

    #[test]
    fn a_list_running_out_is_no_sign_of_a_server_in_turn() {
        let mut t = Closing::new(32, 0);
        // One download in flight: its hold says nothing of what a second would do.
        for _ in 0..4 * ROUND {
            reply(&mut t, 5 * MS, 1);
        }
        assert_eq!(t.window(), CLOSING_WINDOW);
        assert!(!t.learned());
    }
}
