//! Several workers on one thread: stackful coroutines (fibers) over the thread's tokio runtime.
//!
//! A worker's download code waits on the network by blocking (see [`crate::transport`]). With one
//! thread per worker, every request puts its thread to sleep and every reply wakes one: on many
//! small files, most of the CPU goes to those switches. Here a thread runs several workers as
//! fibers: a wait on the network suspends the fiber instead of the thread, and the thread sleeps
//! only when none of its fibers can go on, to wake with the replies of several at once.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use tokio::runtime::Runtime;
use tokio::sync::Notify;

/// Stack of one fiber: reqwest, hyper and rustls run on it. What a worker thread had (Rust's
/// default for spawned threads); only the pages it touches take memory.
const STACK: usize = 2 << 20;

type Fiber = Coroutine<(), (), (), DefaultStack>;

/// What the running fiber needs to suspend itself.
#[derive(Clone)]
struct Current {
    yielder: *const Yielder<(), ()>,
    waker: Waker,
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

/// The fibers of one thread that can go on.
struct Ready {
    queue: Mutex<VecDeque<usize>>,
    notify: Notify,
}

struct FiberWaker {
    id: usize,
    queued: AtomicBool,
    ready: Arc<Ready>,
}

impl Wake for FiberWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Once in the queue is enough; the flag is cleared as the fiber is taken out of it.
        if !self.queued.swap(true, Ordering::AcqRel) {
            let mut queue = self
                .ready
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            queue.push_back(self.id);
            drop(queue);
            self.ready.notify.notify_one();
        }
    }
}

/// Whether this code runs on a fiber.
pub(crate) fn active() -> bool {
    CURRENT.with(|c| c.borrow().is_some())
}

/// Runs `future` to its end: on a fiber, suspending the fiber while it is pending (what it sets
/// up, a connection's task say, goes on the runtime the fibers run over); elsewhere, on
/// `runtime`.
pub(crate) fn block_on<F: Future>(runtime: &Runtime, future: F) -> F::Output {
    match CURRENT.with(|c| c.borrow().clone()) {
        Some(current) => suspend_until(&current, future),
        None => runtime.block_on(future),
    }
}

fn suspend_until<F: Future>(current: &Current, future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    loop {
        let mut cx = Context::from_waker(&current.waker);
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        // SAFETY: `current` was set for the fiber running this code (see `Running`), with the
        // yielder corosensei gave it, which lives as long as the fiber.
        unsafe { (*current.yielder).suspend(()) };
    }
}

/// Lets the fibers of this thread that are ready run before this one goes on (nothing off a
/// fiber): one just woken to take over a job, say, before this one finishes its own.
pub(crate) fn yield_now() {
    if let Some(current) = CURRENT.with(|c| c.borrow().clone()) {
        // Back of the queue: every fiber woken before this call runs first.
        current.waker.wake_by_ref();
        // SAFETY: as in `suspend_until`.
        unsafe { (*current.yielder).suspend(()) };
    }
}

/// What wakes the running fiber; `None` off a fiber. A fiber woken this way while it waits in
/// [`wait_for`] asks again at once.
pub(crate) fn waker() -> Option<Waker> {
    CURRENT.with(|c| c.borrow().as_ref().map(|current| current.waker.clone()))
}

/// Polls `future` once and, if it is pending, suspends the fiber until it is woken, for
/// whatever reason.
fn suspend_once<F: Future>(current: &Current, future: F) {
    let future = std::pin::pin!(future);
    let mut cx = Context::from_waker(&current.waker);
    if future.poll(&mut cx).is_pending() {
        // SAFETY: as in `suspend_until`.
        unsafe { (*current.yielder).suspend(()) };
    }
}

/// Sleeps `pause`: the fiber only, on a fiber.
pub(crate) fn sleep(pause: Duration) {
    match CURRENT.with(|c| c.borrow().clone()) {
        Some(current) => suspend_until(&current, tokio::time::sleep(pause)),
        None => std::thread::sleep(pause),
    }
}

/// Runs every body as a fiber on this thread, over `runtime`, until all have returned.
pub(crate) fn run<'a>(runtime: &Runtime, bodies: Vec<Box<dyn FnOnce() + 'a>>) {
    let yielders: Vec<Cell<*const Yielder<(), ()>>> =
        bodies.iter().map(|_| Cell::new(std::ptr::null())).collect();
    // Declared after `yielders`, which the fibers borrow: dropped (a fiber still suspended, on a
    // panic, unwound first) before them.
    let mut fibers = make(bodies, &yielders);
    let ready = Arc::new(Ready {
        queue: Mutex::new((0..fibers.len()).collect()),
        notify: Notify::new(),
    });
    let wakers: Vec<Arc<FiberWaker>> = (0..fibers.len())
        .map(|id| {
            Arc::new(FiberWaker {
                id,
                queued: AtomicBool::new(true),
                ready: ready.clone(),
            })
        })
        .collect();
    runtime.block_on(async {
        let mut left = fibers.len();
        while left > 0 {
            let next = ready
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            let Some(id) = next else {
                ready.notify.notified().await;
                continue;
            };
            wakers[id].queued.store(false, Ordering::Release);
            let Some(fiber) = fibers[id].as_mut() else {
                continue;
            };
            let _running = Running::set(yielders[id].get(), &wakers[id]);
            if let CoroutineResult::Return(()) = fiber.resume(()) {
                fibers[id] = None;
                left -= 1;
            }
        }
    });
}

