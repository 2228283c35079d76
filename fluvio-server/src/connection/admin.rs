//! The admin requests' handlers: topics, SmartModules, connectors and
//! consumers' offsets. Each turns its request into calls on the storage,
//! the registry or the connectors, and their answers into its response.

use fluvio_protocol::requests::ConsumerOffsetKey;
use fluvio_protocol::requests::{
    CommitOffsetRequest, CommitOffsetResponse, ConnectorLogsRequest, ConnectorLogsResponse, CreateConnectorRequest,
    CreateConnectorResponse, CreateDerivedTopicRequest, CreateDerivedTopicResponse, CreateSmartModuleRequest,
    CreateSmartModuleResponse, CreateTopicRequest, CreateTopicResponse, DeleteConnectorRequest,
    DeleteConnectorResponse, DeleteConsumerOffsetRequest, DeleteConsumerOffsetResponse, DeleteConsumerRequest,
    DeleteConsumerResponse, DeleteSmartModuleRequest, DeleteSmartModuleResponse, DeleteTopicRequest,
    DeleteTopicResponse, DescribeSmartModulesRequest, DescribeSmartModulesResponse, FetchOffsetRequest,
    FetchOffsetResponse, GetSmartModuleRequest, GetSmartModuleResponse, ListConnectorsRequest, ListConnectorsResponse,
    ListConsumersPageRequest, ListConsumersPageResponse, ListConsumersRequest, ListConsumersResponse,
    ListDerivedTopicsRequest, ListDerivedTopicsResponse, ListServersRequest, ListServersResponse,
    ListSmartModulesRequest, ListSmartModulesResponse, ListTopicsRequest, ListTopicsResponse, MAX_CONSUMERS_PAGE,
    ResumeDerivedTopicRequest, ResumeDerivedTopicResponse, ServerInfoRequest, ServerInfoResponse,
};
use fluvio_protocol::{ConsumerOffset, ErrorCode};

use super::dispatch::Handle;
use super::error::{ServerError, limit_reached};
use super::session::Session;
use crate::ServerContext;
use crate::storage::TopicSpec;

impl Handle for CreateTopicRequest {
    const ADMIN_ONLY: bool = true;

    async fn handle(self, context: &ServerContext, _: &Session) -> Result<CreateTopicResponse, ServerError> {
        let spec = TopicSpec {
            name: self.name,
            partitions: self.partitions,
            replication: self.replication,
            retention: self.retention,
        };
        context.storage.create_topic(spec).await?;
        Ok(CreateTopicResponse)
    }
}

impl Handle for DeleteTopicRequest {
    const ADMIN_ONLY: bool = true;

    async fn handle(self, context: &ServerContext, _: &Session) -> Result<DeleteTopicResponse, ServerError> {
        if self.force {
            context.derived.stop_readers_of(&self.name);
        } else {
            context.derived.check_deletable(&self.name)?;
        }
        // A derived topic's pipelines stop before its records go.
        context.derived.forget(&self.name).await?;
        let deleted = context.storage.delete_topic(&self.name).await;
        // The topic's consumer offsets went with it.
        context.consumer_ids.forget().await;
        deleted?;
        Ok(DeleteTopicResponse)
    }
}

impl Handle for ListTopicsRequest {
    async fn handle(self, context: &ServerContext, session: &Session) -> Result<ListTopicsResponse, ServerError> {
        let mut topics = context.storage.list_topics().await?;
        topics.retain(|topic| session.may_see(&topic.name));
        Ok(ListTopicsResponse { topics })
    }
}

impl Handle for CreateSmartModuleRequest {
    const ADMIN_ONLY: bool = true;

    async fn handle(self, context: &ServerContext, _: &Session) -> Result<CreateSmartModuleResponse, ServerError> {
        let info = context.registry.create(&self.name, self.wasm).await?;
        Ok(CreateSmartModuleResponse { info })
    }
}

impl Handle for ListSmartModulesRequest {
    async fn handle(self, context: &ServerContext, _: &Session) -> Result<ListSmartModulesResponse, ServerError> {
        Ok(ListSmartModulesResponse { modules: context.registry.list().await? })
    }
}

impl Handle for DescribeSmartModulesRequest {
    async fn handle(self, context: &ServerContext, _: &Session) -> Result<DescribeSmartModulesResponse, ServerError> {
        let mut modules = context.registry.describe().await?;
        if !self.names.is_empty() {
            modules.retain(|module| self.names.contains(&module.info.name));
        }
        Ok(DescribeSmartModulesResponse { modules })
    }
}

impl Handle for ServerInfoRequest {
    async fn handle(self, _: &ServerContext, _: &Session) -> Result<ServerInfoResponse, ServerError> {
        Ok(ServerInfoResponse { version: env!("CARGO_PKG_VERSION").to_string() })
    }
}

