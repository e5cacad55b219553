//! TLS trust, proxies and netrc against the real things: certificates made by `openssl` at test
//! time and served by `openssl s_server`, a real HTTP proxy (tinyproxy) and a real SOCKS5 server
//! (microsocks), all on 127.0.0.1. A test whose program is missing says so and passes: CI
//! installs them (see .ci/run).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::util::*;

/// Whether `program` can be run; if not, says which test is skipped.
fn have(program: &str, test: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("SKIPPED {test}: {program} is not installed");
    }
    found
}

/// A child process stopped by its PID when the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A key and a self-signed certificate `NAME.pem` / `NAME.key` for `san` (e.g. `IP:127.0.0.1`).
fn self_signed(dir: &Path, name: &str, cn: &str, san: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "30",
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            &format!("subjectAltName={san}"),
        ],
    );
}

/// `openssl s_server -WWW` serving the files of `dir` with `name`.pem/.key; its port.
fn tls_server(dir: &Path, name: &str) -> (Running, u16) {
    let port = free_port();
    let child = Command::new("openssl")
        .args(["s_server", "-accept", &format!("127.0.0.1:{port}"), "-WWW"])
        .args(["-naccept", "100", "-cert", &format!("{name}.pem")])
        .args(["-key", &format!("{name}.key")])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = Running(child);
    wait_listening(port);
    (running, port)
}

fn tls_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file.txt"), b"over TLS\n").unwrap();
    dir
}

fn json_records(stdout: &[u8]) -> Vec<serde_json::Value> {
    lines(stdout)
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] != "summary")
        .collect()
}

#[test]
fn a_self_signed_certificate_in_cacert_is_trusted_and_otherwise_named() {
    if !have("openssl", "self-signed") {
        return;
    }
    let dir = tls_dir();
    self_signed(dir.path(), "server", "127.0.0.1", "IP:127.0.0.1");
    let (_server, port) = tls_server(dir.path(), "server");
    let url = format!("https://127.0.0.1:{port}/file.txt");
    let out = tempfile::tempdir().unwrap();

    let cacert = dir.path().join("server.pem");
    fetchpar()
        .args(["-o", out.path().to_str().unwrap(), "--cacert"])
        .arg(&cacert)
        .arg(&url)
        .assert()
        .code(0);
    assert_eq!(
        std::fs::read(out.path().join("file.txt")).unwrap(),
        b"over TLS\n"
    );

    // Without --cacert: one clear line, and no retry (a certificate cannot get better).
    let out = tempfile::tempdir().unwrap();
    let run = fetchpar()
        .args(["--json", "-o", out.path().to_str().unwrap(), &url])
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).to_string();
    assert!(
        stderr.contains(
            "self-signed certificate: trust it with --cacert FILE, or skip checks with -k"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("CaUsedAsEndEntity") && !stderr.contains("Other("),
        "{stderr}"
    );
    let records = json_records(&run.get_output().stdout);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["retries"], 0, "{records:?}");

    // -k still skips every check.
    fetchpar()
        .args(["-k", "-o", out.path().to_str().unwrap(), &url])
        .assert()
        .code(0);
    assert_eq!(
        std::fs::read(out.path().join("file.txt")).unwrap(),
        b"over TLS\n"
    );
}

#[test]
fn a_certificate_for_another_name_says_which() {
    if !have("openssl", "wrong name") {
        return;
    }
    let dir = tls_dir();
    self_signed(dir.path(), "wrong", "wrong.example", "DNS:wrong.example");
    let (_server, port) = tls_server(dir.path(), "wrong");
    let out = tempfile::tempdir().unwrap();
    let run = fetchpar()
        .args(["-o", out.path().to_str().unwrap(), "--cacert"])
        .arg(dir.path().join("wrong.pem"))
        .arg(format!("https://127.0.0.1:{port}/file.txt"))
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).to_string();
    assert!(
        stderr.contains("certificate is for wrong.example, not 127.0.0.1"),
        "{stderr}"
    );
    assert!(!out.path().join("file.txt").exists());
}

