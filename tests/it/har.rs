//! `--har FILE`: one entry per request (retries and `--split` pieces included), no secret in it,
//! and a file that a third-party HAR 1.2 validator accepts.
//!
//! The validator is npm's `har-validator`: `tests/har.sh` installs it into a temporary directory
//! and runs these tests with `FETCHPAR_HAR_VALIDATOR` pointing at it. Without that variable the
//! structural checks still run and the validation is skipped, saying so.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::util::*;

/// A run that retries one URL, splits another and sends credentials for a third.
fn har_of_a_busy_run() -> (Server, serde_json::Value, String) {
    let big = body(256 * 1024, 7);
    let tries = Arc::new(AtomicUsize::new(0));
    let server = serve(move |req| match req.path() {
        "/flaky" if tries.fetch_add(1, Ordering::SeqCst) == 0 => Reply::status(503),
        "/flaky" => Reply::file(body(1000, 1)),
        "/big" => Reply::file(big.clone()).with_header("ETag", "\"v1\""),
        "/private" => Reply::file(body(100, 2)).with_header("Set-Cookie", "session=hush-cookie"),
        _ => Reply::status(404),
    });
    let sandbox = Sandbox::new();
    let har = sandbox.root().join("run.har");
    let private = server
        .url("/private")
        .replacen("http://", "http://user:hush-password@", 1);
    let (code, _, stderr) = run(fetchpar()
        .args(["--split", "2", "--max-retry-wait", "0.02"])
        .args([
            "-H",
            "Authorization: Bearer hush-token",
            "-H",
            "X-Trace: visible",
        ])
        .arg("--har")
        .arg(&har)
        .arg("-o")
        .arg(sandbox.out())
        .args([server.url("/flaky"), server.url("/big"), private]));
    assert_eq!(code, 0, "{stderr:#?}");
    let text = std::fs::read_to_string(&har).unwrap();
    (server, serde_json::from_str(&text).unwrap(), text)
}

#[test]
fn every_request_is_an_entry_and_no_secret_is_written() {
    let (server, har, text) = har_of_a_busy_run();
    assert_eq!(har["log"]["version"], "1.2");
    let entries = har["log"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), server.requests().len(), "{text}");
    let statuses = |path: &str| {
        let mut s: Vec<u64> = entries
            .iter()
            .filter(|e| e["request"]["url"].as_str().unwrap().ends_with(path))
            .map(|e| e["response"]["status"].as_u64().unwrap())
            .collect();
        s.sort();
        s
    };
    assert_eq!(
        statuses("/flaky"),
        [200, 503],
        "the retry has its own entry"
    );
    assert_eq!(
        statuses("/big"),
        [200, 206],
        "each --split piece has its own entry"
    );
    assert!(entries.iter().any(|e| e["_piece"] == 1), "{text}");
    for e in entries {
        for k in ["send", "wait", "receive"] {
            assert!(e["timings"][k].as_f64().unwrap() >= 0.0, "{k}: {e}");
        }
        for k in ["blocked", "dns", "connect", "ssl"] {
            assert!(e["timings"][k].as_f64().unwrap() >= -1.0, "{k}: {e}");
        }
    }
    assert!(!text.contains("hush"), "a secret reached the HAR file");
    // The first request of the run opened its connection; the set-up is in the timings.
    assert!(
        entries[0]["timings"]["connect"].as_f64().unwrap() >= 0.0,
        "{text}"
    );
}

/// A request header of an entry, by name (any case).
fn request_header<'a>(entry: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    entry["request"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| h["value"].as_str().unwrap())
}

#[test]
fn entries_list_every_header_sent_with_credentials_redacted_and_the_real_version() {
    let (_server, har, text) = har_of_a_busy_run();
    let entries = har["log"]["entries"].as_array().unwrap();
    for e in entries {
        assert_eq!(e["request"]["httpVersion"], "HTTP/1.1", "{e}");
        assert_eq!(e["response"]["httpVersion"], "HTTP/1.1", "{e}");
        let agent = request_header(e, "user-agent").unwrap_or_default();
        assert!(agent.starts_with("fetchpar/"), "{e}");
        assert_eq!(request_header(e, "accept"), Some("*/*"), "{e}");
        assert_eq!(request_header(e, "x-trace"), Some("visible"), "{e}");
        // -H Authorization, or the URL's own user and password where it had them: either way
        // a credential went, and only `***` is written.
        assert_eq!(request_header(e, "authorization"), Some("***"), "{e}");
    }
    let piece = entries.iter().find(|e| e["_piece"] == 1).unwrap();
    assert!(request_header(piece, "range").is_some(), "{piece}");
    assert!(!text.contains("hush"), "a secret reached the HAR file");
    // Nor the basic-auth form of the URL's user and password.
    assert!(!text.contains("dXNlcjpodXNoLXBhc3N3b3Jk"), "{text}");
}

