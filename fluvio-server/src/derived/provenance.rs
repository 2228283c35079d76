//! Where a derived topic's output came from, written into the output
//! itself: the last record of every batch a pipeline appends carries the
//! source partition and offset range the batch was computed from, and the
//! accumulator of each aggregate of the chain after that range. A pipeline
//! that starts reads the last batch of its output partition and goes on
//! from the source offset it names, with those accumulators: an append and
//! the position it reaches are one write, so a kill at any moment neither
//! skips nor repeats a source record.

use fluvio_protocol::{Batch, BatchBuilder, RecordRef};

/// The header naming a batch's source: `SOURCE/PARTITION/FROM/NEXT`, the
/// source records `FROM..NEXT` of that partition.
pub const SOURCE_HEADER: &str = "fluvio-derived-from";

/// The prefix of the headers holding an aggregate's accumulator after the
/// batch's source range: `fluvio-accumulator-N` for the chain's stage N.
pub const ACCUMULATOR_HEADER: &str = "fluvio-accumulator-";

/// How far a pipeline got: the next source offset to read, and the
/// accumulators that reflect every source record before it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// The next source offset.
    pub next: i64,
    /// Each aggregate's accumulator, by its place in the chain.
    pub accumulators: Vec<(usize, Vec<u8>)>,
}

/// Whether a header is one of the pipeline's own: an input record that
/// came from another derived topic carries them, and they must not pass
/// on to this topic's records.
fn is_provenance(name: &[u8]) -> bool {
    name == SOURCE_HEADER.as_bytes() || name.starts_with(ACCUMULATOR_HEADER.as_bytes())
}

/// The outputs of consecutive source batches, gathered into one batch to
/// append: records numbered from 0 (the output partition gives them their
/// offsets), with their timestamps, keys, values and headers, the last one
/// also carrying where the batch came from. The last record is held back
/// until [`finish`](Self::finish) knows it is the last.
pub struct OutputBuilder {
    builder: Option<BatchBuilder>,
    last: Option<OwnedRecord>,
    count: u32,
    /// The first source offset the gathered outputs come from.
    from: i64,
}

/// A record held back.
struct OwnedRecord {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
}

impl OutputBuilder {
    /// Gathers the outputs of source records from `from` on.
    pub fn new(from: i64) -> OutputBuilder {
        OutputBuilder { builder: None, last: None, count: 0, from }
    }

    /// The first source offset covered.
    pub fn from(&self) -> i64 {
        self.from
    }

    /// Bytes gathered so far.
    pub fn size(&self) -> usize {
        self.builder.as_ref().map_or(0, BatchBuilder::size)
    }

    /// Adds a chain's output batch.
    pub fn push(&mut self, output: &Batch) {
        for record in output.records() {
            self.push_record(&record, output.base_timestamp());
        }
    }

    /// Adds one output record (`base_timestamp`: its batch's, which the
    /// gathered batch takes when this is its first record).
    pub fn push_record(&mut self, record: &RecordRef<'_>, base_timestamp: i64) {
        let builder = self.builder.get_or_insert_with(|| BatchBuilder::new(0, base_timestamp));
        if let Some(last) = self.last.take() {
            let headers: Vec<(&[u8], &[u8])> =
                last.headers.iter().map(|(name, value)| (name.as_slice(), value.as_slice())).collect();
            builder.push(self.count - 1, last.timestamp, last.key.as_deref(), &last.value, &headers);
        }
        self.last = Some(OwnedRecord {
            timestamp: record.timestamp,
            key: record.key.map(<[u8]>::to_vec),
            value: record.value.to_vec(),
            headers: record
                .headers
                .iter()
                .filter(|(name, _)| !is_provenance(name))
                .map(|(name, value)| (name.to_vec(), value.to_vec()))
                .collect(),
        });
        self.count += 1;
    }

    /// The batch to append, its last record saying it holds the outputs
    /// of `partition`'s source records from [`from`](Self::from) to
    /// `reached.next`; `None` when the chain kept nothing.
    pub fn finish(self, source: &str, partition: u32, reached: &Position) -> Option<Batch> {
        let (mut builder, mut last) = (self.builder?, self.last?);
        last.headers
            .push((SOURCE_HEADER.into(), format!("{source}/{partition}/{}/{}", self.from, reached.next).into()));
        for (stage, accumulator) in &reached.accumulators {
            last.headers.push((format!("{ACCUMULATOR_HEADER}{stage}").into(), accumulator.clone()));
        }
        let headers: Vec<(&[u8], &[u8])> =
            last.headers.iter().map(|(name, value)| (name.as_slice(), value.as_slice())).collect();
        builder.push(self.count - 1, last.timestamp, last.key.as_deref(), &last.value, &headers);
        Some(builder.finish())
    }
}

