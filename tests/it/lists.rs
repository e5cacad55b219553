//! Lists that carry more than URLs (issue 12): aria2c input files with mirrors and option lines,
//! `--checksums` files and verification, `-N` (re-download only what changed) and
//! `--skip-existing`: the bytes on disk by checksum, exit codes, the lines said, the requests the
//! server saw.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::*;

/// The fixture's first entry rewritten for a local server: a TAB mirror, `dir=`/`out=`, the
/// right checksum and options fetchpar does not know (twice, to show each is said once).
fn aria2c_list(server: &Server, expected: &std::collections::BTreeMap<String, String>) -> String {
    let a = server.url("/file-00.bin");
    let b = server.url("/file-01.bin");
    let dead = server.url("/gone.bin");
    format!(
        "# written for aria2c -i\n\
         {a}\t{a}?mirror=1\n\
         \x20 dir=sets/one\n\
         \x20 out=first.bin\n\
         \x20 checksum=sha-256={sum}\n\
         \x20 split=4\n\
         \n\
         {b}\n\
         \tdir=sets\n\
         \tsplit=2\n\
         \tmax-connection-per-server=2\n\
         {dead}\n\
         \x20 out=never.bin\n",
        sum = expected["file-00.bin"],
    )
}

fn write_list(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("input.txt");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn an_aria2c_input_file_puts_files_where_its_options_say() {
    let (server, expected) = file_server(2, 3000, 9000, Duration::ZERO);
    let work = tempfile::tempdir().unwrap();
    let list = write_list(work.path(), &aria2c_list(&server, &expected));
    let out = work.path().join("out");
    let output = fetchpar()
        .arg("-i")
        .arg(&list)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    // The dead entry fails (it has no mirror); the others are saved where dir/out say.
    assert_eq!(output.status.code(), Some(1));
    let saved = checksums(&out);
    let want: std::collections::BTreeMap<String, String> = [
        ("sets/one/first.bin", &expected["file-00.bin"]),
        ("sets/file-01.bin", &expected["file-01.bin"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.clone()))
    .collect();
    assert_eq!(saved, want);
    let stderr = lines(&output.stderr);
    let warned = |name: &str| {
        stderr
            .iter()
            .filter(|l| l.contains(&format!("warning: option '{name}' is not supported")))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(warned("split"), ["fetchpar: line 6: warning: option 'split' is not supported by fetchpar and is ignored (said once)"]);
    assert_eq!(warned("max-connection-per-server").len(), 1);
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("gone.bin") && l.contains("404")),
        "{stderr:?}"
    );
}

#[test]
fn dir_or_out_that_leaves_the_output_directory_is_refused_with_its_line() {
    let (server, expected) = file_server(1, 1000, 1000, Duration::ZERO);
    let work = tempfile::tempdir().unwrap();
    let url = server.url("/file-00.bin");
    let list = write_list(
        work.path(),
        &format!("{url}\n  dir=../escape\n{url}?2\n  out=/tmp/abs.bin\n{url}?3\n  dir=ok\n"),
    );
    let out = work.path().join("out");
    let output = fetchpar()
        .arg("-i")
        .arg(&list)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 2: dir=../escape: dir ../escape climbs out with '..'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 4: out=/tmp/abs.bin: out /tmp/abs.bin is absolute"),
        "{stderr}"
    );
    // Only the good entry is on disk, and nothing beside the output directory.
    let saved: Vec<String> = checksums(&out).into_keys().collect();
    assert_eq!(saved, ["ok/file-00.bin"]);
    assert_eq!(
        checksums(work.path()).len(),
        2,
        "only the list and ok/file-00.bin"
    );
    assert_eq!(checksums(&out)["ok/file-00.bin"], expected["file-00.bin"]);
}

#[test]
fn option_lines_on_stdin_are_refused_and_the_url_still_downloads() {
    let (server, expected) = file_server(1, 1000, 1000, Duration::ZERO);
    let out = tempfile::tempdir().unwrap();
    let output = fetchpar()
        .arg("-o")
        .arg(out.path())
        .write_stdin(format!("{}\n  out=x.bin\n", server.url("/file-00.bin")))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .contains("line 2: out=x.bin: option lines (key=value) are read only from a list file"),
        "{stderr}"
    );
    assert_eq!(checksums(out.path()), expected);
}

