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

#[test]
fn a_run_slowed_by_its_own_concurrency_says_so_instead_of_a_speedup() {
    let (_server, urls) = serialising_server();
    let out = Sandbox::new();
    let (code, stdout, stderr) = run(fetchpar()
        .args(["-j", "3", "--json", "-o"])
        .arg(out.out())
        .args(&urls));
    assert_eq!(code, 0, "{stderr:#?}");
    let line = stderr
        .iter()
        .find(|l| l.starts_with("3 files: "))
        .unwrap_or_else(|| panic!("comparison line in {stderr:#?}"));
    assert!(line.contains("slowed by its own concurrency"), "{line}");
    assert!(
        line.contains("--compare") && line.contains("lower -j"),
        "{line}"
    );
    assert!(!line.contains("faster"), "{line}");
    let summary = summary_of(&stdout);
    assert_eq!(summary["sequential_kind"], "estimated");
    assert!(
        summary["sequential_ms"].as_u64().unwrap() < summary["wall_ms"].as_u64().unwrap(),
        "{summary}"
    );
    assert_eq!(summary["estimate"]["transfer_ms"], 0, "{summary}");
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

#[test]
fn fewer_files_than_workers_names_the_workers_used() {
    let (server, expected) = file_server(2, 100, 200, Duration::ZERO);
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
