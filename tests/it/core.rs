//! The core promise: many URLs, saved byte-exact, with failures reported and nothing clobbered.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::*;

#[test]
fn fifty_urls_saved_byte_exact_with_one_and_eight_workers() {
    let (server, expected) = file_server(50, 1, 64 * 1024, Duration::ZERO);
    let urls = urls_of(&server, &expected);
    for jobs in ["1", "8"] {
        let out = tempfile::tempdir().unwrap();
        let assert = fetchpar()
            .args(["-j", jobs, "-o"])
            .arg(out.path())
            .args(&urls)
            .assert()
            .success();
        assert_eq!(checksums(out.path()), expected, "with -j {jobs}");
        let stdout = lines(&assert.get_output().stdout);
        assert_eq!(stdout.len(), 50, "one path per saved file on stdout");
        for path in &stdout {
            assert!(Path::new(path).starts_with(out.path()), "{path}");
            assert!(Path::new(path).is_file(), "{path}");
        }
    }
}

#[test]
fn urls_from_a_list_file_and_from_stdin() {
    let (server, expected) = file_server(5, 1000, 5000, Duration::ZERO);
    let list: String = expected
        .keys()
        .map(|name| format!("  {}  \n\n# a comment\n", server.url(&format!("/{name}"))))
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let list_path = dir.path().join("urls.txt");
    std::fs::write(&list_path, &list).unwrap();
    let from_file = dir.path().join("from-file");
    fetchpar()
        .arg("-i")
        .arg(&list_path)
        .arg("-o")
        .arg(&from_file)
        .assert()
        .success();
    assert_eq!(checksums(&from_file), expected);

    let from_stdin = dir.path().join("from-stdin");
    fetchpar()
        .arg("-o")
        .arg(&from_stdin)
        .write_stdin(list.clone())
        .assert()
        .success();
    assert_eq!(checksums(&from_stdin), expected);

    let dash = dir.path().join("dash");
    fetchpar()
        .args(["-i", "-", "-o"])
        .arg(&dash)
        .write_stdin(list)
        .assert()
        .success();
    assert_eq!(checksums(&dash), expected);
}

#[test]
fn first_download_finishes_while_stdin_is_still_open() {
    let (server, expected) = file_server(1, 4096, 4096, Duration::ZERO);
    let out = tempfile::tempdir().unwrap();
    let mut child = command()
        .arg("-o")
        .arg(out.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", server.url("/file-00.bin")).unwrap();
    stdin.flush().unwrap();
    // stdin stays open: the file must land anyway. The deadline only bounds a broken build.
    let target = out.path().join("file-00.bin");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !target.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let landed_before_eof = target.exists();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(
        landed_before_eof,
        "the download waited for the end of stdin"
    );
    assert!(output.status.success());
    assert_eq!(checksums(out.path()), expected);
}

#[test]
fn failures_are_reported_and_the_rest_still_saved() {
    let good = body(10_000, 7);
    let short = body(10_000, 9);
    let server = {
        let (good, short) = (good.clone(), short.clone());
        serve(move |req| match req.path() {
            "/good.bin" => Reply::file(good.clone()),
            "/short.bin" => Reply::file(short.clone()).with_fault(Fault::ShortBody(4000)),
            _ => Reply::status(404),
        })
    };
    // A port that refuses: bind one, then close it.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/gone.bin", l.local_addr().unwrap())
    };
    let out = tempfile::tempdir().unwrap();
    let assert = fetchpar()
        .arg("-o")
        .arg(out.path())
        .args([
            server.url("/good.bin"),
            server.url("/missing.bin"),
            refused.clone(),
            server.url("/short.bin"),
        ])
        .assert()
        .code(1);
    let stderr = lines(&assert.get_output().stderr);
    let errors: Vec<&String> = stderr
        .iter()
        .filter(|l| l.starts_with("fetchpar: "))
        .collect();
    assert_eq!(errors.len(), 3, "one error line per failure: {stderr:#?}");
    let missing = format!(
        "fetchpar: {}: HTTP 404 Not Found; nothing saved",
        server.url("/missing.bin")
    );
    assert!(errors.iter().any(|l| **l == missing), "{stderr:#?}");
    assert!(
        errors.iter().any(|l| l.starts_with(&format!(
            "fetchpar: {refused}: host unreachable after 4 attempts (connection refused)"
        ))),
        "{stderr:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|l| l.contains("short.bin") && l.contains("of 10000 bytes")),
        "{stderr:#?}"
    );
    // Only the good file is under a final name; the cut-off one is left as .part at most.
    let files = entries(out.path());
    assert!(files.contains(&"good.bin".to_string()));
    assert!(!files.contains(&"short.bin".to_string()), "{files:?}");
    assert!(
        !files
            .iter()
            .any(|f| f.starts_with("missing") || f.starts_with("gone")),
        "{files:?}"
    );
    assert_eq!(
        sha256(&std::fs::read(out.path().join("good.bin")).unwrap()),
        sha256(&good)
    );
    let stdout = lines(&assert.get_output().stdout);
    assert_eq!(stdout, [out.path().join("good.bin").display().to_string()]);
}

