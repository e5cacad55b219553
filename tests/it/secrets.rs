//! Issue 9: nothing secret on disk or on the wire. No sidecar holds a hash of a credential, no
//! `Referer` is sent, and user headers and credentials go only to the origin the user named.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::util::*;

#[test]
fn a_sidecar_of_the_previous_format_is_resumed_then_rewritten_without_the_secret() {
    let data = body(100_000, 41);
    let seen = AtomicUsize::new(0);
    let served = data.clone();
    let server = serve(move |_| {
        let reply = Reply::file(served.clone()).with_header("ETag", "\"v1\"");
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            reply.with_fault(Fault::ShortBody(10_000))
        } else {
            reply
        }
    });
    let sandbox = Sandbox::new();
    let url = server
        .url("/f.bin")
        .replace("http://", "http://alice:hunter2@");
    // What fetchpar wrote before issue 9: format 1, keyed on the full URL, password included.
    let legacy = sha256(url.as_bytes());
    std::fs::create_dir_all(sandbox.out()).unwrap();
    std::fs::write(sandbox.out().join("f.bin.part"), &data[..40_000]).unwrap();
    let meta_path = sandbox.out().join("f.bin.part.meta");
    let masked = server.url("/f.bin").replace("http://", "http://***@");
    std::fs::write(
        &meta_path,
        format!("fetchpar-part 1\nurl {masked}\nurl-sha256 {legacy}\netag \"v1\"\ntotal 100000\n"),
    )
    .unwrap();
    // Resumed (not sent to f.1.bin), and cut again: the sidecar left is in the new form.
    let (code, _, stderr) = sandbox.run(&["-c", "--retries", "0", &url]);
    assert_eq!(code, 1, "{stderr:#?}");
    assert_eq!(server.requests()[0].header("range"), Some("bytes=40000-"));
    let meta = std::fs::read_to_string(&meta_path).unwrap();
    assert!(meta.starts_with("fetchpar-part 3\n"), "{meta}");
    assert!(
        !meta.contains(&legacy) && !meta.contains("hunter2"),
        "{meta}"
    );
    assert!(!entries(&sandbox.out()).contains(&"f.1.bin".to_string()));
    // And the new form resumes too, to the exact bytes.
    let (code, _, stderr) = sandbox.run(&["-c", &url]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(server.requests()[1].header("range"), Some("bytes=50000-"));
    assert_eq!(
        sandbox.files(),
        [("f.bin".to_string(), sha256(&data))].into()
    );
}
