//! Criterion benchmarks of the platform, each with a native or peer baseline
//! measured in the same run. The benchmarks live in `benches/benches/`; see
//! `docs/benchmarks.md` for results and the commands that produced them.

use fluvio_protocol::{Batch, BatchBuilder};

pub mod bare;

/// The flags the engine hands a module under its default error policy
/// (stop at the first error): the native column passes them too, so that
/// its glue takes the same path as the module's.
pub const STOP_ON_ERROR: i32 = fluvio_protocol::abi::FLAG_STOP_ON_ERROR as i32;

/// Records in the engine benchmark's input.
pub const RECORDS: usize = 1_000_000;

/// Records per batch in the engine benchmark's input.
pub const BATCH: usize = 1_000;

/// The engine benchmark's input: [`RECORDS`] records in batches of
/// [`BATCH`], about 100-byte JSON-ish records; one in ten contains `#` and an SSN.
pub fn engine_batches() -> Vec<Batch> {
    (0..RECORDS / BATCH)
        .map(|b| {
            let mut builder = BatchBuilder::new((b * BATCH) as i64, 1_700_000_000_000);
            for i in 0..BATCH {
                let n = b * BATCH + i;
                let value = if n.is_multiple_of(10) {
                    format!(
                        r##"{{"id":{n:08},"ssn":"123-45-{:04}","tag":"#vip","note":"lorem ipsum dolor sit amet"}}"##,
                        n % 10_000
                    )
                } else {
                    format!(r#"{{"id":{n:08},"name":"user-{n:08}","tag":"std","note":"lorem ipsum dolor sit amet c"}}"#)
                };
                builder.push_value(None, value.as_bytes());
            }
            builder.finish()
        })
        .collect()
}
