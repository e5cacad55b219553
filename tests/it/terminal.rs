//! What a person sees on a terminal: the binary runs with stdout and stderr both on one
//! pseudo-terminal, everything it writes goes through a terminal emulator (`vt100`), and the
//! tests read the final screen and its scrollback the way a person scrolling up would.
//!
//! The server drips the bodies out slowly so the bars really draw and redraw while paths and
//! failure lines are printed; nothing here depends on how fast that happens.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{body, command, serve, sha256, Fault, Reply, Sandbox};

/// Fewer rows than the run prints, so that paths scroll into the scrollback under live bars.
const ROWS: u16 = 10;
const COLS: u16 = 100;

/// What a finished run left on the terminal.
struct Terminal {
    code: i32,
    /// Every line, scrollback first then the screen, without trailing blanks.
    lines: Vec<String>,
    /// Every row the screen showed while the run went on (sampled as the output was fed in).
    seen: BTreeSet<String>,
}

impl Terminal {
    fn ever_showed(&self, what: impl Fn(&str) -> bool) -> bool {
        self.seen.iter().any(|row| what(row))
    }
}

/// Runs `cmd` with stdin from /dev/null and stdout and stderr on one pseudo-terminal of
/// `ROWS` × `COLS`, until it ends; returns its exit code and what the terminal shows.
fn on_terminal(cmd: Command) -> Terminal {
    run_on_terminal(cmd, false)
}

/// As [`on_terminal`], with the pseudo-terminal as the command's controlling terminal, and
/// Ctrl-C typed on it once the bars are drawing: the terminal driver echoes `^C` and sends
/// SIGINT, as for a person at the keyboard.
fn on_terminal_with_ctrl_c(cmd: Command) -> Terminal {
    run_on_terminal(cmd, true)
}

