//! The exit status, decided in one place from how a run ended.

/// How a run ended, as the process reports it: 0, 1, 2 or 130.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// Every URL saved (also when the reader of stdout went away after the last one).
    Ok,
    /// At least one URL failed, or was left undone because stdout closed or could not be
    /// written; the others are still saved.
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

    /// `Failed` where this would be `Ok` and something else failed (a report file not written).
    pub(crate) fn or_failed(self, failed: bool) -> ExitCode {
        match self {
            ExitCode::Ok if failed => ExitCode::Failed,
            code => code,
        }
    }

    /// The one rule, in order: a stdout that failed (not merely closed) is a failure, then an
    /// interrupt, then any URL failed or left undone. A closed stdout stops the run quietly but
    /// proves nothing about the URLs it stopped: the status is theirs (0 only if all were saved
    /// before the reader left), never 130, since nobody interrupted.
    pub(crate) fn of(end: &End) -> ExitCode {
        if end.stdout_failed {
            ExitCode::Failed
        } else if end.interrupted {
            ExitCode::Interrupted
        } else if end.failed > 0 || end.cut_short {
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
    /// The reader of stdout went away: the run stopped quietly (no summary).
    pub(crate) stdout_closed: bool,
    pub(crate) stdout_failed: bool,
    pub(crate) interrupted: bool,
    /// Failed downloads (those a stop cut off among them) and invalid inputs.
    pub(crate) failed: usize,
    /// The run stopped before every URL of its input was started: some were never read, or
    /// read and never started.
    pub(crate) cut_short: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(closed: bool, failed_out: bool, interrupted: bool, failed: usize) -> End {
        End {
            stdout_closed: closed,
            stdout_failed: failed_out,
            interrupted,
            failed,
            cut_short: false,
        }
    }

    #[test]
    fn one_rule_orders_the_ways_a_run_ends() {
        let of = |closed, failed_out, interrupted, failed| {
            ExitCode::of(&end(closed, failed_out, interrupted, failed))
        };
        assert_eq!(of(false, false, false, 0), ExitCode::Ok);
        assert_eq!(of(false, false, false, 2), ExitCode::Failed);
        assert_eq!(of(false, false, true, 2), ExitCode::Interrupted);
        assert_eq!(of(false, true, false, 0), ExitCode::Failed);
        assert_eq!(of(false, true, true, 3), ExitCode::Failed);
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

    #[test]
    fn a_closed_stdout_exits_0_only_when_every_url_was_saved() {
        // The pipe closed after the last URL was saved.
        assert_eq!(ExitCode::of(&end(true, false, false, 0)), ExitCode::Ok);
        // It stopped downloads under way (they count as failed) ...
        assert_eq!(ExitCode::of(&end(true, false, false, 3)), ExitCode::Failed);
        // ... or left URLs unread or not started: 1, and never 130.
        let cut = End {
            cut_short: true,
            ..end(true, false, false, 0)
        };
        assert_eq!(ExitCode::of(&cut), ExitCode::Failed);
    }
}