#[test]
fn a_malformed_checksums_file_is_a_usage_error_with_its_line() {
    let work = tempfile::tempdir().unwrap();
    let sums = work.path().join("SHA256SUMS");
    let good = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    std::fs::write(
        &sums,
        format!("{good}  a.bin\nSHA256 (b.bin) = {good}\n{good} c.bin\n"),
    )
    .unwrap();
    let out = work.path().join("out");
    let output = fetchpar()
        .arg("--checksums")
        .arg(&sums)
        .arg("-o")
        .arg(&out)
        .arg("http://127.0.0.1:9/never-asked")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SHA256SUMS: line 3: "), "{stderr}");
    assert!(!out.exists(), "nothing may start before the usage error");

    let missing = work.path().join("nope");
    let output = fetchpar()
        .arg("--checksums")
        .arg(&missing)
        .arg("http://127.0.0.1:9/never-asked")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read the checksums file"));
}

/// A file outside the sandbox (which must hold only `out`), and its path.
fn scratch(name: &str, text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path.to_string_lossy().into_owned())
}

/// The full-body (200) answers the server gave for `path`.
fn bodies_sent(server: &Server, path: &str) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.path() == path && r.header("range").is_none())
        .filter(|r| r.header("if-modified-since").is_none())
        .count()
}

#[test]
fn an_aria2c_list_with_a_dead_first_mirror_and_checksums_is_saved_verified() {
    let a = body(70_000, 1);
    let b = body(3_000, 2);
    let (a2, b2) = (a.clone(), b.clone());
    let server = serve(move |req| match req.path() {
        "/a.bin" => Reply::file(a2.clone()),
        "/b.bin" => Reply::file(b2.clone()),
        _ => Reply::status(404),
    });
    let sandbox = Sandbox::new();
    let dead = server.url("/dead/a.bin");
    let list = format!(
        "{dead}\t{a}\n  out=first.bin\n  checksum=sha-256={sa}\n  split=2\n{b}\n  dir=sub\n  checksum=sha-256={sb}\n",
        a = server.url("/a.bin"),
        b = server.url("/b.bin"),
        sa = sha256(&a),
        sb = sha256(&b),
    );
    let (_inputs, list_txt) = scratch("list.txt", &list);
    std::fs::create_dir_all(sandbox.out()).unwrap();
    let (code, stdout, stderr) = sandbox.run(&["-i", list_txt.as_str(), "--json"]);
    assert_eq!(code, 0, "{stderr:?}");
    let files = sandbox.files();
    assert_eq!(files["first.bin"], sha256(&a));
    assert_eq!(files["sub/b.bin"], sha256(&b));
    assert_eq!(files.len(), 2, "{files:?}");
    let recs = url_records(&stdout);
    let first = recs.iter().find(|r| r["line"] == 1).unwrap();
    assert_eq!(first["status"], "saved");
    assert_eq!(first["checksum"], format!("sha-256={}", sha256(&a)));
    assert_eq!(
        first["source"],
        server.url("/a.bin"),
        "the live mirror served it"
    );
    assert!(stderr
        .iter()
        .any(|l| l.contains("line 4: warning: option 'split'")));
}

/// `-c` over a file the live mirror served (the first URL gone): the URL cannot tell whether
/// the file is complete, so the mirror is asked, and the file is found complete, not failed.
#[test]
fn continue_asks_the_mirror_about_a_file_its_first_url_no_longer_has() {
    let data = body(20_000, 4);
    let served = data.clone();
    let server = serve(move |req| match req.path() {
        "/live/f.bin" => Reply::file(served.clone()),
        _ => Reply::status(404),
    });
    let sandbox = Sandbox::new();
    let list = format!(
        "{}\t{}\n",
        server.url("/gone/f.bin"),
        server.url("/live/f.bin")
    );
    let (_inputs, list_txt) = scratch("list.txt", &list);
    for flags in [&[][..], &["-c"]] {
        let (code, stdout, stderr) =
            sandbox.run(&[&["-i", list_txt.as_str(), "--json"][..], flags].concat());
        assert_eq!(code, 0, "{flags:?}: {stderr:?}");
        assert_eq!(sandbox.files(), one(&[("f.bin", &data)]), "{flags:?}");
        let status = if flags.is_empty() { "saved" } else { "skipped" };
        assert_eq!(url_records(&stdout)[0]["status"], status, "{flags:?}");
    }
}

