//! The servers of the cluster as Fluvio's SPUs: [`SpuSpec`] as an admin
//! object, listed with `admin.all::<SpuSpec>()` and watched with
//! [`FluvioAdmin::watch_spus`](super::admin::FluvioAdmin).
//!
//! A server here plays both of Fluvio's roles (controller and SPU), so
//! each live server is one SPU: its id is the server's `--id`, its public
//! endpoint the address it listens on, and the name of its metadata that
//! address too. On a local log the cluster is one server; on JetStream it
//! is every server sharing the cluster whose heartbeat is current (a
//! server that stops is dropped within seconds, see
//! [`list_servers`](crate::Fluvio::list_servers)). Listed SPUs are online:
//! a server that is not is not listed.

use futures::future::BoxFuture;

use super::admin::{AdminSpec, Metadata};
use crate::{Fluvio, FluvioError};

/// A server as Fluvio's SPU spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpuSpec {
    /// The server's id.
    pub id: i32,
    /// Managed by the cluster or declared by hand; servers here are
    /// started by their operators, so `Custom`.
    pub spu_type: SpuType,
    /// Where clients reach it.
    pub public_endpoint: IngressPort,
    /// Where other servers reach it: the same address (servers share
    /// storage, not connections).
    pub private_endpoint: Endpoint,
    /// Its rack; not kept here.
    pub rack: Option<String>,
}

/// Whether an SPU is managed by the cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SpuType {
    /// Started by the cluster.
    Managed,
    /// Started by an operator.
    #[default]
    Custom,
}

/// Where clients reach an SPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngressPort {
    /// The port.
    pub port: u16,
    /// Its addresses.
    pub ingress: Vec<IngressAddr>,
    /// Plain TCP or TLS.
    pub encryption: EncryptionEnum,
}

/// One address of an SPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngressAddr {
    /// A host name, when it listens on one.
    pub hostname: Option<String>,
    /// An IP address.
    pub ip: Option<String>,
}

/// A host and port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// The port.
    pub port: u16,
    /// The host.
    pub host: String,
    /// Plain TCP or TLS.
    pub encryption: EncryptionEnum,
}

/// How an endpoint is reached (Fluvio's names).
#[allow(clippy::upper_case_acronyms, reason = "Fluvio's variant names, which ported code matches on")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EncryptionEnum {
    /// Plain TCP.
    #[default]
    PLAINTEXT,
    /// TLS.
    SSL,
}

/// Whether an SPU serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpuStatus {
    /// Online, offline or starting.
    pub resolution: SpuStatusResolution,
}

impl SpuStatus {
    /// Whether it serves.
    pub fn is_online(&self) -> bool {
        self.resolution == SpuStatusResolution::Online
    }
}

/// An SPU's state (Fluvio's names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SpuStatusResolution {
    /// Serving.
    #[default]
    Online,
    /// Not serving.
    Offline,
    /// Starting.
    Init,
}

impl SpuSpec {
    /// The spec of a server listening at `address` (`host:port`).
    fn of_server(id: i32, address: &str, encryption: EncryptionEnum) -> SpuSpec {
        let (host, port) = match address.rsplit_once(':') {
            Some((host, port)) => (host.trim_start_matches('[').trim_end_matches(']'), port.parse().unwrap_or(0)),
            None => (address, 0),
        };
        let ingress = if host.parse::<std::net::IpAddr>().is_ok() {
            IngressAddr { hostname: None, ip: Some(host.to_string()) }
        } else {
            IngressAddr { hostname: Some(host.to_string()), ip: None }
        };
        SpuSpec {
            id,
            spu_type: SpuType::Custom,
            public_endpoint: IngressPort { port, ingress: vec![ingress], encryption },
            private_endpoint: Endpoint { port, host: host.to_string(), encryption },
            rack: None,
        }
    }
}

impl AdminSpec for SpuSpec {
    type Status = SpuStatus;

    fn all(fluvio: &Fluvio) -> BoxFuture<'_, Result<Vec<Metadata<Self>>, FluvioError>> {
        Box::pin(async move {
            let encryption = if fluvio.uses_tls() { EncryptionEnum::SSL } else { EncryptionEnum::PLAINTEXT };
            Ok(fluvio
                .list_servers()
                .await?
                .into_iter()
                .map(|server| Metadata {
                    name: server.address.clone(),
                    spec: SpuSpec::of_server(server.id, &server.address, encryption),
                    status: SpuStatus { resolution: SpuStatusResolution::Online },
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_becomes_host_and_port() {
        let spec = SpuSpec::of_server(3, "127.0.0.1:9003", EncryptionEnum::PLAINTEXT);
        assert_eq!(spec.public_endpoint.port, 9003);
        assert_eq!(spec.public_endpoint.ingress, [IngressAddr { hostname: None, ip: Some("127.0.0.1".into()) }]);
        assert_eq!(spec.private_endpoint.host, "127.0.0.1");
        let spec = SpuSpec::of_server(4, "[::1]:9010", EncryptionEnum::SSL);
        assert_eq!((spec.private_endpoint.host.as_str(), spec.private_endpoint.port), ("::1", 9010));
        let spec = SpuSpec::of_server(5, "fluvio.example.com:9003", EncryptionEnum::SSL);
        assert_eq!(spec.public_endpoint.ingress[0].hostname.as_deref(), Some("fluvio.example.com"));
    }
}
