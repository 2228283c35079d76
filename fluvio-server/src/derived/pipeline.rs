//! One source partition's pipeline: reads the source from where its output
//! ends, passes each batch through the chain and appends the result, with
//! its provenance, to the derived topic's partition of the same number.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fluvio_protocol::requests::{PipelineState, PipelineStatus};
use fluvio_protocol::{Batch, BatchBuilder, ProducerStamp, RecordFailure};
use fluvio_smartengine::{ChainOutput, ChainWorker, EngineError};
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::DerivationSpec;
use super::provenance::{self, OutputBuilder, Position};
use super::store::{Acquired, Holder, Lease, WindowCheckpoint, WindowsOwner};
use crate::registry::RegistryError;
use crate::storage::jetstream::LEASE_TTL;
use crate::storage::{Partition, StorageError, TopicError};
use crate::{AbortOnDrop, ServerContext};

/// Bytes of outputs gathered into one append, at most (past it, the
/// outputs gathered so far go out at the next source batch's end).
const FLUSH_BYTES: usize = 256 << 10;

/// Bytes of source batches read at a time.
const READ_BYTES: u64 = 1 << 20;

/// How long progress that wrote no output may go unnoted: at most this
/// much source is read again after a restart.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// How often a windowed pipeline saves its windows, at most: a restart
/// runs again the source records since the last save.
const SAVE_WINDOWS_EVERY: Duration = Duration::from_secs(1);

/// How long a pipeline goes on looking for a topic it does not find (one
/// created a moment ago, on a shared cluster, is not seen everywhere at
/// once) before it stops and says so.
const GIVE_UP_AFTER: Duration = Duration::from_secs(300);

/// How often a pipeline renews its lease.
const LEASE_RENEW: Duration = Duration::from_secs(2);

/// How often a pipeline whose lease another server holds asks again.
const LEASE_POLL: Duration = Duration::from_secs(2);

/// How long a pipeline waits before trying again after the storage did not
/// answer (a JetStream cluster without quorum).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A running (or stopped) pipeline: its state, and its task, which is
/// stopped when the handle is dropped.
pub(super) struct Handle {
    status: Arc<Mutex<PipelineStatus>>,
    task: JoinHandle<()>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Handle {
    /// Starts the pipeline of `spec`'s `partition`.
    pub(super) fn start(context: &Arc<ServerContext>, spec: &Arc<DerivationSpec>, partition: u32) -> Handle {
        let status = Arc::new(Mutex::new(super::starting(partition)));
        let task = spawn(context, spec, partition, &status);
        Handle { status, task }
    }

    /// Whether its task still runs (a failed pipeline's has ended).
    pub(super) fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Starts it again after it stopped.
    pub(super) fn restart(&mut self, context: &Arc<ServerContext>, spec: &Arc<DerivationSpec>) {
        let partition = self.status.lock().source_partition;
        self.status.lock().state = PipelineState::Starting;
        self.task = spawn(context, spec, partition, &self.status);
    }

    /// Stops it (if it runs) and shows it as failed for `reason`, at the
    /// source offset it had reached; `resume` starts it again.
    pub(super) fn stop(&mut self, reason: &str) {
        self.task.abort();
        let mut status = self.status.lock();
        if !matches!(status.state, PipelineState::Failed { .. }) {
            let offset = status.source_offset;
            status.state = PipelineState::Failed { offset, error: reason.to_string() };
        }
    }

    /// Its state now.
    pub(super) fn status(&self) -> PipelineStatus {
        self.status.lock().clone()
    }
}

fn spawn(
    context: &Arc<ServerContext>,
    spec: &Arc<DerivationSpec>,
    partition: u32,
    status: &Arc<Mutex<PipelineStatus>>,
) -> JoinHandle<()> {
    let pipeline =
        Pipeline { context: Arc::clone(context), spec: Arc::clone(spec), partition, status: Arc::clone(status) };
    tokio::spawn(pipeline.run())
}

/// Why a pipeline stopped.
struct Stop {
    /// The source offset it stopped at.
    offset: i64,
    error: String,
    /// Whether trying again later may work (the storage did not answer).
    transient: bool,
    /// A topic was not found: tried again for [`GIVE_UP_AFTER`] only.
    missing: bool,
}

impl Stop {
    fn at(offset: i64, error: impl std::fmt::Display) -> Stop {
        Stop { offset, error: error.to_string(), transient: false, missing: false }
    }