#[test]
fn clashing_names_get_suffixes_and_existing_files_are_never_overwritten() {
    let (a, b, c) = (body(3000, 1), body(3000, 2), body(3000, 3));
    let server = {
        let (a, b, c) = (a.clone(), b.clone(), c.clone());
        serve(move |req| match req.path() {
            "/a/photo.jpg" => Reply::file(a.clone()),
            "/b/photo.jpg" => Reply::file(b.clone()),
            "/c/photo.jpg" => Reply::file(c.clone()),
            _ => Reply::status(404),
        })
    };
    let out = tempfile::tempdir().unwrap();
    std::fs::write(out.path().join("photo.jpg"), b"precious").unwrap();
    let urls = ["/a/photo.jpg", "/b/photo.jpg", "/c/photo.jpg"].map(|p| server.url(p));
    fetchpar()
        .arg("-o")
        .arg(out.path())
        .args(&urls)
        .assert()
        .success();
    assert_eq!(
        std::fs::read(out.path().join("photo.jpg")).unwrap(),
        b"precious"
    );
    // The first URL's own name is held: its file goes beside it; the others keep their numbers.
    let want = [
        ("photo.1.jpg", sha256(&b)),
        ("photo.2.jpg", sha256(&c)),
        ("photo.jpg", sha256(b"precious")),
        ("photo~1.jpg", sha256(&a)),
    ]
    .map(|(name, sum)| (name.to_string(), sum));
    assert_eq!(checksums(out.path()), want.into_iter().collect());

    // A second run never touches the first run's files either.
    let before = checksums(out.path());
    fetchpar()
        .arg("-o")
        .arg(out.path())
        .arg(&urls[0])
        .assert()
        .success();
    let after = checksums(out.path());
    for (name, sum) in &before {
        assert_eq!(after.get(name), Some(sum), "{name} changed");
    }
    assert_eq!(after.get("photo~2.jpg"), Some(&sha256(&a)));
}

#[test]
fn a_path_is_never_handed_out_twice_in_a_run_even_if_its_file_is_moved_away() {
    // A script that moves each file away as its path arrives must still get a new path for
    // every URL: the run, not the disk, remembers which names it has handed out.
    let (a, b) = (body(3000, 1), body(3000, 2));
    let server = {
        let (a, b) = (a.clone(), b.clone());
        serve(move |req| match req.path() {
            "/a/photo.jpg" => Reply::file(a.clone()),
            "/b/photo.jpg" => Reply::file(b.clone()),
            _ => Reply::status(404),
        })
    };
    let out = tempfile::tempdir().unwrap();
    let moved = tempfile::tempdir().unwrap();
    let mut child = command()
        .args(["-j", "1", "-o"])
        .arg(out.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut paths = Vec::new();
    for (i, url) in ["/a/photo.jpg", "/b/photo.jpg"].iter().enumerate() {
        writeln!(stdin, "{}", server.url(url)).unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        let path = line.trim_end().to_string();
        std::fs::rename(&path, moved.path().join(i.to_string())).unwrap();
        paths.push(path);
    }
    drop(stdin);
    assert_eq!(finish(child).status.code(), Some(0));
    assert_eq!(
        paths,
        ["photo.jpg", "photo.1.jpg"].map(|n| out.path().join(n).display().to_string())
    );
    assert_eq!(
        checksums(moved.path()),
        [("0", sha256(&a)), ("1", sha256(&b))]
            .into_iter()
            .map(|(n, s)| (n.to_string(), s))
            .collect()
    );
}

#[test]
fn overwrite_replaces_only_when_asked() {
    let new = body(2000, 5);
    let server = {
        let new = new.clone();
        serve(move |_| Reply::file(new.clone()))
    };
    let out = tempfile::tempdir().unwrap();
    std::fs::write(out.path().join("x.bin"), b"old").unwrap();
    fetchpar()
        .arg("-o")
        .arg(out.path())
        .arg("--overwrite")
        .arg(server.url("/x.bin"))
        .assert()
        .success();
    assert_eq!(entries(out.path()), ["x.bin"]);
    assert_eq!(
        sha256(&std::fs::read(out.path().join("x.bin")).unwrap()),
        sha256(&new)
    );
}

#[test]
fn fifty_urls_ending_in_a_slash_give_fifty_distinct_files() {
    let server = serve(|req| Reply::file(req.target.clone().into_bytes()));
    let urls: Vec<String> = (0..50).map(|i| server.url(&format!("/dir{i}/"))).collect();
    let out = tempfile::tempdir().unwrap();
    fetchpar()
        .args(["-j", "8", "-o"])
        .arg(out.path())
        .args(&urls)
        .assert()
        .success();
    let files = entries(out.path());
    assert_eq!(files.len(), 50, "{files:?}");
    assert!(files
        .iter()
        .all(|f| f.starts_with("index") && f.ends_with(".html")));
    let mut bodies: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(out.path().join(f)).unwrap())
        .collect();
    bodies.sort();
    let mut want: Vec<Vec<u8>> = (0..50).map(|i| format!("/dir{i}/").into_bytes()).collect();
    want.sort();
    assert_eq!(bodies, want, "every URL's own body, none lost or doubled");
}

