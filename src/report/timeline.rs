//! `--timeline FILE.html`: the run as a picture, in one self-contained HTML file (inline SVG and
//! CSS, no script, nothing fetched), so it opens from disk anywhere and prints.
//!
//! Per pass (`--compare` has several, drawn on one time scale so the sequential staircase and the
//! threaded block stand side by side): downloads in flight and throughput over time, then a
//! waterfall with one row per download, each bar split into its phases. Beyond [`MAX_ROWS`]
//! downloads a pass is drawn as aggregate rows of consecutive downloads (by start), so a run of
//! 100 000 stays a file a browser opens in a second or two; the page says so.
//!
//! Colours are the Okabe–Ito palette (told apart with the common colour-vision deficiencies),
//! on a background that follows the reader's light or dark preference, and white on paper.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::HumanBytes;

use crate::trace::{Exchange, Phases, Row, Trace};
use crate::units::format_duration;

/// Rows drawn one per download; beyond this, aggregate rows.
pub(crate) const MAX_ROWS: usize = 2000;

const LABEL_W: f64 = 260.0;
const CHART_W: f64 = 900.0;
const ROW_H: f64 = 14.0;
const BAR_H: f64 = 10.0;
const FLIGHT_H: f64 = 90.0;
/// Samples across the in-flight and throughput chart.
const SAMPLES: usize = 200;

/// The phases drawn, in order, with their CSS class and legend text.
const PHASES: [(&str, &str); 5] = [
    (
        "q",
        "queued (waiting for a worker, or the worker setting up)",
    ),
    ("c", "connecting (TCP + TLS)"),
    ("w", "waiting for the first byte"),
    ("r", "receiving"),
    ("k", "committing (rename)"),
];

/// What the page says above the pictures.
pub(crate) struct Heading {
    /// The summary as printed on stderr.
    pub(crate) summary: String,
    /// How the one-after-another figure was made.
    pub(crate) basis: String,
}

