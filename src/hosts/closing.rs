//! How many downloads at once pay off against a host that closes the connection after every
//! reply.
//!
//! Every download to such a host is a new connection, and nothing says whether the server
//! behind it serves them side by side (nginx, Apache, a server far away: several at once hide
//! the round trips) or in turn (`python3 -m http.server`: one interpreter lock, so a second
//! connection only slows the first). The downloads say it: a round of them ends at some rate,
//! files a second from its first end to its last. A server that overlaps gets through about
//! twice as much at twice the window; one that serves in turn gets no more, or less.
//!
//! A host that answered its first download at once (on the same machine or the same network:
//! see `hosts::FIRST_ANSWER`) with a small reply (a success whose body came in one read)
//! starts at one at a time, measured over [`EARLY`] downloads once the first few are over, and
//! climbs: twice the window is kept while it gets through [`MARGIN`] more, up to
//! [`CLOSING_WINDOW`]. A server that serves in turn thus pays for a few downloads beside
//! another, not for rounds of them (its slot is handed on as a small reply comes in, see
//! `pool::handoff`: at one at a time it is kept busy). A host slow to answer got a first round
//! at once, and round trips are what several at once hide; a body several reads long keeps its
//! connection busy past the answer (a server that limits each connection's rate, say), which
//! several at once overlap too: such a host starts at [`CLOSING_WINDOW`] and halves a round at
//! a time while the smaller window gets within [`MARGIN`] as far (the smaller costs the server
//! less). Once settled the tuner tries half and
//! twice the window in turn, after [`FIRST_PROBE`] downloads, then after twice as many each
//! time a try did not pay, and never sooner than [`PROBE_GAP`] after the last move: a try costs
//! a server that serves in turn a few milliseconds, which a short run cannot win back. A try
//! whose answer is plain after [`EARLY`] downloads ends there: at twice the window, one that
//! did not get [`MARGIN`] more through goes back and one that got [`FAR_AHEAD`] as much goes on
//! up; at half, one that got as much goes on down. Downloads that started under the window
//! before are not counted in the next.

use std::time::{Duration, Instant};

/// The most such a host gets: every download a new connect into its accept queue, which may
/// hold only 5 (see the module docs of [`crate::hosts`]).
pub(crate) const CLOSING_WINDOW: usize = 4;

/// Downloads per measure.
const ROUND: usize = 32;

/// Downloads after which a try whose answer is plain ends early (see [`Closing::early`]).
const EARLY: usize = 8;

/// How much more a larger window must get through to be kept. A round's rate swings by a
/// quarter or more either way against a server that serves in turn (`python3 -m http.server`
/// hands its lock between threads every few milliseconds); one that overlaps doubles it when
/// the window doubles.
const MARGIN: f64 = 1.3;

/// How much more a try at twice the window must get through in [`EARLY`] downloads to go on
/// up at once: a server that overlaps gets about twice; one that serves in turn, less at two
/// than at one.
const FAR_AHEAD: f64 = 1.6;

/// Downloads at the settled window before the first try at another.
const FIRST_PROBE: u32 = 64;

/// The most downloads between two tries.
const LAST_PROBE: u32 = 1024;

/// The least time between a move and the next try.
const PROBE_GAP: Duration = Duration::from_secs(1);

/// What the tuner is doing.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    /// Measuring one at a time, where a closing host starts: once `warm` (the first downloads
    /// of a run are slower at both ends, and would make the next window look better).
    Start { warm: bool },
    /// Trying a smaller window: `from`, the larger one, got through `rate`.
    Down { from: usize, rate: f64 },
    /// Trying twice the window `from`, which got through at best `rate`.
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
    /// When the latest counted download ended, and when it settled.
    clock: Option<Instant>,
    settled_at: Option<Instant>,
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
    /// Whether a round has been measured.
    measured: bool,
}

