//! `--split N`: one file over N ranged connections, byte-exact, with a fallback for servers
//! without ranges and no bytes ever written outside a failed piece's range.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::util::*;

const BIG: usize = 1024 * 1024 + 12_345;

/// `fetchpar --split N --retries 0 -o OUT URL`, expecting exit `code`: its stderr.
fn split_strict(pieces: &str, out: &std::path::Path, url: &str, code: i32) -> String {
    let assert = fetchpar()
        .args(["--split", pieces, "--retries", "0", "-o"])
        .arg(out)
        .arg(url)
        .assert()
        .code(code);
    String::from_utf8_lossy(&assert.get_output().stderr).into_owned()
}

/// The ranges of genuine bytes a sparse part's sidecar lists (`fetchpar-part 4`, `ranges` line).
fn genuine_ranges(meta: &std::path::Path) -> Vec<(usize, usize)> {
    let text = std::fs::read_to_string(meta).unwrap();
    // Format 4 since issue 9 moved the key off credentials (it was 2).
    assert!(text.starts_with("fetchpar-part 4\n"), "{text}");
    let line = text.lines().find(|l| l.starts_with("ranges")).unwrap();
    line.split_whitespace()
        .skip(1)
        .map(|r| {
            let (a, b) = r.split_once('-').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect()
}

/// Asserts that every range the sidecar of `part` lists holds exactly `body`'s bytes there;
/// returns how many bytes that is.
fn assert_genuine(part: &std::path::Path, body: &[u8]) -> usize {
    let kept = std::fs::read(part).unwrap();
    assert_eq!(
        kept.len(),
        body.len(),
        "a sparse part keeps its planned size"
    );
    let mut meta = part.as_os_str().to_owned();
    meta.push(".meta");
    let ranges = genuine_ranges(std::path::Path::new(&meta));
    for &(start, end) in &ranges {
        assert_eq!(&kept[start..end], &body[start..end], "range {start}-{end}");
    }
    ranges.iter().map(|(start, end)| end - start).sum()
}

#[test]
fn split_files_are_byte_exact_and_use_ranges() {
    let (server, expected) = file_server(3, BIG, BIG + 50_000, Duration::ZERO);
    let out = tempfile::tempdir().unwrap();
    fetchpar()
        .args(["-j", "2", "--split", "4", "-o"])
        .arg(out.path())
        .args(urls_of(&server, &expected))
        .assert()
        .success();
    assert_eq!(checksums(out.path()), expected);
    let ranged = server
        .requests()
        .iter()
        .filter(|r| r.header("range").is_some())
        .count();
    assert_eq!(ranged, 3 * 3, "pieces 1-3 of each file are ranged requests");
    // Piece 0 rides on the first, plain GET: no extra round trip per file.
    assert_eq!(server.requests().len(), 3 * 4);
}

#[test]
fn split_with_a_larger_chunk_size_is_byte_exact() {
    let (server, expected) = file_server(2, BIG, BIG, Duration::ZERO);
    let out = tempfile::tempdir().unwrap();
    fetchpar()
        .args(["--split", "3", "--chunk-size", "256K", "-o"])
        .arg(out.path())
        .args(urls_of(&server, &expected))
        .assert()
        .success();
    assert_eq!(checksums(out.path()), expected);
}

#[test]
fn servers_without_ranges_get_one_stream_and_one_note() {
    let files = generated_files(2, BIG, BIG);
    let expected: std::collections::BTreeMap<String, String> = files
        .iter()
        .map(|(p, b)| (p.trim_start_matches('/').to_string(), sha256(b)))
        .collect();
    let map: HashMap<String, Arc<[u8]>> = files.into_iter().collect();
    let server = serve(move |req| match map.get(req.path()) {
        Some(body) => Reply::file(body.clone()).without_ranges(),
        None => Reply::status(404),
    });
    let out = tempfile::tempdir().unwrap();
    let assert = fetchpar()
        .args(["--split", "4", "-o"])
        .arg(out.path())
        .args(urls_of(&server, &expected))
        .assert()
        .success();
    assert_eq!(checksums(out.path()), expected);
    assert_eq!(server.requests().len(), 2, "one plain GET per file");
    let stderr = lines(&assert.get_output().stderr);
    let notes: Vec<_> = stderr.iter().filter(|l| l.contains("--split")).collect();
    assert_eq!(notes.len(), 1, "one note for the run: {stderr:?}");
    assert!(notes[0].contains("2 files"), "{}", notes[0]);
}

#[test]
fn a_piece_that_fails_once_is_retried_on_its_own() {
    let body: Arc<[u8]> = generated_files(1, BIG, BIG).remove(0).1;
    let expected = sha256(&body);
    let failed = Arc::new(AtomicUsize::new(0));
    let server = {
        let failed = failed.clone();
        serve(move |req| {
            let reply = Reply::file(body.clone()).with_header("ETag", "\"v1\"");
            // The first request for the last piece is cut off after 1000 bytes.
            let last_piece = req.header("range").is_some_and(|r| !r.ends_with("-"))
                && req
                    .header("range")
                    .is_some_and(|r| r.ends_with(&format!("-{}", BIG - 1)));
            if last_piece && failed.fetch_add(1, Ordering::SeqCst) == 0 {
                reply.with_fault(Fault::ShortBody(1000))
            } else {
                reply
            }
        })
    };
    let out = tempfile::tempdir().unwrap();
    fetchpar()
        .args(["--split", "4", "-o"])
        .arg(out.path())
        .arg(server.url("/f.bin"))
        .assert()
        .success();
    assert_eq!(checksums(out.path())["f.bin"], expected);
    let retry = server
        .requests()
        .iter()
        .filter_map(|r| r.header("range").map(str::to_string))
        .filter(|r| r.ends_with(&format!("-{}", BIG - 1)))
        .collect::<Vec<_>>();
    assert_eq!(retry.len(), 2, "{retry:?}");
    // The retry resumes after the 1000 bytes already written.
    let first: usize = retry[0]["bytes=".len()..retry[0].find('-').unwrap()]
        .parse()
        .unwrap();
    assert_eq!(retry[1], format!("bytes={}-{}", first + 1000, BIG - 1));
}

#[test]
fn a_piece_that_keeps_failing_fails_the_file_and_keeps_only_genuine_bytes() {
    let body: Arc<[u8]> = generated_files(1, BIG, BIG).remove(0).1;
    let served = body.clone();
    let server = serve(move |req| {
        let reply = Reply::file(served.clone()).with_header("ETag", "\"v1\"");
        match req.header("range") {
            // The second piece always breaks off; the others succeed.
            Some(r) if !r.ends_with(&format!("-{}", BIG - 1)) && !r.starts_with("bytes=0-") => {
                reply.with_fault(Fault::ResetAfter(5000))
            }
            _ => reply,
        }
    });
    let out = tempfile::tempdir().unwrap();
    let stderr = split_strict("3", out.path(), &server.url("/f.bin"), 1);
    assert!(stderr.contains("f.bin"), "{stderr}");
    assert!(
        !out.path().join("f.bin").exists(),
        "no final name for a failed file"
    );
    // Whatever is kept is genuine where its sidecar says so: nothing from a wrong offset.
    let part = out.path().join("f.bin.part");
    if part.exists() {
        assert!(assert_genuine(&part, &body) < body.len());
    }
}

#[test]
fn small_files_are_not_split() {
    let (server, expected) = file_server(2, 1000, 60_000, Duration::ZERO);
    let out = tempfile::tempdir().unwrap();
    let assert = fetchpar()
        .args(["--split", "8", "-o"])
        .arg(out.path())
        .args(urls_of(&server, &expected))
        .assert()
        .success();
    assert_eq!(checksums(out.path()), expected);
    assert_eq!(server.requests().len(), 2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(!stderr.contains("note"), "{stderr}");
}

/// Issue 9: `--split` cut off, then `-c --split N`: every finished range is kept (not just the
/// first piece's) and only the missing ranges are fetched, over several connections.
/// The requests of each broken `--split` piece, known by where its range ends (its retries
/// keep the end). A piece that fails for good stops the others, and one that had not yet written
/// a byte would then keep nothing, so what the test proves would hang on thread timing.
#[derive(Default)]
struct Tries {
    per_piece: std::sync::Mutex<HashMap<String, u32>>,
    changed: std::sync::Condvar,
}

impl Tries {
    /// Counts this request; if it is a retry, holds it until each of `pieces` broken pieces
    /// has retried. A piece retries only after writing what its last try sent, so no piece can
    /// fail for good (and stop the others) before every piece has written bytes. The wait is
    /// bounded only so that a change in how pieces are planned fails the test instead of
    /// hanging it.
    fn hold_until_every_piece_retried(&self, range: &str, pieces: usize) {
        let end = range.rsplit('-').next().unwrap_or_default().to_string();
        let mut seen = self.per_piece.lock().unwrap();
        let n = seen.entry(end).or_insert(0);
        *n += 1;
        let retry = *n > 1;
        self.changed.notify_all();
        if retry {
            let _ = self
                .changed
                .wait_timeout_while(seen, Duration::from_secs(60), |seen| {
                    seen.values().filter(|&&n| n > 1).count() < pieces
                })
                .unwrap();
        }
    }
}

#[test]
fn a_failed_split_download_keeps_every_range_and_continue_fetches_only_the_gaps() {
    let body: Arc<[u8]> = generated_files(1, BIG, BIG).remove(0).1;
    let expected = sha256(&body);
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let tries = Arc::new(Tries::default());
    let server = {
        let (body, broken, tries) = (body.clone(), broken.clone(), tries.clone());
        serve(move |req| {
            let reply = Reply::file(body.clone()).with_header("ETag", "\"v1\"");
            match req.header("range") {
                // While broken, every piece but the first breaks off.
                Some(r) if broken.load(Ordering::SeqCst) && !r.starts_with("bytes=0-") => {
                    tries.hold_until_every_piece_retried(r, 2);
                    reply.with_fault(Fault::ShortBody(5000))
                }
                _ => reply,
            }
        })
    };
    let out = tempfile::tempdir().unwrap();
    fetchpar()
        .args(["--split", "3", "--retries", "0", "-o"])
        .arg(out.path())
        .arg(server.url("/f.bin"))
        .assert()
        .code(1);
    let part = out.path().join("f.bin.part");
    let mut meta = part.as_os_str().to_owned();
    meta.push(".meta");
    let ranges = genuine_ranges(std::path::Path::new(&meta));
    let kept = assert_genuine(&part, &body);
    assert!(
        ranges.len() >= 2,
        "more than the first piece is kept: {ranges:?}"
    );
    // Every broken piece got as far as retrying, so each wrote bytes that had to be kept.
    let retried = tries
        .per_piece
        .lock()
        .unwrap()
        .values()
        .filter(|&&n| n > 1)
        .count();
    assert_eq!(
        retried, 2,
        "every broken piece retried before the run gave up"
    );
    let before = server.requests().len();
    broken.store(false, Ordering::SeqCst);
    fetchpar()
        .args(["-c", "--split", "3", "-o"])
        .arg(out.path())
        .arg(server.url("/f.bin"))
        .assert()
        .success();
    assert_eq!(
        checksums(out.path()),
        [("f.bin".to_string(), expected)].into()
    );
    // The second run asked only for bytes it did not have, each of them once.
    let asked: Vec<(usize, usize)> = server.requests()[before..]
        .iter()
        .map(|r| {
            let range = r.header("range").expect("only ranged requests");
            let (a, b) = range["bytes=".len()..].split_once('-').unwrap();
            (a.parse().unwrap(), b.parse::<usize>().unwrap() + 1)
        })
        .collect();
    assert_eq!(
        asked.iter().map(|(a, b)| b - a).sum::<usize>(),
        BIG - kept,
        "{asked:?} after keeping {ranges:?}"
    );
    for (a, b) in &asked {
        assert!(
            ranges.iter().all(|(s, e)| b <= s || a >= e),
            "{a}-{b} asks again for kept bytes {ranges:?}"
        );
    }
    assert!(asked.len() >= 2, "the gaps come over several connections");
}

#[test]
fn ctrl_c_during_split_never_leaves_holes_for_continue_to_trust() {
    let body: Arc<[u8]> = generated_files(1, BIG, BIG).remove(0).1;
    let stall = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let server = {
        let (body, stall) = (body.clone(), stall.clone());
        serve(move |req| {
            let reply = Reply::file(body.clone()).with_header("ETag", "\"v1\"");
            // While stalling, the last piece sends 1000 bytes and then nothing.
            let last = req.header("range").is_some_and(|r| {
                r.ends_with(&format!("-{}", BIG - 1)) && !r.starts_with("bytes=0-")
            });
            if last && stall.load(Ordering::SeqCst) {
                reply.with_fault(Fault::StallAfter(1000, Duration::from_secs(30)))
            } else {
                reply
            }
        })
    };
    let out = tempfile::tempdir().unwrap();
    let url = server.url("/f.bin");
    let child = command()
        .args(["--split", "4", "--timeout", "60", "-o"])
        .arg(out.path())
        .arg(&url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the part is preallocated and the stalling piece has been asked for.
    let part = out.path().join("f.bin.part");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !(std::fs::metadata(&part).is_ok_and(|m| m.len() == BIG as u64)
        && server.requests().iter().any(|r| {
            r.header("range")
                .is_some_and(|r| r.ends_with(&format!("-{}", BIG - 1)))
        }))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    sigint(child.id());
    let output = finish(child);
    assert_eq!(output.status.code(), Some(130));
    stall.store(false, Ordering::SeqCst);
    fetchpar()
        .args(["-c", "-o"])
        .arg(out.path())
        .arg(&url)
        .assert()
        .success();
    // Whatever name it got, the file is byte-exact; the final name never holds a wrong file.
    let expected = sha256(&body);
    let sums = checksums(out.path());
    if let Some(sum) = sums.get("f.bin") {
        assert_eq!(
            sum, &expected,
            "a wrong file under the final name: {sums:?}"
        );
    }
    assert!(
        sums.iter().any(|(name, sum)| !name.ends_with(".part")
            && !name.ends_with(".meta")
            && *sum == expected),
        "{sums:?}"
    );
}

#[test]
fn split_after_a_cross_origin_redirect_sends_no_credentials_there() {
    let body: Arc<[u8]> = generated_files(1, BIG, BIG).remove(0).1;
    let served = body.clone();
    let other = serve(move |_| Reply::file(served.clone()).with_header("ETag", "\"v\""));
    let target = other.url("/f.bin");
    let origin = serve(move |_| Reply::status(302).with_header("Location", &target));
    let out = tempfile::tempdir().unwrap();
    let assert = fetchpar()
        .args(["--split", "4", "--user", "alice:s3cret", "-o"])
        .arg(out.path())
        .arg(origin.url("/f.bin"))
        .assert()
        .success();
    assert_eq!(checksums(out.path())["f.bin"], sha256(&body));
    for r in other.requests() {
        assert_eq!(r.header("authorization"), None, "{:?}", r.header("range"));
    }
    // It came over one stream, and the note says so.
    assert_eq!(other.requests().len(), 1);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(stderr.contains("--split 4: 1 file"), "{stderr}");
}

#[test]
fn split_keeps_credentials_from_the_url_on_every_piece() {
    let body: Arc<[u8]> = generated_files(1, BIG, BIG).remove(0).1;
    let served = body.clone();
    let server = serve(move |req| {
        if req.header("authorization") != Some("Basic dTpw") {
            return Reply::status(401);
        }
        Reply::file(served.clone()).with_header("ETag", "\"v1\"")
    });
    let out = tempfile::tempdir().unwrap();
    let url = server.url("/f.bin").replace("http://", "http://u:p@");
    fetchpar()
        .args(["--split", "4", "--retries", "0", "-o"])
        .arg(out.path())
        .arg(&url)
        .assert()
        .success();
    assert_eq!(checksums(out.path())["f.bin"], sha256(&body));
    let ranged: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.header("range").is_some())
        .collect();
    assert_eq!(ranged.len(), 3);
    assert!(ranged
        .iter()
        .all(|r| r.header("authorization") == Some("Basic dTpw")));
}

/// A server that keeps its ETag while the length changes: the pieces show another file, so it
/// comes again over one connection, whole and of one version.
#[test]
fn a_piece_of_a_file_with_another_length_refetches_it_over_one_connection() {
    let v1: Arc<[u8]> = generated_files(1, BIG, BIG).remove(0).1;
    let v2: Arc<[u8]> = generated_files(1, BIG + 5000, BIG + 5000).remove(0).1;
    let expected = sha256(&v1);
    let server = serve(move |req| {
        let body = if req.header("range").is_some() {
            &v2
        } else {
            &v1
        };
        Reply::file(body.clone()).with_header("ETag", "\"v1\"")
    });
    let out = tempfile::tempdir().unwrap();
    fetchpar()
        .args(["--split", "4", "--retries", "0", "-o"])
        .arg(out.path())
        .arg(server.url("/f.bin"))
        .assert()
        .success();
    assert_eq!(
        checksums(out.path()),
        [("f.bin".to_string(), expected)].into()
    );
    let whole = server
        .requests()
        .iter()
        .filter(|r| r.header("range").is_none())
        .count();
    assert_eq!(
        whole, 2,
        "the first request, then the one-connection refetch"
    );
}

#[test]
fn a_file_retried_without_ranges_counts_once_in_the_note() {
    let body: Arc<[u8]> = generated_files(1, BIG, BIG).remove(0).1;
    let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let server = {
        let (body, first) = (body.clone(), first.clone());
        serve(move |_| {
            let reply = Reply::file(body.clone()).without_ranges();
            // The first answer breaks off; the retry gets it all.
            if first.swap(false, Ordering::SeqCst) {
                reply.with_fault(Fault::ShortBody(1000))
            } else {
                reply
            }
        })
    };
    let out = tempfile::tempdir().unwrap();
    let assert = fetchpar()
        .args([
            "--split",
            "4",
            "--retries",
            "1",
            "--max-retry-wait",
            "0.01",
            "-o",
        ])
        .arg(out.path())
        .arg(server.url("/f.bin"))
        .assert()
        .success();
    assert_eq!(checksums(out.path())["f.bin"], sha256(&body));
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(stderr.contains("--split 4: 1 file "), "{stderr}");
}

#[test]
fn a_ranged_request_refused_for_another_reason_does_not_blame_the_file() {
    let body: Arc<[u8]> = generated_files(1, BIG, BIG).remove(0).1;
    let server = serve(move |req| {
        if req.header("range").is_some() {
            Reply::status(503)
        } else {
            Reply::file(body.clone()).with_header("ETag", "\"v1\"")
        }
    });
    let out = tempfile::tempdir().unwrap();
    let stderr = split_strict("4", out.path(), &server.url("/f.bin"), 1);
    assert!(stderr.contains("HTTP 503 instead of 206"), "{stderr}");
    assert!(!stderr.contains("may have changed"), "{stderr}");
}

/// A 206 for `Range: bytes=A-B` of `body`, whatever `If-Range` says: a server that ignores it.
fn ignoring_if_range(req: &Request, body: &[u8], etag: &str) -> Reply {
    let range = req.header("range").unwrap_or("bytes=0-");
    let (a, b) = range["bytes=".len()..].split_once('-').unwrap();
    let start: usize = a.parse().unwrap();
    let end: usize = b
        .parse()
        .map_or(body.len() - 1, |b: usize| b.min(body.len() - 1));
    Reply::file(body[start..=end].to_vec())
        .without_ranges()
        .with_status(206)
        .with_header("ETag", etag)
        .with_header(
            "Content-Range",
            &format!("bytes {start}-{end}/{}", body.len()),
        )
}

/// A server that labels the whole file as each piece's range (the right `Content-Range`, the
/// whole body after it, with its `Content-Length` or chunked): joining that at the piece's offset
/// made a mixed file that was reported saved. The pieces are refused, and the file comes again
/// over one connection, whole.
#[test]
fn a_piece_whose_body_is_not_its_range_is_refused() {
    let file: Arc<[u8]> = generated_files(1, BIG, BIG).remove(0).1;
    let expected = sha256(&file);
    for fault in [Fault::Normal, Fault::Chunked(true)] {
        let server = {
            let (file, fault) = (file.clone(), fault.clone());
            Server::start(move |req| match req.header("range") {
                Some(range) => {
                    let (a, b) = range["bytes=".len()..].split_once('-').unwrap();
                    Reply::file(file.clone())
                        .without_ranges()
                        .with_status(206)
                        .with_header("ETag", "\"v1\"")
                        .with_header("Content-Range", &format!("bytes {a}-{b}/{}", file.len()))
                        .with_fault(fault.clone())
                }
                None => Reply::file(file.clone()).with_header("ETag", "\"v1\""),
            })
            .unwrap()
        };
        let out = tempfile::tempdir().unwrap();
        let stderr = split_strict("4", out.path(), &server.url("/f.bin"), 0);
        assert!(stderr.contains("pieces disagreed"), "{fault:?}: {stderr}");
        assert_eq!(
            checksums(out.path()),
            [("f.bin".to_string(), expected.clone())].into(),
            "{fault:?}"
        );
        let requests = server.requests();
        assert!(
            requests.iter().any(|r| r.header("range").is_some()),
            "pieces were asked for"
        );
    }
}

/// The same server after a dropped connection: the resume's 206 is the range asked for by its
/// `Content-Range` and the whole file by its length. It is not joined: the download starts over
/// and the file is whole.
#[test]
fn a_resume_whose_body_is_not_its_range_starts_over() {
    let file: Arc<[u8]> = generated_files(1, BIG, BIG).remove(0).1;
    let expected = sha256(&file);
    let seen = Arc::new(AtomicUsize::new(0));
    let server = {
        let (file, seen) = (file.clone(), seen.clone());
        Server::start(move |req| {
            let first = seen.fetch_add(1, Ordering::SeqCst) == 0;
            let reply = Reply::file(file.clone()).with_header("ETag", "\"v1\"");
            match req.header("range") {
                _ if first => reply.with_fault(Fault::ShortBody(1000)),
                Some(range) => {
                    let from = &range["bytes=".len()..range.len() - 1];
                    let last = file.len() - 1;
                    reply.without_ranges().with_status(206).with_header(
                        "Content-Range",
                        &format!("bytes {from}-{last}/{}", file.len()),
                    )
                }
                None => reply,
            }
        })
        .unwrap()
    };
    let out = tempfile::tempdir().unwrap();
    fetchpar()
        .args(["--max-retry-wait", "0.02", "-o"])
        .arg(out.path())
        .arg(server.url("/f.bin"))
        .assert()
        .code(0);
    assert_eq!(
        checksums(out.path()),
        [("f.bin".to_string(), expected)].into()
    );
    // Joined, the whole body ran past the file's end and took a second resume to undo.
    let ranges: Vec<Option<String>> = server
        .requests()
        .iter()
        .map(|r| r.header("range").map(str::to_string))
        .collect();
    assert_eq!(ranges, [None, Some("bytes=1000-".to_string()), None]);
}

/// Issue 9, mixed file 1: the pieces' 206s carry another ETag than the first response (the
/// server ignores `If-Range`). They are refused, and the file comes again over one connection:
/// one version, whole.
#[test]
fn pieces_of_another_version_are_refused_and_the_file_comes_over_one_connection() {
    let v1: Arc<[u8]> = generated_files(1, BIG, BIG).remove(0).1;
    let v2: Arc<[u8]> = v1.iter().map(|b| b ^ 0x5a).collect::<Vec<u8>>().into();
    let expected = sha256(&v2);
    let seen = Arc::new(AtomicUsize::new(0));
    let server = {
        let seen = seen.clone();
        Server::start(move |req| {
            // The file changes right after the first answer.
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                Reply::file(v1.clone()).with_header("ETag", "\"v1\"")
            } else if req.header("range").is_some() {
                ignoring_if_range(req, &v2, "\"v2\"")
            } else {
                Reply::file(v2.clone()).with_header("ETag", "\"v2\"")
            }
        })
        .unwrap()
    };
    let out = tempfile::tempdir().unwrap();
    let url = server.url("/f.bin");
    let assert = fetchpar()
        .args(["--split", "4", "--retries", "0", "-o"])
        .arg(out.path())
        .arg(&url)
        .assert()
        .code(0);
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    assert_eq!(
        stdout.trim(),
        out.path().join("f.bin").display().to_string()
    );
    assert_eq!(
        checksums(out.path()),
        [("f.bin".to_string(), expected)].into()
    );
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.header("if-range") == Some("\"v1\"")),
        "pieces were asked for"
    );
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.header("range").is_none())
            .count(),
        2,
        "the first request, then one refetch over one connection"
    );
}

