//! Which partition a produced record goes to, by Fluvio's rules, so that a
//! program moved from Fluvio puts every key where it did and per-key order
//! holds across the switch:
//!
//! - a record with a key goes to the key's SipHash-2-4 (zero keys, the key
//!   hashed as a byte slice: its length, then its bytes) modulo the
//!   partition count;
//! - records without a key go to each partition in turn, one record at a
//!   time.
//!
//! A producer takes any [`Partitioner`]
//! ([`ProducerConfig::partitioner`](crate::ProducerConfig::partitioner)).
//!
//! ```
//! use fluvio_client::{Partitioner, PartitionerConfig, SiphashRoundRobinPartitioner, partition_for_key};
//!
//! let partitioner = SiphashRoundRobinPartitioner::new();
//! let config = PartitionerConfig::new(3);
//! let key = partitioner.partition(&config, Some(b"user-7"), b"{}");
//! assert_eq!(key, partition_for_key(b"user-7", 3));
//! // Keyless records take turns.
//! let turns: Vec<u32> = (0..4).map(|_| partitioner.partition(&config, None, b"{}")).collect();
//! assert_eq!(turns, [0, 1, 2, 0]);
//! ```

use std::sync::atomic::{AtomicU32, Ordering};

/// A partition's number within its topic, as Fluvio names it.
pub type PartitionId = u32;

/// How many partitions a topic has, as Fluvio names it.
pub type PartitionCount = u32;

/// Chooses each record's partition. It must return a partition below
/// [`PartitionerConfig::partition_count`]; a producer refuses a record whose
/// partition is out of range.
pub trait Partitioner {
    /// The partition for a record with this key and value.
    fn partition(&self, config: &PartitionerConfig, key: Option<&[u8]>, value: &[u8]) -> PartitionId;
}

/// What a [`Partitioner`] knows of the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionerConfig {
    partition_count: PartitionCount,
}

impl PartitionerConfig {
    /// The config of a topic with `partition_count` partitions.
    pub fn new(partition_count: PartitionCount) -> PartitionerConfig {
        PartitionerConfig { partition_count }
    }

    /// The topic's partition count.
    pub fn partition_count(&self) -> PartitionCount {
        self.partition_count
    }
}

/// The default partitioner, Fluvio's: keys by [`partition_for_key`], records
/// without a key in turn (counted per partitioner, so per producer).
#[derive(Debug, Default)]
pub struct SiphashRoundRobinPartitioner {
    next_keyless: AtomicU32,
}

impl SiphashRoundRobinPartitioner {
    /// A partitioner whose first keyless record goes to partition 0.
    pub fn new() -> SiphashRoundRobinPartitioner {
        SiphashRoundRobinPartitioner::default()
    }
}

impl Partitioner for SiphashRoundRobinPartitioner {
    fn partition(&self, config: &PartitionerConfig, key: Option<&[u8]>, _value: &[u8]) -> PartitionId {
        let count = config.partition_count.max(1);
        match key {
            Some(key) => partition_for_key(key, count),
            // Wraps on overflow, as Fluvio's does: only the remainder counts.
            None => self.next_keyless.fetch_add(1, Ordering::Relaxed) % count,
        }
    }
}

/// Sends every record to one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecificPartitioner {
    partition: PartitionId,
}

impl SpecificPartitioner {
    /// Every record goes to `partition`.
    pub fn new(partition: PartitionId) -> SpecificPartitioner {
        SpecificPartitioner { partition }
    }
}

impl Partitioner for SpecificPartitioner {
    fn partition(&self, _: &PartitionerConfig, _: Option<&[u8]>, _: &[u8]) -> PartitionId {
        self.partition
    }
}

/// The partition a key goes to among `partitions`, as Fluvio's producer
/// puts it (defined in the protocol crate, which the server shares for
/// derived topics).
pub use fluvio_protocol::partition_for_key;

#[cfg(test)]
mod tests {
    use super::*;

    /// What Fluvio computes, through an implementation of its own: std's
    /// SipHash-2-4 (the one `siphasher` mirrors), fed by `Hash for [u8]`.
    #[allow(deprecated)]
    fn fluvio_partition(key: &[u8], partitions: u32) -> u32 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::SipHasher::new();
        key.hash(&mut hasher);
        (hasher.finish() % partitions as u64) as u32
    }

    #[test]
    fn keys_land_where_fluvio_puts_them() {
        let mut keys: Vec<Vec<u8>> = vec![Vec::new(), b"a".to_vec(), vec![0; 64], vec![0xff; 1000]];
        keys.extend((0..3000).map(|n| format!("user-{n}").into_bytes()));
        keys.extend((0..200u32).map(|n| n.to_le_bytes()[..(n as usize % 5)].to_vec()));
        for key in &keys {
            for partitions in 1..=16 {
                assert_eq!(partition_for_key(key, partitions), fluvio_partition(key, partitions), "{key:?}");
            }
        }
        // The keys spread: every partition of 16 gets some.
        let mut seen = [false; 16];
        for key in &keys {
            seen[partition_for_key(key, 16) as usize] = true;
        }
        assert!(seen.iter().all(|&seen| seen));
    }

    #[test]
    fn keyless_records_take_turns_one_at_a_time_even_across_threads() {
        let partitioner = std::sync::Arc::new(SiphashRoundRobinPartitioner::new());
        let config = PartitionerConfig::new(4);
        let first: Vec<u32> = (0..6).map(|_| partitioner.partition(&config, None, b"")).collect();
        assert_eq!(first, [0, 1, 2, 3, 0, 1]);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let partitioner = std::sync::Arc::clone(&partitioner);
                std::thread::spawn(move || {
                    (0..1000).map(|_| partitioner.partition(&config, None, b"")).collect::<Vec<_>>()
                })
            })
            .collect();
        let mut counts = [0; 4];
        for thread in threads {
            for partition in thread.join().unwrap() {
                counts[partition as usize] += 1;
            }
        }
        // 4,000 more turns, started at partition 2: each partition gets 1,000.
        assert_eq!(counts, [1000; 4]);
    }

    #[test]
    fn a_specific_partitioner_ignores_keys() {
        let partitioner = SpecificPartitioner::new(2);
        assert_eq!(partitioner.partition(&PartitionerConfig::new(3), Some(b"k"), b"v"), 2);
    }
}
