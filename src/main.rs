//! The `fetchpar` binary: a thin user of the library API. Parse the flags, resolve them into a
//! configuration, take over Ctrl-C, run, and exit with the run's status.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use fetchpar::cli::{self, Cli};
use fetchpar::{ExitCode, Run};

fn main() -> std::process::ExitCode {
    // Before any thread or socket: a soft limit of 1024 would cap -j below what users ask for.
    fetchpar::raise_open_file_limit();
    // clap prints its own usage errors and exits 2 (0 for --help and --version).
    let flags = Cli::parse();
    cli::ignore_file_size_signal();
    if let Some(code) = flags.print_generated() {
        return code.into();
    }
    let config = match flags.into_config() {
        Ok(config) => config,
        Err(e) => return e.report().into(),
    };
    let cancel = Arc::new(AtomicBool::new(false));
    cli::interrupt_on_ctrl_c(&cancel);
    let run = Run::from_config(config).cancel_flag(cancel).print(true);
    let code: ExitCode = match run.execute() {
        Ok(finished) => finished.exit_code(),
        Err(e) => e.report(),
    };
    code.into()
}