#[test]
fn a_har_validator_accepts_the_file() {
    let (_server, _, text) = har_of_a_busy_run();
    assert_valid(&text);
}

/// Runs har-validator on `text` when `tests/har.sh` provides it; says it skipped otherwise.
fn assert_valid(text: &str) {
    let Some(validator) = std::env::var_os("FETCHPAR_HAR_VALIDATOR") else {
        eprintln!("skipped: FETCHPAR_HAR_VALIDATOR is not set (tests/har.sh installs har-validator and sets it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.har");
    std::fs::write(&file, text).unwrap();
    let script = "const [v, f] = process.argv.slice(1);\
        require(v).har(JSON.parse(require('fs').readFileSync(f, 'utf8')))\
        .then(() => console.log('valid'), e => { console.error(JSON.stringify(e.errors || String(e))); process.exit(1); });";
    let out = Command::new("node")
        .arg("-e")
        .arg(script)
        .arg(&validator)
        .arg(&file)
        .output()
        .expect("node, to run har-validator");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("valid"),
        "har-validator: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// As a browser lists them: each hop of a redirect chain is an entry of its own, with its
/// status and where it led (a token in a `Location` hidden), then the final response.
#[test]
fn each_redirect_hop_is_an_entry() {
    let data = body(30_000, 8);
    let served = data.clone();
    let server = serve(move |req| match req.path() {
        "/a" => Reply::status(302).with_header("Location", "/b?sig=SEKRIT5&n=1"),
        "/b" => Reply::status(301).with_header("Location", "/c"),
        "/c" => Reply::file(served.clone()),
        _ => Reply::status(404),
    });
    let sandbox = Sandbox::new();
    let har = sandbox.root().join("run.har");
    let (code, _, stderr) = run(fetchpar()
        .arg("--har")
        .arg(&har)
        .arg("-o")
        .arg(sandbox.out())
        .arg(server.url("/a")));
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(
        checksums(&sandbox.out()),
        [("a".to_string(), sha256(&data))].into()
    );
    let text = std::fs::read_to_string(&har).unwrap();
    assert!(!text.contains("SEKRIT5"), "{text}");
    let har: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entries = har["log"]["entries"].as_array().unwrap();
    let b = server.url("/b?sig=***&n=1");
    let seen: Vec<(&str, u64, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["request"]["url"].as_str().unwrap(),
                e["response"]["status"].as_u64().unwrap(),
                e["response"]["redirectURL"].as_str().unwrap(),
            )
        })
        .collect();
    let (a, c) = (server.url("/a"), server.url("/c"));
    assert_eq!(
        seen,
        [
            (a.as_str(), 302, b.as_str()),
            (b.as_str(), 301, c.as_str()),
            (c.as_str(), 200, "")
        ],
        "{text}"
    );
    assert_eq!(entries[2]["response"]["content"]["size"], 30_000);
    assert_eq!(entries[0]["response"]["content"]["size"], 0);
    let location = |e: &serde_json::Value| {
        e["response"]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == "location")
            .map(|h| h["value"].clone())
    };
    assert_eq!(location(&entries[0]), Some("/b?sig=***&n=1".into()));
    assert_eq!(entries[1]["request"]["queryString"][0]["value"], "***");
    assert_valid(&text);
}