#[test]
fn a_sha256sums_file_in_all_three_forms_checks_each_file_and_warns_on_a_missing_one() {
    let (server, expected) = file_server(4, 2000, 90_000, Duration::ZERO);
    let sandbox = Sandbox::new();
    let sum = |n: usize| expected[&format!("file-0{n}.bin")].clone();
    let sums = format!(
        "# published\n{}  file-00.bin\n{} *./file-01.bin\nSHA256 (file-02.bin) = {}\n",
        sum(0),
        sum(1),
        sum(2)
    );
    let (_inputs, sha256sums) = scratch("SHA256SUMS", &sums);
    let mut args = vec![
        "--checksums".to_string(),
        sha256sums.clone(),
        "--json".into(),
    ];
    args.extend(urls_of(&server, &expected));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = sandbox.run(&args);
    assert_eq!(code, 0, "{stderr:?}");
    assert_eq!(sandbox.files(), expected);
    let recs = url_records(&stdout);
    for n in 0..3 {
        let rec = recs
            .iter()
            .find(|r| {
                r["path"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("file-0{n}.bin"))
            })
            .unwrap();
        assert_eq!(rec["checksum"], format!("sha-256={}", sum(n)));
    }
    let url3 = server.url("/file-03.bin");
    let warned: Vec<&String> = stderr.iter().filter(|l| l.contains("warning")).collect();
    assert_eq!(
        warned,
        [&format!(
            "fetchpar: {url3}: warning: file-03.bin: no entry in the checksums file; saved without verifying"
        )]
    );
}

#[test]
fn a_checksum_mismatch_saves_nothing_after_one_retry_from_zero() {
    let data = body(100_000, 7);
    let served = data.clone();
    let server = serve(move |_| Reply::file(served.clone()).with_header("ETag", "\"v1\""));
    let sandbox = Sandbox::new();
    let wrong = "3a7b".to_string() + &"0".repeat(60);
    let list = format!("{}\n  checksum=sha-256={wrong}\n", server.url("/x.bin"));
    let (_inputs, list_txt) = scratch("list.txt", &list);
    std::fs::create_dir_all(sandbox.out()).unwrap();
    let (code, _, stderr) = sandbox.run(&["-i", list_txt.as_str()]);
    assert_eq!(code, 1);
    let got = &sha256(&data)[..4];
    let want = format!(
        "fetchpar: {}: checksum mismatch: expected 3a7b…, got {got}… (after 1 retry); nothing saved",
        server.url("/x.bin")
    );
    assert!(stderr.contains(&want), "{stderr:?}");
    assert!(sandbox.files().is_empty(), "no .part, no sidecar, no file");
    assert_eq!(bodies_sent(&server, "/x.bin"), 2, "retried once from zero");
    // `--retries 0` means none, this one included.
    let (code, _, stderr) = sandbox.run(&["--retries", "0", "-i", list_txt.as_str()]);
    assert_eq!(code, 1);
    let once = want.replace(" (after 1 retry)", "");
    assert!(stderr.contains(&once), "{stderr:?}");
    assert_eq!(bodies_sent(&server, "/x.bin"), 3, "one more, not two");
}

#[test]
fn a_mismatch_from_one_mirror_is_retried_from_the_next() {
    let good = body(20_000, 3);
    let bad = body(20_000, 4);
    let (g, b) = (good.clone(), bad.clone());
    let server = serve(move |req| match req.path() {
        "/bad/x.bin" => Reply::file(b.clone()),
        _ => Reply::file(g.clone()),
    });
    let sandbox = Sandbox::new();
    let list = format!(
        "{} {}\n  checksum=sha-256={}\n",
        server.url("/bad/x.bin"),
        server.url("/good/x.bin"),
        sha256(&good)
    );
    let (_inputs, list_txt) = scratch("list.txt", &list);
    std::fs::create_dir_all(sandbox.out()).unwrap();
    let (code, stdout, stderr) = sandbox.run(&["-i", list_txt.as_str(), "--json"]);
    assert_eq!(code, 0, "{stderr:?}");
    assert_eq!(sandbox.files()["x.bin"], sha256(&good));
    assert_eq!(url_records(&stdout)[0]["source"], server.url("/good/x.bin"));
    // `--retries 0` retries nothing, but the mirror is still asked, as after any failure.
    std::fs::remove_file(sandbox.out().join("x.bin")).unwrap();
    let (code, stdout, stderr) =
        sandbox.run(&["--retries", "0", "-i", list_txt.as_str(), "--json"]);
    assert_eq!(code, 0, "{stderr:?}");
    assert_eq!(sandbox.files()["x.bin"], sha256(&good));
    assert_eq!(url_records(&stdout)[0]["retries"], 0);
}