#[test]
fn hostile_url_paths_stay_inside_the_output_directory() {
    let server = serve(|req| Reply::file(req.target.clone().into_bytes()));
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    let paths = [
        "/..%2F..%2Fx",
        "/%2e%2e/",
        "/a/%2e%2e%2f%2e%2e%2fescape",
        "/nul%00name",
        "/..%5C..%5Cwin",
        "/%2Fetc%2Fpasswd",
    ];
    let urls: Vec<String> = paths.iter().map(|p| server.url(p)).collect();
    let assert = fetchpar()
        .arg("-o")
        .arg(&out)
        .args(&urls)
        .assert()
        .success();
    assert_eq!(
        entries(root.path()),
        ["out"],
        "nothing written beside the output directory"
    );
    let files = entries(&out);
    assert_eq!(files.len(), paths.len(), "{files:?}");
    for f in &files {
        assert!(
            !f.contains('/') && !f.contains('\\') && !f.contains('\0') && f != ".." && f != ".",
            "{f:?}"
        );
        assert!(out.join(f).is_file());
    }
    for line in lines(&assert.get_output().stdout) {
        assert!(Path::new(&line).parent() == Some(out.as_path()), "{line}");
    }
}

#[test]
fn bad_lines_are_reported_with_their_numbers_and_the_rest_downloads() {
    let (server, expected) = file_server(2, 100, 200, Duration::ZERO);
    let list = format!(
        "{}\nftp://example.com/file.txt\nthis is garbage\n\n{}\nhttp://\n",
        server.url("/file-00.bin"),
        server.url("/file-01.bin")
    );
    let out = tempfile::tempdir().unwrap();
    let assert = fetchpar()
        .arg("-o")
        .arg(out.path())
        .write_stdin(list)
        .assert()
        .code(1);
    let stderr = lines(&assert.get_output().stderr);
    let errors: Vec<&String> = stderr
        .iter()
        .filter(|l| l.starts_with("fetchpar: "))
        .collect();
    assert_eq!(errors.len(), 3, "{stderr:#?}");
    assert!(
        errors[0]
            .starts_with("fetchpar: line 2: ftp://example.com/file.txt: unsupported scheme 'ftp'"),
        "{stderr:#?}"
    );
    assert!(
        errors[1].starts_with("fetchpar: line 3: this is garbage: "),
        "{stderr:#?}"
    );
    assert!(
        errors[2].starts_with("fetchpar: line 6: http://: "),
        "{stderr:#?}"
    );
    assert_eq!(checksums(out.path()), expected);
}

