//! What the fuzz targets share: the input batch the output decoder is
//! given, and the seed corpus (`seeds` writes it).

use fluvio_protocol::BatchBuilder;

/// A valid batch of eight records, with and without keys and headers.
pub fn seed_batch() -> Vec<u8> {
    let mut batch = BatchBuilder::new(100, 1_700_000_000_000);
    for n in 0..8u8 {
        let value = format!("record {n} with some text");
        let key = (n % 2 == 0).then(|| vec![b'k', n]);
        batch.push_value(key.as_deref(), value.as_bytes());
    }
    batch.finish().into_bytes()
}