#[test]
fn require_checksum_fails_a_file_without_one_before_any_request() {
    let server = serve(|_| Reply::file(b"data".to_vec()));
    let sandbox = Sandbox::new();
    let (_inputs, sums) = scratch("SUMS", "");
    let url = server.url("/x.bin");
    let (code, _, stderr) = sandbox.run(&[
        "--checksums",
        sums.as_str(),
        "--require-checksum",
        url.as_str(),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.iter().any(|l| l
        == &format!("fetchpar: {url}: x.bin: no entry in the checksums file, and --require-checksum is on; nothing saved")), "{stderr:?}");
    assert!(server.requests().is_empty());
    assert!(sandbox.files().is_empty());
}

/// A URL whose name fetchpar marks with a `_` (`photo~1.jpg` is saved as `photo~1_.jpg`,
/// `x.part` as `x.part_`) is still found in a publisher's checksums file by its own name.
#[test]
fn a_checksums_file_knows_a_marked_name_by_the_publishers_name() {
    let server = serve(|req| Reply::file(req.path().as_bytes().to_vec()));
    let sandbox = Sandbox::new();
    let lines = format!(
        "{}  photo~1.jpg\n{}  x.part\n",
        sha256(b"/p/photo~1.jpg"),
        sha256(b"/p/x.part")
    );
    let (_inputs, sums) = scratch("SUMS", &lines);
    let urls = ["/p/photo~1.jpg", "/p/x.part"].map(|p| server.url(p));
    let (code, _, stderr) = sandbox.run(&[
        "--checksums",
        sums.as_str(),
        "--require-checksum",
        urls[0].as_str(),
        urls[1].as_str(),
    ]);
    assert_eq!(code, 0, "{stderr:?}");
    let want = [("photo~1_.jpg", "/p/photo~1.jpg"), ("x.part_", "/p/x.part")]
        .map(|(name, bytes)| (name.to_string(), sha256(bytes.as_bytes())));
    assert_eq!(sandbox.files(), want.into_iter().collect());
}

/// A server whose files have versions: each answers with its `Last-Modified` (unless `dated`
/// is false) and a `304` to an `If-Modified-Since` that names exactly that date.
struct Versioned {
    server: Server,
    files: Arc<Mutex<Files>>,
}

/// By path: the body and its `Last-Modified`.
type Files = BTreeMap<String, (Arc<[u8]>, String)>;

impl Versioned {
    fn start(names: &[&str], dated: bool) -> Versioned {
        let files: Files = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let date = "Wed, 21 Oct 2015 07:28:00 GMT".to_string();
                (format!("/{n}"), (body(5000 + i * 100, i as u8), date))
            })
            .collect();
        let files = Arc::new(Mutex::new(files));
        let shared = files.clone();
        let server = serve(move |req| {
            let files = shared.lock().unwrap();
            let Some((data, date)) = files.get(req.path()) else {
                return Reply::status(404);
            };
            if !dated {
                return Reply::file(data.clone());
            }
            if req.header("if-modified-since") == Some(date.as_str()) {
                return Reply::file(Vec::new()).with_status(304).without_ranges();
            }
            Reply::file(data.clone()).with_header("Last-Modified", date)
        });
        Versioned { server, files }
    }

    fn change(&self, name: &str, seed: u8) {
        let mut files = self.files.lock().unwrap();
        let entry = files.get_mut(&format!("/{name}")).unwrap();
        *entry = (body(6000, seed), "Thu, 22 Oct 2015 07:28:00 GMT".into());
    }

    fn sha(&self, name: &str) -> String {
        sha256(&self.files.lock().unwrap()[&format!("/{name}")].0)
    }
}

#[test]
fn timestamping_fetches_again_only_the_file_that_changed() {
    let v = Versioned::start(&["a.bin", "b.bin"], true);
    let sandbox = Sandbox::new();
    let list = format!("{}\n{}\n", v.server.url("/a.bin"), v.server.url("/b.bin"));
    let (_inputs, list_txt) = scratch("list.txt", &list);
    std::fs::create_dir_all(sandbox.out()).unwrap();
    let (code, _, stderr) = sandbox.run(&["-N", "-i", list_txt.as_str()]);
    assert_eq!(code, 0, "{stderr:?}");
    let mtime = std::fs::metadata(sandbox.out().join("a.bin"))
        .unwrap()
        .modified()
        .unwrap();
    let want = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
    assert_eq!(mtime, want, "the saved file has the server's Last-Modified");

    v.change("b.bin", 99);
    let (code, stdout, stderr) = sandbox.run(&["-N", "-i", list_txt.as_str(), "--json"]);
    assert_eq!(code, 0, "{stderr:?}");
    let recs = url_records(&stdout);
    let status = |line: u64| recs.iter().find(|r| r["line"] == line).unwrap()["status"].clone();
    assert_eq!(status(1), "unchanged");
    assert_eq!(status(2), "saved");
    let summary: serde_json::Value = serde_json::from_str(stdout.last().unwrap()).unwrap();
    assert_eq!(summary["unchanged"], 1);
    assert_eq!(summary["saved"], 1);
    // Only b's new version came over the wire again; no `.1` copies, both files current.
    assert_eq!(bodies_sent(&v.server, "/a.bin"), 1);
    assert_eq!(bodies_sent(&v.server, "/b.bin"), 1);
    let files = sandbox.files();
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(files["a.bin"], v.sha("a.bin"));
    assert_eq!(files["b.bin"], v.sha("b.bin"));
    let asked = v
        .server
        .requests()
        .iter()
        .filter(|r| r.header("if-modified-since").is_some())
        .count();
    assert_eq!(asked, 2, "the second run asked about both files");
}

