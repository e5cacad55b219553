//! What curl and wget users reach for, applied once to the shared HTTP client: extra headers, the
//! User-Agent, basic auth, a proxy, extra trusted certificates, and (when asked) no verification.
//!
//! Values are checked when the command line is parsed, so a bad one is a usage error (exit 2)
//! before any download. Secrets (`--user`, an `Authorization` header, a proxy password) are marked
//! sensitive for the HTTP stack and never printed, not even in a rejection message or `Debug`.
//!
//! Which headers a request carries depends on where it goes ([`HeaderScope`]): `-H` headers and
//! credentials (`--user`, the URL's own) only to the origin of the URL the user gave, unless
//! `--location-trusted`; a redirect elsewhere gets the User-Agent alone. reqwest's own redirect
//! handling strips only a few named headers, and only when host or port change, so the
//! transport follows redirects itself and asks the scope at every hop.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Result;
use base64::Engine as _;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, COOKIE, USER_AGENT,
};
use reqwest::ClientBuilder;
use reqwest::Proxy;
use url::Url;

use crate::netrc::Netrc;
use crate::proxy::Proxies;
use crate::redact;

/// Headers whose values are secrets: never shown, marked sensitive.
pub(crate) fn is_secret(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "x-api-key" | "x-auth-token"
    )
}

/// One `-H 'Name: value'`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) name: HeaderName,
    pub(crate) value: HeaderValue,
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_secret(&self.name) {
            write!(f, "{}: ***", self.name)
        } else {
            write!(f, "{}: {:?}", self.name, self.value)
        }
    }
}

impl FromStr for Header {
    type Err = String;

    // The value is never quoted back: it may be a token.
    fn from_str(s: &str) -> Result<Header, String> {
        let Some((name, value)) = s.split_once(':') else {
            return Err(
                "a header is 'Name: value', with a colon (e.g. -H 'Accept: text/csv')".into(),
            );
        };
        let name = name.trim();
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            format!(
                "'{}' is not a header name: use letters, digits and '-' (e.g. X-Api-Key)",
                name.chars().take(60).collect::<String>()
            )
        })?;
        let mut value = HeaderValue::from_str(value.trim()).map_err(|_| {
            format!("the value of header {name} contains a line break or control character")
        })?;
        if is_secret(&name) {
            value.set_sensitive(true);
        }
        Ok(Header { name, value })
    }
}

/// `-A TEXT`: any text a header value may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UserAgent(pub HeaderValue);

impl FromStr for UserAgent {
    type Err = String;

    fn from_str(s: &str) -> Result<UserAgent, String> {
        HeaderValue::from_str(s.trim())
            .map(UserAgent)
            .map_err(|_| "the user agent contains a line break or control character".into())
    }
}

/// `--user USER:PASSWORD`, sent as HTTP basic auth.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    user: String,
    password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:***", self.user)
    }
}

impl FromStr for Credentials {
    type Err = String;

    fn from_str(s: &str) -> Result<Credentials, String> {
        // No prompt for a missing password, as curl would: fetchpar runs in scripts.
        let Some((user, password)) = s.split_once(':') else {
            return Err("give USER:PASSWORD (end with ':' for an empty password)".into());
        };
        if user.is_empty() && password.is_empty() {
            return Err("give USER:PASSWORD; both are empty".into());
        }
        if s.chars().any(char::is_control) {
            return Err("the user or password contains a control character".into());
        }
        Ok(Credentials {
            user: user.to_string(),
            password: password.to_string(),
        })
    }
}

impl Credentials {
    fn header(&self) -> HeaderValue {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.user, self.password));
        // Base64 is always a valid header value.
        let mut value = HeaderValue::from_str(&format!("Basic {token}"))
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        value.set_sensitive(true);
        value
    }
}