impl Closing {
    /// A host found to close its connections, with `in_flight` downloads started before (not
    /// counted: they started under the larger window of a host not yet known), by a reply that
    /// was `small` (a success whose body came in one read); at most `cap` downloads at once
    /// (`--per-host`).
    pub(crate) fn new(cap: usize, in_flight: usize, small: bool) -> Closing {
        let cap = CLOSING_WINDOW.min(cap).max(1);
        // A first round went out (the host was slow to answer, see `hosts::FIRST_ANSWER`), or
        // a body keeps its connection busy past its answer, which several at once overlap.
        let (window, step) = if in_flight > 1 || !small {
            let rate = 0.0;
            (cap, Step::Down { from: cap, rate })
        } else {
            (1, Step::Start { warm: false })
        };
        Closing {
            window,
            cap,
            step,
            ended: 0,
            held: Duration::ZERO,
            in_flight: 0,
            span: None,
            skip: in_flight,
            settled: 0,
            probe_after: FIRST_PROBE,
            clock: None,
            settled_at: None,
            best: 0.0,
            sum: 0.0,
            rounds: 0,
            down_next: true,
            seen: Vec::new(),
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
        self.count_end(held, in_flight, now);
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

    /// Counts a download of this round that ended at `now`.
    fn count_end(&mut self, held: Duration, in_flight: usize, now: Instant) {
        self.settled = self.settled.saturating_add(1);
        self.clock = Some(now);
        self.ended += 1;
        self.held += held;
        self.in_flight += in_flight.max(1);
        self.span = Some((self.span.map_or(now, |s| s.0), now));
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

    /// After [`EARLY`] downloads of a measure or a try, ends it where the answer is plain
    /// already. At the start, the first [`EARLY`] are not counted (both ends warm up), and the
    /// next are the measure the climb begins from. A server that serves in turn makes every
    /// download of a larger window slower than one of the smaller, so that a full round of them
    /// costs more than it can tell: a try at twice the window that did not get [`MARGIN`] more
    /// through than the smaller did at its best goes back (a full round would), and a try at
    /// half that got through as much as the larger one goes on down. One that overlaps gets
    /// [`FAR_AHEAD`] as much at twice: on up. (Between these, a full round decides.)
    fn early(&mut self) {
        let (c, rate) = self.measure();
        let plain = match self.step {
            Step::Start { warm: false } => {
                self.new_round();
                self.step = Step::Start { warm: true };
                return;
            }
            Step::Start { warm: true } => true,
            Step::Up { rate: smaller, .. } => {
                c >= 1.5 && (rate < smaller * MARGIN || rate >= smaller * FAR_AHEAD)
            }
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
            Step::Start { .. } => self.up_from(rate),
            Step::Down { .. } => self.descend(rate),
            Step::Up {
                from,
                rate: smaller,
            } if rate <= smaller * MARGIN => self.back_to(from),
            Step::Up { .. } => self.up_from(rate),
            Step::Settled => self.settled_round(rate),
        }
    }

    /// The window got through `rate` and that paid: twice it is tried next, or, at the cap,
    /// it is kept (tries come soon).
    fn up_from(&mut self, rate: f64) {
        if self.window >= self.cap {
            self.settle(self.window);
            return;
        }
        self.step = Step::Up {
            from: self.window,
            rate,
        };
        self.window = (self.window * 2).min(self.cap);
    }

    /// A window of a descent got through `rate`: on down while it gets within [`MARGIN`] of
    /// the best above it; else, or at one, settles at the smallest window that did (the
    /// smaller costs the server less).
    fn descend(&mut self, rate: f64) {
        self.seen.push((self.window, rate));
        let top = self.seen.iter().map(|s| s.1).fold(0.0, f64::max);
        if self.window > 1 && rate * MARGIN >= top {
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

    /// A round at the settled window; when it is time, the next try, at half or twice it.
    fn settled_round(&mut self, rate: f64) {
        self.best = self.best.max(rate);
        self.sum += rate;
        self.rounds += 1;
        let soon = self
            .clock
            .zip(self.settled_at)
            .is_some_and(|(now, at)| now.saturating_duration_since(at) < PROBE_GAP);
        if self.settled < self.probe_after || soon {
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
            self.up_from(self.best);
        }
    }

    /// Settles on `window` after a move that paid (or the first climb): tries come soon.
    fn settle(&mut self, window: usize) {
        self.probe_after = FIRST_PROBE;
        self.settle_quietly(window);
    }

    fn settle_quietly(&mut self, window: usize) {
        self.window = window;
        self.step = Step::Settled;
        self.settled = 0;
        self.settled_at = self.clock;
        self.best = 0.0;
        self.sum = 0.0;
        self.rounds = 0;
    }

    /// Back to `window` after a try that did not pay: the next comes after twice as many.
    fn back_to(&mut self, window: usize) {
        self.probe_after = (self.probe_after * 2).min(LAST_PROBE);
        self.settle_quietly(window);
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

    /// A host that answered its first download at once (one in flight when it was found to
    /// close its connections).
    fn quick() -> Closing {
        Closing::new(32, 1, true)
    }

    /// A host slow to answer, found to close its connections with a first round of eight out.
    fn slow() -> Closing {
        let mut t = Closing::new(32, INITIAL, true);
        for _ in 0..INITIAL {
            reply(&mut t, MS, INITIAL);
        }
        t
    }

    const INITIAL: usize = crate::hosts::INITIAL_WINDOW;

    #[test]
    fn a_quick_server_that_answers_in_turn_is_tried_at_two_for_a_few_downloads_only() {
        let mut t = quick();
        let first = serve(&mut t, MS, 0.0, 4 * ROUND);
        assert_eq!(moves(&first), [1, 2, 1]);
        // The first download, then a warm-up and a measure at one; at two the one that
        // started at one is not counted, then EARLY.
        assert_eq!(first.iter().position(|&w| w == 2), Some(1 + 2 * EARLY));
        assert_eq!(first.iter().filter(|&&w| w == 2).count(), EARLY + 1);
        assert!(t.learned());
        let later = serve(&mut t, MS, 0.0, 4000);
        assert!(share(&later, 1) > 0.99, "{:?}", moves(&later));
    }

    #[test]
    fn a_quick_server_that_overlaps_is_climbed_to_four() {
        let mut t = quick();
        let w = serve(&mut t, 100 * MS, 1.0, 3 * ROUND);
        assert_eq!(moves(&w)[..3], [1, 2, 4], "{:?}", moves(&w));
        assert!(
            w.iter().filter(|&&w| w < CLOSING_WINDOW).count() <= 1 + 3 * EARLY + 2,
            "twice as much at two and at four: on up at once"
        );
        let later = serve(&mut t, 100 * MS, 1.0, 4000);
        assert!(share(&later, 4) > 0.9, "{:?}", moves(&later));
        let mut t = quick();
        let w = serve(&mut t, 100 * MS, 0.8, 4000);
        assert!(share(&w, 4) > 0.9, "mostly side by side: {:?}", moves(&w));
        // Four bring a fifth more than two here: under the margin, two are kept.
        let mut t = quick();
        let w = serve(&mut t, 100 * MS, 0.5, 4000);
        assert!(share(&w, 2) > 0.75, "half side by side: {:?}", moves(&w));
    }

    #[test]
    fn a_slow_server_starts_at_four_and_keeps_it_if_it_overlaps() {
        let mut t = slow();
        assert_eq!(t.window(), CLOSING_WINDOW);
        assert_eq!(moves(&serve(&mut t, 100 * MS, 1.0, 3 * ROUND)), [4, 2, 4]);
        let later = serve(&mut t, 100 * MS, 1.0, 4000);
        assert!(share(&later, 4) > 0.9, "{:?}", moves(&later));
    }

    #[test]
    fn bigger_replies_start_at_four_however_soon_they_came() {
        let mut t = Closing::new(32, 1, false);
        assert_eq!(t.window(), CLOSING_WINDOW);
        let w = serve(&mut t, 100 * MS, 1.0, 4000);
        assert!(share(&w, 4) > 0.9, "{:?}", moves(&w));
    }

    #[test]
    fn a_slow_server_that_answers_in_turn_is_halved_to_one() {
        let mut t = slow();
        let first = serve(&mut t, 100 * MS, 0.0, 3 * ROUND);
        assert_eq!(moves(&first), [4, 2, 1]);
        // Two got as far as four within EARLY downloads (after the four started at four): on
        // down at once, not after a round.
        let at_two = first.iter().filter(|&&w| w == 2).count();
        assert!(at_two <= CLOSING_WINDOW + EARLY, "{at_two} at two");
        let later = serve(&mut t, 100 * MS, 0.0, 4000);
        assert!(share(&later, 1) > 0.9, "{:?}", moves(&later));
    }

    #[test]
    fn an_odd_cap_is_climbed_to_and_halved_to_the_window_above_half() {
        let mut t = Closing::new(3, 1, true);
        let w = serve(&mut t, 100 * MS, 1.0, 4000);
        assert_eq!(moves(&w)[..4], [1, 2, 3, 2], "{:?}", moves(&w));
        assert!(share(&w, 3) > 0.9, "{:?}", moves(&w));
    }

    #[test]
    fn never_past_per_host() {
        for mut t in [Closing::new(2, 1, true), Closing::new(2, 2, true)] {
            let w = serve(&mut t, 100 * MS, 1.0, 4000);
            assert_eq!(w.iter().max(), Some(&2));
            assert!(share(&w, 2) > 0.9, "{:?}", moves(&w));
        }
        let mut t = Closing::new(1, 1, true);
        let w = serve(&mut t, 100 * MS, 1.0, 4000);
        assert_eq!(w.iter().max(), Some(&1), "--per-host 1");
    }

    /// A tuner (at most `cap`) settled at one by a quick server that takes `alone` a download,
    /// in turn.
    fn settled_at_one(cap: usize, alone: Duration) -> Closing {
        let mut t = Closing::new(cap, 1, true);
        serve(&mut t, alone, 0.0, 2 * ROUND);
        assert_eq!(t.window(), 1);
        t
    }

    #[test]
    fn settled_it_tries_another_window_ever_less_often_and_moves_when_that_pays() {
        let mut t = settled_at_one(32, 10 * MS);
        // Where each try at two starts, over a long list served in turn.
        let w = serve(&mut t, 10 * MS, 0.0, 4000);
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
    fn a_run_shorter_than_the_gap_between_tries_is_not_tried_again() {
        // A thousand downloads of a third of a millisecond each: well past the downloads a try
        // waits for, not past the time.
        let mut t = settled_at_one(32, MS / 3);
        let w = serve(&mut t, MS / 3, 0.0, 1000);
        assert_eq!(moves(&w), [1]);
        // Past it, a try comes.
        let w = serve(&mut t, MS / 3, 0.0, 3000);
        assert!(w.contains(&2), "{:?}", moves(&w));
    }

    #[test]
    fn a_try_at_two_that_brings_nothing_ends_early() {
        let mut t = settled_at_one(32, 10 * MS);
        let w = serve(&mut t, 10 * MS, 0.0, 4000);
        let lengths: Vec<usize> = w
            .split(|&x| x == 1)
            .filter(|run| !run.is_empty())
            .map(<[usize]>::len)
            .collect();
        assert!(lengths.len() >= 3, "{lengths:?}");
        // The download that started at one is not counted, then EARLY at two.
        assert!(lengths.iter().all(|&n| n == EARLY + 1), "{lengths:?}");
        // Against a server far away the try goes up at once, and two are kept.
        let mut t = settled_at_one(2, 100 * MS);
        let w = serve(&mut t, 100 * MS, 1.0, 12 * ROUND);
        assert!(share(&w, 2) > 0.5, "{:?}", moves(&w));
    }

    #[test]
    fn a_lucky_round_at_two_against_a_server_in_turn_is_undone() {
        let mut t = quick();
        serve(&mut t, MS, 0.0, 1 + 2 * EARLY);
        assert_eq!(t.window(), 2);
        // A try that got through four times as much as the server does later.
        for _ in 0..ROUND {
            reply(&mut t, MS / 2, 2);
        }
        assert_eq!(t.window(), 2, "kept");
        let w = serve(&mut t, MS, 0.0, 8000);
        assert!(share(&w, 1) > 0.75, "{:?}", moves(&w));
    }

    #[test]
    fn holds_spread_by_a_crowded_queue_do_not_read_as_more() {
        let mut t = slow();
        let mut now = Instant::now();
        // Four at once: most answered at once, a quarter after waiting in the accept queue,
        // 4 / 3.25 ms in all; the median, 1 ms, would have read as 4 / 1 ms.
        for i in 0..ROUND {
            let held = if i % 4 == 0 { 10 * MS } else { MS };
            now += MS * 13 / 16;
            t.count_end(held, 4, now);
        }
        let (c, rate) = t.measure();
        assert_eq!(c, 4.0);
        let (low, high) = (4.0 / 3.25e-3 * 0.9, 4.0 / 3.25e-3 * 1.1);
        assert!(low < rate && rate < high, "{rate}");
    }

    #[test]
    fn one_slow_download_in_a_round_changes_nothing() {
        let mut t = slow();
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
        let mut t = quick();
        // One download in flight: its hold says nothing of what a second would do.
        for _ in 0..4 * ROUND {
            reply(&mut t, 5 * MS, 1);
        }
        assert_eq!(t.window(), 2, "the try at two stands");
        assert!(!t.learned());
        let mut t = slow();
        for _ in 0..4 * ROUND {
            reply(&mut t, 5 * MS, 1);
        }
        assert_eq!(t.window(), CLOSING_WINDOW);
        assert!(!t.learned());
    }
}