/// Where the pipeline that wrote `batch` (its last record) had got to, if
/// a pipeline reading `source`'s `partition` wrote it.
pub fn position_after(batch: &Batch, source: &str, partition: u32) -> Option<Position> {
    let last = batch.records().last()?;
    let origin = last.headers.iter().find(|(name, _)| *name == SOURCE_HEADER.as_bytes())?.1;
    let origin = std::str::from_utf8(origin).ok()?;
    let mut parts = origin.rsplitn(4, '/');
    let next: i64 = parts.next()?.parse().ok()?;
    let _from: i64 = parts.next()?.parse().ok()?;
    let written_partition: u32 = parts.next()?.parse().ok()?;
    let written_source = parts.next()?;
    if written_source != source || written_partition != partition {
        return None;
    }
    let accumulators = last
        .headers
        .iter()
        .filter_map(|(name, value)| {
            let stage = name.strip_prefix(ACCUMULATOR_HEADER.as_bytes())?;
            let stage: usize = std::str::from_utf8(stage).ok()?.parse().ok()?;
            Some((stage, value.to_vec()))
        })
        .collect();
    Some(Position { next, accumulators })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One chain output gathered alone.
    fn output_batch(output: &Batch, source: &str, partition: u32, from: i64, reached: &Position) -> Option<Batch> {
        let mut builder = OutputBuilder::new(from);
        builder.push(output);
        builder.finish(source, partition, reached)
    }

    fn chain_output() -> Batch {
        // Offsets and headers as a chain leaves them: the source's.
        let mut builder = BatchBuilder::new(40, 1_000);
        builder.push(0, 1_000, Some(b"k"), b"a", &[(b"trace", b"1")]);
        builder.push(2, 1_005, None, b"b", &[(SOURCE_HEADER.as_bytes(), b"older/0/1/2")]);
        builder.finish()
    }

    #[test]
    fn the_last_record_says_where_the_batch_came_from_and_the_rest_is_kept() {
        let reached = Position { next: 45, accumulators: vec![(1, b"17".to_vec())] };
        let batch = output_batch(&chain_output(), "raw", 3, 40, &reached).unwrap();
        let records: Vec<_> = batch.records().collect();
        assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(records.iter().map(|r| r.timestamp).collect::<Vec<_>>(), [1_000, 1_005]);
        assert_eq!((records[0].key, records[0].value), (Some(&b"k"[..]), &b"a"[..]));
        assert_eq!(records[0].headers, [(&b"trace"[..], &b"1"[..])]);
        // The older topic's provenance is dropped, ours added.
        assert_eq!(
            records[1].headers,
            [(SOURCE_HEADER.as_bytes(), &b"raw/3/40/45"[..]), (&b"fluvio-accumulator-1"[..], &b"17"[..])]
        );
        assert_eq!(position_after(&batch, "raw", 3), Some(reached));
        assert_eq!(position_after(&batch, "raw", 2), None, "another partition's pipeline");
        assert_eq!(position_after(&batch, "other", 3), None);
    }

    #[test]
    fn outputs_of_several_source_batches_make_one_batch_whose_last_record_says_where_they_came_from() {
        let mut first = BatchBuilder::new(10, 500);
        first.push(0, 500, None, b"x", &[]);
        first.push(1, 501, None, b"y", &[(b"h", b"1")]);
        let mut second = BatchBuilder::new(20, 900);
        second.push(3, 903, Some(b"k"), b"z", &[]);
        let mut builder = OutputBuilder::new(10);
        builder.push(&first.finish());
        builder.push(&BatchBuilder::new(15, 0).finish());
        builder.push(&second.finish());
        let reached = Position { next: 25, accumulators: Vec::new() };
        let batch = builder.finish("raw", 1, &reached).unwrap();
        let records: Vec<_> = batch.records().collect();
        assert_eq!(
            records.iter().map(|r| (r.offset, r.timestamp, r.value)).collect::<Vec<_>>(),
            [(0, 500, &b"x"[..]), (1, 501, &b"y"[..]), (2, 903, &b"z"[..])]
        );
        assert_eq!(records[1].headers, [(&b"h"[..], &b"1"[..])]);
        assert_eq!(records[2].key, Some(&b"k"[..]));
        assert_eq!(position_after(&batch, "raw", 1), Some(reached));
        assert!(OutputBuilder::new(0).finish("raw", 0, &Position::default()).is_none());
    }

    #[test]
    fn a_source_name_with_slashes_is_not_allowed_but_its_parts_parse_from_the_right() {
        let reached = Position { next: 9, accumulators: Vec::new() };
        let batch = output_batch(&chain_output(), "a.b-c_d", 0, 7, &reached).unwrap();
        assert_eq!(position_after(&batch, "a.b-c_d", 0), Some(reached));
        assert!(output_batch(&BatchBuilder::new(0, 0).finish(), "raw", 0, 0, &Position::default()).is_none());
    }
}
