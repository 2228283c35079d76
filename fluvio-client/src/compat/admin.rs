//! The admin API by the shape of Fluvio's `FluvioAdmin`: create, delete
//! and list objects by their spec type ([`TopicSpec`], [`SmartModuleSpec`]).
//!
//! ```no_run
//! use fluvio_client::{Fluvio, TopicSpec};
//!
//! # async fn run() -> Result<(), fluvio_client::FluvioError> {
//! let admin = Fluvio::connect().await?.admin().await;
//! admin.create("greetings".to_string(), false, TopicSpec::new_computed(2, 1, None)).await?;
//! for topic in admin.all::<TopicSpec>().await? {
//!     println!("{} has {} partitions", topic.name, topic.spec.partitions());
//! }
//! admin.delete::<TopicSpec>("greetings").await?;
//! # Ok(()) }
//! ```

use futures::future::BoxFuture;

use fluvio_protocol::messages::SmartModuleInfo;
use fluvio_protocol::{RetentionSpec, TopicInfo};

use crate::{Fluvio, FluvioError};

/// An object the admin API lists, named by its spec type.
pub trait AdminSpec: Sized + Clone + PartialEq + Send + Sync + 'static {
    /// What the cluster says of the object besides its spec.
    type Status: std::fmt::Debug + Clone + PartialEq + Send + Sync;

    /// Every object of this type.
    fn all(fluvio: &Fluvio) -> BoxFuture<'_, Result<Vec<Metadata<Self>>, FluvioError>>;
}

/// An object the admin API creates (Fluvio's trait of this name).
pub trait CreatableAdminSpec: AdminSpec {
    /// Creates the object.
    fn create<'a>(fluvio: &'a Fluvio, name: String, spec: Self) -> BoxFuture<'a, Result<(), FluvioError>>;
}

/// An object the admin API deletes (Fluvio's trait of this name).
pub trait DeletableAdminSpec: AdminSpec {
    /// Deletes the object.
    fn delete<'a>(fluvio: &'a Fluvio, name: String) -> BoxFuture<'a, Result<(), FluvioError>>;
}

/// What a create request carries besides the spec (Fluvio's
/// `CommonCreateRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommonCreateRequest {
    /// The object's name.
    pub name: String,
    /// Only check the spec; create nothing.
    pub dry_run: bool,
    /// Fluvio's wait for the cluster to apply the request, in
    /// milliseconds. Creation here is done when the answer comes, so there
    /// is nothing to wait for.
    pub timeout: Option<u32>,
}

/// An object as listed: its name, spec and status.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata<S: AdminSpec> {
    /// The name.
    pub name: String,
    /// The spec.
    pub spec: S,
    /// The status.
    pub status: S::Status,
}

/// The admin side of a client, as Fluvio's `FluvioAdmin`.
#[derive(Debug, Clone)]
pub struct FluvioAdmin {
    fluvio: Fluvio,
}

impl Fluvio {
    /// The admin API.
    pub async fn admin(&self) -> FluvioAdmin {
        FluvioAdmin { fluvio: self.clone() }
    }
}

impl FluvioAdmin {
    pub(crate) fn fluvio(&self) -> &Fluvio {
        &self.fluvio
    }

    /// Creates an object. With `dry_run`, nothing is created and the spec
    /// is only checked here (the name, and what the spec can check alone).
    pub async fn create<S: CreatableAdminSpec + Validate>(
        &self,
        name: String,
        dry_run: bool,
        spec: S,
    ) -> Result<(), FluvioError> {
        self.create_with_config(CommonCreateRequest { name, dry_run, timeout: None }, spec).await
    }

    /// Creates an object, with the request's settings given whole.
    pub async fn create_with_config<S: CreatableAdminSpec + Validate>(
        &self,
        config: CommonCreateRequest,
        spec: S,
    ) -> Result<(), FluvioError> {
        spec.validate(&config.name)?;
        if config.dry_run {
            return Ok(());
        }
        S::create(&self.fluvio, config.name, spec).await
    }

    /// Deletes an object by name.
    pub async fn delete<S: DeletableAdminSpec>(&self, name: impl Into<String>) -> Result<(), FluvioError> {
        S::delete(&self.fluvio, name.into()).await
    }

    /// The objects of a type whose names are among `filters` (every object
    /// when `filters` is empty).
    pub async fn list<S: AdminSpec, F: Into<String>>(&self, filters: Vec<F>) -> Result<Vec<Metadata<S>>, FluvioError> {
        self.list_with_params(filters, false).await
    }

