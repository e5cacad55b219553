//! `--timeline FILE.html`: a page with one row per download, checked in a real browser.
//!
//! The browser is Debian's `chromium`, headless (`.ci/run` installs it; as root it needs
//! `--no-sandbox`). Without it the page's structure is still checked and the browser part is
//! skipped, saying so. The screenshot is kept in `target/timeline/` for a person to look at.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::*;

/// A real run of five files, one of which fails, drawn into a timeline.
fn timeline_of_a_run() -> (PathBuf, tempfile::TempDir) {
    let (server, expected) = file_server(4, 2000, 60_000, Duration::from_millis(30));
    let mut urls = urls_of(&server, &expected);
    urls.push(server.url("/missing.bin"));
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("run.html");
    let (code, _, stderr) = run(fetchpar()
        .args(["-j", "2", "--timeline"])
        .arg(&page)
        .arg("-o")
        .arg(dir.path().join("out"))
        .args(&urls));
    assert_eq!(code, 1, "one 404: {stderr:#?}");
    (page, dir)
}

fn rows_in(html: &str) -> usize {
    html.matches("<g class=\"row").count()
}

#[test]
fn the_page_has_one_row_per_download_and_fetches_nothing() {
    let (page, _dir) = timeline_of_a_run();
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(rows_in(&html), 5);
    assert_eq!(html.matches("<g class=\"row failed\"").count(), 1);
    assert!(html.contains("missing.bin"));
    for fetches in ["<script", "<link", "src=", "url(", "@import"] {
        assert!(!html.contains(fetches), "{fetches}");
    }
}

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn headless(chromium: &Path, profile: &Path) -> Command {
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

#[test]
fn chromium_renders_it_without_console_errors() {
    let Some(chromium) = chromium() else {
        eprintln!("skipped: no chromium (apt-get install -y chromium)");
        return;
    };
    let (page, dir) = timeline_of_a_run();
    let url = format!("file://{}", page.display());
    let profile = dir.path().join("profile");
    let dom = headless(&chromium, &profile)
        .args(["--dump-dom", &url])
        .output()
        .unwrap();
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let html = String::from_utf8_lossy(&dom.stdout);
    assert_eq!(rows_in(&html), 5, "rows in the DOM Chromium built");
    // Chromium logs each console message as a CONSOLE line; a page with nothing to fetch and no
    // script has none, and a blocked fetch (the page's CSP) would show up here.
    let log = String::from_utf8_lossy(&dom.stderr);
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "{console:#?}");

    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("timeline");
    std::fs::create_dir_all(&kept).unwrap();
    let shot = kept.join("screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let out = headless(&chromium, &profile)
        .arg(format!("--screenshot={}", shot.display()))
        .args(["--window-size=1300,900", &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
    std::fs::copy(&page, kept.join("timeline.html")).unwrap();
    eprintln!("screenshot kept: {}", shot.display());
}

#[test]
fn a_retried_download_shows_each_attempt_in_its_row() {
    let server = first_then(Reply::status(503), Reply::file(body(3000, 4)));
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("run.html");
    let (code, _, stderr) = run(fetchpar()
        .args(["--max-retry-wait", "0.02", "--timeline"])
        .arg(&page)
        .arg("-o")
        .arg(dir.path().join("out"))
        .arg(server.url("/flaky.bin")));
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(server.requests().len(), 2);
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(rows_in(&html), 1);
    // The row: from its group to the size written after its bar.
    let start = html.find("<g class=\"row").unwrap();
    let row = &html[start..];
    let row = &row[..row.find("<text class=\"size\"").unwrap()];
    assert!(row.contains("flaky.bin"), "{row}");
    assert_eq!(row.matches("<g class=\"attempt").count(), 2, "{row}");
    assert_eq!(
        row.matches("<g class=\"attempt failed\"").count(),
        1,
        "{row}"
    );
    assert!(row.contains("attempt 1 of 2: HTTP 503"), "{row}");
}
