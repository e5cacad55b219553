//! The timing summary tells no more than the run can back: the default run's estimate, the
//! `--compare` headline against its own table, and the JSON figures behind them.
//!
//! No timing is asserted: the fixture is a server that answers one request at a time and keeps
//! each turn for a while after its reply, so N requests take at least (N - 1) turns whatever the
//! concurrency, while the estimate charges each download only the quickest wait seen.

use std::time::Duration;

use crate::util::*;

/// A turn long enough that the first, uncontended reply always comes back well within it.
const HOLD: Duration = Duration::from_millis(1000);

/// Three empty files from a server that answers one at a time: no bytes, so the estimate is
/// three times the quickest wait, which is below one turn, while the run takes two turns.
fn serialising_server() -> (Server, Vec<String>) {
    let server = Server::start_one_at_a_time(|_| Reply::file(Vec::new()), HOLD).unwrap();
    let urls = (0..3).map(|i| server.url(&format!("/empty-{i}"))).collect();
    (server, urls)
}

fn summary_of(stdout: &[String]) -> serde_json::Value {
    let last = stdout.last().expect("a summary record");
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["type"], "summary", "{last}");
    v
}

/// Three files take two turns one after another as at `-j 3`; the estimate, three quickest
/// waits, is far below the wall. A lower bound there shows no speedup, and no slowdown either
/// (one after another may take as long, as here): the line claims neither (it used to say
/// "slowed by its own concurrency") and points to the measure.
#[test]
fn an_estimate_below_the_wall_claims_neither_a_speedup_nor_a_slowdown() {
    let (_server, urls) = serialising_server();
    let (line, stdout) = json_run(&["-j", "3"], &urls);
    assert!(
        line.ends_with("(no faster that can be shown: measure with --compare)"),
        "{line}"
    );
    assert!(!line.contains("slowed"), "{line}");
    let summary = summary_of(&stdout);
    assert_eq!(summary["sequential_kind"], "estimated");
    assert!(
        summary["sequential_ms"].as_u64().unwrap() < summary["wall_ms"].as_u64().unwrap(),
        "{summary}"
    );
    assert_eq!(summary["estimate"]["transfer_ms"], 0, "{summary}");
    assert_eq!(summary["verdict"], "no_faster", "{summary}");
    // Each record carries its phases, so a script can draw its own picture.
    let records: Vec<serde_json::Value> = stdout[..stdout.len() - 1]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3);
    for r in &records {
        assert_eq!(r["status"], "saved", "{r}");
        for phase in ["queued_ms", "first_byte_ms", "receive_ms", "commit_ms"] {
            assert!(
                r[phase].as_f64().is_some_and(|ms| ms >= 0.0),
                "{phase}: {r}"
            );
        }
        assert!(r.as_object().unwrap().contains_key("connect_ms"), "{r}");
    }
}

/// `fetchpar --json ARGS URLS`, which must save them all: its comparison line and its stdout.
fn json_run(args: &[&str], urls: &[String]) -> (String, Vec<String>) {
    let out = Sandbox::new();
    let (code, stdout, stderr) = run(fetchpar()
        .arg("--json")
        .args(args)
        .arg("-o")
        .arg(out.out())
        .args(urls));
    assert_eq!(code, 0, "{stderr:#?}");
    let head = format!("{} files: ", urls.len());
    let line = stderr
        .iter()
        .find(|l| l.starts_with(&head))
        .unwrap_or_else(|| panic!("comparison line in {stderr:#?}"))
        .clone();
    (line, stdout)
}

/// The comparison line of a run of three files, and its JSON summary.
fn three_files(args: &[&str], urls: &[String]) -> (String, serde_json::Value) {
    let mut all = vec!["-j", "3"];
    all.extend(args);
    let (line, stdout) = json_run(&all, urls);
    assert!(
        !line.contains("slowed") && !line.contains("faster"),
        "{line}"
    );
    (line, summary_of(&stdout))
}