    /// As [`list`](Self::list). Fluvio's `summary` leaves bulky parts of
    /// specs out (a SmartModule's wasm); lists here always leave them out,
    /// so it changes nothing.
    pub async fn list_with_params<S: AdminSpec, F: Into<String>>(
        &self,
        filters: Vec<F>,
        summary: bool,
    ) -> Result<Vec<Metadata<S>>, FluvioError> {
        let _ = summary;
        let names: Vec<String> = filters.into_iter().map(Into::into).collect();
        let all = S::all(&self.fluvio).await?;
        Ok(all.into_iter().filter(|object| names.is_empty() || names.contains(&object.name)).collect())
    }

    /// Every object of a type.
    pub async fn all<S: AdminSpec>(&self) -> Result<Vec<Metadata<S>>, FluvioError> {
        S::all(&self.fluvio).await
    }
}

/// Checks a spec before it is sent.
pub trait Validate {
    /// Why the spec cannot be created under `name`, if it cannot.
    fn validate(&self, name: &str) -> Result<(), FluvioError>;
}

/// A topic's settings, as the admin API creates and lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    partitions: u32,
    replication: u32,
    retention: RetentionSpec,
}

impl TopicSpec {
    /// A topic with `partitions` partitions, each in `replication` copies
    /// (rack placement is the backend's business, so `ignore_rack` changes
    /// nothing).
    pub fn new_computed(partitions: u32, replication: u32, ignore_rack: Option<bool>) -> TopicSpec {
        let _ = ignore_rack;
        TopicSpec { partitions, replication, retention: RetentionSpec::default() }
    }

    /// A topic whose partitions are placed on given SPUs, as Fluvio's
    /// assigned topics are: one partition per map, each in as many copies
    /// as its map names replicas. Placement is the backend's business
    /// here, so the SPU ids themselves are not used.
    pub fn new_assigned(maps: impl Into<PartitionMaps>) -> TopicSpec {
        let maps = maps.into().maps;
        let replication = maps.iter().map(|map| map.replicas.len() as u32).max().unwrap_or(1).max(1);
        TopicSpec { partitions: maps.len() as u32, replication, retention: RetentionSpec::default() }
    }

    /// The same, with retention settings.
    pub fn with_retention(mut self, retention: RetentionSpec) -> TopicSpec {
        self.retention = retention;
        self
    }

    /// The number of partitions.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The copies kept of each partition.
    pub fn replication_factor(&self) -> Option<u32> {
        Some(self.replication)
    }

    /// The retention settings.
    pub fn retention(&self) -> RetentionSpec {
        self.retention
    }
}

/// Where each partition of an assigned topic lives (Fluvio's
/// `PartitionMaps`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionMaps {
    /// One per partition.
    pub maps: Vec<PartitionMap>,
}

/// One partition's placement: its id and the SPUs holding its copies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionMap {
    /// The partition.
    pub id: u32,
    /// The SPUs holding a copy, the leader first.
    pub replicas: Vec<i32>,
}

impl From<Vec<PartitionMap>> for PartitionMaps {
    fn from(maps: Vec<PartitionMap>) -> Self {
        PartitionMaps { maps }
    }
}

impl From<Vec<(u32, Vec<i32>)>> for PartitionMaps {
    fn from(maps: Vec<(u32, Vec<i32>)>) -> Self {
        PartitionMaps { maps: maps.into_iter().map(|(id, replicas)| PartitionMap { id, replicas }).collect() }
    }
}

/// A topic's state: where each partition ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicStatus {
    /// The next offset of each partition.
    pub next_offsets: Vec<i64>,
}

impl Validate for TopicSpec {
    fn validate(&self, name: &str) -> Result<(), FluvioError> {
        if name.is_empty() {
            return Err(FluvioError::InvalidRequest("a topic needs a name".into()));
        }
        if self.partitions == 0 || self.replication == 0 {
            return Err(FluvioError::InvalidRequest(format!(
                "topic {name:?} needs at least one partition and one copy"
            )));
        }
        Ok(())
    }
}

impl CreatableAdminSpec for TopicSpec {
    fn create<'a>(fluvio: &'a Fluvio, name: String, spec: Self) -> BoxFuture<'a, Result<(), FluvioError>> {
        Box::pin(async move {
            fluvio.create_replicated_topic(&name, spec.partitions, spec.replication, spec.retention).await
        })
    }
}

impl DeletableAdminSpec for TopicSpec {
    fn delete<'a>(fluvio: &'a Fluvio, name: String) -> BoxFuture<'a, Result<(), FluvioError>> {
        Box::pin(async move { fluvio.delete_topic(&name).await })
    }
}

impl AdminSpec for TopicSpec {
    type Status = TopicStatus;

