//! Politeness per host: `--per-host`, a host's shared connect attempts, one dead host among many.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::util::*;

/// A server that holds each request for `hold` before it answers with `reply()`, and the most
/// requests it held at once.
fn holding(
    hold: Duration,
    reply: impl Fn() -> Reply + Send + Sync + 'static,
) -> (Server, Arc<AtomicUsize>) {
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let server = {
        let (now, most) = (now.clone(), most.clone());
        serve(move |_| {
            let running = now.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(running, Ordering::SeqCst);
            std::thread::sleep(hold);
            now.fetch_sub(1, Ordering::SeqCst);
            reply()
        })
    };
    (server, most)
}

/// Never more than `--per-host` requests at once to one host, however many workers.
#[test]
fn per_host_caps_the_downloads_to_one_host() {
    let data = body(2000, 7);
    // Long enough for the other workers to pile in, were they allowed.
    let (server, most) = holding(Duration::from_millis(30), {
        let data = data.clone();
        move || Reply::file(data.clone())
    });
    let urls: Vec<String> = (0..24).map(|i| server.url(&format!("/f{i}.bin"))).collect();
    let mut args: Vec<&str> = urls.iter().map(String::as_str).collect();
    args.extend(["-j", "12", "--per-host", "2", "--progress", "none"]);
    let sandbox = Sandbox::new();
    let (code, _, stderr) = sandbox.run(&args);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(sandbox.files().len(), 24);
    assert!(sandbox.files().values().all(|sum| *sum == sha256(&data)));
    assert!(most.load(Ordering::SeqCst) <= 2, "{most:?} at once");
    // The summary names the workers that ran at once, not the 12 asked for.
    let used = workers_in_summary(&stderr);
    assert!((1..=2).contains(&used), "{stderr:#?}");
    assert!(
        stderr.iter().any(|l| l.contains("of the 12 asked for")),
        "{stderr:#?}"
    );
}

/// The `N` of the summary's `with N workers`.
fn workers_in_summary(stderr: &[String]) -> usize {
    let line = stderr
        .iter()
        .find(|l| l.contains(" files: ") && l.contains(" with "))
        .unwrap_or_else(|| panic!("no comparison line: {stderr:#?}"));
    let after = line.split(" with ").nth(1).unwrap();
    let n = after.split(' ').next().unwrap();
    n.parse()
        .unwrap_or_else(|_| panic!("no worker count in {line}"))
}

