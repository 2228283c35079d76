//! The SmartModule engine against the same functions compiled natively.
//!
//! 1,000,000 records of about 100 bytes in batches of 1,000, through: a
//! filter (value contains a byte), a map (ASCII upper-case), the regex
//! scrubber from the walkthrough, and an aggregate (count). Columns:
//!
//! - `bare`: the function's body in a plain loop over the values as
//!   `Vec<u8>`s, outputs allocated, no batch format: what a user would
//!   write without a sandbox, and the limit the engine is measured against;
//! - `batch`: the same plain loop reading the input batch and writing an
//!   output batch (records encoded, CRC), with nothing else: the limit for
//!   anything that must take and give batches, as the engine must;
//! - `native`: the same Rust function through the same guest glue, output
//!   decoding and batch building as the engine, without the sandbox, so
//!   that `wasm / native` is the cost of WebAssembly, metering and the
//!   copies in and out;
//! - `wasm`: the module, run by the engine;
//! - `wasm-deadline`: the same under `Metering::Deadline`;
//! - `wasm-layout-1`: the same answering in ABI answer layout 1 (entries
//!   the host re-encodes), as modules did before layout 2.
//!
//! Also: instantiating a cached module with `init` (what a new consumer
//! stream pays).
//!
//! Run: `cargo bench -p fluvio-benches --bench engine`

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fluvio_protocol::{Batch, SmartModuleInvocation};
use fluvio_smartengine::{
    ChainBuilder, Limits, Metering, ModuleKind, SmartEngine, SmartModuleChain, SmartModuleInstance, run_native,
};
use fluvio_smartmodule::__private as glue;

use fluvio_benches::bare::{
    Bare, BatchLoop, bare_count, bare_filter, bare_regex_scrub, bare_regex_scrub_values, bare_uppercase, batch_count,
    batch_filter, batch_regex_scrub, batch_uppercase, plain_values, reset_count,
};
use fluvio_benches::{RECORDS, STOP_ON_ERROR, engine_batches as batches};

#[allow(clippy::too_many_arguments)]
fn wasm_run(
    c: &mut Criterion,
    group_name: &str,
    module: &str,
    kind: ModuleKind,
    native: fn(i32) -> i64,
    bare: Bare,
    batch_loop: BatchLoop,
    input: &[Batch],
    values: &[Vec<Vec<u8>>],
) {
    let engine = SmartEngine::new();
    let deadline_engine = deadline_engine();
    let layout_1_engine = layout_1_engine();
    let invocation = SmartModuleInvocation::adhoc(module, dev_support::wasm(module)).expect_kind(kind);
    let mut chain = ChainBuilder::new(&engine).invocation(invocation.clone()).build().unwrap();
    let mut deadline_chain = ChainBuilder::new(&deadline_engine).invocation(invocation.clone()).build().unwrap();
    let mut layout_1_chain = ChainBuilder::new(&layout_1_engine).invocation(invocation).build().unwrap();

    // All sides must agree before any is timed. The count loops' accumulator
    // starts from none, as the modules' do, and goes on from batch to batch.
    reset_count();
    for batch in input.iter().take(3) {
        let wasm_out = chain.process(batch).unwrap().batch;
        let native_out = run_native(kind, batch, native).unwrap();
        assert_eq!(wasm_out.as_bytes(), native_out.as_bytes(), "{group_name}: wasm and native disagree");
        let deadline_out = deadline_chain.process(batch).unwrap().batch;
        assert_eq!(deadline_out.as_bytes(), native_out.as_bytes(), "{group_name}: the meterings disagree");
        let layout_1_out = layout_1_chain.process(batch).unwrap().batch;
        assert_eq!(layout_1_out.as_bytes(), native_out.as_bytes(), "{group_name}: the answer layouts disagree");
        assert!(
            batch_loop(batch).as_bytes() == native_out.as_bytes(),
            "{group_name}: the batch loop and the engine disagree"
        );
    }

    let mut group = records_group(c, group_name);
    group.bench_function(BenchmarkId::new("bare", RECORDS), |b| {
        b.iter(|| values.iter().map(|batch| bare(batch)).sum::<usize>())
    });
    group.bench_function(BenchmarkId::new("batch", RECORDS), |b| {
        b.iter(|| input.iter().map(|batch| batch_loop(batch).record_count() as usize).sum::<usize>())
    });
    group.bench_function(BenchmarkId::new("native", RECORDS), |b| {
        b.iter(|| {
            let mut out = 0usize;
            for batch in input {
                out += run_native(kind, batch, native).unwrap().record_count() as usize;
            }
            out
        })
    });
    for (column, chain) in
        [("wasm", &mut chain), ("wasm-deadline", &mut deadline_chain), ("wasm-layout-1", &mut layout_1_chain)]
    {
        group.bench_function(BenchmarkId::new(column, RECORDS), |b| b.iter(|| run_chain(chain, input)));
    }
    group.finish();
}

