//! Where a topic's parts live in NATS: stream names, subjects and bucket
//! keys, each with the topic name escaped (topic names may hold `.`, which
//! NATS uses as a separator), the keys read back, and the end a server
//! announces after an append. All of it is pure, and tested here without
//! a NATS server.

/// Topic names may hold `.`, which NATS subjects, stream names and keys
/// use as a separator; `=` is not allowed in topic names, so it stands in.
fn escape(topic: &str) -> String {
    topic.replace('.', "=")
}

/// The topic name an escaped one stands for.
pub(super) fn unescape(escaped: &str) -> String {
    escaped.replace('=', ".")
}

/// A topic's key in the topics bucket.
pub(super) fn topic_key(topic: &str) -> String {
    escape(topic)
}

/// A consumer's offset's key in the consumers bucket:
/// `CONSUMER.TOPIC.PARTITION` (consumer ids hold no `.`).
pub(super) fn offset_key(consumer: &str, topic: &str, partition: u32) -> String {
    format!("{consumer}.{}.{partition}", escape(topic))
}

/// The consumer, topic and partition an offset key names; `None` for a key
/// this layout did not write.
pub(super) fn parse_offset_key(key: &str) -> Option<(&str, String, u32)> {
    let mut parts = key.splitn(3, '.');
    let (consumer, topic, partition) = (parts.next()?, parts.next()?, parts.next()?);
    Some((consumer, unescape(topic), partition.parse().ok()?))
}

/// A partition's key in the ends bucket.
pub(super) fn end_key(topic: &str, partition: u32) -> String {
    format!("{}.{partition}", escape(topic))
}

/// The JetStream stream that holds one partition.
pub fn stream_name(topic: &str, partition: u32) -> String {
    format!("fluvio_{}_{partition}", escape(topic))
}

/// The subject a partition's batches are published on.
pub fn data_subject(topic: &str, partition: u32) -> String {
    format!("fluvio.data.{}.{partition}", escape(topic))
}

/// Where a server announces a partition's new end after appending.
pub(super) fn notify_subject(topic: &str, partition: u32) -> String {
    format!("fluvio.end.{}.{partition}", escape(topic))
}

/// A partition's end as announced on its notify subject: the offset the
/// next record gets, and the stream sequence of the last batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AnnouncedEnd {
    pub(super) next_offset: i64,
    pub(super) last_sequence: u64,
}

impl AnnouncedEnd {
    /// 16 bytes: the next offset, then the last sequence, little-endian.
    pub(super) fn to_bytes(self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_offset.to_le_bytes());
        bytes[8..].copy_from_slice(&self.last_sequence.to_le_bytes());
        bytes
    }

    /// An announcement read back; `None` for anything not 16 bytes long.
    pub(super) fn from_bytes(bytes: &[u8]) -> Option<AnnouncedEnd> {
        let bytes = <[u8; 16]>::try_from(bytes).ok()?;
        let (offset, sequence) = bytes.split_at(8);
        Some(AnnouncedEnd {
            next_offset: i64::from_le_bytes(offset.try_into().ok()?),
            last_sequence: u64::from_le_bytes(sequence.try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_in_topic_names_never_reach_nats_as_separators() {
        assert_eq!(stream_name("orders.eu", 2), "fluvio_orders=eu_2");
        assert_eq!(data_subject("orders.eu", 2), "fluvio.data.orders=eu.2");
        assert_eq!(notify_subject("orders.eu", 0), "fluvio.end.orders=eu.0");
        assert_eq!(topic_key("orders.eu"), "orders=eu");
        assert_eq!(end_key("orders.eu", 7), "orders=eu.7");
        assert_eq!(unescape(&topic_key("a.b.c")), "a.b.c");
    }

    #[test]
    fn offset_keys_read_back_as_what_they_name() {
        let key = offset_key("billing-1", "orders.eu", 3);
        assert_eq!(key, "billing-1.orders=eu.3");
        assert_eq!(parse_offset_key(&key), Some(("billing-1", "orders.eu".to_string(), 3)));
        assert_eq!(parse_offset_key("consumer.topic"), None);
        assert_eq!(parse_offset_key("consumer.topic.not-a-number"), None);
        assert_eq!(parse_offset_key("consumer.topic.-1"), None);
    }

    #[test]
    fn an_announced_end_reads_back_and_nothing_else_does() {
        let end = AnnouncedEnd { next_offset: 1 << 40, last_sequence: 12_345 };
        assert_eq!(AnnouncedEnd::from_bytes(&end.to_bytes()), Some(end));
        assert_eq!(AnnouncedEnd::from_bytes(&end.to_bytes()[..15]), None);
        assert_eq!(AnnouncedEnd::from_bytes(&[0; 17]), None);
    }
}