/// The JSON summary's count of downloads in flight at once matches the cap.
#[test]
fn the_json_summary_counts_the_downloads_that_ran_at_once() {
    let data = body(500, 3);
    let server = {
        let data = data.clone();
        serve(move |_| {
            std::thread::sleep(Duration::from_millis(20));
            Reply::file(data.clone())
        })
    };
    let urls: Vec<String> = (0..12).map(|i| server.url(&format!("/g{i}.bin"))).collect();
    let mut args: Vec<&str> = urls.iter().map(String::as_str).collect();
    args.extend(["-j", "8", "--per-host", "3", "--json", "--progress", "none"]);
    let sandbox = Sandbox::new();
    let (code, stdout, stderr) = sandbox.run(&args);
    assert_eq!(code, 0, "{stderr:#?}");
    let summary = stdout
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary: {stdout:#?}"));
    assert_eq!(summary["jobs"], 8, "{summary}");
    let peak = summary["peak_in_flight"].as_u64().unwrap();
    assert!((1..=3).contains(&peak), "{summary}");
}

/// One black-hole host among several: its URLs fail together once its shared attempts are spent,
/// with the host's line, and every other host's files are saved. Without the shared attempts
/// each of its URLs would sit out its own connect timeouts and the run would not end within the
/// guard.
#[test]
fn one_dead_host_does_not_hold_the_others() {
    let (dead, _listener, _held) = black_hole("127.0.0.2");
    let mut expected = std::collections::BTreeMap::new();
    let mut servers = Vec::new();
    let mut urls = Vec::new();
    for s in 0..4 {
        let (server, files) = file_server(10, 100, 3000, Duration::ZERO);
        for name in files.keys() {
            urls.push(server.url(&format!("/{name}")));
        }
        for (name, sum) in files {
            expected.insert(format!("{s}-{name}"), sum);
        }
        servers.push(server);
    }
    let dead_urls: Vec<String> = (0..40).map(|i| format!("http://{dead}/d{i}.bin")).collect();
    // Interleaved, so the dead host's URLs reach every worker.
    let mut list = String::new();
    for (i, url) in urls.iter().enumerate() {
        let name = url.rsplit('/').next().unwrap();
        list.push_str(&format!("{} {}-{name}\n", url, i / 10));
        list.push_str(&format!("{}\n", dead_urls[i]));
    }
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.root().join("list"), list).unwrap();
    let child = sandbox.spawn(&[
        "-i",
        "list",
        "-j",
        "4",
        "--connect-timeout",
        "1",
        "--max-retry-wait",
        "0.1",
        "--progress",
        "none",
    ]);
    let output = finish_within(child, Duration::from_secs(40));
    let stderr = lines(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr:#?}");
    assert_eq!(sandbox.files(), expected, "{stderr:#?}");
    for url in &dead_urls {
        let line = stderr
            .iter()
            .find(|l| l.starts_with(&format!("fetchpar: {url}: ")))
            .unwrap_or_else(|| panic!("no line for {url}: {stderr:#?}"));
        assert!(
            line.contains(": host unreachable after 4 attempts (could not connect: timed out)"),
            "{line}"
        );
    }
}

/// A sandbox whose `list` names 8 URLs on `dead` (host:port), then 8 live files; the live
/// server and its files' checksums.
fn dead_first(dead: &str) -> (Sandbox, Server, std::collections::BTreeMap<String, String>) {
    let (server, expected) = file_server(8, 100, 3000, Duration::ZERO);
    let mut list: String = (0..8)
        .map(|i| format!("http://{dead}/d{i}.bin\n"))
        .collect();
    for name in expected.keys() {
        list.push_str(&format!("{}\n", server.url(&format!("/{name}"))));
    }
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.root().join("list"), list).unwrap();
    (sandbox, server, expected)
}

/// Waits for `done`, a minute at most: a guard, not a measure (what it waits for takes
/// milliseconds, the dead connects minutes).
fn within_a_minute(done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A host that drops every SYN, first in a list at the default `-j 8`: its first connect holds
/// one worker until it times out (a host has one download until it answers, or its connection
/// is up a moment), and the others save the other host's files meanwhile. Before, its first
/// window was eight: every worker sat out the connect timeout.
#[test]
fn a_dead_host_first_in_a_list_holds_one_worker() {
    let (dead, _listener, _held) = black_hole("127.0.0.2");
    let (sandbox, _server, expected) = dead_first(&dead.to_string());
    let mut child = sandbox.spawn(&["-i", "list", "--connect-timeout", "120"]);
    within_a_minute(|| sandbox.files() == expected);
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        sandbox.files(),
        expected,
        "saved while the dead host's connects hang"
    );
    assert!(running, "the dead host's connects were still pending");
}

/// The same through a plain HTTP proxy whose origin never answers (the proxy holds every
/// request): the connection to the proxy comes up at once, which says nothing of the origin, so
/// the dead origin gets half the workers, not its first round, and the other host's files are
/// saved meanwhile. (Counting the proxy's connection as the origin's opened its window to all
/// eight; counting nothing kept it at one, each of its URLs waiting out the one before.)
#[test]
fn a_proxy_that_answers_for_a_dead_origin_does_not_open_its_window() {
    // The origin behind it is gone: the proxy waits for it past this test's end.
    let (proxy, most) = holding(Duration::from_secs(90), || Reply::status(504));
    let (sandbox, _server, expected) = dead_first("127.0.0.2:9");
    let mut child = command()
        .current_dir(sandbox.root())
        .env("NO_PROXY", "127.0.0.1")
        .args(["-i", "list", "--timeout", "120", "--progress", "none"])
        .arg("--proxy")
        .arg(proxy.url("/"))
        .arg("-o")
        .arg(sandbox.out())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    within_a_minute(|| sandbox.files() == expected && most.load(Ordering::SeqCst) >= 4);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        sandbox.files(),
        expected,
        "saved while the proxy holds the dead origin's"
    );
    assert_eq!(
        most.load(Ordering::SeqCst),
        4,
        "half of -j 8 at the dead origin"
    );
}

