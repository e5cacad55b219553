//! `-c` against real servers that answer range probes their own way: Apache (a bare 416, no
//! `Content-Range`) and `python3 -m http.server` (ignores `Range`). Each test starts its own
//! server on 127.0.0.1, stops it by PID, and is skipped, saying so, where the program is missing
//! (CI: `apt-get install apache2`).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::*;

fn one(files: &[(&str, &[u8])]) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(name, bytes)| (name.to_string(), sha256(bytes)))
        .collect()
}

/// A server process this test started, stopped (by its own PID) when dropped.
struct Real(std::process::Child);

impl Drop for Real {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `program` can be run here; if not, the test says it is skipped and why.
fn installed(program: &str, arg: &str, package: &str) -> bool {
    let ok = std::process::Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        eprintln!("skipped: {program} is not installed (apt-get install {package})");
    }
    ok
}

/// Waits until something accepts connections on `port` (a hang guard, not a timing check).
fn accepting(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Apache in the foreground (`-X`) on a free 127.0.0.1 port, serving `www`, with a minimal
/// configuration of its own in `root`.
fn apache(root: &std::path::Path, www: &std::path::Path) -> (Real, u16) {
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let modules = "/usr/lib/apache2/modules";
        let conf = root.join("httpd.conf");
        std::fs::write(
            &conf,
            format!(
                "ServerRoot \"{root}\"\n\
                 LoadModule mpm_prefork_module {modules}/mod_mpm_prefork.so\n\
                 LoadModule authz_core_module {modules}/mod_authz_core.so\n\
                 Listen 127.0.0.1:{port}\nServerName 127.0.0.1\n\
                 PidFile \"{root}/httpd.pid\"\nErrorLog \"{root}/error.log\"\n\
                 DocumentRoot \"{www}\"\n<Directory \"{www}\">\n  Require all granted\n</Directory>\n",
                root = root.display(),
                www = www.display(),
            ),
        )
        .unwrap();
        let child = std::process::Command::new("apache2")
            .arg("-f")
            .arg(&conf)
            .arg("-X")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut server = Real(child);
        if accepting(port) && server.0.try_wait().unwrap().is_none() {
            return (server, port);
        }
        // The port was taken meanwhile: another one.
        let _ = server.0.kill();
    }
    panic!("apache2 did not start");
}

/// Downloads `url` once, then `-c` twice: the complete file is recognised each time and never
/// saved a second time.
fn continue_never_copies_a_complete_file(url: &str, data: &[u8]) {
    let sandbox = Sandbox::new();
    let (code, _, stderr) = sandbox.run(&[url]);
    assert_eq!(code, 0, "{stderr:#?}");
    for _ in 0..2 {
        let (code, stdout, stderr) = sandbox.run(&["-c", url]);
        assert_eq!(code, 0, "{stderr:#?}");
        assert_eq!(stdout, [sandbox.out().join("f.bin").display().to_string()]);
        assert!(
            stderr.iter().any(|l| l.contains("already complete")),
            "{stderr:#?}"
        );
    }
    assert_eq!(sandbox.files(), one(&[("f.bin", data)]));
}

/// Real Apache answers the probe past the end with a bare 416 (no `Content-Range`).
#[test]
fn continue_against_real_apache_skips_a_complete_file() {
    if !installed("apache2", "-v", "apache2") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let www = root.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let data = body(150_000, 49);
    std::fs::write(www.join("f.bin"), &*data).unwrap();
    let (_apache, port) = apache(root.path(), &www);
    continue_never_copies_a_complete_file(&format!("http://127.0.0.1:{port}/f.bin"), &data);
}

/// `python3 -m http.server` ignores `Range` and answers the probe with a 200.
#[test]
fn continue_against_python_http_server_skips_a_complete_file() {
    if !installed("python3", "--version", "python3") {
        return;
    }
    let www = tempfile::tempdir().unwrap();
    let data = body(150_000, 50);
    std::fs::write(www.path().join("f.bin"), &*data).unwrap();
    let child = std::process::Command::new("python3")
        .args([
            "-u",
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(www.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Real(child);
    // "Serving HTTP on 127.0.0.1 port 12345 (http://127.0.0.1:12345/) ..."
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.0.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let port: u16 = line
        .split_whitespace()
        .skip_while(|w| *w != "port")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    assert!(accepting(port));
    continue_never_copies_a_complete_file(&format!("http://127.0.0.1:{port}/f.bin"), &data);
}
