//! `-c` against real servers that answer range probes their own way: Apache (a bare 416, no
//! `Content-Range`) and `python3 -m http.server` (ignores `Range`); `-N` against nginx, which
//! answers 200 to an `If-Modified-Since` that differs from its file's date either way. Each test
//! starts its own server on 127.0.0.1, stops it by PID, and is skipped, saying so, where the
//! program is missing (CI: `apt-get install apache2 nginx-light`).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::*;

/// `python3 -u ARGS DIR`, a server that prints "Serving HTTP on 127.0.0.1 port N" first (as
/// `http.server` does), and its port.
fn python(args: &[&str], dir: &std::path::Path) -> (Real, u16) {
    let child = std::process::Command::new("python3")
        .arg("-u")
        .args(args)
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    serving(Real(child))
}

/// The port a python server says it serves on (its first line), once it accepts there.
fn serving(mut server: Real) -> (Real, u16) {
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
    (server, port)
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

/// Starts a real server with `spawn(port)` on a free 127.0.0.1 port, trying another if it does
/// not come up (the port taken meanwhile), five times at most.
fn on_a_free_port(what: &str, mut spawn: impl FnMut(u16) -> std::process::Child) -> (Real, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut server = Real(spawn(port));
        if accepting(port) && server.0.try_wait().unwrap().is_none() {
            return (server, port);
        }
        let _ = server.0.kill();
    }
    panic!("{what} did not start");
}

/// Apache in the foreground (`-X`) on a free 127.0.0.1 port, serving `www`, with a minimal
/// configuration of its own in `root`.
fn apache(root: &std::path::Path, www: &std::path::Path) -> (Real, u16) {
    on_a_free_port("apache2", |port| {
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
        std::process::Command::new("apache2")
            .arg("-f")
            .arg(&conf)
            .arg("-X")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    })
}

/// nginx in the foreground on a free 127.0.0.1 port, serving `www` with its defaults
/// (`if_modified_since exact` among them), with a configuration of its own in `root` and an
/// access log of each request's status and `If-Modified-Since` in `root/access.log`.
fn nginx(root: &std::path::Path, www: &std::path::Path) -> (Real, u16) {
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    // Workers run as the user who starts nginx; as root nginx would switch to nobody.
    let user = if is_root { "user root;" } else { "" };
    on_a_free_port("nginx", |port| {
        let r = root.display();
        let conf = root.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "{user}\nworker_processes 1;\npid {r}/nginx.pid;\nerror_log {r}/error.log;\n\
                 events {{ worker_connections 64; }}\nhttp {{\n\
                 log_format ims '$status $http_if_modified_since';\n\
                 access_log {r}/access.log ims;\n\
                 client_body_temp_path {r}/tmp; proxy_temp_path {r}/tmp;\n\
                 fastcgi_temp_path {r}/tmp; uwsgi_temp_path {r}/tmp; scgi_temp_path {r}/tmp;\n\
                 server {{ listen 127.0.0.1:{port}; root {www}; }}\n}}\n",
                www = www.display(),
            ),
        )
        .unwrap();
        std::process::Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off; master_process off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    })
}

/// `path` (with its modification time `date`, an HTTP date) holding `bytes`.
fn dated(path: &std::path::Path, bytes: &[u8], date: &str) -> std::time::SystemTime {
    std::fs::write(path, bytes).unwrap();
    let when = httpdate::parse_http_date(date).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(when).unwrap();
    when
}

