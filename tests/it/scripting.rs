//! fetchpar in scripts: JSON Lines, `-0`, a closed stdout, `URL OUTPUT` lists, duplicates, odd
//! bytes in lists, request options and their secrets, shards, and `--generate`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::*;
use base64::Engine as _;
use serde_json::Value;

/// A server for `/ok-N.bin` (a body per N), `/slow.bin`, and 404 for anything else.
fn server() -> Server {
    serve(|req| {
        let path = req.path();
        match path
            .strip_prefix("/ok-")
            .and_then(|p| p.strip_suffix(".bin"))
        {
            Some(n) => match n.parse::<u8>() {
                Ok(n) => Reply::file(body(1000 + usize::from(n), n)),
                Err(_) => Reply::status(404),
            },
            None => Reply::status(404),
        }
    })
}

fn ok_sum(n: u8) -> String {
    sha256(&body(1000 + usize::from(n), n))
}

/// Every stdout line as JSON; panics (failing the test) on a line that is not.
fn records(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8(stdout.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn write_list(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join("urls.txt");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn json_has_one_record_per_input_and_a_summary() {
    let server = server();
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    let list = format!(
        "{}\n{}\nnot-a-url\n{}\n",
        server.url("/ok-1.bin"),
        server.url("/missing.bin"),
        server.url("/ok-1.bin"),
    );
    let assert = fetchpar()
        .args(["--json", "--progress", "none", "-o"])
        .arg(&out)
        .arg("-i")
        .arg(write_list(root.path(), list.as_bytes()))
        .arg(server.url("/ok-2.bin"))
        .assert()
        .code(1);
    let output = assert.get_output();
    let recs = records(&output.stdout);
    assert_eq!(recs.len(), 6, "5 inputs and a summary: {recs:#?}");
    let summary = recs.last().unwrap();
    assert_eq!(summary["type"], "summary");
    let by_status = |status: &str| -> Vec<&Value> {
        recs.iter()
            .filter(|r| r["type"] == "url" && r["status"] == status)
            .collect()
    };

    let saved = by_status("saved");
    assert_eq!(saved.len(), 2);
    for rec in &saved {
        let path = rec["path"].as_str().unwrap();
        let n: u8 = if rec["url"].as_str().unwrap().ends_with("/ok-1.bin") {
            1
        } else {
            2
        };
        assert_eq!(sha256(&std::fs::read(path).unwrap()), ok_sum(n));
        assert_eq!(rec["http_status"], 200);
        assert_eq!(rec["bytes"], 1000 + u64::from(n));
        assert_eq!(rec["error"], Value::Null);
        assert_eq!(rec["retries"], 0);
        assert!(rec["elapsed_ms"].is_u64());
        assert_eq!(rec["line"], if n == 1 { 1.into() } else { Value::Null });
    }

    let failed = by_status("failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["url"], server.url("/missing.bin"));
    assert_eq!(failed[0]["http_status"], 404);
    assert_eq!(failed[0]["line"], 2);
    assert_eq!(failed[0]["path"], Value::Null);
    assert!(failed[0]["error"].as_str().unwrap().contains("404"));

    let invalid = by_status("invalid");
    assert_eq!(invalid.len(), 1);
    assert_eq!(invalid[0]["line"], 3);
    assert_eq!(invalid[0]["url"], "not-a-url");
    assert!(invalid[0]["error"].as_str().unwrap().contains("http://"));

    let duplicate = by_status("duplicate");
    assert_eq!(duplicate.len(), 1);
    assert_eq!(duplicate[0]["line"], 4);
    assert_eq!(duplicate[0]["duplicate_of"], 1);
    assert_eq!(duplicate[0]["error"], Value::Null);

    assert_eq!(summary["saved"], 2);
    assert_eq!(summary["failed"], 1);
    assert_eq!(summary["invalid"], 1);
    assert_eq!(summary["duplicates"], 1);
    assert_eq!(summary["downloads"], 3);
    assert_eq!(summary["jobs"], 8);
    assert!(summary["wall_ms"].is_u64() && summary["sequential_ms"].is_u64());
    assert_eq!(summary["compare"], Value::Null);

    // Downloaded once, reported once on stderr too.
    let hits = server
        .requests()
        .iter()
        .filter(|r| r.path() == "/ok-1.bin")
        .count();
    assert_eq!(hits, 1);
    let stderr = lines(&output.stderr);
    let dup: Vec<_> = stderr
        .iter()
        .filter(|l| l.contains("same URL as line 1"))
        .collect();
    assert_eq!(dup.len(), 1, "{stderr:#?}");
    assert!(dup[0].starts_with("fetchpar: line 4: "), "{stderr:#?}");
    assert_eq!(checksums(&out).len(), 2);
}

#[test]
fn json_summary_carries_the_measured_comparison() {
    let server = server();
    let out = tempfile::tempdir().unwrap();
    let assert = fetchpar()
        .args(["--json", "--compare", "-q", "-j", "2", "-o"])
        .arg(out.path())
        .args([server.url("/ok-1.bin"), server.url("/ok-2.bin")])
        .assert()
        .success();
    let recs = records(&assert.get_output().stdout);
    assert_eq!(recs.len(), 3, "{recs:#?}");
    let compare = &recs[2]["compare"];
    assert_eq!(compare["sequential_saved"], 2);
    assert!(compare["sequential_wall_ms"].is_u64());
}

#[test]
fn print0_ends_each_path_with_nul() {
    let server = server();
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    let list = format!(
        "{} my file.bin\n{}\n",
        server.url("/ok-1.bin"),
        server.url("/ok-2.bin")
    );
    let assert = fetchpar()
        .args(["-0", "-o"])
        .arg(&out)
        .arg("-i")
        .arg(write_list(root.path(), list.as_bytes()))
        .assert()
        .success();
    let stdout = &assert.get_output().stdout;
    assert!(!stdout.contains(&b'\n'), "{stdout:?}");
    assert_eq!(stdout.last(), Some(&0));
    let mut paths: Vec<String> = stdout[..stdout.len() - 1]
        .split(|&b| b == 0)
        .map(|p| String::from_utf8(p.to_vec()).unwrap())
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            out.join("my file.bin").display().to_string(),
            out.join("ok-2.bin").display().to_string()
        ]
    );
    assert_eq!(
        sha256(&std::fs::read(out.join("my file.bin")).unwrap()),
        ok_sum(1)
    );
}

/// Waits until `ready` says so, for at most a minute; a hang guard, not a timing check.
fn wait_until(ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Starts fetchpar on `urls` (on stdin with `-i -`, or as arguments), stdout a pipe whose
/// reader takes the first line and goes away (`| head -1`); then `release` is set, so that
/// downloads held back until then finish and their records meet the closed pipe.
fn head_1(
    urls: &[String],
    stdin: bool,
    args: &[&str],
    release: &AtomicBool,
    ready: impl FnOnce(),
) -> (String, std::process::Output) {
    let mut cmd = command();
    cmd.args(["--progress", "none"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if stdin {
        cmd.args(["-i", "-"]);
    } else {
        cmd.args(urls);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if stdin {
        for url in urls {
            writeln!(input, "{url}").unwrap();
        }
    }
    drop(input);
    let mut first = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut first).unwrap();
    drop(stdout);
    ready();
    release.store(true, Ordering::SeqCst);
    (first, finish(child))
}

/// `… | head -1` while most downloads are under way: the run stops quietly, but its status says
/// that not every URL was saved (1, not 0 and not 130), and no download it stopped before its
/// first byte leaves an empty `.part` (a reviewer saw exit 0, 11-27 of 30 files and empty parts).
#[test]
fn a_closed_stdout_stops_quietly_and_exits_1_when_urls_are_left() {
    let bodies: Vec<Arc<[u8]>> = (0..30u8)
        // Some over 64 KiB, whose sidecar is written before their first byte.
        .map(|i| body(if i % 2 == 0 { 100_000 } else { 3000 }, i))
        .collect();
    let expected: BTreeMap<String, String> = (0..30)
        .map(|i| (format!("f{i:02}.bin"), sha256(&bodies[i])))
        .collect();
    for json in [false, true] {
        let release = Arc::new(AtomicBool::new(false));
        let (served, held) = (bodies.clone(), release.clone());
        // f00 at once; f01-f20 their headers, then silence (each reply opens the host's window
        // a little more); f21-f29 once the reader is gone.
        let server = serve(move |req| {
            let i: usize = req.path()[2..4].parse().unwrap();
            let reply = Reply::file(served[i].clone()).with_header("ETag", &format!("\"{i}\""));
            match i {
                0 => reply,
                1..=20 => reply.with_fault(Fault::StallAfter(0, Duration::from_secs(60))),
                _ => {
                    wait_until(|| held.load(Ordering::SeqCst));
                    reply
                }
            }
        });
        let urls: Vec<String> = expected
            .keys()
            .map(|n| server.url(&format!("/{n}")))
            .collect();
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().display().to_string();
        let mut args = vec!["-j", "30", "-o", &dir];
        if json {
            args.push("--json");
        }
        let stuck: Vec<PathBuf> = (1..=20)
            .map(|i| out.path().join(format!("f{i:02}.bin.part")))
            .collect();
        // The stuck downloads have their (empty) parts before the pipe's close is seen.
        let ready = || {
            wait_until(|| stuck.iter().all(|part| part.exists()));
            assert!(stuck.iter().all(|part| part.exists()), "never started");
        };
        let (first, output) = head_1(&urls, true, &args, &release, ready);
        assert!(first.contains("f00.bin"), "json={json}: {first}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "json={json}: {stderr}");
        // Quiet: no panic, no "cannot write to stdout", no summary (it stopped for the pipe).
        assert_eq!(stderr, "", "json={json}");
        let files = checksums(out.path());
        for (name, sum) in &files {
            let path = out.path().join(name);
            if name.ends_with(".part") {
                // A part holds bytes, and its sidecar lets -c resume them.
                assert!(
                    path.metadata().unwrap().len() > 0,
                    "json={json}: empty {name}"
                );
                assert!(
                    files.contains_key(&format!("{name}.meta")),
                    "json={json}: {name}"
                );
            } else if let Some(part) = name.strip_suffix(".meta") {
                assert!(
                    files.contains_key(part),
                    "json={json}: {name} without its part"
                );
            } else {
                assert_eq!(expected.get(name), Some(sum), "json={json}: {name}");
            }
        }
        assert!(files.contains_key("f00.bin"), "json={json}: {files:?}");
    }
}

/// `… | head -1` while the one download left is slow and nothing else is printed: the run
/// stops when the reader goes, not when that download would have written its path (a reviewer
/// saw it carry on for ten seconds, save the file and exit 0). Its bytes stay in the part.
#[test]
fn a_reader_gone_during_a_slow_download_stops_it() {
    let (fast, slow) = (body(3000, 1), body(200_000, 2));
    let server = serve(move |req| match req.path() {
        "/fast.bin" => Reply::file(fast.clone()),
        // Some 20 s in all: long enough never to end first on a busy machine.
        _ => Reply::file(slow.clone())
            .with_header("ETag", "\"s\"")
            .with_fault(Fault::Drip(1000, Duration::from_millis(100))),
    });
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().display().to_string();
    let urls = [server.url("/fast.bin"), server.url("/slow.bin")];
    let release = AtomicBool::new(true);
    let (first, output) = head_1(&urls, false, &["-j", "2", "-o", &dir], &release, || {});
    assert!(first.contains("fast.bin"), "{first}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr, "");
    assert!(!out.path().join("slow.bin").exists(), "stopped, not saved");
    assert!(out.path().join("slow.bin.part").exists(), "its bytes kept");
}

/// The pipe closed, but only after the last URL was saved: every URL was, so 0.
#[test]
fn a_stdout_closed_after_the_last_url_still_exits_0() {
    let release = Arc::new(AtomicBool::new(false));
    let held = release.clone();
    let server = serve(move |req| {
        if req.path() == "/last.bin" {
            wait_until(|| held.load(Ordering::SeqCst));
        }
        Reply::file(body(2000, req.path().len() as u8))
    });
    let urls = [server.url("/first.bin"), server.url("/last.bin")];
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().display().to_string();
    let (first, output) = head_1(&urls, false, &["-o", &dir], &release, || {});
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(first.contains("first.bin"), "{first}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "");
    let files = checksums(out.path());
    assert_eq!(files.get("first.bin"), Some(&sha256(&body(2000, 10))));
    assert_eq!(files.get("last.bin"), Some(&sha256(&body(2000, 9))));
    assert_eq!(files.len(), 2, "{files:?}");
}

#[test]
fn list_lines_may_name_outputs_inside_the_output_directory() {
    let server = server();
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("mine.bin"), b"precious").unwrap();
    let list = format!(
        "{u1} sub/dir/one.bin\n\
         {u2}\tkeep/\n\
         {u3} ../escape.bin\n\
         {u3} {abs}\n\
         {u4} sub/dir/one.bin\n\
         {u5} mine.bin\n\
         {u3} a/../../escape.bin\n",
        u1 = server.url("/ok-1.bin"),
        u2 = server.url("/ok-2.bin"),
        u3 = server.url("/ok-3.bin"),
        u4 = server.url("/ok-4.bin"),
        u5 = server.url("/ok-5.bin"),
        abs = root.path().join("abs.bin").display(),
    );
    let assert = fetchpar()
        .args(["--progress", "none", "-o"])
        .arg(&out)
        .arg("-i")
        .arg(write_list(root.path(), list.as_bytes()))
        .assert()
        .code(1);
    let stderr = lines(&assert.get_output().stderr);
    let errors: Vec<&String> = stderr
        .iter()
        .filter(|l| l.starts_with("fetchpar: line "))
        .collect();
    assert_eq!(errors.len(), 3, "{stderr:#?}");
    assert!(errors[0].starts_with("fetchpar: line 3: ") && errors[0].contains("'..'"));
    assert!(errors[1].starts_with("fetchpar: line 4: ") && errors[1].contains("absolute"));
    assert!(errors[2].starts_with("fetchpar: line 7: ") && errors[2].contains("'..'"));
    for e in &errors {
        assert!(e.contains("relative to the output directory"), "{e}");
    }

    let mut got = checksums(&out);
    // Two lines named the same path: the second in the list gets a number, as repeats do.
    assert_eq!(got.remove("sub/dir/one.bin"), Some(ok_sum(1)));
    assert_eq!(got.remove("sub/dir/one.1.bin"), Some(ok_sum(4)));
    let mut want = BTreeMap::new();
    want.insert("keep/ok-2.bin".to_string(), ok_sum(2));
    // An existing file is never replaced, even when a line names it.
    want.insert("mine.bin".to_string(), sha256(b"precious"));
    want.insert("mine~1.bin".to_string(), ok_sum(5));
    assert_eq!(got, want);
    let mut beside: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    beside.sort();
    assert_eq!(beside, ["out", "urls.txt"], "nothing written outside -o");
    assert!(!server.requests().iter().any(|r| r.path() == "/ok-3.bin"));
}

#[test]
fn lists_with_any_bytes_never_crash() {
    let server = server();
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    let mut list = Vec::new();
    list.extend_from_slice(format!("{}\r\n", server.url("/ok-1.bin")).as_bytes());
    list.extend_from_slice(b"http://h/\xff\xfe\xfd\r\n");
    list.extend_from_slice(format!("{}\0junk\n", server.url("/ok-9.bin")).as_bytes());
    list.extend(std::iter::repeat_n(b'a', 200_000));
    list.push(b'\n');
    list.extend((0u8..=255).filter(|&b| b != b'\n'));
    list.push(b'\n');
    list.extend_from_slice(format!("{} out.bin\r\n", server.url("/ok-2.bin")).as_bytes());
    list.extend_from_slice(b"\r\n\r\n");
    list.extend_from_slice(server.url("/ok-3.bin").as_bytes()); // no final newline
    let assert = fetchpar()
        .args(["--json", "--progress", "none", "-o"])
        .arg(&out)
        .arg("-i")
        .arg(write_list(root.path(), &list))
        .assert()
        .code(1);
    let output = assert.get_output();
    let recs = records(&output.stdout);
    let invalid_lines: Vec<&Value> = recs
        .iter()
        .filter(|r| r["status"] == "invalid")
        .map(|r| &r["line"])
        .collect();
    assert_eq!(invalid_lines, [2, 3, 4, 5], "{recs:#?}");
    let stderr = lines(&output.stderr);
    for n in 2..=5 {
        let prefix = format!("fetchpar: line {n}: ");
        let count = stderr.iter().filter(|l| l.starts_with(&prefix)).count();
        assert_eq!(count, 1, "line {n}: {stderr:#?}");
    }
    assert!(stderr.iter().all(|l| !l.contains("panicked")));
    let mut want = BTreeMap::new();
    want.insert("ok-1.bin".to_string(), ok_sum(1));
    want.insert("out.bin".to_string(), ok_sum(2));
    want.insert("ok-3.bin".to_string(), ok_sum(3));
    assert_eq!(checksums(&out), want);
}

/// Runs fetchpar with `args` against `/ok-1.bin` and `/missing.bin` (one saved, one failed, so
/// both stdout and the error lines carry URLs), in JSON and in plain mode, and returns everything
/// it printed.
fn all_output(server: &Server, args: &[&str], base: &str) -> String {
    let mut all = String::new();
    for extra in [
        &["--json", "--progress", "lines"][..],
        &["--progress", "lines"],
    ] {
        let out = tempfile::tempdir().unwrap();
        let assert = fetchpar()
            .args(args)
            .args(extra)
            .arg("-o")
            .arg(out.path())
            .args([format!("{base}/ok-1.bin"), format!("{base}/missing.bin")])
            .assert()
            .code(1);
        let output = assert.get_output();
        all.push_str(&String::from_utf8_lossy(&output.stdout));
        all.push_str(&String::from_utf8_lossy(&output.stderr));
        assert!(output.status.code() == Some(1));
    }
    assert!(
        all.contains("missing.bin"),
        "failures still reported:\n{all}"
    );
    let _ = server;
    all
}

fn auth_headers(server: &Server) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter_map(|r| r.header("authorization").map(str::to_string))
        .collect()
}

fn basic(user_pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

#[test]
fn headers_user_agent_and_basic_auth_reach_the_server_and_stay_secret() {
    let server = server();
    let base = server.url("");
    let secret = "PASSsecret42";
    let all = all_output(
        &server,
        &[
            "--user",
            &format!("alice:{secret}"),
            "-H",
            "X-Trace: abc",
            "-H",
            "X-Trace: def",
            "-A",
            "probe/1.0",
        ],
        &base,
    );
    let encoded = basic(&format!("alice:{secret}"));
    assert!(
        !all.contains(secret) && !all.contains(&encoded[6..]),
        "{all}"
    );
    let requests = server.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r.header("authorization"), Some(encoded.as_str()));
        assert_eq!(r.header("user-agent"), Some("probe/1.0"));
        let traces: Vec<&str> = r
            .headers
            .iter()
            .filter(|(n, _)| n == "x-trace")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(traces, ["abc, def"]);
    }
}

#[test]
fn an_authorization_header_reaches_the_server_and_stays_secret() {
    let server = server();
    let token = "Bearer TOKENsecret77";
    let all = all_output(
        &server,
        &["-H", &format!("Authorization: {token}")],
        &server.url(""),
    );
    assert!(!all.contains("TOKENsecret77"), "{all}");
    let auth = auth_headers(&server);
    assert!(
        !auth.is_empty() && auth.iter().all(|a| a == token),
        "{auth:?}"
    );
}

#[test]
fn credentials_in_the_url_win_over_user_and_stay_secret() {
    let server = server();
    let base = format!("http://bob:URLsecret99@{}", server.addr());
    let all = all_output(&server, &["--user", "alice:other"], &base);
    assert!(!all.contains("URLsecret99"), "{all}");
    assert!(all.contains("***@"), "the URL is shown redacted:\n{all}");
    let auth = auth_headers(&server);
    let want = basic("bob:URLsecret99");
    assert!(
        !auth.is_empty() && auth.iter().all(|a| *a == want),
        "{auth:?}"
    );
}

#[test]
fn a_proxy_from_the_flag_or_the_environment_carries_the_requests() {
    let proxy = serve(|req| {
        if req.target == "http://files.invalid/x.bin" {
            Reply::file(body(500, 9))
        } else {
            Reply::status(400)
        }
    });
    let secret = "PROXYsecret5";
    let flag = format!("http://pu:{secret}@{}", proxy.addr());
    let from_env = format!("http://{}", proxy.addr());
    for (args, env) in [
        (vec!["--proxy", flag.as_str()], None),
        (vec![], Some(from_env.as_str())),
    ] {
        let out = tempfile::tempdir().unwrap();
        let mut cmd = fetchpar();
        cmd.env_remove("NO_PROXY").env_remove("no_proxy");
        if let Some(p) = env {
            cmd.env("HTTP_PROXY", p);
        }
        let assert = cmd
            .args(&args)
            .args(["--json", "--progress", "lines", "-o"])
            .arg(out.path())
            .args(["http://files.invalid/x.bin", "http://files.invalid/nope"])
            .assert()
            .code(1);
        let output = assert.get_output();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!all.contains(secret), "{all}");
        assert_eq!(
            sha256(&std::fs::read(out.path().join("x.bin")).unwrap()),
            sha256(&body(500, 9))
        );
    }
    let requests = proxy.requests();
    let targets: BTreeSet<&str> = requests.iter().map(|r| r.target.as_str()).collect();
    assert!(
        targets.contains("http://files.invalid/x.bin"),
        "{targets:?}"
    );
    let with_auth = requests
        .iter()
        .filter(|r| {
            r.header("proxy-authorization") == Some(basic(&format!("pu:{secret}")).as_str())
        })
        .count();
    assert_eq!(with_auth, 2, "the flag's credentials went to the proxy");
}

#[test]
fn bad_request_options_are_usage_errors_that_keep_secrets() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let missing = dir.path().join("missing.pem");
    let garbage = garbage.to_str().unwrap();
    let missing = missing.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["-H", "Authorization Bearer SECRETtok"], "colon"),
        (vec!["-H", "Bad Name: x"], "header name"),
        (
            vec!["-H", "Authorization: Bearer SECRETtok\u{1}"],
            "control",
        ),
        (vec!["-A", "bad\nagent"], "user agent"),
        (vec!["--user", "SECRETuser"], "USER:PASSWORD"),
        (vec!["--proxy", "gopher://h:1"], "socks5://"),
        (vec!["--proxy", "://SECRETpw@h"], "proxy URL"),
        (vec!["--cacert", missing], "missing.pem"),
        (vec!["--cacert", garbage], "no certificate"),
        (vec!["--shard", "5/4"], "from 1 to N"),
        (vec!["--shard", "auto"], "SLURM_ARRAY_TASK_ID"),
        (vec!["-0", "--json"], "cannot be used with"),
    ];
    for (args, why) in cases {
        let assert = fetchpar()
            .env_remove("JOB_COMPLETION_INDEX")
            .env_remove("SLURM_ARRAY_TASK_ID")
            .args(&args)
            .arg(server.url("/ok-1.bin"))
            .current_dir(dir.path())
            .assert()
            .code(2);
        let output = assert.get_output();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(why), "{args:?}: {stderr}");
        assert!(!stderr.contains("SECRET"), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty());
    }
    let assert = fetchpar()
        .env("FETCHPAR_SHARD", "three")
        .arg(server.url("/ok-1.bin"))
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr);
    assert!(stderr.starts_with("fetchpar: FETCHPAR_SHARD: "), "{stderr}");
    assert!(server.requests().is_empty(), "nothing was downloaded");
}

