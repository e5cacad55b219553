//! fetchpar in scripts: JSON Lines, `-0`, a closed stdout, `URL OUTPUT` lists, duplicates, odd
//! bytes in lists, and shards.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn body(len: usize, seed: u8) -> Arc<[u8]> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(17).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

/// A server for `/ok-N.bin` (a body per N), `/slow.bin`, and 404 for anything else.
fn server() -> Server {
    Server::start(|req| {
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
    .unwrap()
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

#[test]
fn a_closed_stdout_stops_quietly_and_leaves_nothing_incomplete() {
    // Slow replies, so that most downloads are still to come when the reader goes away.
    let (server, expected) = file_server(40, 20_000, 60_000, Duration::from_millis(50));
    let urls: Vec<String> = expected
        .keys()
        .map(|name| server.url(&format!("/{name}")))
        .collect();
    for json in [false, true] {
        let out = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fetchpar"));
        cmd.args(["-j", "2", "--progress", "none", "-o"])
            .arg(out.path())
            .args(&urls)
            .env("NO_PROXY", "127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd.spawn().unwrap();
        // Like `| head -c1`: read one byte, then close the pipe.
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 1];
        stdout.read_exact(&mut first).unwrap();
        drop(stdout);
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "json={json}: {stderr}");
        // Quiet: no panic, no "Broken pipe", and no summary (it stopped because of the pipe).
        assert_eq!(stderr, "", "json={json}");
        // Whatever is under a final name is complete; the rest is only in .part files.
        for (name, sum) in checksums(out.path()) {
            // NAME.part, and the NAME.part.meta that lets -c resume it.
            if let Some((full, _)) = name.split_once(".part") {
                assert!(expected.contains_key(full), "{name}");
                continue;
            }
            assert_eq!(expected.get(&name), Some(&sum), "json={json}: {name}");
        }
    }
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
    // Two lines named the same path: whichever is ready second gets a suffix, as any clash does.
    let mut clashing = [
        got.remove("sub/dir/one.bin").unwrap(),
        got.remove("sub/dir/one.1.bin").unwrap(),
    ];
    clashing.sort();
    let mut both = [ok_sum(1), ok_sum(4)];
    both.sort();
    assert_eq!(clashing, both);
    let mut want = BTreeMap::new();
    want.insert("keep/ok-2.bin".to_string(), ok_sum(2));
    // An existing file is never replaced, even when a line names it.
    want.insert("mine.bin".to_string(), sha256(b"precious"));
    want.insert("mine.1.bin".to_string(), ok_sum(5));
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
}