#[test]
fn an_expired_certificate_says_when() {
    if !have("openssl", "expired") {
        return;
    }
    let dir = tls_dir();
    let d = dir.path();
    std::fs::write(d.join("index.txt"), "").unwrap();
    std::fs::write(d.join("serial"), "01\n").unwrap();
    std::fs::write(
        d.join("ca.cnf"),
        "[ca]\ndefault_ca = own\n[own]\ndir = .\ndatabase = index.txt\nnew_certs_dir = .\n\
         serial = serial\ndefault_md = sha256\npolicy = any\ncopy_extensions = copy\n\
         [any]\ncommonName = supplied\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "old.key",
            "-out",
            "old.csr",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
    );
    openssl(
        d,
        &[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-selfsign",
            "-keyfile",
            "old.key",
            "-in",
            "old.csr",
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200201000000Z",
            "-out",
            "old.pem",
        ],
    );
    let (_server, port) = tls_server(d, "old");
    let out = tempfile::tempdir().unwrap();
    let run = fetchpar()
        .args(["--json", "-o", out.path().to_str().unwrap(), "--cacert"])
        .arg(d.join("old.pem"))
        .arg(format!("https://127.0.0.1:{port}/file.txt"))
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).to_string();
    assert!(
        stderr.contains("certificate expired on 2020-02-01"),
        "{stderr}"
    );
    assert_eq!(json_records(&run.get_output().stdout)[0]["retries"], 0);
}

#[test]
fn a_ca_in_the_system_store_is_trusted_without_cacert() {
    if !have("openssl", "system store") {
        return;
    }
    let dir = tls_dir();
    let d = dir.path();
    self_signed(d, "ca", "fetchpar test CA", "DNS:ca.invalid");
    openssl(
        d,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        d.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ],
    );
    let (_server, port) = tls_server(d, "leaf");
    let url = format!("https://127.0.0.1:{port}/file.txt");

    let out = tempfile::tempdir().unwrap();
    fetchpar()
        .env("SSL_CERT_FILE", d.join("ca.pem"))
        .args(["-o", out.path().to_str().unwrap(), &url])
        .assert()
        .code(0);
    assert_eq!(
        std::fs::read(out.path().join("file.txt")).unwrap(),
        b"over TLS\n"
    );

    let out = tempfile::tempdir().unwrap();
    let run = fetchpar()
        .env("SSL_CERT_FILE", d.join("server-none.pem"))
        .args(["-o", out.path().to_str().unwrap(), &url])
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).to_string();
    assert!(
        stderr.contains("certificate issued by an unknown authority"),
        "{stderr}"
    );
}

/// Waits until something accepts connections on `port`.
fn wait_listening(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("nothing listens on port {port}");
}

/// The binary with no proxy variables and no NO_PROXY at all.
fn fetchpar_bare() -> assert_cmd::Command {
    let mut cmd = fetchpar();
    cmd.env_remove("NO_PROXY").env_remove("no_proxy");
    cmd
}

fn origin() -> Server {
    Server::start(|_| Reply::file(&b"through the proxy\n"[..])).unwrap()
}

#[test]
fn a_dead_proxy_is_named() {
    let port = free_port();
    let server = origin();
    let out = tempfile::tempdir().unwrap();
    let run = fetchpar_bare()
        .args(["--retries", "0", "-o", out.path().to_str().unwrap()])
        .args([
            "--proxy",
            &format!("127.0.0.1:{port}"),
            &server.url("/f.txt"),
        ])
        .assert()
        .code(1);
    // The proxy is the one unreachable, not the URL's host; one attempt, in the singular.
    let stderr = lines(&run.get_output().stderr);
    let url = server.url("/f.txt");
    let line = format!(
        "fetchpar: {url}: proxy 127.0.0.1:{port} unreachable after 1 attempt (connection \
         refused); nothing saved"
    );
    assert!(stderr.contains(&line), "{stderr:?}");
    assert_eq!(server.requests().len(), 0);
}