/// ... but a host whose first connection comes up and waits for its answer gets its whole first
/// round before it answers: a slow server's eight downloads at `-j 8` run at once, not one and
/// then seven.
#[test]
fn a_host_that_connects_gets_its_first_round_before_it_answers() {
    let data = body(2000, 3);
    // Far longer than the connects take: all eight are in before the first answer.
    let (server, most) = holding(Duration::from_millis(500), {
        let data = data.clone();
        move || Reply::file(data.clone())
    });
    let urls: Vec<String> = (0..8).map(|i| server.url(&format!("/f{i}.bin"))).collect();
    let stderr = all_of(&urls, &data);
    assert_eq!(most.load(Ordering::SeqCst), 8, "{stderr:#?}");
}

/// `urls`, each a copy of `data`, at `-j 8`: exit 0 and every byte right; the run's stderr.
fn all_of(urls: &[String], data: &[u8]) -> Vec<String> {
    let mut args: Vec<&str> = urls.iter().map(String::as_str).collect();
    args.extend(["-j", "8", "--progress", "none"]);
    let sandbox = Sandbox::new();
    let (code, _, stderr) = sandbox.run(&args);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(sandbox.files().len(), urls.len());
    assert!(sandbox.files().values().all(|sum| *sum == sha256(data)));
    stderr
}

/// A host whose answers are redirects to another host that is slow to answer: its redirect is
/// its answer, and its first round goes out at once. (Only the final answer counted, so each
/// of its URLs waited for the one before; forever, had the other host never answered.)
#[test]
fn a_redirect_is_an_answer_from_the_host_that_sent_it() {
    let data = body(2000, 5);
    let (slow, most) = holding(Duration::from_millis(500), {
        let data = data.clone();
        move || Reply::file(data.clone())
    });
    let target = slow.url("/");
    let origin = serve(move |req| {
        let to = format!("{}{}", target.trim_end_matches('/'), req.path());
        Reply::status(302).with_header("Location", &to)
    });
    let urls: Vec<String> = (0..8).map(|i| origin.url(&format!("/f{i}.bin"))).collect();
    let stderr = all_of(&urls, &data);
    assert_eq!(most.load(Ordering::SeqCst), 8, "{stderr:#?}");
}

/// A server down for a moment (restarting) as a list of sixteen starts at `-j 8`: the refusal is
/// one of the host's attempts, its URLs wait out that attempt's pause together, and once it is
/// back every URL is saved. (Eight refused at once are one attempt too: see the unit tests of
/// `hosts`.)
#[test]
fn a_host_down_for_a_moment_is_waited_for_at_j_8() {
    let port = free_port();
    let data = body(3000, 9);
    let urls: Vec<String> = (0..16)
        .map(|i| format!("http://127.0.0.1:{port}/f{i}.bin"))
        .collect();
    let mut args: Vec<&str> = urls.iter().map(String::as_str).collect();
    args.extend(["-j", "8", "--progress", "none"]);
    let sandbox = Sandbox::new();
    let child = sandbox.spawn(&args);
    // Well after the first connects (milliseconds in), before the host's second attempt (half
    // a second after its first at the soonest).
    std::thread::sleep(Duration::from_millis(250));
    let served = data.clone();
    let server = Server::start_on(port, move |_| Reply::file(served.clone()));
    let output = finish_within(child, Duration::from_secs(30));
    let stderr = lines(&output.stderr);
    assert!(server.is_ok(), "port {port} taken meanwhile: {stderr:#?}");
    assert_eq!(output.status.code(), Some(0), "{stderr:#?}");
    let files = sandbox.files();
    assert_eq!(files.len(), 16, "{stderr:#?}");
    assert!(files.values().all(|sum| *sum == sha256(&data)));
}

