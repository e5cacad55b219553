//! Reliability against a misbehaving network, hostile servers and hostile names: one test per
//! fault, each checking the exit status, the error line, the bytes on disk, and that nothing was
//! written outside the output directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::*;

/// Keeps every retry wait tiny: the tests check what is retried, not how long we wait.
const FAST: [&str; 2] = ["--max-retry-wait", "0.02"];

/// The stderr line reporting a failure of `url`.
fn error_line<'a>(stderr: &'a [String], url: &str) -> &'a str {
    let prefix = format!("fetchpar: {url}: ");
    stderr
        .iter()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no error line for {url} in {stderr:#?}"))
}

fn count(server: &Server, path: &str) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.path() == path)
        .count()
}

/// A server that answers `fault` to the first `k` requests, then serves `data` properly.
fn flaky(
    k: usize,
    data: Arc<[u8]>,
    fault: impl Fn(Arc<[u8]>) -> Reply + Send + Sync + 'static,
) -> Server {
    let seen = AtomicUsize::new(0);
    serve(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) < k {
            fault(data.clone())
        } else {
            Reply::file(data.clone()).with_header("ETag", "\"v1\"")
        }
    })
}

#[test]
fn status_503_and_429_with_retry_after_are_retried_until_success() {
    let data = body(50_000, 1);
    // Retry-After in seconds, then as an HTTP date: both far above --max-retry-wait, which caps them.
    let seen = AtomicUsize::new(0);
    let served = data.clone();
    let server = serve(move |_| match seen.fetch_add(1, Ordering::SeqCst) {
        0 => Reply::status(503).with_header("Retry-After", "120"),
        1 => Reply::status(429).with_header("Retry-After", "Fri, 31 Dec 2100 23:59:59 GMT"),
        _ => Reply::file(served.clone()),
    });
    let sandbox = Sandbox::new();
    let url = server.url("/data.bin");
    let (code, stdout, stderr) = sandbox.run(&[&url, FAST[0], FAST[1]]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(sandbox.files(), one(&[("data.bin", &data)]));
    assert_eq!(count(&server, "/data.bin"), 3);
    assert_eq!(stdout.len(), 1);
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("saved") && l.contains("after 2 retries")),
        "{stderr:#?}"
    );
}

#[test]
fn retries_give_up_with_the_count_in_the_error_line() {
    let server = serve(|_| Reply::status(503));
    let sandbox = Sandbox::new();
    let url = server.url("/busy.bin");
    let (code, stdout, stderr) = sandbox.run(&[&url, "--retries", "2", FAST[0], FAST[1]]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert_eq!(
        error_line(&stderr, &url),
        format!("fetchpar: {url}: HTTP 503 Service Unavailable (after 2 retries); nothing saved")
    );
    assert_eq!(count(&server, "/busy.bin"), 3);
    assert!(sandbox.files().is_empty());
}

#[test]
fn not_found_and_forbidden_fail_at_once() {
    let server = serve(|req| match req.path() {
        "/gone" => Reply::status(404),
        _ => Reply::status(403),
    });
    let sandbox = Sandbox::new();
    let (gone, secret) = (server.url("/gone"), server.url("/secret"));
    let (code, _, stderr) = sandbox.run(&[&gone, &secret, FAST[0], FAST[1]]);
    assert_eq!(code, 1);
    assert_eq!(
        error_line(&stderr, &gone),
        format!("fetchpar: {gone}: HTTP 404 Not Found; nothing saved")
    );
    assert_eq!(
        error_line(&stderr, &secret),
        format!("fetchpar: {secret}: HTTP 403 Forbidden; nothing saved")
    );
    assert_eq!(count(&server, "/gone"), 1);
    assert_eq!(count(&server, "/secret"), 1);
    assert!(sandbox.files().is_empty());
}

#[test]
fn connection_refused_is_retried_then_reported_as_the_hosts() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/x.bin");
    let sandbox = Sandbox::new();
    let (code, _, stderr) = sandbox.run(&[&url, "--retries", "1", FAST[0], FAST[1]]);
    assert_eq!(code, 1);
    assert_eq!(
        error_line(&stderr, &url),
        format!(
            "fetchpar: {url}: host unreachable after 2 attempts (connection refused); \
             nothing saved"
        )
    );
    assert!(sandbox.files().is_empty());
}

#[test]
fn reset_mid_body_resumes_with_a_range_request() {
    let data = body(200_000, 2);
    let server = flaky(1, data.clone(), |d| {
        Reply::file(d)
            .with_header("ETag", "\"v1\"")
            .with_fault(Fault::ResetAfter(120_000))
    });
    let sandbox = Sandbox::new();
    let url = server.url("/big.bin");
    let (code, _, stderr) = sandbox.run(&[&url, FAST[0], FAST[1]]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(sandbox.files(), one(&[("big.bin", &data)]));
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].header("range"), None);
    let range = requests[1]
        .header("range")
        .expect("the retry asks for the rest");
    let from: u64 = range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("odd range {range}"));
    assert!(from > 0 && from <= 120_000, "{range}");
    assert_eq!(requests[1].header("if-range"), Some("\"v1\""));
}

#[test]
fn short_body_without_a_validator_starts_over() {
    let data = body(100_000, 3);
    let reply = Reply::file(data.clone());
    let server = first_then(reply.clone().with_fault(Fault::ShortBody(40_000)), reply);
    let sandbox = Sandbox::new();
    let url = server.url("/plain.bin");
    let (code, _, stderr) = sandbox.run(&[&url, FAST[0], FAST[1]]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(sandbox.files(), one(&[("plain.bin", &data)]));
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].header("range"), None, "no validator: no resume");
}

/// After `server` cut the old `doc.bin` short and changed it: the new version is saved, from
/// zero, with the note that says why.
fn saves_the_new_version_with_the_note(server: &Server, new: &[u8]) {
    let sandbox = Sandbox::new();
    let url = server.url("/doc.bin");
    let (code, _, stderr) = sandbox.run(&[&url, FAST[0], FAST[1]]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(sandbox.files(), one(&[("doc.bin", new)]));
    assert_eq!(server.requests()[1].header("if-range"), Some("\"old\""));
    let note = format!(
        "fetchpar: {url}: note: the file changed on the server since the bytes on disk came \
         (another ETag or Last-Modified), so it was downloaded again from zero"
    );
    assert!(stderr.contains(&note), "{stderr:#?}");
}

#[test]
fn a_file_changed_on_the_server_restarts_instead_of_splicing() {
    let (old, new) = (body(100_000, 4), body(100_000, 5));
    let server = first_then(
        Reply::file(old.clone())
            .with_header("ETag", "\"old\"")
            .with_fault(Fault::ShortBody(30_000)),
        Reply::file(new.clone()).with_header("ETag", "\"new\""),
    );
    saves_the_new_version_with_the_note(&server, &new);
}

/// The same, from a server that ignores `If-Range`: its 206 of the new file, with the new
/// `ETag`, is not joined, and the note is the same as after a 200.
#[test]
fn a_file_changed_behind_a_server_ignoring_if_range_restarts_with_the_note() {
    let (old, new) = (body(100_000, 4), body(100_000, 5));
    let seen = AtomicUsize::new(0);
    let served = new.clone();
    let server = serve(move |req| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            return Reply::file(old.clone())
                .with_header("ETag", "\"old\"")
                .with_fault(Fault::ShortBody(30_000));
        }
        let reply = Reply::file(served.clone()).with_header("ETag", "\"new\"");
        match req.header("range").and_then(|r| r.strip_prefix("bytes=")) {
            Some(range) => {
                let from: usize = range.trim_end_matches('-').parse().unwrap();
                let last = served.len() - 1;
                Reply::file(served[from..].to_vec())
                    .without_ranges()
                    .with_status(206)
                    .with_header("ETag", "\"new\"")
                    .with_header(
                        "Content-Range",
                        &format!("bytes {from}-{last}/{}", served.len()),
                    )
            }
            None => reply,
        }
    });
    saves_the_new_version_with_the_note(&server, &new);
}

#[test]
fn a_range_at_the_wrong_offset_is_not_appended() {
    let data = body(80_000, 6);
    let served = data.clone();
    let seen = AtomicUsize::new(0);
    let len = data.len();
    let server = serve(move |req| {
        let first = seen.fetch_add(1, Ordering::SeqCst) == 0;
        let reply = Reply::file(served.clone()).with_header("ETag", "\"v1\"");
        if first {
            reply.with_fault(Fault::ShortBody(20_000))
        } else if req.header("range").is_some() {
            // A broken server: says 206 but sends the file from the start.
            reply
                .without_ranges()
                .with_status(206)
                .with_header("Content-Range", &format!("bytes 0-{}/{len}", len - 1))
        } else {
            reply
        }
    });
    let sandbox = Sandbox::new();
    let url = server.url("/r.bin");
    let (code, _, stderr) = sandbox.run(&[&url, FAST[0], FAST[1]]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(sandbox.files(), one(&[("r.bin", &data)]));
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[2].header("range"), None);
}

/// Leaves `name.part` (and its sidecar) behind: a run whose only attempt is cut off.
fn leave_part(sandbox: &Sandbox, url: &str, name: &str) -> u64 {
    let (code, _, stderr) = sandbox.run(&[url, "--retries", "0"]);
    assert_eq!(code, 1);
    let part = sandbox.out().join(format!("{name}.part"));
    assert!(
        error_line(&stderr, url).ends_with(&format!("; partial data kept in {}", part.display())),
        "{stderr:#?}"
    );
    assert!(sandbox.out().join(format!("{name}.part.meta")).exists());
    std::fs::metadata(&part).unwrap().len()
}

