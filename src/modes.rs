//! Value types that the flags choose and the reporting obeys: what stdout carries and how
//! progress shows on stderr. They live below both [`crate::cli`] and [`crate::report`], so that
//! neither reaches into the other.

/// What stdout carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Format {
    /// One path per line.
    #[default]
    Paths,
    /// Paths ended by NUL (`-0`), for `xargs -0`: any byte but NUL may be in a file name.
    Print0,
    /// JSON Lines (`--json`).
    Json,
}

/// How progress is shown, decided once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProgressMode {
    Bars,
    Lines,
    /// No progress lines, but errors and the summary.
    None,
    /// Errors only.
    Quiet,
}
