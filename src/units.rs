//! Small value formatters shared by the workers' messages, the progress display and the
//! summary: they sit below all of them so that no part depends on the end-of-run report.

use std::time::Duration;

use indicatif::HumanBytes;

/// `4 ms`, `0.37 s`, `2.41 s`, `1 min 05 s`, `2 h 03 min`: seconds with two decimals in the
/// common range, as in the summary line.
pub(crate) fn format_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 0.1 {
        format!("{} ms", d.as_millis())
    } else if secs < 60.0 {
        format!("{secs:.2} s")
    } else if secs < 3600.0 {
        let whole = d.as_secs();
        format!("{} min {:02} s", whole / 60, whole % 60)
    } else {
        let whole = d.as_secs();
        format!("{} h {:02} min", whole / 3600, (whole % 3600) / 60)
    }
}

/// `12.40 MiB/s`, or `-` when there is no time to divide by.
pub(crate) fn format_rate(bytes_per_sec: Option<f64>) -> String {
    match bytes_per_sec {
        Some(r) => format!("{}/s", HumanBytes(r as u64)),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(ms(4)), "4 ms");
        assert_eq!(format_duration(ms(370)), "0.37 s");
        assert_eq!(format_duration(ms(2414)), "2.41 s");
        assert_eq!(format_duration(ms(65_000)), "1 min 05 s");
        assert_eq!(format_duration(ms(7_380_000)), "2 h 03 min");
    }
}
