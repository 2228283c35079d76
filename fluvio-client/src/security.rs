//! TLS and credentials on the client side: how a connection proves the
//! server is the right one, and how it says who it is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::FluvioError;

/// Whether a client uses TLS, and how it checks the server.
///
/// In a profile (`~/.fluvio/config`) it is the cluster's `tls` table:
///
/// ```toml
/// [cluster.prod.tls]
/// tls_policy = "verified"
/// ca_cert = "/etc/fluvio/ca.pem"   # omit to trust the system's authorities
/// domain = "fluvio.example.com"    # omit to check the address's host
/// cert = "/etc/fluvio/app.pem"     # a client certificate, optional
/// key = "/etc/fluvio/app.key"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "tls_policy", rename_all = "lowercase")]
pub enum TlsPolicy {
    /// Plain TCP: for a server on loopback, or a network you trust.
    #[default]
    #[serde(alias = "disable")]
    Disabled,
    /// TLS, with the server's certificate checked.
    Verified(TlsConfig),
}

impl From<TlsConfig> for TlsPolicy {
    fn from(config: TlsConfig) -> TlsPolicy {
        TlsPolicy::Verified(config)
    }
}

/// The files a verified TLS connection uses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The name the server's certificate must carry; by default the host
    /// of the address connected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Authorities that sign the server's certificate (PEM); by default
    /// the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// Trust exactly the first certificate in this file (PEM), whatever
    /// name it carries: how a server's own connectors reach it on loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_cert: Option<PathBuf>,
    /// A client certificate chain to present (PEM), with `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// The private key of `cert` (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    /// Verified TLS trusting the authorities in `ca_cert`.
    pub fn with_ca(ca_cert: impl Into<PathBuf>) -> TlsConfig {
        TlsConfig { ca_cert: Some(ca_cert.into()), ..TlsConfig::default() }
    }

    /// The same, checking the server's certificate for `domain`.
    pub fn domain(mut self, domain: impl Into<String>) -> TlsConfig {
        self.domain = Some(domain.into());
        self
    }

    /// The same, presenting a client certificate.
    pub fn client_certificate(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsConfig {
        self.cert = Some(cert.into());
        self.key = Some(key.into());
        self
    }
}

fn tls_error(reason: impl std::fmt::Display) -> FluvioError {
    FluvioError::Config(format!("TLS: {reason}"))
}

fn read_certs(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, FluvioError> {
    let unusable = |reason: String| tls_error(format!("cannot use {what} {}: {reason}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| unusable(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unusable(e.to_string()))?;
    if certs.is_empty() {
        return Err(unusable("it holds no PEM certificate".into()));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Everything a connection needs to secure itself, prepared once per
/// client (the files are read here, not on every reconnect).
#[derive(Clone)]
pub(crate) struct Security {
    tls: Option<(tokio_rustls::TlsConnector, Option<String>)>,
    pub(crate) token: Option<String>,
}

impl Security {
    pub(crate) fn new(tls: &TlsPolicy, token: Option<String>) -> Result<Security, FluvioError> {
        let tls = match tls {
            TlsPolicy::Disabled => None,
            TlsPolicy::Verified(config) => Some((connector(config)?, config.domain.clone())),
        };
        Ok(Security { tls, token })
    }

    /// Whether connections use TLS.
    pub(crate) fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The TLS connector and the name to check for a server at `addr`.
    pub(crate) fn tls_for(
        &self,
        addr: &str,
    ) -> Result<Option<(tokio_rustls::TlsConnector, ServerName<'static>)>, FluvioError> {
        let Some((connector, domain)) = &self.tls else { return Ok(None) };
        let name = match domain {
            Some(domain) => domain.clone(),
            None => host_of(addr).to_string(),
        };
        let name = ServerName::try_from(name.clone())
            .map_err(|_| tls_error(format!("{name:?} is not a name or address a certificate can carry")))?;
        Ok(Some((connector.clone(), name)))
    }
}

/// The host of `host:port` (without an IPv6 address's brackets).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn connector(config: &TlsConfig) -> Result<tokio_rustls::TlsConnector, FluvioError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?;
    let builder = if let Some(pinned) = &config.pinned_cert {
        let leaf = read_certs("the pinned certificate", pinned)?.swap_remove(0);
        builder.dangerous().with_custom_certificate_verifier(Arc::new(PinnedCertificate { leaf, provider: provider() }))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &config.ca_cert {
            Some(path) => {
                for cert in read_certs("the CA certificate", path)? {
                    roots.add(cert).map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(tls_error(
                        "no ca_cert given and no system certificate authorities found; set ca_cert (or FLUVIO_TLS_CA)",
                    ));
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    let config = match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => {
            let certs = read_certs("the client certificate", cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| tls_error(format!("cannot use the client key {}: {e}", key.display())))?;
            builder.with_client_auth_cert(certs, key).map_err(tls_error)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(tls_error("a client certificate needs both cert and key")),
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Trusts one certificate, byte for byte, and checks that the server holds
/// its key; names and authorities play no part.
#[derive(Debug)]
struct PinnedCertificate {
    leaf: CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.leaf.as_ref() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_an_address_is_what_a_certificate_is_checked_for() {
        assert_eq!(host_of("fluvio.example.com:9003"), "fluvio.example.com");
        assert_eq!(host_of("127.0.0.1:9003"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9003"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }

    #[test]
    fn a_tls_policy_reads_from_a_profile_table() {
        let policy: TlsPolicy = toml::from_str(
            "tls_policy = \"verified\"\nca_cert = \"/etc/ca.pem\"\ndomain = \"fluvio.local\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
        )
        .unwrap();
        assert_eq!(
            policy,
            TlsPolicy::Verified(
                TlsConfig::with_ca("/etc/ca.pem").domain("fluvio.local").client_certificate("c.pem", "k.pem")
            )
        );
        let policy: TlsPolicy = toml::from_str("tls_policy = \"disabled\"\n").unwrap();
        assert_eq!(policy, TlsPolicy::Disabled);
        let error = toml::from_str::<TlsPolicy>("tls_policy = \"verified\"\nca = \"x\"\n").unwrap_err();
        assert!(error.to_string().contains("unknown field"), "{error}");
    }
}
