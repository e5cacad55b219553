//! Credentials never leave the process: every URL shown to a person or a script goes through here.

use url::Url;

/// The URL as text, with any user name and password replaced by `***`.
///
/// Both parts go, not just the password: a token is often passed as the user name
/// (`https://TOKEN@host/`).
pub(crate) fn url(url: &Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    // Setting credentials can only fail for URLs that cannot have them, which have none.
    let _ = shown.set_password(None);
    let _ = shown.set_username("***");
    shown.to_string()
}

/// Removes anything that looks like userinfo from text that did not parse as a URL, so a bad
/// line such as `htp://user:secret@host`, `user:secret@host/x` or two URLs on one line is
/// reported without its secret. Every whitespace-separated word is treated on its own.
pub(crate) fn text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while !rest.is_empty() {
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        out.push_str(&word(&rest[..word_end]));
        let space_end = rest[word_end..]
            .find(|c: char| !c.is_whitespace())
            .map_or(rest.len(), |i| word_end + i);
        out.push_str(&rest[word_end..space_end]);
        rest = &rest[space_end..];
    }
    out
}

/// Text that did not parse has no reliable authority: a password may itself hold `/`, `?` or
/// `#` (`http://dave:pa/ss@host/`). So everything from the scheme up to the last `@` goes;
/// hiding a path that merely contains `@` is the harmless side of the trade.
fn word(raw: &str) -> String {
    let authority_start = raw.find("://").map_or(0, |i| i + 3);
    let rest = &raw[authority_start..];
    match rest.rfind('@') {
        Some(at) => format!("{}***@{}", &raw[..authority_start], &rest[at + 1..]),
        None => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_user_and_password() {
        let u = Url::parse("https://alice:s3cret@example.com/a?b=1").unwrap();
        assert_eq!(url(&u), "https://***@example.com/a?b=1");
        let u = Url::parse("https://TOKEN@example.com/").unwrap();
        assert_eq!(url(&u), "https://***@example.com/");
    }

    #[test]
    fn leaves_plain_urls_alone() {
        let u = Url::parse("http://127.0.0.1:8080/x.bin").unwrap();
        assert_eq!(url(&u), "http://127.0.0.1:8080/x.bin");
    }

    #[test]
    fn redacts_unparsed_text() {
        assert_eq!(text("htp://bob:pw@host/x"), "htp://***@host/x");
        assert_eq!(text("http://dave:pa/ss@host/z"), "http://***@host/z");
        assert_eq!(text("http://u:p#w?d@host/"), "http://***@host/");
        assert_eq!(text("not a url"), "not a url");
        assert_eq!(text("eve:pw5@host/x"), "***@host/x");
        assert_eq!(
            text("http://a:one@h/x  https://b:two@h/y"),
            "http://***@h/x  https://***@h/y"
        );
    }
}
