//! Who may reach the server and what they may do: TLS for the transport,
//! and principals (by token or client certificate) with roles.
//!
//! A server on a loopback address may run without either, as the local
//! walkthrough does. Anywhere else it refuses to listen without TLS unless
//! told `--insecure` ([`check_listen_address`]). With an access file
//! ([`AccessPolicy`]) every connection must say who it is before anything
//! else: by a client certificate whose common name is a principal's name, or
//! by an `Authenticate` request carrying the principal's token.
//!
//! An access file is TOML:
//!
//! ```toml
//! [[principal]]
//! name = "ops"
//! role = "admin"                      # topics, SmartModules, connectors
//! token_sha256 = "<hex SHA-256 of the token>"
//!
//! [[principal]]
//! name = "orders-app"
//! role = "client"                     # produce and consume, nothing else
//! token = "a-long-random-secret"      # or token_sha256
//! topics = ["orders", "orders-*"]     # exact names, or a prefix and `*`
//! ```
//!
//! A principal without a token can only come in by client certificate.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the server's TLS or access settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// Listening beyond loopback without TLS was not asked for explicitly.
    #[error(
        "refusing to listen on {addr} without TLS: anyone who can reach it could read and change every topic. Give --tls-cert and --tls-key (and an --access file), or --insecure if this network is trusted"
    )]
    InsecureListen {
        /// The address.
        addr: SocketAddr,
    },
    /// A certificate or key file cannot be read or holds nothing usable.
    #[error("cannot use {what} {}: {reason}", path.display())]
    File {
        /// What the file was for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the certificate and key together.
    #[error("cannot set up TLS with {} and {}: {reason}", cert.display(), key.display())]
    Tls {
        /// The certificate chain file.
        cert: PathBuf,
        /// The private key file.
        key: PathBuf,
        /// Why.
        reason: String,
    },
    /// The access file cannot be read.
    #[error("the access file {} cannot be read: {source}", path.display())]
    AccessUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The access file is not valid.
    #[error("the access file {} is not valid: {source}", path.display())]
    Access {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: AccessFileError,
    },
}

/// What is wrong with the text of an access file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessFileError {
    /// Not TOML of the access file's layout (the message has the place).
    #[error("{0}")]
    Layout(String),
    /// No `[[principal]]` at all.
    #[error("it names no principal: add a [[principal]] with a name, a role and a token")]
    NoPrincipal,
    /// A principal's name is empty.
    #[error("a principal has an empty name")]
    EmptyName,
    /// Both `token` and `token_sha256`.
    #[error("principal {0:?} has both token and token_sha256; keep one")]
    TwoTokens(String),
    /// A token too short to be a secret.
    #[error(
        "principal {0:?} has a token of fewer than {MIN_TOKEN_CHARS} characters; use a long random one (for example `openssl rand -hex 32`)"
    )]
    ShortToken(String),
    /// A `token_sha256` that is not a digest.
    #[error("principal {0:?} has a token_sha256 that is not 64 hexadecimal digits")]
    BadDigest(String),
    /// A topic pattern with a `*` anywhere but at its end.
    #[error(
        "principal {name:?} has the topic pattern {pattern:?}; a pattern is a name, or a prefix followed by one `*` at the end"
    )]
    BadPattern {
        /// The principal.
        name: String,
        /// The pattern.
        pattern: String,
    },
    /// A client that may use no topic.
    #[error("client {0:?} has no topics, so it could do nothing; list them in `topics` (\"*\" for all)")]
    NoTopics(String),
    /// Two principals of one name.
    #[error("principal {0:?} appears twice")]
    Duplicate(String),
    /// Two principals with one token.
    #[error("principal {0:?} has the same token as another principal")]
    SharedToken(String),
}

/// The TLS files of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// The server's private key, PEM.
    pub key: PathBuf,
    /// Certificate authorities whose client certificates are accepted, PEM.
    /// Without it the server asks for no client certificate.
    pub client_ca: Option<PathBuf>,
}

/// How a server protects itself: TLS, principals, and whether plain TCP
/// beyond loopback was explicitly allowed.
#[derive(Debug, Clone, Default)]
pub struct SecurityConfig {
    /// Serve TLS with these files.
    pub tls: Option<TlsFiles>,
    /// Require every connection to authenticate as a principal of this file.
    pub access_file: Option<PathBuf>,
    /// Allow plain TCP on an address beyond loopback.
    pub insecure: bool,
}

/// Refuses an address beyond loopback without TLS, unless `insecure`.
pub fn check_listen_address(addr: SocketAddr, config: &SecurityConfig) -> Result<(), SecurityError> {
    if addr.ip().is_loopback() || config.tls.is_some() || config.insecure {
        return Ok(());
    }
    Err(SecurityError::InsecureListen { addr })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let file_error = |reason: String| SecurityError::File { what, path: path.to_path_buf(), reason };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(file_error("it holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, SecurityError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| SecurityError::File {
        what: "the private key",
        path: path.to_path_buf(),
        reason: format!("{e}; it must hold one PEM private key (PKCS#8, PKCS#1 or SEC1)"),
    })
}

