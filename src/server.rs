//! A small HTTP/1.1 server on 127.0.0.1, for `--demo` and for the tests.
//!
//! It is deliberately hand-written on `std::net::TcpListener`: the tests need full control over
//! what goes on the wire (latency, `Range`, short bodies, resets, stalls, bad headers), which a
//! real server library would "fix" for us. One server, two users: `--demo` serves plain files with
//! a delay, the tests add faults through [`Reply`].
//!
//! Each connection gets its own thread and keeps alive until the client closes it, so connection
//! reuse can be observed with [`Server::connections`]. Accepted sockets set `TCP_NODELAY` and a
//! reply's head leaves in the same write as its body (or the body's first bytes, for the faults
//! that cut it short), so the server never holds a small reply back for an acknowledgement;
//! [`Server::nodelay_connections`] and [`Server::writes`] let the tests check both.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, IoSlice, Read, Write};
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

/// What the accept loop, the connection threads and the [`Server`] handle share.
#[derive(Default)]
struct State {
    stop: AtomicBool,
    connections: AtomicUsize,
    nodelay: AtomicUsize,
    writes: AtomicUsize,
    log: Mutex<Vec<Request>>,
    /// Held while a request is answered, when the server answers one at a time.
    one_at_a_time: Option<Mutex<()>>,
    /// How long a turn is kept once its reply is out.
    hold: Duration,
}

/// A running server; it stops when dropped.
pub struct Server {
    addr: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts a server on 127.0.0.1 with an OS-chosen port; `handler` answers every request.
    pub fn start<F>(handler: F) -> io::Result<Server>
    where
        F: Fn(&Request) -> Reply + Send + Sync + 'static,
    {
        Server::start_with(handler, State::default(), 0)
    }

    /// Like [`Server::start`], on a given port (a server coming back where it was).
    pub fn start_on<F>(port: u16, handler: F) -> io::Result<Server>
    where
        F: Fn(&Request) -> Reply + Send + Sync + 'static,
    {
        Server::start_with(handler, State::default(), port)
    }

    /// Like [`Server::start`], but answers one request at a time across all connections, delay
    /// and body included, as a single-threaded server does, and keeps each turn for `hold` more
    /// once the reply is out (the work such a server does after replying: a log write, a
    /// worker process winding down). Concurrency can only make each download wait longer here,
    /// never the run faster, whatever the scheduler does: N requests take at least
    /// (N - 1) × `hold` however many connections carry them.
    pub fn start_one_at_a_time<F>(handler: F, hold: Duration) -> io::Result<Server>
    where
        F: Fn(&Request) -> Reply + Send + Sync + 'static,
    {
        let state = State {
            one_at_a_time: Some(Mutex::new(())),
            hold,
            ..State::default()
        };
        Server::start_with(handler, state, 0)
    }

    fn start_with<F>(handler: F, state: State, port: u16) -> io::Result<Server>
    where
        F: Fn(&Request) -> Reply + Send + Sync + 'static,
    {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let addr = listener.local_addr()?;
        let state = Arc::new(state);
        let handler: Arc<Handler> = Arc::new(handler);
        let shared = state.clone();
        let accept = thread::Builder::new()
            .name("fetchpar-server".into())
            .spawn(move || accept_loop(&listener, &shared, &handler))?;
        Ok(Server {
            addr,
            state,
            accept: Some(accept),
        })
    }