/// A host whose URLs redirect to a dead one is not the dead one: only the redirected URLs fail
/// (each on its own retries), and the host's other URLs are saved.
#[test]
fn a_redirect_to_a_dead_host_fails_only_the_redirected_urls() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let data = body(2000, 4);
    let (served, target) = (data.clone(), dead.clone());
    let server = serve(move |req| match req.path().strip_prefix("/r") {
        Some(n) => Reply::status(302).with_header("Location", &format!("{target}/gone{n}.bin")),
        None => Reply::file(served.clone()),
    });
    let redirected: Vec<String> = (0..3).map(|i| server.url(&format!("/r{i}"))).collect();
    let kept: Vec<String> = (0..3).map(|i| server.url(&format!("/ok{i}.bin"))).collect();
    let mut args: Vec<&str> = redirected.iter().chain(&kept).map(String::as_str).collect();
    args.extend(["-j", "1", "--retries", "1", "--max-retry-wait", "0.1"]);
    args.extend(["--progress", "none"]);
    let sandbox = Sandbox::new();
    let (code, _, stderr) = sandbox.run(&args);
    assert_eq!(code, 1, "{stderr:#?}");
    let files = sandbox.files();
    assert_eq!(files.len(), 3, "{stderr:#?}");
    assert!(files.values().all(|sum| *sum == sha256(&data)));
    for url in &redirected {
        let line = stderr
            .iter()
            .find(|l| l.starts_with(&format!("fetchpar: {url}: ")))
            .unwrap_or_else(|| panic!("no line for {url}: {stderr:#?}"));
        assert!(line.contains("connection refused"), "{line}");
        // The host it could not reach is named: not the one asked, which answered.
        assert!(line.contains(": redirected to http://127.0.0.1:"), "{line}");
    }
    // The dead host is given up on after its two attempts; the asked one never is.
    for line in stderr.iter().filter(|l| l.contains("unreachable after")) {
        assert!(
            line.contains(&format!(": redirected to {dead}/gone")),
            "{line}"
        );
    }
}

/// URLs redirected to a dead host share its attempts, as its own URLs would: once they are
/// spent, the next URL led there fails as soon as it is redirected, with the host's line, where
/// each spent its own retries (four requests each to the live host, a connect timeout each
/// against a black hole).
#[test]
fn urls_redirected_to_a_dead_host_share_its_attempts() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let asked = Arc::new(AtomicUsize::new(0));
    let (counted, target) = (asked.clone(), dead.clone());
    let server = serve(move |req| {
        counted.fetch_add(1, Ordering::SeqCst);
        let n = req.path().trim_start_matches("/r");
        Reply::status(302).with_header("Location", &format!("{target}/gone{n}.bin"))
    });
    let urls: Vec<String> = (0..12).map(|i| server.url(&format!("/r{i}"))).collect();
    let mut args: Vec<&str> = urls.iter().map(String::as_str).collect();
    args.extend(["-j", "1", "--retries", "3", "--max-retry-wait", "0.1"]);
    args.extend(["--progress", "none"]);
    let sandbox = Sandbox::new();
    let (code, _, stderr) = sandbox.run(&args);
    assert_eq!(code, 1, "{stderr:#?}");
    assert!(sandbox.files().is_empty(), "{stderr:#?}");
    for (i, url) in urls.iter().enumerate() {
        let expected = format!(
            "fetchpar: {url}: redirected to {dead}/gone{i}.bin: host unreachable after 4 \
             attempts (connection refused); nothing saved"
        );
        assert!(stderr.contains(&expected), "{expected}\n{stderr:#?}");
    }
    // The first URL's four attempts, then one request for each of the eleven others.
    assert_eq!(asked.load(Ordering::SeqCst), 4 + 11, "{stderr:#?}");
}

/// Under a limit of 64 open files (soft and hard), -j 256 cannot have 256 connections: every URL is saved
/// all the same (fewer downloads at once, one note), none fails for want of a descriptor.
#[test]
fn a_low_open_file_limit_costs_concurrency_not_urls() {
    let (server, expected) = file_server(1000, 10, 2000, Duration::ZERO);
    let list = urls_of(&server, &expected).join("\n");
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.root().join("list"), list).unwrap();
    let bin = env!("CARGO_BIN_EXE_fetchpar");
    let child = std::process::Command::new("sh")
        .current_dir(sandbox.root())
        .args(["-c", "ulimit -n 64 && exec \"$0\" \"$@\"", bin])
        .args(["-i", "list", "-j", "256", "-o", "out", "--progress", "none"])
        .env("NO_PROXY", "127.0.0.1")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let output = finish_within(child, Duration::from_secs(90));
    let stderr = lines(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr:#?}");
    assert_eq!(sandbox.files(), expected);
    let notes: Vec<_> = stderr
        .iter()
        .filter(|l| l.contains("open-file limit"))
        .collect();
    assert_eq!(notes.len(), 1, "{stderr:#?}");
    // 64 descriptors leave room for a handful of downloads: the summary says how many ran.
    let used = workers_in_summary(&stderr);
    assert!((1..=12).contains(&used), "{stderr:#?}");
}