/// The TLS side of accepting connections.
pub fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, SecurityError> {
    let certs = read_certs("the certificate chain", &files.cert)?;
    let key = read_key(&files.key)?;
    let tls_error = |reason: String| SecurityError::Tls { cert: files.cert.clone(), key: files.key.clone(), reason };
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs("the client CA", ca)? {
                roots.add(cert).map_err(|e| SecurityError::File {
                    what: "the client CA",
                    path: ca.clone(),
                    reason: e.to_string(),
                })?;
            }
            // Clients without a certificate may still come in by token.
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| SecurityError::File { what: "the client CA", path: ca.clone(), reason: e.to_string() })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| tls_error(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The first certificate of `path`, as the bytes a client pins: the server
/// hands it to its own connectors, which reach it on loopback under a name
/// the certificate may not carry.
pub fn leaf_certificate(path: &Path) -> Result<Vec<u8>, SecurityError> {
    Ok(read_certs("the certificate chain", path)?.swap_remove(0).to_vec())
}

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: topics, SmartModules, connectors, consumers' offsets.
    Admin,
    /// Produce and consume on its topics, read offsets there, and use the
    /// registered SmartModules.
    Client,
}

impl Role {
    /// The role's name as clients are told it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Client => "client",
        }
    }
}

/// Someone the server knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The name (and the common name of its client certificates).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The topics a client may use: exact names, or prefixes ending in `*`.
    /// Ignored for admins.
    pub topics: Vec<String>,
}

impl Principal {
    /// Whether this principal may produce to and consume from `topic`.
    pub fn may_use_topic(&self, topic: &str) -> bool {
        self.role == Role::Admin
            || self.topics.iter().any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => topic.starts_with(prefix),
                None => pattern == topic,
            })
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessFile {
    #[serde(default)]
    principal: Vec<PrincipalEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalEntry {
    name: String,
    role: Role,
    token: Option<String>,
    token_sha256: Option<String>,
    #[serde(default)]
    topics: Vec<String>,
}

/// The principals of an access file, found by token digest or by name.
#[derive(Debug, Default)]
pub struct AccessPolicy {
    by_token: HashMap<[u8; 32], Arc<Principal>>,
    by_name: HashMap<String, Arc<Principal>>,
}

/// Tokens shorter than this are refused in the access file: a token is the
/// only secret between a client and every topic it may read.
pub const MIN_TOKEN_CHARS: usize = 16;

fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_hex_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(digest)
}

