//! The exit status, decided in one place from how a run ended.

/// How a run ended, as the process reports it: 0, 1, 2 or 130.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// Every URL saved (or the reader of stdout went away: it had what it wanted).
    Ok,
    /// At least one URL failed, or stdout could not be written; the others are still saved.
    Failed,
    /// A usage or input error before any download.
    Usage,
    /// Interrupted (Ctrl-C, or the embedding program's cancel flag).
    Interrupted,
}

impl ExitCode {
    /// The number the process exits with.
    pub fn code(self) -> i32 {
        match self {
            ExitCode::Ok => 0,
            ExitCode::Failed => 1,
            ExitCode::Usage => 2,
            ExitCode::Interrupted => 130,
        }
    }

    /// The one rule, in order: a closed stdout is a quiet success, a stdout that failed
    /// otherwise is a failure, then an interrupt, then any failed URL.
    pub(crate) fn of(end: &End) -> ExitCode {
        if end.stdout_closed {
            ExitCode::Ok
        } else if end.stdout_failed {
            ExitCode::Failed
        } else if end.interrupted {
            ExitCode::Interrupted
        } else if end.failed > 0 {
            ExitCode::Failed
        } else {
            ExitCode::Ok
        }
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> std::process::ExitCode {
        // Every code is below 256.
        std::process::ExitCode::from(code.code() as u8)
    }
}

/// What the exit status depends on.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct End {
    pub(crate) stdout_closed: bool,
    pub(crate) stdout_failed: bool,
    pub(crate) interrupted: bool,
    /// Failed downloads and invalid inputs.
    pub(crate) failed: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_orders_the_ways_a_run_ends() {
        let end = |closed, failed_out, interrupted, failed| {
            ExitCode::of(&End {
                stdout_closed: closed,
                stdout_failed: failed_out,
                interrupted,
                failed,
            })
        };
        assert_eq!(end(false, false, false, 0), ExitCode::Ok);
        assert_eq!(end(false, false, false, 2), ExitCode::Failed);
        assert_eq!(end(false, false, true, 2), ExitCode::Interrupted);
        assert_eq!(end(false, true, false, 0), ExitCode::Failed);
        assert_eq!(end(true, true, true, 3), ExitCode::Ok);
        let codes: Vec<i32> = [
            ExitCode::Ok,
            ExitCode::Failed,
            ExitCode::Usage,
            ExitCode::Interrupted,
        ]
        .map(ExitCode::code)
        .into();
        assert_eq!(codes, [0, 1, 2, 130]);
    }
}