/// A chain that ends nowhere keeps its hops: the redirect that was answered, then the request
/// that was refused, with the error on that one (not on the URL asked, which answered).
#[test]
fn a_redirect_to_a_dead_host_keeps_the_hop_that_was_answered() {
    let dead = format!("http://127.0.0.1:{}/gone.bin", free_port());
    let to = dead.clone();
    let server = serve(move |_| Reply::status(302).with_header("Location", &to));
    let sandbox = Sandbox::new();
    let har = sandbox.root().join("run.har");
    let (code, _, stderr) = run(fetchpar()
        .args(["--retries", "0", "--har"])
        .arg(&har)
        .arg("-o")
        .arg(sandbox.out())
        .arg(server.url("/a")));
    assert_eq!(code, 1, "{stderr:#?}");
    let text = std::fs::read_to_string(&har).unwrap();
    assert_valid(&text);
    let har: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entries = har["log"]["entries"].as_array().unwrap();
    let seen: Vec<(&str, u64, &str, bool)> = entries
        .iter()
        .map(|e| {
            (
                e["request"]["url"].as_str().unwrap(),
                e["response"]["status"].as_u64().unwrap(),
                e["response"]["redirectURL"].as_str().unwrap(),
                e["_error"].is_string(),
            )
        })
        .collect();
    let a = server.url("/a");
    assert_eq!(
        seen,
        [
            (a.as_str(), 302, dead.as_str(), false),
            (dead.as_str(), 0, "", true)
        ],
        "{text}"
    );
    let error = entries[1]["_error"].as_str().unwrap();
    assert!(error.contains("connection refused"), "{error}");
}

/// A host whose first connect comes up and is never answered, then drops every SYN, at `-j 8`:
/// its first round goes out once the first connection has waited a moment, and those seven
/// connects time out together; one counts as the host's attempt and the others go back to wait
/// with its URLs (they failed with another's) until the host is given up. Every request is in
/// the HAR: those handed back used to be dropped with their first run.
#[test]
fn connects_handed_back_to_wait_for_their_host_stay_in_the_har() {
    let (dead, _listener) = half_open();
    let urls: Vec<String> = (0..8).map(|i| format!("http://{dead}/f{i}.bin")).collect();
    let sandbox = Sandbox::new();
    // Beside the sandbox, which must hold nothing but the output directory.
    let beside = tempfile::tempdir().unwrap();
    let har = beside.path().join("run.har");
    let mut args = vec![
        "-j",
        "8",
        "--connect-timeout",
        "1",
        "--timeout",
        "3",
        "--max-retry-wait",
        "0.1",
    ];
    args.extend(["--progress", "none", "--har", har.to_str().unwrap()]);
    args.extend(urls.iter().map(String::as_str));
    let (code, _, stderr) = sandbox.run(&args);
    assert_eq!(code, 1, "{stderr:#?}");
    let text = std::fs::read_to_string(&har).unwrap();
    assert_valid(&text);
    let har: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entries = har["log"]["entries"].as_array().unwrap();
    for e in entries {
        assert_eq!(e["response"]["status"], 0, "{e}");
        let error = e["_error"].as_str().unwrap();
        assert!(
            error.contains("timed out") || error.contains("no response within 3.00 s"),
            "{e}"
        );
    }
    let asked: std::collections::BTreeSet<&str> = entries
        .iter()
        .map(|e| e["request"]["url"].as_str().unwrap())
        .collect();
    assert_eq!(
        asked.len(),
        8,
        "the first one and its round of seven: {asked:?}"
    );
    // And three probes one at a time, the host's attempts after the round's.
    assert_eq!(entries.len(), 1 + 7 + 3, "{text}");
}

/// A report that could not be written after the run would be its one output lost: a folder
/// that cannot be made (under a file), or a folder under the name, is refused before any
/// request (exit 2). A folder merely missing is made, as `-o`'s is.
#[test]
fn a_report_file_that_cannot_be_written_is_refused_before_any_download() {
    let server = serve(|_| Reply::file(body(100, 3)));
    let sandbox = Sandbox::new();
    let folder = sandbox.root().join("a-folder");
    std::fs::create_dir(&folder).unwrap();
    let file = sandbox.root().join("a-file");
    std::fs::write(&file, b"").unwrap();
    for (flag, path, why) in [
        ("--har", file.join("run.har"), "Not a directory"),
        ("--timeline", folder.clone(), "is a folder"),
    ] {
        let (code, stdout, stderr) = run(fetchpar()
            .arg(flag)
            .arg(&path)
            .arg("-o")
            .arg(sandbox.out())
            .arg(server.url("/f")));
        assert_eq!(code, 2, "{flag}: {stderr:#?}");
        assert!(stdout.is_empty(), "{stdout:#?}");
        let line = format!(
            "cannot write the {}",
            if flag == "--har" {
                "HAR file"
            } else {
                "timeline"
            }
        );
        assert!(
            stderr.iter().any(|l| l.contains(&line) && l.contains(why)),
            "{stderr:#?}"
        );
    }
    assert!(server.requests().is_empty(), "nothing was asked for");
    assert!(sandbox.files().is_empty());
}

