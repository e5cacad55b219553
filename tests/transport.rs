//! Each worker drives its own runtime and keep-alive pool: connections are reused from file to
//! file, and the per-read timeout still applies to the wait for headers and to the body.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn sixty_files_over_four_workers_open_at_most_four_connections() {
    let (server, expected) = file_server(60, 1, 4096, Duration::ZERO);
    let urls: Vec<String> = expected
        .keys()
        .map(|name| server.url(&format!("/{name}")))
        .collect();
    let out = tempfile::tempdir().unwrap();
    fetchpar()
        .args(["-j", "4", "-o"])
        .arg(out.path())
        .args(&urls)
        .assert()
        .success();
    assert_eq!(checksums(out.path()), expected);
    assert!(
        server.connections() <= 4,
        "{} connections for 60 files",
        server.connections()
    );
}

#[test]
fn a_stalled_body_times_out_per_read_and_is_reported() {
    let body = vec![7u8; 100_000];
    let server = Server::start(move |_| {
        Reply::file(body.clone()).with_fault(Fault::StallAfter(1000, Duration::from_secs(5)))
    })
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let assert = fetchpar()
        .args(["--timeout", "0.5", "--retries", "0", "-o"])
        .arg(out.path())
        .arg(server.url("/stall.bin"))
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(stderr.contains("timed out"), "{stderr}");
    assert!(!out.path().join("stall.bin").exists());
}