/// Issue 9: a file whose pieces disagree, and whose one-connection refetch disagrees again
/// (cut off, then resumed with yet another version), fails; nothing is saved mixed.
#[test]
fn a_file_that_keeps_changing_fails_instead_of_looping() {
    let version = |k: u8| -> Arc<[u8]> {
        let base = generated_files(1, BIG, BIG).remove(0).1;
        base.iter().map(|b| b ^ k).collect::<Vec<u8>>().into()
    };
    let wholes = Arc::new(AtomicUsize::new(0));
    let server = {
        let wholes = wholes.clone();
        Server::start(move |req| {
            // Each whole answer is a new version; every range comes from the next one.
            if req.header("range").is_some() {
                let k = wholes.load(Ordering::SeqCst) as u8 + 1;
                ignoring_if_range(req, &version(k), &format!("\"v{k}\""))
            } else {
                let k = wholes.fetch_add(1, Ordering::SeqCst) as u8 + 1;
                let reply = Reply::file(version(k)).with_header("ETag", &format!("\"v{k}\""));
                if k >= 2 {
                    reply.with_fault(Fault::ShortBody(50_000))
                } else {
                    reply
                }
            }
        })
        .unwrap()
    };
    let out = tempfile::tempdir().unwrap();
    let url = server.url("/f.bin");
    let assert = fetchpar()
        .args([
            "--split",
            "4",
            "--retries",
            "3",
            "--max-retry-wait",
            "0.01",
            "-o",
        ])
        .arg(out.path())
        .arg(&url)
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        stderr.lines().any(|l| l.starts_with(&format!(
            "fetchpar: {url}: the file changed during download"
        ))),
        "{stderr}"
    );
    assert!(
        !out.path().join("f.bin").exists(),
        "nothing under the final name"
    );
    assert_eq!(
        wholes.load(Ordering::SeqCst),
        2,
        "started over once, not in a loop"
    );
    // What is kept is one version's own bytes, from the start.
    if let Ok(kept) = std::fs::read(out.path().join("f.bin.part")) {
        assert_eq!(&kept[..], &version(2)[..kept.len()]);
    }
}