/// `--limit-rate` holds the whole run (not each download) to the rate: 1 MiB over four
/// downloads at 512 KiB/s cannot end before two seconds less one burst (an eighth of a second's
/// worth). Only this lower bound is asserted; the harness measures the rate itself.
#[test]
fn limit_rate_holds_the_whole_run_to_the_rate() {
    let (server, expected) = file_server(4, 256 * 1024, 256 * 1024 + 1, Duration::ZERO);
    let urls = urls_of(&server, &expected);
    let mut args: Vec<&str> = urls.iter().map(String::as_str).collect();
    args.extend(["-j", "4", "--limit-rate", "512K", "--progress", "none"]);
    let sandbox = Sandbox::new();
    let began = std::time::Instant::now();
    let (code, _, stderr) = sandbox.run(&args);
    let took = began.elapsed();
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(sandbox.files(), expected);
    let (bytes, rate) = (4.0 * 256.0 * 1024.0, 512.0 * 1024.0);
    let floor = Duration::from_secs_f64((bytes - rate / 8.0) / rate);
    assert!(took >= floor, "{took:?} for {bytes} bytes at {rate} B/s");
}

/// A `503` with `Retry-After` pauses the host, not only the URL that got it: no request reaches
/// that host until the pause is over (counted server-side from the moment the 503 was answered;
/// a slow machine can only make later requests later), and another host's downloads go on
/// meanwhile.
#[test]
fn retry_after_pauses_the_whole_host_and_only_it() {
    const PAUSE: Duration = Duration::from_secs(3);
    type Log = Arc<std::sync::Mutex<Vec<(String, std::time::Instant)>>>;
    let log: Log = Arc::default();
    let answered_503: Arc<std::sync::Mutex<Option<std::time::Instant>>> = Arc::default();
    let data = body(800, 5);
    let busy = {
        let (log, answered_503, data) = (log.clone(), answered_503.clone(), data.clone());
        serve(move |req| {
            log.lock()
                .unwrap()
                .push((req.path().to_string(), std::time::Instant::now()));
            let mut first = answered_503.lock().unwrap();
            if req.path() == "/first.bin" && first.is_none() {
                // Set when the reply leaves the handler: the client can know of it only later.
                *first = Some(std::time::Instant::now());
                return Reply::status(503).with_header("Retry-After", "3");
            }
            Reply::file(data.clone())
        })
    };
    let other_log: Log = Arc::default();
    let other = {
        let (log, data) = (other_log.clone(), data.clone());
        serve(move |req| {
            log.lock()
                .unwrap()
                .push((req.path().to_string(), std::time::Instant::now()));
            // Each reply takes a while, so the other host's downloads span the pause.
            std::thread::sleep(Duration::from_millis(100));
            Reply::file(data.clone())
        })
    };
    let mut urls = vec![busy.url("/first.bin")];
    urls.extend((0..4).map(|i| busy.url(&format!("/a{i}.bin"))));
    urls.extend((0..10).map(|i| other.url(&format!("/b{i}.bin"))));
    let mut args: Vec<&str> = urls.iter().map(String::as_str).collect();
    // One at a time per host: nothing to the busy host is in flight when its 503 goes out.
    args.extend(["-j", "2", "--per-host", "1", "--progress", "none"]);
    let sandbox = Sandbox::new();
    let (code, _, stderr) = sandbox.run(&args);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(sandbox.files().len(), 15, "{stderr:#?}");
    let t0 = answered_503.lock().unwrap().expect("the 503 was sent");
    let log = log.lock().unwrap();
    let after: Vec<_> = log.iter().filter(|(_, at)| *at > t0).collect();
    // The paused URL's retry, and whichever others were left, came after the pause, none
    // during it.
    assert!(
        after.iter().any(|(path, _)| path == "/first.bin"),
        "{log:?}"
    );
    let next = after.iter().map(|(_, at)| *at).min().unwrap();
    assert!(next - t0 >= PAUSE - Duration::from_millis(500), "{log:?}");
    // The other host was not paused: some of its requests arrived during the pause.
    let other_log = other_log.lock().unwrap();
    assert!(
        other_log.iter().any(|(_, at)| *at > t0 && *at < next),
        "{other_log:?}"
    );
}