#[test]
fn shards_cover_every_url_exactly_once() {
    let server = server();
    let root = tempfile::tempdir().unwrap();
    let mut list: String = (0..60)
        .map(|n| format!("{}\n", server.url(&format!("/ok-{n}.bin"))))
        .collect();
    list.push_str("garbage line\n");
    list.push_str(&format!("{}\n", server.url("/ok-7.bin")));
    let list_path = write_list(root.path(), list.as_bytes());
    let mut saved: Vec<String> = Vec::new();
    let mut invalid = 0;
    let mut duplicates = 0;
    // Three ways to say which shard: the flag, the variable, and a Kubernetes index.
    type Way<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);
    let ways: [Way; 3] = [
        (&["--shard", "1/3"], &[]),
        (&[], &[("FETCHPAR_SHARD", "2/3")]),
        (&["--shard", "auto/3"], &[("JOB_COMPLETION_INDEX", "2")]),
    ];
    for (k, (args, env)) in ways.iter().enumerate() {
        let out = root.path().join(format!("shard-{k}"));
        let mut cmd = fetchpar();
        for (name, value) in *env {
            cmd.env(name, value);
        }
        let assert = cmd
            .args(*args)
            .args(["--json", "-q", "-o"])
            .arg(&out)
            .arg("-i")
            .arg(&list_path)
            .assert();
        let recs = records(&assert.get_output().stdout);
        let before = saved.len();
        for rec in &recs {
            match rec["status"].as_str() {
                Some("saved") => saved.push(rec["url"].as_str().unwrap().to_string()),
                Some("invalid") => invalid += 1,
                Some("duplicate") => duplicates += 1,
                Some(other) => panic!("unexpected {other}: {rec}"),
                None => assert_eq!(rec["type"], "summary"),
            }
        }
        let mine = saved.len() - before;
        assert!(mine > 0 && mine < 60, "shard {k} saved {mine} of 60");
    }
    saved.sort();
    let mut want: Vec<String> = (0..60)
        .map(|n| server.url(&format!("/ok-{n}.bin")))
        .collect();
    want.sort();
    assert_eq!(saved, want, "every URL saved by exactly one shard");
    assert_eq!(invalid, 1, "an invalid line is reported by one shard only");
    assert_eq!(
        duplicates, 1,
        "a duplicate is caught by the one shard that owns it"
    );
    assert_eq!(server.requests().len(), 60);
    let assert = fetchpar()
        .args(["--shard", "2/3", "-o"])
        .arg(root.path().join("again"))
        .arg("-i")
        .arg(&list_path)
        .assert()
        .success();
    let stderr = lines(&assert.get_output().stderr);
    assert!(
        stderr[0].starts_with("fetchpar: shard 2/3: downloading only"),
        "{stderr:#?}"
    );
}

