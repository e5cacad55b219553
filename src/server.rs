//! A small HTTP/1.1 server on 127.0.0.1, for `--demo` and for the tests.
//!
//! It is deliberately hand-written on `std::net::TcpListener`: the tests need full control over
//! what goes on the wire (latency, `Range`, short bodies, resets, stalls, bad headers), which a
//! real server library would "fix" for us. One server, two users: `--demo` serves plain files with
//! a delay, the tests add faults through [`Reply`].
//!
//! Each connection gets its own thread and keeps alive until the client closes it, so connection
//! reuse can be observed with [`Server::connections`].

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The request target exactly as sent (still percent-encoded).
    pub target: String,
    /// Header names are lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// How the body goes on the wire; anything but `Normal` is a fault for the tests.
#[derive(Clone, Debug, Default)]
pub enum Fault {
    #[default]
    Normal,
    /// Declare the full Content-Length, send only this many body bytes, then close.
    ShortBody(usize),
    /// Send this many body bytes, then reset the connection (RST, not FIN).
    ResetAfter(usize),
    /// Send this many body bytes, then go silent for the duration, then close.
    StallAfter(usize, Duration),
    /// Send the body in pieces of this size with a pause after each.
    Drip(usize, Duration),
    /// `Transfer-Encoding: chunked`; `false` leaves out the terminating chunk and closes.
    Chunked(bool),
    /// No Content-Length and no chunking: the body ends when the connection closes.
    UntilClose,
}

/// What the server answers to one request.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Arc<[u8]>,
    /// Held back before the status line, as a distant server would.
    pub delay: Duration,
    pub fault: Fault,
    /// Answer `Range: bytes=N-` / `bytes=N-M` with 206 and a `Content-Range` (200 instead when
    /// an `If-Range` does not match this reply's `ETag` or `Last-Modified` header).
    pub ranges: bool,
}

impl Reply {
    /// 200 with this body, honouring `Range`.
    pub fn file(body: impl Into<Arc<[u8]>>) -> Reply {
        Reply {
            status: 200,
            headers: Vec::new(),
            body: body.into(),
            delay: Duration::ZERO,
            fault: Fault::Normal,
            ranges: true,
        }
    }

    /// A bare status with a short text body.
    pub fn status(status: u16) -> Reply {
        let text = format!("{status} {}\n", reason(status));
        Reply {
            ranges: false,
            ..Reply::file(text.into_bytes())
        }
        .with_status(status)
    }

