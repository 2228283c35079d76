//! Streams: a partition read from where the consumer asked, through the
//! SmartModule chain it asked for (with the records its modules look back
//! on), sent as frames of stored batches or of the chain's output until
//! the stream ends or the client goes away.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use fluvio_protocol::requests::StreamFetchRequest;
use fluvio_protocol::{
    Batch, BatchBuilder, ErrorCode, Frame, OffsetSpec, SmartModuleInvocation, SmartModuleInvocationWasm, StoredBatch,
    StreamEvent,
};
use fluvio_smartengine::ChainWorker;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::error::{ServerError, error_frame, limit_reached, running_chain_failed};
use super::outgoing::{Outgoing, STREAM_AHEAD_BYTES};
use super::quota::Quota;
use super::session::Session;
use super::stream_windows::ConsumerWindows;
use crate::ServerContext;
use crate::derived::store::WindowCheckpoint;
use crate::outbound::{Outbound, Tail};

/// The most bytes of stored batches one frame of a stream without
/// SmartModules carries: large enough that per-frame costs vanish, small
/// enough that a client reading a few frames ahead holds little memory.
const RUN_BYTES: u64 = 256 << 10;

/// SmartModule memory set aside for one stream's chain: every stage may
/// grow to the per-module memory cap, so that much is reserved from the
/// server's total while the stream runs.
pub(crate) struct MemoryReservation {
    context: Arc<ServerContext>,
    bytes: u64,
}

impl MemoryReservation {
    /// Reserves what `stages` modules may use, or says which limit stops it.
    pub(crate) fn take(context: &Arc<ServerContext>, stages: usize) -> Result<MemoryReservation, ServerError> {
        let bytes = context.config.limits.memory_bytes.saturating_mul(stages as u64);
        let total = context.config.connection_limits.smartmodule_memory_total;
        let reserved = context.smartmodule_memory_reserved.fetch_add(bytes, Ordering::Relaxed);
        let reservation = MemoryReservation { context: Arc::clone(context), bytes };
        if reserved.saturating_add(bytes) > total {
            return Err(limit_reached(format!(
                "the server's SmartModules may use {total} bytes of memory in all, and {reserved} are reserved by running streams; this stream's {stages} module(s) need {bytes} more. Try again later, or raise --smartmodule-memory-total"
            )));
        }
        Ok(reservation)
    }
}

