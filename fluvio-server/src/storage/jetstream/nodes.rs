//! Connections to the cluster's nodes, and the key-value buckets the
//! servers share.

use parking_lot::RwLock;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};

use super::NODE_RETRY;

/// A connection to each NATS node of the cluster, so that each partition's
/// appends go straight to its stream's Raft leader.
///
/// An append through any node works: a node that does not lead the stream
/// forwards the message across a route to the one that does, and the
/// acknowledgement comes back the same way. That hop makes the cluster read
/// and copy every batch once more; on a busy cluster it is CPU the replicas
/// need (measured in docs/benchmarks.md). The main connection stays the one
/// for everything else, and the fallback whenever the leader's node is not
/// connected.
#[derive(Default)]
pub(super) struct NodeConnections {
    clients: RwLock<Vec<async_nats::Client>>,
}

impl NodeConnections {
    /// A JetStream context on the node named `leader`, when connected to it.
    pub(super) fn to(&self, leader: &str) -> Option<jetstream::Context> {
        let clients = self.clients.read();
        clients
            .iter()
            .find(|client| {
                client.connection_state() == async_nats::connection::State::Connected
                    && client.try_server_info().is_some_and(|info| info.server_name == leader)
            })
            .map(|client| jetstream::new(client.clone()))
    }
}

/// Connects to each of `addrs` on its own (not following the cluster: each
/// connection is to be one node's), trying the unreachable ones again every
/// [`NODE_RETRY`] until every node is connected. Once connected, the client
/// reconnects to its node by itself.
pub(super) async fn connect_nodes(nodes: std::sync::Weak<NodeConnections>, mut pending: Vec<async_nats::ServerAddr>) {
    loop {
        let mut unreachable = Vec::new();
        for addr in pending {
            let connected = async_nats::ConnectOptions::new()
                .name("fluvio-server")
                .ignore_discovered_servers()
                .connection_timeout(Duration::from_secs(2))
                .connect(addr.clone())
                .await;
            let Some(nodes) = nodes.upgrade() else { return };
            match connected {
                Ok(client) => {
                    let name = client.server_info().server_name;
                    let mut clients = nodes.clients.write();
                    // The same node under two addresses needs one connection.
                    if !clients.iter().any(|known| known.try_server_info().is_some_and(|i| i.server_name == name)) {
                        clients.push(client);
                    }
                }
                Err(error) => {
                    tracing::debug!(
                        %error,
                        "cannot connect to NATS node {}:{} yet; its streams' appends go through another node",
                        addr.host(),
                        addr.port()
                    );
                    unreachable.push(addr);
                }
            }
        }
        if unreachable.is_empty() {
            return;
        }
        pending = unreachable;
        tokio::time::sleep(NODE_RETRY).await;
    }
}

/// Opens a key-value bucket, creating it when missing. The bucket's stream
/// is made directly, as NATS's key-value layout defines it: async-nats's
/// `create_key_value` first reads account fields that nats-server 2.9 does
/// not send. With a `max_age` other than zero, the cluster drops a key that
/// has not been written for that long.
pub(super) async fn open_bucket(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
    replicas: usize,
    max_age: Duration,
) -> Result<kv::Store, String> {
    if js.get_key_value(bucket).await.is_ok() {
        read_from_leader(js, &format!("KV_{bucket}")).await?;
        return js.get_key_value(bucket).await.map_err(|e| e.to_string());
    }
    let created = js
        .create_stream(stream::Config {
            name: format!("KV_{bucket}"),
            description: Some(description.to_string()),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            allow_rollup: true,
            deny_delete: true,
            // Reads go to the leader: see `read_from_leader`.
            allow_direct: false,
            discard: stream::DiscardPolicy::New,
            max_age,
            ..Default::default()
        })
        .await;
    // Made here or, meanwhile, by another server.
    js.get_key_value(bucket).await.map_err(|error| match created {
        Ok(_) => error.to_string(),
        Err(create_error) => create_error.to_string(),
    })
}

/// Turns off direct gets on a metadata stream made by an older version.
///
/// With direct gets any replica answers a read, and one that lags says that
/// a topic created or a module registered a moment ago through another
/// server does not exist, or that a deleted one still does. Metadata is read
/// rarely, so every read goes to the stream's leader instead. Stores opened
/// on the stream before this call keep the old setting: open them again.
/// Returns the stream (its cached info may predate the change).
pub(crate) async fn read_from_leader(js: &jetstream::Context, stream_name: &str) -> Result<stream::Stream, String> {
    let failed = |reason: String| format!("cannot configure the stream {stream_name}: {reason}");
    let mut stream = js.get_stream(stream_name).await.map_err(|e| failed(e.to_string()))?;
    let mut config = stream.info().await.map_err(|e| failed(e.to_string()))?.config.clone();
    if config.allow_direct {
        config.allow_direct = false;
        js.update_stream(config).await.map_err(|e| failed(e.to_string()))?;
    }
    Ok(stream)
}

/// Metadata is kept with as many copies as the cluster has nodes, up to
/// three (a node lists every node's client URL, itself included).
pub(super) fn metadata_replicas(client: &async_nats::Client) -> usize {
    client.server_info().connect_urls.len().clamp(1, 3)
}
