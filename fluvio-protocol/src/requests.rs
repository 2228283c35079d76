//! Every request a client may send, each one type that names its response
//! type (`docs/protocol.md`, "Kinds").
//!
//! A request type implements [`Request`]: its [`ApiKind`] and the type the
//! server answers with. That pairing is written once, in the table at the
//! bottom of this file, which also builds [`AnyRequest`], the server's view
//! of an incoming frame. The SDK sends any request through one generic call
//! and the server dispatches on [`AnyRequest`]; adding a kind is a request
//! type, a response type and a line in the table here, and a handler on the
//! server.
//!
//! Bulk bytes (a record batch, wasm, log text) travel as the frame's
//! payload, never inside the bincode control part: the types that carry
//! them keep them in a field the control part skips, and [`Message`] moves
//! it between the field and the frame without copying.
//!
//! ```
//! use fluvio_protocol::Frame;
//! use fluvio_protocol::requests::{AnyRequest, DeleteTopicRequest, Request};
//!
//! let frame = Frame::request(7, DeleteTopicRequest { name: "orders".into(), force: false });
//! assert_eq!(frame.kind, DeleteTopicRequest::KIND as u16);
//! match AnyRequest::from_frame(frame).unwrap() {
//!     AnyRequest::DeleteTopic(request) => assert_eq!(request.name, "orders"),
//!     other => panic!("decoded as {:?}", other.kind()),
//! }
//! ```

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::frame::{ApiKind, Frame, FrameError};
use crate::messages::{
    ConnectorInfo, ConsumerOffset, ProducerStamp, RetentionSpec, SmartModuleInfo, StreamEvent, TopicInfo,
};
use crate::smartmodule::{ErrorPolicy, SmartModuleInvocation};

/// A control message, and the bulk bytes (if any) that travel beside it as
/// the frame's payload.
pub trait Message: Serialize + DeserializeOwned + Send + 'static {
    /// Takes the bytes that go out as the frame's payload (none by default).
    fn take_payload(&mut self) -> Vec<u8> {
        Vec::new()
    }

    /// Keeps a received frame's payload (ignored by default: a message
    /// without bulk bytes has nothing to keep).
    fn set_payload(&mut self, _payload: Vec<u8>) {}
}

/// A request: its kind on the wire and the type the server answers with.
pub trait Request: Message {
    /// The frame kind this request travels as.
    const KIND: ApiKind;
    /// What the server answers with (for [`StreamFetchRequest`], each of the
    /// many frames of the stream).
    type Response: Message;
}

impl Frame {
    /// The frame that carries `request`.
    pub fn request<R: Request>(correlation_id: u32, mut request: R) -> Frame {
        let payload = request.take_payload();
        Frame::new(R::KIND as u16, correlation_id, &request, payload)
    }

    /// The frame that answers a request of type `R`.
    pub fn response<R: Request>(correlation_id: u32, mut response: R::Response) -> Frame {
        let payload = response.take_payload();
        Frame::new(R::KIND as u16 | crate::RESPONSE_BIT, correlation_id, &response, payload)
    }

    /// Decodes the control part as `M` and hands it the payload.
    pub fn into_message<M: Message>(self) -> Result<M, FrameError> {
        let mut message: M = self.control()?;
        message.set_payload(self.payload);
        Ok(message)
    }
}

/// Why a frame is not a request this side understands.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The kind is no request kind (an unknown number, a response, or an
    /// error).
    #[error("unknown request kind {0}")]
    UnknownKind(u16),
    /// The control part does not decode as the kind's request type.
    #[error(transparent)]
    Malformed(#[from] FrameError),
}

/// Create a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTopicRequest {
    /// The name.
    pub name: String,
    /// Number of partitions (at least 1).
    pub partitions: u32,
    /// Copies kept of each partition (at least 1; more than 1 needs a
    /// replicated backend such as JetStream).
    pub replication: u32,
    /// Retention.
    pub retention: RetentionSpec,
}

/// The topic was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTopicResponse;

/// Delete a topic and its records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteTopicRequest {
    /// The topic.
    pub name: String,
    /// Delete it even though derived topics read it (their pipelines
    /// stop) or send it their dead letters.
    pub force: bool,
}

/// The topic was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteTopicResponse;

/// List the topics the connection may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListTopicsRequest;