/// A dead SOCKS proxy is the one unreachable too, as an HTTP proxy is: its URLs share its
/// attempts and fail with one line that names it.
#[test]
fn a_dead_socks_proxy_is_named_unreachable() {
    let port = free_port();
    let server = origin();
    let out = tempfile::tempdir().unwrap();
    let proxy = format!("socks5://127.0.0.1:{port}");
    let run = fetchpar_bare()
        .args(["--retries", "0", "-o", out.path().to_str().unwrap()])
        .args([
            "--proxy",
            &proxy,
            &server.url("/f.txt"),
            &server.url("/g.txt"),
        ])
        .assert()
        .code(1);
    let stderr = lines(&run.get_output().stderr);
    for path in ["/f.txt", "/g.txt"] {
        let url = server.url(path);
        let said = format!("fetchpar: {url}: proxy {proxy} unreachable after 1 attempt (");
        assert!(stderr.iter().any(|l| l.starts_with(&said)), "{stderr:?}");
    }
    assert_eq!(server.requests().len(), 0);
}

#[test]
fn no_proxy_star_covers_ip_addresses() {
    let dead = free_port();
    let server = origin();
    let out = tempfile::tempdir().unwrap();
    fetchpar_bare()
        .env("ALL_PROXY", format!("socks5h://127.0.0.1:{dead}"))
        .env("http_proxy", format!("127.0.0.1:{dead}"))
        .env("NO_PROXY", "*")
        .args(["-o", out.path().to_str().unwrap(), &server.url("/f.txt")])
        .assert()
        .code(0);
    assert_eq!(
        std::fs::read(out.path().join("f.txt")).unwrap(),
        b"through the proxy\n"
    );
}

#[test]
fn tinyproxy_carries_credentials_and_never_shows_them() {
    if !have("tinyproxy", "http proxy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("tinyproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nAllow 127.0.0.1\nMaxClients 20\n\
             BasicAuth agent s3cretpw\nLogLevel Critical\n"
        ),
    )
    .unwrap();
    let _proxy = Running(
        Command::new("tinyproxy")
            .args(["-d", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(port);
    let server = origin();
    let url = server.url("/f.txt");

    let out = tempfile::tempdir().unwrap();
    let run = fetchpar_bare()
        .args(["-o", out.path().to_str().unwrap()])
        .args([
            "--proxy",
            &format!("http://agent:s3cretpw@127.0.0.1:{port}"),
            &url,
        ])
        .assert()
        .code(0);
    assert_eq!(
        std::fs::read(out.path().join("f.txt")).unwrap(),
        b"through the proxy\n"
    );
    assert_eq!(server.requests().len(), 1);
    let all = [&run.get_output().stdout[..], &run.get_output().stderr[..]].concat();
    assert!(!String::from_utf8_lossy(&all).contains("s3cretpw"));

    let out = tempfile::tempdir().unwrap();
    let run = fetchpar_bare()
        .args(["-o", out.path().to_str().unwrap()])
        .args([
            "--proxy",
            &format!("http://agent:wrongpw@127.0.0.1:{port}"),
            &url,
        ])
        .assert()
        .code(1);
    // tinyproxy 1.11 answers bad credentials with 401, not 407: a plain HTTP failure.
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).to_string();
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    assert!(!stderr.contains("wrongpw"), "{stderr}");
    assert_eq!(server.requests().len(), 1);

    // Through a tunnel (https), the same refusal reaches us as a CONNECT that did not succeed
    // (tinyproxy says 401, hyper-util keeps no status): the proxy is named, no retry.
    let out = tempfile::tempdir().unwrap();
    let https = format!("https://127.0.0.1:{}/f.txt", server.addr().port());
    let run = fetchpar_bare()
        .args(["--json", "-o", out.path().to_str().unwrap()])
        .args([
            "--proxy",
            &format!("http://agent:wrongpw@127.0.0.1:{port}"),
            &https,
        ])
        .assert()
        .code(1);
    let stderr = lines(&run.get_output().stderr);
    let line = format!(
        "fetchpar: {https}: proxy 127.0.0.1:{port} refused the tunnel to 127.0.0.1:{} (check \
         the proxy's credentials and access rules); nothing saved",
        server.addr().port()
    );
    assert!(stderr.contains(&line), "{stderr:?}");
    assert_eq!(json_records(&run.get_output().stdout)[0]["retries"], 0);
    assert_eq!(server.requests().len(), 1);
}

/// The project's server as a proxy that answers every request (CONNECT included) with `status`.
fn refusing_proxy(status: u16) -> Server {
    Server::start(move |_| {
        Reply::status(status).with_header("Proxy-Authenticate", "Basic realm=\"p\"")
    })
    .unwrap()
}

#[test]
fn a_407_to_connect_fails_at_once() {
    let proxy = refusing_proxy(407);
    let port = proxy.addr().port();
    let out = tempfile::tempdir().unwrap();
    let urls = [
        "https://origin.invalid/a.txt",
        "https://origin.invalid/b.txt",
    ];
    let run = fetchpar_bare()
        .args([
            "--json",
            "--retries",
            "3",
            "-o",
            out.path().to_str().unwrap(),
        ])
        .args(["--proxy", &format!("http://agent:pw407x@127.0.0.1:{port}")])
        .args(urls)
        .assert()
        .code(1);
    let stderr = lines(&run.get_output().stderr);
    for url in urls {
        let line = format!(
            "fetchpar: {url}: proxy 127.0.0.1:{port} rejected the credentials (407 Proxy \
             Authentication Required); nothing saved"
        );
        assert!(stderr.contains(&line), "{stderr:?}");
    }
    assert!(!stderr.iter().any(|l| l.contains("pw407x")), "{stderr:?}");
    let records = json_records(&run.get_output().stdout);
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r["retries"] == 0), "{records:?}");
    // One CONNECT per URL, none again.
    let connects = proxy.requests();
    assert_eq!(connects.len(), 2);
    assert!(connects.iter().all(|r| r.method == "CONNECT"));
}

