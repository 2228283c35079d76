//! Derived topics: topics whose records are another topic's passed through
//! a chain of registered SmartModules by the server, exactly once.
//!
//! A derived topic is a topic like any other for consumers; only its
//! pipelines write to it. Each source partition has a pipeline that reads
//! it and appends to the derived topic's partition of the same number.
//! Every batch a pipeline appends says, in its last record, which source
//! range it came from and what the chain's aggregates held after it
//! ([`provenance`]); a pipeline that starts (after a restart, a kill -9)
//! goes on from there, so that no source record is skipped or passed on
//! twice. A checkpoint file per pipeline notes progress that produced no
//! output (filtered records, dead letters), so that it is not read again.
//!
//! This module keeps the derived topics' settings (one JSON file each under
//! `DATA_DIR/derived/`), checks a new one before anything is created, and
//! runs the pipelines ([`pipeline`]). It knows topics only through the
//! [`Storage`](crate::storage::Storage) boundary and modules through the
//! registry.

pub mod pipeline;
pub mod provenance;
pub mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use fluvio_protocol::requests::{CreateDerivedTopicRequest, DerivedTopicInfo, PipelineState, PipelineStatus};
use fluvio_protocol::{ErrorPolicy, RetentionSpec, SmartModuleInvocation, SmartModuleInvocationWasm};
use fluvio_smartengine::EngineError;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::ServerContext;
use crate::registry::RegistryError;
use crate::storage::{TopicError, TopicSpec};
use store::DerivedStore;

/// A derived topic's settings, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DerivationSpec {
    /// The derived topic.
    pub name: String,
    /// The topic it derives from.
    pub source: String,
    /// Its partitions.
    pub partitions: u32,
    /// The source's partitions when the derived topic was created (a
    /// pipeline each); 0 in settings stored before this was kept, which
    /// had as many as the derived topic.
    #[serde(default)]
    pub source_partitions: u32,
    /// Copies of each partition.
    pub replication: u32,
    /// Its retention.
    pub retention: RetentionSpec,
    /// The chain: registered modules, with their params.
    pub transforms: Vec<SmartModuleInvocation>,
    /// What a record a module fails on does.
    pub policy: ErrorPolicy,
    /// Where failed records go under the dead-letter policy.
    pub dead_letter_topic: Option<String>,
}

impl DerivationSpec {
    /// How many pipelines it has: one per source partition.
    pub fn pipelines(&self) -> u32 {
        if self.source_partitions == 0 { self.partitions } else { self.source_partitions }
    }

    /// Whether outputs are routed by key (the partition counts differ),
    /// rather than source partition n feeding derived partition n.
    pub fn routed(&self) -> bool {
        self.pipelines() != self.partitions
    }

    /// The registered modules its chain uses.
    /// Whether an aggregate of the chain runs in a window.
    fn windowed(&self) -> bool {
        self.transforms.iter().any(|invocation| invocation.params.window().is_some())
    }

    fn modules(&self) -> impl Iterator<Item = &str> {
        self.transforms.iter().filter_map(|invocation| match &invocation.wasm {
            SmartModuleInvocationWasm::Predefined(name) => Some(name.as_str()),
            _ => None,
        })
    }
}