impl AccessPolicy {
    /// Reads and checks an access file.
    pub fn load(path: &Path) -> Result<AccessPolicy, SecurityError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SecurityError::AccessUnreadable { path: path.to_path_buf(), source })?;
        AccessPolicy::parse(&text).map_err(|source| SecurityError::Access { path: path.to_path_buf(), source })
    }

    /// Parses the text of an access file.
    pub fn parse(text: &str) -> Result<AccessPolicy, AccessFileError> {
        let file: AccessFile = toml::from_str(text).map_err(|e| AccessFileError::Layout(e.to_string()))?;
        if file.principal.is_empty() {
            return Err(AccessFileError::NoPrincipal);
        }
        let mut policy = AccessPolicy::default();
        for entry in file.principal {
            let name = entry.name.trim().to_string();
            if name.is_empty() {
                return Err(AccessFileError::EmptyName);
            }
            let digest = match (&entry.token, &entry.token_sha256) {
                (Some(_), Some(_)) => {
                    return Err(AccessFileError::TwoTokens(name));
                }
                (Some(token), None) => {
                    if token.chars().count() < MIN_TOKEN_CHARS {
                        return Err(AccessFileError::ShortToken(name));
                    }
                    Some(token_digest(token))
                }
                (None, Some(hex)) => {
                    Some(parse_hex_digest(hex).ok_or_else(|| AccessFileError::BadDigest(name.clone()))?)
                }
                (None, None) => None,
            };
            for pattern in &entry.topics {
                if pattern.is_empty() || pattern.strip_suffix('*').unwrap_or(pattern).contains('*') {
                    return Err(AccessFileError::BadPattern { name, pattern: pattern.clone() });
                }
            }
            if entry.role == Role::Client && entry.topics.is_empty() {
                return Err(AccessFileError::NoTopics(name));
            }
            let principal = Arc::new(Principal { name: name.clone(), role: entry.role, topics: entry.topics });
            if policy.by_name.insert(name.clone(), Arc::clone(&principal)).is_some() {
                return Err(AccessFileError::Duplicate(name));
            }
            if let Some(digest) = digest
                && policy.by_token.insert(digest, principal).is_some()
            {
                return Err(AccessFileError::SharedToken(name));
            }
        }
        Ok(policy)
    }

    /// The principal whose token this is.
    pub fn by_token(&self, token: &str) -> Option<Arc<Principal>> {
        // Looked up by digest: no comparison of secrets byte by byte.
        self.by_token.get(&token_digest(token)).cloned()
    }

    /// The principal a verified client certificate names, by its subject's
    /// common name.
    pub fn by_certificate(&self, der: &[u8]) -> Option<Arc<Principal>> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let common_name = cert.subject().iter_common_name().next()?.as_str().ok()?;
        self.by_name.get(common_name).cloned()
    }

    /// Adds a principal known only to this process (the server's own
    /// connectors), with a fresh random token, and returns the token.
    pub fn add_internal(&mut self, name: &str, role: Role, topics: Vec<String>) -> std::io::Result<String> {
        let mut secret = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut secret)?;
        let token: String = secret.iter().map(|byte| format!("{byte:02x}")).collect();
        let principal = Arc::new(Principal { name: name.to_string(), role, topics });
        self.by_token.insert(token_digest(&token), principal);
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_access_file_is_checked_and_finds_principals_by_token() {
        let policy = AccessPolicy::parse(
            r#"
            [[principal]]
            name = "ops"
            role = "admin"
            token_sha256 = "5a6df720540c20d95d530d3fd6885511223d5d20a8d0b2f6d0a5a2b4fc4fb4c2"
            [[principal]]
            name = "orders-app"
            role = "client"
            token = "orders-app-token-0123456789"
            topics = ["orders", "audit-*"]
            "#,
        )
        .unwrap();
        let app = policy.by_token("orders-app-token-0123456789").unwrap();
        assert_eq!(app.name, "orders-app");
        assert!(app.may_use_topic("orders"));
        assert!(app.may_use_topic("audit-2026"));
        assert!(!app.may_use_topic("orders2"));
        assert!(!app.may_use_topic("payments"));
        assert!(policy.by_token("orders-app-token-012345678").is_none());
        let digest: String = token_digest("an-admin-token-of-some-length").iter().map(|b| format!("{b:02x}")).collect();
        let policy = AccessPolicy::parse(&format!(
            "[[principal]]\nname = \"ops\"\nrole = \"admin\"\ntoken_sha256 = \"{digest}\"\n"
        ))
        .unwrap();
        let ops = policy.by_token("an-admin-token-of-some-length").unwrap();
        assert_eq!(ops.role, Role::Admin);
        assert!(ops.may_use_topic("anything"));
    }

    #[test]
    fn bad_access_files_are_refused_with_the_reason() {
        let refused = |text: &str, expected: &str| {
            let error = AccessPolicy::parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        };
        refused("", "no principal");
        refused("[[principal]]\nname = \"a\"\nrole = \"admin\"\ntoken = \"short\"\n", "fewer than 16");
        refused("[[principal]]\nname = \"a\"\nrole = \"client\"\ntoken = \"0123456789abcdef\"\n", "no topics");
        refused("[[principal]]\nname = \"a\"\nrole = \"root\"\n", "unknown variant");
        refused("[[principal]]\nname = \"a\"\nrole = \"admin\"\ntoken_sha256 = \"abc\"\n", "64 hexadecimal");
        refused(
            "[[principal]]\nname = \"a\"\nrole = \"client\"\ntopics = [\"a*b\"]\ntoken = \"0123456789abcdef\"\n",
            "pattern",
        );
        refused(
            "[[principal]]\nname = \"a\"\nrole = \"admin\"\n[[principal]]\nname = \"a\"\nrole = \"admin\"\n",
            "twice",
        );
        refused(
            "[[principal]]\nname = \"a\"\nrole = \"admin\"\ntoken = \"0123456789abcdef\"\n[[principal]]\nname = \"b\"\nrole = \"admin\"\ntoken = \"0123456789abcdef\"\n",
            "same token",
        );
        refused("[[principal]]\nname = \"a\"\nrole = \"admin\"\ntokn = \"x\"\n", "unknown field");
        // A pattern ending in a multi-byte character is read, not sliced.
        let policy = AccessPolicy::parse(
            "[[principal]]\nname = \"a\"\nrole = \"client\"\ntopics = [\"café\", \"*\"]\ntoken = \"0123456789abcdef\"\n",
        )
        .unwrap();
        assert!(policy.by_token("0123456789abcdef").unwrap().may_use_topic("anything"));
    }

    #[test]
    fn plain_tcp_beyond_loopback_needs_insecure() {
        let public: SocketAddr = "0.0.0.0:9003".parse().unwrap();
        let loopback: SocketAddr = "127.0.0.1:9003".parse().unwrap();
        let v6_loopback: SocketAddr = "[::1]:9003".parse().unwrap();
        let plain = SecurityConfig::default();
        assert!(check_listen_address(loopback, &plain).is_ok());
        assert!(check_listen_address(v6_loopback, &plain).is_ok());
        let error = check_listen_address(public, &plain).unwrap_err();
        assert!(error.to_string().contains("--insecure"), "{error}");
        assert!(check_listen_address(public, &SecurityConfig { insecure: true, ..Default::default() }).is_ok());
        let tls = TlsFiles { cert: "c".into(), key: "k".into(), client_ca: None };
        assert!(check_listen_address(public, &SecurityConfig { tls: Some(tls), ..Default::default() }).is_ok());
    }
}