#[test]
fn a_refused_tunnel_names_the_proxy_and_the_target_and_fails_at_once() {
    let proxy = refusing_proxy(403);
    let port = proxy.addr().port();
    let out = tempfile::tempdir().unwrap();
    let url = "https://origin.invalid:8443/a.txt";
    let run = fetchpar_bare()
        .args([
            "--json",
            "--retries",
            "3",
            "-o",
            out.path().to_str().unwrap(),
        ])
        .args(["--proxy", &format!("127.0.0.1:{port}"), url])
        .assert()
        .code(1);
    let stderr = lines(&run.get_output().stderr);
    let line = format!(
        "fetchpar: {url}: proxy 127.0.0.1:{port} refused the tunnel to origin.invalid:8443 \
         (check the proxy's credentials and access rules); nothing saved"
    );
    assert!(stderr.contains(&line), "{stderr:?}");
    assert_eq!(json_records(&run.get_output().stdout)[0]["retries"], 0);
    assert_eq!(proxy.requests().len(), 1);
}

#[test]
fn a_407_names_the_proxy_that_sent_it() {
    // A proxy that wants credentials it was not given (the project's server in that role).
    let proxy = Server::start(|_| {
        Reply::status(407).with_header("Proxy-Authenticate", "Basic realm=\"p\"")
    })
    .unwrap();
    let port = proxy.addr().port();
    let out = tempfile::tempdir().unwrap();
    let run = fetchpar_bare()
        .args(["-o", out.path().to_str().unwrap()])
        .args(["--proxy", &format!("http://agent:pw407x@127.0.0.1:{port}")])
        .arg("http://origin.invalid/f.txt")
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).to_string();
    assert!(
        stderr.contains(&format!("proxy 127.0.0.1:{port} rejected the credentials")),
        "{stderr}"
    );
    assert!(!stderr.contains("pw407x"), "{stderr}");
    assert_eq!(proxy.requests().len(), 1);
}