/// A report named as the output folder (not made yet, so nothing is in the way at the start)
/// would find a folder at its name once the run is over: refused before any request, however
/// the name is spelt (`..`, a link to the current folder).
#[test]
fn a_report_named_as_the_output_folder_is_refused_before_any_download() {
    let server = serve(|_| Reply::file(body(100, 5)));
    let sandbox = Sandbox::new();
    std::os::unix::fs::symlink(".", sandbox.root().join("here")).unwrap();
    for (flag, name, what) in [
        ("--har", "out", "the HAR file out"),
        ("--timeline", "./out/", "the timeline ./out/"),
        ("--har", "out/../out", "the HAR file out/../out"),
        (
            "--timeline",
            "nowhere/../out",
            "the timeline nowhere/../out",
        ),
        ("--har", "here/out", "the HAR file here/out"),
    ] {
        let (code, stdout, stderr) = run(sandbox.cmd().arg(flag).arg(name).arg(server.url("/f")));
        assert_eq!(code, 2, "{flag}: {stderr:#?}");
        assert!(stdout.is_empty(), "{stdout:#?}");
        assert!(
            stderr
                .iter()
                .any(|l| l.contains(what) && l.contains("is the output folder")),
            "{stderr:#?}"
        );
    }
    assert!(server.requests().is_empty(), "nothing was asked for");
    assert!(!sandbox.out().exists());
}

/// A report whose folder became a file during the run: the files are saved, the line says why
/// the report is not (without the temporary file's name), and the run fails (exit 1).
#[test]
fn a_report_file_that_could_not_be_written_after_the_run_fails_it() {
    let sandbox = Sandbox::new();
    let folder = sandbox.root().join("reports");
    std::fs::create_dir(&folder).unwrap();
    let gone = folder.clone();
    let server = serve(move |_| {
        let _ = std::fs::remove_dir_all(&gone);
        let _ = std::fs::write(&gone, b"in the way");
        Reply::file(body(100, 4))
    });
    let (code, stdout, stderr) = run(fetchpar()
        .arg("--har")
        .arg(folder.join("run.har"))
        .arg("-o")
        .arg(sandbox.out())
        .arg(server.url("/f")));
    assert_eq!(code, 1, "{stderr:#?}");
    assert_eq!(stdout.len(), 1, "the file is saved: {stdout:#?}");
    assert_eq!(sandbox.files().len(), 1);
    let line = stderr
        .iter()
        .find(|l| l.contains("cannot write the HAR file"))
        .unwrap_or_else(|| panic!("{stderr:#?}"));
    assert!(line.ends_with("File exists (os error 17)"), "{line}");
}

/// A report never replaces anything unasked: a file the run itself saved under the report's
/// name stays (the run fails, saying why), a dangling link at the name is refused before the
/// run (the report would replace the link), and one file is never both reports.
#[test]
fn a_report_never_replaces_a_file_unasked() {
    let data = body(2000, 5);
    let served = data.clone();
    let server = serve(move |_| Reply::file(served.clone()));
    let sandbox = Sandbox::new();
    let saved = sandbox.out().join("f.bin");
    let (code, stdout, stderr) = run(fetchpar()
        .arg("--har")
        .arg(&saved)
        .arg("-o")
        .arg(sandbox.out())
        .arg(server.url("/f.bin")));
    assert_eq!(code, 1, "{stderr:#?}");
    assert_eq!(stdout.len(), 1);
    assert_eq!(
        sandbox.files()["f.bin"],
        sha256(&data),
        "the download stands"
    );
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("cannot write the HAR file")
                && l.contains("came under that name during the run")),
        "{stderr:#?}"
    );
    #[cfg(unix)]
    {
        let link = sandbox.root().join("report.har");
        std::os::unix::fs::symlink(sandbox.root().join("missing/target.har"), &link).unwrap();
        let (code, _, stderr) = run(fetchpar().arg("--har").arg(&link).arg(server.url("/f.bin")));
        assert_eq!(code, 2, "{stderr:#?}");
        assert!(stderr[0].contains("already exists"), "{stderr:#?}");
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    }
    let both = sandbox.root().join("run.out");
    let (code, _, stderr) = run(fetchpar()
        .arg("--har")
        .arg(&both)
        .arg("--timeline")
        .arg(&both)
        .arg(server.url("/f.bin")));
    assert_eq!(code, 2, "{stderr:#?}");
    assert!(
        stderr[0].contains("--har and --timeline both name"),
        "{stderr:#?}"
    );
    assert_eq!(
        server.requests().len(),
        1,
        "only the first run asked for anything"
    );
}
