//! Issue 9's guards on what a run may do before its first request: a Slurm array that is not an
//! even grid of task ids, a URL that differs only by its `#fragment`, an output directory that
//! cannot be written.

use crate::util::*;

fn ok_server() -> Server {
    serve(|req| match req.path() {
        "/a.bin" => Reply::file(body(3000, 7)),
        _ => Reply::status(404),
    })
}

#[test]
fn an_uneven_slurm_array_is_refused_in_every_task() {
    let server = ok_server();
    // sbatch --array=0-6:2,3: five tasks with ids 0 2 3 4 6.
    for id in ["0", "2", "3", "4", "6"] {
        let dir = tempfile::tempdir().unwrap();
        let (code, stdout, stderr) = run(fetchpar()
            .current_dir(dir.path())
            .env_remove("JOB_COMPLETION_INDEX")
            .env_remove("FETCHPAR_SHARD")
            .envs([
                ("SLURM_ARRAY_TASK_ID", id),
                ("SLURM_ARRAY_TASK_MIN", "0"),
                ("SLURM_ARRAY_TASK_MAX", "6"),
                ("SLURM_ARRAY_TASK_STEP", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "5"),
            ])
            .args(["--shard", "auto"])
            .arg(server.url("/a.bin")));
        assert_eq!(code, 2, "task {id}: {stderr:#?}");
        assert!(stdout.is_empty());
        assert_eq!(stderr.len(), 1, "{stderr:#?}");
        let line = &stderr[0];
        assert!(line.starts_with("fetchpar: --shard: "), "{line}");
        assert!(
            line.contains(&format!("SLURM_ARRAY_TASK_ID={id}")),
            "{line}"
        );
        assert!(line.contains("MAX = MIN + (COUNT - 1) x STEP"), "{line}");
        assert!(entries(dir.path()).is_empty());
    }
    assert!(server.requests().is_empty(), "no task downloaded anything");
}

#[test]
fn an_even_slurm_array_with_a_step_covers_every_url_once() {
    let server = serve(|req| Reply::file(body(500, req.path().len() as u8)));
    let root = tempfile::tempdir().unwrap();
    let urls: Vec<String> = (0..20).map(|n| server.url(&format!("/{n}.bin"))).collect();
    let mut saved = 0;
    // sbatch --array=0-6:2: ids 0 2 4 6.
    for id in ["0", "2", "4", "6"] {
        let out = root.path().join(id);
        let (code, stdout, stderr) = run(fetchpar()
            .env_remove("JOB_COMPLETION_INDEX")
            .env_remove("FETCHPAR_SHARD")
            .envs([
                ("SLURM_ARRAY_TASK_ID", id),
                ("SLURM_ARRAY_TASK_MIN", "0"),
                ("SLURM_ARRAY_TASK_MAX", "6"),
                ("SLURM_ARRAY_TASK_STEP", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ])
            .args(["--shard", "auto", "-q", "-o"])
            .arg(&out)
            .args(&urls));
        assert_eq!(code, 0, "{stderr:#?}");
        saved += stdout.len();
    }
    assert_eq!(saved, urls.len());
    assert_eq!(server.requests().len(), urls.len());
}

#[test]
fn a_fragment_does_not_make_another_download() {
    let server = ok_server();
    let sandbox = Sandbox::new();
    let url = server.url("/a.bin");
    let with_fragment = format!("{url}#section-2");
    let (code, stdout, stderr) = sandbox.run(&["--json", "-q", &with_fragment, &url]);
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(
        sandbox.files(),
        [("a.bin".to_string(), sha256(&body(3000, 7)))].into()
    );
    assert_eq!(server.requests().len(), 1);
    let recs: Vec<serde_json::Value> = stdout
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The records still show each URL as given (in completion order: find each by status).
    let of = |status: &str| {
        let rec = recs.iter().find(|r| r["status"] == status).unwrap();
        rec["url"].as_str().unwrap().to_string()
    };
    assert_eq!(of("saved"), with_fragment);
    assert_eq!(of("duplicate"), url);
}

/// Runs fetchpar with `-o DIR` where DIR is a read-only mount, in a user and mount namespace of
/// its own (CI runs as root, whom permission bits do not stop). `None` where no such namespace
/// can be made here, and the caller skips with a note.
fn run_into_read_only_dir(args: &[&str]) -> Option<Outcome> {
    let dir = tempfile::tempdir().unwrap();
    let can = std::process::Command::new("unshare")
        .args(["-rm", "sh", "-c", "mount -t tmpfs -o ro tmpfs \"$1\"", "sh"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !can {
        return None;
    }
    let script = "mount -t tmpfs -o ro tmpfs \"$1\" && shift && exec \"$@\"";
    let mut cmd = assert_cmd::Command::new("unshare");
    cmd.args(["-rm", "sh", "-c", script, "sh"])
        .arg(dir.path())
        .arg(env!("CARGO_BIN_EXE_fetchpar"))
        .env("NO_PROXY", "127.0.0.1")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .arg("-o")
        .arg(dir.path())
        .args(args);
    Some(run(&mut cmd))
}

#[test]
fn an_output_directory_that_cannot_be_written_fails_before_any_request() {
    let server = ok_server();
    let (a, b) = (server.url("/a.bin"), server.url("/b.bin"));
    let Some((code, stdout, stderr)) = run_into_read_only_dir(&[&a, &b]) else {
        eprintln!("note: skipped: no user and mount namespace (unshare -rm) can be made here");
        return;
    };
    assert_eq!(code, 2, "{stderr:#?}");
    assert!(stdout.is_empty());
    assert_eq!(stderr.len(), 1, "{stderr:#?}");
    assert!(
        stderr[0].starts_with("fetchpar: cannot write into the output directory ")
            && stderr[0].ends_with(": Read-only file system (os error 30)"),
        "{stderr:#?}"
    );
    assert_eq!(server.requests().len(), 0, "no request was made");
}
