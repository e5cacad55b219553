//! `--generate`: shell completions (clap_complete) and the man page (clap_mangen), both drawn
//! from the same `Cli` definition as `--help`, so they can never disagree with it.

use std::io::{self, Write};

use clap::CommandFactory;
use clap_complete::aot::{generate, Shell};

use crate::cli::{Cli, Generate};

/// The text `--generate` prints.
pub(crate) fn render(what: Generate) -> io::Result<Vec<u8>> {
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
pub(crate) fn print(what: Generate) -> io::Result<()> {
    let text = render(what)?;
    let mut out = io::stdout().lock();
    match out.write_all(&text).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_names_are_safe_in_every_shell() {
        // clap_complete's zsh output pastes value names unescaped into ':NAME:action' specs
        // inside single quotes: a quote, colon or space there breaks the whole script.
        for arg in Cli::command().get_arguments() {
            for name in arg.get_value_names().unwrap_or_default() {
                assert!(
                    name.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "/_.-".contains(c)),
                    "{}: value name {name}",
                    arg.get_id()
                );
            }
        }
    }

    #[test]
    fn every_target_renders() {
        for what in [
            Generate::Bash,
            Generate::Zsh,
            Generate::Fish,
            Generate::Powershell,
            Generate::Elvish,
            Generate::Man,
        ] {
            let text = String::from_utf8(render(what).unwrap()).unwrap();
            assert!(text.contains("shard"), "{what:?}");
        }
    }
}
