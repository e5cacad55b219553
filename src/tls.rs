//! TLS as curl and wget users expect it: the operating system's trust store (with bundled roots
//! where the system has none), a `--cacert` file whose self-signed server certificate is trusted
//! as itself, and certificate errors told in words that say what to do.
//!
//! fetchpar builds the rustls configuration itself (reqwest takes it as is), so ALPN is set here
//! too.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use x509_cert::der::Decode;

/// What the TLS configuration is made from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings<'a> {
    /// `--cacert`: more trust anchors, and server certificates trusted as themselves.
    pub(crate) cacert: Option<&'a Path>,
    /// `-k`: no certificate checks at all.
    pub(crate) insecure: bool,
    /// Offer HTTP/2 by ALPN; false offers HTTP/1.1 only (reqwest must be built with `http2`).
    pub(crate) alpn_h2: bool,
}

/// The rustls client configuration for these settings. Errors (an unreadable or empty
/// `--cacert`) are usage errors.
pub(crate) fn client_config(settings: Settings<'_>) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let verifier: Arc<dyn ServerCertVerifier> = if settings.insecure {
        Arc::new(AcceptAny { algorithms })
    } else {
        let pinned = match settings.cacert {
            Some(path) => read_cacert(path)?,
            None => Vec::new(),
        };
        Arc::new(Verifier {
            standard: OnceLock::new(),
            provider: provider.clone(),
            pinned,
            algorithms,
        })
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("cannot set up TLS")?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = if settings.alpn_h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    // rustls's default resumption, with the mark of each handshake's start (crate::conntime).
    config.resumption = crate::conntime::resumption();
    Ok(config)
}

/// The operating system's trust store (`SSL_CERT_FILE` and `SSL_CERT_DIR` honoured), read once
/// per process: every worker's client is built from it. Bundled roots where it is empty.
fn system_roots() -> &'static Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(found.certs);
        if roots.is_empty() {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        Arc::new(roots)
    })
}

fn read_cacert(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem =
        std::fs::read(path).with_context(|| format!("cannot read --cacert {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            anyhow::anyhow!("--cacert {} is not a PEM certificate file", path.display())
        })?;
    if certs.is_empty() {
        anyhow::bail!(
            "--cacert {} holds no certificate: give a PEM file with \
             -----BEGIN CERTIFICATE----- blocks",
            path.display()
        );
    }
    Ok(certs)
}

/// The standard verifier, plus: a server certificate equal to one in `--cacert` is trusted as
/// itself (curl does this; webpki refuses a CA certificate as an end entity by design), its name,
/// dates and handshake signatures still checked.
#[derive(Debug)]
struct Verifier {
    /// Made at the first handshake: reading the system's store costs more CPU than a small
    /// file's whole download, and a list of `http://` URLs never needs it.
    standard: OnceLock<Result<Arc<WebPkiServerVerifier>, String>>,
    provider: Arc<CryptoProvider>,
    pinned: Vec<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Verifier {
    fn standard(&self) -> Result<&Arc<WebPkiServerVerifier>, rustls::Error> {
        let made = self.standard.get_or_init(|| {
            // Every worker builds a client: without `--cacert` they share the one store (a copy
            // each was most of the heap a run has before its list grows, benches/run workload E).
            let roots = if self.pinned.is_empty() {
                system_roots().clone()
            } else {
                // A CA certificate becomes a trust anchor; one webpki cannot take as an anchor
                // is still trusted when the server presents exactly it.
                let mut roots = system_roots().as_ref().clone();
                roots.add_parsable_certificates(self.pinned.iter().cloned());
                Arc::new(roots)
            };
            WebPkiServerVerifier::builder_with_provider(roots, self.provider.clone())
                .build()
                .map_err(|e| format!("cannot set up certificate checks: {e}"))
        });
        made.as_ref()
            .map_err(|why| rustls::Error::General(why.clone()))
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            return verify_pinned(end_entity, server_name, now);
        }
        self.standard()?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| match e {
                // A wrong name or date says more than "self-signed" does.
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForNameContext { .. }
                    | CertificateError::ExpiredContext { .. }
                    | CertificateError::NotValidYetContext { .. },
                ) => e,
                _ if self_issued(end_entity) => other(CertProblem::SelfSigned),
                _ => e,
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn verify_pinned(
    cert: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<ServerCertVerified, rustls::Error> {
    let parsed = ParsedCertificate::try_from(cert)?;
    rustls::client::verify_server_name(&parsed, server_name)?;
    let parsed = x509_cert::Certificate::from_der(cert.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let validity = &parsed.tbs_certificate.validity;
    let not_before = UnixTime::since_unix_epoch(validity.not_before.to_unix_duration());
    let not_after = UnixTime::since_unix_epoch(validity.not_after.to_unix_duration());
    if now.as_secs() < not_before.as_secs() {
        return Err(CertificateError::NotValidYetContext {
            time: now,
            not_before,
        }
        .into());
    }
    if now.as_secs() > not_after.as_secs() {
        return Err(CertificateError::ExpiredContext {
            time: now,
            not_after,
        }
        .into());
    }
    Ok(ServerCertVerified::assertion())
}

/// Issuer and subject are the same name: nobody but the server vouches for it.
fn self_issued(cert: &CertificateDer<'_>) -> bool {
    x509_cert::Certificate::from_der(cert.as_ref())
        .is_ok_and(|c| c.tbs_certificate.issuer == c.tbs_certificate.subject)
}

/// `-k`: every certificate and signature accepted, as the user asked.
#[derive(Debug)]
struct AcceptAny {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Certificate problems that rustls has no variant for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CertProblem {
    SelfSigned,
}

impl fmt::Display for CertProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertProblem::SelfSigned => f.write_str(SELF_SIGNED),
        }
    }
}

impl StdError for CertProblem {}

fn other(problem: CertProblem) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(problem))))
}