    fn storage(offset: i64, error: StorageError) -> Stop {
        // Another writer came first: start again from where the output
        // ends now.
        let transient = matches!(error, StorageError::Unavailable { .. } | StorageError::NotAtEnd { .. });
        Stop { offset, error: error.to_string(), transient, missing: false }
    }

    fn transient(offset: i64, error: impl std::fmt::Display) -> Stop {
        Stop { offset, error: error.to_string(), transient: true, missing: false }
    }

    /// A topic error. A topic not found is waited for a while: on a shared
    /// cluster a topic created a moment ago through this or another server
    /// is not seen everywhere at once.
    fn topic(offset: i64, error: TopicError) -> Stop {
        let missing = matches!(error, TopicError::NotFound(_));
        let transient = missing
            || matches!(error, TopicError::Unavailable { .. } | TopicError::Storage(StorageError::Unavailable { .. }));
        Stop { offset, error: error.to_string(), transient, missing }
    }
}

/// Why a chain could not be built.
pub(super) enum ChainError {
    Registry(RegistryError),
    Engine(EngineError),
}

/// Builds `spec`'s chain (none when it has no transforms), each aggregate
/// starting from its accumulator in `accumulators` and each windowed one
/// from its state in `windows` (by place in the chain).
pub(super) async fn build_chain(
    context: &ServerContext,
    spec: &DerivationSpec,
    accumulators: &[(usize, Vec<u8>)],
    windows: Vec<(usize, Vec<u8>)>,
) -> Result<Option<ChainWorker>, ChainError> {
    if spec.transforms.is_empty() {
        return Ok(None);
    }
    context.registry.prepare(spec.modules()).await.map_err(ChainError::Registry)?;
    let mut invocations = spec.transforms.clone();
    for (place, accumulator) in accumulators {
        if let Some(invocation) = invocations.get_mut(*place) {
            *invocation = invocation.clone().initial_accumulator(accumulator.clone());
        }
    }
    let builder = context.chain_builder(invocations, spec.policy).window_states(windows);
    let chain = builder.spawn().await.map_err(ChainError::Engine)?;
    Ok(Some(chain))
}

struct Pipeline {
    context: Arc<ServerContext>,
    spec: Arc<DerivationSpec>,
    partition: u32,
    status: Arc<Mutex<PipelineStatus>>,
}

impl Pipeline {
    /// Runs until the task is aborted, or until it stops at an error,
    /// which its state then shows. On a shared cluster it first takes the
    /// pipeline's lease (waiting while another server holds it), renews it
    /// while it runs, and stops writing the moment it is lost. Storage that
    /// does not answer is tried again.
    async fn run(self) {
        let store = self.context.derived.store();
        // Since when each try has stopped at a transient error.
        let mut waiting_since: Option<Instant> = None;
        loop {
            let holder = self.holder();
            let mut lease = match store.acquire(&self.spec.name, self.partition, &holder).await {
                Ok(Acquired::Lease(lease)) => lease,
                Ok(Acquired::HeldBy(other)) => {
                    if let Some(other) = other {
                        let mut status = self.status.lock();
                        status.state = PipelineState::Elsewhere { server: other.server, address: other.address };
                        status.source_offset = other.source_offset;
                    }
                    tokio::time::sleep(LEASE_POLL).await;
                    continue;
                }
                Err(error) => {
                    tracing::warn!(topic = %self.spec.name, partition = self.partition, %error, "cannot ask for a pipeline's lease; trying again");
                    tokio::time::sleep(RETRY_AFTER).await;
                    continue;
                }
            };
            let stopped = tokio::select! {
                stop = self.follow() => match stop { Err(stop) => Some(stop) },
                () = self.keep(&mut lease) => None,
            };
            store.release(lease).await;
            let Some(stop) = stopped else {
                tracing::warn!(topic = %self.spec.name, partition = self.partition, "a pipeline lost its lease and stopped writing");
                continue;
            };
            if matches!(self.status.lock().state, PipelineState::Running) {
                // It got going: a new streak of errors starts here.
                waiting_since = None;
            }
            let waited = waiting_since.get_or_insert_with(Instant::now).elapsed();
            if stop.transient && !(stop.missing && waited >= GIVE_UP_AFTER) {
                tracing::warn!(topic = %self.spec.name, partition = self.partition, error = %stop.error, "a derived topic's pipeline waits for the storage");
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
            tracing::error!(topic = %self.spec.name, partition = self.partition, offset = stop.offset, error = %stop.error, "a derived topic's pipeline stopped");
            let mut status = self.status.lock();
            status.source_offset = stop.offset;
            status.state = PipelineState::Failed { offset: stop.offset, error: stop.error };
            return;
        }
    }

    /// What this server writes in the pipeline's lease.
    fn holder(&self) -> Holder {
        let server = &self.context.this_server;
        Holder { server: server.id, address: server.address.clone(), source_offset: self.status.lock().source_offset }
    }

    /// Renews the lease every [`LEASE_RENEW`]; returns when it is lost, or
    /// when it could not be renewed for so long that it may have expired.
    async fn keep(&self, lease: &mut Lease) {
        let store = self.context.derived.store();
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(LEASE_RENEW).await;
            match store.renew(lease, &self.holder()).await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => return,
                Err(error) => {
                    tracing::warn!(topic = %self.spec.name, partition = self.partition, %error, "cannot renew a pipeline's lease");
                    if renewed.elapsed() + LEASE_RENEW >= LEASE_TTL {
                        return;
                    }
                }
            }
        }
    }

