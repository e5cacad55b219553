//! Which proxy a URL goes through, decided as curl decides it: `--proxy`, else `http_proxy`,
//! `https_proxy` and `all_proxy` (either case), always minus `NO_PROXY`, where `*` means every
//! host, IP addresses included. A proxy written without a scheme is `http://`; `socks5://` and
//! `socks5h://` (names resolved by the proxy) are SOCKS.
//!
//! The same table feeds reqwest (one custom proxy rule) and the error messages, so an error that
//! happened at or through a proxy names it (`proxy 127.0.0.1:3128: connection refused`).

use std::error::Error as StdError;
use std::fmt;
use std::net::IpAddr;

use url::Url;

use crate::redact;

/// Proxy schemes fetchpar speaks.
const SCHEMES: [&str; 6] = ["http", "https", "socks4", "socks4a", "socks5", "socks5h"];

/// A proxy as given (`--proxy` or a variable): a URL, `http://` when no scheme is written.
/// Errors never quote the text: it may hold a password.
pub(crate) fn parse(text: &str) -> Result<Url, String> {
    let text = text.trim();
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    let url = Url::parse(&with_scheme).map_err(|_| {
        "not a proxy URL: give host:port or one like http://proxy.example:3128".to_string()
    })?;
    // A path is a sign of a mistyped URL (`htp//u:pw@h` reads as host "htp").
    if !matches!(url.path(), "" | "/") || url.query().is_some() {
        return Err(
            "not a proxy URL: give host:port or one like http://proxy.example:3128".to_string(),
        );
    }
    if !SCHEMES.contains(&url.scheme()) {
        return Err(format!(
            "proxy scheme '{}' is not supported: use http://, https://, socks5:// or socks5h://",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("the proxy URL '{}' has no host", redact::url(&url)));
    }
    Ok(url)
}

/// A proxy as it appears in messages: `127.0.0.1:3128`, a SOCKS one with its scheme; never its
/// credentials.
pub(crate) fn shown(proxy: &Url) -> String {
    match proxy.scheme() {
        "http" => host_port(proxy),
        scheme => format!("{scheme}://{}", host_port(proxy)),
    }
}

/// `host:port` of a proxy, SOCKS ones on 1080 unless told otherwise.
fn host_port(proxy: &Url) -> String {
    let host = proxy.host_str().unwrap_or("?");
    let port = proxy
        .port_or_known_default()
        .or(match proxy.scheme() {
            s if s.starts_with("socks") => Some(1080),
            _ => None,
        })
        .map_or_else(String::new, |p| format!(":{p}"));
    format!("{host}{port}")
}

/// The proxies of a run.
#[derive(Clone, Default)]
pub(crate) struct Proxies {
    /// `--proxy`: every URL, unless `NO_PROXY` says otherwise.
    explicit: Option<Url>,
    http: Option<Url>,
    https: Option<Url>,
    all: Option<Url>,
    no_proxy: NoProxy,
}

/// Shown without credentials: the table travels inside the client recipe, which is `Debug`.
impl fmt::Debug for Proxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |p: &Option<Url>| p.as_ref().map(shown);
        f.debug_struct("Proxies")
            .field("explicit", &shown(&self.explicit))
            .field("http", &shown(&self.http))
            .field("https", &shown(&self.https))
            .field("all", &shown(&self.all))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

impl Proxies {
    /// `--proxy` (already parsed) and the environment. A variable that holds no usable proxy is
    /// an error naming the variable, as in curl.
    pub(crate) fn new(
        explicit: Option<&Url>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Proxies, String> {
        let var = |names: &[&str]| -> Result<Option<Url>, String> {
            for name in names {
                if let Some(value) = env(name).filter(|v| !v.trim().is_empty()) {
                    return parse(&value).map(Some).map_err(|e| format!("{name}: {e}"));
                }
            }
            Ok(None)
        };
        // HTTP_PROXY in upper case is set by CGI servers from a request header: ignored there.
        let http = if env("REQUEST_METHOD").is_some() {
            var(&["http_proxy"])?
        } else {
            var(&["http_proxy", "HTTP_PROXY"])?
        };
        Ok(Proxies {
            explicit: explicit.cloned(),
            http,
            https: var(&["https_proxy", "HTTPS_PROXY"])?,
            all: var(&["all_proxy", "ALL_PROXY"])?,
            no_proxy: NoProxy::parse(
                &env("no_proxy")
                    .or_else(|| env("NO_PROXY"))
                    .unwrap_or_default(),
            ),
        })
    }

    /// The proxy for `url`, if any.
    pub(crate) fn for_url(&self, url: &Url) -> Option<&Url> {
        if self.no_proxy.matches(url) {
            return None;
        }
        if let Some(proxy) = &self.explicit {
            return Some(proxy);
        }
        let by_scheme = match url.scheme() {
            "http" => self.http.as_ref(),
            "https" => self.https.as_ref(),
            _ => None,
        };
        by_scheme.or(self.all.as_ref())
    }

    /// Whether a connection that comes up for `url` reaches its origin: a direct one, a tunnel
    /// (an `https` URL through an HTTP proxy: CONNECT, then TLS with the origin) or a SOCKS
    /// connect. A plain-HTTP proxy's connection comes up whether the origin is there or not.
    pub(crate) fn reaches_origin(&self, url: &Url) -> bool {
        match self.for_url(url) {
            None => true,
            Some(proxy) => url.scheme() == "https" || proxy.scheme().starts_with("socks"),
        }
    }

    /// Whether any URL could go through a proxy.
    pub(crate) fn any(&self) -> bool {
        self.explicit.is_some() || self.http.is_some() || self.https.is_some() || self.all.is_some()
    }
}

/// `NO_PROXY`: comma-separated host names (a name covers its subdomains), IP addresses, CIDR
/// ranges, or `*` for everything.
#[derive(Clone, Debug, Default)]
struct NoProxy {
    everything: bool,
    names: Vec<String>,
    nets: Vec<(IpAddr, u8)>,
}

impl NoProxy {
    fn parse(text: &str) -> NoProxy {
        let mut list = NoProxy::default();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                list.everything = true;
            } else if let Some(net) = parse_net(entry) {
                list.nets.push(net);
            } else {
                let name = entry.trim_start_matches("*.").trim_start_matches('.');
                list.names.push(name.to_ascii_lowercase());
            }
        }
        list
    }

    fn matches(&self, url: &Url) -> bool {
        if self.everything {
            return true;
        }
        match url.host() {
            Some(url::Host::Domain(host)) => {
                let host = host.to_ascii_lowercase();
                self.names.iter().any(|n| {
                    host == *n
                        || (host.ends_with(n.as_str())
                            && host[..host.len() - n.len()].ends_with('.'))
                })
            }
            Some(url::Host::Ipv4(ip)) => self.covers(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.covers(IpAddr::V6(ip)),
            None => false,
        }
    }

    fn covers(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|&(net, bits)| in_net(ip, net, bits))
    }
}