impl Drop for MemoryReservation {
    fn drop(&mut self) {
        self.context.smartmodule_memory_reserved.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Starts the chain a stream asked for on a worker thread: predefined
/// modules come from the registry, ad hoc ones are compiled there (or found
/// in the engine's caches).
async fn start_chain(
    context: &ServerContext,
    principal: Option<&str>,
    request: &StreamFetchRequest,
    restored: Option<&WindowCheckpoint>,
) -> Result<ChainWorker, ServerError> {
    let registered: Vec<String> = request
        .chain
        .iter()
        .filter_map(|invocation| match &invocation.wasm {
            SmartModuleInvocationWasm::Predefined(name) => Some(name.clone()),
            _ => None,
        })
        .collect();
    context.registry.prepare(registered.iter().map(String::as_str)).await?;
    // Ad hoc modules may compile: a principal builds so many such chains at
    // once, and waits for the rest, so that it cannot take every one of the
    // server's compile places.
    let has_adhoc = registered.len() < request.chain.len();
    let _compile_place = match principal {
        Some(name) if has_adhoc => Some(context.quotas.compile_place(name).await),
        _ => None,
    };
    // A consumer's saved windows, and its other aggregates where they were
    // at the same offset.
    let mut invocations = request.chain.clone();
    let mut windows = Vec::new();
    if let Some(saved) = restored {
        for (place, accumulator) in &saved.accumulators {
            if let Some(invocation) = invocations.get_mut(*place) {
                *invocation = invocation.clone().initial_accumulator(accumulator.clone());
            }
        }
        windows = saved.windows.clone();
    }
    let builder = context.chain_builder(invocations, request.policy).window_states(windows);
    Ok(builder.spawn().await?)
}

/// Feeds each module that asked for a look-back the stored records it
/// wants (those before `end`, where the stream's reading may start), before
/// the stream's first batch. Records are the partition's own, not the
/// output of earlier modules.
pub(crate) async fn look_back(
    context: &ServerContext,
    partition: &Arc<dyn crate::storage::Partition>,
    chain: &ChainWorker,
    invocations: &[SmartModuleInvocation],
    end: i64,
) -> Result<(), ServerError> {
    for (stage, invocation) in invocations.iter().enumerate() {
        let Some(lookback) = invocation.params.lookback().copied() else { continue };
        let start = partition.start_offset();
        let from = match lookback.last {
            0 => start,
            last => (end - last.min(i64::MAX as u64) as i64).max(start),
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let oldest = lookback.age.map(|age| now.saturating_sub(age.as_millis()) as i64);
        let mut reader = Arc::clone(partition).reader(from);
        let mut next = from;
        while next < end {
            let batches = reader.next(1 << 20).await?;
            if batches.is_empty() {
                break;
            }
            for batch in batches {
                next = batch.next_offset();
                let batch = opened(context, batch).await?;
                let mut kept = BatchBuilder::new(batch.base_offset().max(from), batch.base_timestamp());
                let base = batch.base_offset().max(from);
                for record in batch.records() {
                    let wanted = record.offset >= from
                        && record.offset < end
                        && oldest.is_none_or(|oldest| record.timestamp >= oldest);
                    if wanted {
                        let delta = (record.offset - base) as u32;
                        kept.push(delta, record.timestamp, record.key, record.value, &record.headers);
                    }
                }
                if !kept.is_empty() {
                    chain.look_back(stage, kept.finish()).await.map_err(running_chain_failed)?;
                }
            }
        }
    }
    Ok(())
}

/// A stored batch, checked whole and decompressed (off the runtime, within
/// the server's budget), for code that reads its records (storage reads
/// skip the checks a consumer makes itself).
async fn opened(context: &ServerContext, batch: StoredBatch) -> Result<Batch, ServerError> {
    context.inflater.open(batch).await.map_err(|e| ServerError::new(ErrorCode::Storage, e.to_string()))
}

/// Starts a stream in a task of its own, unless the connection has its
/// limit of `open` streams already or the principal may not read the topic.
pub(super) fn start(
    context: &Arc<ServerContext>,
    session: &Session,
    frames: &Outgoing,
    id: u32,
    request: StreamFetchRequest,
    open: usize,
) -> Result<JoinHandle<()>, ServerError> {
    let max_streams = context.config.connection_limits.max_streams_per_connection;
    if open >= max_streams {
        return Err(limit_reached(format!(
            "this connection already has its limit of {max_streams} streams open; close one, open another connection, or raise --max-streams-per-connection"
        )));
    }
    session.require_topic(&request.topic)?;
    let principal = session.quota_key().map(str::to_string);
    let held_stream = principal.as_deref().map(|name| context.quotas.take(name, Quota::Streams, 1)).transpose()?;
    let (context, frames) = (Arc::clone(context), frames.clone());
    let open_stream = context.metrics.stream_opened();
    Ok(tokio::spawn(async move {
        let (_held_stream, _open_stream) = (held_stream, open_stream);
        if let Err(error) = stream(&context, principal.as_deref(), request, id, &frames).await {
            let _ = frames.send(error_frame(id, &error)).await;
        }
    }))
}

/// Streams a partition to the client, through the requested chain. Returns
/// quietly when the client goes away.
async fn stream(
    context: &Arc<ServerContext>,
    principal: Option<&str>,
    request: StreamFetchRequest,
    id: u32,
    frames: &Outgoing,
) -> Result<(), ServerError> {
    let max_chain = context.config.connection_limits.max_chain_length;
    if request.chain.len() > max_chain {
        return Err(limit_reached(format!(
            "a chain of {} SmartModules is longer than this server's limit of {max_chain}; shorten it, or raise --max-chain-length",
            request.chain.len()
        )));
    }
    // The principal's share first: one tenant's streams never reserve what
    // the others' need.
    let _stages = match principal {
        Some(name) if !request.chain.is_empty() => {
            Some(context.quotas.take(name, Quota::SmartModuleStages, request.chain.len())?)
        }
        _ => None,
    };
    let _memory =
        if request.chain.is_empty() { None } else { Some(MemoryReservation::take(context, request.chain.len())?) };
    let partition = context.storage.partition(&request.topic, request.partition).await?;
    // Where to start is decided as the request arrives: "the end" is the
    // end when the consumer asked, not once its modules have compiled.
    let start = partition.start_offset();
    let end = partition.next_offset();
    let mut offset = match request.offset {
        OffsetSpec::Beginning => start,
        OffsetSpec::End => end,
        OffsetSpec::Absolute(offset) => offset.max(start),
        OffsetSpec::FromEnd(n) => (end - n.min(i64::MAX as u64) as i64).max(start),
        OffsetSpec::FromBeginning(n) => start.saturating_add(n.min(i64::MAX as u64) as i64).min(end),
    };
    let mut windows = ConsumerWindows::new(&request);
    let saved = match &mut windows {
        Some(windows) => windows.saved(context, offset).await?,
        None => None,
    };
    let chain = match request.chain.is_empty() {
        true => None,
        false => Some(start_chain(context, principal, &request, saved.as_ref()).await?),
    };
    if let Some(chain) = &chain {
        look_back(context, &partition, chain, &request.chain, end).await?;
        if let Some(saved) = &saved {
            ConsumerWindows::catch_up(context, &partition, chain, saved, offset).await?;
        }
    }
    let max_bytes = (request.max_bytes as u64).clamp(1, 16 << 20);
    let sent = context.metrics.stream_counters(&request.topic);
    let mut watermark = partition.subscribe();
    let mut reader = partition.reader(offset);
    // `false` once the client is gone: the stream then just ends.
    let ahead = Arc::new(Semaphore::new(STREAM_AHEAD_BYTES));
    let ahead = &ahead;
    let send_with = |event: StreamEvent, payload: Vec<u8>, tail: Vec<Tail>| async move {
        // The event's records travel as the payload, beside the event.
        let mut frame = Frame::response::<StreamFetchRequest>(id, event);
        frame.payload = payload;
        let frame = Outbound { frame, tail };
        frames.send_within(frame, Some(ahead)).await.is_ok()
    };
    let send = |event: StreamEvent, payload: Vec<u8>| send_with(event, payload, Vec::new());
    if !send(StreamEvent::Started { offset }, Vec::new()).await {
        return Ok(());
    }
    loop {
        if chain.is_none() {
            // Stored batches as they lie in their file, several per frame.
            if let Some(run) = reader.next_run(max_bytes.min(RUN_BYTES)).await? {
                // Offsets are dense in a stored run: its records are the
                // offsets it covers.
                if let Some(counters) = &sent {
                    counters.sent((run.next_offset - offset).max(0) as u64, run.len as u64);
                }
                offset = run.next_offset;
                if !send_with(StreamEvent::Batch { next_offset: offset }, Vec::new(), vec![Tail::Stored(run)]).await {
                    return Ok(());
                }
                continue;
            }
        }
        // Without SmartModules, a frame holds as much as a run from a file.
        let read_bytes = if chain.is_none() { max_bytes.min(RUN_BYTES) } else { max_bytes };
        let batches = reader.next(read_bytes).await?;
        if batches.is_empty() {
            if *watermark.borrow() > offset {
                // The end moved, but the records are not readable here
                // yet (a replica behind its leader): ask again shortly.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
            if !request.continuous {
                send(StreamEvent::End { next_offset: offset }, Vec::new()).await;
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
        let Some(chain) = chain.as_ref() else {
            // One frame for the whole read. A stored batch goes out as it
            // is read, unless the stream starts inside it.
            let mut tail = Vec::with_capacity(batches.len());
            let (mut records, mut bytes) = (0u64, 0u64);
            for batch in batches {
                let batch = if batch.base_offset() < offset {
                    StoredBatch::from(opened(context, batch).await?.trimmed_to(offset))
                } else {
                    batch
                };
                offset = batch.next_offset();
                if !batch.is_empty() {
                    records += u64::from(batch.record_count());
                    let bytes_of_batch = batch.into_bytes();
                    bytes += bytes_of_batch.len() as u64;
                    tail.push(Tail::Memory(bytes_of_batch));
                }
            }
            if let Some(counters) = &sent {
                counters.sent(records, bytes);
            }
            if !tail.is_empty() && !send_with(StreamEvent::Batch { next_offset: offset }, Vec::new(), tail).await {
                return Ok(());
            }
            continue;
        };
        for batch in batches {
            // Modules see every record: the batch is checked whole first.
            let batch = opened(context, batch).await?.trimmed_to(offset);
            offset = batch.next_offset();
            let mut result = chain.process(batch).await.map_err(running_chain_failed)?;
            if let Some(windows) = &mut windows
                && result.failure.is_none()
            {
                windows.after_batch(context, chain, offset, std::mem::take(&mut result.accumulators)).await;
            }
            for letter in result.dead_letters {
                let (letter, record) = letter.into_control_and_payload();
                if !send(StreamEvent::DeadLetter(letter), record).await {
                    return Ok(());
                }
            }
            let (output, failure) = (result.batch, result.failure);
            if !output.is_empty() {
                let (records, bytes) = (u64::from(output.record_count()), output.into_bytes());
                if let Some(counters) = &sent {
                    counters.sent(records, bytes.len() as u64);
                }
                if !send(StreamEvent::Batch { next_offset: offset }, bytes).await {
                    return Ok(());
                }
            }
            if let Some(failure) = failure {
                let (failure, record) = failure.into_control_and_payload();
                send(StreamEvent::Failed(failure), record).await;
                return Ok(());
            }
        }
    }
}
