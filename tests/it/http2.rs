//! HTTP/2 against the real thing: nginx with TLS (a throwaway CA made with openssl for each
//! test) and `http2`, on 127.0.0.1. Skipped, with a message, where nginx or openssl is missing
//! (Debian: `apt-get install nginx-light openssl`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use crate::util::{checksums, fetchpar, free_port, openssl, sha256};

fn nginx_binary() -> Option<PathBuf> {
    let candidates = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| {
            let out = Command::new("sh")
                .args(["-c", "command -v nginx"])
                .output()
                .ok()?;
            let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
            (!path.is_empty()).then(|| PathBuf::from(path))
        })
}

fn has_openssl() -> bool {
    Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A CA (what `--cacert` gets) and a server certificate for 127.0.0.1 signed by it.
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=fetchpar test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ],
    );
}

/// nginx serving `www` on two ports, one offering HTTP/2 and one HTTP/1.1 only; stopped (by
/// its PID) when dropped.
struct Nginx {
    child: Child,
    h2_port: u16,
    h1_port: u16,
    log: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    fn start(nginx: &Path, dir: &Path, www: &Path) -> Nginx {
        make_certificates(dir);
        let (h2_port, h1_port) = (free_port(), free_port());
        let log = dir.join("access.log");
        let d = dir.display();
        // Workers run as the user who starts nginx; as root nginx would switch to nobody.
        let user = if is_root() { "user root;" } else { "" };
        let conf = format!(
            "{user}
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format conn '$connection $server_protocol $status $request_uri';
    access_log {log} conn;
    log_format hdr '$server_port $server_protocol $status $request_uri key=$http_x_api_key auth=$http_authorization ref=$http_referer';
    access_log {d}/headers.log hdr;
    client_body_temp_path {d}/tmp;
    proxy_temp_path {d}/tmp;
    fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp;
    scgi_temp_path {d}/tmp;
    default_type application/octet-stream;
    keepalive_requests 100000;
    ssl_certificate {d}/server.pem;
    ssl_certificate_key {d}/server.key;
    server {{
        listen 127.0.0.1:{h2_port} ssl http2;
        root {www};
        absolute_redirect off;
        rewrite ^/away/(.*)$ https://127.0.0.1:{h1_port}/f/$1 redirect;
        rewrite ^/here/(.*)$ /f/$1 redirect;
    }}
    server {{
        listen 127.0.0.1:{h1_port} ssl;
        root {www};
    }}
}}
",
            log = log.display(),
            www = www.display()
        );
        fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new(nginx)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off; master_process off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut server = Nginx {
            child,
            h2_port,
            h1_port,
            log,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                panic!("nginx exited ({status}): {err}");
            }
            let up = |port| TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up(self.h2_port) && up(self.h1_port) {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("nginx did not start listening");
    }

    /// The access log so far, as (connection serial number, protocol, status, path).
    fn requests(&self) -> Vec<(u64, String, String, String)> {
        // nginx writes each line as the request ends; let the last ones land.
        thread::sleep(Duration::from_millis(200));
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|line| {
                let f: Vec<&str> = line.split(' ').collect();
                assert_eq!(f.len(), 4, "unexpected access log line {line:?}");
                (
                    f[0].parse().unwrap(),
                    f[1].to_string(),
                    f[2].to_string(),
                    f[3].to_string(),
                )
            })
            .collect()
    }

    /// The lines of the log of request headers (`hdr` in the configuration) so far.
    fn header_lines(&self) -> Vec<String> {
        thread::sleep(Duration::from_millis(200));
        let path = self.log.with_file_name("headers.log");
        let text = fs::read_to_string(path).unwrap_or_default();
        text.lines().map(str::to_string).collect()
    }

    fn clear_log(&self) {
        fs::write(&self.log, "").unwrap();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// nginx, started over files of assorted sizes (small ones, and some larger than one HTTP/2
/// frame and than the initial flow-control window); `None` (after saying why) if the machine
/// lacks nginx or openssl.
fn setup(dir: &Path, files: usize) -> Option<(Nginx, BTreeMap<String, String>)> {
    let Some(nginx) = nginx_binary() else {
        eprintln!("SKIPPED: nginx is not installed (Debian: apt-get install nginx-light)");
        return None;
    };
    if !has_openssl() {
        eprintln!("SKIPPED: openssl is not installed (Debian: apt-get install openssl)");
        return None;
    }
    let www = dir.join("www");
    fs::create_dir_all(www.join("f")).unwrap();
    fs::create_dir_all(dir.join("tmp")).unwrap();
    let mut expected = BTreeMap::new();
    for i in 0..files {
        let len = match i % 10 {
            0 => 3 * 1024 * 1024 + 17,
            1..=3 => 70_000 + i * 13,
            _ => 1024 + i,
        };
        let body: Vec<u8> = (0..len).map(|k| (k * 31 + i * 7) as u8).collect();
        let name = format!("file{i:03}.bin");
        expected.insert(name.clone(), sha256(&body));
        fs::write(www.join("f").join(&name), body).unwrap();
    }
    // nginx's workers may run as another user: let them in.
    let _ = Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(dir)
        .status();
    Some((Nginx::start(&nginx, dir, &www), expected))
}

fn list_of(dir: &Path, port: u16, expected: &BTreeMap<String, String>) -> PathBuf {
    let list = dir.join("urls.txt");
    let urls: Vec<String> = expected
        .keys()
        .map(|name| format!("https://127.0.0.1:{port}/f/{name}"))
        .collect();
    fs::write(&list, urls.join("\n") + "\n").unwrap();
    list
}

fn download(dir: &Path, list: &Path, out: &str, extra: &[&str]) -> BTreeMap<String, String> {
    let out = dir.join(out);
    fetchpar()
        .args(["-j", "8", "--progress", "none", "--cacert"])
        .arg(dir.join("ca.pem"))
        .arg("-i")
        .arg(list)
        .arg("-o")
        .arg(&out)
        .args(extra)
        .assert()
        .code(0);
    checksums(&out)
}

fn protocols(log: &[(u64, String, String, String)]) -> BTreeSet<&str> {
    log.iter().map(|(_, p, _, _)| p.as_str()).collect()
}

fn connections(log: &[(u64, String, String, String)]) -> usize {
    log.iter().map(|(c, ..)| c).collect::<BTreeSet<_>>().len()
}

#[test]
fn https_downloads_share_http2_connections() {
    let dir = tempfile::tempdir().unwrap();
    let Some((nginx, expected)) = setup(dir.path(), 50) else {
        return;
    };
    let list = list_of(dir.path(), nginx.h2_port, &expected);
    assert_eq!(download(dir.path(), &list, "out", &[]), expected);
    let log = nginx.requests();
    assert_eq!(log.len(), 50, "{log:?}");
    assert_eq!(protocols(&log), BTreeSet::from(["HTTP/2.0"]), "{log:?}");
    assert!(
        log.iter().all(|(_, _, status, _)| status == "200"),
        "{log:?}"
    );
    // Eight workers, one host: its downloads are streams of a shared connection, not one
    // connection per worker.
    let conns = connections(&log);
    assert!(
        conns <= 2,
        "{conns} connections for 50 files at -j 8: {log:?}"
    );
    // Nor did the workers open connections of their own that served nothing (a TLS handshake
    // each) before learning that they could share: nginx numbers connections in order, so the
    // next one's number tells how many were opened in between.
    let first = log.iter().map(|(c, ..)| *c).min().unwrap();
    nginx.clear_log();
    let one = dir.path().join("one.txt");
    let url = format!("https://127.0.0.1:{}/f/file000.bin", nginx.h2_port);
    fs::write(&one, url + "\n").unwrap();
    download(dir.path(), &one, "again", &[]);
    let next = nginx.requests()[0].0;
    assert!(
        next - first <= 2,
        "{} connections opened for 50 files at -j 8",
        next - first
    );
}

#[test]
fn http1_1_flag_never_offers_http2() {
    let dir = tempfile::tempdir().unwrap();
    let Some((nginx, expected)) = setup(dir.path(), 20) else {
        return;
    };
    let list = list_of(dir.path(), nginx.h2_port, &expected);
    assert_eq!(download(dir.path(), &list, "out", &["--http1.1"]), expected);
    let log = nginx.requests();
    assert_eq!(log.len(), 20, "{log:?}");
    assert_eq!(protocols(&log), BTreeSet::from(["HTTP/1.1"]), "{log:?}");
}

#[test]
fn https_host_without_http2_still_works_over_http1_1() {
    let dir = tempfile::tempdir().unwrap();
    let Some((nginx, expected)) = setup(dir.path(), 30) else {
        return;
    };
    let list = list_of(dir.path(), nginx.h1_port, &expected);
    assert_eq!(download(dir.path(), &list, "out", &[]), expected);
    let log = nginx.requests();
    assert_eq!(log.len(), 30, "{log:?}");
    assert_eq!(protocols(&log), BTreeSet::from(["HTTP/1.1"]), "{log:?}");
    nginx.clear_log();
    // Run again against the HTTP/2 port with --split: each piece of a large file has a
    // connection of its own, and the pieces still add up.
    let list = list_of(dir.path(), nginx.h2_port, &expected);
    assert_eq!(
        download(dir.path(), &list, "split", &["--split", "3"]),
        expected
    );
    let log = nginx.requests();
    assert_eq!(protocols(&log), BTreeSet::from(["HTTP/2.0"]), "{log:?}");
    let big: BTreeSet<u64> = log
        .iter()
        .filter(|(_, _, status, _)| status == "206")
        .map(|(c, ..)| *c)
        .collect();
    // 5 large files, 2 extra pieces each, each piece on a connection of its own thread.
    assert!(big.len() >= 3, "pieces shared connections: {log:?}");
}

/// The redirect loop and the header scope on the shared (HTTP/2) way: a redirect from the
/// HTTP/2 port to the HTTP/1.1 one is another origin (another port), which gets neither the
/// `-H` header nor `--user`, unless `--location-trusted`; a redirect within the origin keeps
/// both; no hop carries a Referer.
#[test]
fn redirects_over_http2_keep_user_headers_with_the_origin() {
    let dir = tempfile::tempdir().unwrap();
    let Some((nginx, expected)) = setup(dir.path(), 2) else {
        return;
    };
    let (h2, h1) = (nginx.h2_port, nginx.h1_port);
    let list = dir.path().join("redirects.txt");
    let urls = format!(
        "https://127.0.0.1:{h2}/away/file000.bin\nhttps://127.0.0.1:{h2}/here/file001.bin\n"
    );
    fs::write(&list, urls).unwrap();
    let user = ["-H", "X-Api-Key: k", "--user", "a:b"];
    assert_eq!(download(dir.path(), &list, "out", &user), expected);
    let lines = nginx.header_lines();
    // "a:b" in base64.
    let mine = "key=k auth=Basic YTpi".to_string();
    let at = |port: u16, path: &str| {
        let head = format!("{port} ");
        let found: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with(&head) && l.contains(path))
            .collect();
        assert_eq!(found.len(), 1, "{port} {path}: {lines:?}");
        found[0].clone()
    };
    let away = at(h2, "/away/file000.bin");
    assert!(
        away.contains("HTTP/2.0 302") && away.contains(&mine),
        "{away}"
    );
    let here = at(h2, "/here/file001.bin");
    assert!(
        here.contains("HTTP/2.0 302") && here.contains(&mine),
        "{here}"
    );
    let same = at(h2, "/f/file001.bin");
    assert!(
        same.contains("HTTP/2.0 200") && same.contains(&mine),
        "{same}"
    );
    let other = at(h1, "/f/file000.bin");
    assert!(
        other.contains("HTTP/1.1 200") && other.ends_with("key=- auth=- ref=-"),
        "{other}"
    );
    assert!(lines.iter().all(|l| l.ends_with("ref=-")), "{lines:?}");

    fs::write(dir.path().join("headers.log"), "").unwrap();
    let trusted = ["-H", "X-Api-Key: k", "--user", "a:b", "--location-trusted"];
    assert_eq!(download(dir.path(), &list, "trusted", &trusted), expected);
    let lines = nginx.header_lines();
    let head = format!("{h1} ");
    let other: Vec<&String> = lines.iter().filter(|l| l.starts_with(&head)).collect();
    assert_eq!(other.len(), 1, "{lines:?}");
    assert!(
        other[0].contains(&mine) && other[0].ends_with("ref=-"),
        "{lines:?}"
    );
}

