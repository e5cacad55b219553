//! The one set of helpers every test module uses, one line per expectation where possible:
//!
//! - running the binary: [`fetchpar`] (assert_cmd), [`command`] (std, for runs a test talks to
//!   while they last), [`run`] → [`Outcome`] (exit code, stdout lines, stderr lines), and
//!   [`Sandbox`], an output directory that also proves nothing was written beside it;
//! - serving: [`serve`] starts the library's loopback fault server (the one behind `--demo`),
//!   [`file_server`] serves generated files, [`body`] makes deterministic bytes;
//! - looking at the result: [`checksums`], [`sha256`], [`entries`], [`lines`];
//! - processes: [`finish`], [`finish_within`], [`wait_for_len`], [`sigint`].
//!
//! The tests reach the library only through `fetchpar::server` (and the binary itself).

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use fetchpar::server::{generated_files, Fault, Reply, Request, Server};
use sha2::{Digest, Sha256};

/// The real binary as a plain `std` command (for tests that spawn it and talk to it while it
/// runs), with no proxies from the environment.
pub fn command() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fetchpar"));
    for var in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost");
    cmd
}

/// The real binary, with no terminal and no proxies from the environment.
pub fn fetchpar() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::from_std(command());
    cmd.timeout(Duration::from_secs(120));
    cmd
}

/// What a finished run left behind: exit code (-1 when a signal ended it), stdout lines, stderr
/// lines.
pub type Outcome = (i32, Vec<String>, Vec<String>);

/// Runs `cmd` to the end and returns its [`Outcome`].
pub fn run(cmd: &mut assert_cmd::Command) -> Outcome {
    let output = cmd.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        lines(&output.stdout),
        lines(&output.stderr),
    )
}

/// Starts the loopback server on 127.0.0.1 (port 0); `handler` answers every request, faults
/// included (see [`Reply`] and [`Fault`]).
pub fn serve<F>(handler: F) -> Server
where
    F: Fn(&Request) -> Reply + Send + Sync + 'static,
{
    Server::start(handler).unwrap()
}

/// A server of `data` (with `etag`) whose replies suffer `fault` until the flag it returns is
/// cleared: a first run is cut or stalled, the next one (`-c`) gets the file whole.
pub fn serve_faulty_at_first(
    data: Arc<[u8]>,
    etag: &str,
    fault: Fault,
) -> (Server, Arc<AtomicBool>) {
    let faulty = Arc::new(AtomicBool::new(true));
    let (still, etag) = (faulty.clone(), etag.to_string());
    let server = serve(move |_| {
        let reply = Reply::file(data.clone()).with_header("ETag", &etag);
        if still.load(Ordering::SeqCst) {
            reply.with_fault(fault.clone())
        } else {
            reply
        }
    });
    (server, faulty)
}

/// A port on 127.0.0.1 that nothing listens on (bound, then let go).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Deterministic bytes that differ by `seed` at every offset. The `(i >> 8)` term keeps the data
/// from repeating every 256 bytes, so bytes joined at a wrong offset never pass for right ones.
pub fn body(len: usize, seed: u8) -> Arc<[u8]> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect::<Vec<u8>>()
        .into()
}

pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every file under `dir`, by path relative to it, with its checksum.
pub fn checksums(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A file renamed or removed between the listing and the read is passed over: tests poll a
/// folder a run is still writing in (a part renamed into place), and what vanished was not there.
fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let Some(kind) = present(entry.file_type()) else {
            continue;
        };
        if kind.is_dir() {
            walk(root, &path, out);
        } else if let Some(bytes) = present(std::fs::read(&path)) {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(rel, sha256(&bytes));
        }
    }
}

fn present<T>(result: std::io::Result<T>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("{e}"),
    }
}

/// What `checksums` gives for a folder holding exactly `files` (name, bytes).
pub fn one(files: &[(&str, &[u8])]) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(name, bytes)| (name.to_string(), sha256(bytes)))
        .collect()
}

/// The `--json` records of a run's URLs (the summary left out).
pub fn url_records(stdout: &[String]) -> Vec<serde_json::Value> {
    stdout
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "url")
        .collect()
}

