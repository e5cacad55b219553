//! The loopback server every test stands on: it must measure the client, not itself.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use crate::util::*;

/// Reads one reply with a `Content-Length` and returns its body.
fn read_reply(reader: &mut impl BufRead) -> Vec<u8> {
    let mut len = None;
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "reply cut short");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                len = Some(value.trim().parse::<usize>().unwrap());
            }
        }
    }
    let mut body = vec![0; len.expect("a Content-Length")];
    reader.read_exact(&mut body).unwrap();
    body
}

/// Nagle's algorithm would hold the body of a reply written as head-then-body back until the
/// client acknowledges the head, which a client delays: each small reply after the first on a
/// kept-alive connection would arrive late. Shown without timing: the socket reports
/// `TCP_NODELAY`, and each small reply leaves in one write.
#[test]
fn small_keep_alive_replies_leave_in_one_write_on_a_nodelay_socket() {
    let data = body(1024, 3);
    let served = data.clone();
    let server = serve(move |_| Reply::file(served.clone()));
    let mut client = TcpStream::connect(server.addr()).unwrap();
    let mut reader = BufReader::new(client.try_clone().unwrap());
    for _ in 0..2 {
        client
            .write_all(b"GET /f HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        assert_eq!(sha256(&read_reply(&mut reader)), sha256(&data));
    }
    assert_eq!(server.connections(), 1, "both requests on one connection");
    assert_eq!(server.nodelay_connections(), 1, "TCP_NODELAY on the socket");
    assert_eq!(
        server.writes(),
        2,
        "one write per reply, head and body together"
    );
}