/// `--proxy URL`: an http://, https://, socks5:// or socks5h:// proxy (`host:port` means
/// http://), credentials allowed (`http://user:pw@proxy:3128`).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ProxyUrl(pub Url);

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact::url(&self.0))
    }
}

impl FromStr for ProxyUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<ProxyUrl, String> {
        crate::proxy::parse(s).map(ProxyUrl)
    }
}

/// Every request option, validated.
#[derive(Clone, Debug, Default)]
pub(crate) struct RequestOptions {
    pub(crate) headers: Vec<Header>,
    pub(crate) user_agent: Option<UserAgent>,
    pub(crate) user: Option<Credentials>,
    /// `--proxy` and the proxy variables, read once when the flags are resolved: every client
    /// of a run routes by this table, and failures name the proxy from it.
    pub(crate) proxies: Arc<Proxies>,
    pub(crate) cacert: Option<PathBuf>,
    pub(crate) insecure: bool,
    /// `--location-trusted`: send `-H` headers and credentials across redirects to any origin.
    pub(crate) location_trusted: bool,
    /// `--netrc`, `--netrc-file`: credentials by host.
    pub(crate) netrc: Option<Arc<Netrc>>,
}

impl RequestOptions {
    /// The headers every request carries. Later wins: `-A` over the default User-Agent, `-H` over
    /// both and over `--user` (as in curl). Credentials in a URL win over all of these for that
    /// URL: reqwest sets them on the request, and default headers never replace request headers.
    pub(crate) fn default_headers(&self) -> HeaderMap {
        let mut map = everywhere_defaults();
        map.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("fetchpar/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(UserAgent(ua)) = &self.user_agent {
            map.insert(USER_AGENT, ua.clone());
        }
        if let Some(user) = &self.user {
            map.insert(AUTHORIZATION, user.header());
        }
        let mut given: Vec<&HeaderName> = Vec::new();
        for header in &self.headers {
            // The first -H of a name replaces a default; repeated ones join it as one list
            // (`a, b`, or `a; b` for Cookie), which HTTP defines as the same thing: reqwest keeps
            // only one value per name among a client's default headers.
            let value = match map.get(&header.name) {
                Some(first) if given.contains(&&header.name) => {
                    let sep: &[u8] = if header.name == COOKIE { b"; " } else { b", " };
                    let joined = [first.as_bytes(), sep, header.value.as_bytes()].concat();
                    let mut value =
                        HeaderValue::from_bytes(&joined).unwrap_or_else(|_| header.value.clone());
                    value.set_sensitive(is_secret(&header.name));
                    value
                }
                _ => header.value.clone(),
            };
            map.insert(header.name.clone(), value);
            given.push(&header.name);
        }
        map
    }

    /// Where each header may go: see [`HeaderScope`].
    pub(crate) fn header_scope(&self) -> HeaderScope {
        let mut everywhere = everywhere_defaults();
        let agent = match &self.user_agent {
            Some(UserAgent(ua)) => ua.clone(),
            None => HeaderValue::from_static(concat!("fetchpar/", env!("CARGO_PKG_VERSION"))),
        };
        everywhere.insert(USER_AGENT, agent);
        HeaderScope {
            origin: self.default_headers(),
            everywhere,
            trusted: self.location_trusted,
        }
    }

    /// The `Authorization` value netrc gives a request to `url`, if any: `--user` or
    /// `-H Authorization` wins over netrc for every URL, credentials in the URL for that URL
    /// (curl's precedence).
    pub(crate) fn netrc_authorization(&self, url: &Url) -> Option<HeaderValue> {
        let own_auth = self.user.is_some() || self.headers.iter().any(|h| h.name == AUTHORIZATION);
        if own_auth {
            return None;
        }
        self.netrc.as_ref()?.authorization(url)
    }