#[test]
fn timestamping_without_last_modified_says_once_it_cannot_tell_and_replaces() {
    let v = Versioned::start(&["a.bin", "b.bin"], false);
    let sandbox = Sandbox::new();
    let (a, b) = (v.server.url("/a.bin"), v.server.url("/b.bin"));
    let (code, _, _) = sandbox.run(&["-N", &a, &b]);
    assert_eq!(code, 0);
    v.change("a.bin", 50);
    let (code, _, stderr) = sandbox.run(&["-N", "-j", "1", &a, &b]);
    assert_eq!(code, 0, "{stderr:?}");
    let told: Vec<&String> = stderr
        .iter()
        .filter(|l| l.contains("cannot tell"))
        .collect();
    assert_eq!(told.len(), 1, "{stderr:?}");
    let files = sandbox.files();
    assert_eq!(files.len(), 2, "replaced by rename, no copies: {files:?}");
    assert_eq!(files["a.bin"], v.sha("a.bin"));
}

/// A server that ignores `If-Modified-Since` (as nginx's default `if_modified_since exact` does
/// when the dates differ) and answers 200 with `date` as its `Last-Modified`.
fn ignores_if_modified_since(data: Arc<[u8]>, date: &str) -> Server {
    let date = date.to_string();
    serve(move |_| Reply::file(data.clone()).with_header("Last-Modified", &date))
}

/// `name` in `dir` holding `text`, dated `date` (an HTTP date), plus half a second: the
/// comparison is in whole seconds, as HTTP dates are.
fn dated_file(dir: &Path, name: &str, text: &[u8], date: &str) -> std::time::SystemTime {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let when = httpdate::parse_http_date(date).unwrap() + Duration::from_millis(500);
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(when).unwrap();
    when
}

#[test]
fn timestamping_keeps_a_newer_file_when_the_server_ignores_if_modified_since() {
    let local = "Sat, 01 Jun 2024 12:00:00 GMT";
    // Older, and the same second: neither replaces the file.
    for served in ["Sun, 01 Jan 2023 12:00:00 GMT", local] {
        let server = ignores_if_modified_since(body(200_000, 7), served);
        let sandbox = Sandbox::new();
        let when = dated_file(&sandbox.out(), "n.txt", b"mine, newer", local);
        let url = server.url("/n.txt");
        let (code, stdout, stderr) = sandbox.run(&["-N", "--json", &url]);
        assert_eq!(code, 0, "{stderr:?}");
        let recs = url_records(&stdout);
        assert_eq!(recs[0]["status"], "unchanged", "{stdout:?}");
        assert_eq!(recs[0]["http_status"], 200, "what the server sent");
        assert_eq!(
            recs[0]["bytes"], 0,
            "the body is not downloaded: {stdout:?}"
        );
        let summary: serde_json::Value = serde_json::from_str(stdout.last().unwrap()).unwrap();
        assert_eq!(
            (summary["unchanged"].as_u64(), summary["saved"].as_u64()),
            (Some(1), Some(0))
        );
        assert!(
            stderr.iter().any(|l| l.contains("] unchanged ")),
            "{stderr:?}"
        );
        let files = sandbox.files();
        assert_eq!(files.len(), 1, "no part left: {files:?}");
        assert_eq!(files["n.txt"], sha256(b"mine, newer"));
        let path = sandbox.out().join("n.txt");
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), when);
        let asked = server.requests()[0]
            .header("if-modified-since")
            .map(str::to_string);
        assert_eq!(asked.as_deref(), Some(local), "the file was asked about");
    }
}