/// `10.0.0.0/8`, `::1`, `[::1]`, `127.0.0.1`: a network and its prefix length.
fn parse_net(entry: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = match entry.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
        None => (entry, None),
    };
    let ip: IpAddr = addr
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some((ip, bits))
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// The proxy a failed request was on its way to or through, if any: a connect error of a URL
/// that goes through one.
fn at_proxy<'a>(err: &reqwest::Error, proxies: &'a Proxies) -> Option<&'a Url> {
    if !err.is_connect() {
        return None;
    }
    err.url().and_then(|url| proxies.for_url(url))
}

/// `plain` (what went wrong), said of the proxy when the request went through one and failed
/// on the way to or through it.
pub(crate) fn describe(err: &reqwest::Error, plain: String, proxies: &Proxies) -> String {
    match (at_proxy(err, proxies), err.url()) {
        (Some(proxy), Some(url)) => said_of(proxy, url, err, plain),
        _ => plain,
    }
}

/// How a connect failure at a proxy reads as a proxy's (`proxy 127.0.0.1:3128`), for the
/// lines that say a proxy rather than the URL's host is unreachable.
pub(crate) fn through(err: &reqwest::Error, proxies: &Proxies) -> Option<String> {
    at_proxy(err, proxies).map(|proxy| format!("proxy {}", shown(proxy)))
}

/// Whether the proxy turned the request down on purpose (credentials, access rules): the next
/// try would send the same and be turned down the same way, so it fails at once.
pub(crate) fn refused(err: &reqwest::Error, proxies: &Proxies) -> bool {
    at_proxy(err, proxies).is_some() && refusal(err).is_some()
}