#[test]
fn socks5_from_the_flag_and_from_all_proxy() {
    if !have("microsocks", "socks5") {
        return;
    }
    let port = free_port();
    let _socks = Running(
        Command::new("microsocks")
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-u", "sockuser", "-P", "sockpass"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(port);
    let server = origin();
    let proxy = format!("socks5h://sockuser:sockpass@127.0.0.1:{port}");

    for via_env in [false, true] {
        let out = tempfile::tempdir().unwrap();
        let mut cmd = fetchpar_bare();
        cmd.args(["-o", out.path().to_str().unwrap(), &server.url("/f.txt")]);
        if via_env {
            cmd.env("ALL_PROXY", &proxy);
        } else {
            cmd.args(["--proxy", &proxy]);
        }
        let run = cmd.assert().code(0);
        assert_eq!(
            std::fs::read(out.path().join("f.txt")).unwrap(),
            b"through the proxy\n"
        );
        let all = [&run.get_output().stdout[..], &run.get_output().stderr[..]].concat();
        assert!(!String::from_utf8_lossy(&all).contains("sockpass"));
    }
    assert_eq!(server.requests().len(), 2);

    // Wrong credentials: the SOCKS server is named, the password is not shown.
    let out = tempfile::tempdir().unwrap();
    // Rejected credentials are not tried again.
    let run = fetchpar_bare()
        .args([
            "--json",
            "--retries",
            "3",
            "-o",
            out.path().to_str().unwrap(),
        ])
        .arg("--proxy")
        .arg(format!("socks5://sockuser:badpass@127.0.0.1:{port}"))
        .arg(server.url("/f.txt"))
        .assert()
        .code(1);
    let stderr = lines(&run.get_output().stderr);
    let line = format!(
        "fetchpar: {}: proxy socks5://127.0.0.1:{port} rejected the credentials; nothing saved",
        server.url("/f.txt")
    );
    assert!(stderr.contains(&line), "{stderr:?}");
    assert!(!stderr.iter().any(|l| l.contains("badpass")), "{stderr:?}");
    assert_eq!(json_records(&run.get_output().stdout)[0]["retries"], 0);
    assert_eq!(server.requests().len(), 2);
}

/// A one-shot raw HTTP server keeping the request bytes exactly as they came.
fn raw_server() -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        *keep.lock().unwrap() = got;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n");
    });
    (port, seen)
}

#[test]
fn header_names_go_out_in_their_usual_case() {
    let (port, seen) = raw_server();
    let out = tempfile::tempdir().unwrap();
    fetchpar()
        .args(["-o", out.path().to_str().unwrap(), "-H", "x-trace-id: 7"])
        .arg(format!("http://127.0.0.1:{port}/h.txt"))
        .assert()
        .code(0);
    let raw = String::from_utf8(seen.lock().unwrap().clone()).unwrap();
    assert!(raw.contains("\r\nUser-Agent: fetchpar/"), "{raw}");
    assert!(raw.contains("\r\nHost: 127.0.0.1"), "{raw}");
    assert!(raw.contains("\r\nX-Trace-Id: 7"), "{raw}");
}

