//! The file name a server proposes in `Content-Disposition` (used only with
//! `--content-disposition`): `filename=` and RFC 6266 / RFC 8187 `filename*=`.
//!
//! The server is not trusted: the name is decoded first and then reduced to a safe base name by
//! [`naming::sanitize`], the same as a name taken from a URL, so `../../x`, `..%2F..%2Fx`,
//! `/etc/passwd`, `C:\x`, NUL and control characters all stay inside the output directory.

use percent_encoding::percent_decode;

use crate::naming;

/// The safe name proposed by a `Content-Disposition` value, if it proposes one.
/// `filename*=` wins over `filename=`, as RFC 6266 asks.
pub(crate) fn filename(header: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    let mut plain = None;
    let mut extended = None;
    for (name, value) in params(&text) {
        match name.to_ascii_lowercase().as_str() {
            "filename*" => extended = extended.or_else(|| decode_extended(&value)),
            "filename" => plain = plain.or(Some(value)),
            _ => {}
        }
    }
    let raw = match extended {
        Some(name) => name,
        // Many servers percent-encode plain `filename=` too; decoding before sanitising also
        // means an encoded separator (`..%2Fx`) is seen and removed.
        None => percent_decode(plain?.as_bytes())
            .decode_utf8_lossy()
            .into_owned(),
    };
    if raw.trim().is_empty() {
        return None;
    }
    Some(naming::sanitize(&raw))
}

/// `name=value` pairs after the disposition type, with quoted strings unquoted.
fn params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = match text.split_once(';') {
        Some((_, rest)) => rest,
        None => return out,
    };
    loop {
        let Some((name, after)) = rest.split_once('=') else {
            return out;
        };
        let name = name.trim().trim_start_matches(';').trim().to_string();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            unquote(quoted)
        } else {
            match after.split_once(';') {
                Some((v, next)) => (v.trim().to_string(), next),
                None => (after.trim().to_string(), ""),
            }
        };
        out.push((name, value));
        rest = match next.trim_start().strip_prefix(';') {
            Some(r) => r,
            None => next,
        };
        if rest.trim().is_empty() {
            return out;
        }
    }
}

/// Reads a quoted string (after its opening quote), undoing `\` escapes; returns the value and
/// what follows the closing quote.
fn unquote(s: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            '"' => return (value, &s[i + 1..]),
            c => value.push(c),
        }
    }
    (value, "")
}

/// `UTF-8''%e2%82%ac%20rates.txt` → `€ rates.txt`; ISO-8859-1 is the only other charset allowed.
fn decode_extended(value: &str) -> Option<String> {
    let mut parts = value.splitn(3, '\'');
    let charset = parts.next()?.trim().to_ascii_lowercase();
    let _language = parts.next()?;
    let bytes: Vec<u8> = percent_decode(parts.next()?.as_bytes()).collect();
    match charset.as_str() {
        "utf-8" => Some(String::from_utf8_lossy(&bytes).into_owned()),
        "iso-8859-1" => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(h: &str) -> Option<String> {
        filename(h.as_bytes())
    }

    #[test]
    fn plain_and_quoted_names() {
        assert_eq!(
            name("attachment; filename=report.pdf").unwrap(),
            "report.pdf"
        );
        assert_eq!(
            name("attachment; filename=\"my report.pdf\"; size=3").unwrap(),
            "my report.pdf"
        );
        assert_eq!(
            name(r#"attachment; filename="a \"b\".txt""#).unwrap(),
            "a \"b\".txt"
        );
        assert_eq!(name("inline; FileName=x.bin").unwrap(), "x.bin");
        assert_eq!(name("attachment"), None);
        assert_eq!(name("attachment; filename=\"\""), None);
    }

    #[test]
    fn extended_names_win_and_are_decoded() {
        assert_eq!(
            name("attachment; filename=\"rates.txt\"; filename*=UTF-8''%e2%82%ac%20rates.txt")
                .unwrap(),
            "€ rates.txt"
        );
        assert_eq!(
            name("attachment; filename*=iso-8859-1'en'%A3%20rates.txt").unwrap(),
            "£ rates.txt"
        );
        // An unknown charset is ignored in favour of the plain name.
        assert_eq!(
            name("attachment; filename*=koi8-r''%C1; filename=plain.txt").unwrap(),
            "plain.txt"
        );
    }

    #[test]
    fn hostile_names_become_safe_base_names() {
        for (header, want) in [
            ("attachment; filename=\"../../x\"", ".._.._x"),
            ("attachment; filename=\"..%2F..%2Fx\"", ".._.._x"),
            ("attachment; filename*=UTF-8''..%2F..%2Fx", ".._.._x"),
            ("attachment; filename=\"/etc/passwd\"", "_etc_passwd"),
            ("attachment; filename=\"C:\\\\x\"", "C:_x"),
            ("attachment; filename*=UTF-8''a%00b", "a_b"),
            ("attachment; filename=\"a%0Ab%1B\"", "a_b_"),
            ("attachment; filename=\".\"", "index.html"),
            ("attachment; filename=\"..\"", "index.html"),
            ("attachment; filename*=UTF-8''%2e%2e", "index.html"),
        ] {
            let got = name(header).unwrap();
            assert_eq!(got, want, "{header}");
            assert!(!got.contains('/') && !got.contains('\\'));
        }
    }
}