/// The topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListTopicsResponse {
    /// Each topic, with its partitions' ends.
    pub topics: Vec<TopicInfo>,
}

/// Append a batch to a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProduceRequest {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Who sent the batch and its place in that producer's sequence: a
    /// batch sent again with the same stamp (after a lost acknowledgement)
    /// is stored once, and answered with the offsets it got the first time.
    pub producer: Option<ProducerStamp>,
    /// The sequence of the same producer's batch to this partition sent
    /// just before this one, when that one was not answered yet as this one
    /// was sent: if it failed, the server refuses this one too
    /// ([`ErrorCode::Unavailable`](crate::ErrorCode::Unavailable)), so that
    /// the producer sends both again in their order. `None` when the batch
    /// before it was answered.
    pub follows: Option<u64>,
    /// The batch, in the batch layout (the frame's payload).
    #[serde(skip)]
    pub batch: Vec<u8>,
}

impl Message for ProduceRequest {
    fn take_payload(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.batch)
    }

    fn set_payload(&mut self, payload: Vec<u8>) {
        self.batch = payload;
    }
}

/// The answer to a produce: where the batch's records now are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProduceResponse {
    /// Offset of the batch's first record.
    pub base_offset: i64,
    /// Number of records appended.
    pub record_count: u32,
}

/// Start streaming records from a partition; the server answers with a
/// [`StreamEvent`] per frame until the stream ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamFetchRequest {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Where to start.
    pub offset: crate::OffsetSpec,
    /// Keep waiting for new records at the end (`false`: stop at the end).
    pub continuous: bool,
    /// SmartModules to run on the server, in order.
    pub chain: Vec<SmartModuleInvocation>,
    /// What to do when a module fails on a record; dead letters come back
    /// to the consumer as [`StreamEvent::DeadLetter`]s.
    pub policy: ErrorPolicy,
    /// Most bytes of stored batches to read per step.
    pub max_bytes: u32,
    /// The consumer id whose offsets the stream starts from, if any: a
    /// windowed chain then keeps its windows with that id's offsets.
    #[serde(default)]
    pub consumer_id: Option<String>,
}

/// A stream's events carry their records as the frame's payload, which a
/// consumer reads in place: the event itself does not keep it.
impl Message for StreamEvent {}

/// Register a SmartModule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSmartModuleRequest {
    /// The name.
    pub name: String,
    /// The module (the frame's payload).
    #[serde(skip)]
    pub wasm: Vec<u8>,
}

impl Message for CreateSmartModuleRequest {
    fn take_payload(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.wasm)
    }

    fn set_payload(&mut self, payload: Vec<u8>) {
        self.wasm = payload;
    }
}

/// The module was registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSmartModuleResponse {
    /// The module as the registry sees it.
    pub info: SmartModuleInfo,
}

/// List the registered SmartModules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListSmartModulesRequest;

/// The registered SmartModules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListSmartModulesResponse {
    /// Each module.
    pub modules: Vec<SmartModuleInfo>,
}

/// Delete a registered SmartModule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteSmartModuleRequest {
    /// The module's name.
    pub name: String,
    /// Delete it even though derived topics run it (their pipelines stop
    /// until it is registered again and they are resumed).
    pub force: bool,
}

/// The module was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteSmartModuleResponse;

/// Download a registered SmartModule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetSmartModuleRequest {
    /// The module's name.
    pub name: String,
}

/// A registered module and its wasm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetSmartModuleResponse {
    /// The module as the registry sees it.
    pub info: SmartModuleInfo,
    /// The module (the frame's payload).
    #[serde(skip)]
    pub wasm: Vec<u8>,
}

impl Message for GetSmartModuleResponse {
    fn take_payload(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.wasm)
    }

    fn set_payload(&mut self, payload: Vec<u8>) {
        self.wasm = payload;
    }
}

/// Hand a connector to the cluster, which runs it as its own process and
/// restarts it when it stops. The cluster checks the config first.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateConnectorRequest {
    /// The config file's text (Fluvio's connector config format).
    pub config: String,
    /// Values of the secrets the config names, as `(NAME, value)`.
    pub secrets: Vec<(String, String)>,
}

/// Secrets never appear in debug output.
impl std::fmt::Debug for CreateConnectorRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.secrets.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("CreateConnectorRequest").field("config", &self.config).field("secrets", &names).finish()
    }
}