/// Why a derived topic could not be created, changed or written.
#[derive(Debug, thiserror::Error)]
pub enum DerivedError {
    /// A topic would derive from itself.
    #[error("topic {0:?} cannot derive from itself: that is a cycle")]
    Cycle(String),
    /// The source topic does not exist.
    #[error("derived topic {name:?}: its source topic {source_topic:?} does not exist; create it first")]
    SourceNotFound {
        /// The derived topic.
        name: String,
        /// The missing source.
        source_topic: String,
    },
    /// The chain names a module by file, not by registered name.
    #[error(
        "derived topic {name:?}: its chain may use only registered SmartModules (the server runs it long after this client is gone); register {module:?} with `fluvio smart-module create` and name it in the transforms"
    )]
    AdHocModule {
        /// The derived topic.
        name: String,
        /// The module given as a file.
        module: String,
    },
    /// The dead-letter policy needs a topic to send failed records to.
    #[error(
        "derived topic {0:?}: the dead-letter policy needs a topic for failed records; name one with --dead-letter-topic"
    )]
    NoDeadLetterTopic(String),
    /// The dead-letter topic is the derived topic or its source.
    #[error(
        "derived topic {name:?}: the dead-letter topic {topic:?} must be another topic than the derived topic and its source"
    )]
    DeadLetterTopic {
        /// The derived topic.
        name: String,
        /// The dead-letter topic named.
        topic: String,
    },
    /// A module of the chain is unknown or does not fit its place.
    #[error("derived topic {name:?}: {error}")]
    Chain {
        /// The derived topic.
        name: String,
        /// What the engine said.
        error: EngineError,
    },
    /// The registry could not be read.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The topic is not a derived one.
    #[error("topic {0:?} is not a derived topic; `fluvio topic list` marks those that are")]
    NotDerived(String),
    /// Other derived topics read the topic (as their source or their
    /// dead-letter topic).
    #[error("topic {topic:?} is used by the derived topic(s) {}: delete those first", users.join(", "))]
    TopicInUse {
        /// The topic.
        topic: String,
        /// The derived topics that use it.
        users: Vec<String>,
    },
    /// Derived topics run the module.
    #[error("SmartModule {module:?} is used by the derived topic(s) {}: delete those first", users.join(", "))]
    ModuleInUse {
        /// The module.
        module: String,
        /// The derived topics whose chains use it.
        users: Vec<String>,
    },
    /// Only the pipelines write to a derived topic.
    #[error(
        "topic {topic:?} is derived from {source_topic:?}: only its pipelines write to it; produce to {source_topic:?} instead"
    )]
    ReadOnly {
        /// The derived topic.
        topic: String,
        /// Its source.
        source_topic: String,
    },
    /// The topic store refused or failed.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The settings could not be written or read.
    #[error("cannot keep the settings of derived topics in {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A derived topic being served: its settings and a pipeline per
/// partition.
struct Derived {
    spec: Arc<DerivationSpec>,
    pipelines: Vec<pipeline::Handle>,
}

/// How often a server sharing a cluster looks for derived topics created
/// or deleted through other servers.
const SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Every derived topic of the server (of the cluster, on JetStream).
pub struct Derivations {
    store: DerivedStore,
    topics: Mutex<BTreeMap<String, Derived>>,
    /// The server, once it runs: pipelines hold it while they run.
    server: std::sync::OnceLock<std::sync::Weak<ServerContext>>,
}

impl Derivations {
    /// Loads the settings of every derived topic from `store`; their
    /// pipelines start with [`start_all`](Self::start_all).
    pub async fn open(store: DerivedStore) -> Result<Derivations, DerivedError> {
        let topics = store
            .load()
            .await?
            .into_iter()
            .map(|spec| (spec.name.clone(), Derived { spec: Arc::new(spec), pipelines: Vec::new() }))
            .collect();
        Ok(Derivations { store, topics: Mutex::new(topics), server: Default::default() })
    }

    /// Where settings, checkpoints and leases are kept.
    pub(crate) fn store(&self) -> &DerivedStore {
        &self.store
    }

    /// Starts every derived topic's pipelines (creating a topic whose
    /// settings were stored but whose creation a crash cut short) and, on
    /// a shared cluster, follows the derived topics other servers create
    /// and delete.
    pub async fn start_all(&self, context: &Arc<ServerContext>) {
        let _ = self.server.set(Arc::downgrade(context));
        let specs: Vec<Arc<DerivationSpec>> = self.topics.lock().values().map(|d| Arc::clone(&d.spec)).collect();
        for spec in specs {
            if let Err(error) = create_topics(context, &spec).await
                && !matches!(error, DerivedError::Topic(TopicError::Exists(_)))
            {
                tracing::error!(topic = %spec.name, %error, "a derived topic's topic could not be created");
            }
            self.start(&spec);
        }
        if self.store.is_shared() {
            tokio::spawn(follow_cluster(Arc::downgrade(context)));
        }
    }