    /// Where the pipeline got to: the later of what its output's last
    /// batch says and its checkpoint; `None` when it never ran.
    async fn resume_point(&self, output: &Arc<dyn Partition>) -> Result<Option<Position>, Stop> {
        let end = output.next_offset();
        let mut written = None;
        if end > 0 {
            let batches = output.read(end - 1, 64 << 10).await.map_err(|error| Stop::storage(0, error))?;
            if let Some(last) = batches.into_iter().last() {
                let last = self.context.inflater.open(last).await.map_err(|error| Stop::at(0, error))?;
                written = provenance::position_after(&last, &self.spec.source, self.partition);
            }
        }
        let noted = self
            .context
            .derived
            .store()
            .checkpoint(&self.spec.name, self.partition)
            .await
            .map_err(|error| Stop::transient(0, error))?;
        match (written, noted) {
            (Some(written), Some(noted)) => Ok(Some(if noted.next > written.next { noted } else { written })),
            // Records are stored but nothing says where they came from
            // (retention removed every batch, on JetStream): starting
            // afresh would store them again.
            // (A replica may also not have the last batch yet: looked for
            // again for a while, as a missing topic is.)
            (None, None) if end > 0 => Err(Stop {
                offset: 0,
                error: format!(
                    "the derived topic {:?} holds records up to offset {end}, but no stored batch or checkpoint says which source records they came from; delete and create the derived topic again",
                    self.spec.name
                ),
                transient: true,
                missing: true,
            }),
            (written, noted) => Ok(written.or(noted)),
        }
    }