/// A group whose every function goes through the [`RECORDS`] records.
fn records_group<'c>(c: &'c mut Criterion, name: &str) -> BenchmarkGroup<'c, WallTime> {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group
}

/// An engine that meters by the clock alone ([`Metering::Deadline`]).
fn deadline_engine() -> SmartEngine {
    SmartEngine::with_config(Limits { metering: Metering::Deadline, ..Limits::default() }, None)
}

/// An engine that offers modules answer layout 1 only, as engines did
/// before layout 2.
fn layout_1_engine() -> SmartEngine {
    SmartEngine::with_config(Limits { answer_layout: 1, ..Limits::default() }, None)
}

/// Runs every batch through `chain`; the records that came out.
fn run_chain(chain: &mut SmartModuleChain, input: &[Batch]) -> usize {
    input.iter().map(|batch| chain.process(batch).unwrap().batch.record_count() as usize).sum()
}

/// A stage of a chain benchmark: the module, its kind, and its function
/// run through the glue natively.
type Stage = (&'static str, ModuleKind, fn(i32) -> i64);

const UPPERCASE: Stage =
    ("uppercase-map", ModuleKind::Map, |len| glue::run_map(len, STOP_ON_ERROR, uppercase_map::map));
const SCRUB: Stage =
    ("regex-scrubbing", ModuleKind::Map, |len| glue::run_map(len, STOP_ON_ERROR, regex_scrubbing::map));
const FILTER: Stage =
    ("bench-filter", ModuleKind::Filter, |len| glue::run_filter(len, STOP_ON_ERROR, bench_filter::filter));
const COUNT: Stage =
    ("bench-count", ModuleKind::Aggregate, |len| glue::run_aggregate(len, STOP_ON_ERROR, bench_count::aggregate));

/// Chains of two and four modules: each batch goes through every stage
/// in one `process`, one stage's output the next one's input. Columns:
/// the stages' bare loops one after the other over the values, the
/// stages' native functions through the glue one after the other, and
/// the chain in the engine under each metering and in answer layout 1.
fn chains(c: &mut Criterion) {
    let input = batches();
    let values = plain_values(&input);
    let two: (&str, &[Stage], Bare) = ("chain-2", &[SCRUB, UPPERCASE], |values| {
        let scrubbed = bare_regex_scrub_values(values);
        bare_uppercase(&scrubbed)
    });
    let four: (&str, &[Stage], Bare) = ("chain-4", &[UPPERCASE, FILTER, SCRUB, COUNT], |values| {
        let upper: Vec<Vec<u8>> = values.iter().map(|value| value.to_ascii_uppercase()).collect();
        let kept: Vec<Vec<u8>> = upper.into_iter().filter(|value| value.contains(&b'#')).collect();
        bare_count(&bare_regex_scrub_values(&kept))
    });
    for (group_name, stages, bare) in [two, four] {
        let build = |engine: &SmartEngine| {
            let invocations = stages.iter().map(|(module, kind, _)| {
                SmartModuleInvocation::adhoc(*module, dev_support::wasm(module)).expect_kind(*kind)
            });
            ChainBuilder::new(engine).invocations(invocations).build().unwrap()
        };
        let native = |batch: &Batch| {
            stages.iter().fold(batch.clone(), |batch, (_, kind, function)| run_native(*kind, &batch, function).unwrap())
        };
        let engine = SmartEngine::new();
        let deadline_engine = deadline_engine();
        let layout_1_engine = layout_1_engine();
        let mut chain = build(&engine);
        let mut deadline_chain = build(&deadline_engine);
        let mut layout_1_chain = build(&layout_1_engine);
        // The engine against the native stages, on the first batch only:
        // the native aggregate keeps one count for the whole process, set
        // back to none here by a setup with no accumulator.
        let no_accumulator = [0u8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        glue::native::call(&no_accumulator, glue::setup, |_| ());
        let first = &input[0];
        let expected = native(first);
        for chain in [&mut chain, &mut deadline_chain, &mut layout_1_chain] {
            assert_eq!(chain.process(first).unwrap().batch.as_bytes(), expected.as_bytes(), "{group_name}");
        }
        let mut group = records_group(c, group_name);
        group.bench_function(BenchmarkId::new("bare", RECORDS), |b| {
            b.iter(|| values.iter().map(|batch| bare(batch)).sum::<usize>())
        });
        group.bench_function(BenchmarkId::new("native", RECORDS), |b| {
            b.iter(|| input.iter().map(|batch| native(batch).record_count() as usize).sum::<usize>())
        });
        for (column, chain) in
            [("wasm", &mut chain), ("wasm-deadline", &mut deadline_chain), ("wasm-layout-1", &mut layout_1_chain)]
        {
            group.bench_function(BenchmarkId::new(column, RECORDS), |b| b.iter(|| run_chain(chain, &input)));
        }
        group.finish();
    }
}

/// Compiling the largest module here (the regex scrubber, about 1.4 MB)
/// with no cache: what the first stream to use a new module waits for.
fn compile(c: &mut Criterion) {
    let regex_bytes = dev_support::wasm("regex-scrubbing");
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (metering, limits) in [
        ("regex-scrubbing-fuel", Limits::default()),
        ("regex-scrubbing-deadline", Limits { metering: Metering::Deadline, ..Limits::default() }),
    ] {
        // Until the module can run: the compile's thread then serializes
        // it for the cache, after the load returned, which is waited for
        // untimed so that it does not slow the next compile.
        group.bench_function(metering, |b| {
            b.iter_custom(|iterations| {
                let mut took = Duration::ZERO;
                for _ in 0..iterations {
                    let engine = SmartEngine::with_config(limits, None);
                    let started = std::time::Instant::now();
                    engine.load("regex-scrubbing", &regex_bytes).unwrap();
                    took += started.elapsed();
                    engine.wait_for_compile_threads();
                }
                took
            })
        });
    }
    group.finish();
}

fn kinds(c: &mut Criterion) {
    let input = batches();
    let values = plain_values(&input);
    // The bare loops compute what the modules compute.
    let first = &values[0];
    let expected_kept = input[0].records().filter(|r| r.value.contains(&b'#')).count();
    assert_eq!(bare_filter(first), expected_kept);
    assert_eq!(bare_uppercase(first), first.len());
    assert_eq!(bare_regex_scrub(first), first.len());
    assert_eq!(bare_count(first), first.len());
    wasm_run(
        c,
        "filter",
        "bench-filter",
        ModuleKind::Filter,
        |len| glue::run_filter(len, STOP_ON_ERROR, bench_filter::filter),
        bare_filter,
        batch_filter,
        &input,
        &values,
    );
    wasm_run(
        c,
        "map",
        "uppercase-map",
        ModuleKind::Map,
        |len| glue::run_map(len, STOP_ON_ERROR, uppercase_map::map),
        bare_uppercase,
        batch_uppercase,
        &input,
        &values,
    );
    wasm_run(
        c,
        "regex-scrub",
        "regex-scrubbing",
        ModuleKind::Map,
        |len| glue::run_map(len, STOP_ON_ERROR, regex_scrubbing::map),
        bare_regex_scrub,
        batch_regex_scrub,
        &input,
        &values,
    );
    wasm_run(
        c,
        "aggregate",
        "bench-count",
        ModuleKind::Aggregate,
        |len| glue::run_aggregate(len, STOP_ON_ERROR, bench_count::aggregate),
        bare_count,
        batch_count,
        &input,
        &values,
    );
}

/// The same map (`examples/uppercase-map`) built against this project's
/// guest crate and against Fluvio's `fluvio-smartmodule` 0.50.1, run by the
/// engine on the same batches: what Fluvio's ABI (records encoded, answers
/// copied out through `copy_records`, an instance restarted when its
/// answers pile up) costs beside the native one.
fn abis(c: &mut Criterion) {
    let input = batches();
    let values = plain_values(&input);
    let engine = SmartEngine::new();
    let chain = |wasm: Vec<u8>| {
        let invocation = SmartModuleInvocation::adhoc("uppercase-map", wasm).expect_kind(ModuleKind::Map);
        ChainBuilder::new(&engine).invocation(invocation).build().unwrap()
    };
    let mut native_abi = chain(dev_support::wasm("uppercase-map"));
    let mut fluvio_abi = chain(dev_support::fluvio_built_wasm("uppercase-map"));
    for batch in input.iter().take(3) {
        let ours = native_abi.process(batch).unwrap().batch;
        let theirs = fluvio_abi.process(batch).unwrap().batch;
        assert_eq!(ours.as_bytes(), theirs.as_bytes(), "the two builds disagree");
    }
    let mut group = records_group(c, "abi-map");
    group.bench_function(BenchmarkId::new("bare", RECORDS), |b| {
        b.iter(|| values.iter().map(|batch| bare_uppercase(batch)).sum::<usize>())
    });
    for (name, chain) in [("native-abi", &mut native_abi), ("fluvio-abi", &mut fluvio_abi)] {
        group.bench_function(BenchmarkId::new(name, RECORDS), |b| {
            b.iter(|| {
                input.iter().map(|batch| chain.process(batch).unwrap().batch.record_count() as usize).sum::<usize>()
            })
        });
    }
    group.finish();
}

fn instantiate(c: &mut Criterion) {
    let engine = SmartEngine::new();
    let bytes = dev_support::wasm("params-filter");
    engine.load("params-filter", &bytes).unwrap();
    let params: fluvio_smartengine::SmartModuleExtraParams = [("contains", "fluvio")].into_iter().collect();
    let mut group = c.benchmark_group("instantiate");
    group.bench_function("cached-module-with-init", |b| {
        b.iter(|| {
            // A cache hit, then a fresh instance with setup and init.
            let module = engine.load("params-filter", &bytes).unwrap();
            SmartModuleInstance::new(&engine, &module, &params, None).unwrap()
        })
    });
    // The largest module here (about 1.4 MB: the regex crate), whose
    // instances have the most memory to set up.
    let regex_bytes = dev_support::wasm("regex-scrubbing");
    engine.load("regex-scrubbing", &regex_bytes).unwrap();
    let none = fluvio_smartengine::SmartModuleExtraParams::default();
    group.bench_function("cached-regex-module", |b| {
        b.iter(|| {
            let module = engine.load("regex-scrubbing", &regex_bytes).unwrap();
            SmartModuleInstance::new(&engine, &module, &none, None).unwrap()
        })
    });
    group.finish();
    assert_eq!(engine.compilations(), 2);
}

criterion_group!(benches, kinds, chains, abis, instantiate, compile);
criterion_main!(benches);