fn netrc_file(dir: &Path, text: &str, mode: u32) -> PathBuf {
    let path = dir.join("netrc");
    std::fs::write(&path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    path
}

#[test]
fn netrc_logs_in_to_its_host_only() {
    let other = Server::start(|_| Reply::file(&b"elsewhere\n"[..])).unwrap();
    let target = other.url("/moved.txt");
    let first = Server::start(move |req| match req.path() {
        "/go.txt" => Reply::status(302).with_header("Location", &target),
        _ => Reply::file(&b"secret data\n"[..]),
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let netrc = netrc_file(
        dir.path(),
        "machine 127.0.0.1\n  login nico\n  password n3trcpw\n",
        0o600,
    );
    let out = tempfile::tempdir().unwrap();
    let run = fetchpar()
        .args(["-o", out.path().to_str().unwrap(), "--netrc-file"])
        .arg(&netrc)
        .args([first.url("/a.txt"), first.url("/go.txt")])
        .assert()
        .code(0);
    let all = [&run.get_output().stdout[..], &run.get_output().stderr[..]].concat();
    let all = String::from_utf8_lossy(&all);
    assert!(
        !all.contains("n3trcpw") && !all.contains("warning"),
        "{all}"
    );
    // "nico:n3trcpw" in base64.
    let sent = "Basic bmljbzpuM3RyY3B3";
    assert!(first
        .requests()
        .iter()
        .all(|r| r.header("authorization") == Some(sent)));
    // The redirect went to another port: another origin, no credentials.
    let moved = other.requests();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].header("authorization"), None);

    // Credentials in the URL win; NETRC names the file for --netrc.
    let out = tempfile::tempdir().unwrap();
    let own = first.url("/a.txt").replace("http://", "http://me:mine@");
    fetchpar()
        .env("NETRC", &netrc)
        .args(["-o", out.path().to_str().unwrap(), "--netrc", &own])
        .assert()
        .code(0);
    let last = first.requests().pop().unwrap();
    assert_eq!(last.header("authorization"), Some("Basic bWU6bWluZQ=="));
}

/// With --location-trusted a netrc password follows a redirect as --user's does: the asked
/// host's entry, to a host that has none of its own.
#[test]
fn netrc_follows_a_trusted_redirect_like_user() {
    let other = Server::start(|_| Reply::file(&b"elsewhere\n"[..])).unwrap();
    let target = other.url("/moved.txt").replace("127.0.0.1", "localhost");
    let first =
        Server::start(move |_| Reply::status(302).with_header("Location", &target)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let netrc = netrc_file(
        dir.path(),
        "machine 127.0.0.1 login nico password n3trcpw\n",
        0o600,
    );
    let out = tempfile::tempdir().unwrap();
    fetchpar()
        .args([
            "-o",
            out.path().to_str().unwrap(),
            "--location-trusted",
            "--netrc-file",
        ])
        .arg(&netrc)
        .arg(first.url("/go.txt"))
        .assert()
        .code(0);
    let moved = other.requests();
    assert_eq!(moved.len(), 1);
    assert_eq!(
        moved[0].header("authorization"),
        Some("Basic bmljbzpuM3RyY3B3")
    );
}

#[test]
fn a_netrc_others_can_read_is_warned_about_once() {
    let server = origin();
    let dir = tempfile::tempdir().unwrap();
    let netrc = netrc_file(dir.path(), "default login u password pw0\n", 0o644);
    let out = tempfile::tempdir().unwrap();
    let run = fetchpar()
        .args(["-o", out.path().to_str().unwrap(), "--netrc-file"])
        .arg(&netrc)
        .args([server.url("/a.txt"), server.url("/b.txt")])
        .assert()
        .code(0);
    let stderr = lines(&run.get_output().stderr);
    let warnings = stderr
        .iter()
        .filter(|l| l.contains("can be read by other users"))
        .count();
    assert_eq!(warnings, 1, "{stderr:?}");
    assert!(!stderr.iter().any(|l| l.contains("pw0")));
    // A --netrc-file that is not there is a usage error.
    fetchpar()
        .args(["--netrc-file"])
        .arg(dir.path().join("missing"))
        .arg(server.url("/a.txt"))
        .assert()
        .code(2);
}

/// A list of `http://` URLs never reads the system's certificate store, which costs more CPU
/// than a small file's whole download: a store that blocks whoever opens it (a FIFO nobody
/// writes) does not hold the run up. Before, every run read it at the start, and hung here.
#[test]
fn plain_http_never_reads_the_certificate_store() {
    let d = tls_dir();
    let fifo = d.path().join("store.pem");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let (server, expected) = file_server(3, 100, 200, std::time::Duration::ZERO);
    let out = tempfile::tempdir().unwrap();
    let child = command()
        .env("SSL_CERT_FILE", &fifo)
        .env("SSL_CERT_DIR", &fifo)
        .arg("-o")
        .arg(out.path())
        .args(urls_of(&server, &expected))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let done = finish_within(child, std::time::Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(0), "{stderr}");
    assert_eq!(checksums(out.path()), expected);
}