#[test]
fn generate_prints_completions_and_a_man_page() {
    let markers = [
        ("bash", "complete -F"),
        ("zsh", "#compdef fetchpar"),
        ("fish", "complete -c fetchpar"),
        ("powershell", "Register-ArgumentCompleter"),
        ("elvish", "edit:completion:arg-completer[fetchpar]"),
        ("man", ".TH fetchpar"),
    ];
    for (shell, marker) in markers {
        let assert = fetchpar().args(["--generate", shell]).assert().success();
        let output = assert.get_output();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains(marker), "{shell}: {marker} missing");
        assert!(text.contains("print0"), "{shell}: flags missing");
        assert!(output.stderr.is_empty());
        if shell == "bash" {
            // Where bash exists (CI has it), the script must at least parse.
            let dir = tempfile::tempdir().unwrap();
            let script = dir.path().join("fetchpar.bash");
            std::fs::write(&script, &output.stdout).unwrap();
            if let Ok(status) = Command::new("bash").arg("-n").arg(&script).status() {
                assert!(status.success(), "bash -n rejects the completion script");
            }
        }
    }
    fetchpar().args(["--generate", "tcsh"]).assert().code(2);
}

#[test]
fn no_escape_codes_when_stderr_is_not_a_terminal() {
    let server = server();
    let out = tempfile::tempdir().unwrap();
    let assert = fetchpar()
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .args(["--progress", "bars", "-o"])
        .arg(out.path())
        .args([server.url("/ok-1.bin"), server.url("/missing.bin")])
        .assert()
        .code(1);
    let stderr = &assert.get_output().stderr;
    assert!(
        !stderr.contains(&0x1b),
        "{}",
        String::from_utf8_lossy(stderr)
    );
    assert!(String::from_utf8_lossy(stderr).contains("missing.bin"));
}