/// Why a proxy turned a request down, as far as its error chain tells (hyper-util keeps no
/// status for a refused CONNECT but 407: only the words are there to read).
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// A 407 to CONNECT, or a SOCKS5 server that rejected the user name and password.
    Credentials,
    /// A SOCKS5 server that wants credentials none were given for, or that takes none.
    NoUserPass,
    /// Any other answer than 200 to CONNECT (tinyproxy refuses with 401 or 403).
    Tunnel,
}

fn refusal(err: &(dyn StdError + 'static)) -> Option<Refusal> {
    let said = |needle: &str| {
        std::iter::successors(Some(err), |&e| e.source()).any(|e| e.to_string().contains(needle))
    };
    if said("proxy authorization required") || said("credentials not accepted") {
        Some(Refusal::Credentials)
    } else if said("server does not support user/pass authentication") {
        Some(Refusal::NoUserPass)
    } else if said("tunnel error: unsuccessful") {
        Some(Refusal::Tunnel)
    } else {
        None
    }
}

fn said_of(proxy: &Url, url: &Url, err: &(dyn StdError + 'static), plain: String) -> String {
    let name = shown(proxy);
    match refusal(err) {
        Some(Refusal::Credentials) => return rejected_credentials(proxy),
        Some(Refusal::NoUserPass) if proxy.username().is_empty() => {
            return asks_for_credentials(proxy, "")
        }
        Some(Refusal::NoUserPass) => {
            return format!("proxy {name} does not take a user name and password")
        }
        Some(Refusal::Tunnel) => {
            let target = format!(
                "{}:{}",
                url.host_str().unwrap_or("?"),
                url.port_or_known_default().unwrap_or(0)
            );
            return format!(
                "proxy {name} refused the tunnel to {target} (check the proxy's credentials and \
                 access rules)"
            );
        }
        None => {}
    }
    let plain = plain.strip_prefix("could not connect: ").unwrap_or(&plain);
    format!("proxy {name}: {plain}")
}

/// A 407 from the proxy of `url`, in words; `None` when `url` went through no proxy.
pub(crate) fn rejected(url: &Url, proxies: &Proxies) -> Option<String> {
    proxies.for_url(url).map(rejected_credentials)
}

fn rejected_credentials(proxy: &Url) -> String {
    let name = shown(proxy);
    let http = !proxy.scheme().starts_with("socks");
    match (proxy.username().is_empty(), http) {
        (true, true) => asks_for_credentials(proxy, " (407)"),
        (true, false) => asks_for_credentials(proxy, ""),
        (false, true) => {
            format!("proxy {name} rejected the credentials (407 Proxy Authentication Required)")
        }
        (false, false) => format!("proxy {name} rejected the credentials"),
    }
}

/// `proxy NAME asks for credentials`, with how to give them (`status`: " (407)" or nothing).
fn asks_for_credentials(proxy: &Url, status: &str) -> String {
    format!(
        "proxy {} asks for credentials{status}: give them as --proxy {}://USER:PASSWORD@{}",
        shown(proxy),
        proxy.scheme(),
        host_port(proxy)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn proxies_without_a_scheme_are_http() {
        assert_eq!(
            parse("127.0.0.1:3128").unwrap().as_str(),
            "http://127.0.0.1:3128/"
        );
        assert_eq!(parse("socks5h://u:pw@h:1080").unwrap().scheme(), "socks5h");
        let err = parse("ftp://u:pw@h:21").unwrap_err();
        assert!(err.contains("ftp") && !err.contains("pw"), "{err}");
        assert_eq!(
            shown(&parse("u:pw@10.0.0.1:3128").unwrap()),
            "10.0.0.1:3128"
        );
        assert_eq!(
            shown(&parse("socks5h://u:pw@h").unwrap()),
            "socks5h://h:1080"
        );
    }

    #[test]
    fn no_proxy_star_covers_ip_addresses_too() {
        let p = Proxies::new(
            None,
            &env(&[("ALL_PROXY", "socks5://h:1080"), ("NO_PROXY", "*")]),
        )
        .unwrap();
        assert!(p.for_url(&url("http://127.0.0.1:8080/a")).is_none());
        assert!(p.for_url(&url("https://example.org/a")).is_none());
        assert!(p.any());
    }

    #[test]
    fn no_proxy_names_addresses_and_ranges() {
        let p = Proxies::new(
            Some(&parse("p:3128").unwrap()),
            &env(&[("no_proxy", "example.org, .internal,10.0.0.0/8,::1")]),
        )
        .unwrap();
        let through = |u: &str| p.for_url(&url(u)).is_some();
        assert!(!through("http://example.org/"));
        assert!(!through("http://a.example.org/"));
        assert!(through("http://badexample.org/"));
        assert!(!through("http://x.internal/"));
        assert!(!through("http://10.1.2.3/"));
        assert!(through("http://11.1.2.3/"));
        assert!(!through("http://[::1]:80/"));
        assert!(through("http://127.0.0.1/"));
    }

    #[test]
    fn only_a_plain_http_proxys_connection_falls_short_of_the_origin() {
        let p = Proxies::new(
            None,
            &env(&[
                ("http_proxy", "h:3128"),
                ("https_proxy", "h:3128"),
                ("no_proxy", "direct.test"),
            ]),
        )
        .unwrap();
        assert!(!p.reaches_origin(&url("http://x/")), "forwarded");
        assert!(p.reaches_origin(&url("https://x/")), "a CONNECT tunnel");
        assert!(p.reaches_origin(&url("http://direct.test/")), "no proxy");
        let socks = Proxies::new(None, &env(&[("ALL_PROXY", "socks5h://s:1080")])).unwrap();
        assert!(socks.reaches_origin(&url("http://x/")));
    }

    #[test]
    fn variables_by_scheme_then_all() {
        let p = Proxies::new(
            None,
            &env(&[("http_proxy", "h:1"), ("ALL_PROXY", "socks5h://s:2")]),
        )
        .unwrap();
        assert_eq!(p.for_url(&url("http://x/")).unwrap().host_str(), Some("h"));
        assert_eq!(p.for_url(&url("https://x/")).unwrap().scheme(), "socks5h");
        let cgi = Proxies::new(
            None,
            &env(&[("HTTP_PROXY", "h:1"), ("REQUEST_METHOD", "GET")]),
        )
        .unwrap();
        assert!(cgi.for_url(&url("http://x/")).is_none());
        let err = Proxies::new(None, &env(&[("ALL_PROXY", "gopher://u:pw@h")])).unwrap_err();
        assert!(
            err.starts_with("ALL_PROXY:") && !err.contains("pw"),
            "{err}"
        );
    }

    #[test]
    fn rejections_name_the_proxy_never_the_password() {
        let with = rejected_credentials(&parse("http://u:secret@127.0.0.1:3128").unwrap());
        assert!(with.contains("proxy 127.0.0.1:3128 rejected") && !with.contains("secret"));
        let without = rejected_credentials(&parse("127.0.0.1:3128").unwrap());
        assert!(without.contains("asks for credentials"), "{without}");
        let proxy = parse("127.0.0.1:9").unwrap();
        let origin = url("https://example.org/f");
        let refused = said_of(
            &proxy,
            &origin,
            &std::io::Error::other("x"),
            "connection refused".into(),
        );
        assert_eq!(refused, "proxy 127.0.0.1:9: connection refused");
        let tunnel = std::io::Error::other("tunnel error: unsuccessful");
        assert_eq!(refusal(&tunnel), Some(Refusal::Tunnel));
        assert_eq!(
            said_of(
                &proxy,
                &origin,
                &tunnel,
                "tunnel error: unsuccessful".into()
            ),
            "proxy 127.0.0.1:9 refused the tunnel to example.org:443 (check the proxy's \
             credentials and access rules)"
        );
        let socks = parse("socks5://u:secret@127.0.0.1:1080").unwrap();
        let bad = std::io::Error::other("SOCKS error: credentials not accepted");
        assert_eq!(
            said_of(&socks, &origin, &bad, String::new()),
            "proxy socks5://127.0.0.1:1080 rejected the credentials"
        );
        let none = std::io::Error::other("server does not support user/pass authentication");
        assert_eq!(
            said_of(
                &parse("socks5h://h:1080").unwrap(),
                &origin,
                &none,
                String::new()
            ),
            "proxy socks5h://h:1080 asks for credentials: give them as --proxy \
             socks5h://USER:PASSWORD@h:1080"
        );
        assert!(refusal(&std::io::Error::other("connection refused")).is_none());
    }
}