    /// Serves fixed files by path (`/name` → bytes), each reply delayed by `delay`; 404 otherwise.
    /// Each file has a strong `ETag`, as real file servers send (`--split` and resumes check
    /// their ranges against it).
    pub fn with_files(files: HashMap<String, Arc<[u8]>>, delay: Duration) -> io::Result<Server> {
        let files: HashMap<String, (Arc<[u8]>, String)> = files
            .into_iter()
            .map(|(path, body)| {
                let tag = format!("\"{:x}-{}\"", body.len(), etag_of(&body));
                (path, (body, tag))
            })
            .collect();
        Server::start(move |req| match files.get(req.path()) {
            Some((body, tag)) => Reply::file(body.clone())
                .with_header("ETag", tag)
                .with_delay(delay),
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
        self.state.connections.load(Ordering::SeqCst)
    }

    /// How many accepted connections report `TCP_NODELAY` as set (read back from the socket).
    pub fn nodelay_connections(&self) -> usize {
        self.state.nodelay.load(Ordering::SeqCst)
    }

    /// How many write calls (plain or vectored) the server has made on all its connections.
    pub fn writes(&self) -> usize {
        self.state.writes.load(Ordering::SeqCst)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, state: &Arc<State>, handler: &Arc<Handler>) {
    for stream in listener.incoming() {
        if state.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        state.connections.fetch_add(1, Ordering::SeqCst);
        // Without it a reply written in more than one piece on a kept-alive connection waits
        // for the client's delayed acknowledgement (Nagle), and the server measures itself.
        if stream.set_nodelay(true).is_ok() && stream.nodelay().unwrap_or(false) {
            state.nodelay.fetch_add(1, Ordering::SeqCst);
        }
        let (handler, state) = (handler.clone(), state.clone());
        let _ = thread::Builder::new()
            .name("fetchpar-server-conn".into())
            .spawn(move || {
                let _ = serve_connection(stream, &*handler, &state);
            });
    }
}

/// The connection's write half, counting write calls so a test can see how a reply was sent.
struct Conn<'a> {
    stream: TcpStream,
    writes: &'a AtomicUsize,
}

impl Write for Conn<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.stream.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.stream.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

fn serve_connection(stream: TcpStream, handler: &Handler, state: &State) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = Conn {
        stream,
        writes: &state.writes,
    };
    loop {
        let Some(req) = read_request(&mut reader)? else {
            return Ok(());
        };
        if let Ok(mut log) = state.log.lock() {
            log.push(req.clone());
        }
        // A poisoned lock only means another connection's thread died mid-reply: carry on.
        let turn = state
            .one_at_a_time
            .as_ref()
            .map(|lock| lock.lock().unwrap_or_else(|e| e.into_inner()));
        let reply = handler(&req);
        let keep_alive = write_reply(&mut out, &req, &reply);
        if turn.is_some() {
            let _ = out.flush();
            thread::sleep(state.hold);
        }
        drop(turn);
        let keep_alive = keep_alive?;
        if !keep_alive {
            let _ = out.stream.shutdown(Shutdown::Both);
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
fn write_reply(out: &mut Conn, req: &Request, reply: &Reply) -> io::Result<bool> {
    if !reply.delay.is_zero() {
        thread::sleep(reply.delay);
    }
    let view = select_range(req, reply);
    let head = head(&view, reply);
    if req.method.eq_ignore_ascii_case("HEAD") {
        write_all_pair(out, head.as_bytes(), &[])?;
        return Ok(true);
    }
    send(out, head.as_bytes(), view.body, &reply.fault)
}

/// The part of a reply a request asked for: status, body bytes, and the range headers.
struct View<'a> {
    status: u16,
    body: &'a [u8],
    extra: String,
}

/// Applies `Range` (and `If-Range`) to a reply that serves ranges.
fn select_range<'a>(req: &Request, reply: &'a Reply) -> View<'a> {
    let mut view = View {
        status: reply.status,
        body: &reply.body,
        extra: String::new(),
    };
    if !reply.ranges || reply.status != 200 {
        return view;
    }
    view.extra.push_str("Accept-Ranges: bytes\r\n");
    let Some(range) = req.header("range").filter(|_| same_version(req, reply)) else {
        return view;
    };
    let len = reply.body.len();
    match parse_range(range, len) {
        Some((start, end)) => {
            view.status = 206;
            view.extra
                .push_str(&format!("Content-Range: bytes {start}-{end}/{len}\r\n"));
            view.body = &reply.body[start..=end];
        }
        None => {
            view.status = 416;
            view.extra
                .push_str(&format!("Content-Range: bytes */{len}\r\n"));
            view.body = &[];
        }
    }
    view
}

/// Whether `If-Range`, if sent, names this version: otherwise the whole file, as RFC 9110 says.
fn same_version(req: &Request, reply: &Reply) -> bool {
    req.header("if-range").is_none_or(|wanted| {
        reply.headers.iter().any(|(name, value)| {
            (name.eq_ignore_ascii_case("etag") || name.eq_ignore_ascii_case("last-modified"))
                && value == wanted
        })
    })
}

/// The status line and headers, ending with the blank line.
fn head(view: &View, reply: &Reply) -> String {
    let mut head = format!("HTTP/1.1 {} {}\r\n", view.status, reason(view.status));
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&view.extra);
    match reply.fault {
        Fault::Chunked(_) => head.push_str("Transfer-Encoding: chunked\r\n"),
        Fault::UntilClose => head.push_str("Connection: close\r\n"),
        _ => head.push_str(&format!("Content-Length: {}\r\n", view.body.len())),
    }
    head.push_str("\r\n");
    head
}