    pub fn with_status(mut self, status: u16) -> Reply {
        self.status = status;
        self
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    pub fn with_fault(mut self, fault: Fault) -> Reply {
        self.fault = fault;
        self
    }

    pub fn without_ranges(mut self) -> Reply {
        self.ranges = false;
        self
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// A running server; it stops when dropped.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<Request>>>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts a server on 127.0.0.1 with an OS-chosen port; `handler` answers every request.
    pub fn start<F>(handler: F) -> io::Result<Server>
    where
        F: Fn(&Request) -> Reply + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let accept = {
            let (stop, connections, log) = (stop.clone(), connections.clone(), log.clone());
            thread::Builder::new()
                .name("fetchpar-server".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        connections.fetch_add(1, Ordering::SeqCst);
                        let (handler, log) = (handler.clone(), log.clone());
                        let _ = thread::Builder::new()
                            .name("fetchpar-server-conn".into())
                            .spawn(move || {
                                let _ = serve_connection(stream, &*handler, &log);
                            });
                    }
                })?
        };
        Ok(Server {
            addr,
            stop,
            connections,
            log,
            accept: Some(accept),
        })
    }

    /// Serves fixed files by path (`/name` → bytes), each reply delayed by `delay`; 404 otherwise.
    pub fn with_files(files: HashMap<String, Arc<[u8]>>, delay: Duration) -> io::Result<Server> {
        Server::start(move |req| match files.get(req.path()) {
            Some(body) => Reply::file(body.clone()).with_delay(delay),
            None => Reply::status(404).with_delay(delay),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` followed by `path` (which should start with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// How many TCP connections have been accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn serve_connection(
    stream: TcpStream,
    handler: &Handler,
    log: &Mutex<Vec<Request>>,
) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let Some(req) = read_request(&mut reader)? else {
            return Ok(());
        };
        if let Ok(mut log) = log.lock() {
            log.push(req.clone());
        }
        let reply = handler(&req);
        let keep_alive = write_reply(&mut out, &req, &reply)?;
        if !keep_alive {
            let _ = out.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

/// Reads one request head; `None` when the client closed the connection.
fn read_request(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    let mut body_len = 0usize;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim().to_string();
            if name == "content-length" {
                body_len = value.parse().unwrap_or(0);
            }
            headers.push((name, value));
        }
    }
    // Requests from fetchpar carry no body, but drain one so keep-alive stays in step.
    io::copy(&mut reader.take(body_len as u64), &mut io::sink())?;
    Ok(Some(Request {
        method,
        target,
        headers,
    }))
}

/// Parses `bytes=N-` or `bytes=N-M` against a body of `len` bytes.
fn parse_range(value: &str, len: usize) -> Option<(usize, usize)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start: usize = start.trim().parse().ok()?;
    let end: usize = match end.trim() {
        "" => len.checked_sub(1)?,
        e => e.parse::<usize>().ok()?.min(len.checked_sub(1)?),
    };
    (start <= end).then_some((start, end))
}

/// Writes the reply; returns whether the connection may be reused.
fn write_reply(out: &mut TcpStream, req: &Request, reply: &Reply) -> io::Result<bool> {
    if !reply.delay.is_zero() {
        thread::sleep(reply.delay);
    }
    let mut status = reply.status;
    let mut body: &[u8] = &reply.body;
    let mut extra = String::new();
    if reply.ranges && status == 200 {
        extra.push_str("Accept-Ranges: bytes\r\n");
        // `If-Range` that does not name this version: the whole file, as RFC 9110 says.
        let same_version = req.header("if-range").is_none_or(|wanted| {
            reply.headers.iter().any(|(name, value)| {
                (name.eq_ignore_ascii_case("etag") || name.eq_ignore_ascii_case("last-modified"))
                    && value == wanted
            })
        });
        if let Some(range) = req.header("range").filter(|_| same_version) {
            match parse_range(range, reply.body.len()) {
                Some((start, end)) => {
                    status = 206;
                    extra.push_str(&format!(
                        "Content-Range: bytes {start}-{end}/{}\r\n",
                        reply.body.len()
                    ));
                    body = &reply.body[start..=end];
                }
                None => {
                    status = 416;
                    extra.push_str(&format!("Content-Range: bytes */{}\r\n", reply.body.len()));
                    body = &[];
                }
            }
        }
    }
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&extra);
    let is_head = req.method.eq_ignore_ascii_case("HEAD");
    match reply.fault {
        Fault::Chunked(_) => head.push_str("Transfer-Encoding: chunked\r\n"),
        Fault::UntilClose => head.push_str("Connection: close\r\n"),
        _ => head.push_str(&format!("Content-Length: {}\r\n", body.len())),
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if is_head {
        return Ok(true);
    }
    match reply.fault {
        Fault::Normal => {
            out.write_all(body)?;
            Ok(true)
        }
        Fault::ShortBody(n) => {
            out.write_all(&body[..n.min(body.len())])?;
            Ok(false)
        }
        Fault::ResetAfter(n) => {
            out.write_all(&body[..n.min(body.len())])?;
            out.flush()?;
            // Linger 0 turns the close into a reset, as a crashed peer or middlebox would.
            let _ = socket_linger_zero(out);
            Ok(false)
        }
        Fault::StallAfter(n, pause) => {
            out.write_all(&body[..n.min(body.len())])?;
            out.flush()?;
            thread::sleep(pause);
            Ok(false)
        }
        Fault::Drip(piece, pause) => {
            for chunk in body.chunks(piece.max(1)) {
                out.write_all(chunk)?;
                out.flush()?;
                thread::sleep(pause);
            }
            Ok(true)
        }
        Fault::Chunked(terminate) => {
            for chunk in body.chunks(16 * 1024) {
                write!(out, "{:x}\r\n", chunk.len())?;
                out.write_all(chunk)?;
                out.write_all(b"\r\n")?;
            }
            if terminate {
                out.write_all(b"0\r\n\r\n")?;
            }
            Ok(terminate)
        }
        Fault::UntilClose => {
            out.write_all(body)?;
            Ok(false)
        }
    }
}

fn socket_linger_zero(stream: &TcpStream) -> io::Result<()> {
    socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// `count` deterministic pseudo-random bodies of `min..=max` bytes, named `file-NN.bin`.
/// Used by `--demo`, the tests and the benchmarks, so all three serve the same kind of data.
pub fn generated_files(count: usize, min: usize, max: usize) -> Vec<(String, Arc<[u8]>)> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        // xorshift64*: cheap, deterministic, good enough to defeat any accidental compression.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    (0..count)
        .map(|i| {
            let span = (max - min + 1) as u64;
            let len = min + (next() % span) as usize;
            let mut body = Vec::with_capacity(len + 8);
            while body.len() < len {
                body.extend_from_slice(&next().to_le_bytes());
            }
            body.truncate(len);
            (format!("/file-{i:02}.bin"), Arc::from(body))
        })
        .collect()
}