/// A name that does not exist is not retried, by its URL or by any other of its host. The
/// name here has a label of 64 bytes, one more than DNS allows: the C library answers "Name or
/// service not known" (EAI_NONAME, as for NXDOMAIN) without sending a query, so the test needs
/// no network and no resolver.
#[test]
fn a_name_that_does_not_exist_is_not_retried() {
    let host = format!("{}.example", "a".repeat(64));
    let urls: Vec<String> = (0..3).map(|i| format!("http://{host}/n{i}.bin")).collect();
    let mut args: Vec<&str> = urls.iter().map(String::as_str).collect();
    args.extend(["-j", "1", "--retries", "3", "--json", "--progress", "none"]);
    let sandbox = Sandbox::new();
    let (code, stdout, stderr) = sandbox.run(&args);
    assert_eq!(code, 1, "{stderr:#?}");
    assert!(sandbox.files().is_empty());
    let records: Vec<serde_json::Value> = stdout
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "url")
        .collect();
    assert_eq!(records.len(), 3, "{stdout:#?}");
    for record in &records {
        assert_eq!(record["status"], "failed", "{record}");
        assert_eq!(record["retries"], 0, "{record}");
        let error = record["error"].as_str().unwrap();
        assert!(error.contains("Name or service not known"), "{record}");
    }
    for url in &urls {
        let line = stderr
            .iter()
            .find(|l| l.starts_with(&format!("fetchpar: {url}: ")))
            .unwrap_or_else(|| panic!("no line for {url}: {stderr:#?}"));
        assert!(
            line.contains("Name or service not known") && !line.contains("retries"),
            "{line}"
        );
    }
    assert!(
        !stderr.iter().any(|l| l.contains("retrying")),
        "{stderr:#?}"
    );
}