#[test]
fn waits_before_retries_are_not_called_a_slowdown() {
    // Every file is refused once, with a Retry-After or without (our backoff, at least half a
    // second): the run is mostly waiting, as a run one after another would be too. The
    // Retry-After comes from a host of its own: it pauses its whole host, which would hold
    // the others back until it is over (nothing at once to compare).
    let refused_once = || {
        let seen = std::sync::Mutex::new(std::collections::HashSet::new());
        serve(move |req| {
            let first = seen.lock().unwrap().insert(req.path().to_string());
            match (first, req.path()) {
                (true, "/after") => Reply::status(503).with_header("Retry-After", "1"),
                (true, _) => Reply::status(500),
                (false, _) => Reply::file(Vec::new()),
            }
        })
    };
    let (pausing, other) = (refused_once(), refused_once());
    let urls = vec![
        pausing.url("/after"),
        other.url("/backoff-1"),
        other.url("/backoff-2"),
    ];
    let (line, summary) = three_files(&[], &urls);
    assert!(
        line.contains("of it waiting to retry (Retry-After or backoff)"),
        "{line}"
    );
    assert_eq!(summary["verdict"], "waited", "{summary}");
    assert!(summary["paused_ms"].as_u64().unwrap() >= 1000, "{summary}");
}

#[test]
fn a_per_host_cap_is_named_instead_of_a_slowdown() {
    let (_server, urls) = serialising_server();
    let (line, summary) = three_files(&["--per-host", "1"], &urls);
    assert!(
        line.contains("with 1 worker, the most at once of the 3 asked for, as --per-host 1 allows: one after another already"),
        "{line}"
    );
    assert_eq!(summary["verdict"], "one_worker", "{summary}");
}

#[test]
fn a_rate_limit_is_named_instead_of_a_slowdown() {
    // 48 KiB at 16 KiB/s: two seconds or so, whatever the workers, while the small bodies
    // cost the estimate little: they are charged at the run's best rate, which the limit's
    // opening burst (16 KiB at least, src/ratelimit.rs) sets well above the limit.
    let server = serve(|req| Reply::file(body(16 * 1024, req.path().len() as u8)));
    let urls: Vec<String> = (0..3).map(|i| server.url(&format!("/r-{i}"))).collect();
    let (line, summary) = three_files(&["--limit-rate", "16K"], &urls);
    assert!(
        line.contains("limited by --limit-rate 16.00 KiB/s, a cap you set"),
        "{line}"
    );
    assert_eq!(summary["verdict"], "limited", "{summary}");
}

#[test]
fn fewer_files_than_workers_names_the_workers_used() {
    // Slow enough that the two overlap even on a busy machine: the line names the most that
    // ran at once, which two instant replies may never reach.
    let (server, expected) = file_server(2, 100, 200, Duration::from_millis(300));
    let out = Sandbox::new();
    let (code, _, stderr) = run(fetchpar()
        .args(["-j", "8", "-o"])
        .arg(out.out())
        .args(urls_of(&server, &expected)));
    assert_eq!(code, 0, "{stderr:#?}");
    let line = stderr
        .iter()
        .find(|l| l.starts_with("2 files: "))
        .unwrap_or_else(|| panic!("comparison line in {stderr:#?}"));
    assert!(
        line.contains(" with 2 workers, fewer files than the 8 workers asked for"),
        "{line}"
    );
    assert!(!line.contains("8 workers ("), "{line}");
}

/// The speedup in a headline or a table row: the first `N.Nx` in it.
fn speedup_in(line: &str) -> String {
    line.split([' ', '(', ':'])
        .find(|w| w.ends_with('x') && w[..w.len() - 1].parse::<f64>().is_ok())
        .unwrap_or_else(|| panic!("no speedup in {line}"))
        .to_string()
}

