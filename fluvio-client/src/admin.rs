//! The admin calls: topics, consumers' offsets, SmartModules and
//! connectors. Each is [`Fluvio::send`] with its request type, shaped for
//! callers (names as `&str`, answers unwrapped); Fluvio's `FluvioAdmin`
//! shape of the same calls is in [`crate::compat`].

use fluvio_protocol::requests::ConsumerOffsetKey;
use fluvio_protocol::requests::{
    CommitOffsetRequest, ConnectorLogsRequest, CreateConnectorRequest, CreateDerivedTopicRequest,
    CreateSmartModuleRequest, CreateTopicRequest, DeleteConnectorRequest, DeleteConsumerRequest,
    DeleteSmartModuleRequest, DeleteTopicRequest, DerivedTopicInfo, DescribeSmartModulesRequest, FetchOffsetRequest,
    GetSmartModuleRequest, ListConnectorsRequest, ListConsumersPageRequest, ListDerivedTopicsRequest,
    ListServersRequest, ListSmartModulesRequest, ListTopicsRequest, MAX_CONSUMERS_PAGE, ResumeDerivedTopicRequest,
    ServerDescription, SmartModuleDescription,
};
use fluvio_protocol::{ConnectorInfo, ConsumerOffset, RetentionSpec, SmartModuleInfo, TopicInfo};

use crate::{Fluvio, FluvioError};

impl Fluvio {
    /// Creates a topic with `partitions` partitions, one copy and no
    /// retention limit.
    pub async fn create_topic(&self, name: &str, partitions: u32) -> Result<(), FluvioError> {
        self.create_topic_with(name, partitions, RetentionSpec::default()).await
    }

    /// Creates a topic whose partitions are each kept in `replication`
    /// copies (a JetStream cluster; the local log keeps one).
    pub async fn create_replicated_topic(
        &self,
        name: &str,
        partitions: u32,
        replication: u32,
        retention: RetentionSpec,
    ) -> Result<(), FluvioError> {
        self.send(CreateTopicRequest { name: name.to_string(), partitions, replication, retention }).await?;
        Ok(())
    }

    /// Creates a topic with retention settings.
    pub async fn create_topic_with(
        &self,
        name: &str,
        partitions: u32,
        retention: RetentionSpec,
    ) -> Result<(), FluvioError> {
        self.create_replicated_topic(name, partitions, 1, retention).await
    }

    /// Deletes a topic and its records.
    pub async fn delete_topic(&self, name: &str) -> Result<(), FluvioError> {
        self.send(DeleteTopicRequest { name: name.to_string(), force: false }).await?;
        Ok(())
    }

    /// Deletes a topic even though derived topics read it (their
    /// pipelines stop) or send it their dead letters.
    pub async fn force_delete_topic(&self, name: &str) -> Result<(), FluvioError> {
        self.send(DeleteTopicRequest { name: name.to_string(), force: true }).await?;
        Ok(())
    }

