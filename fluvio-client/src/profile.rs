//! Where a client finds its cluster and credentials: a cluster's config
//! ([`FluvioClusterConfig`]), the profile file (`~/.fluvio/config`,
//! Fluvio's layout) and the environment.
//!
//! ```toml
//! current_profile = "prod"
//!
//! [profile.prod]
//! cluster = "prod"
//!
//! [cluster.prod]
//! endpoint = "fluvio-1.example.com:9003,fluvio-2.example.com:9003"
//! token = "a-long-random-secret"
//!
//! [cluster.prod.tls]
//! tls_policy = "verified"
//! ca_cert = "/etc/fluvio/ca.pem"
//! ```
//!
//! The environment overrides the file: `FLUVIO_ADDR`, `FLUVIO_PROFILE`,
//! `FLUVIO_TOKEN`, and `FLUVIO_TLS_CA`, `FLUVIO_TLS_DOMAIN`,
//! `FLUVIO_TLS_CERT`, `FLUVIO_TLS_KEY` (any of which turns TLS on).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use fluvio_protocol::DEFAULT_ADDR;

use crate::FluvioError;
use crate::security::{TlsConfig, TlsPolicy};

/// Where a client finds its cluster: one address (`host:port`), or several
/// comma-separated (servers sharing a JetStream cluster), with the TLS and
/// token to use there. In a profile file it is a `[cluster.NAME]` table.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FluvioClusterConfig {
    /// The address or addresses.
    #[serde(alias = "addr")]
    pub endpoint: String,
    /// TLS, and how the server's certificate is checked.
    #[serde(default)]
    pub tls: TlsPolicy,
    /// The token presented to a server that requires credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl std::fmt::Debug for FluvioClusterConfig {
    /// Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FluvioClusterConfig")
            .field("endpoint", &self.endpoint)
            .field("tls", &self.tls)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The name Fluvio code uses for [`FluvioClusterConfig`].
pub type FluvioConfig = FluvioClusterConfig;

impl FluvioClusterConfig {
    /// A config for `addr`: plain TCP, no token.
    pub fn new(addr: impl Into<String>) -> FluvioClusterConfig {
        FluvioClusterConfig { endpoint: addr.into(), tls: TlsPolicy::Disabled, token: None }
    }

    /// The cluster this process is configured for, as [`Fluvio::connect`]
    /// uses it: `$FLUVIO_ADDR`, else the current profile of
    /// `~/.fluvio/config` (or `$FLUVIO_PROFILE`), else the local cluster;
    /// `$FLUVIO_TOKEN` and `$FLUVIO_TLS_*` over the profile's credentials.
    pub fn load() -> Result<FluvioClusterConfig, FluvioError> {
        crate::profile::configured_cluster()
    }

    /// The same config using TLS as `tls` says.
    pub fn with_tls(mut self, tls: impl Into<TlsPolicy>) -> FluvioClusterConfig {
        self.tls = tls.into();
        self
    }

    /// The same config presenting `token`.
    pub fn with_token(mut self, token: impl Into<String>) -> FluvioClusterConfig {
        self.token = Some(token.into());
        self
    }
}

/// The home of the `fluvio` command: `$FLUVIO_HOME`, or `~/.fluvio`.
pub fn fluvio_home() -> std::path::PathBuf {
    if let Some(home) = std::env::var_os("FLUVIO_HOME") {
        return home.into();
    }
    let user_home = std::env::var_os("HOME").map(std::path::PathBuf::from).unwrap_or_else(|| ".".into());
    user_home.join(".fluvio")
}

/// The address a client uses when given none: `$FLUVIO_ADDR`, else the
/// address of the local cluster `fluvio cluster start` runs (recorded in
/// `server.addr` under [`fluvio_home`]), else `127.0.0.1:9003`.
pub fn default_addr() -> String {
    if let Ok(addr) = std::env::var("FLUVIO_ADDR")
        && !addr.trim().is_empty()
    {
        return addr;
    }
    local_addr()
}

