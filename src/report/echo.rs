//! The terminal's echo of Ctrl-C, kept off the bars while they draw.
//!
//! indicatif pads every bar line to the terminal's width, leaving the cursor past the last
//! column. At Ctrl-C the terminal driver echoes `^C` there; it wraps onto a new line, indicatif's
//! final clear then starts one line too low, and the top bar stays on the screen above the
//! summary. With `ECHOCTL` off the driver echoes the control character itself, which terminals
//! do not print, so the cursor stays where indicatif left it.
//!
//! The setting is put back when the bars go, on drop should the run unwind, and by the second
//! Ctrl-C's immediate exit ([`restore`]); a process killed outright leaves only `^C` unshown.
//! A shell puts its own setting back when the run is stopped (Ctrl-Z), so each tick of the bars
//! switches it off again once the run is back in the foreground ([`QuietCtrlC::keep`]).
//!
//! Only a run in the terminal's foreground changes it (one started with `&` has no Ctrl-C to
//! echo), and `SIGTTOU` is blocked around each change: a process group that changes a terminal
//! it does not own is otherwise stopped by the kernel, as one put in the background with Ctrl-Z
//! and `bg` would be when it puts the setting back.

#[cfg(unix)]
use std::sync::{Mutex, PoisonError};

/// The terminal's settings from before `ECHOCTL` was switched off, while it is: one terminal
/// and one run a process, and the Ctrl-C handler's thread must reach it too.
#[cfg(unix)]
static SAVED: Mutex<Option<libc::termios>> = Mutex::new(None);

/// `ECHOCTL` switched off on stderr's terminal, until [`QuietCtrlC::restore`] or drop.
pub(crate) struct QuietCtrlC(());

impl QuietCtrlC {
    /// Switches the echo off if stderr is a terminal that has it on; does nothing otherwise.
    pub(crate) fn new() -> QuietCtrlC {
        #[cfg(unix)]
        silence();
        QuietCtrlC(())
    }

    /// Switches the echo off again if something (a shell, after Ctrl-Z and `fg`) turned it back
    /// on while the bars draw.
    pub(crate) fn keep(&self) {
        #[cfg(unix)]
        silence();
    }

    /// Puts the terminal's setting back (once).
    pub(crate) fn restore(&mut self) {
        restore();
    }
}

impl Drop for QuietCtrlC {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts stderr's terminal setting back if fetchpar changed it: for the exit of a second Ctrl-C,
/// which leaves without clearing the bars.
pub(crate) fn restore() {
    #[cfg(unix)]
    {
        let saved = SAVED.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(saved) = saved {
            // Nothing to do if the terminal is gone: there is no echo left to fix.
            set(&saved);
        }
    }
}

/// Switches `ECHOCTL` off if stderr is a terminal whose foreground this process is in and has
/// it on, keeping the first settings seen for [`restore`].
#[cfg(unix)]
fn silence() {
    // SAFETY: plain queries of our own process and descriptor; tcgetattr only writes into the
    // termios we own, and a failure (not a terminal) leaves it unused.
    let mut now: libc::termios = unsafe { std::mem::zeroed() };
    let foreground = unsafe { libc::tcgetpgrp(libc::STDERR_FILENO) == libc::getpgrp() };
    if !foreground || unsafe { libc::tcgetattr(libc::STDERR_FILENO, &mut now) } != 0 {
        return;
    }
    if now.c_lflag & libc::ECHOCTL == 0 {
        return;
    }
    let mut saved = SAVED.lock().unwrap_or_else(PoisonError::into_inner);
    let mut quiet = now;
    quiet.c_lflag &= !libc::ECHOCTL;
    if set(&quiet) && saved.is_none() {
        *saved = Some(now);
    }
}

/// Applies `termios` to stderr's terminal with `SIGTTOU` blocked on this thread (see the module
/// docs); whether it took.
#[cfg(unix)]
fn set(termios: &libc::termios) -> bool {
    // SAFETY: the signal sets are ours and initialised by sigemptyset before use; the mask is
    // put back as it was; `termios` is a valid termios read by tcgetattr.
    unsafe {
        let mut block: libc::sigset_t = std::mem::zeroed();
        let mut before: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut block);
        libc::sigaddset(&mut block, libc::SIGTTOU);
        libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut before);
        let rc = libc::tcsetattr(libc::STDERR_FILENO, libc::TCSANOW, termios);
        libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut());
        rc == 0
    }
}