const SELF_SIGNED: &str =
    "self-signed certificate: trust it with --cacert FILE, or skip checks with -k";

/// The certificate error somewhere in `err`'s causes, in words; `None` when the failure was not
/// about a certificate. Such a failure cannot get better by trying again.
pub(crate) fn describe(err: &(dyn StdError + 'static)) -> Option<String> {
    causes(err)
        .find_map(|e| match e.downcast_ref::<rustls::Error>() {
            Some(rustls::Error::InvalidCertificate(cert)) => Some(cert),
            _ => None,
        })
        .map(describe_certificate)
}

/// Every cause of `err`, outermost first, looking inside `io::Error`s too: their `source()`
/// skips the error they wrap, and that is where tokio-rustls puts the TLS error.
fn causes<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |&e| next_cause(e))
}

fn next_cause<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    match e.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
        Some(inner) => Some(inner as &(dyn StdError + 'static)),
        None => e.source(),
    }
}

fn describe_certificate(err: &CertificateError) -> String {
    match err {
        CertificateError::ExpiredContext { not_after, .. } => {
            format!("certificate expired on {}", date(*not_after))
        }
        CertificateError::Expired => "certificate expired".into(),
        CertificateError::NotValidYetContext { not_before, .. } => {
            format!("certificate is not valid until {}", date(*not_before))
        }
        CertificateError::NotValidYet => "certificate is not valid yet".into(),
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let names: Vec<&str> = presented.iter().map(|n| presented_name(n)).collect();
            let shown = if names.is_empty() {
                "no name".to_string()
            } else {
                names.join(", ")
            };
            format!("certificate is for {shown}, not {}", expected.to_str())
        }
        CertificateError::NotValidForName => "certificate is for another name".into(),
        CertificateError::UnknownIssuer => "certificate issued by an unknown authority: trust \
             its CA with --cacert FILE, or skip checks with -k"
            .into(),
        CertificateError::Revoked => "certificate revoked".into(),
        CertificateError::BadSignature => "certificate has a bad signature".into(),
        CertificateError::BadEncoding => "certificate is not readable (bad encoding)".into(),
        CertificateError::Other(OtherError(inner)) => match inner.downcast_ref::<CertProblem>() {
            Some(problem) => problem.to_string(),
            None => format!("certificate rejected: {}", plain(&inner.to_string())),
        },
        other => format!("certificate rejected: {}", plain(&format!("{other:?}"))),
    }
}

/// webpki shows presented names as `DnsName("a.example")` or `IpAddress(..)`: keep the name.
fn presented_name(shown: &str) -> &str {
    match (shown.find('"'), shown.rfind('"')) {
        (Some(a), Some(b)) if b > a => &shown[a + 1..b],
        _ => shown,
    }
}

/// `CaUsedAsEndEntity` → "ca used as end entity": variant names, not Rust syntax.
fn plain(debug: &str) -> String {
    let name: String = debug
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let mut words = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() && !words.is_empty() {
            words.push(' ');
        }
        words.push(c.to_ascii_lowercase());
    }
    if words.is_empty() {
        "unacceptable".into()
    } else {
        words
    }
}

/// A calendar date (UTC), as people write it: `2020-02-01`.
fn date(time: UnixTime) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let days = (time.as_secs() / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(secs))
    }

    #[test]
    fn dates_are_calendar_dates() {
        assert_eq!(date(at(0)), "1970-01-01");
        assert_eq!(date(at(1_580_515_200)), "2020-02-01");
        assert_eq!(date(at(951_782_400)), "2000-02-29");
        assert_eq!(date(at(4_102_444_799)), "2099-12-31");
    }

    #[test]
    fn certificate_errors_read_as_words() {
        let expired = CertificateError::ExpiredContext {
            time: at(1_700_000_000),
            not_after: at(1_580_515_200),
        };
        assert_eq!(
            describe_certificate(&expired),
            "certificate expired on 2020-02-01"
        );
        let name = CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("127.0.0.1").unwrap(),
            presented: vec!["DnsName(\"wrong.example\")".into()],
        };
        assert_eq!(
            describe_certificate(&name),
            "certificate is for wrong.example, not 127.0.0.1"
        );
        assert_eq!(
            describe_certificate(&CertificateError::Other(OtherError(Arc::new(
                CertProblem::SelfSigned
            )))),
            SELF_SIGNED
        );
        let odd = describe_certificate(&CertificateError::InvalidPurpose);
        assert_eq!(odd, "certificate rejected: invalid purpose");
    }

    #[test]
    fn the_error_is_found_inside_io_errors() {
        let tls = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let wrapped = io::Error::new(io::ErrorKind::InvalidData, tls);
        let outer = io::Error::other(wrapped);
        let words = describe(&outer).unwrap();
        assert!(words.contains("unknown authority") && words.contains("--cacert"));
        assert!(describe(&io::Error::other("reset")).is_none());
    }

    #[test]
    fn a_missing_or_empty_cacert_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let settings = |p| Settings {
            cacert: Some(p),
            insecure: false,
            alpn_h2: false,
        };
        let err = client_config(settings(&empty)).unwrap_err().to_string();
        assert!(err.contains("holds no certificate"), "{err}");
        let missing = dir.path().join("missing.pem");
        let err = client_config(settings(&missing)).unwrap_err().to_string();
        assert!(err.contains("cannot read --cacert"), "{err}");
        let config = client_config(Settings {
            cacert: None,
            insecure: false,
            alpn_h2: true,
        })
        .unwrap();
        assert_eq!(config.alpn_protocols[0], b"h2");
    }
}