#[test]
fn timestamping_replaces_an_older_file_when_the_server_ignores_if_modified_since() {
    let served = "Sun, 01 Jun 2025 12:00:00 GMT";
    let data = body(200_000, 8);
    let server = ignores_if_modified_since(data.clone(), served);
    let sandbox = Sandbox::new();
    dated_file(
        &sandbox.out(),
        "n.txt",
        b"mine, older",
        "Sat, 01 Jun 2024 12:00:00 GMT",
    );
    let (code, stdout, stderr) = sandbox.run(&["-N", "--json", &server.url("/n.txt")]);
    assert_eq!(code, 0, "{stderr:?}");
    assert_eq!(url_records(&stdout)[0]["status"], "saved", "{stdout:?}");
    let files = sandbox.files();
    assert_eq!(files.len(), 1, "replaced by rename, no copies: {files:?}");
    assert_eq!(files["n.txt"], sha256(&data));
    let mtime = std::fs::metadata(sandbox.out().join("n.txt"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(mtime, httpdate::parse_http_date(served).unwrap());
}

/// A file dated before 1970 (as `touch -d 1960-01-01` makes) has no HTTP date: it is not asked
/// about, and the server's dated copy, later than it, replaces it. Before, the worker panicked.
#[test]
fn timestamping_replaces_a_file_dated_before_1970_without_asking() {
    let data = body(5_000, 9);
    let server = ignores_if_modified_since(data.clone(), "Sun, 01 Jan 2023 12:00:00 GMT");
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.out()).unwrap();
    let path = sandbox.out().join("n.txt");
    std::fs::write(&path, b"from the sixties").unwrap();
    let when = std::time::UNIX_EPOCH - Duration::from_secs(10 * 365 * 86_400);
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(when).unwrap();
    drop(file);
    let (code, stdout, stderr) = sandbox.run(&["-N", "--json", &server.url("/n.txt")]);
    assert_eq!(code, 0, "{stderr:?}");
    assert_eq!(url_records(&stdout)[0]["status"], "saved", "{stdout:?}");
    assert_eq!(
        sandbox.files(),
        BTreeMap::from([("n.txt".to_string(), sha256(&data))])
    );
    assert_eq!(server.requests()[0].header("if-modified-since"), None);
}

#[test]
fn skip_existing_trusts_the_file_on_disk_without_a_request() {
    let server = serve(|_| Reply::file(b"new".to_vec()));
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.out()).unwrap();
    std::fs::write(sandbox.out().join("x.bin"), b"old").unwrap();
    let url = server.url("/x.bin");
    let (code, stdout, stderr) = sandbox.run(&["--skip-existing", "--json", &url]);
    assert_eq!(code, 0);
    assert_eq!(url_records(&stdout)[0]["status"], "skipped");
    // Seen there, not checked: the line does not call it complete.
    let said = format!(
        "skipped {} (already there: --skip-existing checks nothing)",
        sandbox.out().join("x.bin").display()
    );
    assert!(stderr.iter().any(|l| l.ends_with(&said)), "{stderr:#?}");
    assert!(
        stderr
            .iter()
            .any(|l| l.starts_with("0 files saved, 1 already there,")),
        "{stderr:#?}"
    );
    assert!(server.requests().is_empty());
    assert_eq!(sandbox.files()["x.bin"], sha256(b"old"));
    let (code, _, _) = sandbox.run(&["--skip-existing", "--overwrite", &url]);
    assert_eq!(code, 2);
}

#[test]
fn continue_checks_a_complete_file_by_its_digest_without_asking() {
    let server = serve(|_| Reply::file(b"abc".to_vec()));
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.out()).unwrap();
    std::fs::write(sandbox.out().join("x.bin"), b"abc").unwrap();
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    let (_inputs, sums) = scratch("SUMS", &format!("{abc}  x.bin\n"));
    let url = server.url("/x.bin");
    let (code, stdout, _) = sandbox.run(&["-c", "--checksums", sums.as_str(), "--json", &url]);
    assert_eq!(code, 0);
    let rec = &url_records(&stdout)[0];
    assert_eq!(rec["status"], "skipped");
    assert_eq!(rec["checksum"], format!("sha-256={abc}"));
    assert!(server.requests().is_empty());
}

/// Two mirrors of one file with different `ETag`s; the first cuts the body off at 30 000 bytes.
fn cut_then_mirror(data: &Arc<[u8]>) -> Server {
    let served = data.clone();
    serve(move |req| match req.path() {
        "/one/x.bin" => Reply::file(served.clone())
            .with_header("ETag", "\"one\"")
            .with_fault(Fault::ShortBody(30_000)),
        _ => Reply::file(served.clone()).with_header("ETag", "\"two\""),
    })
}

fn mirror_ranges(server: &Server) -> Vec<Option<String>> {
    server
        .requests()
        .iter()
        .filter(|r| r.path() == "/two/x.bin")
        .map(|r| r.header("range").map(str::to_string))
        .collect()
}