    /// Takes in the derived topics the cluster has now: starts the new
    /// ones, stops those deleted elsewhere.
    async fn sync(&self) -> Result<(), DerivedError> {
        let specs = self.store.load().await?;
        let mut added = Vec::new();
        {
            let mut topics = self.topics.lock();
            topics.retain(|name, _| specs.iter().any(|spec| &spec.name == name));
            for spec in specs {
                if !topics.contains_key(&spec.name) {
                    let spec = Arc::new(spec);
                    topics.insert(spec.name.clone(), Derived { spec: Arc::clone(&spec), pipelines: Vec::new() });
                    added.push(spec);
                }
            }
        }
        for spec in added {
            self.start(&spec);
        }
        Ok(())
    }

    /// Starts (or starts again) each pipeline of `spec` that does not run
    /// (none before the server runs: [`start_all`](Self::start_all) will).
    fn start(&self, spec: &Arc<DerivationSpec>) -> u32 {
        let Some(context) = self.server.get().and_then(std::sync::Weak::upgrade) else { return 0 };
        let context = &context;
        let mut topics = self.topics.lock();
        let Some(derived) = topics.get_mut(&spec.name) else { return 0 };
        let mut started = 0;
        for partition in 0..spec.pipelines() {
            match derived.pipelines.get_mut(partition as usize) {
                Some(handle) if handle.is_running() => {}
                Some(handle) => {
                    handle.restart(context, spec);
                    started += 1;
                }
                None => {
                    derived.pipelines.push(pipeline::Handle::start(context, spec, partition));
                    started += 1;
                }
            }
        }
        started
    }

    /// Checks a derived topic, stores its settings, creates its topic (and
    /// its dead-letter topic when missing) and starts its pipelines.
    /// Nothing is created when a check fails.
    pub async fn create(
        &self,
        context: &ServerContext,
        request: CreateDerivedTopicRequest,
    ) -> Result<(), DerivedError> {
        let spec = check(context, request).await?;
        if self.topics.lock().contains_key(&spec.name) {
            return Err(DerivedError::Topic(TopicError::Exists(spec.name.clone())));
        }
        self.store.create(&spec).await?;
        if let Err(error) = create_topics(context, &spec).await {
            let _ = self.store.remove(&spec.name, spec.pipelines()).await;
            return Err(error);
        }
        let spec = Arc::new(spec);
        self.topics.lock().insert(spec.name.clone(), Derived { spec: Arc::clone(&spec), pipelines: Vec::new() });
        self.start(&spec);
        Ok(())
    }

    /// The derived topics, with each pipeline's state.
    pub async fn list(&self, context: &ServerContext) -> Vec<DerivedTopicInfo> {
        let snapshot: Vec<(Arc<DerivationSpec>, Vec<PipelineStatus>)> = self
            .topics
            .lock()
            .values()
            .map(|derived| (Arc::clone(&derived.spec), derived.pipelines.iter().map(|p| p.status()).collect()))
            .collect();
        let mut topics = Vec::with_capacity(snapshot.len());
        for (spec, mut pipelines) in snapshot {
            for status in &mut pipelines {
                if let Ok(source) = context.storage.partition(&spec.source, status.source_partition).await {
                    status.source_end = source.next_offset();
                }
            }
            topics.push(DerivedTopicInfo {
                name: spec.name.clone(),
                source: spec.source.clone(),
                transforms: spec.transforms.clone(),
                policy: spec.policy,
                dead_letter_topic: spec.dead_letter_topic.clone(),
                pipelines,
            });
        }
        topics
    }

