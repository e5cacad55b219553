//! An experiment, not part of the product: does reqwest's blocking client (every request and body
//! chunk handed to one background runtime thread) cost fetchpar much on many small files, against
//! the alternative that keeps reqwest and the std::thread pool but gives each worker its own
//! current-thread tokio runtime driving an async client?
//!
//! `handoff MODE JOBS LIST [ROUNDS]` with MODE `blocking` or `async`: JOBS threads take URLs from
//! LIST (one a line) and read each body to the end in 8 KiB reads (no files, so that only the
//! HTTP path is measured), ROUNDS times; prints wall and CPU time. `benches/run` does not call
//! it; README "Performance" quotes it.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

const CHUNK: usize = 8 * 1024;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.len() < 3 {
        eprintln!("usage: handoff blocking|async JOBS LIST [ROUNDS]");
        std::process::exit(2);
    }
    let jobs: usize = args[1].parse().expect("JOBS is a number");
    let list = std::fs::read_to_string(&args[2]).expect("LIST is readable");
    let urls: Vec<&str> = list.lines().filter(|l| !l.is_empty()).collect();
    let rounds: usize = args
        .get(3)
        .map_or(1, |r| r.parse().expect("ROUNDS is a number"));
    let began = Instant::now();
    let bytes = match args[0].as_str() {
        "blocking" => blocking(jobs, &urls, rounds),
        "async" => per_worker_runtime(jobs, &urls, rounds),
        other => panic!("unknown mode {other}"),
    };
    let wall = began.elapsed().as_secs_f64();
    let cpu = cpu_seconds();
    println!(
        "{} jobs={jobs} requests={} bytes={bytes} wall={wall:.3}s cpu={cpu:.3}s",
        args[0],
        urls.len() * rounds
    );
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn blocking(jobs: usize, urls: &[&str], rounds: usize) -> u64 {
    let client = reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(jobs)
        .build()
        .expect("client");
    let next = AtomicUsize::new(0);
    let total = urls.len() * rounds;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..jobs)
            .map(|_| {
                s.spawn(|| {
                    let mut buf = [0u8; CHUNK];
                    let mut bytes = 0u64;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            return bytes;
                        }
                        let mut r = client.get(urls[i % urls.len()]).send().expect("GET");
                        loop {
                            let n = r.read(&mut buf).expect("read");
                            if n == 0 {
                                break;
                            }
                            bytes += n as u64;
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker")).sum()
    })
}

fn per_worker_runtime(jobs: usize, urls: &[&str], rounds: usize) -> u64 {
    let next = AtomicUsize::new(0);
    let total = urls.len() * rounds;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..jobs)
            .map(|_| {
                s.spawn(|| {
                    // One runtime and one client per worker: a pooled connection's task lives on
                    // the runtime that made it, so clients cannot be shared between runtimes.
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    let client = reqwest::Client::builder()
                        .pool_max_idle_per_host(1)
                        .build()
                        .expect("client");
                    rt.block_on(async {
                        let mut bytes = 0u64;
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= total {
                                return bytes;
                            }
                            let mut r = client.get(urls[i % urls.len()]).send().await.expect("GET");
                            while let Some(chunk) = r.chunk().await.expect("chunk") {
                                bytes += chunk.len() as u64;
                            }
                        }
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker")).sum()
    })
}