    /// Follows the source from where the output ends. Returns only when it
    /// stops.
    async fn follow(&self) -> Result<std::convert::Infallible, Stop> {
        let (spec, storage) = (&self.spec, &self.context.storage);
        self.status.lock().state = PipelineState::Starting;
        let source = storage.partition(&spec.source, self.partition).await.map_err(|e| Stop::topic(0, e))?;
        // Routed by key, every derived partition is written; else the one
        // of the source partition's number.
        let mut outputs = Vec::new();
        for partition in if spec.routed() { 0..spec.partitions } else { self.partition..self.partition + 1 } {
            outputs.push(storage.partition(&spec.name, partition).await.map_err(|e| Stop::topic(0, e))?);
        }
        let output = Arc::clone(&outputs[0]);
        let dead_letters = self.dead_letter_partition().await?;
        let resumed = if spec.routed() {
            // Other pipelines write the same partitions: the checkpoint,
            // written after each source batch's appends, says where this
            // one got to.
            self.context
                .derived
                .store()
                .checkpoint(&spec.name, self.partition)
                .await
                .map_err(|error| Stop::transient(0, error))?
        } else {
            self.resume_point(&output).await?
        };
        let fresh = resumed.is_none();
        let mut position = resumed.unwrap_or(Position { next: source.start_offset(), accumulators: Vec::new() });
        // Its modules' memory counts against the server's total, as a
        // stream's does; a full server makes the pipeline wait.
        let _memory = if spec.transforms.is_empty() {
            None
        } else {
            let reserved = crate::connection::MemoryReservation::take(&self.context, spec.transforms.len());
            Some(reserved.map_err(|error| Stop::transient(position.next, error))?)
        };
        // A windowed chain starts from its last saved windows, at or before
        // where the output ends, and runs the source from there up to it
        // again (its outputs are stored already).
        let mut windows = Windows::default();
        let mut start = position.clone();
        let mut restored = Vec::new();
        if spec.windowed() {
            let saved = self
                .context
                .derived
                .store()
                .window_checkpoints(self.windows_owner())
                .await
                .map_err(|error| Stop::transient(position.next, error))?;
            windows.generation = saved.first().map_or(0, |latest| latest.generation + 1);
            match saved.into_iter().find(|checkpoint| checkpoint.next <= position.next) {
                Some(checkpoint) => {
                    start = Position { next: checkpoint.next, accumulators: checkpoint.accumulators };
                    restored = checkpoint.windows;
                }
                None if fresh => {}
                None => {
                    tracing::warn!(topic = %spec.name, partition = self.partition, "a windowed pipeline has no saved windows; it runs the source again from its start");
                    start = Position { next: source.start_offset(), accumulators: Vec::new() };
                }
            }
        }
        let chain =
            build_chain(&self.context, spec, &start.accumulators, restored).await.map_err(|error| match error {
                // The cluster's registry did not answer (a node died, a new
                // leader is being elected): the module is fetched again later.
                ChainError::Registry(error @ RegistryError::Shared { .. }) => Stop::transient(position.next, error),
                ChainError::Registry(error) => Stop::at(position.next, error),
                ChainError::Engine(error) => Stop::at(position.next, error),
            })?;
        if fresh && let Some(chain) = &chain {
            crate::connection::look_back(&self.context, &source, chain, &spec.transforms, position.next)
                .await
                .map_err(|error| Stop::at(position.next, error))?;
        }
        if let Some(chain) = chain.as_ref().filter(|_| spec.windowed()) {
            if fresh {
                self.save_windows(chain, &position, &mut windows).await?;
            }
            // Up to where the output ends: those outputs are stored.
            self.replay(&source, chain, start.next, position.next).await?;
        }
        {
            let mut status = self.status.lock();
            status.state = PipelineState::Running;
            status.source_offset = position.next;
        }
        let mut watermark = source.subscribe();
        let mut reader = Arc::clone(&source).reader(position.next);
        // Since when progress has gone without output or checkpoint.
        let mut unnoted_since: Option<Instant> = None;
        // Outputs gathered so far, from source batch boundary to boundary,
        // across reads while the source has more: fewer, larger appends.
        let mut gathered = OutputBuilder::new(position.next);
        // The append being written while the next source records run
        // through the chain.
        // Appends are exclusive: one made elsewhere since stops this one.
        let mut writing = Appending { output_end: output.next_offset(), in_flight: None };
        loop {
            let batches = reader.next(READ_BYTES).await.map_err(|error| Stop::storage(position.next, error))?;
            if batches.is_empty() {
                // Caught up: what was gathered goes out, and is waited for.
                if gathered.from() < position.next {
                    let flushed = std::mem::replace(&mut gathered, OutputBuilder::new(position.next));
                    self.flush(flushed, &position, &output, &mut writing, &mut unnoted_since, false).await?;
                }
                self.settle(&mut writing).await?;
                if unnoted_since.take().is_some() {
                    self.note(&position).await?;
                }
                // Not at every catch-up: a trickle of records would save
                // the windows for each.
                let unsaved = windows.due(spec) && windows.saved_next != Some(position.next);
                if let Some(chain) = chain.as_ref().filter(|_| unsaved) {
                    self.save_windows(chain, &position, &mut windows).await?;
                }
                self.status.lock().source_offset = position.next;
                if *watermark.borrow() > position.next {
                    // Readable shortly (a replica behind its leader).
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                if watermark.wait_for(|next| *next > position.next).await.is_err() {
                    return Err(Stop::at(position.next, format!("the source topic {:?} is gone", spec.source)));
                }
                continue;
            }
            // Each append ends at a source batch boundary, so that its
            // provenance is exact.
            let mut failure = None;
            let count = batches.len();
            for (index, batch) in batches.into_iter().enumerate() {
                let batch = self.context.inflater.open(batch).await.map_err(|e| Stop::at(position.next, e))?;
                let batch = batch.trimmed_to(position.next);
                let from = position.next;
                let (records_in, batch_next) = (batch.record_count() as u64, batch.next_offset());
                let result = match &chain {
                    Some(chain) => chain.process(batch).await.map_err(|error| Stop::at(from, error))?,
                    None => passed_through(batch, &position),
                };
                let reached_next = result.failure.as_ref().map_or(batch_next, |failure| failure.offset);
                position = Position { next: reached_next, accumulators: result.accumulators };
                gathered.push(&result.batch);
                let letters = result.dead_letters.len() as u64;
                if spec.routed() {
                    // One append per derived partition for each source
                    // batch, stamped with its start, then the checkpoint:
                    // a restart replays at most this batch, whose appends
                    // the stamps then drop.
                    self.send_dead_letters(dead_letters.as_ref(), from, result.dead_letters).await?;
                    let gathered = std::mem::replace(&mut gathered, OutputBuilder::new(position.next));
                    self.flush_routed(gathered, from, &position, &outputs).await?;
                    {
                        let mut status = self.status.lock();
                        status.records_in += records_in;
                        status.skipped += result.skipped;
                        status.dead_letters += letters;
                    }
                    failure = result.failure;
                    if failure.is_some() {
                        break;
                    }
                    if let Some(chain) = chain.as_ref().filter(|_| windows.due(spec)) {
                        self.save_windows(chain, &position, &mut windows).await?;
                    }
                    continue;
                }
                if letters > 0 {
                    // Stamped with this batch's start, after the outputs
                    // before it are stored and followed at once by the
                    // outputs up to here: a restart replays at most this
                    // batch, whose letters the stamp then drops.
                    self.settle(&mut writing).await?;
                    self.send_dead_letters(dead_letters.as_ref(), from, result.dead_letters).await?;
                }
                {
                    let mut status = self.status.lock();
                    status.records_in += records_in;
                    status.skipped += result.skipped;
                    status.dead_letters += letters;
                }
                failure = result.failure;
                // The read's end is a place to flush only when the source
                // has no more: a pipeline catching up gathers across reads.
                let at_end = index + 1 == count && *watermark.borrow() <= position.next;
                if at_end || failure.is_some() || letters > 0 || gathered.size() >= FLUSH_BYTES {
                    let flushed = std::mem::replace(&mut gathered, OutputBuilder::new(position.next));
                    let must_note = letters > 0 || failure.is_some();
                    self.flush(flushed, &position, &output, &mut writing, &mut unnoted_since, must_note).await?;
                }
                if failure.is_some() {
                    break;
                }
                // Saved only where every output so far is flushed, so that
                // the saved windows never run ahead of the stored outputs.
                if let Some(chain) = chain.as_ref().filter(|_| windows.due(spec) && gathered.from() == position.next) {
                    self.settle(&mut writing).await?;
                    if unnoted_since.take().is_some() {
                        self.note(&position).await?;
                    }
                    self.save_windows(chain, &position, &mut windows).await?;
                }
            }
            if let Some(failure) = failure {
                self.settle(&mut writing).await?;
                return Err(Stop::at(
                    failure.offset,
                    format!(
                        "SmartModule {:?} failed on the record at offset {}: {}: {}; fix or replace the module, then `fluvio topic resume {}`",
                        failure.module, failure.offset, failure.kind, failure.message, spec.name
                    ),
                ));
            }
        }
    }

    /// Runs the source records `from..until` through a windowed chain
    /// restored from its windows saved at `from`, without appending: their
    /// outputs and dead letters are stored already (the chain is
    /// deterministic), and this brings its windows to where they were.
    async fn replay(
        &self,
        source: &Arc<dyn Partition>,
        chain: &ChainWorker,
        from: i64,
        until: i64,
    ) -> Result<(), Stop> {
        if from < until {
            tracing::info!(topic = %self.spec.name, partition = self.partition, from, until, "a windowed pipeline runs source records again to restore its windows");
        }
        replay(&self.context, source, chain, from, until).await.map_err(|error| match error {
            ReplayError::Storage(offset, error) => Stop::storage(offset, error),
            ReplayError::Ended(offset, message) => Stop::transient(offset, message),
            ReplayError::Failed(offset, message) => Stop::at(offset, message),
        })
    }

    /// Saves the windowed chain's state as of `position` (every output
    /// before it stored).
    async fn save_windows(&self, chain: &ChainWorker, position: &Position, windows: &mut Windows) -> Result<(), Stop> {
        let states = chain.window_states().await.map_err(|error| Stop::at(position.next, error))?;
        let checkpoint = WindowCheckpoint {
            generation: windows.generation,
            fingerprint: 0,
            next: position.next,
            accumulators: position.accumulators.clone(),
            windows: states,
        };
        let store = self.context.derived.store();
        store.save_window_checkpoint(self.windows_owner(), &checkpoint).await.map_err(|error| Stop {
            offset: position.next,
            error: error.to_string(),
            transient: store.is_shared(),
            missing: false,
        })?;
        windows.generation += 1;
        windows.saved_at = Instant::now();
        windows.saved_next = Some(position.next);
        Ok(())
    }

    fn windows_owner(&self) -> WindowsOwner<'_> {
        WindowsOwner::Pipeline { name: &self.spec.name, partition: self.partition }
    }