#[test]
fn a_checksum_lets_the_next_mirror_continue_where_the_first_stopped() {
    let data = body(70_000, 9);
    let server = cut_then_mirror(&data);
    let sandbox = Sandbox::new();
    let (one, two) = (server.url("/one/x.bin"), server.url("/two/x.bin"));
    let list = format!("{one}\t{two}\n  checksum=sha-256={}\n", sha256(&data));
    let (_inputs, list_txt) = scratch("list.txt", &list);
    std::fs::create_dir_all(sandbox.out()).unwrap();
    let (code, stdout, stderr) =
        sandbox.run(&["--retries", "0", "-i", list_txt.as_str(), "--json"]);
    assert_eq!(code, 0, "{stderr:?}");
    assert_eq!(sandbox.files()["x.bin"], sha256(&data));
    assert_eq!(mirror_ranges(&server), [Some("bytes=30000-".to_string())]);
    assert_eq!(url_records(&stdout)[0]["source"], two);
}

#[test]
fn without_a_checksum_another_mirrors_version_starts_over() {
    let data = body(70_000, 9);
    let server = cut_then_mirror(&data);
    let (one, two) = (server.url("/one/x.bin"), server.url("/two/x.bin"));
    let (_inputs, list_txt) = scratch("list.txt", &format!("{one}\t{two}\n"));
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.out()).unwrap();
    let (code, _, stderr) = sandbox.run(&["--retries", "0", "-i", list_txt.as_str()]);
    assert_eq!(code, 0, "{stderr:?}");
    assert_eq!(sandbox.files()["x.bin"], sha256(&data));
    // It asked to continue (If-Range with the first mirror's ETag) and got the whole file.
    let asked: Vec<_> = server
        .requests()
        .iter()
        .filter(|r| r.path() == "/two/x.bin")
        .map(|r| {
            (
                r.header("range").map(str::to_string),
                r.header("if-range").map(str::to_string),
            )
        })
        .collect();
    assert_eq!(
        asked,
        [(Some("bytes=30000-".into()), Some("\"one\"".into()))]
    );
}

#[test]
fn split_pieces_are_verified_by_reading_the_finished_part() {
    let data = body(400_000, 5);
    let served = data.clone();
    let server = serve(move |_| Reply::file(served.clone()).with_header("ETag", "\"v\""));
    let url = server.url("/x.bin");
    for (sum, code) in [(sha256(&data), 0), ("00".repeat(32), 1)] {
        let sandbox = Sandbox::new();
        let (_inputs, list_txt) =
            scratch("list.txt", &format!("{url}\n  checksum=sha-256={sum}\n"));
        std::fs::create_dir_all(sandbox.out()).unwrap();
        let (got, _, stderr) = sandbox.run(&["--split", "4", "-i", list_txt.as_str()]);
        assert_eq!(got, code, "{stderr:?}");
        match code {
            0 => assert_eq!(sandbox.files()["x.bin"], sha256(&data)),
            _ => {
                assert!(
                    sandbox.files().is_empty(),
                    "nothing left: {:?}",
                    sandbox.files()
                );
                assert!(stderr
                    .iter()
                    .any(|l| l.contains("checksum mismatch: expected 0000…")));
            }
        }
    }
    let ranged = server
        .requests()
        .iter()
        .filter(|r| r.header("range").is_some())
        .count();
    assert!(ranged >= 3, "the pieces came over ranged requests");
}

#[test]
fn timestamping_with_continue_asks_about_complete_files() {
    let v = Versioned::start(&["a.bin", "b.bin"], true);
    let sandbox = Sandbox::new();
    let (a, b) = (v.server.url("/a.bin"), v.server.url("/b.bin"));
    let (code, _, _) = sandbox.run(&["-N", &a]);
    assert_eq!(code, 0);
    let (code, stdout, stderr) = sandbox.run(&["-N", "-c", "--json", &a, &b]);
    assert_eq!(code, 0, "{stderr:?}");
    let recs = url_records(&stdout);
    let status = |url: &str| recs.iter().find(|r| r["url"] == url).unwrap()["status"].clone();
    assert_eq!(status(&a), "unchanged");
    assert_eq!(status(&b), "saved");
    assert_eq!(sandbox.files().len(), 2);
    assert_eq!(
        bodies_sent(&v.server, "/a.bin"),
        1,
        "a was only asked about"
    );
}