/// The lines of the log at `path` once it has at least one (nginx writes a request's line as
/// it ends; a hang guard, not a timing check).
fn logged(path: &std::path::Path) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if !text.is_empty() || Instant::now() > deadline {
            return text.lines().map(str::to_string).collect();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// nginx's default `if_modified_since exact` answers 200, not 304, to a date later than its
/// file's: `-N` compares the dates itself (as wget does) and keeps the newer file on disk.
#[test]
fn timestamping_against_real_nginx_keeps_a_newer_local_file() {
    if !installed("nginx", "-v", "nginx-light") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let www = root.path().join("www");
    std::fs::create_dir_all(root.path().join("tmp")).unwrap();
    std::fs::create_dir(&www).unwrap();
    dated(
        &www.join("n.txt"),
        &body(100_000, 51),
        "Sun, 01 Jan 2023 12:00:00 GMT",
    );
    let (_nginx, port) = nginx(root.path(), &www);
    let sandbox = Sandbox::new();
    std::fs::create_dir(sandbox.out()).unwrap();
    let local = sandbox.out().join("n.txt");
    let newer = "Sat, 01 Jun 2024 12:00:00 GMT";
    let when = dated(&local, b"the newer local copy", newer);
    let url = format!("http://127.0.0.1:{port}/n.txt");
    let (code, stdout, stderr) = sandbox.run(&["-N", "--json", &url]);
    assert_eq!(code, 0, "{stderr:#?}");
    let record: serde_json::Value = serde_json::from_str(&stdout[0]).unwrap();
    assert_eq!(record["status"], "unchanged", "{stdout:#?}");
    assert_eq!(sandbox.files(), one(&[("n.txt", b"the newer local copy")]));
    assert_eq!(std::fs::metadata(&local).unwrap().modified().unwrap(), when);
    // The case this is about: nginx was asked, and ignored the question.
    let log = logged(&root.path().join("access.log"));
    assert_eq!(log, [format!("200 {newer}")]);
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
    let (_server, port) = python(
        &[
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--directory",
        ],
        www.path(),
    );
    assert!(accepting(port));
    continue_never_copies_a_complete_file(&format!("http://127.0.0.1:{port}/f.bin"), &data);
}

/// Python's own threaded HTTP/1.0 server (a connection per file) serving `www` (argv[1]),
/// each request taking argv[3] seconds, one at a time when argv[2] is "turn" (as
/// `python3 -m http.server` in effect does: one interpreter lock) or side by side ("side", as a
/// server far away would seem); it writes down how many requests were in at once as each came in.
const CLOSING: &str = r#"
import functools, http.server, os, sys, threading, time
www, mode, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
guard, state = threading.Lock(), {"in": 0}
turn = threading.Lock() if mode == "turn" else None
log = open(os.path.join(www, "..", "in-flight.log"), "w")
class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        with guard:
            state["in"] += 1
            log.write(f"{state['in']}\n"); log.flush()
        if turn:
            turn.acquire()
        try:
            time.sleep(pause)
        finally:
            # Counted out before the reply goes: a client that waits for the reply cannot
            # be seen beside it.
            with guard:
                state["in"] -= 1
        try:
            super().do_GET()
        finally:
            if turn:
                turn.release()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=www))
print(f"Serving HTTP on 127.0.0.1 port {server.server_address[1]}", flush=True)
server.serve_forever()
"#;

/// `n` files from the `CLOSING` server (`mode`, `pause`) at `-j 32`: every byte checked, and how
/// many requests were in at once as each came in, in order. `None` without python3.
fn from_closing_server(mode: &str, pause: &str, n: usize) -> Option<Vec<usize>> {
    if !installed("python3", "--version", "python3") {
        return None;
    }
    let root = tempfile::tempdir().unwrap();
    let www = root.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let mut expected = BTreeMap::new();
    for i in 0..n {
        let data = body(1024, i as u8);
        std::fs::write(www.join(format!("f{i}.bin")), &*data).unwrap();
        expected.insert(format!("f{i}.bin"), sha256(&data));
    }
    let child = std::process::Command::new("python3")
        .args(["-u", "-c", CLOSING])
        .arg(&www)
        .args([mode, pause])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (_server, port) = serving(Real(child));
    let urls: Vec<String> = (0..n)
        .map(|i| format!("http://127.0.0.1:{port}/f{i}.bin"))
        .collect();
    let sandbox = Sandbox::new();
    let mut args = vec!["-j", "32"];
    args.extend(urls.iter().map(String::as_str));
    let (code, stdout, stderr) = sandbox.run(&args);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(stdout.len(), n);
    assert_eq!(sandbox.files(), expected);
    let log = std::fs::read_to_string(root.path().join("in-flight.log")).unwrap();
    let in_flight: Vec<usize> = log.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(in_flight.len(), n, "one GET per file");
    Some(in_flight)
}

/// Against a server that closes every connection and serves in turn, more at once only makes
/// each wait for the others: after a few rounds fetchpar sends fewer at once, however large
/// `-j`. Before, it kept four at once to the end.
#[test]
fn a_closing_server_that_serves_in_turn_gets_fewer_requests_at_once() {
    let Some(in_flight) = from_closing_server("turn", "0.01", 100) else {
        return;
    };
    // One at a time, or two where this client's own work per file is a fair share of the
    // server's (a debug build's is): never the four a closing host starts with.
    let late = &in_flight[60..];
    assert!(
        late.iter().all(|&k| k <= 2),
        "in flight as the last came in: {late:?}"
    );
}

/// The same server serving side by side (each request waits, none for another): four at once
/// pay, and a try at two finds it out and goes back.
#[test]
fn a_closing_server_that_serves_side_by_side_keeps_four_at_once() {
    let Some(in_flight) = from_closing_server("side", "0.05", 120) else {
        return;
    };
    let mut late = in_flight[100..].to_vec();
    late.sort_unstable();
    assert!(
        late[late.len() / 2] >= 3,
        "in flight as the last came in: {late:?}"
    );
}