    /// Starts the failed pipelines of `name` again; returns how many.
    pub fn resume(&self, name: &str) -> Result<u32, DerivedError> {
        let spec = self.spec(name).ok_or_else(|| DerivedError::NotDerived(name.to_string()))?;
        Ok(self.start(&spec))
    }

    fn spec(&self, name: &str) -> Option<Arc<DerivationSpec>> {
        self.topics.lock().get(name).map(|derived| Arc::clone(&derived.spec))
    }

    /// The source of `topic`, if it is a derived topic.
    pub fn source_of(&self, topic: &str) -> Option<String> {
        self.topics.lock().get(topic).map(|derived| derived.spec.source.clone())
    }

    /// Refuses an append to a derived topic: only its pipelines write.
    pub fn check_writable(&self, topic: &str) -> Result<(), DerivedError> {
        match self.source_of(topic) {
            Some(source_topic) => Err(DerivedError::ReadOnly { topic: topic.to_string(), source_topic }),
            None => Ok(()),
        }
    }

    /// Refuses to delete a topic other derived topics read or write.
    pub fn check_deletable(&self, topic: &str) -> Result<(), DerivedError> {
        let users: Vec<String> = self
            .topics
            .lock()
            .values()
            .filter(|derived| derived.spec.source == topic || derived.spec.dead_letter_topic.as_deref() == Some(topic))
            .map(|derived| derived.spec.name.clone())
            .collect();
        if users.is_empty() { Ok(()) } else { Err(DerivedError::TopicInUse { topic: topic.to_string(), users }) }
    }

    /// Refuses to delete a module derived topics run.
    pub fn check_module_unused(&self, module: &str) -> Result<(), DerivedError> {
        let users: Vec<String> = self
            .topics
            .lock()
            .values()
            .filter(|derived| derived.spec.modules().any(|used| used == module))
            .map(|derived| derived.spec.name.clone())
            .collect();
        if users.is_empty() { Ok(()) } else { Err(DerivedError::ModuleInUse { module: module.to_string(), users }) }
    }

    /// Stops a derived topic's pipelines and forgets its settings and
    /// checkpoints (its topic is deleted by the caller). Nothing happens
    /// to a topic that is not derived.
    pub async fn forget(&self, name: &str) -> Result<(), DerivedError> {
        let Some(derived) = self.topics.lock().remove(name) else { return Ok(()) };
        let pipelines = derived.spec.pipelines();
        drop(derived);
        self.store.remove(name, pipelines).await
    }

    /// Stops the pipelines of the derived topics that read `topic` (forced
    /// deletion of their source); they show why.
    pub fn stop_readers_of(&self, topic: &str) {
        let reason = format!("the source topic {topic:?} was deleted");
        for derived in self.topics.lock().values_mut().filter(|derived| derived.spec.source == topic) {
            derived.pipelines.iter_mut().for_each(|pipeline| pipeline.stop(&reason));
        }
    }

    /// Stops the pipelines of the derived topics that run `module` (forced
    /// deletion of the module); they show why, and what to do.
    pub fn stop_users_of(&self, module: &str) {
        for derived in self.topics.lock().values_mut() {
            if derived.spec.modules().any(|used| used == module) {
                let reason = format!(
                    "SmartModule {module:?} was deleted; register it again, then `fluvio topic resume {}`",
                    derived.spec.name
                );
                derived.pipelines.iter_mut().for_each(|pipeline| pipeline.stop(&reason));
            }
        }
    }

    /// Stops every pipeline (the server is stopping).
    pub fn stop_all(&self) {
        for derived in self.topics.lock().values_mut() {
            derived.pipelines.clear();
        }
    }
}