/// The local cluster's address: recorded by `fluvio cluster start`, else
/// the default.
pub(crate) fn local_addr() -> String {
    if let Ok(addr) = std::fs::read_to_string(fluvio_home().join("server.addr")) {
        let addr = addr.trim();
        if !addr.is_empty() {
            return addr.to_string();
        }
    }
    DEFAULT_ADDR.to_string()
}

/// The profile file: named profiles, each pointing at a cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFile {
    /// The file's layout version (Fluvio writes `"2.0"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The profile used when `FLUVIO_PROFILE` names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_profile: Option<String>,
    /// Profiles by name.
    #[serde(default, rename = "profile")]
    pub profiles: BTreeMap<String, Profile>,
    /// Clusters by name.
    #[serde(default, rename = "cluster")]
    pub clusters: BTreeMap<String, FluvioClusterConfig>,
}

/// A named profile: which cluster to use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The name of a `[cluster.NAME]` table.
    pub cluster: String,
}

impl ConfigFile {
    /// The profile file's path: `config` under [`fluvio_home`].
    pub fn default_path() -> PathBuf {
        fluvio_home().join("config")
    }

    /// Reads a profile file; `Ok(None)` when there is none.
    pub fn load(path: &Path) -> Result<Option<ConfigFile>, FluvioError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(FluvioError::Config(format!("cannot read {}: {error}", path.display()))),
        };
        toml::from_str(&text)
            .map(Some)
            .map_err(|e| FluvioError::Config(format!("the profile file {} is not valid: {e}", path.display())))
    }

    /// Writes the profile file, readable by its owner only (profiles may
    /// hold tokens), replacing it whole.
    pub fn save(&self, path: &Path) -> Result<(), FluvioError> {
        use std::io::Write;
        #[cfg(unix)]
        use std::os::unix::fs::OpenOptionsExt;

        let failed = |error: std::io::Error| FluvioError::Config(format!("cannot write {}: {error}", path.display()));
        let text =
            toml::to_string_pretty(self).map_err(|e| FluvioError::Config(format!("cannot write profiles: {e}")))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(failed)?;
        }
        let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut file = options.open(&temporary).map_err(failed)?;
        file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(failed)?;
        std::fs::rename(&temporary, path).map_err(failed)
    }

    /// The cluster of profile `name`, or of the current profile.
    pub fn cluster(&self, name: Option<&str>) -> Result<Option<&FluvioClusterConfig>, FluvioError> {
        let Some(name) = name.or(self.current_profile.as_deref()) else { return Ok(None) };
        let profile = self.profiles.get(name).ok_or_else(|| {
            FluvioError::Config(format!(
                "no profile {name:?} in the profile file; it has {:?}",
                self.profiles.keys().collect::<Vec<_>>()
            ))
        })?;
        self.clusters.get(&profile.cluster).map(Some).ok_or_else(|| {
            FluvioError::Config(format!(
                "profile {name:?} names cluster {:?}, which is not in the file",
                profile.cluster
            ))
        })
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.trim().is_empty())
}

/// The cluster this process is configured for: `FLUVIO_ADDR`, else the
/// profile's cluster, else the local cluster (see
/// [`default_addr`](crate::default_addr)); then credentials from the
/// environment over the profile's.
pub(crate) fn configured_cluster() -> Result<FluvioClusterConfig, FluvioError> {
    let file = ConfigFile::load(&ConfigFile::default_path())?;
    let profile_name = env("FLUVIO_PROFILE");
    let from_profile = match &file {
        Some(file) => file.cluster(profile_name.as_deref())?.cloned(),
        None if profile_name.is_some() => {
            return Err(FluvioError::Config(format!(
                "FLUVIO_PROFILE names {:?} but there is no profile file at {}",
                profile_name.unwrap_or_default(),
                ConfigFile::default_path().display()
            )));
        }
        None => None,
    };
    let config = match (env("FLUVIO_ADDR"), from_profile) {
        // The profile's credentials go only to the profile's own servers.
        (Some(addr), Some(profile)) if profile.endpoint == addr => profile,
        (Some(addr), _) => FluvioClusterConfig::new(addr),
        (None, Some(profile)) => profile,
        (None, None) => FluvioClusterConfig::new(local_addr()),
    };
    Ok(with_environment(config))
}