impl Handle for CreateDerivedTopicRequest {
    const ADMIN_ONLY: bool = true;

    async fn handle(self, context: &ServerContext, _: &Session) -> Result<CreateDerivedTopicResponse, ServerError> {
        context.derived.create(context, self).await?;
        Ok(CreateDerivedTopicResponse)
    }
}

impl Handle for ListDerivedTopicsRequest {
    async fn handle(
        self,
        context: &ServerContext,
        session: &Session,
    ) -> Result<ListDerivedTopicsResponse, ServerError> {
        let mut topics = context.derived.list(context).await;
        topics.retain(|topic| session.may_see(&topic.name));
        Ok(ListDerivedTopicsResponse { topics })
    }
}

impl Handle for ResumeDerivedTopicRequest {
    const ADMIN_ONLY: bool = true;

    async fn handle(self, context: &ServerContext, _: &Session) -> Result<ResumeDerivedTopicResponse, ServerError> {
        Ok(ResumeDerivedTopicResponse { resumed: context.derived.resume(&self.name)? })
    }
}

impl Handle for ListServersRequest {
    async fn handle(self, context: &ServerContext, _: &Session) -> Result<ListServersResponse, ServerError> {
        let mut servers = context.storage.servers().await?;
        // The answering server is alive, whether or not its first
        // heartbeat has been written yet.
        let this_server = &context.this_server;
        if !servers.iter().any(|server| server.id == this_server.id && server.address == this_server.address) {
            servers.retain(|server| server.id != this_server.id);
            servers.push(this_server.clone());
            servers.sort_by_key(|server| server.id);
        }
        Ok(ListServersResponse { servers, this_server: this_server.id })
    }
}

impl Handle for DeleteSmartModuleRequest {
    const ADMIN_ONLY: bool = true;

    async fn handle(self, context: &ServerContext, _: &Session) -> Result<DeleteSmartModuleResponse, ServerError> {
        if self.force {
            context.derived.stop_users_of(&self.name);
        } else {
            context.derived.check_module_unused(&self.name)?;
        }
        context.registry.delete(&self.name).await?;
        Ok(DeleteSmartModuleResponse)
    }
}

impl Handle for GetSmartModuleRequest {
    async fn handle(self, context: &ServerContext, _: &Session) -> Result<GetSmartModuleResponse, ServerError> {
        let (module, wasm) = context.registry.get(&self.name).await?;
        Ok(GetSmartModuleResponse { info: crate::registry::info(&self.name, &module), wasm })
    }
}

impl Handle for CreateConnectorRequest {
    const ADMIN_ONLY: bool = true;

    async fn handle(self, context: &ServerContext, _: &Session) -> Result<CreateConnectorResponse, ServerError> {
        Ok(CreateConnectorResponse { info: context.connectors.create(self).await? })
    }
}

impl Handle for ListConnectorsRequest {
    const ADMIN_ONLY: bool = true;

    async fn handle(self, context: &ServerContext, _: &Session) -> Result<ListConnectorsResponse, ServerError> {
        Ok(ListConnectorsResponse { connectors: context.connectors.list().await })
    }
}

impl Handle for DeleteConnectorRequest {
    const ADMIN_ONLY: bool = true;

    async fn handle(self, context: &ServerContext, _: &Session) -> Result<DeleteConnectorResponse, ServerError> {
        context.connectors.delete(&self.name).await?;
        Ok(DeleteConnectorResponse)
    }
}

impl Handle for ConnectorLogsRequest {
    const ADMIN_ONLY: bool = true;

    async fn handle(self, context: &ServerContext, _: &Session) -> Result<ConnectorLogsResponse, ServerError> {
        let (text, next_offset) = context.connectors.logs(&self.name, self.offset).await?;
        Ok(ConnectorLogsResponse { next_offset, text })
    }
}

impl Handle for CommitOffsetRequest {
    async fn handle(self, context: &ServerContext, session: &Session) -> Result<CommitOffsetResponse, ServerError> {
        session.require_topic(&self.topic)?;
        check_consumer(&self.consumer)?;
        let partition = context.storage.partition(&self.topic, self.partition).await?;
        let end = partition.next_offset();
        if self.offset < 0 || self.offset > end {
            return Err(ServerError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "cannot commit offset {} for consumer {:?}: partition {} of topic {:?} holds offsets up to {end}",
                    self.offset, self.consumer, self.partition, self.topic
                ),
            ));
        }
        let place = (self.topic.as_str(), self.partition, self.offset);
        context.consumer_ids.commit(&*context.storage, &self.consumer, place, session.quota_key()).await?;
        Ok(CommitOffsetResponse)
    }
}