/// The whole page.
pub(crate) fn render(passes: &[&Trace], heading: &Heading) -> String {
    let scale = passes.iter().map(|t| span(t)).max().unwrap_or_default();
    let mut out = String::with_capacity(64 * 1024);
    out.push_str(HEAD);
    let _ = write!(
        out,
        "<h1>fetchpar timeline</h1>\n<pre class=\"summary\">{}</pre>\n<p class=\"basis\">{}</p>\n",
        escape(heading.summary.trim_end()),
        escape(&heading.basis)
    );
    out.push_str(&legend());
    for (i, t) in passes.iter().enumerate() {
        pass(&mut out, i, t, scale);
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// From the pass's start to its last download's end.
fn span(t: &Trace) -> Duration {
    t.rows
        .iter()
        .filter_map(|r| Phases::offset(t.start, r.phases.ended))
        .max()
        .unwrap_or_default()
        .max(Duration::from_millis(1))
}

fn legend() -> String {
    let mut out = String::from("<ul class=\"legend\">");
    for (class, text) in PHASES {
        let _ = write!(out, "<li><span class=\"sw {class}\"></span>{text}</li>");
    }
    out.push_str(
        "<li><span class=\"sw fail\"></span>failed</li>\
         <li><span class=\"sw retry\"></span>earlier attempt (failed, then retried)</li>\
         <li><span class=\"sw ex\"></span>--split piece</li></ul>\n",
    );
    out
}

fn pass(out: &mut String, i: usize, t: &Trace, scale: Duration) {
    let workers = if t.jobs == 1 {
        "1 worker".to_string()
    } else {
        format!("{} workers", t.jobs)
    };
    let _ = write!(
        out,
        "<section class=\"pass\">\n<h2>Pass {}: {} downloads with {workers}, {}</h2>\n",
        i + 1,
        t.rows.len(),
        format_duration(span(t))
    );
    let mut rows: Vec<&Row> = t.rows.iter().collect();
    rows.sort_by_key(|r| r.phases.queued.or(r.phases.began));
    let per = rows.len().div_ceil(MAX_ROWS).max(1);
    if per > 1 {
        let _ = writeln!(
            out,
            "<p class=\"note\">{} downloads: each row below aggregates {per} consecutive \
             downloads (by start), from the first one's start to the last one's end, its phases \
             in their average proportions.</p>",
            rows.len()
        );
    }
    flight(out, t, &rows, scale);
    waterfall(out, t, &rows, per, scale);
    out.push_str("</section>\n");
}

fn x_of(at: Duration, scale: Duration) -> f64 {
    LABEL_W + at.as_secs_f64() / scale.as_secs_f64() * CHART_W
}

/// The time axis: a tick line and label at round intervals.
fn axis(out: &mut String, scale: Duration, height: f64) {
    let secs = scale.as_secs_f64();
    let raw = secs / 8.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(magnitude * 10.0);
    let mut at = 0.0;
    while at <= secs + 1e-9 {
        let x = x_of(Duration::from_secs_f64(at), scale);
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"0\" x2=\"{x:.1}\" y2=\"{height:.1}\"/>\
             <text class=\"tick\" x=\"{x:.1}\" y=\"{:.1}\">{}</text>",
            height + 12.0,
            tick_label(at, step)
        );
        at += step;
    }
}

/// One unit for the whole axis: `250 ms`, `1.5 s`, `40 s`.
fn tick_label(secs: f64, step: f64) -> String {
    if step < 0.1 {
        format!("{:.0} ms", secs * 1e3)
    } else if step < 1.0 {
        format!("{secs:.1} s")
    } else {
        format!("{secs:.0} s")
    }
}

/// Downloads in flight (a worker busy with them) and throughput, over time.
fn flight(out: &mut String, t: &Trace, rows: &[&Row], scale: Duration) {
    let dt = scale.as_secs_f64() / SAMPLES as f64;
    // Time-weighted: a sample's height is the average number of downloads in flight over it.
    let mut busy = vec![0f64; SAMPLES];
    let mut bytes = vec![0f64; SAMPLES];
    let off = |at: Option<Instant>| Phases::offset(t.start, at).map(|d| d.as_secs_f64());
    for r in rows {
        let (Some(a), Some(b)) = (off(r.phases.began), off(r.phases.ended)) else {
            continue;
        };
        let bucket = |s: f64| ((s / dt) as usize).min(SAMPLES - 1);
        for (i, n) in busy
            .iter_mut()
            .enumerate()
            .take(bucket(b) + 1)
            .skip(bucket(a))
        {
            let lo = (i as f64 * dt).max(a);
            let hi = ((i + 1) as f64 * dt).min(b);
            *n += (hi - lo).max(0.0) / dt;
        }
        if let (Some(h), Some(e)) = (off(r.phases.headers), off(r.phases.body_end)) {
            let (first, last) = (bucket(h), bucket(e));
            let share = r.bytes as f64 / (last - first + 1) as f64;
            for b in &mut bytes[first..=last] {
                *b += share;
            }
        }
    }
    let most = t.jobs.max(1);
    let fastest = bytes.iter().copied().fold(0.0, f64::max).max(1.0);
    let h = FLIGHT_H;
    let _ = write!(
        out,
        "<svg class=\"flight\" role=\"img\" aria-label=\"downloads in flight and throughput\" \
         width=\"{w:.0}\" height=\"{:.0}\" viewBox=\"0 0 {w:.0} {:.0}\">",
        h + 18.0,
        h + 18.0,
        w = LABEL_W + CHART_W + 10.0
    );
    axis(out, scale, h);
    let mut area = format!("M{LABEL_W:.1},{h:.1}");
    let mut line = String::new();
    for i in 0..SAMPLES {
        let x0 = LABEL_W + i as f64 * CHART_W / SAMPLES as f64;
        let x1 = x0 + CHART_W / SAMPLES as f64;
        let y = h - (busy[i] / most as f64).min(1.0) * (h - 4.0);
        let _ = write!(area, " L{x0:.1},{y:.1} L{x1:.1},{y:.1}");
        let ty = h - bytes[i] / fastest * (h - 4.0);
        let _ = write!(
            line,
            "{}{:.1},{ty:.1}",
            if i == 0 { "M" } else { " L" },
            (x0 + x1) / 2.0
        );
    }
    let _ = write!(area, " L{:.1},{h:.1} Z", LABEL_W + CHART_W);
    let _ = writeln!(
        out,
        "<path class=\"busy\" d=\"{area}\"/><path class=\"rate\" d=\"{line}\"/>\
         <text class=\"lab\" x=\"4\" y=\"14\">in flight (area): 0 to {most}</text>\
         <text class=\"lab rate-lab\" x=\"4\" y=\"30\">throughput (line): up to {}/s</text></svg>",
        HumanBytes((fastest / dt) as u64)
    );
}

/// One bar (or aggregate bar) per row.
fn waterfall(out: &mut String, t: &Trace, rows: &[&Row], per: usize, scale: Duration) {
    let n = rows.len().div_ceil(per);
    let height = n as f64 * ROW_H + 4.0;
    let _ = write!(
        out,
        "<svg class=\"waterfall\" role=\"img\" aria-label=\"one row per download\" \
         width=\"{w:.0}\" height=\"{:.0}\" viewBox=\"0 0 {w:.0} {:.0}\">",
        height + 18.0,
        height + 18.0,
        w = LABEL_W + CHART_W + 10.0
    );
    axis(out, scale, height);
    for (i, group) in rows.chunks(per).enumerate() {
        let y = 2.0 + i as f64 * ROW_H;
        if let [one] = group {
            row(out, t, one, y, scale);
        } else {
            aggregate(out, t, group, i * per, y, scale);
        }
    }
    out.push_str("</svg>\n");
}

/// The phase boundaries of a download as offsets: queued, began, sent, (connect end), headers,
/// body end, ended. Missing ones collapse onto the previous.
fn marks(t: &Trace, p: &Phases) -> [Duration; 6] {
    let off = |at| Phases::offset(t.start, at);
    let q = off(p.queued.or(p.began)).unwrap_or_default();
    let b = off(p.began).unwrap_or(q);
    let s = off(p.sent).unwrap_or(b).max(b);
    let c = (s + p.connect.unwrap_or_default()).max(s);
    let h = off(p.headers).unwrap_or(s).max(c);
    let e = off(p.body_end).unwrap_or(h).max(h);
    let k = off(p.ended).unwrap_or(e).max(e);
    // queued→began, began→sent is the worker's own set-up: drawn with the queue.
    [q, s, c, h, e, k]
}

/// The phases of `m` as bars; the queue ends at `queue_end` when an earlier attempt took the
/// time after it.
fn segments(out: &mut String, m: &[Duration; 6], y: f64, scale: Duration, queue_end: Duration) {
    for (i, (class, _)) in PHASES.iter().enumerate() {
        let to = if i == 0 {
            m[1].min(queue_end)
        } else {
            m[i + 1]
        };
        let (a, b) = (x_of(m[i], scale), x_of(to, scale));
        if b - a > 0.05 {
            let _ = write!(
                out,
                "<rect class=\"{class}\" x=\"{a:.2}\" y=\"{y:.1}\" width=\"{:.2}\" height=\"{BAR_H}\"/>",
                b - a
            );
        }
    }
}

fn row(out: &mut String, t: &Trace, r: &Row, y: f64, scale: Duration) {
    let m = marks(t, &r.phases);
    let name = r.url.rsplit('/').find(|s| !s.is_empty()).unwrap_or(&r.url);
    let status = r
        .status
        .map_or("no response".to_string(), |s| format!("HTTP {s}"));
    let mut tip = format!(
        "{}\n{} · {status} · {}",
        r.url,
        HumanBytes(r.bytes),
        format_duration(m[5].saturating_sub(m[0]))
    );
    for ((_, text), w) in PHASES.iter().zip(m.windows(2)) {
        let _ = write!(
            tip,
            "\n{text}: {}",
            format_duration(w[1].saturating_sub(w[0]))
        );
    }
    if r.retries > 0 {
        let _ = write!(tip, "\nretries: {}", r.retries);
    }
    if let Some(f) = &r.failure {
        let _ = write!(tip, "\nfailed: {f}");
    }
    let class = if r.failure.is_some() {
        "row failed"
    } else {
        "row"
    };
    let _ = write!(
        out,
        "<g class=\"{class}\"><title>{}</title><text class=\"name\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
        escape(&tip),
        LABEL_W - 6.0,
        y + BAR_H - 1.0,
        escape(&shorten(name, 38))
    );
    pieces(out, t, r, y, scale);
    let queue_end = earlier_attempts(out, t, r, y, scale).unwrap_or(m[1]);
    out.push_str("<g class=\"attempt\">");
    segments(out, &m, y, scale, queue_end);
    out.push_str("</g>");
    let end = x_of(m[5], scale);
    let size = match &r.failure {
        Some(_) => format!("✗ failed · {}", HumanBytes(r.bytes)),
        None => HumanBytes(r.bytes).to_string(),
    };
    let _ = write!(
        out,
        "<text class=\"size\" x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
        end + 4.0,
        y + BAR_H - 1.0,
        escape(&size)
    );
}

fn aggregate(out: &mut String, t: &Trace, group: &[&Row], first: usize, y: f64, scale: Duration) {
    let all: Vec<[Duration; 6]> = group.iter().map(|r| marks(t, &r.phases)).collect();
    let start = all.iter().map(|m| m[0]).min().unwrap_or_default();
    let end = all.iter().map(|m| m[5]).max().unwrap_or_default();
    // Average phase lengths, scaled to fill start..end in their proportions.
    let mut lengths = [0f64; 5];
    for m in &all {
        for (i, w) in m.windows(2).enumerate() {
            lengths[i] += w[1].saturating_sub(w[0]).as_secs_f64();
        }
    }
    let total: f64 = lengths.iter().sum::<f64>().max(1e-9);
    let width = (end - start).as_secs_f64();
    let mut m = [start; 6];
    for i in 0..5 {
        m[i + 1] = m[i] + Duration::from_secs_f64(width * lengths[i] / total);
    }
    let failed = group.iter().filter(|r| r.failure.is_some()).count();
    let bytes: u64 = group.iter().map(|r| r.bytes).sum();
    let label = format!("#{}–{} ({})", first + 1, first + group.len(), group.len());
    let _ = write!(
        out,
        "<g class=\"row agg{}\"><title>{} downloads, {}, {failed} failed</title>\
         <text class=\"name\" x=\"{:.1}\" y=\"{:.1}\">{label}</text>",
        if failed > 0 { " failed" } else { "" },
        group.len(),
        HumanBytes(bytes),
        LABEL_W - 6.0,
        y + BAR_H - 1.0,
    );
    segments(out, &m, y, scale, m[1]);
    out.push_str("</g>");
}

/// `--split` pieces: thin lines under the bar.
fn pieces(out: &mut String, t: &Trace, r: &Row, y: f64, scale: Duration) {
    if !r.exchanges.iter().any(|e| e.piece.is_some_and(|p| p > 0)) {
        return;
    }
    let off = |at| Phases::offset(t.start, at);
    for e in r.exchanges.iter().filter(|e| e.piece.is_some()) {
        if let (Some(a), Some(b)) = (off(e.sent), off(e.end)) {
            let _ = write!(
                out,
                "<rect class=\"ex\" x=\"{:.2}\" y=\"{:.1}\" width=\"{:.2}\" height=\"2\"/>",
                x_of(a, scale),
                y + BAR_H + 0.5,
                (x_of(b, scale) - x_of(a, scale)).max(0.5)
            );
        }
    }
}

/// A retried download's earlier attempts (its requests for the whole body before the last),
/// drawn in its row as bars of their own, outlined as failed, the reason on hover. Returns
/// where the first began: the download's queueing ends there.
fn earlier_attempts(
    out: &mut String,
    t: &Trace,
    r: &Row,
    y: f64,
    scale: Duration,
) -> Option<Duration> {
    let off = |at| Phases::offset(t.start, at);
    let mut attempts: Vec<&Exchange> = r
        .exchanges
        .iter()
        .filter(|e| e.piece.is_none_or(|p| p == 0) && e.sent.is_some())
        .collect();
    attempts.sort_by_key(|e| e.sent);
    attempts.pop();
    for (n, e) in attempts.iter().enumerate() {
        let (Some(s), Some(end)) = (off(e.sent), off(e.end.or(e.headers))) else {
            continue;
        };
        let end = end.max(s);
        let h = off(e.headers).unwrap_or(end).clamp(s, end);
        let c = (s + e.setup.map(|x| x.total()).unwrap_or_default()).min(h);
        let why = match (&e.error, e.status) {
            (Some(error), _) => error.clone(),
            (None, Some(status)) => format!("HTTP {status}"),
            (None, None) => "no response".into(),
        };
        let _ = write!(
            out,
            "<g class=\"attempt failed\"><title>attempt {} of {}: {}</title>",
            n + 1,
            attempts.len() + 1,
            escape(&why)
        );
        segments(out, &[s, s, c, h, end, end], y, scale, s);
        let (a, b) = (x_of(s, scale), x_of(end, scale));
        let _ = write!(
            out,
            "<rect class=\"edge\" x=\"{a:.2}\" y=\"{y:.1}\" width=\"{:.2}\" height=\"{BAR_H}\"/></g>",
            (b - a).max(1.0)
        );
    }
    attempts.first().and_then(|e| off(e.sent))
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let tail: String = s
        .chars()
        .rev()
        .take(max - 1)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Writes the page beside `path` and renames it into place.
pub(crate) fn write(
    path: &Path,
    passes: &[&Trace],
    heading: &Heading,
    replace: bool,
) -> io::Result<()> {
    super::write_file(path, replace, |file| {
        file.write_all(render(passes, heading).as_bytes())
    })
}

const HEAD: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>fetchpar timeline</title>
<style>
:root { color-scheme: light dark; --bg: #ffffff; --fg: #1a1a1a; --muted: #666666; --grid: #e4e4e4; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #16181c; --fg: #e8e8e8; --muted: #a0a0a0; --grid: #33363c; }
}
@media print {
  :root { --bg: #ffffff; --fg: #000000; --muted: #444444; --grid: #dddddd; }
  section.pass { break-inside: avoid-page; }
}
body { background: var(--bg); color: var(--fg); font: 13px/1.4 system-ui, sans-serif; margin: 16px 24px; }
h1 { font-size: 20px; margin: 0 0 8px; }
h2 { font-size: 15px; margin: 18px 0 4px; }
pre.summary { font: 12px/1.4 ui-monospace, monospace; margin: 0 0 6px; white-space: pre-wrap; }
p.basis, p.note { color: var(--muted); margin: 4px 0; max-width: 1100px; }
ul.legend { list-style: none; padding: 0; margin: 8px 0; display: flex; flex-wrap: wrap; gap: 6px 18px; }
ul.legend li { display: flex; align-items: center; gap: 6px; }
.sw { display: inline-block; width: 14px; height: 10px; }
svg { display: block; overflow: visible; }
svg text { fill: var(--fg); font: 11px system-ui, sans-serif; }
text.name { text-anchor: end; }
text.tick { fill: var(--muted); text-anchor: middle; font-size: 10px; }
text.lab { fill: var(--muted); }
text.rate-lab { fill: #0072B2; }
line.grid { stroke: var(--grid); stroke-width: 1; }
.q { fill: #BBBBBB; background: #BBBBBB; }
.c { fill: #E69F00; background: #E69F00; }
.w { fill: #56B4E9; background: #56B4E9; }
.r { fill: #009E73; background: #009E73; }
.k { fill: #CC79A7; background: #CC79A7; }
.ex { fill: var(--muted); background: var(--muted); }
.fail { background: #D55E00; }
g.failed text.name, g.failed text.size { fill: #D55E00; font-weight: 600; }
g.failed rect.r, g.failed rect.w { fill: #D55E00; }
/* An earlier attempt is drawn in the failure colour (g.failed), faded and outlined. */
g.attempt.failed rect { opacity: 0.5; }
g.attempt.failed rect.edge { fill: none; stroke: #D55E00; stroke-width: 1.5; stroke-dasharray: 3 2; opacity: 1; }
.retry { border: 1.5px dashed #D55E00; box-sizing: border-box; background: rgba(213, 94, 0, 0.5); }
g.row:hover text { font-weight: 600; }
path.busy { fill: #BBBBBB; opacity: 0.6; }
path.rate { fill: none; stroke: #0072B2; stroke-width: 1.5; }
</style>
</head>
<body>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(n: usize, failed: usize) -> Trace {
        let start = Instant::now();
        let at = |ms: u64| Some(start + Duration::from_millis(ms));
        let mut t = Trace::new(4, start);
        for i in 0..n as u64 {
            t.rows.push(Row {
                url: format!("http://***@h/dir/file-{i}.bin?x=<y>"),
                phases: Phases {
                    queued: at(i),
                    began: at(i + 1),
                    sent: at(i + 2),
                    connect: None,
                    headers: at(i + 50),
                    body_end: at(i + 150),
                    ended: at(i + 151),
                },
                bytes: 1000,
                status: Some(200),
                retries: 0,
                failure: (i < failed as u64).then(|| "HTTP 503".to_string()),
                exchanges: Vec::new(),
            });
        }
        t
    }

    fn heading() -> Heading {
        Heading {
            summary: "3 files saved".into(),
            basis: "estimate".into(),
        }
    }

    #[test]
    fn one_row_per_download_escaped_and_self_contained() {
        let t = trace(3, 1);
        let page = render(&[&t], &heading());
        assert_eq!(page.matches("<g class=\"row").count(), 3);
        assert_eq!(page.matches("<g class=\"row failed\"").count(), 1);
        assert!(page.contains("x=&lt;y&gt;"), "URLs are escaped");
        assert!(!page.contains("<script"));
        assert!(!page.contains("http://") || !page.contains("src=\"http"));
    }

    #[test]
    fn many_downloads_are_aggregated() {
        let t = trace(MAX_ROWS * 3 + 1, 0);
        let page = render(&[&t], &heading());
        let rows = page.matches("<g class=\"row").count();
        assert!(rows <= MAX_ROWS, "{rows}");
        assert!(page.contains("each row below aggregates 4 consecutive"));
    }
}