/// An HTTP/1.0 server on one thread that answers `n` GETs with `data`, and closes: the headers
/// and half the body at once, the other half after the client's next connection comes in, or
/// after `pause`. Whether the next connection came in that pause, reply by reply.
fn closing_with_a_pause(
    data: Arc<[u8]>,
    n: usize,
    pause: Duration,
) -> (u16, std::thread::JoinHandle<Vec<bool>>) {
    use std::io::{ErrorKind, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let accept = move |within: Duration| {
        let deadline = std::time::Instant::now() + within;
        loop {
            match listener.accept() {
                Ok((conn, _)) => return Some(conn),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let order = std::thread::spawn(move || {
        let (mut next, mut came) = (None, Vec::new());
        for i in 0..n {
            let mut conn = next
                .take()
                .or_else(|| accept(Duration::from_secs(30)))
                .expect("a connection");
            conn.set_nonblocking(false).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let mut request = Vec::new();
            let mut buf = [0; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let got = conn.read(&mut buf).unwrap();
                assert!(got > 0, "a request");
                request.extend_from_slice(&buf[..got]);
            }
            let (first, rest) = data.split_at(data.len() / 2);
            let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", data.len());
            conn.write_all(head.as_bytes()).unwrap();
            conn.write_all(first).unwrap();
            if i + 1 < n {
                next = accept(pause);
                came.push(next.is_some());
            }
            conn.write_all(rest).unwrap();
        }
        came
    });
    (port, order)
}

/// A threaded HTTP/1.0 server that answers every GET at once with `data`, sent in eight pieces
/// `gap` apart (a server that limits each connection's rate), and closes; its port and the most
/// requests it was answering at once.
fn closing_and_slow_to_send(data: Arc<[u8]>, gap: Duration) -> (u16, Arc<AtomicUsize>) {
    closing_threaded(data, gap, |conn, data, gap| {
        use std::io::Write;
        for piece in data.chunks(data.len().div_ceil(8)) {
            std::thread::sleep(gap);
            conn.write_all(piece)?;
        }
        Ok(())
    })
}

/// A host that closes every connection and answers at once, but sends each body slowly: more at
/// once overlap the bodies, so it starts at four once its first reply says it closes (one at a
/// time, as for a small reply, spent its first sixteen downloads one by one).
#[test]
fn a_closing_host_with_slow_bodies_gets_four_at_once() {
    let data = body(64 * 1024, 4);
    let (port, most) = closing_and_slow_to_send(data.clone(), Duration::from_millis(20));
    let urls: Vec<String> = (0..12)
        .map(|i| format!("http://127.0.0.1:{port}/f{i}.bin"))
        .collect();
    let stderr = all_of(&urls, &data);
    // Five only if a reply's thread is still to count itself out as the next request comes in.
    let most = most.load(Ordering::SeqCst);
    assert!((4..=5).contains(&most), "{most} at once: {stderr:#?}");
}

/// `n` files `/f0.bin`… of `data` from 127.0.0.1:`port` at `-j jobs --per-host 1`: exit 0, a
/// line each, every byte right.
fn one_at_a_time(port: u16, n: usize, jobs: &str, data: &[u8]) {
    let urls: Vec<String> = (0..n)
        .map(|i| format!("http://127.0.0.1:{port}/f{i}.bin"))
        .collect();
    let mut args: Vec<&str> = urls.iter().map(String::as_str).collect();
    args.extend(["-j", jobs, "--per-host", "1", "--progress", "none"]);
    let sandbox = Sandbox::new();
    let (code, stdout, stderr) = sandbox.run(&args);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(stdout.len(), n);
    assert!(sandbox.files().values().all(|sum| *sum == sha256(data)));
}

/// A host that closes every connection, one download at a time: a small reply's slot is handed
/// on as its headers come in, so the next connect does not wait for the rest of its body and
/// for the file to be saved (the server, serving in turn, is not left idle meanwhile). Before,
/// no next connection came until the last body was in.
#[test]
fn a_closing_host_gets_its_next_connection_as_a_small_reply_comes_in() {
    let (data, n) = (body(1024, 3), 12);
    let (port, came) = closing_with_a_pause(data.clone(), n, Duration::from_millis(300));
    one_at_a_time(port, n, "4", &data);
    let came = came.join().unwrap();
    let early = came.iter().filter(|&&came| came).count();
    assert!(
        early * 2 >= n - 1,
        "next connection in the pause {early} times of {}",
        n - 1
    );
}

/// A threaded HTTP/1.0 server that answers every GET with `data`, and closes: the headers and
/// half the body, then `pause`, then the rest. The most requests it was answering at once.
fn closing_and_stalling(data: Arc<[u8]>, pause: Duration) -> (u16, Arc<AtomicUsize>) {
    closing_threaded(data, pause, |conn, data, pause| {
        use std::io::Write;
        let (first, rest) = data.split_at(data.len() / 2);
        conn.write_all(first)?;
        std::thread::sleep(pause);
        conn.write_all(rest)
    })
}

/// A threaded HTTP/1.0 server that answers every GET with the headers for `data`, then `send`s
/// it (given `pause`), and closes; its port and the most requests it was answering at once.
fn closing_threaded(
    data: Arc<[u8]>,
    pause: Duration,
    send: fn(&mut std::net::TcpStream, &[u8], Duration) -> std::io::Result<()>,
) -> (u16, Arc<AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let seen = most.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let (data, now, most) = (data.clone(), now.clone(), most.clone());
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut buf = [0; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(got) => request.extend_from_slice(&buf[..got]),
                    }
                }
                most.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", data.len());
                let _ = conn
                    .write_all(head.as_bytes())
                    .and_then(|()| send(&mut conn, &data, pause));
                now.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (port, seen)
}

/// A slot handed on early never turns into more: while a small reply whose slot went on is
/// still coming in, the next one keeps its own, so a server stalling in the middle of its
/// replies answers at most one more than `--per-host` at once. Before, each stalled reply
/// handed its slot on again: four at once at `-j 8 --per-host 1`, sixteen at `-j 32`.
#[test]
fn a_server_stalling_mid_reply_gets_at_most_one_more_than_per_host() {
    let (data, n) = (body(1024, 5), 12);
    let (port, most) = closing_and_stalling(data.clone(), Duration::from_millis(150));
    one_at_a_time(port, n, "8", &data);
    let most = most.load(Ordering::SeqCst);
    assert!(most <= 2, "{most} replies at once");
}
