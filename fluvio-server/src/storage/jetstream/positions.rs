//! A partition's bookkeeping of where its batches are, kept apart from
//! NATS so that it is tested without a server: the batches this server
//! appended lately ([`RecentBatches`]), the positions of batches seen
//! ([`BatchPositions`]), and the search for the message holding an offset
//! ([`first_sequence_ending_after`]).

use std::collections::BTreeMap;
use std::future::Future;

use fluvio_protocol::StoredBatch;

/// Most batch positions a partition remembers.
const MAX_POSITIONS: usize = 4096;

/// Most bytes of batches a partition keeps in [`RecentBatches`].
const RECENT_BYTES: usize = 8 << 20;

/// Batches this server appended lately, by stream sequence.
///
/// Consumers mostly follow the end of a partition: those connected to the
/// server that wrote a batch read it from here instead of through NATS. A
/// JetStream message never changes once stored, so an entry stays true
/// until it is evicted.
pub(super) struct RecentBatches {
    by_sequence: BTreeMap<u64, StoredBatch>,
    bytes: usize,
    max_bytes: usize,
}

impl Default for RecentBatches {
    fn default() -> Self {
        RecentBatches::holding(RECENT_BYTES)
    }
}

impl RecentBatches {
    /// Keeps at most `max_bytes` of batches.
    fn holding(max_bytes: usize) -> RecentBatches {
        RecentBatches { by_sequence: BTreeMap::new(), bytes: 0, max_bytes }
    }

    /// The batch at `sequence`, if it is still kept.
    pub(super) fn get(&self, sequence: u64) -> Option<StoredBatch> {
        self.by_sequence.get(&sequence).cloned()
    }

    /// Keeps a batch just appended at `sequence`.
    pub(super) fn insert(&mut self, sequence: u64, batch: StoredBatch) {
        self.bytes += batch.as_bytes().len();
        if let Some(replaced) = self.by_sequence.insert(sequence, batch) {
            self.bytes -= replaced.as_bytes().len();
        }
        // Evict the oldest first: most reads follow the end.
        while self.bytes > self.max_bytes {
            let Some((_, evicted)) = self.by_sequence.pop_first() else { break };
            self.bytes -= evicted.as_bytes().len();
        }
    }
}

/// Known batch positions: base offset → (stream sequence, next offset), to
/// find where a read starts without searching.
#[derive(Default)]
pub(super) struct BatchPositions {
    by_base_offset: BTreeMap<i64, (u64, i64)>,
}

impl BatchPositions {
    /// Notes where a batch is: the oldest noted is forgotten first, since
    /// reads mostly follow the end.
    pub(super) fn remember(&mut self, base_offset: i64, sequence: u64, next_offset: i64) {
        while self.by_base_offset.len() >= MAX_POSITIONS {
            self.by_base_offset.pop_first();
        }
        self.by_base_offset.insert(base_offset, (sequence, next_offset));
    }

    /// The sequence to read `offset` from, when a noted batch tells: the
    /// batch holding it, or the message after a batch that ends just
    /// before it. `None` means search.
    pub(super) fn sequence_for(&self, offset: i64) -> Option<u64> {
        let (_, &(sequence, next_offset)) = self.by_base_offset.range(..=offset).next_back()?;
        if next_offset > offset {
            Some(sequence)
        } else if next_offset == offset {
            Some(sequence + 1)
        } else {
            None
        }
    }
}