#[test]
fn the_compare_headline_agrees_with_its_table() {
    let server =
        Server::start_one_at_a_time(|_| Reply::file(Vec::new()), Duration::from_millis(200))
            .unwrap();
    let urls: Vec<String> = (0..3).map(|i| server.url(&format!("/e-{i}"))).collect();
    let out = Sandbox::new();
    let (code, stdout, stderr) = run(fetchpar()
        .args(["--compare", "-j", "3", "--json", "-o"])
        .arg(out.out())
        .args(&urls));
    assert_eq!(code, 0, "{stderr:#?}");
    let headline = stderr
        .iter()
        .find(|l| l.starts_with("3 files: "))
        .unwrap_or_else(|| panic!("headline in {stderr:#?}"));
    assert!(!headline.contains("estimated"), "{headline}");
    let header = stderr
        .iter()
        .position(|l| l.contains("workers") && l.contains("speedup"))
        .unwrap_or_else(|| panic!("table in {stderr:#?}"));
    let row = &stderr[header + 2];
    assert!(row.starts_with("threaded "), "{stderr:#?}");
    assert_eq!(speedup_in(headline), speedup_in(row), "{stderr:#?}");
    let summary = summary_of(&stdout);
    assert_eq!(summary["sequential_kind"], "measured");
    assert_eq!(summary["estimate"], serde_json::Value::Null);
    assert_eq!(
        summary["sequential_ms"], summary["compare"]["sequential_wall_ms"],
        "{summary}"
    );
}

#[test]
fn a_sweep_runs_one_pass_per_count_and_keeps_only_the_last_passs_files() {
    let (server, expected) = file_server(4, 1000, 3000, Duration::from_millis(20));
    let out = Sandbox::new();
    let (code, stdout, stderr) = run(fetchpar()
        // In any order: the passes run from the fewest workers up.
        .args(["--compare=3,1,2", "--json", "-o"])
        .arg(out.out())
        .args(urls_of(&server, &expected)));
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(checksums(&out.out()), expected);
    let records: Vec<serde_json::Value> = stdout
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of_type = |t: &str| {
        records
            .iter()
            .filter(|r| r["type"] == t)
            .collect::<Vec<_>>()
    };
    assert_eq!(of_type("url").len(), 4, "records of the last pass only");
    let passes = of_type("pass");
    let jobs: Vec<u64> = passes.iter().map(|p| p["jobs"].as_u64().unwrap()).collect();
    assert_eq!(jobs, [1, 2, 3]);
    assert!(passes.iter().all(|p| p["saved"] == 4 && p["failed"] == 0));
    assert_eq!(passes[0]["speedup"], 1.0);
    let summary = summary_of(&stdout);
    assert_eq!(summary["sequential_kind"], "measured");
    assert_eq!(summary["jobs"], 3);
    // The table: a header, one row per count, and where more workers stopped paying.
    let header = stderr
        .iter()
        .position(|l| l.contains("workers") && l.contains("speedup"))
        .unwrap_or_else(|| panic!("table in {stderr:#?}"));
    for (row, count) in stderr[header + 1..header + 4].iter().zip(["1", "2", "3"]) {
        assert_eq!(row.split_whitespace().next(), Some(count), "{stderr:#?}");
    }
    assert!(
        stderr[header + 4].starts_with("more workers "),
        "{stderr:#?}"
    );
    // Each pass's progress lines name it, in good English.
    assert!(
        stderr.iter().any(|l| l.starts_with("1 worker: [")),
        "{stderr:#?}"
    );
    assert!(
        stderr.iter().any(|l| l.starts_with("2 workers: [")),
        "{stderr:#?}"
    );
}

#[test]
fn compare_takes_a_list_only_with_equals_and_never_with_j() {
    let (server, expected) = file_server(1, 100, 100, Duration::ZERO);
    let urls = urls_of(&server, &expected);
    let out = Sandbox::new();
    // `--compare URL` keeps its meaning: the URL is an input, not a list of counts.
    let (code, _, stderr) = run(fetchpar()
        .args(["-o"])
        .arg(out.out())
        .arg("--compare")
        .args(&urls));
    assert_eq!(code, 0, "{stderr:#?}");
    assert_eq!(checksums(&out.out()), expected);
    for args in [
        &["--compare=1,4", "-j", "4"][..],
        &["--compare=4"],
        &["--compare=1,x"],
        &["--compare=4,1,4"],
    ] {
        let empty = Sandbox::new();
        let (code, stdout, stderr) =
            run(fetchpar().args(args).arg("-o").arg(empty.out()).args(&urls));
        assert_eq!(code, 2, "{args:?}: {stderr:#?}");
        assert!(stdout.is_empty(), "{args:?}");
        assert!(
            stderr.iter().any(|l| l.contains("compare")),
            "{args:?}: {stderr:#?}"
        );
        assert!(
            !empty.out().exists() || entries(&empty.out()).is_empty(),
            "{args:?}"
        );
    }
    let (code, _, stderr) = run(fetchpar().arg("--compare=4,1,4").args(&urls));
    assert_eq!(code, 2);
    let said: Vec<_> = stderr.iter().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        said[0].contains("the worker count 4 is given twice"),
        "{stderr:#?}"
    );
}

