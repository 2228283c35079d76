//! A consumer id's windows: a stream started with a consumer id whose chain
//! runs windowed aggregates keeps their state with that id's offsets, so
//! that the consumer's next stream goes on with the windows where they
//! were, as a derived topic's pipeline does.
//!
//! Every second, at a batch boundary, the stream takes the chain's state
//! (the windows, and the other aggregates' accumulators) as of the offset
//! it has reached, and keeps the last few. It saves the newest one the
//! consumer's committed offset has passed: the records before it have been
//! handed out, so a stream that starts at the committed offset restores
//! that save and runs the records from its offset up to the committed one
//! through the chain again, without sending what they give (it was sent).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fluvio_protocol::requests::StreamFetchRequest;
use fluvio_protocol::{ErrorCode, ErrorPolicy, SmartModuleInvocation};
use fluvio_smartengine::ChainWorker;

use super::error::ServerError;
use crate::ServerContext;
use crate::derived::pipeline::{ReplayError, replay};
use crate::derived::store::{WindowCheckpoint, WindowsOwner};
use crate::storage::Partition;

/// How often a stream takes its windows' state.
const TAKE_EVERY: Duration = Duration::from_secs(1);

/// States kept until the consumer commits past them.
const KEPT: usize = 8;

/// A windowed stream's consumer id, and the states it took.
pub(super) struct ConsumerWindows {
    consumer: String,
    topic: String,
    partition: u32,
    fingerprint: u64,
    generation: u64,
    recent: VecDeque<WindowCheckpoint>,
    taken_at: Instant,
    saved_next: i64,
}

/// What names a chain in a save: its modules, kinds, parameters (windows
/// included) and policy. State saved by one chain is not restored into
/// another.
fn fingerprint(chain: &[SmartModuleInvocation], policy: ErrorPolicy) -> u64 {
    let mut text = format!("{policy:?}");
    for invocation in chain {
        text.push_str(&format!("\n{:?} {:?} {:?}", invocation.name(), invocation.kind, invocation.params));
    }
    crate::fnv1a(text.as_bytes())
}

impl ConsumerWindows {
    /// For a stream with a consumer id whose chain has a window; `None`
    /// for any other.
    pub(super) fn new(request: &StreamFetchRequest) -> Option<ConsumerWindows> {
        let consumer = request.consumer_id.clone()?;
        if !request.chain.iter().any(|invocation| invocation.params.window().is_some()) {
            return None;
        }
        Some(ConsumerWindows {
            consumer,
            topic: request.topic.clone(),
            partition: request.partition,
            fingerprint: fingerprint(&request.chain, request.policy),
            generation: 0,
            recent: VecDeque::new(),
            taken_at: Instant::now(),
            saved_next: i64::MIN,
        })
    }

    fn owner(&self) -> WindowsOwner<'_> {
        WindowsOwner::Consumer { consumer: &self.consumer, topic: &self.topic, partition: self.partition }
    }

    /// The latest save of this chain at or before `offset` (where the
    /// stream starts), if any.
    pub(super) async fn saved(
        &mut self,
        context: &ServerContext,
        offset: i64,
    ) -> Result<Option<WindowCheckpoint>, ServerError> {
        crate::storage::validate_consumer_id(&self.consumer)
            .map_err(|error| ServerError::new(ErrorCode::InvalidRequest, error.to_string()))?;
        let saves = context.derived.store().window_checkpoints(self.owner()).await.map_err(|error| {
            ServerError::new(ErrorCode::Storage, format!("cannot read the consumer's saved windows: {error}"))
        })?;
        self.generation = saves.first().map_or(0, |latest| latest.generation + 1);
        let usable = saves.into_iter().find(|save| save.fingerprint == self.fingerprint && save.next <= offset);
        if let Some(save) = &usable {
            self.saved_next = save.next;
        }
        Ok(usable)
    }

    /// Brings a chain restored from `save` to `offset`: the records between
    /// run through it again, their outputs not sent.
    pub(super) async fn catch_up(
        context: &ServerContext,
        partition: &Arc<dyn Partition>,
        chain: &ChainWorker,
        save: &WindowCheckpoint,
        offset: i64,
    ) -> Result<(), ServerError> {
        replay(context, partition, chain, save.next, offset).await.map_err(|error| match error {
            ReplayError::Storage(_, error) => ServerError::new(ErrorCode::Storage, error.to_string()),
            ReplayError::Ended(_, message) | ReplayError::Failed(_, message) => ServerError::new(
                ErrorCode::SmartModuleFailed,
                format!("cannot restore the consumer's windows: {message}"),
            ),
        })
    }

    /// After a batch, with the chain at `next`: takes the windows' state
    /// once a second, and saves the newest state the consumer's committed
    /// offset has passed. A failure to save is logged: the stream goes on,
    /// and a later save (or a longer catch-up) makes up for it.
    pub(super) async fn after_batch(
        &mut self,
        context: &ServerContext,
        chain: &ChainWorker,
        next: i64,
        accumulators: Vec<(usize, Vec<u8>)>,
    ) {
        if self.taken_at.elapsed() < TAKE_EVERY {
            return;
        }
        self.taken_at = Instant::now();
        let windows = match chain.window_states().await {
            Ok(windows) => windows,
            Err(error) => {
                tracing::warn!(consumer = %self.consumer, %error, "cannot take a stream's windows");
                return;
            }
        };
        self.recent.push_back(WindowCheckpoint {
            generation: 0,
            fingerprint: self.fingerprint,
            next,
            accumulators,
            windows,
        });
        if self.recent.len() > KEPT {
            self.recent.pop_front();
        }
        let committed = match context.storage.fetch_offset(&self.consumer, &self.topic, self.partition).await {
            Ok(Some(committed)) => committed,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(consumer = %self.consumer, %error, "cannot read a consumer's offset to save its windows");
                return;
            }
        };
        let Some(place) = self.recent.iter().rposition(|state| state.next <= committed && state.next > self.saved_next)
        else {
            return;
        };
        let mut state = self.recent.remove(place).expect("found");
        self.recent.drain(..place);
        state.generation = self.generation;
        match context.derived.store().save_window_checkpoint(self.owner(), &state).await {
            Ok(()) => {
                self.generation += 1;
                self.saved_next = state.next;
            }
            Err(error) => tracing::warn!(consumer = %self.consumer, %error, "cannot save a consumer's windows"),
        }
    }
}