/// Issue 9: a process killed outright while pieces run leaves a part the next `-c` recognises
/// as its own (its sidecar was written before the part was preallocated): it is resumed under
/// its own name, with no `f~1.bin` and no orphan.
#[test]
fn continue_after_a_kill_during_split_resumes_its_own_part() {
    let body: Arc<[u8]> = generated_files(1, BIG, BIG).remove(0).1;
    let stall = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let server = {
        let (body, stall) = (body.clone(), stall.clone());
        Server::start(move |req| {
            let reply = Reply::file(body.clone()).with_header("ETag", "\"v1\"");
            let piece = req
                .header("range")
                .is_some_and(|r| !r.starts_with("bytes=0-"));
            if piece && stall.load(Ordering::SeqCst) {
                reply.with_fault(Fault::StallAfter(1000, Duration::from_secs(30)))
            } else {
                reply
            }
        })
        .unwrap()
    };
    let out = tempfile::tempdir().unwrap();
    let url = server.url("/f.bin");
    let mut child = command()
        .args(["--split", "4", "--timeout", "60", "-o"])
        .arg(out.path())
        .arg(&url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let part = out.path().join("f.bin.part");
    wait_for_len(&part, BIG as u64);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(std::fs::metadata(&part).unwrap().len(), BIG as u64);
    stall.store(false, Ordering::SeqCst);
    for _ in 0..2 {
        fetchpar()
            .args(["-c", "--split", "4", "-o"])
            .arg(out.path())
            .arg(&url)
            .assert()
            .success();
    }
    assert_eq!(
        checksums(out.path()),
        [("f.bin".to_string(), sha256(&body))].into(),
        "resumed under its own name, nothing piled up"
    );
}

/// A file without a validator (no strong `ETag`, no `Last-Modified`) is not split: nothing could
/// tell a piece of another version from one of this one. It comes over one connection, noted.
#[test]
fn a_file_without_a_validator_comes_over_one_connection() {
    let body: Arc<[u8]> = generated_files(1, BIG, BIG).remove(0).1;
    let served = body.clone();
    let server = serve(move |_| Reply::file(served.clone()).with_header("ETag", "W/\"weak\""));
    let (saved, stderr) = split_f(&server);
    assert_eq!(saved, [("f.bin".to_string(), sha256(&body))].into());
    assert!(server
        .requests()
        .iter()
        .all(|r| r.header("range").is_none()));
    assert!(
        stderr.contains("--split 4: 1 file from servers without byte-range support or a validator"),
        "{stderr}"
    );
}

/// A server that announces ranges and answers every piece with the whole file: the file comes
/// again over one connection, whole, and the run's one note counts it (a reviewer saw the
/// fallback work without a word).
#[test]
fn a_server_that_announces_ranges_but_sends_whole_files_is_in_the_note() {
    let body: Arc<[u8]> = generated_files(1, BIG, BIG).remove(0).1;
    let served = body.clone();
    let server = serve(move |_| {
        Reply::file(served.clone())
            .without_ranges()
            .with_header("Accept-Ranges", "bytes")
            .with_header("ETag", "\"v1\"")
    });
    let (saved, stderr) = split_f(&server);
    assert_eq!(saved, [("f.bin".to_string(), sha256(&body))].into());
    // The reason said is this one, not a server without range support or a validator.
    assert!(
        stderr.contains("--split 4: 1 file whose pieces disagreed with the first response"),
        "{stderr}"
    );
    assert!(!stderr.contains("without byte-range support"), "{stderr}");
}

/// `--split 4` of `/f.bin` from `server`, which must succeed: what was saved, and stderr.
fn split_f(server: &Server) -> (std::collections::BTreeMap<String, String>, String) {
    let out = tempfile::tempdir().unwrap();
    let assert = fetchpar()
        .args(["--split", "4", "-o"])
        .arg(out.path())
        .arg(server.url("/f.bin"))
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    (checksums(out.path()), stderr)
}