    /// Applies the options to a client under construction; `alpn_h2` offers HTTP/2 by ALPN
    /// (the TLS configuration is fetchpar's own, so reqwest does not set ALPN itself). Errors
    /// here (an unreadable or empty `--cacert`) are usage errors: they come before any download.
    /// No headers are set here: the transport sets them per request, from
    /// [`RequestOptions::header_scope`] (and netrc's from [`RequestOptions::netrc_authorization`]).
    pub(crate) fn apply(&self, mut builder: ClientBuilder, alpn_h2: bool) -> Result<ClientBuilder> {
        // One rule of fetchpar's replaces reqwest's own reading of the variables: NO_PROXY='*'
        // must cover IP addresses too, and error messages must know the proxy of a URL.
        builder = builder.no_proxy();
        if self.proxies.any() {
            let proxies = self.proxies.clone();
            builder = builder.proxy(Proxy::custom(move |url| proxies.for_url(url).cloned()));
        }
        let tls = crate::tls::client_config(crate::tls::Settings {
            cacert: self.cacert.as_deref(),
            insecure: self.insecure,
            alpn_h2,
        })?;
        // Header names as curl sends them (`User-Agent`): some old servers match them exactly.
        builder = builder
            .use_preconfigured_tls(tls)
            .http1_title_case_headers();
        Ok(builder)
    }
}

/// What every request carries whatever its origin, besides the User-Agent: `Accept: */*`, as
/// curl sends it. reqwest would add the same; set here, it is ours, and `--har` lists it.
fn everywhere_defaults() -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(ACCEPT, HeaderValue::from_static("*/*"));
    map
}

/// The headers of a request, by where it goes: those of [`RequestOptions::default_headers`] to
/// the origin (scheme, host, port) of the URL asked for, the User-Agent alone anywhere else a
/// redirect leads, unless the user trusts every location (curl's `--location-trusted`).
#[derive(Clone, Debug)]
pub(crate) struct HeaderScope {
    origin: HeaderMap,
    everywhere: HeaderMap,
    trusted: bool,
}

impl Default for HeaderScope {
    fn default() -> HeaderScope {
        RequestOptions::default().header_scope()
    }
}

/// `a.origin() == b.origin()` without building the two origins (a copy of each host, for every
/// request): for http and https, an origin is its scheme, host and port, the default port
/// included.
fn same_origin(a: &Url, b: &Url) -> bool {
    match a.scheme() {
        "http" | "https" => {
            a.scheme() == b.scheme()
                && a.host() == b.host()
                && a.port_or_known_default() == b.port_or_known_default()
        }
        _ => a.origin() == b.origin(),
    }
}

impl HeaderScope {
    /// Whether the user's headers and credentials (netrc's too) go to `hop` on the way to
    /// `asked`: within its origin, or anywhere with `--location-trusted`.
    pub(crate) fn carries_credentials(&self, asked: &Url, hop: &Url) -> bool {
        self.trusted || same_origin(asked, hop)
    }