    /// Starts appending the gathered outputs (with where they came from)
    /// at the output's end, once the append before it is stored; or, when
    /// there are none, notes the progress in the checkpoint: at once when
    /// `must_note` (dead letters were sent, or the pipeline stops here),
    /// else at most [`CHECKPOINT_EVERY`] later.
    async fn flush(
        &self,
        gathered: OutputBuilder,
        reached: &Position,
        output: &Arc<dyn Partition>,
        writing: &mut Appending,
        unnoted_since: &mut Option<Instant>,
        must_note: bool,
    ) -> Result<(), Stop> {
        let from = gathered.from();
        match gathered.finish(&self.spec.source, self.partition, reached) {
            Some(appended) => {
                // Appends are exclusive, each expected at the end the one
                // before it left.
                self.settle(writing).await?;
                let (records, bytes) = (appended.record_count() as u64, appended.as_bytes().len() as u64);
                let (output, expected_end) = (Arc::clone(output), writing.output_end);
                // On JetStream the append also carries a message id of its
                // source range: a publish retried after a lost answer is
                // stored once. (The local log needs none: its append either
                // lands whole or is dropped at recovery.)
                let stamp = self.context.derived.store().is_shared().then(|| ProducerStamp {
                    id: stamp_id(&format!("{}/{}", self.spec.name, self.partition), self.partition),
                    sequence: from as u64,
                });
                let task = tokio::spawn(async move { output.append_at(appended.into(), stamp, expected_end).await });
                writing.in_flight =
                    Some(InFlight { task: AbortOnDrop(task), from, records, bytes, reached: reached.next });
                *unnoted_since = None;
            }
            None => {
                let since = *unnoted_since.get_or_insert_with(Instant::now);
                if must_note || since.elapsed() >= CHECKPOINT_EVERY {
                    // A checkpoint never runs ahead of the stored outputs.
                    self.settle(writing).await?;
                    self.note(reached).await?;
                    *unnoted_since = None;
                }
                if writing.in_flight.is_none() {
                    self.status.lock().source_offset = reached.next;
                }
            }
        }
        Ok(())
    }

