//! One client connection: reads frames, answers requests in order, and runs
//! each stream (consumer) in a task of its own.

use std::sync::{Arc, Mutex};

use fluvio_client::batch::Batch;
use fluvio_client::engine::{ChainBuilder, ChainWorker, ErrorPolicy, ModuleConfig, RecordFailure, SmartModule};
use fluvio_client::protocol::{
    ApiKind, CreateSmartModuleRequest, CreateTopicRequest, Empty, ErrorCode, Frame, FrameError, Invocation,
    ModuleSource, NameRequest, OffsetSpec, PROTOCOL_VERSION, ProduceRequest, ProduceResponse, RESPONSE_BIT,
    StreamEvent, StreamFetchRequest, WirePolicy,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::storage::trim_batch;
use crate::topics::TopicSpec;
use crate::{ServerContext, ServerError};

/// Largest SmartModule accepted once decompressed.
const MAX_WASM_BYTES: u64 = 64 << 20;

fn error_frame(correlation_id: u32, error: &ServerError) -> Frame {
    Frame::new(ApiKind::Error as u16 | RESPONSE_BIT, correlation_id, &error.to_response(), Vec::new())
}

fn bad_frame(message: impl Into<String>) -> ServerError {
    ServerError::new(ErrorCode::BadFrame, message)
}

/// Serves one connection until the client closes it or sends a frame that
/// cannot be understood (answered with an error, then closed).
pub async fn serve(socket: TcpStream, context: Arc<ServerContext>) {
    let (mut reader, mut writer) = socket.into_split();
    let (frames, mut outgoing) = mpsc::channel::<Frame>(64);
    let writer_task = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if frame.write(&mut writer).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut streams = Vec::new();
    loop {
        let frame = match Frame::read(&mut reader, context.config.max_frame_bytes).await {
            Ok(frame) => frame,
            Err(FrameError::Closed) => break,
            Err(FrameError::Io(_)) => break,
            Err(error) => {
                let _ = frames.send(error_frame(0, &bad_frame(format!("{error}; closing the connection")))).await;
                break;
            }
        };
        let correlation_id = frame.correlation_id;
        if frame.version != PROTOCOL_VERSION {
            let message = format!(
                "protocol version {} is not supported; this server speaks version {PROTOCOL_VERSION}",
                frame.version
            );
            let _ = frames.send(error_frame(correlation_id, &bad_frame(message))).await;
            break;
        }
        let kind = match ApiKind::from_u16(frame.kind) {
            Some(kind) if !frame.is_response() && kind != ApiKind::Error => kind,
            _ => {
                let error = bad_frame(format!("unknown request kind {}", frame.kind));
                if frames.send(error_frame(correlation_id, &error)).await.is_err() {
                    break;
                }
                continue;
            }
        };
        if kind == ApiKind::StreamFetch {
            match frame.control::<StreamFetchRequest>() {
                Ok(request) => {
                    let context = Arc::clone(&context);
                    let frames = frames.clone();
                    streams.push(tokio::spawn(async move {
                        if let Err(error) = stream(&context, request, correlation_id, &frames).await {
                            let _ = frames.send(error_frame(correlation_id, &error)).await;
                        }
                    }));
                }
                Err(error) => {
                    let _ = frames.send(error_frame(correlation_id, &bad_frame(error.to_string()))).await;
                }
            }
            continue;
        }
        let context = Arc::clone(&context);
        // Requests other than streams are answered in order; the work is
        // file I/O and compilation, so it runs where blocking is allowed.
        let response = tokio::task::block_in_place(|| handle(&context, kind, frame))
            .unwrap_or_else(|error| error_frame(correlation_id, &error));
        if frames.send(response).await.is_err() {
            break;
        }
    }
    for stream in streams {
        stream.abort();
    }
    drop(frames);
    let _ = writer_task.await;
}

fn respond<T: serde::Serialize>(kind: ApiKind, correlation_id: u32, control: &T, payload: Vec<u8>) -> Frame {
    Frame::new(kind as u16 | RESPONSE_BIT, correlation_id, control, payload)
}

fn decode<T: for<'de> serde::Deserialize<'de>>(frame: &Frame) -> Result<T, ServerError> {
    frame.control().map_err(|e| bad_frame(e.to_string()))
}

fn handle(context: &ServerContext, kind: ApiKind, frame: Frame) -> Result<Frame, ServerError> {
    let id = frame.correlation_id;
    match kind {
        ApiKind::CreateTopic => {
            let request: CreateTopicRequest = decode(&frame)?;
            context.topics.create(TopicSpec {
                name: request.name,
                partitions: request.partitions,
                retention: request.retention,
            })?;
            Ok(respond(kind, id, &Empty, Vec::new()))
        }
        ApiKind::DeleteTopic => {
            let request: NameRequest = decode(&frame)?;
            context.topics.delete(&request.name)?;
            Ok(respond(kind, id, &Empty, Vec::new()))
        }
        ApiKind::ListTopics => {
            decode::<Empty>(&frame)?;
            Ok(respond(kind, id, &context.topics.list(), Vec::new()))
        }
        ApiKind::Produce => {
            let request: ProduceRequest = decode(&frame)?;
            let partition = context.topics.partition(&request.topic, request.partition)?;
            let batch = Batch::from_bytes(frame.payload)
                .map_err(|e| ServerError::new(ErrorCode::InvalidBatch, format!("invalid batch: {e}")))?;
            let record_count = batch.record_count();
            let base_offset = partition.append(batch)?;
            Ok(respond(kind, id, &ProduceResponse { base_offset, record_count }, Vec::new()))
        }
        ApiKind::CreateSmartModule => {
            let request: CreateSmartModuleRequest = decode(&frame)?;
            let info = context.registry.create(&request.name, frame.payload)?;
            Ok(respond(kind, id, &info, Vec::new()))
        }
        ApiKind::ListSmartModules => {
            decode::<Empty>(&frame)?;
            Ok(respond(kind, id, &context.registry.list(), Vec::new()))
        }
        ApiKind::DeleteSmartModule => {
            let request: NameRequest = decode(&frame)?;
            context.registry.delete(&request.name)?;
            Ok(respond(kind, id, &Empty, Vec::new()))
        }
        ApiKind::GetSmartModule => {
            let request: NameRequest = decode(&frame)?;
            let (module, wasm) = context.registry.get(&request.name)?;
            Ok(respond(kind, id, &crate::registry::info(&request.name, &module), wasm))
        }
        ApiKind::StreamFetch | ApiKind::Error => Err(bad_frame("unexpected request kind")),
    }
}

/// Starts a worker running the chain a stream asked for. Modules are
/// resolved (registry lookup, ad hoc compile) here; the chain is built on
/// the worker's thread. Dead letters are collected for the stream to send.
pub async fn start_chain(
    context: &ServerContext,
    invocations: &[Invocation],
    policy: WirePolicy,
    dead_letters: Arc<Mutex<Vec<RecordFailure>>>,
) -> Result<ChainWorker, ServerError> {
    let invalid =
        |e: fluvio_client::engine::EngineError| ServerError::new(ErrorCode::InvalidSmartModule, e.to_string());
    let policy = match policy {
        WirePolicy::Fail => ErrorPolicy::Fail,
        WirePolicy::Skip => ErrorPolicy::Skip,
        WirePolicy::DeadLetter => {
            ErrorPolicy::DeadLetter(Arc::new(move |failure| dead_letters.lock().expect("dead letters").push(failure)))
        }
    };
    let mut modules: Vec<(SmartModule, ModuleConfig)> = Vec::with_capacity(invocations.len());
    for invocation in invocations {
        let module = match &invocation.source {
            ModuleSource::Registered(name) => context.registry.get(name)?.0,
            ModuleSource::AdHoc { name, compressed_wasm } => {
                let wasm = fluvio_client::protocol::decompress(compressed_wasm, MAX_WASM_BYTES)
                    .map_err(|m| ServerError::new(ErrorCode::InvalidSmartModule, m))?;
                tokio::task::block_in_place(|| context.engine.load(name, &wasm)).map_err(invalid)?
            }
        };
        if let Some(kind) = invocation.kind {
            module.expect_kind(kind.into()).map_err(invalid)?;
        }
        let config = ModuleConfig {
            params: invocation.params.iter().cloned().collect(),
            initial_accumulator: invocation.initial_accumulator.clone(),
        };
        modules.push((module, config));
    }
    let engine = context.engine.clone();
    ChainWorker::spawn(move || ChainBuilder::new(&engine).modules(modules).on_error(policy).build())
        .await
        .map_err(invalid)
}

/// Streams a partition to the client, through the requested chain.
async fn stream(
    context: &ServerContext,
    request: StreamFetchRequest,
    id: u32,
    frames: &mpsc::Sender<Frame>,
) -> Result<(), ServerError> {
    let partition = context.topics.partition(&request.topic, request.partition)?;
    let dead_letters = Arc::new(Mutex::new(Vec::new()));
    let chain = if request.chain.is_empty() {
        None
    } else {
        Some(start_chain(context, &request.chain, request.policy, Arc::clone(&dead_letters)).await?)
    };
    let start = partition.start_offset();
    let end = partition.next_offset();
    let mut offset = match request.offset {
        OffsetSpec::Beginning => start,
        OffsetSpec::End => end,
        OffsetSpec::Absolute(offset) => offset.max(start),
        OffsetSpec::FromEnd(n) => (end - n.min(i64::MAX as u64) as i64).max(start),
    };
    let max_bytes = (request.max_bytes as u64).clamp(1, 16 << 20);
    let mut watermark = partition.subscribe();
    let send = |frame: Frame| async move {
        frames.send(frame).await.map_err(|_| ServerError::new(ErrorCode::Storage, "client went away"))
    };
    loop {
        let batches = tokio::task::block_in_place(|| partition.read(offset, max_bytes))?;
        if batches.is_empty() {
            if !request.continuous {
                send(respond(ApiKind::StreamFetch, id, &StreamEvent::End { next_offset: offset }, Vec::new())).await?;
                return Ok(());
            }
            tokio::select! {
                changed = watermark.wait_for(|next| *next > offset) => {
                    if changed.is_err() { return Ok(()); }
                }
                _ = frames.closed() => return Ok(()),
            }
            continue;
        }
        for batch in batches {
            let batch = trim_batch(batch, offset);
            offset = batch.next_offset();
            let (output, failure) = match chain.as_ref() {
                None => (batch, None),
                Some(chain) => {
                    let result = chain
                        .process(batch)
                        .await
                        .map_err(|e| ServerError::new(ErrorCode::SmartModuleFailed, e.to_string()))?;
                    let letters = std::mem::take(&mut *dead_letters.lock().expect("dead letters"));
                    for letter in letters {
                        send(respond(ApiKind::StreamFetch, id, &StreamEvent::DeadLetter(letter), Vec::new())).await?;
                    }
                    (result.batch, result.failure)
                }
            };
            if !output.is_empty() {
                send(respond(
                    ApiKind::StreamFetch,
                    id,
                    &StreamEvent::Batch { next_offset: offset },
                    output.into_bytes(),
                ))
                .await?;
            }
            if let Some(failure) = failure {
                send(respond(ApiKind::StreamFetch, id, &StreamEvent::Failed(failure), Vec::new())).await?;
                return Ok(());
            }
        }
    }
}