/// The connector was created and started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateConnectorResponse {
    /// The connector as the cluster runs it.
    pub info: ConnectorInfo,
}

/// List the cluster's connectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListConnectorsRequest;

/// The cluster's connectors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListConnectorsResponse {
    /// Each connector and what it is doing.
    pub connectors: Vec<ConnectorInfo>,
}

/// Stop a connector and forget it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteConnectorRequest {
    /// The connector's name.
    pub name: String,
}

/// The connector was stopped and deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteConnectorResponse;

/// Read a connector's log from a byte offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorLogsRequest {
    /// The connector.
    pub name: String,
    /// Where to start reading.
    pub offset: u64,
}

/// Part of a connector's log, and where the next read starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorLogsResponse {
    /// Offset after the returned text; pass it to the next request.
    pub next_offset: u64,
    /// The text (the frame's payload); empty when nothing is new.
    #[serde(skip)]
    pub text: Vec<u8>,
}

impl Message for ConnectorLogsResponse {
    fn take_payload(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.text)
    }

    fn set_payload(&mut self, payload: Vec<u8>) {
        self.text = payload;
    }
}

/// Store where a consumer has got to in a partition: the offset it reads
/// next (one past the last record it has processed). A later commit
/// replaces an earlier one, even with a lower offset (to read again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitOffsetRequest {
    /// The consumer's id: 1 to 200 characters from `a-z A-Z 0-9 _ -`.
    pub consumer: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// The offset the consumer reads next; at most the partition's end.
    pub offset: i64,
}

/// The offset was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitOffsetResponse;

/// Read a consumer's stored offset in a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchOffsetRequest {
    /// The consumer's id.
    pub consumer: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
}

/// The answer to [`FetchOffsetRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchOffsetResponse {
    /// The stored offset; `None` when the consumer has committed none there.
    pub offset: Option<i64>,
}

/// List every consumer's stored offsets (in the topics the connection may
/// see).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListConsumersRequest;

/// Stored consumer offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListConsumersResponse {
    /// One per consumer and partition.
    pub offsets: Vec<ConsumerOffset>,
}

/// One page of the stored consumer offsets (in the topics the connection
/// may see), in order of consumer, topic and partition. Unlike
/// [`ListConsumersRequest`], whose one answer must fit a frame, any number
/// of offsets can be listed page by page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListConsumersPageRequest {
    /// Start after this consumer, topic and partition; from the first
    /// when `None`.
    pub after: Option<ConsumerOffsetKey>,
    /// At most this many offsets (the server may give fewer: it caps a
    /// page at [`MAX_CONSUMERS_PAGE`]).
    pub limit: u32,
}

/// The most offsets one [`ListConsumersPageResponse`] holds.
pub const MAX_CONSUMERS_PAGE: u32 = 10_000;

/// Where one stored consumer offset sorts: consumer, topic, partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConsumerOffsetKey {
    /// The consumer's id.
    pub consumer: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
}

impl ConsumerOffsetKey {
    /// The key of a stored offset.
    pub fn of(offset: &ConsumerOffset) -> ConsumerOffsetKey {
        ConsumerOffsetKey {
            consumer: offset.consumer.clone(),
            topic: offset.topic.clone(),
            partition: offset.partition,
        }
    }
}

/// The answer to [`ListConsumersPageRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListConsumersPageResponse {
    /// The page's offsets, in order.
    pub offsets: Vec<ConsumerOffset>,
    /// More follow: ask again with `after` set to the last one's key.
    pub more: bool,
}

/// Forget a consumer's stored offsets: in one topic, or in all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteConsumerRequest {
    /// The consumer's id.
    pub consumer: String,
    /// Only this topic's offsets; every topic's when `None`.
    pub topic: Option<String>,
}

/// Forget a consumer's stored offset in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteConsumerOffsetRequest {
    /// The consumer's id.
    pub consumer: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
}

/// The answer to [`DeleteConsumerOffsetRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteConsumerOffsetResponse;

/// The consumer's offsets were forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteConsumerResponse;

/// Ask the server which version it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfoRequest;

/// The answer to [`ServerInfoRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfoResponse {
    /// The server's release, a semantic version (`0.1.0`).
    pub version: String,
}