#[test]
fn continue_reports_complete_files_as_skipped_records() {
    let server = server();
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    let list = format!(
        "{}\n{} named/two.bin\n",
        server.url("/ok-1.bin"),
        server.url("/ok-2.bin")
    );
    let list_path = write_list(root.path(), list.as_bytes());
    let run = || {
        let assert = fetchpar()
            .args(["-c", "--json", "-q", "-o"])
            .arg(&out)
            .arg("-i")
            .arg(&list_path)
            .assert()
            .success();
        records(&assert.get_output().stdout)
    };
    let first = run();
    assert_eq!(first.iter().filter(|r| r["status"] == "saved").count(), 2);
    let second = run();
    assert_eq!(second.len(), 3, "{second:#?}");
    for rec in &second[..2] {
        assert_eq!(rec["status"], "skipped", "{rec}");
        assert_eq!(rec["http_status"], Value::Null);
        assert_eq!(rec["bytes"], 0);
    }
    let mut paths: Vec<&str> = second[..2]
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    paths.sort();
    let want = [out.join("named/two.bin"), out.join("ok-1.bin")];
    assert_eq!(
        paths,
        want.iter().map(|p| p.to_str().unwrap()).collect::<Vec<_>>()
    );
    assert_eq!(second[2]["skipped"], 2);
    assert_eq!(second[2]["saved"], 0);
    let requests = server.requests();
    assert_eq!(requests.len(), 4, "{requests:#?}");
    assert!(
        requests[2..].iter().all(|r| r.header("range").is_some()),
        "the second time only asks whether anything is left: {requests:#?}"
    );
}