#[test]
fn a_bad_argument_is_named_by_position() {
    let out = tempfile::tempdir().unwrap();
    let assert = fetchpar()
        .arg("-o")
        .arg(out.path())
        .arg("notaurl")
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        stderr.contains(
            "fetchpar: argument 1: notaurl: not a URL (add http:// or https:// in front)"
        ),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_2_before_any_download() {
    let server = serve(|_| Reply::file(b"x".to_vec()));
    for (args, needle) in [
        (vec!["-j", "0"], "from 1 to"),
        (vec!["-j", "many"], "not a whole number"),
        (vec!["--timeout", "0"], "out of range"),
        (
            vec!["-i", "/nonexistent/list.txt"],
            "cannot read the URL list /nonexistent/list.txt",
        ),
    ] {
        let out = tempfile::tempdir().unwrap();
        let assert = fetchpar()
            .args(&args)
            .arg("-o")
            .arg(out.path().join("made"))
            .arg(server.url("/x"))
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        // Not even the output directory is made.
        assert!(entries(out.path()).is_empty(), "{args:?} made something");
    }
    assert!(server.requests().is_empty());
    // An output "directory" that is a file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"").unwrap();
    let assert = fetchpar()
        .arg("-o")
        .arg(&file)
        .arg(server.url("/x"))
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    // Said as what it is, not as the "File exists" of making a folder there.
    assert_eq!(
        stderr.trim_end(),
        format!(
            "fetchpar: the output path {} is not a directory",
            file.display()
        ),
    );
    // A dangling link likewise, and it stays.
    #[cfg(unix)]
    {
        let link = dir.path().join("dl");
        std::os::unix::fs::symlink(dir.path().join("missing"), &link).unwrap();
        let assert = fetchpar()
            .arg("-o")
            .arg(&link)
            .arg(server.url("/x"))
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        assert!(stderr.contains("is not a directory"), "{stderr}");
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    }
}

#[test]
fn summary_compares_sequential_and_threaded() {
    let (server, _) = file_server(6, 1000, 2000, Duration::from_millis(20));
    let urls: Vec<String> = (0..6)
        .map(|i| server.url(&format!("/file-{i:02}.bin")))
        .collect();
    let out = tempfile::tempdir().unwrap();
    let assert = fetchpar()
        .args(["-j", "3", "-o"])
        .arg(out.path())
        .args(&urls)
        .assert()
        .success();
    let stderr = lines(&assert.get_output().stderr);
    assert!(
        stderr.iter().any(|l| l.starts_with("6 files saved, ")),
        "{stderr:#?}"
    );
    let line = stderr
        .iter()
        .find(|l| l.starts_with("6 files: "))
        .expect("comparison line");
    // An estimate: either a speedup it can back, or the admission that there is none.
    assert!(
        line.contains(" with 3 workers") && line.contains(" one after another (estimated), "),
        "{line}"
    );
    // Quiet means errors only.
    let out = tempfile::tempdir().unwrap();
    fetchpar()
        .args(["-q", "-o"])
        .arg(out.path())
        .args(&urls)
        .assert()
        .success()
        .stderr("");
}

#[test]
fn compare_prints_the_table_and_keeps_only_the_threaded_files() {
    let (server, expected) = file_server(4, 1000, 2000, Duration::from_millis(10));
    let urls = urls_of(&server, &expected);
    let out = tempfile::tempdir().unwrap();
    let assert = fetchpar()
        .args(["--compare", "-j", "4", "-o"])
        .arg(out.path())
        .write_stdin(urls.join("\n"))
        .assert()
        .success();
    assert_eq!(checksums(out.path()), expected);
    assert_eq!(
        lines(&assert.get_output().stdout).len(),
        4,
        "paths of the threaded pass only"
    );
    let stderr = lines(&assert.get_output().stderr);
    let header = stderr
        .iter()
        .position(|l| l.contains("workers") && l.contains("speedup"))
        .expect("table");
    assert!(
        stderr[header + 1].starts_with("sequential") && stderr[header + 1].contains(" 1 "),
        "{stderr:#?}"
    );
    assert!(
        stderr[header + 2].starts_with("threaded") && stderr[header + 2].contains(" 4 "),
        "{stderr:#?}"
    );
    // Both passes fetched every file, each on its own fresh client.
    assert_eq!(server.requests().len(), 8);
}

#[test]
fn demo_runs_to_completion() {
    let assert = fetchpar().arg("--demo").assert().success();
    assert!(assert.get_output().stdout.is_empty());
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        stderr.contains("sequential") && stderr.contains("threaded"),
        "{stderr}"
    );
    assert!(
        stderr.contains("All 24 files checked byte for byte"),
        "{stderr}"
    );
}