/// List the servers serving the cluster now: this one alone on a local
/// log; on JetStream, every server sharing the cluster whose last
/// heartbeat has not expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListServersRequest;

/// The answer to [`ListServersRequest`], sorted by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListServersResponse {
    /// Each live server.
    pub servers: Vec<ServerDescription>,
    /// The id of the server that answered.
    pub this_server: i32,
}

/// A server as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerDescription {
    /// Its id (`fluvio-server --id`), unique in the cluster.
    pub id: i32,
    /// The address it listens on for clients.
    pub address: String,
    /// Its release.
    pub version: String,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_ms: u64,
}

/// Create a derived topic: `name`'s records are `source`'s passed through
/// `transforms` (registered modules only) by the server, exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateDerivedTopicRequest {
    /// The derived topic's name.
    pub name: String,
    /// Its partitions; 0 takes the source's count.
    pub partitions: u32,
    /// Copies kept of each partition.
    pub replication: u32,
    /// Its retention.
    pub retention: RetentionSpec,
    /// The topic it derives from.
    pub source: String,
    /// The chain, in order; every module is a registered one.
    pub transforms: Vec<SmartModuleInvocation>,
    /// What a record a module fails on does to the pipeline.
    pub policy: ErrorPolicy,
    /// Under the dead-letter policy, where failed records go (created
    /// with one partition when missing).
    pub dead_letter_topic: Option<String>,
}

/// The derived topic was created and its pipelines started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateDerivedTopicResponse;

/// List the derived topics with the state of their pipelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListDerivedTopicsRequest;

/// The answer to [`ListDerivedTopicsRequest`], sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListDerivedTopicsResponse {
    /// Each derived topic.
    pub topics: Vec<DerivedTopicInfo>,
}

/// A derived topic: where it comes from, and how far each pipeline got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DerivedTopicInfo {
    /// The derived topic.
    pub name: String,
    /// The topic it derives from.
    pub source: String,
    /// The chain.
    pub transforms: Vec<SmartModuleInvocation>,
    /// The error policy.
    pub policy: ErrorPolicy,
    /// Where failed records go, under the dead-letter policy.
    pub dead_letter_topic: Option<String>,
    /// One per source partition.
    pub pipelines: Vec<PipelineStatus>,
}

/// One source partition's pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineStatus {
    /// The source partition it reads.
    pub source_partition: u32,
    /// Running, failed or stopped.
    pub state: PipelineState,
    /// The next source offset it will read: every record before it has
    /// been passed through the chain and its outputs stored.
    pub source_offset: i64,
    /// Where the source partition ends; the lag is the difference.
    pub source_end: i64,
    /// Source records read since the server started.
    pub records_in: u64,
    /// Records written to the derived topic since the server started.
    pub records_out: u64,
    /// Records dropped under the skip policy since the server started.
    pub skipped: u64,
    /// Records sent to the dead-letter topic since the server started.
    pub dead_letters: u64,
}

/// A pipeline's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PipelineState {
    /// Finding where its output ends and building its chain.
    Starting,
    /// Following the source.
    Running,
    /// Run by another server sharing the cluster, which holds the
    /// pipeline's lease; this server takes over if that one stops.
    Elsewhere {
        /// That server's id.
        server: i32,
        /// Its address.
        address: String,
    },
    /// Stopped at a record a module failed on (under the fail policy), or
    /// by an error of the chain or the storage; `ResumeDerivedTopic` goes
    /// on from `offset`.
    Failed {
        /// The source offset it stopped at.
        offset: i64,
        /// Why.
        error: String,
    },
}

/// Start a derived topic's failed pipelines again, from where each stopped
/// (after the module was fixed, or the storage came back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeDerivedTopicRequest {
    /// The derived topic.
    pub name: String,
}

/// The answer to [`ResumeDerivedTopicRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeDerivedTopicResponse {
    /// How many pipelines were started again.
    pub resumed: u32,
}

/// List registered SmartModules with what `ListSmartModules` does not
/// say: the guest ABI each module is built for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribeSmartModulesRequest {
    /// The modules to describe; every module when empty.
    pub names: Vec<String>,
}

/// The answer to [`DescribeSmartModulesRequest`], sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribeSmartModulesResponse {
    /// Each module found.
    pub modules: Vec<SmartModuleDescription>,
}