/// The `--json` records of a run, the summary left out.
fn records_of(stdout: &[String]) -> Vec<serde_json::Value> {
    stdout
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] != "summary")
        .collect()
}

#[test]
fn connect_ms_is_measured_on_a_new_connection_and_null_on_a_reused_one() {
    let server = serve(|_| Reply::file(body(5000, 3)));
    let urls: Vec<String> = (0..3).map(|i| server.url(&format!("/f{i}"))).collect();
    let out = Sandbox::new();
    let (code, stdout, stderr) = run(fetchpar()
        .args(["-j", "1", "--json", "-o"])
        .arg(out.out())
        .args(&urls));
    assert_eq!(code, 0, "{stderr:#?}");
    // One worker, one keep-alive connection: only the first download waited for it.
    assert_eq!(server.connections(), 1);
    let records = records_of(&stdout);
    assert_eq!(records.len(), 3, "{stdout:#?}");
    let connect: Vec<Option<f64>> = records.iter().map(|r| r["connect_ms"].as_f64()).collect();
    assert!(connect[0].is_some_and(|ms| ms >= 0.0), "{records:#?}");
    assert_eq!(connect[1..], [None, None], "{records:#?}");
    for r in &records[1..] {
        assert!(r["connect_ms"].is_null(), "{r}");
    }
}

/// Small bodies that a server trickles out, each connection at its own pace: the estimate must
/// not charge them nothing (it did, and a run three times faster than `-j 1` showed an estimate
/// a fraction of its wall); charged at the rate all of them reached together, they count.
#[test]
fn small_bodies_trickled_out_are_charged_their_time() {
    let server = serve(|_| {
        Reply::file(body(40 * 1024, 7)).with_fault(Fault::Drip(4096, Duration::from_millis(50)))
    });
    let urls: Vec<String> = (0..3).map(|i| server.url(&format!("/t-{i}"))).collect();
    let out = Sandbox::new();
    let (code, stdout, stderr) = run(fetchpar()
        .args(["-j", "3", "--json", "-o"])
        .arg(out.out())
        .args(&urls));
    assert_eq!(code, 0, "{stderr:#?}");
    let summary = summary_of(&stdout);
    assert!(
        summary["sequential_ms"].as_u64().unwrap() * 2 > summary["wall_ms"].as_u64().unwrap(),
        "the bodies' time is in the estimate: {summary}"
    );
}

/// One URL answered at once and seven after 400 ms each, however many run: `-j 8` takes one
/// round where one after another takes seven, yet the estimate (every download charged the
/// quickest wait) is a fraction of the wall. It used to call this run "slowed by its own
/// concurrency" and advise a lower `-j`; a lower bound can show a speedup, never a slowdown.
#[test]
fn one_quick_answer_among_slow_ones_is_not_called_a_slowdown() {
    let data = body(100, 2);
    let server = {
        let data = data.clone();
        serve(move |req| match req.path() {
            "/f0" => Reply::file(data.clone()),
            _ => Reply::file(data.clone()).with_delay(Duration::from_millis(400)),
        })
    };
    let urls: Vec<String> = (0..8).map(|i| server.url(&format!("/f{i}"))).collect();
    let (line, stdout) = json_run(&["-j", "8"], &urls);
    assert!(
        !line.contains("slowed") && !line.contains("lower -j"),
        "{line}"
    );
    let summary = summary_of(&stdout);
    assert_ne!(summary["verdict"], "slowed", "{summary}");
    assert!(
        summary["sequential_ms"].as_u64().unwrap() * 3 < summary["wall_ms"].as_u64().unwrap(),
        "the estimate is far below the wall, as it was when the run was called slowed: {summary}"
    );
}