#[test]
fn passwords_in_urls_never_appear_in_any_output() {
    let server = serve(|req| match req.path() {
        "/ok.bin" => Reply::file(b"fine".to_vec()),
        _ => Reply::status(403),
    });
    let secret = "hunter2SECRET";
    let with_auth = |path: &str| format!("http://user:{secret}@{}{path}", server.addr());
    let out = tempfile::tempdir().unwrap();
    let list = format!(
        "{}\n{}\nhtp://user:{secret}@host/x\n",
        with_auth("/ok.bin"),
        with_auth("/denied.bin")
    );
    for mode in ["lines", "none"] {
        let assert = fetchpar()
            .args(["--progress", mode, "-o"])
            .arg(out.path())
            .arg(with_auth("/ok.bin"))
            .args(["-i", "-"])
            .write_stdin(list.clone())
            .assert()
            .code(1);
        let output = assert.get_output();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !all.contains(secret),
            "secret leaked with --progress {mode}:\n{all}"
        );
        assert!(
            all.contains("denied.bin"),
            "the failure is still reported:\n{all}"
        );
    }
    // The credentials did reach the server, as basic auth.
    let auth = server
        .requests()
        .iter()
        .filter_map(|r| r.header("authorization").map(str::to_string))
        .next();
    assert!(auth.is_some_and(|a| a.starts_with("Basic ")));
}

/// Waits until the process has its Ctrl-C handler installed (Linux: the SigCgt mask in
/// /proc), so that a SIGINT sent next is handled rather than killing it outright.
fn wait_for_sigint_handler(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .unwrap_or(0);
        if caught & (1 << (2 - 1)) != 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("fetchpar never installed its Ctrl-C handler");
}

#[test]
fn a_closed_or_full_stderr_never_panics_or_hangs() {
    let (server, expected) = file_server(30, 100, 2000, Duration::ZERO);
    let urls = urls_of(&server, &expected);
    // stderr on a full device: every write fails.
    let out = tempfile::tempdir().unwrap();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let status = command()
        .args(["-j", "1", "--progress", "lines", "-o"])
        .arg(out.path())
        .args(&urls)
        .stdout(Stdio::null())
        .stderr(full)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(checksums(out.path()), expected);
    // stderr a pipe whose reader has gone (`2>&1 | head -1`).
    let out = tempfile::tempdir().unwrap();
    let mut child = command()
        .args(["-j", "1", "--progress", "lines", "-o"])
        .arg(out.path())
        .args(&urls)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    assert_eq!(finish(child).status.code(), Some(0));
    assert_eq!(checksums(out.path()), expected);
}