#[test]
fn a_named_output_beats_content_disposition() {
    let server = serve(|_| {
        Reply::file(body(300, 4))
            .with_header("Content-Disposition", "attachment; filename=server.bin")
    });
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    let list = format!("{} mine.bin\n{}\n", server.url("/a"), server.url("/b"));
    fetchpar()
        .args(["--content-disposition", "-o"])
        .arg(&out)
        .arg("-i")
        .arg(write_list(root.path(), list.as_bytes()))
        .assert()
        .success();
    let names: Vec<String> = checksums(&out).into_keys().collect();
    assert_eq!(names, ["mine.bin", "server.bin"]);
}

#[test]
fn a_list_output_never_writes_through_a_symlinked_folder() {
    let server = serve(|_| Reply::file(b"payload".to_vec()));
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    let outside = root.path().join("outside");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, out.join("sub")).unwrap();
    let list = format!(
        "{} sub/x.txt\n{} real/y.txt\n",
        server.url("/x"),
        server.url("/y")
    );
    let assert = fetchpar()
        .arg("-o")
        .arg(&out)
        .write_stdin(list)
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        stderr.contains("refusing to write through the symbolic link"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "written outside"
    );
    assert_eq!(std::fs::read(out.join("real/y.txt")).unwrap(), b"payload");
}

