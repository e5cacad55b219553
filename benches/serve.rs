//! The benchmark harness's helper binary (`benches/run` builds and drives it; it is not a
//! criterion-style benchmark, hence `harness = false`). Two jobs:
//!
//! - `serve gen DIR NAME=SIZE…` writes deterministic pseudo-random files for nginx to serve,
//!   streamed through one small buffer, so a 1 GiB file costs no 1 GiB of memory.
//! - `serve http FILES SIZE DELAY_MS DIR` runs fetchpar's own loopback server (the one behind
//!   `--demo` and the tests) with `FILES` generated files of `SIZE` bytes, each reply delayed by
//!   `DELAY_MS`, writes the same bodies into `DIR` (for the byte-for-byte check), prints the port
//!   on stdout and serves until stdin closes or the process is killed.
//!
//! It lives here rather than behind a hidden flag of `fetchpar` so that the product binary has no
//! benchmark-only modes; `cargo test` does not build it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use fetchpar::server::{generated_files, Server};

fn main() -> ExitCode {
    // `cargo bench` appends `--bench`; nothing here wants it.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let result = match args.first().map(String::as_str) {
        Some("gen") if args.len() >= 3 => gen(&args[1], &args[2..]),
        Some("http") if args.len() == 5 => http(&args[1..]),
        _ => Err("usage: serve gen DIR NAME=SIZE... | serve http FILES SIZE DELAY_MS DIR".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res = Result<(), String>;

fn gen(dir: &str, specs: &[String]) -> Res {
    std::fs::create_dir_all(dir).map_err(|e| format!("{dir}: {e}"))?;
    for (seed, spec) in specs.iter().enumerate() {
        let (name, size) = spec
            .split_once('=')
            .ok_or_else(|| format!("'{spec}' is not NAME=SIZE"))?;
        let size = parse_size(size)?;
        let path = Path::new(dir).join(name);
        write_file(&path, size, seed as u64).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// A byte count as `benches/run` writes them: `1024`, `64K`, `1M`, `1G` (binary units). Kept
/// here so the harness depends on the library only through `fetchpar::server`.
fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("'{text}' is not a size (try 4096, 512K, 10M or 2G)");
    let upper = text.trim().to_ascii_uppercase();
    let digits = upper.trim_end_matches("IB").trim_end_matches('B');
    let (number, scale) = match digits.char_indices().last() {
        Some((i, 'K')) => (&digits[..i], 1u64 << 10),
        Some((i, 'M')) => (&digits[..i], 1 << 20),
        Some((i, 'G')) => (&digits[..i], 1 << 30),
        _ => (digits, 1),
    };
    let value: u64 = number.trim().parse().map_err(|_| bad())?;
    value.checked_mul(scale).filter(|&n| n > 0).ok_or_else(bad)
}

/// xorshift64* seeded per file: incompressible, reproducible, fast.
fn write_file(path: &Path, size: u64, seed: u64) -> io::Result<()> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ seed.wrapping_mul(0xD1B5_4A32_D192_ED03);
    if state == 0 {
        state = 1;
    }
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut buf = [0u8; 64 * 1024];
    let mut left = size;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            word.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.flush()
}

fn http(args: &[String]) -> Res {
    let count: usize = args[0].parse().map_err(|_| "FILES is not a number")?;
    let size = parse_size(&args[1])?;
    let delay: u64 = args[2].parse().map_err(|_| "DELAY_MS is not a number")?;
    let dir = Path::new(&args[3]);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let size = usize::try_from(size).map_err(|_| "SIZE too large")?;
    let files = generated_files(count, size, size);
    for (path, body) in &files {
        let target = dir.join(path.trim_start_matches('/'));
        std::fs::write(&target, body).map_err(|e| format!("{}: {e}", target.display()))?;
    }
    let map: HashMap<String, Arc<[u8]>> = files.into_iter().collect();
    let server = Server::with_files(map, Duration::from_millis(delay))
        .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
    println!("{}", server.addr().port());
    io::stdout().flush().map_err(|e| e.to_string())?;
    // Serve until whoever started us closes our stdin (or kills us).
    let mut sink = [0u8; 64];
    while matches!(io::stdin().read(&mut sink), Ok(n) if n > 0) {}
    eprintln!("serve: {} connections accepted", server.connections());
    Ok(())
}