/// Ctrl-C while the last read of a body is being paced by `--limit-rate`: every byte is in, so
/// the file is saved whole, not reported as "partial data kept" beside a part that holds it all
/// (a reviewer saw it on four files at once).
#[test]
fn ctrl_c_after_the_last_byte_saves_the_file() {
    let data = body(24 * 1024, 8);
    let served = data.clone();
    // 16 KiB, then the last 8 KiB a moment later.
    let server = serve(move |_| {
        Reply::file(served.clone()).with_fault(Fault::Drip(16 * 1024, Duration::from_millis(100)))
    });
    let out = tempfile::tempdir().unwrap();
    // At 1 KiB/s the first 16 KiB are one burst; the read that takes the last 8 KiB then
    // waits eight seconds before it hands them over.
    let child = command()
        .args(["--limit-rate", "1K", "--progress", "none", "-o"])
        .arg(out.path())
        .arg(server.url("/paced.bin"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_len(&out.path().join("paced.bin.part"), 16 * 1024);
    // Past the 100 ms the last piece is held back, well inside the eight-second wait.
    std::thread::sleep(Duration::from_secs(1));
    sigint(child.id());
    let output = finish(child);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(!stderr.contains("partial data kept"), "{stderr}");
    assert!(stderr.contains("1 file saved"), "{stderr}");
    let saved = checksums(out.path());
    assert_eq!(saved.get("paced.bin"), Some(&sha256(&data)), "{saved:?}");
    assert_eq!(saved.len(), 1, "{saved:?}");
}

#[test]
fn ctrl_c_past_the_grace_reports_each_stuck_download_and_its_part() {
    let server = serve(|req| match req.path() {
        // With a validator, so the part can be resumed and the summary may say so.
        "/stuck.bin" => Reply::file(body(100_000, 4))
            .with_header("ETag", "\"s1\"")
            .with_fault(Fault::StallAfter(1000, Duration::from_secs(30))),
        _ => Reply::file(body(500, 6)),
    });
    let out = tempfile::tempdir().unwrap();
    let child = command()
        .args(["--progress", "lines", "--timeout", "60", "-o"])
        .arg(out.path())
        .args([server.url("/ok.bin"), server.url("/stuck.bin")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the stuck download's first bytes and the other file are on disk (under load
    // the one may come before the other), then interrupt.
    let part = out.path().join("stuck.bin.part");
    wait_for_len(&part, 1000);
    wait_for_len(&out.path().join("ok.bin"), 500);
    sigint(child.id());
    let output = finish(child);
    assert_eq!(output.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let url = server.url("/stuck.bin");
    assert!(
        stderr.contains(&format!(
            "{url}: interrupted; partial data kept in {}",
            part.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("1 file saved, 1 failed"), "{stderr}");
    assert!(
        stderr.contains("interrupted: 1 partial download kept as .part (resume with -c)"),
        "{stderr}"
    );
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 1000);
    assert!(!out.path().join("stuck.bin").exists());
    assert_eq!(
        lines(&output.stdout),
        [out.path().join("ok.bin").display().to_string()]
    );
}

/// Ctrl-C while downloads have their headers but no byte of their bodies: their parts (empty,
/// or for a large body an empty part with its sidecar) go, and the one with bytes stays.
#[test]
fn ctrl_c_before_the_first_byte_leaves_no_empty_part() {
    let server = serve(|req| match req.path() {
        "/some.bin" => Reply::file(body(100_000, 4))
            .with_header("ETag", "\"s1\"")
            .with_fault(Fault::StallAfter(1000, Duration::from_secs(30))),
        // Over 64 KiB: its sidecar is written before its first byte.
        "/large.bin" => {
            Reply::file(body(100_000, 5)).with_fault(Fault::StallAfter(0, Duration::from_secs(30)))
        }
        _ => Reply::file(body(3000, 6)).with_fault(Fault::StallAfter(0, Duration::from_secs(30))),
    });
    let sandbox = Sandbox::new();
    let names = ["some.bin", "large.bin", "small-1.bin", "small-2.bin"];
    let urls: Vec<String> = names.iter().map(|n| server.url(&format!("/{n}"))).collect();
    let mut args = vec!["-j", "4", "--progress", "none"];
    args.extend(urls.iter().map(String::as_str));
    let child = sandbox.spawn(&args);
    let out = sandbox.out();
    let parts: Vec<_> = names
        .iter()
        .map(|n| out.join(format!("{n}.part")))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !parts.iter().all(|p| p.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    wait_for_len(&parts[0], 1000);
    assert!(parts.iter().all(|p| p.exists()), "{:?}", entries(&out));
    sigint(child.id());
    let output = finish(child);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert_eq!(
        entries(&out),
        ["some.bin.part", "some.bin.part.meta"],
        "{stderr}"
    );
    assert_eq!(std::fs::metadata(&parts[0]).unwrap().len(), 1000);
    sandbox.assert_nothing_outside();
}

/// `/0.bin` stalls after 1000 bytes for 30 s; every other path is a small file.
fn first_stalls() -> Server {
    serve(|req| match req.path() {
        "/0.bin" => Reply::file(body(100_000, 4))
            .with_fault(Fault::StallAfter(1000, Duration::from_secs(30))),
        _ => Reply::file(body(500, 6)),
    })
}

#[test]
fn ctrl_c_with_the_producer_parked_ends_the_run_as_usual() {
    // -j 1 and a long list: while the one worker is stuck, the producer has filled the queue and
    // parked until the workers take half of it. An end-to-end check that the run still ends as
    // any interrupted run does; the producer's own stop (on Ctrl-C, or when the workers are
    // gone) is unit-tested in pool.rs, since a detached producer never holds up the exit.
    let server = first_stalls();
    let out = tempfile::tempdir().unwrap();
    let urls: Vec<String> = (0..50).map(|i| server.url(&format!("/{i}.bin"))).collect();
    let child = command()
        .args(["-j", "1", "--timeout", "60", "-o"])
        .arg(out.path())
        .args(&urls)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let part = out.path().join("0.bin.part");
    wait_for_len(&part, 1000);
    sigint(child.id());
    let output = finish(child);
    assert_eq!(output.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(stderr.contains("0 files saved, 1 failed"), "{stderr}");
    assert!(stderr.contains("not started"), "{stderr}");
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 1000);
    assert_eq!(entries(out.path()), ["0.bin.part", "0.bin.part.meta"]);
}

/// Runs `cmd` until `part` has 1000 bytes, then Ctrl-C: its output (exit 130 checked) and its
/// stdout's JSON records.
fn json_after_ctrl_c(
    cmd: &mut std::process::Command,
    part: &Path,
) -> (std::process::Output, Vec<serde_json::Value>) {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_len(part, 1000);
    sigint(child.id());
    let output = finish(child);
    assert_eq!(output.status.code(), Some(130));
    let records = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (output, records)
}

/// `--json` owes every URL read its record, also after Ctrl-C: the one stopped mid-body fails
/// as interrupted, and those still queued (in the channel, or held by the parked producer) say
/// `not_started`, in list order, as many as the summary counts.
#[test]
fn ctrl_c_with_json_gives_every_url_read_a_record() {
    let server = first_stalls();
    let out = tempfile::tempdir().unwrap();
    let list = out.path().join("list.txt");
    let urls: Vec<String> = (0..100).map(|i| server.url(&format!("/{i}.bin"))).collect();
    std::fs::write(&list, urls.join("\n")).unwrap();
    let mut cmd = command();
    cmd.args(["-j", "1", "--json", "--timeout", "60", "-i"])
        .arg(&list)
        .arg("-o")
        .arg(out.path().join("dl"));
    let (_, records) = json_after_ctrl_c(&mut cmd, &out.path().join("dl/0.bin.part"));
    let (summary, urls) = records.split_last().unwrap();
    assert_eq!(summary["type"], "summary");
    let first = &urls[0];
    assert_eq!(
        (&first["status"], &first["line"]),
        (&"failed".into(), &1.into())
    );
    let rest = &urls[1..];
    assert!(
        rest.iter().all(|r| r["status"] == "not_started"),
        "{rest:?}"
    );
    assert!(rest
        .iter()
        .all(|r| r["error"] == "interrupted before it started"));
    let lines: Vec<u64> = rest.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, (2..=lines.len() as u64 + 1).collect::<Vec<_>>());
    // The producer parked on a full queue: it had not read the whole list.
    assert!(rest.len() < 99, "{}", rest.len());
    assert_eq!(summary["not_started"], rest.len());
}

/// Ctrl-C in `--compare`'s first pass, which downloads into a temporary folder: nothing is
/// saved, and the run says so (not the counts and `.part` paths of files now gone); `--json`
/// still gets every URL's record and the summary.
#[test]
fn ctrl_c_in_compare_s_first_pass_says_nothing_was_saved() {
    let server = first_stalls();
    let out = tempfile::tempdir().unwrap();
    let list = out.path().join("list.txt");
    let mut lines: Vec<String> = (0..5).map(|i| server.url(&format!("/{i}.bin"))).collect();
    lines.push(server.url("/1.bin"));
    std::fs::write(&list, lines.join("\n")).unwrap();
    let child = command()
        .args(["--compare", "--json", "-j", "4", "--timeout", "60", "-i"])
        .arg(&list)
        .arg("-o")
        .arg(out.path().join("dl"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let give_up = Instant::now() + Duration::from_secs(30);
    while server.requests().is_empty() {
        assert!(Instant::now() < give_up, "the first pass never began");
        std::thread::sleep(Duration::from_millis(20));
    }
    sigint(child.id());
    let output = finish(child);
    assert_eq!(output.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        stderr.contains(
            "fetchpar: interrupted in a --compare pass, which downloads into a temporary folder \
             (now removed): nothing was saved"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("partial data kept"), "{stderr}");
    assert!(entries(&out.path().join("dl")).is_empty());
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let statuses: Vec<&str> = records
        .iter()
        .map(|r| r["status"].as_str().unwrap_or("-"))
        .collect();
    let mut expected = vec!["not_started"; 5];
    expected.extend(["duplicate", "-"]);
    assert_eq!(statuses, expected);
    let summary = &records[6];
    assert_eq!(summary["type"], "summary");
    assert_eq!(
        (&summary["not_started"], &summary["saved"]),
        (&5.into(), &0.into())
    );
    assert_eq!(summary["interrupted"], true);
}

/// Ctrl-C in `--compare`'s last pass: the one-worker wall was of the whole list, the cut-short
/// pass's is not, so no measured speedup and no table is claimed; the JSON summary still comes
/// last (also for `--compare=LIST`).
#[test]
fn ctrl_c_in_compare_s_last_pass_claims_no_measured_speedup() {
    for compare in [&["--compare", "-j", "4"][..], &["--compare=1,4"]] {
        let asked = Arc::new(AtomicUsize::new(0));
        let count = asked.clone();
        let server = serve(move |req| match req.path() {
            // The first pass gets it whole; the last stalls on it.
            "/0.bin" if count.fetch_add(1, Ordering::SeqCst) > 0 => Reply::file(body(100_000, 4))
                .with_fault(Fault::StallAfter(1000, Duration::from_secs(30))),
            _ => Reply::file(body(5000, 6)),
        });
        let out = tempfile::tempdir().unwrap();
        let urls: Vec<String> = (0..4).map(|i| server.url(&format!("/{i}.bin"))).collect();
        let mut cmd = command();
        cmd.args(compare)
            .args(["--json", "--timeout", "60", "-o"])
            .arg(out.path())
            .args(&urls);
        let (output, records) = json_after_ctrl_c(&mut cmd, &out.path().join("0.bin.part"));
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            !stderr.contains("speedup"),
            "{compare:?}: no table: {stderr}"
        );
        assert!(
            !stderr.contains("one after another,"),
            "{compare:?}: {stderr}"
        );
        let summary = records.last().unwrap();
        assert_eq!(summary["type"], "summary", "{compare:?}");
        assert_eq!(summary["interrupted"], true);
        assert_ne!(summary["sequential_kind"], "measured", "{summary}");
    }
}

#[test]
fn compare_reading_stdin_still_honours_ctrl_c() {
    let out = tempfile::tempdir().unwrap();
    let mut child = command()
        .args(["--compare", "-o"])
        .arg(out.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "http://127.0.0.1:9/never.bin").unwrap();
    wait_for_sigint_handler(child.id());
    sigint(child.id());
    // stdin is still open: the list never ends, yet the run must.
    let output = finish(child);
    drop(stdin);
    assert_eq!(output.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        stderr.contains("interrupted while reading the URL list"),
        "{stderr}"
    );
    assert!(entries(out.path()).is_empty());
}

#[test]
fn secrets_in_unparsable_inputs_are_not_echoed() {
    let out = tempfile::tempdir().unwrap();
    let assert = fetchpar()
        .arg("-o")
        .arg(out.path())
        .args([
            "eve:pw5secret@host/x",
            "http://a:one1secret@h/x https://b:two2secret@h/y",
        ])
        .assert()
        .code(1);
    let output = assert.get_output();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for secret in ["pw5secret", "one1secret", "two2secret"] {
        assert!(!all.contains(secret), "{secret} leaked:\n{all}");
    }
    assert!(all.contains("argument 1: ***@host/x"), "{all}");
}

#[test]
fn a_file_made_under_the_name_during_the_download_is_kept() {
    // The output directory starts empty, so the name is chosen without asking the disk: what
    // keeps the user's file is the rename that never replaces anything.
    let payload = body(2000, 9);
    let sent = payload.clone();
    // Half the body, a pause long enough to make the file in, the other half.
    let server = serve(move |_| {
        Reply::file(sent.clone()).with_fault(Fault::Drip(1000, Duration::from_secs(2)))
    });
    let out = tempfile::tempdir().unwrap();
    let child = command()
        .arg("-o")
        .arg(out.path())
        .arg(server.url("/x.bin"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_len(&out.path().join("x.bin.part"), 1000);
    let mut theirs = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out.path().join("x.bin"))
        .expect("the download must not have its final name before its bytes are in");
    std::io::Write::write_all(&mut theirs, b"PRECIOUS").unwrap();
    drop(theirs);
    let output = finish(child);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(
        std::fs::read(out.path().join("x.bin")).unwrap(),
        b"PRECIOUS"
    );
    assert_eq!(
        std::fs::read(out.path().join("x~1.bin")).unwrap(),
        &payload[..]
    );
    assert_eq!(
        lines(&output.stdout),
        [out.path().join("x~1.bin").display().to_string()]
    );
    assert_eq!(entries(out.path()), ["x.bin", "x~1.bin"]);
}