    /// Waits for the append in flight, if any, to be stored.
    async fn settle(&self, writing: &mut Appending) -> Result<(), Stop> {
        let Some(InFlight { mut task, from, records, bytes, reached }) = writing.in_flight.take() else {
            return Ok(());
        };
        let stored = (&mut task.0).await.map_err(|error| Stop::at(from, format!("the append failed: {error}")))?;
        let base = stored.map_err(|error| Stop::storage(from, error))?;
        writing.output_end = base + records as i64;
        self.context.metrics.appended(&self.spec.name, self.partition, records, bytes);
        let mut status = self.status.lock();
        status.records_out += records;
        status.source_offset = status.source_offset.max(reached);
        Ok(())
    }

    /// Sends each output of a source batch that began at `from` to the
    /// derived partition its key hashes to (a keyless one by its source
    /// offset), one stamped append per partition, then notes the progress.
    async fn flush_routed(
        &self,
        gathered: OutputBuilder,
        from: i64,
        reached: &Position,
        outputs: &[Arc<dyn Partition>],
    ) -> Result<(), Stop> {
        let count = outputs.len() as u32;
        let mut routed: Vec<OutputBuilder> = (0..count).map(|_| OutputBuilder::new(from)).collect();
        if let Some(batch) = gathered.finish(&self.spec.source, self.partition, reached) {
            for record in batch.records() {
                let partition = match record.key {
                    Some(key) => fluvio_protocol::partition_for_key(key, count),
                    None => (record.offset.unsigned_abs() % u64::from(count)) as u32,
                };
                routed[partition as usize].push_record(&record, batch.base_timestamp());
            }
        }
        let mut records_out = 0;
        for (partition, builder) in routed.into_iter().enumerate() {
            let Some(appended) = builder.finish(&self.spec.source, self.partition, reached) else { continue };
            let (records, bytes) = (appended.record_count() as u64, appended.as_bytes().len() as u64);
            records_out += records;
            let stamp = ProducerStamp {
                id: stamp_id(&format!("{}/{partition}", self.spec.name), self.partition),
                sequence: from as u64,
            };
            outputs[partition].append(appended.into(), Some(stamp)).await.map_err(|e| Stop::storage(from, e))?;
            self.context.metrics.appended(&self.spec.name, partition as u32, records, bytes);
        }
        self.note(reached).await?;
        let mut status = self.status.lock();
        status.records_out += records_out;
        status.source_offset = reached.next;
        Ok(())
    }

