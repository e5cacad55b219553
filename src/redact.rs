//! Credentials never leave the process: every URL shown to a person or a script goes through here.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use url::Url;

/// Query parameters whose value is a credential, by name (compared without regard to case):
/// a presigned or API-key URL is a password in itself. Whoever holds
/// `…?X-Amz-Signature=…&X-Amz-Credential=…` (or an Azure SAS `sig`, a Google `key`, an OAuth
/// `code` or `access_token`) can fetch the object, so the value is as secret as the userinfo.
/// The name stays: it tells the reader what was hidden. Names that end in one of
/// [`SECRET_SUFFIXES`] (`token`, `access_token`, `X-Amz-Signature`, `api_key`, …) are not
/// listed again here.
const SECRET_PARAMS: [&str; 14] = [
    "apikey",
    "key",
    "passwd",
    "pwd",
    "pass",
    "auth",
    "authorization",
    "sig",
    "session",
    "sid",
    "jwt",
    "code",
    "awsaccesskeyid",
    "credentials",
];

/// Name endings that mark a credential too, whatever comes before (`X-Amz-Security-Token`,
/// `auth_token`, `accessToken`, `aws_secret`, `private_key`, `db_password`): hiding a value that
/// was harmless only costs the reader a little; showing a secret cannot be undone.
const SECRET_SUFFIXES: [&str; 11] = [
    "token",
    "secret",
    "password",
    "signature",
    "credential",
    "_key",
    "-key",
    "_sig",
    "-sig",
    "sessionid",
    "sessid",
];

/// Whether a query parameter of this name (percent-encoded or not) carries a credential.
pub(crate) fn is_secret_param(name: &str) -> bool {
    let name = percent_decode_str(name)
        .decode_utf8_lossy()
        .to_ascii_lowercase();
    SECRET_PARAMS.contains(&name.as_str()) || SECRET_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// The URL as text, with any user name and password replaced by `***`, and so is the value of
/// every query (or fragment) parameter that [`is_secret_param`] names. The rest is left exactly
/// as the URL serialises, so the reader still recognises it.
///
/// Both parts of the userinfo go, not just the password: a token is often passed as the user
/// name (`https://TOKEN@host/`).
pub(crate) fn url(url: &Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return params(url.as_str()).into_owned();
    }
    let mut shown = url.clone();
    // Setting credentials can only fail for URLs that cannot have them, which have none.
    let _ = shown.set_password(None);
    let _ = shown.set_username("***");
    params(shown.as_str()).into_owned()
}

/// `raw` (a URL or a relative reference, as text) with the value of each secret parameter of
/// its query and of its fragment (where OAuth's implicit flow puts `access_token`) replaced by
/// `***`; everything else, separators and encoding included, as it was.
pub(crate) fn params(raw: &str) -> Cow<'_, str> {
    let (before, fragment) = match raw.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (raw, None),
    };
    let (path, query) = match before.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (before, None),
    };
    let query_shown = query.map(pairs);
    let fragment_shown = fragment.map(pairs);
    let changed = |part: &Option<Cow<'_, str>>| matches!(part, Some(Cow::Owned(_)));
    if !changed(&query_shown) && !changed(&fragment_shown) {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    out.push_str(path);
    if let Some(query) = query_shown {
        out.push('?');
        out.push_str(&query);
    }
    if let Some(fragment) = fragment_shown {
        out.push('#');
        out.push_str(&fragment);
    }
    Cow::Owned(out)
}

/// `a=1&token=x` → `a=1&token=***`: `&`-separated pairs, each secret one's value hidden.
fn pairs(query: &str) -> Cow<'_, str> {
    let secret = |pair: &str| {
        pair.split_once('=')
            .is_some_and(|(name, value)| !value.is_empty() && is_secret_param(name))
    };
    if !query.split('&').any(secret) {
        return Cow::Borrowed(query);
    }
    let shown: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if secret(pair) => Cow::Owned(format!("{name}=***")),
            _ => Cow::Borrowed(pair),
        })
        .collect();
    Cow::Owned(shown.join("&"))
}

/// Removes anything that looks like userinfo or a secret query parameter from text that did not
/// parse as a URL, so a bad line such as `htp://user:secret@host`, `user:secret@host/x`,
/// `htp://host/f?token=abc` or two URLs on one line is reported without its secret. Every
/// whitespace-separated word is treated on its own.
pub(crate) fn text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while !rest.is_empty() {
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        out.push_str(&params(&word(&rest[..word_end])));
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

    #[test]
    fn hides_the_values_of_secret_query_parameters_only() {
        let shown = |s: &str| url(&Url::parse(s).unwrap());
        assert_eq!(
            shown("https://h/f?token=abc&x=1"),
            "https://h/f?token=***&x=1"
        );
        assert_eq!(
            shown(
                "https://b.s3.amazonaws.com/k.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256\
                   &X-Amz-Credential=AKIA%2F2024&X-Amz-Date=20240101T000000Z\
                   &X-Amz-Signature=deadbeef&X-Amz-Security-Token=Fw0"
            ),
            "https://b.s3.amazonaws.com/k.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=***&X-Amz-Date=20240101T000000Z\
             &X-Amz-Signature=***&X-Amz-Security-Token=***"
        );
        assert_eq!(
            shown("https://a.blob.core.windows.net/c/b?sv=2022&sp=r&sig=AbC%3D"),
            "https://a.blob.core.windows.net/c/b?sv=2022&sp=r&sig=***"
        );
        // Case, suffixes and an encoded name; the order, the encoding and the rest unchanged.
        assert_eq!(
            shown("http://h/a%20b?API_KEY=1&q=a%20b&auth_token=2&accessToken=3&My%5Fkey=4&monkey=5"),
            "http://h/a%20b?API_KEY=***&q=a%20b&auth_token=***&accessToken=***&My%5Fkey=***&monkey=5"
        );
        // Userinfo and query at once; a fragment's parameters (OAuth's implicit flow) too.
        assert_eq!(
            shown("https://u:p@h/cb?code=c0de&state=s#access_token=t0k&token_type=bearer"),
            "https://***@h/cb?code=***&state=s#access_token=***&token_type=bearer"
        );
    }

    #[test]
    fn leaves_harmless_queries_as_they_are() {
        for s in [
            "http://h/f?x=1&y=&token",
            "http://h/f?token=",
            "http://h/f?keys=1&tokens=2",
            "http://h/f#section-2",
            "http://h/f?a=1&&b=2",
        ] {
            assert_eq!(url(&Url::parse(s).unwrap()), s);
        }
        assert!(matches!(params("/b?x=1"), Cow::Borrowed(_)));
    }

    #[test]
    fn hides_secret_parameters_in_unparsed_text_and_relative_references() {
        assert_eq!(text("htp://h/f?token=abc&x=1"), "htp://h/f?token=***&x=1");
        assert_eq!(
            text("htp://u:pw@h/f?sig=s  http://h/g?key=k"),
            "htp://***@h/f?sig=***  http://h/g?key=***"
        );
        // A password holding `?` is gone with the userinfo before parameters are looked at.
        assert_eq!(text("http://u:p?token=1@h/x"), "http://***@h/x");
        assert_eq!(params("/b?Signature=s&n=1"), "/b?Signature=***&n=1");
    }
}