/// The cluster at `addr`: the profile's credentials if the profile names
/// exactly that endpoint, the environment's over them.
/// A profile file that cannot be read does not stop a client that was
/// given its address.
pub(crate) fn cluster_at(addr: &str) -> FluvioClusterConfig {
    match configured_cluster() {
        Ok(configured) if configured.endpoint == addr => configured,
        Ok(_) => with_environment(FluvioClusterConfig::new(addr)),
        Err(error) => {
            tracing::warn!(%error, "not using the profile");
            with_environment(FluvioClusterConfig::new(addr))
        }
    }
}

/// Applies `FLUVIO_TOKEN` and the `FLUVIO_TLS_*` variables.
pub(crate) fn with_environment(mut config: FluvioClusterConfig) -> FluvioClusterConfig {
    if let Some(token) = env("FLUVIO_TOKEN") {
        config.token = Some(token);
    }
    let variables = [
        env("FLUVIO_TLS_CA"),
        env("FLUVIO_TLS_DOMAIN"),
        env("FLUVIO_TLS_CERT"),
        env("FLUVIO_TLS_KEY"),
        env("FLUVIO_TLS_PINNED_CERT"),
    ];
    if variables.iter().any(Option::is_some) {
        let [ca, domain, cert, key, pinned] = variables;
        let mut tls = match config.tls {
            TlsPolicy::Verified(tls) => tls,
            TlsPolicy::Disabled => TlsConfig::default(),
        };
        tls.ca_cert = ca.map(PathBuf::from).or(tls.ca_cert);
        tls.domain = domain.or(tls.domain);
        tls.cert = cert.map(PathBuf::from).or(tls.cert);
        tls.key = key.map(PathBuf::from).or(tls.key);
        tls.pinned_cert = pinned.map(PathBuf::from).or(tls.pinned_cert);
        config.tls = TlsPolicy::Verified(tls);
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_file_names_its_clusters_and_credentials() {
        let file: ConfigFile = toml::from_str(
            r#"
            version = "2.0"
            current_profile = "prod"
            [profile.prod]
            cluster = "prod"
            [profile.local]
            cluster = "local"
            [cluster.prod]
            endpoint = "h1:9003,h2:9003"
            token = "secret-token-of-some-length"
            [cluster.prod.tls]
            tls_policy = "verified"
            ca_cert = "/etc/fluvio/ca.pem"
            [cluster.local]
            endpoint = "127.0.0.1:9003"
            "#,
        )
        .unwrap();
        let prod = file.cluster(None).unwrap().unwrap();
        assert_eq!(prod.endpoint, "h1:9003,h2:9003");
        assert_eq!(prod.token.as_deref(), Some("secret-token-of-some-length"));
        assert_eq!(prod.tls, TlsPolicy::Verified(TlsConfig::with_ca("/etc/fluvio/ca.pem")));
        let local = file.cluster(Some("local")).unwrap().unwrap();
        assert_eq!(local.tls, TlsPolicy::Disabled);
        assert_eq!(local.token, None);
        let error = file.cluster(Some("staging")).unwrap_err();
        assert!(error.to_string().contains("no profile \"staging\""), "{error}");
        // Fluvio's older spelling of the address.
        let file: ConfigFile =
            toml::from_str("current_profile = \"a\"\n[profile.a]\ncluster = \"a\"\n[cluster.a]\naddr = \"h:1\"\n")
                .unwrap();
        assert_eq!(file.cluster(None).unwrap().unwrap().endpoint, "h:1");
    }

    #[test]
    fn a_token_never_shows_in_debug_output() {
        let config = FluvioClusterConfig::new("h:1").with_token("secret-token-of-some-length");
        let printed = format!("{config:?}");
        assert!(!printed.contains("secret"), "{printed}");
    }
}