/// Takes in, every [`SYNC_EVERY`], the derived topics servers sharing the
/// cluster created or deleted, for as long as the server runs.
async fn follow_cluster(server: std::sync::Weak<ServerContext>) {
    loop {
        tokio::time::sleep(SYNC_EVERY).await;
        let Some(context) = server.upgrade() else { return };
        if let Err(error) = context.derived.sync().await {
            tracing::warn!(%error, "cannot read the cluster's derived topics; trying again");
        }
    }
}

/// Checks a request against the topics and the registry; returns the
/// settings to store.
async fn check(context: &ServerContext, request: CreateDerivedTopicRequest) -> Result<DerivationSpec, DerivedError> {
    let name = request.name;
    if request.source == name {
        return Err(DerivedError::Cycle(name));
    }
    crate::storage::validate_name(&name).map_err(|error| DerivedError::Topic(error.into()))?;
    let topics = context.storage.list_topics().await?;
    if topics.iter().any(|topic| topic.name == name) {
        return Err(DerivedError::Topic(TopicError::Exists(name)));
    }
    let Some(source) = topics.iter().find(|topic| topic.name == request.source) else {
        return Err(DerivedError::SourceNotFound { name, source_topic: request.source });
    };
    let partitions = match request.partitions {
        0 => source.partitions,
        requested => requested,
    };
    for invocation in &request.transforms {
        if !matches!(invocation.wasm, SmartModuleInvocationWasm::Predefined(_)) {
            return Err(DerivedError::AdHocModule { name, module: invocation.name().into_owned() });
        }
    }
    let dead_letter_topic = match (request.policy, request.dead_letter_topic) {
        (ErrorPolicy::DeadLetter, None) => return Err(DerivedError::NoDeadLetterTopic(name)),
        (ErrorPolicy::DeadLetter, Some(topic)) => {
            if topic == name || topic == request.source {
                return Err(DerivedError::DeadLetterTopic { name, topic });
            }
            crate::storage::validate_name(&topic).map_err(|error| DerivedError::Topic(error.into()))?;
            Some(topic)
        }
        (_, _) => None,
    };
    let spec = DerivationSpec {
        name,
        source: request.source,
        partitions,
        source_partitions: source.partitions,
        replication: request.replication.max(1),
        retention: request.retention,
        transforms: request.transforms,
        policy: request.policy,
        dead_letter_topic,
    };
    // The chain is built once, as its pipelines will build it: an unknown
    // module, a module of the wrong kind or a bad parameter is refused now.
    if let Err(error) = pipeline::build_chain(context, &spec, &[], Vec::new()).await {
        return Err(match error {
            pipeline::ChainError::Registry(error) => DerivedError::Registry(error),
            pipeline::ChainError::Engine(error) => DerivedError::Chain { name: spec.name, error },
        });
    }
    Ok(spec)
}

/// Creates a derived topic's topic, and its dead-letter topic when missing.
async fn create_topics(context: &ServerContext, spec: &DerivationSpec) -> Result<(), DerivedError> {
    let topic = TopicSpec {
        name: spec.name.clone(),
        partitions: spec.partitions,
        replication: spec.replication,
        retention: spec.retention,
    };
    context.storage.create_topic(topic).await?;
    if let Some(dead_letters) = &spec.dead_letter_topic {
        let topic = TopicSpec {
            name: dead_letters.clone(),
            partitions: 1,
            replication: spec.replication,
            retention: RetentionSpec::default(),
        };
        match context.storage.create_topic(topic).await {
            Ok(()) | Err(TopicError::Exists(_)) => {}
            Err(error) => {
                let _ = context.storage.delete_topic(&spec.name).await;
                return Err(error.into());
            }
        }
    }
    Ok(())
}

/// The state a pipeline reports before it has run.
fn starting(partition: u32) -> PipelineStatus {
    PipelineStatus {
        source_partition: partition,
        state: PipelineState::Starting,
        source_offset: 0,
        source_end: 0,
        records_in: 0,
        records_out: 0,
        skipped: 0,
        dead_letters: 0,
    }
}