/// Over TLS, on both ways (the shared HTTP/2 connection and a thread's own HTTP/1.1 one), a
/// download has a connect time exactly when it opened a connection: as many numbers in the
/// `--json` records as nginx saw connections, the first download's among them; and the HAR
/// splits the TLS handshake out and writes the real version.
#[test]
fn connect_ms_counts_the_connections_opened_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let Some((nginx, expected)) = setup(dir.path(), 4) else {
        return;
    };
    for (port, version) in [(nginx.h2_port, "http/2.0"), (nginx.h1_port, "HTTP/1.1")] {
        nginx.clear_log();
        let list = list_of(dir.path(), port, &expected);
        let har = dir.path().join(format!("{port}.har"));
        let out = fetchpar()
            .args(["-j", "1", "--json", "--progress", "none", "--cacert"])
            .arg(dir.path().join("ca.pem"))
            .arg("-i")
            .arg(&list)
            .arg("-o")
            .arg(dir.path().join(format!("out-{port}")))
            .arg("--har")
            .arg(&har)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let records: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["type"] != "summary")
            .collect();
        assert_eq!(records.len(), 4, "{records:#?}");
        let timed: Vec<bool> = records
            .iter()
            .map(|r| r["connect_ms"].as_f64().is_some_and(|ms| ms >= 0.0))
            .collect();
        assert!(timed[0], "{records:#?}");
        let opened = connections(&nginx.requests());
        assert_eq!(timed.iter().filter(|t| **t).count(), opened, "{records:#?}");
        assert!(opened < 4, "no connection was reused: {records:#?}");
        let har: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&har).unwrap()).unwrap();
        let entries = har["log"]["entries"].as_array().unwrap();
        let first = &entries[0];
        let timing = |k: &str| first["timings"][k].as_f64().unwrap();
        assert!(
            timing("ssl") >= 0.0 && timing("connect") >= timing("ssl"),
            "{first}"
        );
        for e in entries {
            assert_eq!(e["response"]["httpVersion"], version, "{e}");
        }
        assert_eq!(entries.last().unwrap()["timings"]["connect"], -1.0);
    }
}
