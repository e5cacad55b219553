//! The core promise: many URLs, saved byte-exact, with failures reported and nothing clobbered.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn fifty_urls_saved_byte_exact_with_one_and_eight_workers() {
    let (server, expected) = file_server(50, 1, 64 * 1024, Duration::ZERO);
    let urls: Vec<String> = expected
        .keys()
        .map(|name| server.url(&format!("/{name}")))
        .collect();
    for jobs in ["1", "8"] {
        let out = tempfile::tempdir().unwrap();
        let assert = fetchpar()
            .args(["-j", jobs, "-o"])
            .arg(out.path())
            .args(&urls)
            .assert()
            .success();
        assert_eq!(checksums(out.path()), expected, "with -j {jobs}");
        let stdout = lines(&assert.get_output().stdout);
        assert_eq!(stdout.len(), 50, "one path per saved file on stdout");
        assert!(stdout
            .iter()
            .all(|p| std::path::Path::new(p).starts_with(out.path())));
    }
}