/// A registered SmartModule as described.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmartModuleDescription {
    /// What `ListSmartModules` says of it.
    pub info: SmartModuleInfo,
    /// The guest ABI it is built for: `native` (this project's guest
    /// crate) or `fluvio` (Fluvio's `fluvio-smartmodule` crate).
    pub abi: String,
}

/// Present a token; sent first on a connection to a server that requires
/// credentials.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthenticateRequest {
    /// The secret token.
    pub token: String,
}

impl std::fmt::Debug for AuthenticateRequest {
    /// Never prints the token: requests end up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticateRequest").field("token", &"<redacted>").finish()
    }
}

/// Who a connection acts as, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthenticateResponse {
    /// The principal's name.
    pub principal: String,
    /// Its role: `admin` or `client`.
    pub role: String,
}

/// Messages with no bulk bytes: [`Message`]'s defaults.
macro_rules! plain_messages {
    ($($message:ident),+ $(,)?) => {
        $(impl Message for $message {})+
    };
}

plain_messages!(
    CreateTopicRequest,
    CreateTopicResponse,
    DeleteTopicRequest,
    DeleteTopicResponse,
    ListTopicsRequest,
    ListTopicsResponse,
    ProduceResponse,
    StreamFetchRequest,
    CreateSmartModuleResponse,
    ListSmartModulesRequest,
    ListSmartModulesResponse,
    DeleteSmartModuleRequest,
    DeleteSmartModuleResponse,
    GetSmartModuleRequest,
    CreateConnectorRequest,
    CreateConnectorResponse,
    ListConnectorsRequest,
    ListConnectorsResponse,
    DeleteConnectorRequest,
    DeleteConnectorResponse,
    ConnectorLogsRequest,
    CommitOffsetRequest,
    CommitOffsetResponse,
    FetchOffsetRequest,
    FetchOffsetResponse,
    ListConsumersRequest,
    ListConsumersResponse,
    ListConsumersPageRequest,
    ListConsumersPageResponse,
    DeleteConsumerOffsetRequest,
    DeleteConsumerOffsetResponse,
    DeleteConsumerRequest,
    DeleteConsumerResponse,
    AuthenticateRequest,
    AuthenticateResponse,
    ServerInfoRequest,
    ServerInfoResponse,
    DescribeSmartModulesRequest,
    DescribeSmartModulesResponse,
    ListServersRequest,
    ListServersResponse,
    CreateDerivedTopicRequest,
    CreateDerivedTopicResponse,
    ListDerivedTopicsRequest,
    ListDerivedTopicsResponse,
    ResumeDerivedTopicRequest,
    ResumeDerivedTopicResponse,
);

/// The one table of requests: for each kind, its request type and its
/// response type. It implements [`Request`] for each and builds
/// [`AnyRequest`].
macro_rules! requests {
    ($($kind:ident: $request:ident => $response:ident;)+) => {
        $(
            impl Request for $request {
                const KIND: ApiKind = ApiKind::$kind;
                type Response = $response;
            }
        )+

        /// A request as the server receives it: any kind, decoded by the
        /// type its kind names.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum AnyRequest {
            $(
                #[doc = concat!("A [`", stringify!($request), "`].")]
                $kind($request),
            )+
        }

        impl AnyRequest {
            /// Decodes a request frame by its kind.
            pub fn from_frame(frame: Frame) -> Result<AnyRequest, RequestError> {
                if frame.is_response() {
                    return Err(RequestError::UnknownKind(frame.kind));
                }
                match ApiKind::from_u16(frame.kind) {
                    $(Some(ApiKind::$kind) => Ok(AnyRequest::$kind(frame.into_message()?)),)+
                    _ => Err(RequestError::UnknownKind(frame.kind)),
                }
            }

            /// The request's kind.
            pub fn kind(&self) -> ApiKind {
                match self {
                    $(AnyRequest::$kind(_) => ApiKind::$kind,)+
                }
            }
        }
    };
}