#[test]
fn a_password_with_a_slash_in_a_bad_line_is_not_echoed() {
    let out = tempfile::tempdir().unwrap();
    let assert = fetchpar()
        .args(["--json", "-o"])
        .arg(out.path())
        .write_stdin("http://dave:pa/ss4secret@127.0.0.1:1/z\n")
        .assert()
        .code(1);
    let output = assert.get_output();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!all.contains("ss4secret"), "{all}");
    assert!(all.contains("line 1"), "{all}");
}

#[test]
fn a_failing_stdout_stops_the_run_with_one_line_and_exit_1() {
    let (server, expected) = file_server(3, 100, 200, Duration::ZERO);
    let out = tempfile::tempdir().unwrap();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let child = command()
        .args(["-j", "1", "--progress", "none", "-o"])
        .arg(out.path())
        .args(urls_of(&server, &expected))
        .stdout(full)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = finish(child);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        stderr.matches("fetchpar: cannot write to stdout").count(),
        1,
        "{stderr}"
    );
    assert!(
        !stderr.lines().any(|l| l.starts_with("interrupted")),
        "not a Ctrl-C: {stderr}"
    );
    // Whatever was saved is complete; nothing else is under a final name.
    for (name, sum) in checksums(out.path()) {
        if !name.ends_with(".part") && !name.ends_with(".meta") {
            assert_eq!(expected.get(&name), Some(&sum), "{name}");
        }
    }
}