/// A fiber for each body, each told where its [`Yielder`] is as it starts. A body whose stack
/// cannot be mapped runs at once, alone on the thread.
fn make<'a, 'y>(
    bodies: Vec<Box<dyn FnOnce() + 'a>>,
    yielders: &'y [Cell<*const Yielder<(), ()>>],
) -> Vec<Option<Fiber>> {
    let mut fibers = Vec::new();
    for body in bodies {
        let Ok(stack) = DefaultStack::new(STACK) else {
            body();
            continue;
        };
        let slot = &yielders[fibers.len()];
        // SAFETY: `with_stack_unchecked` lets a coroutine borrow what may not outlive it; `run`
        // drops every fiber before it returns, while `yielders` and what the bodies borrow
        // (`'a`, from `run`'s caller) are still there.
        let fiber = unsafe {
            Coroutine::with_stack_unchecked(stack, move |yielder: &Yielder<(), ()>, ()| {
                let yielder: *const Yielder<(), ()> = yielder;
                slot.set(yielder);
                CURRENT.with(|c| {
                    if let Some(current) = c.borrow_mut().as_mut() {
                        current.yielder = yielder;
                    }
                });
                body();
            })
        };
        fibers.push(Some(fiber));
    }
    fibers
}

/// Marks a fiber as the one running on this thread, until dropped (also when it panics).
struct Running;

impl Running {
    fn set(yielder: *const Yielder<(), ()>, waker: &Arc<FiberWaker>) -> Running {
        CURRENT.with(|c| {
            *c.borrow_mut() = Some(Current {
                yielder,
                waker: Waker::from(waker.clone()),
            })
        });
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
    }
}

/// Asks `attempt` until it answers, for at most `most`, waiting between asks (the fiber only)
/// for `bell` to ring: for what cannot wake a fiber itself (a channel, a lock's condition),
/// whose every change rings the bell. `None` when `most` passed without an answer.
pub(crate) fn wait_for<T>(
    bell: &Notify,
    mut attempt: impl FnMut() -> Option<T>,
    most: Duration,
) -> Option<T> {
    let deadline = std::time::Instant::now() + most;
    loop {
        // Listening before asking: a ring between the two is not missed.
        let mut rung = std::pin::pin!(bell.notified());
        rung.as_mut().enable();
        if let Some(answer) = attempt() {
            return Some(answer);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return None;
        }
        match CURRENT.with(|c| c.borrow().clone()) {
            // Any wake asks again: the bell, the deadline, or the fiber's own waker.
            Some(current) => suspend_once(&current, tokio::time::timeout(left, rung)),
            None => std::thread::sleep(left.min(Duration::from_millis(1))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn runtime() -> Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_fiber_that_waits_lets_the_others_run() {
        let order = RefCell::new(Vec::new());
        let bodies: Vec<Box<dyn FnOnce() + '_>> = vec![
            Box::new(|| {
                order.borrow_mut().push("a starts");
                sleep(Duration::from_millis(50));
                order.borrow_mut().push("a ends");
            }),
            Box::new(|| order.borrow_mut().push("b runs")),
        ];
        run(&runtime(), bodies);
        assert_eq!(order.into_inner(), ["a starts", "b runs", "a ends"]);
        assert!(!active(), "no fiber once they are done");
    }

    #[test]
    fn a_fiber_woken_from_another_thread_goes_on() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let got = Cell::new(0);
        let other = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(7).unwrap();
        });
        let rt = runtime();
        let bodies: Vec<Box<dyn FnOnce() + '_>> = vec![
            Box::new(|| got.set(block_on(&rt, rx).unwrap())),
            Box::new(|| assert!(active())),
        ];
        run(&runtime(), bodies);
        other.join().unwrap();
        assert_eq!(got.get(), 7);
    }

    #[test]
    fn a_fiber_waiting_for_a_bell_goes_on_when_it_rings() {
        let flag = AtomicUsize::new(0);
        let bell = Notify::new();
        let bodies: Vec<Box<dyn FnOnce() + '_>> = vec![
            Box::new(|| {
                // Long enough that only the ring can end the wait in time for the check below.
                let seen = wait_for(
                    &bell,
                    || (flag.load(Ordering::SeqCst) > 0).then_some(true),
                    Duration::from_secs(60),
                );
                assert_eq!(seen, Some(true));
                flag.store(2, Ordering::SeqCst);
            }),
            Box::new(|| {
                sleep(Duration::from_millis(10));
                flag.store(1, Ordering::SeqCst);
                bell.notify_waiters();
            }),
        ];
        let started = std::time::Instant::now();
        run(&runtime(), bodies);
        assert_eq!(flag.load(Ordering::SeqCst), 2);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "woken by the bell"
        );
    }

    #[test]
    fn a_fiber_waiting_for_a_bell_asks_again_when_its_own_waker_wakes_it() {
        let (flag, bell, waker) = (Cell::new(false), Notify::new(), RefCell::new(None));
        let bodies: Vec<Box<dyn FnOnce() + '_>> = vec![
            Box::new(|| {
                *waker.borrow_mut() = super::waker();
                // No ring ever comes: only the waker can end this wait before the minute.
                let seen = wait_for(&bell, || flag.get().then_some(()), Duration::from_secs(60));
                assert_eq!(seen, Some(()));
            }),
            Box::new(|| {
                flag.set(true);
                waker.borrow_mut().take().expect("a waker").wake();
                yield_now();
            }),
        ];
        let started = std::time::Instant::now();
        run(&runtime(), bodies);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "woken by its waker"
        );
    }

    #[test]
    fn a_panic_in_a_fiber_reaches_the_caller() {
        let bodies: Vec<Box<dyn FnOnce()>> = vec![
            Box::new(|| sleep(Duration::from_secs(60))),
            Box::new(|| panic!("boom")),
        ];
        let rt = runtime();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&rt, bodies)));
        assert!(caught.is_err());
        assert!(!active(), "the thread is no fiber's after the panic");
    }
}