requests! {
    CreateTopic: CreateTopicRequest => CreateTopicResponse;
    DeleteTopic: DeleteTopicRequest => DeleteTopicResponse;
    ListTopics: ListTopicsRequest => ListTopicsResponse;
    Produce: ProduceRequest => ProduceResponse;
    StreamFetch: StreamFetchRequest => StreamEvent;
    CreateSmartModule: CreateSmartModuleRequest => CreateSmartModuleResponse;
    ListSmartModules: ListSmartModulesRequest => ListSmartModulesResponse;
    DeleteSmartModule: DeleteSmartModuleRequest => DeleteSmartModuleResponse;
    GetSmartModule: GetSmartModuleRequest => GetSmartModuleResponse;
    CreateConnector: CreateConnectorRequest => CreateConnectorResponse;
    ListConnectors: ListConnectorsRequest => ListConnectorsResponse;
    DeleteConnector: DeleteConnectorRequest => DeleteConnectorResponse;
    ConnectorLogs: ConnectorLogsRequest => ConnectorLogsResponse;
    CommitOffset: CommitOffsetRequest => CommitOffsetResponse;
    FetchOffset: FetchOffsetRequest => FetchOffsetResponse;
    ListConsumers: ListConsumersRequest => ListConsumersResponse;
    DeleteConsumer: DeleteConsumerRequest => DeleteConsumerResponse;
    Authenticate: AuthenticateRequest => AuthenticateResponse;
    ListConsumersPage: ListConsumersPageRequest => ListConsumersPageResponse;
    DeleteConsumerOffset: DeleteConsumerOffsetRequest => DeleteConsumerOffsetResponse;
    ServerInfo: ServerInfoRequest => ServerInfoResponse;
    DescribeSmartModules: DescribeSmartModulesRequest => DescribeSmartModulesResponse;
    ListServers: ListServersRequest => ListServersResponse;
    CreateDerivedTopic: CreateDerivedTopicRequest => CreateDerivedTopicResponse;
    ListDerivedTopics: ListDerivedTopicsRequest => ListDerivedTopicsResponse;
    ResumeDerivedTopic: ResumeDerivedTopicRequest => ResumeDerivedTopicResponse;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{decode, encode};
    use crate::messages::ErrorCode;
    use crate::{ModuleKind, RESPONSE_BIT};

    fn module() -> SmartModuleInfo {
        SmartModuleInfo { name: "m".into(), kind: ModuleKind::Filter, size: 3, status: "ok".into(), has_init: false }
    }

    #[test]
    fn every_request_kind_decodes_as_its_own_type() {
        let requests = [
            Frame::request(
                1,
                CreateTopicRequest { name: "t".into(), partitions: 1, replication: 1, retention: Default::default() },
            ),
            Frame::request(1, DeleteTopicRequest { name: "t".into(), force: false }),
            Frame::request(1, ListTopicsRequest),
            Frame::request(
                1,
                ProduceRequest { topic: "t".into(), partition: 0, producer: None, follows: None, batch: vec![1] },
            ),
            Frame::request(1, CreateSmartModuleRequest { name: "m".into(), wasm: vec![0, 97] }),
            Frame::request(1, ListSmartModulesRequest),
            Frame::request(1, DeleteSmartModuleRequest { name: "m".into(), force: true }),
            Frame::request(1, GetSmartModuleRequest { name: "m".into() }),
            Frame::request(1, CreateConnectorRequest { config: "c".into(), secrets: Vec::new() }),
            Frame::request(1, ListConnectorsRequest),
            Frame::request(1, DeleteConnectorRequest { name: "c".into() }),
            Frame::request(1, ConnectorLogsRequest { name: "c".into(), offset: 4 }),
            Frame::request(1, CommitOffsetRequest { consumer: "c".into(), topic: "t".into(), partition: 0, offset: 1 }),
            Frame::request(1, FetchOffsetRequest { consumer: "c".into(), topic: "t".into(), partition: 0 }),
            Frame::request(1, ListConsumersRequest),
            Frame::request(1, DeleteConsumerRequest { consumer: "c".into(), topic: None }),
            Frame::request(1, AuthenticateRequest { token: "x".into() }),
            Frame::request(1, ListConsumersPageRequest { after: None, limit: 10 }),
            Frame::request(1, DeleteConsumerOffsetRequest { consumer: "c".into(), topic: "t".into(), partition: 1 }),
            Frame::request(1, ServerInfoRequest),
            Frame::request(1, DescribeSmartModulesRequest { names: vec!["m".into()] }),
            Frame::request(1, ListServersRequest),
            Frame::request(
                1,
                CreateDerivedTopicRequest {
                    name: "clean".into(),
                    partitions: 0,
                    replication: 1,
                    retention: Default::default(),
                    source: "raw".into(),
                    transforms: Vec::new(),
                    policy: ErrorPolicy::Skip,
                    dead_letter_topic: None,
                },
            ),
            Frame::request(1, ListDerivedTopicsRequest),
            Frame::request(1, ResumeDerivedTopicRequest { name: "clean".into() }),
            Frame::request(
                1,
                StreamFetchRequest {
                    topic: "t".into(),
                    partition: 0,
                    offset: crate::OffsetSpec::Beginning,
                    continuous: true,
                    chain: Vec::new(),
                    policy: ErrorPolicy::default(),
                    max_bytes: 1 << 20,
                    consumer_id: None,
                },
            ),
        ];
        let mut kinds: Vec<u16> = requests.iter().map(|frame| frame.kind).collect();
        for frame in requests {
            let kind = frame.kind;
            let request = AnyRequest::from_frame(frame).unwrap();
            assert_eq!(request.kind() as u16, kind);
        }
        // Every request kind there is, each once.
        kinds.sort_unstable();
        let every: Vec<u16> = (1..=u16::MAX)
            .filter(|&kind| {
                ApiKind::from_u16(kind).is_some_and(|kind| kind != ApiKind::Error) && kind & RESPONSE_BIT == 0
            })
            .collect();
        assert_eq!(kinds, every);
    }

    #[test]
    fn payloads_travel_beside_the_control_part() {
        let frame = Frame::request(
            3,
            ProduceRequest { topic: "t".into(), partition: 2, producer: None, follows: None, batch: vec![9; 5] },
        );
        assert_eq!(frame.payload, vec![9; 5]);
        let control: ProduceRequest = frame.control().unwrap();
        assert!(control.batch.is_empty(), "the control part does not carry the batch");
        let AnyRequest::Produce(request) = AnyRequest::from_frame(frame).unwrap() else { panic!("not a produce") };
        assert_eq!((request.partition, request.batch), (2, vec![9; 5]));

        let answer = GetSmartModuleResponse { info: module(), wasm: vec![0, 97, 115, 109] };
        let frame = Frame::response::<GetSmartModuleRequest>(3, answer.clone());
        assert_eq!(frame.kind, ApiKind::GetSmartModule as u16 | RESPONSE_BIT);
        assert_eq!(frame.into_message::<GetSmartModuleResponse>().unwrap(), answer);
    }

    #[test]
    fn responses_and_unknown_kinds_are_not_requests() {
        let response = Frame::response::<ListTopicsRequest>(1, ListTopicsResponse { topics: Vec::new() });
        assert!(matches!(AnyRequest::from_frame(response), Err(RequestError::UnknownKind(_))));
        let unknown = Frame::new(0x1234, 1, &ListTopicsRequest, Vec::new());
        assert!(matches!(AnyRequest::from_frame(unknown), Err(RequestError::UnknownKind(0x1234))));
        let error = Frame::new(ApiKind::Error as u16, 1, &ErrorCode::BadFrame, Vec::new());
        assert!(matches!(AnyRequest::from_frame(error), Err(RequestError::UnknownKind(_))));
        let wrong_control = Frame::new(ApiKind::DeleteTopic as u16, 1, &7u64, Vec::new());
        assert!(matches!(AnyRequest::from_frame(wrong_control), Err(RequestError::Malformed(_))));
    }

    /// Protocol version 4's bytes: the typed messages encode exactly as the
    /// shared ones they replaced (a unit, a bare list, a bare info), so
    /// clients and servers of either shape understand each other.
    #[test]
    fn typed_messages_keep_the_version_4_encoding() {
        assert!(encode(&CreateTopicResponse).is_empty());
        assert!(encode(&ListTopicsRequest).is_empty());
        let info = module();
        assert_eq!(encode(&CreateSmartModuleResponse { info: info.clone() }), encode(&info));
        assert_eq!(encode(&GetSmartModuleResponse { info: info.clone(), wasm: vec![1] }), encode(&info));
        assert_eq!(encode(&ListSmartModulesResponse { modules: vec![info.clone()] }), encode(&vec![info]));
        let logs: ConnectorLogsResponse = decode(&encode(&7u64)).unwrap();
        assert_eq!(logs, ConnectorLogsResponse { next_offset: 7, text: Vec::new() });
    }
}
