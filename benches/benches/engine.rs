//! The SmartModule engine against the same functions compiled natively.
//!
//! 1,000,000 records of about 100 bytes in batches of 1,000, through: a
//! filter (value contains a byte), a map (ASCII upper-case), the regex
//! scrubber from the walkthrough, and an aggregate (count). The native
//! baseline runs the same Rust function through the same guest glue and
//! the same output decoding, without the sandbox, so the ratio is the cost
//! of WebAssembly, metering and the memory copy in and out.
//!
//! Also: instantiating a cached module with `init` (what a new consumer
//! stream pays).
//!
//! Run: `cargo bench -p fluvio-benches --bench engine`

use std::collections::BTreeMap;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fluvio_protocol::{Batch, BatchBuilder, SmartModuleInvocation};
use fluvio_smartengine::{ChainBuilder, SmartEngine, SmartModuleInstance, SmartModuleKind, run_native};
use fluvio_smartmodule::__private as glue;

const RECORDS: usize = 1_000_000;
const BATCH: usize = 1_000;

/// About 100-byte JSON-ish records; one in ten contains `#` and an SSN.
fn batches() -> Vec<Batch> {
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

fn wasm_run(
    c: &mut Criterion,
    group_name: &str,
    module: &str,
    kind: SmartModuleKind,
    native: fn(i32) -> i64,
    input: &[Batch],
) {
    let engine = SmartEngine::new();
    let invocation = SmartModuleInvocation::adhoc(module, dev_support::wasm(module)).expect_kind(kind);
    let mut chain = ChainBuilder::new(&engine).invocation(invocation).build().unwrap();

    // Both sides must agree before either is timed.
    for batch in input.iter().take(3) {
        let wasm_out = chain.process(batch).unwrap().batch;
        let native_out = run_native(kind, batch, native).unwrap();
        assert_eq!(wasm_out.as_bytes(), native_out.as_bytes(), "{group_name}: wasm and native disagree");
    }

    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function(BenchmarkId::new("native", RECORDS), |b| {
        b.iter(|| {
            let mut out = 0usize;
            for batch in input {
                out += run_native(kind, batch, native).unwrap().record_count() as usize;
            }
            out
        })
    });
    group.bench_function(BenchmarkId::new("wasm", RECORDS), |b| {
        b.iter(|| {
            let mut out = 0usize;
            for batch in input {
                out += chain.process(batch).unwrap().batch.record_count() as usize;
            }
            out
        })
    });
    group.finish();
}

fn kinds(c: &mut Criterion) {
    let input = batches();
    wasm_run(
        c,
        "filter",
        "bench-filter",
        SmartModuleKind::Filter,
        |len| glue::run_filter(len, 0, bench_filter::filter),
        &input,
    );
    wasm_run(c, "map", "uppercase-map", SmartModuleKind::Map, |len| glue::run_map(len, 0, uppercase_map::map), &input);
    wasm_run(
        c,
        "regex-scrub",
        "regex-scrubbing",
        SmartModuleKind::Map,
        |len| glue::run_map(len, 0, regex_scrubbing::map),
        &input,
    );
    wasm_run(
        c,
        "aggregate",
        "bench-count",
        SmartModuleKind::Aggregate,
        |len| glue::run_aggregate(len, 0, bench_count::aggregate),
        &input,
    );
}

fn instantiate(c: &mut Criterion) {
    let engine = SmartEngine::new();
    let bytes = dev_support::wasm("params-filter");
    engine.load("params-filter", &bytes).unwrap();
    let params: BTreeMap<String, String> = [("contains".to_string(), "fluvio".to_string())].into();
    let mut group = c.benchmark_group("instantiate");
    group.bench_function("cached-module-with-init", |b| {
        b.iter(|| {
            // A cache hit, then a fresh instance with setup and init.
            let module = engine.load("params-filter", &bytes).unwrap();
            SmartModuleInstance::new(&engine, &module, &params, None).unwrap()
        })
    });
    group.finish();
    assert_eq!(engine.compilations(), 1);
}

criterion_group!(benches, kinds, instantiate);
criterion_main!(benches);
