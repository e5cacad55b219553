//! `--generate`: shell completions (clap_complete) and the man page (clap_mangen), both drawn
//! from the same `Cli` definition as `--help`, so they can never disagree with it.

use std::io::{self, Write};

use clap::CommandFactory;
use clap_complete::aot::{generate, Shell};

use crate::cli::{Cli, Generate};

/// The text `--generate` prints.
pub fn render(what: Generate) -> io::Result<Vec<u8>> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    let shell = match what {
        Generate::Bash => Shell::Bash,
        Generate::Zsh => Shell::Zsh,
        Generate::Fish => Shell::Fish,
        Generate::Powershell => Shell::PowerShell,
        Generate::Elvish => Shell::Elvish,
        Generate::Man => {
            clap_mangen::Man::new(cmd).render(&mut out)?;
            return Ok(out);
        }
    };
    // Into memory first: the generators panic on a write error, and stdout may be a closed pipe.
    generate(shell, &mut cmd, "fetchpar", &mut out);
    Ok(out)
}

/// Prints it; a closed stdout is not an error worth a message.
pub fn print(what: Generate) -> io::Result<()> {
    let text = render(what)?;
    let mut out = io::stdout().lock();
    match out.write_all(&text).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