impl Handle for FetchOffsetRequest {
    async fn handle(self, context: &ServerContext, session: &Session) -> Result<FetchOffsetResponse, ServerError> {
        session.require_topic(&self.topic)?;
        check_consumer(&self.consumer)?;
        context.storage.partition(&self.topic, self.partition).await?;
        let offset = context.storage.fetch_offset(&self.consumer, &self.topic, self.partition).await?;
        Ok(FetchOffsetResponse { offset })
    }
}

/// The stored offsets the session may see, in order.
async fn visible_offsets(context: &ServerContext, session: &Session) -> Result<Vec<ConsumerOffset>, ServerError> {
    let offsets = context.storage.list_offsets().await?;
    Ok(offsets.into_iter().map(|stored| stored.offset).filter(|offset| session.may_see(&offset.topic)).collect())
}

impl Handle for ListConsumersRequest {
    async fn handle(self, context: &ServerContext, session: &Session) -> Result<ListConsumersResponse, ServerError> {
        let offsets = visible_offsets(context, session).await?;
        // An answer must fit one frame; clients that page never ask this.
        if offsets.len() > MAX_CONSUMERS_PAGE as usize {
            return Err(limit_reached(format!(
                "{} consumer offsets are more than one answer holds ({MAX_CONSUMERS_PAGE}); this client predates paged listing: upgrade it",
                offsets.len()
            )));
        }
        Ok(ListConsumersResponse { offsets })
    }
}

impl Handle for ListConsumersPageRequest {
    async fn handle(
        self,
        context: &ServerContext,
        session: &Session,
    ) -> Result<ListConsumersPageResponse, ServerError> {
        let limit = self.limit.clamp(1, MAX_CONSUMERS_PAGE) as usize;
        let mut offsets = visible_offsets(context, session).await?;
        if let Some(after) = &self.after {
            offsets.retain(|offset| ConsumerOffsetKey::of(offset) > *after);
        }
        let more = offsets.len() > limit;
        offsets.truncate(limit);
        Ok(ListConsumersPageResponse { offsets, more })
    }
}

impl Handle for DeleteConsumerRequest {
    const ADMIN_ONLY: bool = true;

    async fn handle(self, context: &ServerContext, _: &Session) -> Result<DeleteConsumerResponse, ServerError> {
        check_consumer(&self.consumer)?;
        // The partitions whose saved windows go with the offsets.
        let stored = context.storage.list_offsets().await?;
        let forgotten = context.storage.delete_offsets(Some(&self.consumer), self.topic.as_deref(), None).await;
        context.consumer_ids.forget().await;
        let forgotten = forgotten?;
        for owned in stored.iter().map(|owned| &owned.offset) {
            if owned.consumer == self.consumer && self.topic.as_ref().is_none_or(|topic| *topic == owned.topic) {
                forget_windows(context, &owned.consumer, &owned.topic, owned.partition).await;
            }
        }
        if forgotten == 0 {
            let place = self.topic.map_or_else(String::new, |topic| format!(" in topic {topic:?}"));
            return Err(ServerError::new(
                ErrorCode::ConsumerNotFound,
                format!("consumer {:?} has no stored offsets{place}; see `fluvio consumer list`", self.consumer),
            ));
        }
        Ok(DeleteConsumerResponse)
    }
}

impl Handle for DeleteConsumerOffsetRequest {
    const ADMIN_ONLY: bool = true;

    async fn handle(self, context: &ServerContext, _: &Session) -> Result<DeleteConsumerOffsetResponse, ServerError> {
        check_consumer(&self.consumer)?;
        let forgotten =
            context.storage.delete_offsets(Some(&self.consumer), Some(&self.topic), Some(self.partition)).await;
        context.consumer_ids.forget().await;
        if forgotten? == 0 {
            return Err(ServerError::new(
                ErrorCode::ConsumerNotFound,
                format!(
                    "consumer {:?} has no stored offset in partition {} of topic {:?}; see `fluvio consumer list`",
                    self.consumer, self.partition, self.topic
                ),
            ));
        }
        forget_windows(context, &self.consumer, &self.topic, self.partition).await;
        Ok(DeleteConsumerOffsetResponse)
    }
}

/// Forgets the windows a consumer's streams of a partition saved with its
/// offsets (logged when it cannot: the offsets are gone, and windows are
/// only restored at or before a stored offset).
async fn forget_windows(context: &ServerContext, consumer: &str, topic: &str, partition: u32) {
    let owner = crate::derived::store::WindowsOwner::Consumer { consumer, topic, partition };
    if let Err(error) = context.derived.store().remove_windows(owner).await {
        tracing::warn!(consumer, topic, partition, %error, "cannot delete a consumer's saved windows");
    }
}

fn check_consumer(id: &str) -> Result<(), ServerError> {
    crate::storage::validate_consumer_id(id).map_err(|e| ServerError::new(ErrorCode::InvalidRequest, e.to_string()))
}