/// Sends the head and the body as `fault` says; returns whether the connection may be reused.
/// The head leaves in the same write as the first body bytes, so a small reply is one write.
fn send(out: &mut Conn, head: &[u8], body: &[u8], fault: &Fault) -> io::Result<bool> {
    let prefix = |n: usize| &body[..n.min(body.len())];
    match *fault {
        Fault::Normal => write_all_pair(out, head, body).map(|()| true),
        Fault::ShortBody(n) => write_all_pair(out, head, prefix(n)).map(|()| false),
        Fault::ResetAfter(n) => {
            write_all_pair(out, head, prefix(n))?;
            out.flush()?;
            // Linger 0 turns the close into a reset, as a crashed peer or middlebox would.
            let _ = socket_linger_zero(&out.stream);
            Ok(false)
        }
        Fault::StallAfter(n, pause) => {
            write_all_pair(out, head, prefix(n))?;
            out.flush()?;
            thread::sleep(pause);
            Ok(false)
        }
        Fault::Drip(piece, pause) => {
            out.write_all(head)?;
            drip(out, body, piece, pause).map(|()| true)
        }
        Fault::Chunked(terminate) => {
            out.write_all(head)?;
            chunked(out, body, terminate).map(|()| terminate)
        }
        Fault::UntilClose => write_all_pair(out, head, body).map(|()| false),
    }
}

/// The body in pieces of `piece` bytes with a pause after each.
fn drip(out: &mut Conn, body: &[u8], piece: usize, pause: Duration) -> io::Result<()> {
    for chunk in body.chunks(piece.max(1)) {
        out.write_all(chunk)?;
        out.flush()?;
        thread::sleep(pause);
    }
    Ok(())
}

/// The body as `Transfer-Encoding: chunked`, with the final empty chunk only if `terminate`.
fn chunked(out: &mut Conn, body: &[u8], terminate: bool) -> io::Result<()> {
    for chunk in body.chunks(16 * 1024) {
        write!(out, "{:x}\r\n", chunk.len())?;
        out.write_all(chunk)?;
        out.write_all(b"\r\n")?;
    }
    if terminate {
        out.write_all(b"0\r\n\r\n")?;
    }
    Ok(())
}

/// Writes `first` then `second` with vectored writes: one system call when the socket takes
/// both, and no copy of the body into a new buffer.
fn write_all_pair(out: &mut impl Write, first: &[u8], second: &[u8]) -> io::Result<()> {
    let mut slices = [IoSlice::new(first), IoSlice::new(second)];
    let mut bufs: &mut [IoSlice] = &mut slices;
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match out.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A cheap fingerprint of a body (FNV-1a), for its `ETag`.
fn etag_of(body: &[u8]) -> String {
    let hash = body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

fn socket_linger_zero(stream: &TcpStream) -> io::Result<()> {
    socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO))
}

fn reason(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .unwrap_or("Unknown")
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