#[test]
fn continue_resumes_a_part_file_from_an_earlier_run() {
    let data = body(150_000, 7);
    let server = flaky(1, data.clone(), |d| {
        Reply::file(d)
            .with_header("ETag", "\"v1\"")
            .with_fault(Fault::ShortBody(60_000))
    });
    let sandbox = Sandbox::new();
    let url = server.url("/movie.bin");
    let have = leave_part(&sandbox, &url, "movie.bin");
    assert!(have > 0 && have <= 60_000);

    let (code, stdout, stderr) = sandbox.run(&["-c", &url]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(
        sandbox.files(),
        one(&[("movie.bin", &data)]),
        "no .part, no .meta left"
    );
    assert_eq!(
        stdout,
        [sandbox.out().join("movie.bin").display().to_string()]
    );
    let resumed = &server.requests()[1];
    assert_eq!(
        resumed.header("range"),
        Some(format!("bytes={have}-").as_str())
    );
    assert_eq!(resumed.header("if-range"), Some("\"v1\""));
}

#[test]
fn continue_starts_over_when_the_server_ignores_ranges() {
    let data = body(90_000, 8);
    let served = data.clone();
    let cut = std::sync::Mutex::new(BTreeSet::new());
    // Each file's first request is cut short; after that the server ignores ranges.
    let server = serve(move |req| {
        let reply = Reply::file(served.clone()).with_header("ETag", "\"v1\"");
        let first = cut.lock().unwrap().insert(req.path().to_string());
        if first {
            reply.with_fault(Fault::ShortBody(30_000))
        } else {
            reply.without_ranges()
        }
    });
    let sandbox = Sandbox::new();
    let urls = [server.url("/norange.bin"), server.url("/norange2.bin")];
    leave_part(&sandbox, &urls[0], "norange.bin");
    leave_part(&sandbox, &urls[1], "norange2.bin");
    let (code, _, stderr) = sandbox.run(&["-c", &urls[0], &urls[1]]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(
        sandbox.files(),
        one(&[("norange.bin", &data), ("norange2.bin", &data)])
    );
    // Both started from zero; the run says so once.
    let said: Vec<_> = stderr.iter().filter(|l| l.contains("from zero")).collect();
    assert_eq!(said.len(), 1, "{stderr:#?}");
    assert!(said[0].contains("does not support ranges"), "{said:?}");
}

/// Writes a part file and the sidecar an earlier run would have left (format 3 since issue 9,
/// whose key, for a URL without credentials or fragment, is the SHA-256 of the URL as before).
fn fake_part(sandbox: &Sandbox, name: &str, url: &str, bytes: &[u8], total: usize) {
    std::fs::create_dir_all(sandbox.out()).unwrap();
    let part = sandbox.out().join(format!("{name}.part"));
    std::fs::write(&part, bytes).unwrap();
    std::fs::write(
        sandbox.out().join(format!("{name}.part.meta")),
        format!(
            "fetchpar-part 3\nurl {url}\nurl-sha256 {}\netag \"v1\"\ntotal {total}\n",
            sha256(url.as_bytes())
        ),
    )
    .unwrap();
}

#[test]
fn continue_with_a_complete_part_checks_the_416_size() {
    let data = body(30_000, 9);
    let served = data.clone();
    let server = serve(move |_| Reply::file(served.clone()).with_header("ETag", "\"v1\""));
    let sandbox = Sandbox::new();
    // All the bytes arrived but the earlier run stopped before renaming.
    let done = server.url("/done.bin");
    fake_part(&sandbox, "done.bin", &done, &data, data.len());
    // A part longer than the file: 416 with another size, so it starts over.
    let long = server.url("/long.bin");
    let mut junk = data.to_vec();
    junk.extend_from_slice(b"extra bytes from somewhere else");
    fake_part(&sandbox, "long.bin", &long, &junk, junk.len());
    let (code, _, stderr) = sandbox.run(&["-c", &done, &long, FAST[0], FAST[1]]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(
        sandbox.files(),
        one(&[("done.bin", &data), ("long.bin", &data)])
    );
    assert_eq!(count(&server, "/done.bin"), 1, "one 416, no download");
}

#[test]
fn continue_leaves_other_urls_part_files_alone() {
    let data = body(20_000, 10);
    let served = data.clone();
    let server = serve(move |_| Reply::file(served.clone()).with_header("ETag", "\"v1\""));
    let sandbox = Sandbox::new();
    let url = server.url("/a/same.bin");
    fake_part(
        &sandbox,
        "same.bin",
        &server.url("/b/same.bin"),
        b"not ours",
        20_000,
    );
    let (code, _, stderr) = sandbox.run(&["-c", &url]);
    assert_eq!(code, 0, "{stderr:#?}");
    let files = sandbox.files();
    assert_eq!(files.get("same~1.bin"), Some(&sha256(&data)));
    assert_eq!(files.get("same.bin.part"), Some(&sha256(b"not ours")));
    assert!(server.requests()[0].header("range").is_none());
}

#[test]
fn continue_skips_files_already_complete() {
    let (server, expected) = file_server(3, 1000, 5000, Duration::ZERO);
    let urls = urls_of(&server, &expected);
    let args: Vec<&str> = urls.iter().map(String::as_str).collect();
    let sandbox = Sandbox::new();
    assert_eq!(sandbox.run(&args).0, 0);
    let before = server.requests().len();

    let mut again = vec!["-c"];
    again.extend(&args);
    let (code, stdout, stderr) = sandbox.run(&again);
    assert_eq!(code, 0, "{stderr:#?}");
    // Each file was only asked for the bytes after its end, and the server said there are none.
    let probes = &server.requests()[before..];
    assert_eq!(
        probes.len(),
        3,
        "one probe per file, nothing downloaded again"
    );
    for probe in probes {
        let len = std::fs::metadata(sandbox.out().join(probe.path().trim_start_matches('/')))
            .unwrap()
            .len();
        assert_eq!(
            probe.header("range"),
            Some(format!("bytes={len}-").as_str())
        );
    }
    assert_eq!(sandbox.files(), expected);
    assert_eq!(stdout.len(), 3, "skipped files are still listed");
    assert_eq!(
        stderr
            .iter()
            .filter(|l| l.contains("skipped") && l.contains("already complete"))
            .count(),
        3,
        "{stderr:#?}"
    );
    assert!(
        stderr
            .iter()
            .any(|l| l.starts_with("0 files saved, 3 already complete")),
        "{stderr:#?}"
    );
}

/// Sends SIGINT, as Ctrl-C does, and waits for the process to end. The 20 s guard is a hang
/// guard, not a timing check: every run interrupted here would otherwise sit out a 60 s wait.
fn interrupt(child: std::process::Child) -> std::process::Output {
    sigint(child.id());
    finish_within(child, Duration::from_secs(20))
}

#[test]
fn ctrl_c_is_not_held_back_by_a_retry_wait() {
    let server = serve(|_| Reply::status(503).with_header("Retry-After", "60"));
    let sandbox = Sandbox::new();
    let url = server.url("/later.bin");
    let child = sandbox.spawn(&[&url, "--max-retry-wait", "60"]);
    let give_up = Instant::now() + Duration::from_secs(30);
    while server.requests().is_empty() {
        assert!(Instant::now() < give_up, "the download never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = interrupt(child);
    assert_eq!(output.status.code(), Some(130));
    // The worker itself stopped (it did not have to be abandoned), so it reported its URL.
    let stderr = lines(&output.stderr);
    assert_eq!(
        error_line(&stderr, &url),
        format!("fetchpar: {url}: interrupted; nothing saved")
    );
    assert_eq!(server.requests().len(), 1);
    assert!(sandbox.files().is_empty());
}

#[test]
fn ctrl_c_stops_a_blocked_download_keeps_parts_and_continue_finishes_them() {
    let stall = Arc::new(AtomicBool::new(true));
    let files: Vec<(String, Arc<[u8]>)> = (0..3)
        .map(|i| (format!("/f{i}.bin"), body(100_000 + i * 1000, 20 + i as u8)))
        .collect();
    let served = files.clone();
    let stalling = stall.clone();
    let server = serve(move |req| {
        let Some((_, data)) = served.iter().find(|(p, _)| p == req.path()) else {
            return Reply::status(404);
        };
        let reply = Reply::file(data.clone()).with_header("ETag", "\"v1\"");
        if stalling.load(Ordering::SeqCst) {
            reply.with_fault(Fault::StallAfter(40_000, Duration::from_secs(60)))
        } else {
            reply
        }
    });
    let sandbox = Sandbox::new();
    let urls: Vec<String> = files.iter().map(|(p, _)| server.url(p)).collect();
    // A long --timeout: only the Ctrl-C grace period can end this run early.
    let mut args = vec!["--timeout", "60", "-j", "4"];
    args.extend(urls.iter().map(String::as_str));
    let child = sandbox.spawn(&args);
    let parts: Vec<PathBuf> = files
        .iter()
        .map(|(p, _)| {
            sandbox
                .out()
                .join(format!("{}.part", p.trim_start_matches('/')))
        })
        .collect();
    let give_up = Instant::now() + Duration::from_secs(30);
    while !parts
        .iter()
        .all(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
    {
        assert!(Instant::now() < give_up, "downloads never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = interrupt(child);
    assert_eq!(output.status.code(), Some(130));
    let stderr = lines(&output.stderr);
    assert!(
        stderr
            .iter()
            .any(|l| l == "interrupted: 3 partial downloads kept as .part (resume with -c)"),
        "{stderr:#?}"
    );
    for part in &parts {
        assert!(part.exists(), "{} kept", part.display());
    }
    sandbox.assert_nothing_outside();

    stall.store(false, Ordering::SeqCst);
    let mut args = vec!["-c".to_string()];
    args.extend(urls.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, stderr) = sandbox.run(&args);
    assert_eq!(code, 0, "{stderr:#?}");
    let expected: BTreeMap<String, String> = files
        .iter()
        .map(|(p, d)| (p.trim_start_matches('/').to_string(), sha256(d)))
        .collect();
    assert_eq!(sandbox.files(), expected);
    let resumed = server
        .requests()
        .iter()
        .filter(|r| r.header("range").is_some())
        .count();
    assert_eq!(resumed, 3, "every file resumed from its part");
}

/// An `--overwrite` run of `f.bin` over an older file, interrupted: the old file is still under
/// the name, the new one's first 40 000 bytes in its part. The server stops stalling once the
/// flag is cleared.
fn an_interrupted_overwrite() -> (Server, Arc<AtomicBool>, Sandbox, Arc<[u8]>) {
    let data = body(100_000, 7);
    let stall = Fault::StallAfter(40_000, Duration::from_secs(60));
    let (server, stall) = serve_faulty_at_first(data.clone(), "\"v2\"", stall);
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.out()).unwrap();
    std::fs::write(sandbox.out().join("f.bin"), b"the old version").unwrap();
    let child = sandbox.spawn(&["--overwrite", "--timeout", "60", &server.url("/f.bin")]);
    wait_for_len(&sandbox.out().join("f.bin.part"), 40_000);
    let output = interrupt(child);
    assert_eq!(output.status.code(), Some(130));
    let stderr = lines(&output.stderr);
    assert!(
        stderr
            .iter()
            .any(|l| l
                == "interrupted: 1 partial download kept as .part (resume with -c --overwrite)"),
        "{stderr:#?}"
    );
    stall.store(false, Ordering::SeqCst);
    (server, stall, sandbox, data)
}

/// What the interrupted run's summary says to do: `-c --overwrite` resumes the part and
/// replaces the old file with it.
#[test]
fn continue_overwrite_resumes_an_interrupted_overwrite_and_replaces() {
    let (server, _stall, sandbox, data) = an_interrupted_overwrite();
    let (code, _, stderr) = sandbox.run(&["-c", "--overwrite", &server.url("/f.bin")]);
    assert_eq!(code, 0, "{stderr:#?}");
    let files = sandbox.files();
    assert_eq!(files.get("f.bin"), Some(&sha256(&data)));
    assert_eq!(files.len(), 1, "{files:?}");
    let ranges: Vec<String> = server
        .requests()
        .iter()
        .filter_map(|r| r.header("range").map(str::to_string))
        .collect();
    assert_eq!(ranges, ["bytes=40000-"], "resumed from the part");
}

/// `-c --overwrite` takes up its part without the namer's look at the name, yet replaces only a
/// regular file: a link (to a file outside the folder) or a folder put under the name since the
/// interrupted run stays as it is, and the download goes beside it.
#[test]
fn continue_overwrite_never_replaces_a_link_or_a_folder() {
    for what in ["link", "folder"] {
        let (server, _stall, sandbox, data) = an_interrupted_overwrite();
        let name = sandbox.out().join("f.bin");
        let elsewhere = tempfile::tempdir().unwrap();
        let outside = elsewhere.path().join("outside.txt");
        std::fs::write(&outside, b"not fetchpar's").unwrap();
        std::fs::remove_file(&name).unwrap();
        match what {
            "link" => std::os::unix::fs::symlink(&outside, &name).unwrap(),
            _ => std::fs::create_dir(&name).unwrap(),
        }
        let (code, _, stderr) = sandbox.run(&["-c", "--overwrite", &server.url("/f.bin")]);
        assert_eq!(code, 0, "{what}: {stderr:#?}");
        let kept = std::fs::symlink_metadata(&name).unwrap().file_type();
        assert!(kept.is_symlink() || kept.is_dir(), "{what} replaced");
        assert_eq!(std::fs::read(&outside).unwrap(), b"not fetchpar's");
        let saved = std::fs::read(sandbox.out().join("f~1.bin")).unwrap();
        assert_eq!(sha256(&saved), sha256(&data), "{what}");
    }
}

/// `-c --overwrite` with another file under the name and no part: that file is not this one
/// (its length is not the server's), so it is replaced, not kept beside the download; a file
/// that is this one is skipped, as `-c` does.
#[test]
fn continue_overwrite_replaces_a_file_that_is_not_this_one() {
    let data = body(50_000, 9);
    let served = data.clone();
    let server = serve(move |_| Reply::file(served.clone()).with_header("ETag", "\"e\""));
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.out()).unwrap();
    std::fs::write(sandbox.out().join("g.bin"), b"something else").unwrap();
    let url = server.url("/g.bin");
    let (code, _, stderr) = sandbox.run(&["-c", "--overwrite", &url]);
    assert_eq!(code, 0, "{stderr:#?}");
    let files = sandbox.files();
    assert_eq!(files.get("g.bin"), Some(&sha256(&data)));
    assert_eq!(files.len(), 1, "{files:?}");
    let (code, _, stderr) = sandbox.run(&["-c", "--overwrite", &url]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert!(
        stderr.iter().any(|l| l.contains("already complete")),
        "{stderr:#?}"
    );
    assert_eq!(sandbox.files(), files);
}

/// Plain `-c` takes up the part but replaces nothing: the new file goes beside the old one,
/// with a note that says so, not that the old one "appeared while this download ran".
#[test]
fn continue_after_an_interrupted_overwrite_saves_beside_and_says_why() {
    let (server, _stall, sandbox, data) = an_interrupted_overwrite();
    let url = server.url("/f.bin");
    let (code, _, stderr) = sandbox.run(&["-c", &url]);
    assert_eq!(code, 0, "{stderr:#?}");
    let files = sandbox.files();
    assert_eq!(files.get("f.bin"), Some(&sha256(b"the old version")));
    assert_eq!(files.get("f~1.bin"), Some(&sha256(&data)));
    assert_eq!(files.len(), 2, "{files:?}");
    let note = format!(
        "fetchpar: {url}: note: {} was already there beside its .part (an interrupted \
         --overwrite run leaves both): the download was saved beside it as {}, the file under the \
         name left as it was; move the new one over it to replace it",
        sandbox.out().join("f.bin").display(),
        sandbox.out().join("f~1.bin").display()
    );
    assert!(stderr.contains(&note), "{stderr:#?}");
    assert!(
        !stderr.iter().any(|l| l.contains("appeared")),
        "{stderr:#?}"
    );
}

#[test]
fn a_write_error_is_one_line_and_removes_the_part() {
    let big = body(200_000, 30);
    let small = body(1000, 31);
    let (b, s) = (big.clone(), small.clone());
    let server = serve(move |req| match req.path() {
        "/big.bin" => Reply::file(b.clone()),
        _ => Reply::file(s.clone()),
    });
    let sandbox = Sandbox::new();
    let (big_url, small_url) = (server.url("/big.bin"), server.url("/small.bin"));
    // 64 blocks is 32 or 64 KiB depending on the shell: far below the big file either way.
    let script = format!(
        "ulimit -f 64 && exec '{}' -j 1 -o '{}' '{}' '{}'",
        env!("CARGO_BIN_EXE_fetchpar"),
        sandbox.out().display(),
        small_url,
        big_url
    );
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(sandbox.root())
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .unwrap();
    sandbox.assert_nothing_outside();
    let stderr = lines(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr:#?}");
    let line = error_line(&stderr, &big_url);
    let part = sandbox.out().join("big.bin.part");
    assert!(
        line.starts_with(&format!(
            "fetchpar: {big_url}: cannot write {}: ",
            part.display()
        )) && line.ends_with("; nothing saved"),
        "{line}"
    );
    assert!(
        !stderr.iter().any(|l| l.contains("panicked")),
        "{stderr:#?}"
    );
    assert_eq!(sandbox.files(), one(&[("small.bin", &small)]));
    assert_eq!(
        count(&server, "/big.bin"),
        1,
        "a local fault is not retried"
    );
}

#[test]
fn max_filesize_refuses_by_content_length_and_by_counting() {
    let data = body(100_000, 40);
    let served = data.clone();
    let server = serve(move |req| match req.path() {
        "/sized.bin" => Reply::file(served.clone()),
        "/endless.bin" => Reply::file(served.clone()).with_fault(Fault::UntilClose),
        _ => Reply::file(served[..1000].to_vec()),
    });
    let sandbox = Sandbox::new();
    let (sized, endless, ok) = (
        server.url("/sized.bin"),
        server.url("/endless.bin"),
        server.url("/ok.bin"),
    );
    let (code, _, stderr) = sandbox.run(&[&sized, &endless, &ok, "--max-filesize", "50K"]);
    assert_eq!(code, 1);
    assert_eq!(
        error_line(&stderr, &sized),
        format!(
            "fetchpar: {sized}: the file is 100000 bytes, more than --max-filesize 51200 \
             (raise it to download this); nothing saved"
        )
    );
    assert_eq!(
        error_line(&stderr, &endless),
        format!(
            "fetchpar: {endless}: the body grew past --max-filesize 51200 bytes \
             (raise it to download this); nothing saved"
        )
    );
    assert_eq!(sandbox.files(), one(&[("ok.bin", &data[..1000])]));
    assert_eq!(count(&server, "/endless.bin"), 1, "not retried");
}

#[test]
fn content_disposition_names_are_made_safe() {
    let hostile = [
        ("attachment; filename=\"../../x\"", ".._.._x"),
        ("attachment; filename=\"..%2F..%2Fy\"", ".._.._y"),
        ("attachment; filename*=UTF-8''..%2F..%2Fz", ".._.._z"),
        ("attachment; filename=\"/etc/passwd\"", "_etc_passwd"),
        ("attachment; filename=\"C:\\\\w\"", "C:_w"),
        ("attachment; filename*=UTF-8''nul%00name", "nul_name"),
        ("attachment; filename=\"bell%07%1B[31m\"", "bell__[31m"),
        ("attachment; filename=\".\"", "index.html"),
        ("attachment; filename=\"..\"", "index.1.html"),
        (
            "attachment; filename*=UTF-8''%e2%82%ac%20rates.txt",
            "€ rates.txt",
        ),
    ];
    let headers: Vec<String> = hostile.iter().map(|(h, _)| h.to_string()).collect();
    let server = serve(move |req| {
        let i: usize = req.path().trim_start_matches("/dl/").parse().unwrap_or(0);
        Reply::file(body(1000, i as u8)).with_header("Content-Disposition", &headers[i])
    });
    let urls: Vec<String> = (0..hostile.len())
        .map(|i| server.url(&format!("/dl/{i}")))
        .collect();
    let sandbox = Sandbox::new();
    let mut args = vec!["--content-disposition", "-j", "1"];
    args.extend(urls.iter().map(String::as_str));
    let (code, _, stderr) = sandbox.run(&args);
    assert_eq!(code, 0, "{stderr:#?}");
    let expected: BTreeMap<String, String> = hostile
        .iter()
        .enumerate()
        .map(|(i, (_, name))| (name.to_string(), sha256(&body(1000, i as u8))))
        .collect();
    assert_eq!(sandbox.files(), expected);

    // Without the flag, the URL names the file.
    let plain = Sandbox::new();
    let (code, _, _) = plain.run(&[&urls[0]]);
    assert_eq!(code, 0);
    assert_eq!(plain.files(), one(&[("0", &body(1000, 0))]));
}

/// A server cannot plant a part and its sidecar: the files it names `x.part` and `x.part.meta`
/// (by URL, or by Content-Disposition) are saved under other names, so a later `-c` of `x`
/// never takes them for its own download to resume (a reviewer's forged pair had `-c` save
/// the planted bytes ahead of the real server's).
#[test]
fn a_server_cannot_name_its_files_like_a_part_and_its_sidecar() {
    let planted = body(2000, 9);
    let served = planted.clone();
    let server = serve(move |req| match req.path() {
        "/cd" => Reply::file(served.clone()).with_header(
            "Content-Disposition",
            "attachment; filename=\"big.bin.part.meta\"",
        ),
        _ => Reply::file(served.clone()),
    });
    let sandbox = Sandbox::new();
    let (a, b) = (server.url("/big.bin.part"), server.url("/cd"));
    let (code, _, stderr) = sandbox.run(&["--content-disposition", "--progress", "none", &a, &b]);
    assert_eq!(code, 0, "{stderr:#?}");
    let names: Vec<String> = sandbox.files().into_keys().collect();
    assert_eq!(
        names,
        ["big.bin.part.meta_", "big.bin.part_"],
        "{stderr:#?}"
    );
}

#[test]
fn continue_with_content_disposition_keeps_a_name_the_server_agrees_with() {
    // -c reserves the URL's name to look for an earlier part; a server proposing that very
    // name must not be sent to `file.1.bin` by the download's own reservation.
    let data = body(3000, 60);
    let served = data.clone();
    let server = serve(move |_| {
        Reply::file(served.clone())
            .with_header("Content-Disposition", "attachment; filename=\"file.bin\"")
    });
    let sandbox = Sandbox::new();
    let (code, _, stderr) = sandbox.run(&["-c", "--content-disposition", &server.url("/file.bin")]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(sandbox.files(), one(&[("file.bin", &data)]));
}

#[test]
fn redirects_never_choose_the_name_and_fail_cleanly_when_hostile() {
    let data = body(5000, 50);
    let served = data.clone();
    let server = serve(move |req| match req.path() {
        "/start.bin" => Reply::status(302).with_header("Location", "/elsewhere/evil.sh"),
        "/elsewhere/evil.sh" => Reply::file(served.clone()),
        "/loop-a" => Reply::status(302).with_header("Location", "/loop-b"),
        "/loop-b" => Reply::status(302).with_header("Location", "/loop-a"),
        "/to-file" => Reply::status(302).with_header("Location", "file:///etc/passwd"),
        _ => Reply::status(404),
    });
    let sandbox = Sandbox::new();
    let (start, looping, to_file) = (
        server.url("/start.bin"),
        server.url("/loop-a"),
        server.url("/to-file"),
    );
    let (code, _, stderr) = sandbox.run(&[&start, &looping, &to_file, FAST[0], FAST[1]]);
    assert_eq!(code, 1);
    assert_eq!(sandbox.files(), one(&[("start.bin", &data)]));
    assert_eq!(
        error_line(&stderr, &looping),
        format!("fetchpar: {looping}: redirect loop; nothing saved")
    );
    assert_eq!(
        error_line(&stderr, &to_file),
        format!("fetchpar: {to_file}: redirect to unsupported scheme 'file'; nothing saved")
    );
    assert_eq!(
        count(&server, "/loop-a"),
        1,
        "a redirect loop is not retried"
    );
}

#[test]
fn chunked_bodies_are_whole_only_with_their_final_chunk() {
    let data = body(70_000, 60);
    let served = data.clone();
    let server = serve(move |req| match req.path() {
        "/whole.bin" => Reply::file(served.clone()).with_fault(Fault::Chunked(true)),
        _ => Reply::file(served.clone()).with_fault(Fault::Chunked(false)),
    });
    let sandbox = Sandbox::new();
    let (whole, cut) = (server.url("/whole.bin"), server.url("/cut.bin"));
    let (code, _, stderr) = sandbox.run(&[&whole, &cut, "--retries", "1", FAST[0], FAST[1]]);
    assert_eq!(code, 1);
    let line = error_line(&stderr, &cut);
    assert!(
        line.contains("(after 1 retry); partial data kept in"),
        "{line}"
    );
    let files = sandbox.files();
    assert_eq!(files.get("whole.bin"), Some(&sha256(&data)));
    assert!(
        !files.contains_key("cut.bin"),
        "a cut-off body never gets the final name"
    );
    assert!(files.contains_key("cut.bin.part"));
}

#[test]
fn silence_after_the_headers_times_out_and_says_so() {
    let data = body(50_000, 70);
    let served = data.clone();
    let server = serve(move |_| {
        Reply::file(served.clone()).with_fault(Fault::StallAfter(10_000, Duration::from_secs(10)))
    });
    let sandbox = Sandbox::new();
    let url = server.url("/silent.bin");
    let (code, _, stderr) = sandbox.run(&[&url, "--timeout", "0.3", "--retries", "0"]);
    assert_eq!(code, 1);
    let line = error_line(&stderr, &url);
    let part = sandbox.out().join("silent.bin.part");
    assert_eq!(
        line,
        format!(
            "fetchpar: {url}: timed out: no data for 0.30 s after 10000 of 50000 bytes; \
             partial data kept in {} (no validator: -c will start it over)",
            part.display()
        )
    );
    assert!(!sandbox.out().join("silent.bin").exists());
}

#[test]
fn a_slow_steady_trickle_is_not_cut_off() {
    let data = body(48 * 64, 80);
    let served = data.clone();
    // 48 pieces, 50 ms apart: the body takes about 2.4 s, well over --timeout 1, while each gap
    // stays 20 times under it, so a busy machine cannot turn a gap into a timeout.
    let server = serve(move |_| {
        Reply::file(served.clone()).with_fault(Fault::Drip(64, Duration::from_millis(50)))
    });
    let sandbox = Sandbox::new();
    let url = server.url("/drip.bin");
    let (code, _, stderr) = sandbox.run(&[&url, "--timeout", "1", "--retries", "0"]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(sandbox.files(), one(&[("drip.bin", &data)]));
}

/// ... numbered in list order, whichever answers first: here the earlier URLs of each batch of
/// 32 answer last.
#[test]
fn two_hundred_urls_named_index_html_give_two_hundred_files() {
    let server = serve(|req| {
        let n: u32 = req
            .path()
            .trim_start_matches("/site/")
            .trim_end_matches('/')
            .parse()
            .unwrap_or(9999);
        let late = Duration::from_millis(u64::from(31 - n % 32) * 4);
        Reply::file(format!("page {n}\n").repeat(50).into_bytes()).with_delay(late)
    });
    let list = (0..200)
        .map(|i| server.url(&format!("/site/{i}/")))
        .collect::<Vec<_>>()
        .join("\n");
    let sandbox = Sandbox::new();
    let (code, _, stderr) = run(sandbox
        .cmd()
        .args(["-j", "32", "-i", "-"])
        .write_stdin(list));
    sandbox.assert_nothing_outside();
    assert_eq!(code, 0, "{stderr:#?}");
    let files = sandbox.files();
    let names: BTreeSet<&str> = files.keys().map(String::as_str).collect();
    let want_names: BTreeSet<String> = (0..200).map(|i| naming_variant("index.html", i)).collect();
    assert_eq!(names, want_names.iter().map(String::as_str).collect());
    for n in 0..200 {
        let page = sha256(format!("page {n}\n").repeat(50).as_bytes());
        assert_eq!(files[&naming_variant("index.html", n)], page, "page {n}");
    }
}

/// ... so that a rerun of the list with `--skip-existing`, `-c`, `-N` or `--checksums` finds
/// each URL's own file, not the first one of the name (all are the same size: only the path tells
/// them apart). A URL whose own name something else holds (here another URL's part) is saved
/// beside it, where a rerun finds it again, and the URLs after it keep their numbers; a URL
/// named like that name beside is given another.
#[test]
fn urls_of_one_name_find_their_own_files_when_run_again() {
    let bodies: Vec<Arc<[u8]>> = (0..9).map(|seed| body(5000, seed)).collect();
    let server = serve({
        let bodies = bodies.clone();
        move |req| {
            let k: usize = req.path()[2..3].parse().unwrap_or(0);
            // The first in the list answers last.
            let late = Duration::from_millis(60 * (8 - k as u64));
            Reply::file(bodies[k].clone()).with_delay(late)
        }
    });
    // The last is named like the name beside the first's: never the same.
    let urls: Vec<String> = (0..9)
        .map(|k| match k {
            8 => server.url("/d8/data~1.bin"),
            k => server.url(&format!("/d{k}/data.bin")),
        })
        .collect();
    let names = (0..9).map(|k| match k {
        0 => "data~1.bin".to_string(),
        3 => "data.3~1.bin".to_string(),
        8 => "data~1_.bin".to_string(),
        k => format!("data.{k}.bin"),
    });
    let names: Vec<String> = names.collect();
    let sandbox = Sandbox::new();
    std::fs::create_dir(sandbox.out()).unwrap();
    for part in ["data.bin.part", "data.3.bin.part"] {
        std::fs::write(sandbox.out().join(part), b"SOMEONE ELSE'S").unwrap();
    }
    let mut want: BTreeMap<String, String> = names
        .iter()
        .zip(&bodies)
        .map(|(name, bytes)| (name.clone(), sha256(bytes)))
        .collect();
    for part in ["data.bin.part", "data.3.bin.part"] {
        want.insert(part.into(), sha256(b"SOMEONE ELSE'S"));
    }
    // Each URL's digest under its own name, as a user would write it.
    let sums = tempfile::tempdir().unwrap();
    let sums = sums.path().join("SUMS");
    let lines: String = (0..8)
        .map(|k| naming_variant("data.bin", k))
        .chain(["data~1_.bin".to_string()])
        .zip(&bodies)
        .map(|(name, bytes)| format!("{}  {name}\n", sha256(bytes)))
        .collect();
    std::fs::write(&sums, lines).unwrap();
    let sums = sums.to_str().unwrap();
    for flags in [
        &[][..],
        &["--skip-existing"],
        &["-c"],
        &["-N"],
        &["-c", "--checksums", sums],
    ] {
        let (code, stdout, stderr) = run(sandbox
            .cmd()
            .args(["-j", "4", "--json", "--progress", "none"])
            .args(flags)
            .args(&urls));
        assert_eq!(code, 0, "{flags:?}: {stderr:#?}");
        assert_eq!(sandbox.files(), want, "{flags:?}");
        let paths: BTreeMap<String, String> = url_records(&stdout)
            .iter()
            .map(|r| (r["url"].to_string(), r["path"].to_string()))
            .collect();
        for (url, name) in urls.iter().zip(&names) {
            let path = &paths[&format!("{url:?}")];
            assert!(
                path.ends_with(&format!("/{name}\"")),
                "{flags:?}: {url} → {path}"
            );
        }
    }
}

/// The name fetchpar gives the `n`th URL that wants `name` (`index.html`, `index.1.html`, …):
/// written out here so the test states the promise instead of asking the library.
fn naming_variant(name: &str, n: usize) -> String {
    match (n, name.rsplit_once('.')) {
        (0, _) => name.to_string(),
        (_, Some((stem, ext))) if !stem.is_empty() => format!("{stem}.{n}.{ext}"),
        _ => format!("{name}.{n}"),
    }
}

#[test]
fn a_file_named_like_a_sidecar_is_never_overwritten_or_removed() {
    let data = body(5000, 90);
    let served = data.clone();
    let server = serve(move |_| Reply::file(served.clone()).with_header("ETag", "\"v1\""));
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.out()).unwrap();
    std::fs::write(sandbox.out().join("f.part.meta"), b"PRECIOUS").unwrap();
    let (code, _, stderr) = sandbox.run(&[&server.url("/f")]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(
        sandbox.files(),
        one(&[("f.part.meta", b"PRECIOUS"), ("f~1", &data)])
    );
}

#[test]
fn urls_named_like_each_others_part_and_sidecar_files_keep_both() {
    let server = serve(|req| {
        let seed = req.path().len() as u8;
        Reply::file(body(3000, seed)).with_header("ETag", "\"v1\"")
    });
    let (meta, plain) = (server.url("/a/f.part.meta"), server.url("/b/f"));
    let sandbox = Sandbox::new();
    let (code, _, stderr) = sandbox.run(&["-j", "1", &meta, &plain]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(
        sandbox.files(),
        // A saved file never ends like a part or a sidecar: it takes a '_'.
        one(&[
            ("f.part.meta_", &body(3000, "/a/f.part.meta".len() as u8)),
            ("f", &body(3000, "/b/f".len() as u8)),
        ])
    );

    // With --overwrite, `x.part` and `x` in one run must not write into each other.
    let (part, plain) = (server.url("/a/x.part"), server.url("/b/x"));
    let sandbox = Sandbox::new();
    let (code, _, stderr) = sandbox.run(&["--overwrite", "-j", "1", &part, &plain]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(
        sandbox.files(),
        one(&[
            ("x.part_", &body(3000, "/a/x.part".len() as u8)),
            ("x", &body(3000, "/b/x".len() as u8)),
        ])
    );
}

/// ... nor replaces a folder: a regular file is what `--overwrite` replaces.
#[test]
fn overwrite_never_truncates_a_users_part_file() {
    let data = body(4000, 91);
    let served = data.clone();
    let server = serve(move |_| Reply::file(served.clone()));
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.out().join("z")).unwrap();
    std::fs::write(sandbox.out().join("x.part"), b"MINE").unwrap();
    std::fs::write(sandbox.out().join("y"), b"old").unwrap();
    let urls = ["/x", "/y", "/z"].map(|p| server.url(p));
    let (code, _, stderr) =
        sandbox.run(&[&["--overwrite"][..], &urls.each_ref().map(String::as_str)].concat());
    assert_eq!(code, 0, "{stderr:#?}");
    // `y` is replaced as asked; `x` has a part file we did not write, and `z` is a folder, so
    // they go beside.
    assert_eq!(
        sandbox.files(),
        one(&[
            ("x.part", b"MINE"),
            ("x~1", &data),
            ("y", &data),
            ("z~1", &data)
        ])
    );
}

#[test]
fn continue_skips_only_a_file_the_server_confirms_complete() {
    let data = body(6000, 92);
    let served = data.clone();
    let server = serve(move |_| Reply::file(served.clone()).with_header("ETag", "\"v1\""));
    let sandbox = Sandbox::new();
    let out = sandbox.out();
    std::fs::create_dir_all(out.join("dir.bin")).unwrap();
    std::fs::write(out.join("empty.bin"), b"").unwrap();
    std::fs::write(out.join("short.bin"), b"another URL's file").unwrap();
    let mut long = data.to_vec();
    long.extend_from_slice(b"and more");
    std::fs::write(out.join("long.bin"), &long).unwrap();
    std::fs::write(out.join("done.bin"), &data).unwrap();
    let urls: Vec<String> = ["empty", "short", "long", "dir", "done"]
        .iter()
        .map(|n| server.url(&format!("/{n}.bin")))
        .collect();
    let mut args = vec!["-c"];
    args.extend(urls.iter().map(String::as_str));
    let (code, stdout, stderr) = sandbox.run(&args);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(
        sandbox.files(),
        one(&[
            ("empty.bin", b""),
            ("empty~1.bin", &data),
            ("short.bin", b"another URL's file"),
            ("short~1.bin", &data),
            ("long.bin", &long),
            ("long~1.bin", &data),
            ("dir~1.bin", &data),
            ("done.bin", &data),
        ])
    );
    assert!(out.join("dir.bin").is_dir());
    assert_eq!(stdout.len(), 5);
    let skipped: Vec<&String> = stderr.iter().filter(|l| l.contains("skipped")).collect();
    assert_eq!(skipped.len(), 1, "{stderr:#?}");
    assert!(skipped[0].contains("done.bin"), "{stderr:#?}");
    // Each file the server's answer shows to be another one is named once, with why the
    // download went elsewhere.
    for (name, url) in [("empty", &urls[0]), ("short", &urls[1]), ("long", &urls[2])] {
        let note = format!(
            "fetchpar: {url}: note: {} is not this URL's file: left as it is, the URL goes \
             beside it",
            out.join(format!("{name}.bin")).display()
        );
        assert_eq!(
            stderr.iter().filter(|l| **l == note).count(),
            1,
            "{stderr:#?}"
        );
    }
    let notes = stderr.iter().filter(|l| l.contains("note:")).count();
    assert_eq!(notes, 3, "{stderr:#?}");
}

#[test]
fn continue_restarts_a_useless_part_even_with_no_retries() {
    let data = body(30_000, 93);
    let served = data.clone();
    let len = data.len();
    let server = serve(move |req| {
        let reply = Reply::file(served.clone()).with_header("ETag", "\"v1\"");
        if req.path() == "/shifted.bin" && req.header("range").is_some() {
            // Says 206 but starts from the wrong byte.
            reply
                .without_ranges()
                .with_status(206)
                .with_header("Content-Range", &format!("bytes 0-{}/{len}", len - 1))
        } else {
            reply
        }
    });
    let sandbox = Sandbox::new();
    let long = server.url("/long.bin");
    let mut junk = data.to_vec();
    junk.extend_from_slice(b"extra bytes from somewhere else");
    fake_part(&sandbox, "long.bin", &long, &junk, junk.len());
    let shifted = server.url("/shifted.bin");
    fake_part(&sandbox, "shifted.bin", &shifted, &data[..1000], len);
    let (code, _, stderr) = sandbox.run(&["-c", "--retries", "0", &long, &shifted]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(
        sandbox.files(),
        one(&[("long.bin", &data), ("shifted.bin", &data)])
    );
}

#[test]
fn continue_does_not_share_a_part_between_credentials() {
    // The name is kept for the merge's sake; issue 9 reversed the expectation: URLs that differ
    // only in credentials are the same resource and now share a part, because the sidecar may
    // hold nothing derived from a secret (an unsalted hash of the full URL gave the password
    // back to a guess list).
    let data = body(100_000, 94);
    let server = flaky(1, data.clone(), |d| {
        Reply::file(d)
            .with_header("ETag", "\"v1\"")
            .with_fault(Fault::ShortBody(40_000))
    });
    let sandbox = Sandbox::new();
    let port = server.addr().port();
    let first = format!("http://user:first-secret@127.0.0.1:{port}/f.bin");
    let second = format!("http://user:second-secret@127.0.0.1:{port}/f.bin");
    let (code, _, _) = sandbox.run(&[&first, "--retries", "0"]);
    assert_eq!(code, 1);
    let meta = std::fs::read_to_string(sandbox.out().join("f.bin.part.meta")).unwrap();
    assert!(!meta.contains("secret"), "{meta}");
    assert!(!meta.contains(&sha256(first.as_bytes())), "{meta}");
    let (code, _, stderr) = sandbox.run(&["-c", &second]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(sandbox.files(), one(&[("f.bin", &data)]));
    assert_eq!(server.requests()[1].header("range"), Some("bytes=40000-"));
}

#[cfg(unix)]
#[test]
fn continue_never_writes_through_a_symlinked_part() {
    let data = body(20_000, 95);
    let served = data.clone();
    let server = serve(move |_| Reply::file(served.clone()).with_header("ETag", "\"v1\""));
    let elsewhere = tempfile::tempdir().unwrap();
    let victim = elsewhere.path().join("victim");
    std::fs::write(&victim, &data[..5000]).unwrap();
    let sandbox = Sandbox::new();
    let url = server.url("/f.bin");
    fake_part(&sandbox, "f.bin", &url, b"", data.len());
    let part = sandbox.out().join("f.bin.part");
    std::fs::remove_file(&part).unwrap();
    std::os::unix::fs::symlink(&victim, &part).unwrap();
    let (code, _, stderr) = sandbox.run(&["-c", &url]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(std::fs::read(&victim).unwrap(), &data[..5000]);
    assert!(std::fs::symlink_metadata(&part).unwrap().is_symlink());
    assert_eq!(
        std::fs::read(sandbox.out().join("f~1.bin")).unwrap(),
        &data[..]
    );
}

#[cfg(unix)]
#[test]
fn a_planted_sidecar_symlink_is_never_followed_or_removed() {
    let data = body(3000, 96);
    let served = data.clone();
    let server = serve(move |_| Reply::file(served.clone()).with_header("ETag", "\"v1\""));
    let elsewhere = tempfile::tempdir().unwrap();
    let victim = elsewhere.path().join("victim");
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.out()).unwrap();
    let meta = sandbox.out().join("f.bin.part.meta");
    // Dangling: nothing there yet for a write through it to land in.
    std::os::unix::fs::symlink(&victim, &meta).unwrap();
    let (code, _, stderr) = sandbox.run(&[&server.url("/f.bin")]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert!(!victim.exists(), "written through the symlink");
    assert!(std::fs::symlink_metadata(&meta).unwrap().is_symlink());
    assert_eq!(
        std::fs::read(sandbox.out().join("f~1.bin")).unwrap(),
        &data[..]
    );
}

// Issue 9: one rule for joining bytes, and nothing a user had is ever lost.

/// Mixed file 2: a retry's 206 has the same strong ETag but another complete length. It is not
/// appended: the download starts over from zero and saves the one version it then gets.
#[test]
fn a_retry_range_of_another_length_is_not_appended_despite_the_same_etag() {
    let v1 = body(100_000, 40);
    let v2 = body(150_000, 41);
    let server = first_then(
        Reply::file(v1.clone())
            .with_header("ETag", "\"v1\"")
            .with_fault(Fault::ShortBody(30_000)),
        Reply::file(v2.clone()).with_header("ETag", "\"v1\""),
    );
    let sandbox = Sandbox::new();
    let url = server.url("/grown.bin");
    let (code, stdout, stderr) = sandbox.run(&[&url, FAST[0], FAST[1]]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(
        stdout,
        [sandbox.out().join("grown.bin").display().to_string()]
    );
    assert_eq!(sandbox.files(), one(&[("grown.bin", &v2)]));
    let requests = server.requests();
    assert_eq!(requests[1].header("range"), Some("bytes=30000-"));
    assert_eq!(requests[2].header("range"), None, "started over from zero");
}

/// Mixed file 3: a weak ETag alone (`W/"v1"`) never justifies a join: the retry asks for the
/// whole file, not a range, and the saved file is one version.
#[test]
fn a_weak_etag_alone_never_joins_bytes() {
    let v1 = body(100_000, 42);
    let v2 = body(100_000, 43);
    let server = first_then(
        Reply::file(v1.clone())
            .with_header("ETag", "W/\"v1\"")
            .with_fault(Fault::ShortBody(30_000)),
        Reply::file(v2.clone()).with_header("ETag", "W/\"v1\""),
    );
    let sandbox = Sandbox::new();
    let url = server.url("/weak.bin");
    let (code, stdout, stderr) = sandbox.run(&[&url, FAST[0], FAST[1]]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(
        stdout,
        [sandbox.out().join("weak.bin").display().to_string()]
    );
    assert_eq!(sandbox.files(), one(&[("weak.bin", &v2)]));
    assert_eq!(server.requests()[1].header("range"), None);
}

/// `-c` against a server whose 416 gives no size (as Apache's may not): the size comes from a
/// `Range: bytes=0-0` probe, and a complete file or part is not downloaded again.
#[test]
fn continue_learns_the_size_when_a_416_does_not_say_it() {
    let data = body(40_000, 44);
    let served = data.clone();
    let server = Server::start(move |req| {
        let past_end = req.header("range") == Some(&format!("bytes={}-", served.len()));
        if past_end {
            // A bare 416: no Content-Range.
            Reply::status(416)
        } else {
            Reply::file(served.clone()).with_header("ETag", "\"v1\"")
        }
    })
    .unwrap();
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.out()).unwrap();
    std::fs::write(sandbox.out().join("done.bin"), &*data).unwrap();
    let part_url = server.url("/part.bin");
    fake_part(&sandbox, "part.bin", &part_url, &data, data.len());
    let (code, stdout, stderr) = sandbox.run(&["-c", &server.url("/done.bin"), &part_url]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(
        sandbox.files(),
        one(&[("done.bin", &data), ("part.bin", &data)]),
        "no second copy"
    );
    assert_eq!(stdout.len(), 2);
    assert!(
        stderr.iter().any(|l| l.contains("skipped")
            && l.contains("done.bin")
            && l.contains("already complete")),
        "{stderr:#?}"
    );
    for request in server.requests() {
        let range = request.header("range").unwrap_or("");
        assert!(
            range == "bytes=0-0" || range == format!("bytes={}-", data.len()),
            "only probes, nothing downloaded: {range}"
        );
    }
}

/// `-c` against a server that ignores ranges (`python3 -m http.server`): its 200's length
/// shows the file is complete, and nothing is saved twice.
#[test]
fn continue_skips_a_complete_file_when_the_server_ignores_ranges() {
    let data = body(40_000, 45);
    let served = data.clone();
    let server = Server::start(move |_| Reply::file(served.clone()).without_ranges()).unwrap();
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.out()).unwrap();
    std::fs::write(sandbox.out().join("done.bin"), &*data).unwrap();
    let url = server.url("/done.bin");
    for _ in 0..2 {
        let (code, stdout, stderr) = sandbox.run(&["-c", &url]);
        assert_eq!(code, 0, "{stderr:#?}");
        assert_eq!(
            stdout,
            [sandbox.out().join("done.bin").display().to_string()]
        );
        assert!(
            stderr.iter().any(|l| l.contains("already complete")),
            "{stderr:#?}"
        );
    }
    assert_eq!(sandbox.files(), one(&[("done.bin", &data)]));
}

/// Runs fetchpar under a file-size limit of `blocks` (512- or 1024-byte blocks, by shell).
fn run_limited(sandbox: &Sandbox, blocks: u32, args: &[&str]) -> (i32, Vec<String>) {
    let mut script = format!(
        "ulimit -f {blocks} && exec '{}' -j 1 -o '{}'",
        env!("CARGO_BIN_EXE_fetchpar"),
        sandbox.out().display()
    );
    for arg in args {
        script.push_str(&format!(" '{arg}'"));
    }
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(sandbox.root())
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .unwrap();
    sandbox.assert_nothing_outside();
    (output.status.code().unwrap_or(-1), lines(&output.stderr))
}

/// A write error while resuming (here a file-size limit) never destroys the bytes an earlier run
/// left: the part stays, at its last good length, with its sidecar, and the line says so; a
/// later `-c` finishes it.
#[test]
fn a_write_error_during_a_resume_keeps_the_earlier_part() {
    let data = body(300_000, 46);
    let served = data.clone();
    let server =
        Server::start(move |_| Reply::file(served.clone()).with_header("ETag", "\"v1\"")).unwrap();
    let sandbox = Sandbox::new();
    let url = server.url("/big.bin");
    fake_part(&sandbox, "big.bin", &url, &data[..100_000], data.len());
    let meta = sandbox.out().join("big.bin.part.meta");
    let sidecar = std::fs::read(&meta).unwrap();
    // 200 blocks: 100 or 200 KiB, past the part and short of the file either way.
    let (code, stderr) = run_limited(&sandbox, 200, &["-c", &url]);
    assert_eq!(code, 1, "{stderr:#?}");
    let part = sandbox.out().join("big.bin.part");
    let line = error_line(&stderr, &url);
    assert!(
        line.contains(&format!("cannot write {}", part.display()))
            && line.ends_with(&format!("; partial data kept in {}", part.display())),
        "{line}"
    );
    let kept = std::fs::read(&part).unwrap();
    assert!(
        kept.len() >= 100_000 && kept.len() < data.len(),
        "{}",
        kept.len()
    );
    assert_eq!(&kept[..], &data[..kept.len()], "its last good length");
    assert_eq!(std::fs::read(&meta).unwrap(), sidecar, "its sidecar");
    let (code, _, stderr) = sandbox.run(&["-c", &url]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(sandbox.files(), one(&[("big.bin", &data)]));
}

/// A sidecar is written whole or not at all: a file-size limit that stops every write leaves no
/// empty `NAME.part.meta` behind, and the next run saves under the name itself.
#[test]
fn a_sidecar_that_cannot_be_written_leaves_nothing_behind() {
    let data = body(100_000, 47);
    let served = data.clone();
    let server =
        Server::start(move |_| Reply::file(served.clone()).with_header("ETag", "\"v1\"")).unwrap();
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.out()).unwrap();
    let url = server.url("/full.bin");
    let (code, stderr) = run_limited(&sandbox, 0, &[&url]);
    assert_eq!(code, 1, "{stderr:#?}");
    assert!(
        error_line(&stderr, &url).ends_with("; nothing saved"),
        "{stderr:#?}"
    );
    assert_eq!(
        sandbox.files(),
        BTreeMap::new(),
        "no empty sidecar, no part"
    );
    let (code, _, stderr) = sandbox.run(&["-c", &url]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(sandbox.files(), one(&[("full.bin", &data)]));
}

/// An empty sidecar an older fetchpar left (its disk was full) does not push `-c` to
/// `NAME.1`: nothing can be lost there, so the name is taken back.
#[test]
fn continue_takes_back_a_name_held_only_by_an_empty_sidecar() {
    let data = body(100_000, 48);
    let served = data.clone();
    let server =
        Server::start(move |_| Reply::file(served.clone()).with_header("ETag", "\"v1\"")).unwrap();
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.out()).unwrap();
    std::fs::write(sandbox.out().join("old.bin.part.meta"), b"").unwrap();
    // A non-empty sidecar that is not ours is still left alone.
    std::fs::write(sandbox.out().join("kept.bin.part.meta"), b"someone else's").unwrap();
    let (old, kept) = (server.url("/old.bin"), server.url("/kept.bin"));
    let (code, _, stderr) = sandbox.run(&["-c", &old, &kept]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(
        sandbox.files(),
        one(&[
            ("old.bin", &data),
            ("kept.bin.part.meta", b"someone else's"),
            ("kept~1.bin", &data),
        ])
    );
}

/// A small download (no sidecar while it runs) stopped by Ctrl-C while stuck in a read: the
/// summary promises a resume with `-c`, so its sidecar is written, and `-c` does resume it,
/// under its own name, with no `NAME.1` and no orphan. (Before the transport watched the
/// cancel flag, the run abandoned such a download and left a part no `-c` could take up.)
#[test]
fn an_abandoned_small_download_is_resumable_as_reported() {
    let data = body(20_000, 51);
    let stall = Arc::new(AtomicBool::new(true));
    let (served, stalling) = (data.clone(), stall.clone());
    let server = Server::start(move |_| {
        let reply = Reply::file(served.clone()).with_header("ETag", "\"v1\"");
        if stalling.load(Ordering::SeqCst) {
            reply.with_fault(Fault::StallAfter(5000, Duration::from_secs(60)))
        } else {
            reply
        }
    })
    .unwrap();
    let sandbox = Sandbox::new();
    let url = server.url("/small.bin");
    let child = sandbox.spawn(&["--timeout", "60", &url]);
    wait_for_len(&sandbox.out().join("small.bin.part"), 5000);
    let output = interrupt(child);
    assert_eq!(output.status.code(), Some(130));
    let stderr = lines(&output.stderr);
    assert!(
        stderr
            .iter()
            .any(|l| l == "interrupted: 1 partial download kept as .part (resume with -c)"),
        "{stderr:#?}"
    );
    assert!(sandbox.out().join("small.bin.part.meta").exists());
    stall.store(false, Ordering::SeqCst);
    let (code, _, stderr) = sandbox.run(&["-c", &url]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(sandbox.files(), one(&[("small.bin", &data)]));
    assert_eq!(
        server.requests().last().unwrap().header("range"),
        Some("bytes=5000-")
    );
}

/// `-c` never makes a second copy of a complete file because the completeness check failed
/// for a moment: a 503 to the first probe is retried, and the file is found complete.
#[test]
fn continue_retries_a_completeness_check_that_could_not_tell() {
    let data = body(40_000, 47);
    let server = flaky(1, data.clone(), |_| Reply::status(503));
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.out()).unwrap();
    std::fs::write(sandbox.out().join("f.bin"), &*data).unwrap();
    let url = server.url("/f.bin");
    let (code, stdout, stderr) = sandbox.run(&["-c", "--max-retry-wait", "0.02", &url]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(stdout, [sandbox.out().join("f.bin").display().to_string()]);
    assert!(
        stderr.iter().any(|l| l.contains("already complete")),
        "{stderr:#?}"
    );
    assert_eq!(sandbox.files(), one(&[("f.bin", &data)]), "no second copy");
}

/// A completeness check that still cannot tell after the retries fails the URL with one line
/// and leaves the file alone: no second copy under another name.
#[test]
fn continue_fails_cleanly_when_completeness_cannot_be_told() {
    let data = body(40_000, 48);
    let server = serve(|_| Reply::status(503));
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.out()).unwrap();
    std::fs::write(sandbox.out().join("f.bin"), &*data).unwrap();
    let url = server.url("/f.bin");
    let (code, stdout, stderr) = sandbox.run(&["-c", "--retries", "1", FAST[0], FAST[1], &url]);
    assert_eq!(code, 1, "{stderr:#?}");
    assert!(stdout.is_empty(), "{stdout:#?}");
    let f = sandbox.out().join("f.bin");
    assert_eq!(
        error_line(&stderr, &url),
        format!(
            "fetchpar: {url}: cannot tell whether {} is complete: HTTP 503 Service Unavailable \
             (after 1 retry); left untouched",
            f.display()
        )
    );
    assert_eq!(count(&server, "/f.bin"), 2, "asked once, retried once");
    assert_eq!(sandbox.files(), one(&[("f.bin", &data)]), "no second copy");
}

/// `-c` with parts of an earlier run on a host now dead: every URL fails with the host's line
/// and says its part is kept, including those that reached a worker only once the host was
/// given up (they said "nothing saved" beside their part).
#[test]
fn continue_against_a_dead_host_names_every_part_it_keeps() {
    let port = free_port();
    let sandbox = Sandbox::new();
    let data = body(5000, 61);
    let mut args = vec!["-c", "-j", "4", "--retries", "1", FAST[0], FAST[1]];
    let urls: Vec<String> = (0..12)
        .map(|i| format!("http://127.0.0.1:{port}/p{i}.bin"))
        .collect();
    for (i, url) in urls.iter().enumerate() {
        fake_part(
            &sandbox,
            &format!("p{i}.bin"),
            url,
            &data[..1000],
            data.len(),
        );
        args.push(url);
    }
    let (code, stdout, stderr) = sandbox.run(&args);
    assert_eq!(code, 1, "{stderr:#?}");
    assert!(stdout.is_empty(), "{stdout:#?}");
    for (i, url) in urls.iter().enumerate() {
        let part = sandbox.out().join(format!("p{i}.bin.part"));
        assert_eq!(
            error_line(&stderr, url),
            format!(
                "fetchpar: {url}: host unreachable after 2 attempts (connection refused); \
                 partial data kept in {}",
                part.display()
            )
        );
        assert_eq!(std::fs::read(&part).unwrap(), &data[..1000]);
    }
}

/// `-c` beside files whose host refuses connections: the host's attempts are shared by its
/// URLs, as for downloads, and each fails with the host's one line (it said "internal error:
/// no response"); the files are left alone.
#[test]
fn continue_against_a_dead_host_shares_its_attempts_and_says_why() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.out()).unwrap();
    let mut files = Vec::new();
    let mut args = vec!["-c", "-j", "3", "--retries", "1", FAST[0], FAST[1]];
    let urls: Vec<String> = (0..3)
        .map(|i| format!("http://127.0.0.1:{port}/f{i}.bin"))
        .collect();
    for (i, url) in urls.iter().enumerate() {
        let data = body(1000, 50 + i as u8);
        std::fs::write(sandbox.out().join(format!("f{i}.bin")), &*data).unwrap();
        files.push((format!("f{i}.bin"), data));
        args.push(url);
    }
    let (code, stdout, stderr) = sandbox.run(&args);
    assert_eq!(code, 1, "{stderr:#?}");
    assert!(stdout.is_empty(), "{stdout:#?}");
    for url in &urls {
        assert_eq!(
            error_line(&stderr, url),
            format!(
                "fetchpar: {url}: host unreachable after 2 attempts (connection refused); \
                 nothing saved"
            )
        );
    }
    let kept: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (n.as_str(), &**d)).collect();
    assert_eq!(sandbox.files(), one(&kept), "no second copy");
}

/// A 503 to the size probe after a bare 416 is no proof either way: retried, never a copy.
#[test]
fn continue_retries_the_size_probe_after_a_bare_416() {
    let data = body(40_000, 49);
    let served = data.clone();
    let probes = AtomicUsize::new(0);
    let server = serve(move |req| {
        let range = req.header("range").unwrap_or("");
        if range == format!("bytes={}-", served.len()) {
            Reply::status(416)
        } else if range == "bytes=0-0" && probes.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::status(503)
        } else {
            Reply::file(served.clone()).with_header("ETag", "\"v1\"")
        }
    });
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.out()).unwrap();
    std::fs::write(sandbox.out().join("f.bin"), &*data).unwrap();
    let url = server.url("/f.bin");
    let (code, _, stderr) = sandbox.run(&["-c", FAST[0], FAST[1], &url]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert!(
        stderr.iter().any(|l| l.contains("already complete")),
        "{stderr:#?}"
    );
    assert_eq!(sandbox.files(), one(&[("f.bin", &data)]), "no second copy");
}

/// A small body (no sidecar while it arrives in one go) that has to wait on the network gets
/// its sidecar before the first wait: SIGKILL then leaves a part that the next `-c` resumes
/// into the same name, with no `NAME.1` and no orphan.
#[test]
fn sigkill_during_a_slow_small_download_leaves_a_part_continue_resumes() {
    let data = body(40_000, 50);
    let dripping = Fault::Drip(4_000, Duration::from_millis(200));
    let (server, drip) = serve_faulty_at_first(data.clone(), "\"v1\"", dripping);
    let sandbox = Sandbox::new();
    let url = server.url("/small.bin");
    let mut child = sandbox.spawn(&["--timeout", "60", &url]);
    // Two pieces on disk: the second came after a wait on the network, so the sidecar, if
    // there is to be one, was written before it.
    wait_for_len(&sandbox.out().join("small.bin.part"), 8_000);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(sandbox.out().join("small.bin.part").exists());

    drip.store(false, Ordering::SeqCst);
    let (code, stdout, stderr) = sandbox.run(&["-c", &url]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(
        stdout,
        [sandbox.out().join("small.bin").display().to_string()]
    );
    assert_eq!(
        sandbox.files(),
        one(&[("small.bin", &data)]),
        "resumed into the same name: no small~1.bin, no orphan part or sidecar"
    );
    let last = server.requests().pop().unwrap();
    assert!(
        last.header("range").is_some_and(|r| r != "bytes=0-"),
        "resumed from the part, not fetched again: {:?}",
        last.header("range")
    );
}

/// A download killed after its headers but before its first byte leaves an empty part and no
/// sidecar: `-c` takes the name back instead of saving `NAME.1` beside an orphan.
#[test]
fn sigkill_before_the_first_byte_leaves_nothing_that_continue_piles_up_beside() {
    let data = body(30_000, 52);
    let served = data.clone();
    let stall = Arc::new(AtomicBool::new(true));
    let stalling = stall.clone();
    let server = serve(move |_| {
        let reply = Reply::file(served.clone()).with_header("ETag", "\"v1\"");
        if stalling.load(Ordering::SeqCst) {
            reply.with_fault(Fault::StallAfter(0, Duration::from_secs(60)))
        } else {
            reply
        }
    });
    let sandbox = Sandbox::new();
    let url = server.url("/early.bin");
    let mut child = sandbox.spawn(&["--timeout", "60", &url]);
    let part = sandbox.out().join("early.bin.part");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !part.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        std::fs::metadata(&part).unwrap().len(),
        0,
        "killed before any byte"
    );

    stall.store(false, Ordering::SeqCst);
    let (code, stdout, stderr) = sandbox.run(&["-c", &url]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(
        stdout,
        [sandbox.out().join("early.bin").display().to_string()]
    );
    assert_eq!(
        sandbox.files(),
        one(&[("early.bin", &data)]),
        "saved under its own name: no early~1.bin, no orphan part"
    );
}

/// An interrupted body with no validator cannot be resumed (`-c` starts it over): nothing may
/// promise a resume, neither its line nor the summary.
#[test]
fn an_interrupted_part_without_a_validator_is_not_promised_a_resume() {
    let data = body(100_000, 51);
    let served = data.clone();
    let server = serve(move |_| {
        Reply::file(served.clone()).with_fault(Fault::StallAfter(40_000, Duration::from_secs(60)))
    });
    let sandbox = Sandbox::new();
    let url = server.url("/plain.bin");
    let child = sandbox.spawn(&["--timeout", "60", &url]);
    let part = sandbox.out().join("plain.bin.part");
    wait_for_len(&part, 40_000);
    let output = interrupt(child);
    assert_eq!(output.status.code(), Some(130));
    let stderr = lines(&output.stderr);
    assert_eq!(
        error_line(&stderr, &url),
        format!(
            "fetchpar: {url}: interrupted; partial data kept in {} (no validator: -c will start \
             it over)",
            part.display()
        )
    );
    assert!(
        stderr.iter().any(|l| l
            == "interrupted: 1 partial download kept as .part (no validator: -c will start it \
                over)"),
        "{stderr:#?}"
    );
    assert!(
        !stderr.iter().any(|l| l.contains("resume with -c")),
        "{stderr:#?}"
    );
    assert!(part.exists());
}

/// Two runs on one folder: a `-c` run started beside one still writing a part leaves that part
/// to it. (A reviewer's two `-c` runs joined their bytes into one file, mixed from two versions
/// of the server's, and the first said "saved".)
#[test]
fn a_part_being_written_by_another_run_is_left_to_it() {
    let data = body(100_000, 4);
    let served = data.clone();
    let server = serve(move |_| {
        Reply::file(served.clone())
            .with_header("ETag", "\"v1\"")
            .with_fault(Fault::StallAfter(70_000, Duration::from_secs(30)))
    });
    let sandbox = Sandbox::new();
    let url = server.url("/big.bin");
    let first = sandbox.spawn(&["--timeout", "60", "--progress", "none", &url]);
    let part = sandbox.out().join("big.bin.part");
    wait_for_len(&part, 70_000);
    wait_for_len(&sandbox.out().join("big.bin.part.meta"), 1);
    let (code, _, stderr) = sandbox.run(&["-c", "--progress", "none", &url]);
    assert_eq!(code, 1, "{stderr:#?}");
    let expected = format!(
        "fetchpar: {url}: {} is being written by another download (another fetchpar run?); \
         left untouched",
        part.display()
    );
    assert!(stderr.contains(&expected), "{expected}\n{stderr:#?}");
    sigint(first.id());
    assert_eq!(finish(first).status.code(), Some(130));
    // The first run's part holds its own bytes, none of the second's.
    assert_eq!(std::fs::read(&part).unwrap(), data[..70_000]);
}

/// A response that cannot be read as HTTP (here two `Content-Length`s that differ) is not
/// retried: the next try would get the same, and curl does not retry one either. It fails at
/// once, in words that say so (a reviewer saw four connections and six seconds per URL).
#[test]
fn a_malformed_response_is_not_retried() {
    fails_at_once_with_malformed(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
    );
}

/// `-c` beside a `.part` without a sidecar naming the URL (left by another program, or by a
/// run killed before it wrote one): the part is left as it is, the URL goes to the next name,
/// and a note says why, where `-c` used to seem to ignore the part.
#[test]
fn continue_says_why_it_passes_over_a_part_it_cannot_resume() {
    let data = body(3000, 12);
    let served = data.clone();
    let server = serve(move |_| Reply::file(served.clone()).with_header("ETag", "\"v1\""));
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.out()).unwrap();
    let part = sandbox.out().join("p.bin.part");
    std::fs::write(&part, b"SOMEONE ELSE'S").unwrap();
    let url = server.url("/p.bin");
    let (code, _, stderr) = sandbox.run(&["-c", "--progress", "none", &url]);
    assert_eq!(code, 0, "{stderr:#?}");
    let note = format!(
        "fetchpar: {url}: note: {} has no sidecar naming this URL, so it is not resumed: left \
         as it is, the URL goes beside it",
        part.display()
    );
    assert!(stderr.contains(&note), "{note}\n{stderr:#?}");
    assert_eq!(
        sandbox.files(),
        one(&[("p.bin.part", b"SOMEONE ELSE'S"), ("p~1.bin", &data)])
    );
}

/// A part another process holds locked is not touched by `-c`, however it looks: here empty
/// and without a sidecar (a small body's part has none until its first wait), which `-c` used
/// to take back as a leftover, or pass over to save a copy under the next name (a reviewer's
/// two runs at once made about 150 such copies).
#[test]
fn continue_leaves_a_locked_part_alone_whatever_it_holds() {
    let server = serve(|_| Reply::file(body(3000, 13)));
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.out()).unwrap();
    let part = sandbox.out().join("x.bin.part");
    std::fs::write(&part, b"").unwrap();
    // flock(1) holds the lock another run's download would (flock(2), exclusive).
    let mut holder = std::process::Command::new("flock")
        .arg(&part)
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    let locked = || {
        let free = std::process::Command::new("flock")
            .arg("-n")
            .arg(&part)
            .arg("true")
            .status();
        !free.unwrap().success()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !locked() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = server.url("/x.bin");
    let (code, _, stderr) = sandbox.run(&["-c", "--progress", "none", &url]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(code, 1, "{stderr:#?}");
    let expected = format!(
        "fetchpar: {url}: {} is being written by another download (another fetchpar run?); \
         left untouched",
        part.display()
    );
    assert!(stderr.contains(&expected), "{expected}\n{stderr:#?}");
    assert_eq!(entries(&sandbox.out()), ["x.bin.part"]);
}

/// A chunked body that is not HTTP (a chunk size that is no number) is not retried either:
/// the second reviewer saw four connections for it after the headers' case was fixed.
#[test]
fn a_malformed_chunked_body_is_not_retried() {
    fails_at_once_with_malformed(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
    );
}

/// Runs one URL against a raw server that answers every connection with `reply`: it must fail
/// at once (one connection, no retry), its line saying the response is malformed.
fn fails_at_once_with_malformed(reply: &'static [u8]) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let counted = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            counted.fetch_add(1, Ordering::SeqCst);
            let mut request = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut request);
            let _ = std::io::Write::write_all(&mut stream, reply);
        }
    });
    let url = format!("http://127.0.0.1:{port}/bad.bin");
    let sandbox = Sandbox::new();
    let (code, _, stderr) = sandbox.run(&[&url, "--progress", "none"]);
    assert_eq!(code, 1, "{stderr:#?}");
    let line = error_line(&stderr, &url);
    assert!(
        line.contains(": malformed response from the server (") && !line.contains("retries"),
        "{line}"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1, "{stderr:#?}");
}
