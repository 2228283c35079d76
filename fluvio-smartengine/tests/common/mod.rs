//! Helpers shared by the engine tests.

#![allow(dead_code)]

use fluvio_protocol::{Batch, BatchBuilder, SmartModuleInvocation};

pub use dev_support::wasm;

/// The repository's module `name`, built to wasm, as an ad hoc invocation.
pub fn module(name: &str) -> SmartModuleInvocation {
    SmartModuleInvocation::adhoc(name, wasm(name))
}

/// A batch of values at `base_offset`, timestamps 1000 + index.
pub fn batch(base_offset: i64, values: &[&str]) -> Batch {
    let mut builder = BatchBuilder::new(base_offset, 1_000);
    for (i, value) in values.iter().enumerate() {
        builder.push(i as u32, 1_000 + i as i64, None, value.as_bytes(), &[]);
    }
    builder.finish()
}

/// `(offset, value)` of each record.
pub fn values(batch: &Batch) -> Vec<(i64, String)> {
    batch.records().map(|r| (r.offset, String::from_utf8_lossy(r.value).into_owned())).collect()
}
