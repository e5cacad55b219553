//! Issue 9: nothing secret on disk or on the wire. No sidecar holds a hash of a credential, no
//! `Referer` is sent, and user headers and credentials go only to the origin the user named.

use std::sync::Arc;

use crate::util::*;

#[test]
fn a_sidecar_of_the_previous_format_is_resumed_then_rewritten_without_the_secret() {
    let data = body(100_000, 41);
    let whole = Reply::file(data.clone()).with_header("ETag", "\"v1\"");
    let server = first_then(whole.clone().with_fault(Fault::ShortBody(10_000)), whole);
    let sandbox = Sandbox::new();
    let url = server
        .url("/f.bin")
        .replace("http://", "http://alice:hunter2@");
    // What fetchpar wrote before issue 9: format 1, keyed on the full URL, password included.
    let legacy = sha256(url.as_bytes());
    std::fs::create_dir_all(sandbox.out()).unwrap();
    std::fs::write(sandbox.out().join("f.bin.part"), &data[..40_000]).unwrap();
    let meta_path = sandbox.out().join("f.bin.part.meta");
    let masked = server.url("/f.bin").replace("http://", "http://***@");
    std::fs::write(
        &meta_path,
        format!("fetchpar-part 1\nurl {masked}\nurl-sha256 {legacy}\netag \"v1\"\ntotal 100000\n"),
    )
    .unwrap();
    // Resumed (not sent to f~1.bin), and cut again: the sidecar left is in the new form.
    let (code, _, stderr) = sandbox.run(&["-c", "--retries", "0", &url]);
    assert_eq!(code, 1, "{stderr:#?}");
    assert_eq!(server.requests()[0].header("range"), Some("bytes=40000-"));
    let meta = std::fs::read_to_string(&meta_path).unwrap();
    assert!(meta.starts_with("fetchpar-part 3\n"), "{meta}");
    assert!(
        !meta.contains(&legacy) && !meta.contains("hunter2"),
        "{meta}"
    );
    assert_eq!(entries(&sandbox.out()), ["f.bin.part", "f.bin.part.meta"]);
    // And the new form resumes too, to the exact bytes.
    let (code, _, stderr) = sandbox.run(&["-c", &url]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(server.requests()[1].header("range"), Some("bytes=50000-"));
    assert_eq!(
        sandbox.files(),
        [("f.bin".to_string(), sha256(&data))].into()
    );
}

/// Server B serves the file; server A redirects every path to it, within A first (`/start` →
/// `/hop`) so that a same-origin hop is seen too.
fn two_origins(data: &Arc<[u8]>) -> (Server, Server) {
    let served = data.clone();
    let b = serve(move |_| Reply::file(served.clone()));
    let target = b.url("/f.bin?from=a");
    let a = serve(move |req| match req.path() {
        "/start/f.bin" => Reply::status(302).with_header("Location", "/hop"),
        _ => Reply::status(307).with_header("Location", &target),
    });
    (a, b)
}

const SECRET_HEADERS: [&str; 3] = ["x-api-key", "authorization", "cookie"];

#[test]
fn user_headers_and_credentials_never_follow_a_redirect_to_another_origin() {
    let data = body(20_000, 42);
    let (a, b) = two_origins(&data);
    let sandbox = Sandbox::new();
    let with_creds = a
        .url("/start/f.bin")
        .replace("http://", "http://url-user:url-pass@");
    let plain = a.url("/start/f.bin");
    let options = [
        "-H",
        "X-Api-Key: k-123",
        "-H",
        "Cookie: session=s3cret",
        "-A",
        "agent/7",
    ];
    let (code, _, stderr) = sandbox.run(&[&options[..], &["--user", "alice:pw", &plain]].concat());
    assert_eq!(code, 0, "{stderr:#?}");
    let (code, _, stderr) = sandbox.run(&[&options[..], &[with_creds.as_str()]].concat());
    assert_eq!(code, 0, "{stderr:#?}");
    // Named after the URL given, bytes from B.
    assert_eq!(sandbox.files().get("f.bin"), Some(&sha256(&data)));
    assert_eq!(sandbox.files().get("f~1.bin"), Some(&sha256(&data)));
    let seen_by_a = a.requests();
    assert_eq!(seen_by_a.len(), 4, "two runs, two hops each within A");
    for r in &seen_by_a {
        assert_eq!(r.header("x-api-key"), Some("k-123"), "{}", r.target);
        assert_eq!(r.header("cookie"), Some("session=s3cret"));
        assert!(r
            .header("authorization")
            .is_some_and(|v| v.starts_with("Basic ")));
        assert_eq!(r.header("referer"), None);
    }
    // The URL's own credentials win over --user at A, on both hops.
    let url_auth = "Basic dXJsLXVzZXI6dXJsLXBhc3M=";
    assert_eq!(seen_by_a[2].header("authorization"), Some(url_auth));
    assert_eq!(seen_by_a[3].header("authorization"), Some(url_auth));
    let seen_by_b = b.requests();
    assert_eq!(seen_by_b.len(), 2);
    for r in &seen_by_b {
        for name in SECRET_HEADERS {
            assert_eq!(r.header(name), None, "{name} reached another origin");
        }
        assert_eq!(r.header("referer"), None, "no Referer, ever");
        assert_eq!(r.header("user-agent"), Some("agent/7"));
    }
}

#[test]
fn location_trusted_sends_them_everywhere() {
    let data = body(20_000, 43);
    let (a, b) = two_origins(&data);
    let sandbox = Sandbox::new();
    let plain = a.url("/start/f.bin");
    let (code, _, stderr) = sandbox.run(&[
        "--location-trusted",
        "-H",
        "X-Api-Key: k-123",
        "--user",
        "alice:pw",
        &plain,
    ]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(sandbox.files().get("f.bin"), Some(&sha256(&data)));
    let seen_by_b = b.requests();
    assert_eq!(seen_by_b.len(), 1);
    assert_eq!(seen_by_b[0].header("x-api-key"), Some("k-123"));
    assert_eq!(
        seen_by_b[0].header("authorization"),
        Some("Basic YWxpY2U6cHc=")
    );
    assert_eq!(seen_by_b[0].header("referer"), None);
}

#[test]
fn redirects_are_followed_up_to_ten_and_no_further() {
    let data = body(1000, 44);
    let served = data.clone();
    // /N/f.bin redirects to /(N-1)/f.bin; /0/f.bin is the file.
    let server = serve(move |req| {
        let mut parts = req.path().trim_start_matches('/').splitn(2, '/');
        match parts.next().and_then(|n| n.parse::<u32>().ok()) {
            Some(0) => Reply::file(served.clone()),
            Some(n) => Reply::status(302).with_header("Location", &format!("/{}/f.bin", n - 1)),
            None => Reply::status(404),
        }
    });
    let sandbox = Sandbox::new();
    let (ten, eleven) = (server.url("/10/f.bin"), server.url("/11/f.bin"));
    let (code, _, stderr) = sandbox.run(&[&ten, &eleven]);
    assert_eq!(code, 1);
    assert_eq!(sandbox.files().get("f.bin"), Some(&sha256(&data)));
    assert_eq!(sandbox.files().len(), 1);
    let line = stderr.iter().find(|l| l.contains(&eleven)).unwrap();
    assert_eq!(
        line,
        &format!("fetchpar: {eleven}: too many redirects (more than 10); nothing saved")
    );
    // 11 requests for the first, 11 for the second before it gave up, and no retry.
    assert_eq!(server.requests().len(), 22);
}

/// A mirror is a URL the user named: while it is tried, its origin gets the `-H` headers and
/// `--user`, and its own credentials, never those of the source before it.
#[test]
fn each_mirror_is_an_origin_the_user_named() {
    let data = body(20_000, 44);
    let a = serve(|_| Reply::status(404));
    let served = data.clone();
    let b = serve(move |_| Reply::file(served.clone()));
    let lists = tempfile::tempdir().unwrap();
    let list = lists.path().join("list.txt");
    let first = a.url("/f.bin").replace("http://", "http://first:one@");
    let mirror = b.url("/f.bin").replace("http://", "http://mirror:two@");
    std::fs::write(&list, format!("{first}\t{mirror}\n")).unwrap();
    let sandbox = Sandbox::new();
    let (code, _, stderr) = sandbox.run(&[
        "-H",
        "X-Api-Key: k-9",
        "--user",
        "alice:pw",
        "-i",
        list.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(sandbox.files().get("f.bin"), Some(&sha256(&data)));
    let seen_by_a = a.requests();
    assert!(!seen_by_a.is_empty());
    // "first:one" in base64.
    for r in &seen_by_a {
        assert_eq!(r.header("authorization"), Some("Basic Zmlyc3Q6b25l"));
    }
    let seen_by_b = b.requests();
    assert_eq!(seen_by_b.len(), 1);
    assert_eq!(seen_by_b[0].header("x-api-key"), Some("k-9"));
    // "mirror:two": the mirror's own credentials, not the first source's.
    assert_eq!(
        seen_by_b[0].header("authorization"),
        Some("Basic bWlycm9yOnR3bw==")
    );
    assert_eq!(seen_by_b[0].header("referer"), None);
}

/// A token in the query (a presigned URL, an API key) is a credential: shown nowhere, while the
/// request itself still carries it and the rest of the URL still reads as given.
#[test]
fn query_string_tokens_appear_in_no_output() {
    let data = body(5000, 45);
    let served = data.clone();
    let server = serve(move |req| match req.path() {
        "/good.bin" => Reply::file(served.clone()),
        _ => Reply::status(404),
    });
    let sandbox = Sandbox::new();
    let reports = tempfile::tempdir().unwrap();
    let (har, timeline) = (
        reports.path().join("run.har"),
        reports.path().join("run.html"),
    );
    let missing = server.url("/missing?token=SEKRIT&x=1");
    let good = server.url("/good.bin?X-Amz-Signature=SEKRIT2&X-Amz-Date=20240101");
    let output = sandbox
        .cmd()
        .arg("--json")
        .arg("--har")
        .arg(&har)
        .arg("--timeline")
        .arg(&timeline)
        .args([&missing, &good])
        .output()
        .unwrap();
    sandbox.assert_nothing_outside();
    let (stdout, stderr) = (lines(&output.stdout), lines(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stderr:#?}");
    // The server was asked with the tokens.
    let targets: Vec<String> = server.requests().iter().map(|r| r.target.clone()).collect();
    assert!(
        targets.contains(&"/missing?token=SEKRIT&x=1".to_string()),
        "{targets:?}"
    );
    assert!(targets
        .iter()
        .any(|t| t.contains("X-Amz-Signature=SEKRIT2")));
    assert_eq!(sandbox.files().get("good.bin"), Some(&sha256(&data)));
    // The failure line names the URL, token hidden, the rest as given.
    let shown = server.url("/missing?token=***&x=1");
    assert!(
        stderr
            .iter()
            .any(|l| l.starts_with(&format!("fetchpar: {shown}: HTTP 404"))),
        "{stderr:#?}"
    );
    let mut written = vec![stdout.join("\n"), stderr.join("\n")];
    for file in [&har, &timeline] {
        written.push(std::fs::read_to_string(file).unwrap());
    }
    // No file name, and no leftover, derived from the query.
    written.extend(sandbox.files().into_keys());
    for text in &written {
        assert!(!text.contains("SEKRIT"), "{text}");
    }
    assert!(
        written[0].contains("X-Amz-Signature=***&X-Amz-Date=20240101"),
        "{stdout:#?}"
    );
}

/// A cut download of a presigned URL leaves a sidecar with no hash of its signature, and a URL
/// signed anew for the same object resumes it.
#[test]
fn a_sidecar_holds_nothing_derived_from_a_query_credential() {
    let data = body(100_000, 46);
    let whole = Reply::file(data.clone()).with_header("ETag", "\"v1\"");
    let server = first_then(whole.clone().with_fault(Fault::ShortBody(30_000)), whole);
    let sandbox = Sandbox::new();
    let first = server.url("/f.bin?X-Amz-Signature=SEKRIT4&v=1");
    let (code, _, stderr) = sandbox.run(&["--retries", "0", &first]);
    assert_eq!(code, 1, "{stderr:#?}");
    let meta = std::fs::read_to_string(sandbox.out().join("f.bin.part.meta")).unwrap();
    assert!(!meta.contains("SEKRIT4"), "{meta}");
    assert!(!meta.contains(&sha256(first.as_bytes())), "{meta}");
    let again = server.url("/f.bin?X-Amz-Signature=OTHER&v=1");
    let (code, _, stderr) = sandbox.run(&["-c", &again]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(server.requests()[1].header("range"), Some("bytes=30000-"));
    assert!(server.requests()[1]
        .target
        .contains("X-Amz-Signature=OTHER"));
    assert_eq!(
        sandbox.files(),
        [("f.bin".to_string(), sha256(&data))].into()
    );
}