    /// For a request to `hop` on the way to `asked`: the URL to send it to and the headers it
    /// carries. Where the user's headers go, the credentials of `asked` go too (put into the
    /// URL, where reqwest turns them into basic auth), and they win over `--user` and `-H
    /// Authorization`, as they always have; anywhere else no credential goes at all.
    pub(crate) fn for_hop(&self, asked: &Url, hop: &Url) -> (Url, HeaderMap) {
        if !self.carries_credentials(asked, hop) {
            let mut bare = hop.clone();
            // Fails only for URLs that cannot have credentials, which then have none.
            let _ = bare.set_username("");
            let _ = bare.set_password(None);
            return (bare, self.everywhere.clone());
        }
        let mut url = hop.clone();
        let has_creds = |u: &Url| !u.username().is_empty() || u.password().is_some();
        if has_creds(asked) && !has_creds(hop) {
            let _ = url.set_username(asked.username());
            let _ = url.set_password(asked.password());
        }
        let mut headers = self.origin.clone();
        if has_creds(&url) {
            headers.remove(AUTHORIZATION);
        }
        (url, headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_never_echo_values() {
        let h: Header = " X-Trace : abc def ".parse().unwrap();
        assert_eq!(h.name, "x-trace");
        assert_eq!(h.value, "abc def");
        let err = "Authorization Bearer s3cret".parse::<Header>().unwrap_err();
        assert!(!err.contains("s3cret") && err.contains("colon"), "{err}");
        let err = "Authorization: Bearer s3cret\r\nX: y"
            .parse::<Header>()
            .unwrap_err();
        assert!(!err.contains("s3cret") && err.contains("control"), "{err}");
        assert!("Bad Name: x".parse::<Header>().is_err());
        let auth: Header = "Authorization: Bearer s3cret".parse().unwrap();
        assert!(auth.value.is_sensitive());
        assert!(!format!("{auth:?}").contains("s3cret"));
    }

    #[test]
    fn credentials_need_a_colon_and_stay_hidden() {
        let c: Credentials = "alice:open sesame".parse().unwrap();
        assert_eq!(c.header(), "Basic YWxpY2U6b3BlbiBzZXNhbWU=");
        assert!(c.header().is_sensitive());
        assert!(!format!("{c:?}").contains("sesame"));
        assert!("token:".parse::<Credentials>().is_ok());
        assert!("alice"
            .parse::<Credentials>()
            .unwrap_err()
            .contains("USER:PASSWORD"));
    }

    #[test]
    fn proxies_are_urls_or_host_port() {
        assert!("http://u:pw@127.0.0.1:3128".parse::<ProxyUrl>().is_ok());
        assert!("socks5h://h:1080".parse::<ProxyUrl>().is_ok());
        let p: ProxyUrl = "127.0.0.1:3128".parse().unwrap();
        assert_eq!(p.0.as_str(), "http://127.0.0.1:3128/");
        let err = "gopher://h:70".parse::<ProxyUrl>().unwrap_err();
        assert!(err.contains("gopher"), "{err}");
        let err = "htp//u:pw@h:x".parse::<ProxyUrl>().unwrap_err();
        assert!(!err.contains("pw"), "{err}");
        let p: ProxyUrl = "http://u:pw@h:1".parse().unwrap();
        assert!(!format!("{p:?}").contains("pw"));
    }

    #[test]
    fn later_options_win() {
        let options = RequestOptions {
            user_agent: Some("mine/1".parse().unwrap()),
            user: Some("a:b".parse().unwrap()),
            headers: vec![
                "Authorization: Bearer t".parse().unwrap(),
                "Accept: a".parse().unwrap(),
                "Accept: b".parse().unwrap(),
            ],
            ..RequestOptions::default()
        };
        let map = options.default_headers();
        assert_eq!(map[USER_AGENT], "mine/1");
        assert_eq!(map[AUTHORIZATION], "Bearer t");
        assert_eq!(map["accept"], "a, b", "-H replaces the default Accept");
        let plain = RequestOptions::default().default_headers();
        assert!(plain[USER_AGENT].to_str().unwrap().starts_with("fetchpar/"));
        assert!(plain.get(AUTHORIZATION).is_none());
    }

    #[test]
    fn user_headers_and_credentials_stay_with_the_origin_asked() {
        let url = |s: &str| Url::parse(s).unwrap();
        let options = RequestOptions {
            user_agent: Some("mine/1".parse().unwrap()),
            user: Some("a:b".parse().unwrap()),
            headers: vec!["X-Api-Key: k".parse().unwrap()],
            ..RequestOptions::default()
        };
        let scope = options.header_scope();
        let asked = url("http://h:1/f");
        // The origin asked, and a redirect within it: everything.
        for hop in ["http://h:1/f", "http://h:1/g?x"] {
            let (to, headers) = scope.for_hop(&asked, &url(hop));
            assert_eq!(to.as_str(), hop);
            assert_eq!(headers["x-api-key"], "k");
            assert_eq!(headers[AUTHORIZATION], "Basic YTpi");
            assert_eq!(headers[USER_AGENT], "mine/1");
        }
        // Another scheme, host or port: the User-Agent alone, and no credentials in the URL.
        let with_creds = url("http://u:p@h:1/f");
        for hop in [
            "https://h:1/f",
            "http://g:1/f",
            "http://h:2/f",
            "http://v:q@g/f",
        ] {
            let (to, headers) = scope.for_hop(&with_creds, &url(hop));
            assert_eq!((to.username(), to.password()), ("", None), "{hop}");
            assert_eq!(headers.len(), 2, "{hop}: {headers:?}");
            assert_eq!(headers[USER_AGENT], "mine/1");
            assert_eq!(headers[ACCEPT], "*/*");
        }
        // The URL's own credentials follow within the origin, and win over --user there.
        let (to, headers) = scope.for_hop(&with_creds, &url("http://h:1/g"));
        assert_eq!((to.username(), to.password()), ("u", Some("p")));
        assert!(headers.get(AUTHORIZATION).is_none());
        assert_eq!(headers["x-api-key"], "k");
        // --location-trusted: everything, everywhere.
        let trusted = RequestOptions {
            location_trusted: true,
            ..options
        }
        .header_scope();
        let (to, headers) = trusted.for_hop(&with_creds, &url("http://g:2/f"));
        assert_eq!((to.username(), to.password()), ("u", Some("p")));
        assert_eq!(headers["x-api-key"], "k");
        let (_, headers) = trusted.for_hop(&asked, &url("http://g:2/f"));
        assert_eq!(headers[AUTHORIZATION], "Basic YTpi");
    }

    /// Two runs in one process with different settings: each set of options answers for itself
    /// (nothing is kept in process-wide state).
    #[test]
    fn netrc_and_proxies_belong_to_their_own_options() {
        let url = Url::parse("http://h.example/f").unwrap();
        let with = |text: &str, proxy: Option<&str>| RequestOptions {
            netrc: Some(Arc::new(Netrc::parse(text))),
            proxies: Arc::new(
                Proxies::new(proxy.map(|p| Url::parse(p).unwrap()).as_ref(), &|_| None).unwrap(),
            ),
            ..RequestOptions::default()
        };
        let one = with(
            "machine h.example login a password x",
            Some("http://p1:3128"),
        );
        let two = with("machine h.example login b password y", None);
        let basic = |v: HeaderValue| v.to_str().unwrap().to_string();
        assert_eq!(basic(one.netrc_authorization(&url).unwrap()), "Basic YTp4");
        assert_eq!(basic(two.netrc_authorization(&url).unwrap()), "Basic Yjp5");
        assert_eq!(
            one.proxies.for_url(&url).map(Url::as_str),
            Some("http://p1:3128/")
        );
        assert_eq!(two.proxies.for_url(&url), None);
        // --user wins over netrc for every URL.
        let user = RequestOptions {
            user: Some("u:p".parse().unwrap()),
            ..one
        };
        assert!(user.netrc_authorization(&url).is_none());
        assert!(!format!("{:?}", with("", Some("http://u:SECRET@p:1"))).contains("SECRET"));
    }

    #[test]
    fn same_origin_is_what_url_origin_says() {
        let urls = [
            "http://h/a",
            "http://h:80/b",
            "http://u:p@h/c",
            "https://h/a",
            "https://h:443/a",
            "http://h:8080/a",
            "http://H/a",
            "http://g/a",
            "http://127.0.0.1/a",
            "http://[::1]/a",
            "http://xn--nxasmq6b/a",
            "file:///tmp/a",
            "ftp://h/a",
        ];
        for a in urls {
            for b in urls {
                let (a, b) = (Url::parse(a).unwrap(), Url::parse(b).unwrap());
                assert_eq!(same_origin(&a, &b), a.origin() == b.origin(), "{a} {b}");
            }
        }
    }
}