/// A run's output directory inside a scratch root, so a test can see anything written beside it.
pub struct Sandbox {
    root: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            root: tempfile::tempdir().unwrap(),
        }
    }

    /// The scratch root the run starts in, beside `out`.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn out(&self) -> PathBuf {
        self.root.path().join("out")
    }

    /// fetchpar run from the root, saving into `out`.
    pub fn cmd(&self) -> assert_cmd::Command {
        let mut cmd = fetchpar();
        cmd.current_dir(self.root.path()).arg("-o").arg(self.out());
        cmd
    }

    /// Runs and returns (exit status, stdout lines, stderr lines), after checking that the
    /// root holds nothing but the output directory.
    pub fn run(&self, args: &[&str]) -> Outcome {
        let outcome = run(self.cmd().args(args));
        self.assert_nothing_outside();
        outcome
    }

    pub fn assert_nothing_outside(&self) {
        let names = entries(self.root.path());
        assert!(
            names.is_empty() || names == ["out"],
            "written outside the output directory: {names:?}"
        );
    }

    /// Checksums of everything in `out` (empty if it does not exist).
    pub fn files(&self) -> BTreeMap<String, String> {
        if self.out().exists() {
            checksums(&self.out())
        } else {
            BTreeMap::new()
        }
    }
}

impl Sandbox {
    /// Starts fetchpar in the background (for Ctrl-C tests), saving into `out`.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        command()
            .current_dir(self.root.path())
            .arg("-o")
            .arg(self.out())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// `count` generated files served at `/file-NN.bin`, plus their expected checksums by file name.
pub fn file_server(
    count: usize,
    min: usize,
    max: usize,
    delay: Duration,
) -> (Server, BTreeMap<String, String>) {
    let files = generated_files(count, min, max);
    let expected = files
        .iter()
        .map(|(path, body)| (path.trim_start_matches('/').to_string(), sha256(body)))
        .collect();
    let map: HashMap<String, Arc<[u8]>> = files.into_iter().collect();
    (Server::with_files(map, delay).unwrap(), expected)
}

/// The URLs of every file in `expected` (as returned by [`file_server`]) on `server`.
pub fn urls_of(server: &Server, expected: &BTreeMap<String, String>) -> Vec<String> {
    expected
        .keys()
        .map(|name| server.url(&format!("/{name}")))
        .collect()
}

/// Names of the entries directly inside `dir`, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The lines of a command's stderr, for asserting on one of them.
pub fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits for a spawned run to end, killing it (and failing the test) if it is still running after
/// a minute: a hang guard for tests that talk to the process while it runs, not a timing check.
pub fn finish(child: std::process::Child) -> std::process::Output {
    finish_within(child, Duration::from_secs(60))
}

/// [`finish`] with a guard of its own, for runs that would otherwise sit out a long wait.
pub fn finish_within(mut child: std::process::Child, guard: Duration) -> std::process::Output {
    let deadline = std::time::Instant::now() + guard;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("fetchpar did not finish: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Waits until the file at `path` holds at least `len` bytes (a download's first bytes are on
/// disk), giving up after a minute; a hang guard, not a timing check.
pub fn wait_for_len(path: &Path, len: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) < len
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGINT, as Ctrl-C does.
pub fn sigint(pid: u32) {
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Runs `openssl` in `dir` (certificates for the TLS tests are made at test time); fails the
/// test with openssl's own words if it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fault server whose first reply is `first` and every later one `then`: a body cut short,
/// then what a retry gets.
pub fn first_then(first: Reply, then: Reply) -> Server {
    let seen = std::sync::atomic::AtomicUsize::new(0);
    serve(move |_| {
        if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            first.clone()
        } else {
            then.clone()
        }
    })
}

/// A listener on 127.0.0.1 that never accepts, with room in its queue for one connection: the
/// first connect comes up (and its request is never answered), every later SYN is dropped.
pub fn half_open() -> (SocketAddr, TcpListener) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.listen(0).unwrap();
    let listener: TcpListener = socket.into();
    (listener.local_addr().unwrap(), listener)
}

/// A listener on `ip` that never accepts, its queue filled: connects to it are dropped, as to a
/// host that has vanished. The returned streams keep the queue full.
pub fn black_hole(ip: &str) -> (SocketAddr, TcpListener, Vec<TcpStream>) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let addr: SocketAddr = format!("{ip}:0").parse().unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.listen(0).unwrap();
    let listener: TcpListener = socket.into();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(stream) => held.push(stream),
            Err(_) => break,
        }
    }
    (addr, listener, held)
}
