//! Credentials never leave the process: every URL shown to a person or a script goes through here.

use url::Url;

/// The URL as text, with any user name and password replaced by `***`.
///
/// Both parts go, not just the password: a token is often passed as the user name
/// (`https://TOKEN@host/`).
pub fn url(url: &Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    // Setting credentials can only fail for URLs that cannot have them, which have none.
    let _ = shown.set_password(None);
    let _ = shown.set_username("***");
    shown.to_string()
}

/// Removes the userinfo part from text that looks like a URL but did not parse, so a bad line
/// such as `htp://user:secret@host` is reported without its secret.
pub fn text(raw: &str) -> String {
    let Some(scheme_end) = raw.find("://") else {
        return raw.to_string();
    };
    let rest = &raw[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &raw[..scheme_end + 3], &rest[at + 1..]),
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
        assert_eq!(text("http://host/a@b"), "http://host/a@b");
        assert_eq!(text("not a url"), "not a url");
    }
}