    /// Notes progress in the checkpoint: a routed pipeline's resume point
    /// (so synced), else progress that produced no output.
    async fn note(&self, position: &Position) -> Result<(), Stop> {
        let store = self.context.derived.store();
        let durable = self.spec.routed();
        store.save_checkpoint(&self.spec.name, self.partition, position, durable).await.map_err(|error| {
            // A cluster that does not answer may answer later.
            let transient = store.is_shared();
            Stop { offset: position.next, error: error.to_string(), transient, missing: false }
        })
    }

    /// The dead-letter topic's partition this pipeline writes (its number
    /// modulo the topic's count), when the policy sends records there.
    async fn dead_letter_partition(&self) -> Result<Option<Arc<dyn Partition>>, Stop> {
        let Some(topic) = &self.spec.dead_letter_topic else { return Ok(None) };
        let storage = &self.context.storage;
        let topics = storage.list_topics().await.map_err(|e| Stop::topic(0, e))?;
        let count = topics.iter().find(|info| &info.name == topic).map_or(1, |info| info.partitions.max(1));
        let partition = storage.partition(topic, self.partition % count).await.map_err(|e| Stop::topic(0, e))?;
        Ok(Some(partition))
    }

    /// Appends the records modules failed on to the dead-letter topic, as
    /// one batch stamped with the source range's start: a batch sent again
    /// after a restart in the middle of this one is stored once.
    async fn send_dead_letters(
        &self,
        partition: Option<&Arc<dyn Partition>>,
        from: i64,
        letters: Vec<RecordFailure>,
    ) -> Result<(), Stop> {
        let spec = &self.spec;
        let Some(partition) = partition else { return Ok(()) };
        let mut builder = BatchBuilder::new(0, letters[0].timestamp);
        let (source_partition, derived) = (self.partition.to_string(), spec.name.as_bytes());
        for (index, letter) in letters.iter().enumerate() {
            let error = format!("{}: {}", letter.kind, letter.message);
            let offset = letter.offset.to_string();
            let headers: [(&[u8], &[u8]); 6] = [
                (b"fluvio-module", letter.module.as_bytes()),
                (b"fluvio-error", error.as_bytes()),
                (b"fluvio-source-topic", spec.source.as_bytes()),
                (b"fluvio-source-partition", source_partition.as_bytes()),
                (b"fluvio-source-offset", offset.as_bytes()),
                (b"fluvio-derived-topic", derived),
            ];
            builder.push(index as u32, letter.timestamp, letter.key.as_deref(), &letter.value, &headers);
        }
        let stamp = ProducerStamp { id: stamp_id(&spec.name, self.partition), sequence: from as u64 };
        partition.append(builder.finish().into(), Some(stamp)).await.map_err(|e| Stop::storage(from, e))?;
        Ok(())
    }
}