    fn all(fluvio: &Fluvio) -> BoxFuture<'_, Result<Vec<Metadata<Self>>, FluvioError>> {
        Box::pin(async move {
            let topics: Vec<TopicInfo> = fluvio.list_topics().await?;
            Ok(topics
                .into_iter()
                .map(|topic| Metadata {
                    name: topic.name,
                    spec: TopicSpec {
                        partitions: topic.partitions,
                        replication: topic.replication,
                        retention: topic.retention,
                    },
                    status: TopicStatus { next_offsets: topic.next_offsets },
                })
                .collect())
        })
    }
}

/// A SmartModule to register, as Fluvio's spec has it: its wasm (and, in
/// lists, a summary; listed SmartModules carry no wasm, see
/// [`Fluvio::get_smartmodule`], and their status says what they are).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SmartModuleSpec {
    /// Set in lists: the wasm's size.
    pub summary: Option<SmartModuleWasmSummary>,
    /// The wasm module.
    pub wasm: SmartModuleWasm,
}

/// A listed module's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SmartModuleWasmSummary {
    /// Bytes of wasm.
    pub wasm_length: u32,
}

/// How a spec's payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmartModuleWasmFormat {
    /// Binary wasm (gzip-compressed in the payload).
    #[default]
    Binary,
}

/// A SmartModule's code in a spec: gzip-compressed wasm, as Fluvio keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SmartModuleWasm {
    /// The encoding.
    pub format: SmartModuleWasmFormat,
    /// The compressed wasm.
    pub payload: Vec<u8>,
}

impl SmartModuleWasm {
    /// Compresses raw wasm bytes.
    pub fn from_raw_wasm_bytes(raw: &[u8]) -> std::io::Result<SmartModuleWasm> {
        let payload = fluvio_protocol::Compression::Gzip.compress(raw);
        Ok(SmartModuleWasm { format: SmartModuleWasmFormat::Binary, payload })
    }

    /// Takes wasm already compressed with gzip.
    pub fn from_compressed_gzip(payload: Vec<u8>) -> SmartModuleWasm {
        SmartModuleWasm { format: SmartModuleWasmFormat::Binary, payload }
    }

    /// The raw wasm (the payload decompressed; raw payloads are accepted).
    pub fn as_raw_wasm(&self) -> std::io::Result<Vec<u8>> {
        Ok(fluvio_protocol::smartmodule::decompress_wasm(&self.payload)?.into_owned())
    }
}

impl SmartModuleSpec {
    /// A spec for raw wasm bytes.
    pub fn from_wasm(wasm: &[u8]) -> std::io::Result<SmartModuleSpec> {
        Ok(SmartModuleSpec { summary: None, wasm: SmartModuleWasm::from_raw_wasm_bytes(wasm)? })
    }
}

impl Validate for SmartModuleSpec {
    fn validate(&self, name: &str) -> Result<(), FluvioError> {
        let wasm = self.wasm.as_raw_wasm().map_err(|error| {
            FluvioError::InvalidRequest(format!("SmartModule {name:?}: its payload does not decompress: {error}"))
        })?;
        if !wasm.starts_with(b"\0asm") {
            return Err(FluvioError::InvalidRequest(format!(
                "SmartModule {name:?} is not WebAssembly (it does not start with \\0asm); build it with `smdk build`"
            )));
        }
        Ok(())
    }
}

impl CreatableAdminSpec for SmartModuleSpec {
    fn create<'a>(fluvio: &'a Fluvio, name: String, spec: Self) -> BoxFuture<'a, Result<(), FluvioError>> {
        Box::pin(async move {
            let wasm = spec.wasm.as_raw_wasm().map_err(|error| FluvioError::InvalidRequest(error.to_string()))?;
            fluvio.create_smartmodule(&name, wasm).await.map(|_| ())
        })
    }
}

impl DeletableAdminSpec for SmartModuleSpec {
    fn delete<'a>(fluvio: &'a Fluvio, name: String) -> BoxFuture<'a, Result<(), FluvioError>> {
        Box::pin(async move { fluvio.delete_smartmodule(&name).await })
    }
}

impl AdminSpec for SmartModuleSpec {
    type Status = SmartModuleInfo;

    fn all(fluvio: &Fluvio) -> BoxFuture<'_, Result<Vec<Metadata<Self>>, FluvioError>> {
        Box::pin(async move {
            let modules = fluvio.list_smartmodules().await?;
            Ok(modules
                .into_iter()
                .map(|info| {
                    let summary = SmartModuleWasmSummary { wasm_length: info.size.min(u64::from(u32::MAX)) as u32 };
                    let spec = SmartModuleSpec { summary: Some(summary), wasm: SmartModuleWasm::default() };
                    Metadata { name: info.name.clone(), spec, status: info }
                })
                .collect())
        })
    }
}
