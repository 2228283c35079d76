//! A consumer's reader of a partition, with reads in flight ahead of it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use fluvio_protocol::StoredBatch;
use futures::future::BoxFuture;

use super::READ_AHEAD;
use super::partition::{Fetched, JetStreamPartition};
use crate::storage::{PartitionReader, StorageError};

/// Reads a partition onwards for one consumer, with up to [`READ_AHEAD`]
/// messages in flight: each read is a round trip through NATS, so one at a
/// time would bound a consumer by latency. Fetches run as tasks of their
/// own, so that a read that stops at `max_bytes` leaves the ones ahead of
/// it running for the next read rather than wasting them.
pub(super) struct JetStreamReader {
    partition: Arc<JetStreamPartition>,
    /// The first offset not yet returned.
    offset: i64,
    /// The next sequence to fetch; `None` until located (again).
    next_sequence: Option<u64>,
    in_flight: VecDeque<tokio::task::JoinHandle<Result<Fetched, StorageError>>>,
}

impl JetStreamReader {
    /// A reader of `partition` from `offset` on.
    pub(super) fn new(partition: Arc<JetStreamPartition>, offset: i64) -> JetStreamReader {
        JetStreamReader { partition, offset, next_sequence: None, in_flight: VecDeque::new() }
    }

    fn restart(&mut self) {
        for fetch in self.in_flight.drain(..) {
            fetch.abort();
        }
        self.next_sequence = None;
    }

    async fn next_batches(&mut self, max_bytes: u64) -> Result<Vec<StoredBatch>, StorageError> {
        if self.next_sequence.is_none() {
            match self.partition.locate(self.offset).await? {
                Some(sequence) => self.next_sequence = Some(sequence),
                None => return Ok(Vec::new()),
            }
        }
        let mut batches = Vec::new();
        let mut bytes = 0u64;
        loop {
            let last = self.partition.known_last.load(Ordering::Relaxed);
            let mut sequence = self.next_sequence.expect("located above");
            while self.in_flight.len() < READ_AHEAD && sequence <= last {
                let partition = Arc::clone(&self.partition);
                self.in_flight.push_back(tokio::spawn(async move { partition.fetch(sequence).await }));
                sequence += 1;
            }
            self.next_sequence = Some(sequence);
            let Some(fetch) = self.in_flight.pop_front() else { return Ok(batches) };
            let fetched = fetch.await.map_err(|e| self.partition.unavailable("read", e));
            match fetched.and_then(|fetched| fetched) {
                Ok(Fetched::Batch(batch)) => {
                    if batch.next_offset() <= self.offset {
                        continue;
                    }
                    self.offset = batch.next_offset();
                    bytes += batch.as_bytes().len() as u64;
                    batches.push(batch);
                    if bytes >= max_bytes {
                        return Ok(batches);
                    }
                }
                Ok(Fetched::Invalid) => {}
                // Removed by retention meanwhile, or not yet on the replica
                // that answered: locate again on the next call.
                Ok(Fetched::Missing) => {
                    self.restart();
                    return Ok(batches);
                }
                Err(error) => {
                    self.restart();
                    return Err(error);
                }
            }
        }
    }
}

impl PartitionReader for JetStreamReader {
    fn next(&mut self, max_bytes: u64) -> BoxFuture<'_, Result<Vec<StoredBatch>, StorageError>> {
        Box::pin(self.next_batches(max_bytes))
    }
}

impl Drop for JetStreamReader {
    fn drop(&mut self) {
        self.restart();
    }
}
