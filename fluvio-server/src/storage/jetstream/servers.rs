//! The servers alive, one key per server id in [`SERVERS_BUCKET`], each
//! dropped by the cluster when its server stops writing it.

use fluvio_protocol::requests::ServerDescription;

use super::{JetStreamStorage, SERVERS_BUCKET, unavailable};
use crate::storage::TopicError;

/// A server's key: its id, which NATS keys allow as is (digits and `-`).
fn server_key(id: i32) -> String {
    format!("server-{id}")
}

impl JetStreamStorage {
    /// Writes `server`'s entry, renewing it. Another server's entry under
    /// the same id is taken over, with a warning: two servers with one id
    /// would be listed as one.
    pub(super) async fn announce_server(&self, server: &ServerDescription) -> Result<(), TopicError> {
        let key = server_key(server.id);
        let previous = self.servers_kv.get(&key).await.map_err(|e| unavailable("read a server's heartbeat", e))?;
        if let Some(previous) = previous.and_then(|value| serde_json::from_slice::<ServerDescription>(&value).ok())
            && previous.address != server.address
        {
            tracing::warn!(
                id = server.id,
                other = %previous.address,
                "another server announces the same id; give each server its own with --id"
            );
        }
        let value = serde_json::to_vec(server).expect("a server description serializes");
        self.servers_kv.put(&key, value.into()).await.map_err(|e| unavailable("write this server's heartbeat", e))?;
        Ok(())
    }

    /// The servers whose entries have not expired, sorted by id.
    pub(super) async fn live_servers(&self) -> Result<Vec<ServerDescription>, TopicError> {
        let mut servers = Vec::new();
        for key in self.bucket_keys(SERVERS_BUCKET, "list the servers").await? {
            let value = self.servers_kv.get(&key).await.map_err(|e| unavailable("read a server's heartbeat", e))?;
            // Expired between the listing and the read, or not ours.
            if let Some(server) = value.and_then(|value| serde_json::from_slice::<ServerDescription>(&value).ok()) {
                servers.push(server);
            }
        }
        servers.sort_by_key(|server| server.id);
        Ok(servers)
    }
}
