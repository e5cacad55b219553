//! The terminal's echo of Ctrl-C, kept off the bars while they draw.
//!
//! indicatif pads every bar line to the terminal's width, leaving the cursor past the last
//! column. At Ctrl-C the terminal driver echoes `^C` there; it wraps onto a new line, indicatif's
//! final clear then starts one line too low, and the top bar stays on the screen above the
//! summary. With `ECHOCTL` off the driver echoes the control character itself, which terminals
//! do not print, so the cursor stays where indicatif left it. The setting is put back when the
//! bars go (and on drop, should the run unwind); a process killed outright leaves only `^C`
//! unshown.
//!
//! Only a run in the terminal's foreground changes it (one started with `&` has no Ctrl-C to
//! echo), and `SIGTTOU` is blocked around each change: a process group that changes a terminal
//! it does not own is otherwise stopped by the kernel, as one put in the background with Ctrl-Z
//! and `bg` would be when it puts the setting back.

/// `ECHOCTL` switched off on stderr's terminal, until [`QuietCtrlC::restore`] or drop.
pub(crate) struct QuietCtrlC {
    #[cfg(unix)]
    saved: Option<libc::termios>,
}

impl QuietCtrlC {
    /// Switches the echo off if stderr is a terminal that has it on; does nothing otherwise.
    pub(crate) fn new() -> QuietCtrlC {
        #[cfg(unix)]
        {
            QuietCtrlC { saved: silence() }
        }
        #[cfg(not(unix))]
        {
            QuietCtrlC {}
        }
    }

    /// Puts the terminal's setting back (once).
    pub(crate) fn restore(&mut self) {
        #[cfg(unix)]
        if let Some(saved) = self.saved.take() {
            // Nothing to do if the terminal is gone: there is no echo left to fix.
            set(&saved);
        }
    }
}

impl Drop for QuietCtrlC {
    fn drop(&mut self) {
        self.restore();
    }
}

/// The terminal's settings before `ECHOCTL` was cleared, or `None` if nothing was changed.
#[cfg(unix)]
fn silence() -> Option<libc::termios> {
    // SAFETY: plain queries of our own process and descriptor; tcgetattr only writes into the
    // termios we own, and a failure (not a terminal) leaves it unused.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    let foreground = unsafe { libc::tcgetpgrp(libc::STDERR_FILENO) == libc::getpgrp() };
    if !foreground || unsafe { libc::tcgetattr(libc::STDERR_FILENO, &mut saved) } != 0 {
        return None;
    }
    if saved.c_lflag & libc::ECHOCTL == 0 {
        return None;
    }
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHOCTL;
    set(&quiet).then_some(saved)
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