/// The pipeline's appends to its output partition: where the output ends
/// once the one in flight is stored.
struct Appending {
    output_end: i64,
    in_flight: Option<InFlight>,
}

/// An append being written: the outputs of the source records from `from`
/// up to `reached`. Its task stops with the pipeline, so the append of a
/// pipeline that was stopped (deleted, or its lease lost) is not written.
struct InFlight {
    task: AbortOnDrop<Result<i64, StorageError>>,
    from: i64,
    records: u64,
    bytes: u64,
    reached: i64,
}

/// Why records could not be run through a chain again.
pub(crate) enum ReplayError {
    /// The storage did not read (at this offset).
    Storage(i64, StorageError),
    /// The partition ends before the offset asked for.
    Ended(i64, String),
    /// A module failed, or a batch did not open.
    Failed(i64, String),
}

/// Runs the partition's records `from..until` through `chain` without
/// output: what brings restored windows to where they were when the
/// records after `until` were about to be processed. The outputs are the
/// ones given the first time (the chain is deterministic, and windows do
/// not depend on how the records are cut into batches).
pub(crate) async fn replay(
    context: &ServerContext,
    source: &Arc<dyn Partition>,
    chain: &ChainWorker,
    from: i64,
    until: i64,
) -> Result<(), ReplayError> {
    let mut reader = Arc::clone(source).reader(from);
    let mut next = from;
    while next < until {
        let batches = reader.next(READ_BYTES).await.map_err(|error| ReplayError::Storage(next, error))?;
        if batches.is_empty() {
            return Err(ReplayError::Ended(
                next,
                format!("the partition ends at {next}, before the offset {until} its windows are to be restored to"),
            ));
        }
        for batch in batches {
            let batch = context.inflater.open(batch).await.map_err(|e| ReplayError::Failed(next, e.to_string()))?;
            let batch = batch.trimmed_to(next).ending_before(until);
            if batch.is_empty() {
                next = until;
                break;
            }
            next = batch.next_offset();
            let result = chain.process(batch).await.map_err(|error| ReplayError::Failed(next, error.to_string()))?;
            if let Some(failure) = result.failure {
                return Err(ReplayError::Failed(failure.offset, failure.to_string()));
            }
        }
    }
    Ok(())
}

/// A windowed pipeline's saves of its windows.
struct Windows {
    /// The next save's generation.
    generation: u64,
    saved_at: Instant,
    /// The source offset of the last save.
    saved_next: Option<i64>,
}

impl Default for Windows {
    fn default() -> Self {
        Windows { generation: 0, saved_at: Instant::now(), saved_next: None }
    }
}

impl Windows {
    /// Whether the windows are due to be saved.
    fn due(&self, spec: &DerivationSpec) -> bool {
        spec.windowed() && self.saved_at.elapsed() >= SAVE_WINDOWS_EVERY
    }
}

/// What a chain of no modules does: every record as it is.
fn passed_through(batch: Batch, position: &Position) -> ChainOutput {
    ChainOutput {
        batch,
        failure: None,
        skipped: 0,
        dead_letters: Vec::new(),
        accumulators: position.accumulators.clone(),
    }
}

/// The producer id a pipeline's dead letters are stamped with: FNV-1a of
/// the derived topic and partition, the same at every restart.
fn stamp_id(topic: &str, partition: u32) -> u64 {
    crate::fnv1a(format!("derived/{topic}/{partition}").as_bytes())
}