fn run_on_terminal(mut cmd: Command, ctrl_c: bool) -> Terminal {
    let size = nix::pty::Winsize {
        ws_row: ROWS,
        ws_col: COLS,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(&size, None).unwrap();
    let stdout: OwnedFd = pty.slave.try_clone().unwrap();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(pty.slave))
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR");
    if ctrl_c {
        // SAFETY: only async-signal-safe calls between fork and exec. A new session whose
        // controlling terminal is the pty (stdout): its foreground group gets the SIGINT.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(1, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().unwrap();
    // The command holds our copies of the terminal's slave end: without dropping it the reader
    // below would never see the end of the output.
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    let mut keyboard = master.try_clone().unwrap();
    let output = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let output = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            // Linux reports EIO on the master once the last slave is closed: that is the end.
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                output.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let mut typed = !ctrl_c;
    // A hang guard, not a timing check.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if !typed && bars_drawn(&output.lock().unwrap()) {
            keyboard.write_all(&[0x03]).unwrap();
            typed = true;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("fetchpar did not finish on the terminal: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    reader.join().unwrap();
    assert!(typed, "the run ended before its bars were drawn");
    let bytes = std::mem::take(&mut *output.lock().unwrap());
    let (lines, seen) = emulate(&bytes);
    Terminal {
        code: status.code().unwrap_or(-1),
        lines,
        seen,
    }
}

/// Whether the output so far has drawn a file's bar under the overall one (with its size, so
/// a byte of it has come).
fn bars_drawn(output: &[u8]) -> bool {
    let (_, seen) = emulate(output);
    seen.iter()
        .any(|row| row.starts_with("  out/big-") && row.contains("KiB/"))
}

/// Feeds `bytes` through a terminal emulator and returns every line a person could scroll
/// through at the end (the scrollback, then the screen, trailing blank lines dropped), and every
/// row the screen showed along the way.
fn emulate(bytes: &[u8]) -> (Vec<String>, BTreeSet<String>) {
    let (rows, cols) = (
        std::num::NonZeroU16::new(ROWS).unwrap(),
        std::num::NonZeroU16::new(COLS).unwrap(),
    );
    let mut parser = vt100::Parser::new(rows, cols, 100_000);
    let mut seen = BTreeSet::new();
    // A row drawn in one step and redrawn in the next is whole on the screen after one of them.
    for step in bytes.chunks(256) {
        parser.process(step);
        seen.extend(
            parser
                .screen()
                .rows(0, COLS)
                .map(|r| r.trim_end().to_string()),
        );
    }
    let screen = parser.screen_mut();
    screen.set_scrollback(usize::MAX);
    let history = screen.scrollback();
    let mut lines = Vec::new();
    // At offset `k` the top row shown is history line `history - k`.
    for k in (1..=history).rev() {
        screen.set_scrollback(k);
        lines.extend(screen.rows(0, COLS).next());
    }
    screen.set_scrollback(0);
    lines.extend(screen.rows(0, COLS));
    let lines: Vec<String> = lines.iter().map(|l| l.trim_end().to_string()).collect();
    let end = lines
        .iter()
        .rposition(|l| !l.is_empty())
        .map_or(0, |i| i + 1);
    (lines[..end].to_vec(), seen)
}

/// Files big enough to get a bar, dripped out in pieces; a few small ones; one missing file (404)
/// and one that fails once with 503 and `Retry-After: 3` before it is served (a retry).
struct Site {
    server: crate::util::Server,
    /// Expected checksum by file name, for everything that should be saved.
    expected: BTreeMap<String, String>,
    urls: Vec<String>,
}

const BIG: usize = 6;
const BIG_LEN: usize = 768 * 1024;
const SMALL: usize = 4;

fn site() -> Site {
    let mut files: BTreeMap<String, Arc<[u8]>> = BTreeMap::new();
    for i in 0..BIG {
        files.insert(format!("big-{i}.bin"), body(BIG_LEN + i * 4096, i as u8));
    }
    for i in 0..SMALL {
        files.insert(format!("small-{i}.txt"), body(1000 + i, 100 + i as u8));
    }
    files.insert("flaky.bin".into(), body(BIG_LEN, 200));
    let expected = files
        .iter()
        .map(|(name, bytes)| (name.clone(), sha256(bytes)))
        .collect();
    let flaky_hits = AtomicUsize::new(0);
    let served = files.clone();
    let server = serve(move |req| {
        let name = req.path().trim_start_matches('/');
        if name == "flaky.bin" && flaky_hits.fetch_add(1, Ordering::SeqCst) == 0 {
            return Reply::status(503).with_header("Retry-After", "3");
        }
        match served.get(name) {
            // 32 KiB every 15 ms: about half a second per big file, many redraws.
            Some(bytes) => Reply::file(bytes.clone())
                .with_fault(Fault::Drip(32 * 1024, Duration::from_millis(15))),
            None => Reply::status(404),
        }
    });
    let mut names: Vec<&str> = files.keys().map(String::as_str).collect();
    names.insert(3, "missing.bin");
    let urls = names
        .iter()
        .map(|name| server.url(&format!("/{name}")))
        .collect();
    Site {
        server,
        expected,
        urls,
    }
}

#[test]
fn paths_failures_and_summary_survive_the_bars() {
    let site = site();
    let sandbox = Sandbox::new();
    let mut cmd = command();
    cmd.current_dir(sandbox.root())
        .args(["-j", "2", "-o", "out"])
        .args(&site.urls);
    let term = on_terminal(cmd);
    let shown = term.lines.join("\n");

    assert_eq!(term.code, 1, "one URL is missing:\n{shown}");
    assert_eq!(sandbox.files(), site.expected, "{shown}");
    for name in site.expected.keys() {
        let path = format!("out/{name}");
        let times = term.lines.iter().filter(|l| **l == path).count();
        assert_eq!(times, 1, "{path} shown {times} times:\n{shown}");
    }
    let missing = site.server.url("/missing.bin");
    let failures = term
        .lines
        .iter()
        .filter(|l| l.starts_with("fetchpar: ") && l.contains(&missing))
        .count();
    assert_eq!(failures, 1, "the 404 is reported once:\n{shown}");
    // The summary is the last thing on the screen, whole.
    let summary = term
        .lines
        .iter()
        .position(|l| l.starts_with(&format!("{} files saved", site.expected.len())))
        .unwrap_or_else(|| panic!("no summary:\n{shown}"));
    assert!(
        term.lines[summary..].iter().any(|l| l.contains(&missing)),
        "the summary lists the failure:\n{shown}"
    );
    // Every line above the summary is a path or a failure: no bar frame stayed behind.
    for line in &term.lines[..summary] {
        let known = line.starts_with("out/") || line.starts_with("fetchpar: ");
        assert!(known, "left on the terminal: {line:?}\n{shown}");
    }
    for line in &term.lines[summary..] {
        assert!(
            !is_bar(line),
            "a bar left below the summary: {line:?}\n{shown}"
        );
    }

    // While it ran: big files had bars, small ones none, and the retry was a state of its bar.
    assert!(term.ever_showed(|row| row.starts_with("  out/big-")));
    assert!(!term.ever_showed(|row| row.starts_with("  out/small-")));
    // The server's 3 s, counting down; a loaded machine may draw the first frame a second late,
    // but never shows the backoff's 1 s alone (no Retry-After would mean at most 1 s).
    let flaky = site.server.url("/flaky.bin");
    let retrying = |left: &str| format!("  {flaky}  retrying in {left} (HTTP 503");
    assert!(
        term.ever_showed(
            |row| row.starts_with(&retrying("3 s")) || row.starts_with(&retrying("2 s"))
        ),
        "{:#?}",
        term.seen
    );
}

/// The overall bar (`[===>   ] 3/12 files …`) or a file's bar (`  out/big-1.bin …`).
fn is_bar(line: &str) -> bool {
    line.starts_with('[') || line.starts_with("  out/")
}

#[test]
fn ctrl_c_on_the_terminal_leaves_no_bar_behind() {
    let site = site();
    let sandbox = Sandbox::new();
    let mut cmd = command();
    cmd.current_dir(sandbox.root())
        .args(["-j", "3", "--limit-rate", "200K", "-o", "out"])
        .args(&site.urls);
    let term = on_terminal_with_ctrl_c(cmd);
    let shown = term.lines.join("\n");

    assert_eq!(term.code, 130, "interrupted:\n{shown}");
    assert!(
        term.lines
            .iter()
            .any(|l| l.contains("interrupted; partial data kept in out/big-")),
        "a partial file is reported:\n{shown}"
    );
    assert!(
        term.lines.iter().any(|l| l.starts_with("interrupted: ")),
        "the summary says it was interrupted:\n{shown}"
    );
    for line in &term.lines {
        assert!(!is_bar(line), "left on the terminal: {line:?}\n{shown}");
    }
}