    /// Lists topics.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, FluvioError> {
        Ok(self.send(ListTopicsRequest).await?.topics)
    }

    /// One topic's settings and partitions, or `TopicNotFound`.
    pub async fn topic_info(&self, topic: &str) -> Result<TopicInfo, FluvioError> {
        let topics = self.list_topics().await?;
        topics.into_iter().find(|t| t.name == topic).ok_or_else(|| FluvioError::TopicNotFound(topic.to_string()))
    }

    /// Stores, on the server, the offset `consumer` reads next in a
    /// partition: a stream with that consumer id resumes there.
    pub async fn commit_offset(
        &self,
        consumer: &str,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> Result<(), FluvioError> {
        let request =
            CommitOffsetRequest { consumer: consumer.to_string(), topic: topic.to_string(), partition, offset };
        self.send(request).await?;
        Ok(())
    }

    /// The offset `consumer` committed last in a partition, if any.
    pub async fn fetch_offset(&self, consumer: &str, topic: &str, partition: u32) -> Result<Option<i64>, FluvioError> {
        let request = FetchOffsetRequest { consumer: consumer.to_string(), topic: topic.to_string(), partition };
        Ok(self.send(request).await?.offset)
    }

    /// Every consumer's stored offsets (in the topics this client may see),
    /// asked for page by page so that any number fit.
    pub async fn list_consumers(&self) -> Result<Vec<ConsumerOffset>, FluvioError> {
        let mut offsets: Vec<ConsumerOffset> = Vec::new();
        loop {
            let after = offsets.last().map(ConsumerOffsetKey::of);
            let page = self.send(ListConsumersPageRequest { after, limit: MAX_CONSUMERS_PAGE }).await?;
            offsets.extend(page.offsets);
            if !page.more {
                return Ok(offsets);
            }
        }
    }

    /// Forgets a consumer's stored offsets, in one topic or in all.
    pub async fn delete_consumer(&self, consumer: &str, topic: Option<&str>) -> Result<(), FluvioError> {
        self.send(DeleteConsumerRequest { consumer: consumer.to_string(), topic: topic.map(str::to_string) }).await?;
        Ok(())
    }

    /// Registers a SmartModule; the server validates it first.
    pub async fn create_smartmodule(&self, name: &str, wasm: Vec<u8>) -> Result<SmartModuleInfo, FluvioError> {
        Ok(self.send(CreateSmartModuleRequest { name: name.to_string(), wasm }).await?.info)
    }

    /// Lists registered SmartModules.
    pub async fn list_smartmodules(&self) -> Result<Vec<SmartModuleInfo>, FluvioError> {
        Ok(self.send(ListSmartModulesRequest).await?.modules)
    }

    /// The registered SmartModules (or those named, when `names` is not
    /// empty) with the guest ABI each is built for.
    pub async fn describe_smartmodules(&self, names: &[&str]) -> Result<Vec<SmartModuleDescription>, FluvioError> {
        let names = names.iter().map(|name| name.to_string()).collect();
        Ok(self.send(DescribeSmartModulesRequest { names }).await?.modules)
    }

    /// The servers serving the cluster now, sorted by id: this server alone
    /// on a local log; on JetStream, every server sharing the cluster that
    /// has sent a heartbeat within the last few seconds.
    pub async fn list_servers(&self) -> Result<Vec<ServerDescription>, FluvioError> {
        Ok(self.send(ListServersRequest).await?.servers)
    }

    /// Creates a derived topic: `request.name`'s records are
    /// `request.source`'s passed through `request.transforms` (registered
    /// SmartModules) by the server, exactly once, from the source's first
    /// record on. Refused, with nothing created, when the source is
    /// missing, a module is unknown or of the wrong kind, or the chain
    /// names a module by file.
    pub async fn create_derived_topic(&self, request: CreateDerivedTopicRequest) -> Result<(), FluvioError> {
        self.send(request).await?;
        Ok(())
    }

    /// The derived topics, with the state of each pipeline.
    pub async fn list_derived_topics(&self) -> Result<Vec<DerivedTopicInfo>, FluvioError> {
        Ok(self.send(ListDerivedTopicsRequest).await?.topics)
    }

    /// Starts a derived topic's stopped pipelines again, each from the
    /// record it stopped at; returns how many.
    pub async fn resume_derived_topic(&self, name: &str) -> Result<u32, FluvioError> {
        Ok(self.send(ResumeDerivedTopicRequest { name: name.to_string() }).await?.resumed)
    }

    /// Deletes a registered SmartModule.
    pub async fn delete_smartmodule(&self, name: &str) -> Result<(), FluvioError> {
        self.send(DeleteSmartModuleRequest { name: name.to_string(), force: false }).await?;
        Ok(())
    }

    /// Deletes a registered SmartModule even though derived topics run it:
    /// their pipelines stop, and go on (`resume_derived_topic`) once a
    /// module of that name is registered again.
    pub async fn force_delete_smartmodule(&self, name: &str) -> Result<(), FluvioError> {
        self.send(DeleteSmartModuleRequest { name: name.to_string(), force: true }).await?;
        Ok(())
    }

    /// Downloads a registered SmartModule's wasm.
    pub async fn get_smartmodule(&self, name: &str) -> Result<(SmartModuleInfo, Vec<u8>), FluvioError> {
        let module = self.send(GetSmartModuleRequest { name: name.to_string() }).await?;
        Ok((module.info, module.wasm))
    }

    /// Hands a connector to the cluster, which checks its config, runs it
    /// as its own process and restarts it when it stops. `secrets` are the
    /// values of the secrets the config names.
    pub async fn create_connector(
        &self,
        config: &str,
        secrets: Vec<(String, String)>,
    ) -> Result<ConnectorInfo, FluvioError> {
        Ok(self.send(CreateConnectorRequest { config: config.to_string(), secrets }).await?.info)
    }

    /// Lists the cluster's connectors and what each is doing.
    pub async fn list_connectors(&self) -> Result<Vec<ConnectorInfo>, FluvioError> {
        Ok(self.send(ListConnectorsRequest).await?.connectors)
    }

    /// Stops a connector and deletes it.
    pub async fn delete_connector(&self, name: &str) -> Result<(), FluvioError> {
        self.send(DeleteConnectorRequest { name: name.to_string() }).await?;
        Ok(())
    }

    /// Part of a connector's log from byte `offset`, and the offset to read
    /// from next (an empty text means nothing new yet).
    pub async fn connector_logs(&self, name: &str, offset: u64) -> Result<(Vec<u8>, u64), FluvioError> {
        let logs = self.send(ConnectorLogsRequest { name: name.to_string(), offset }).await?;
        Ok((logs.text, logs.next_offset))
    }
}
