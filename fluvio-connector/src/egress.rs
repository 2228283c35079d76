//! Where connectors may connect: an optional allow-list of hosts and
//! networks, set by whoever runs them (the cluster's operator, with
//! `fluvio-server --connector-egress`, which hands it to every connector
//! in [`EGRESS_ENV`]).
//!
//! A connector config is written by a user of the cluster; without a list,
//! an http-source could fetch the cluster's own private addresses into a
//! topic. With one, the http and mqtt connectors check their endpoint when
//! they read their config: its host must be on the list by name
//! (`api.example.com`, or `*.example.com` for any name under it), or every
//! address it resolves to must lie in a listed network (`10.1.0.0/16`,
//! `127.0.0.1`). The addresses checked are the ones the connector then
//! connects to, so a name that resolves elsewhere later gains nothing.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// The variable that carries the list: comma-separated hosts and networks.
pub const EGRESS_ENV: &str = "FLUVIO_CONNECTOR_EGRESS";

/// The hosts and networks connectors may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    hosts: Vec<String>,
    networks: Vec<(IpAddr, u8)>,
    text: String,
}

impl EgressPolicy {
    /// The list in [`EGRESS_ENV`], if it is set.
    pub fn from_env() -> Result<Option<EgressPolicy>, String> {
        match std::env::var(EGRESS_ENV) {
            Ok(text) => EgressPolicy::parse(&text).map(Some).map_err(|error| format!("{EGRESS_ENV}: {error}")),
            Err(_) => Ok(None),
        }
    }

    /// Reads `host,*.domain,10.0.0.0/8,127.0.0.1` (blanks ignored).
    pub fn parse(text: &str) -> Result<EgressPolicy, String> {
        let mut policy = EgressPolicy { hosts: Vec::new(), networks: Vec::new(), text: text.trim().to_string() };
        for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            let (address, bits) = match item.split_once('/') {
                Some((address, bits)) => (address, Some(bits)),
                None => (item, None),
            };
            match address.parse::<IpAddr>() {
                Ok(ip) => {
                    let most = if ip.is_ipv4() { 32 } else { 128 };
                    let bits = match bits {
                        None => most,
                        Some(bits) => bits
                            .parse::<u8>()
                            .ok()
                            .filter(|bits| *bits <= most)
                            .ok_or_else(|| format!("{item:?} has a prefix length outside 0..={most}"))?,
                    };
                    policy.networks.push((ip, bits));
                }
                Err(_) if bits.is_none() && !item.contains(['/', ':', ' ']) => {
                    policy.hosts.push(item.to_ascii_lowercase());
                }
                Err(_) => return Err(format!("{item:?} is neither a host name nor an address or network")),
            }
        }
        Ok(policy)
    }

    fn allows_name(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.iter().any(|allowed| match allowed.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => *allowed == host,
        })
    }

    fn allows_ip(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|(network, bits)| in_network(ip, *network, *bits))
    }

    /// The addresses `host:port` resolves to, if the list allows it: by
    /// name, or every address in a listed network. The caller connects to
    /// these addresses and no others.
    pub fn check(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<SocketAddr> =
            (host, port).to_socket_addrs().map_err(|error| format!("cannot resolve {host}: {error}"))?.collect();
        if self.allows_name(host) {
            return Ok(addresses);
        }
        if addresses.is_empty() {
            return Err(format!("{host} resolves to no address"));
        }
        match addresses.iter().find(|address| !self.allows_ip(address.ip())) {
            None => Ok(addresses),
            Some(refused) => Err(format!(
                "{host} ({}) is not among the hosts and networks connectors may reach here ({}); ask the operator to add it (fluvio-server --connector-egress)",
                refused.ip(),
                self.text
            )),
        }
    }
}

fn in_network(ip: IpAddr, network: IpAddr, bits: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(network)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
            u32::from(ip) & mask == u32::from(network) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(network)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - u32::from(bits)) };
            u128::from(ip) & mask == u128::from(network) & mask
        }
        (IpAddr::V6(ip), IpAddr::V4(_)) => {
            ip.to_ipv4_mapped().is_some_and(|ip| in_network(IpAddr::V4(ip), network, bits))
        }
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_networks_are_matched_as_written() {
        let policy = EgressPolicy::parse("api.example.com, *.internal.example, 10.1.0.0/16, 127.0.0.1").unwrap();
        assert!(policy.allows_name("API.example.com"));
        assert!(policy.allows_name("db.internal.example"));
        assert!(!policy.allows_name("internal.example"));
        assert!(!policy.allows_name("example.com"));
        assert!(policy.allows_ip("10.1.200.3".parse().unwrap()));
        assert!(!policy.allows_ip("10.2.0.1".parse().unwrap()));
        assert!(policy.allows_ip("127.0.0.1".parse().unwrap()));
        assert!(!policy.allows_ip("127.0.0.2".parse().unwrap()));
        assert!(policy.allows_ip("::ffff:10.1.0.9".parse().unwrap()));
        assert!(EgressPolicy::parse("10.0.0.0/33").is_err());
        assert!(EgressPolicy::parse("not a host").is_err());
    }

    #[test]
    fn an_address_outside_the_list_is_refused_naming_it() {
        let policy = EgressPolicy::parse("10.0.0.0/8").unwrap();
        let error = policy.check("127.0.0.1", 80).unwrap_err();
        assert!(error.contains("127.0.0.1") && error.contains("10.0.0.0/8"), "{error}");
        let allowed = EgressPolicy::parse("127.0.0.0/8").unwrap().check("127.0.0.1", 80).unwrap();
        assert_eq!(allowed, vec!["127.0.0.1:80".parse::<SocketAddr>().unwrap()]);
    }
}