/// The first sequence in `first..=last` whose batch ends after `offset`
/// (the batch holding it, or the first after it); `None` when no batch
/// there does. `next_offset_at` reads one message: a batch's next offset,
/// or `None` for a message that holds no offsets (invalid, or missing),
/// which the search looks past. Offsets grow with sequences, so this is a
/// binary search: a few reads for a partition of any length.
pub(super) async fn first_sequence_ending_after<E, Fut>(
    first: u64,
    last: u64,
    offset: i64,
    mut next_offset_at: impl FnMut(u64) -> Fut,
) -> Result<Option<u64>, E>
where
    Fut: Future<Output = Result<Option<i64>, E>>,
{
    let (mut low, mut high) = (first.max(1), last + 1);
    while low < high {
        let middle = low + (high - low) / 2;
        let mut probe = middle;
        let next_offset = loop {
            if probe > last {
                break None;
            }
            match next_offset_at(probe).await? {
                Some(next_offset) => break Some(next_offset),
                None => probe += 1,
            }
        };
        match next_offset {
            Some(next_offset) if next_offset <= offset => low = probe + 1,
            _ => high = middle,
        }
    }
    Ok((low <= last).then_some(low))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluvio_protocol::BatchBuilder;

    fn batch(base_offset: i64, bytes: usize) -> StoredBatch {
        let mut builder = BatchBuilder::new(base_offset, 0);
        builder.push_value(None, &vec![7; bytes]);
        builder.finish().into()
    }

    #[test]
    fn recent_batches_evict_the_oldest_past_their_limit() {
        let size = batch(0, 100).as_bytes().len();
        let mut recent = RecentBatches::holding(size * 3);
        for sequence in 1..=5 {
            recent.insert(sequence, batch(sequence as i64 * 10, 100));
        }
        assert!(recent.get(1).is_none() && recent.get(2).is_none(), "the oldest went first");
        assert_eq!(recent.get(5).map(|batch| batch.next_offset()), Some(51));
        assert_eq!(recent.bytes, size * 3);
        // The same sequence again replaces, and is not counted twice.
        recent.insert(5, batch(50, 100));
        assert_eq!((recent.bytes, recent.by_sequence.len()), (size * 3, 3));
    }

    #[test]
    fn positions_tell_where_a_read_starts_or_say_search() {
        let mut positions = BatchPositions::default();
        positions.remember(0, 1, 10);
        positions.remember(10, 2, 20);
        positions.remember(30, 4, 40);
        assert_eq!(positions.sequence_for(0), Some(1));
        assert_eq!(positions.sequence_for(15), Some(2));
        assert_eq!(positions.sequence_for(20), Some(3), "the message after a batch that ends there");
        assert_eq!(positions.sequence_for(25), None, "nothing noted holds it");
        assert_eq!(positions.sequence_for(39), Some(4));
        assert_eq!(positions.sequence_for(-1), None);
    }

    #[test]
    fn positions_forget_the_oldest_beyond_their_limit() {
        let mut positions = BatchPositions::default();
        for n in 0..MAX_POSITIONS as i64 + 10 {
            positions.remember(n * 10, n as u64 + 1, n * 10 + 10);
        }
        assert_eq!(positions.by_base_offset.len(), MAX_POSITIONS);
        assert_eq!(positions.sequence_for(5), None, "the first batch was forgotten");
        assert_eq!(positions.sequence_for(40_005), Some(4_001), "a later one was kept");
    }

    /// Messages 1..=8: batches of ten offsets each, except that message 3
    /// is not a batch and message 6 is missing (their offsets were never
    /// given out: message 4 holds 20..30).
    async fn read(sequence: u64) -> Result<Option<i64>, ()> {
        let next_offsets = [10, 20, -1, 30, 40, -1, 50, 60];
        Ok(next_offsets.get(sequence as usize - 1).copied().filter(|&next| next >= 0))
    }

    #[tokio::test]
    async fn the_search_finds_the_batch_holding_an_offset() {
        let search = |offset| first_sequence_ending_after(1, 8, offset, read);
        assert_eq!(search(0).await, Ok(Some(1)));
        assert_eq!(search(9).await, Ok(Some(1)));
        assert_eq!(search(10).await, Ok(Some(2)));
        assert_eq!(search(45).await, Ok(Some(6)), "from the missing message on, which readers skip");
        assert_eq!(search(59).await, Ok(Some(8)));
        assert_eq!(search(60).await, Ok(None), "past the end");
        // Retention removed messages 1 and 2: offsets before 20 are gone.
        assert_eq!(first_sequence_ending_after(3, 8, 5, read).await, Ok(Some(3)));
        // An empty stream (first > last).
        assert_eq!(first_sequence_ending_after(9, 8, 0, read).await, Ok(None));
    }

    #[tokio::test]
    async fn the_search_stops_at_the_first_error() {
        let failing =
            |sequence: u64| async move { if sequence == 4 { Err("down") } else { Ok(Some(sequence as i64 * 10)) } };
        assert_eq!(first_sequence_ending_after(1, 8, 35, failing).await, Err("down"));
    }
}