/// A server that answers `304` to any `If-Modified-Since`, whatever the file on disk holds, and
/// the file (with a `Last-Modified`) to anything else.
fn always_not_modified(data: &Arc<[u8]>) -> Server {
    let data = data.clone();
    serve(move |req| {
        if req.header("if-modified-since").is_some() {
            return Reply::file(Vec::new()).with_status(304).without_ranges();
        }
        Reply::file(data.clone()).with_header("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
    })
}

#[test]
fn timestamping_replaces_a_file_that_does_not_match_its_checksum() {
    let data = body(5000, 7);
    let server = always_not_modified(&data);
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.out()).unwrap();
    let target = sandbox.out().join("a.bin");
    let list = format!(
        "{}\n  checksum=sha-256={}\n",
        server.url("/a.bin"),
        sha256(&data)
    );
    let (_inputs, list_txt) = scratch("list.txt", &list);
    for (run, extra) in [(1, None), (2, Some("-c"))] {
        std::fs::write(&target, b"garbage\n").unwrap();
        let mut args = vec!["-N", "--json", "-i", list_txt.as_str()];
        args.extend(extra);
        let (code, stdout, stderr) = sandbox.run(&args);
        assert_eq!(code, 0, "{extra:?}: {stderr:?}");
        let rec = &url_records(&stdout)[0];
        assert_eq!(rec["status"], "saved", "{extra:?}");
        let files = sandbox.files();
        assert_eq!(files.len(), 1, "replaced by rename, no copies: {files:?}");
        assert_eq!(files["a.bin"], sha256(&data), "{extra:?}");
        // A known-wrong file is not asked about: a 304 would have kept it.
        let requests = server.requests();
        assert_eq!(requests.len(), run, "{extra:?}");
        assert!(requests
            .iter()
            .all(|r| r.header("if-modified-since").is_none()));
    }
}

#[test]
fn timestamping_takes_a_file_that_matches_its_checksum_as_unchanged_without_asking() {
    let data = body(5000, 8);
    let server = always_not_modified(&data);
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.out()).unwrap();
    std::fs::write(sandbox.out().join("a.bin"), &data[..]).unwrap();
    let (_inputs, sums) = scratch("SUMS", &format!("{}  a.bin\n", sha256(&data)));
    let url = server.url("/a.bin");
    for extra in [None, Some("-c")] {
        let mut args = vec!["-N", "--checksums", sums.as_str(), "--json", url.as_str()];
        args.extend(extra);
        let (code, stdout, stderr) = sandbox.run(&args);
        assert_eq!(code, 0, "{extra:?}: {stderr:?}");
        let rec = &url_records(&stdout)[0];
        assert_eq!(rec["status"], "unchanged", "{extra:?}");
        assert_eq!(rec["checksum"], format!("sha-256={}", sha256(&data)));
        assert!(rec["http_status"].is_null(), "no request, no status: {rec}");
        let said = stderr
            .iter()
            .any(|l| l.contains("matches its expected checksum"));
        assert!(said, "{extra:?}: {stderr:?}");
        assert!(server.requests().is_empty(), "{extra:?}");
        assert_eq!(sandbox.files()["a.bin"], sha256(&data));
    }
}

#[test]
fn skip_existing_refuses_a_file_that_does_not_match_its_checksum() {
    let data = body(5000, 9);
    let server = serve({
        let data = data.clone();
        move |_| Reply::file(data.clone())
    });
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.out()).unwrap();
    std::fs::write(sandbox.out().join("a.bin"), b"garbage\n").unwrap();
    let (_inputs, sums) = scratch("SUMS", &format!("{}  a.bin\n", sha256(&data)));
    let url = server.url("/a.bin");
    for extra in [None, Some("-c")] {
        let mut args = vec![
            "--skip-existing",
            "--checksums",
            sums.as_str(),
            url.as_str(),
        ];
        args.extend(extra);
        let (code, _, stderr) = sandbox.run(&args);
        assert_eq!(code, 1, "{extra:?}: {stderr:?}");
        let line = "a.bin does not match its expected checksum; left untouched (drop \
                    --skip-existing to fetch it again)";
        assert!(
            stderr.iter().any(|l| l.contains(line)),
            "{extra:?}: {stderr:?}"
        );
        assert!(server.requests().is_empty(), "{extra:?}");
        let files = sandbox.files();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(files["a.bin"], sha256(b"garbage\n"), "left untouched");
    }
    // The right file is still trusted, and says which digest it was checked against.
    std::fs::write(sandbox.out().join("a.bin"), &data[..]).unwrap();
    let (code, stdout, stderr) =
        sandbox.run(&["--skip-existing", "--checksums", &sums, "--json", &url]);
    assert_eq!(code, 0);
    assert!(
        stderr
            .iter()
            .any(|l| l.ends_with("a.bin (already complete)")),
        "checked by its digest: {stderr:#?}"
    );
    let rec = &url_records(&stdout)[0];
    assert_eq!(rec["status"], "skipped");
    assert_eq!(rec["checksum"], format!("sha-256={}", sha256(&data)));
    assert!(server.requests().is_empty());
}
