//! Modules built with Fluvio's own guest crate (`fluvio-smartmodule` 0.50.1
//! from crates.io, `test-modules/fluvio-built`) run through Fluvio's ABI,
//! and give what the same sources built against this project's crate give.

mod common;

use common::{module, values};
use dev_support::fluvio_built_wasm;
use fluvio_protocol::{Batch, BatchBuilder, ErrorPolicy, SmartModuleInvocation};
use fluvio_smartengine::{ChainBuilder, ChainOutput, EngineError, GuestAbi, Limits, SmartEngine};

fn fluvio_built(name: &str) -> SmartModuleInvocation {
    SmartModuleInvocation::adhoc(format!("fluvio-{name}"), fluvio_built_wasm(name))
}

/// A batch at offset 40 with keys on every other record and timestamps
/// that are not the offsets.
fn batch(values: &[&str]) -> Batch {
    let mut builder = BatchBuilder::new(40, 7_000);
    for (i, value) in values.iter().enumerate() {
        let key = format!("key-{i}");
        let key = (i % 2 == 0).then_some(key.as_bytes());
        builder.push(i as u32, 7_000 + 10 * i as i64, key, value.as_bytes(), &[]);
    }
    builder.finish()
}

/// Every output record as `offset timestamp key value`.
fn records(output: &ChainOutput) -> Vec<String> {
    output
        .batch
        .records()
        .map(|r| {
            let key = r.key.map(|k| String::from_utf8_lossy(k).into_owned());
            format!("{} {} {key:?} {}", r.offset, r.timestamp, String::from_utf8_lossy(r.value))
        })
        .collect()
}

fn run(
    engine: &SmartEngine,
    invocation: SmartModuleInvocation,
    policy: ErrorPolicy,
    batches: &[Batch],
) -> Vec<ChainOutput> {
    let mut chain =
        ChainBuilder::new(engine).invocation(invocation).on_error(policy).build().expect("the chain builds");
    batches.iter().map(|batch| chain.process(batch).expect("the batch runs")).collect()
}

#[test]
fn fluvio_built_modules_give_what_the_same_sources_give_when_built_here() {
    let engine = SmartEngine::new();
    let cases: &[(&str, &[&[&str]])] = &[
        ("my-filter", &[&["apple", "cherry", "banana", "kiwi"]]),
        ("uppercase-map", &[&["apple", "Plum"], &["x"]]),
        ("even-filter-map", &[&["4", "7", "x", "10", "3"]]),
        ("json-array-map", &[&["[1,2,3]", "[]", "[\"a\"]", "not json", "[4]"]]),
        ("sum-aggregate", &[&["1", "2", "x", "3"], &["10", "20"]]),
        ("record-position", &[&["a", "b", "c"]]),
    ];
    for (name, inputs) in cases {
        let loaded = engine.load(name, &fluvio_built_wasm(name)).expect("a Fluvio-built module loads");
        assert_eq!(loaded.abi(), GuestAbi::Fluvio, "{name}");
        assert_eq!(engine.load(name, &common::wasm(name)).unwrap().abi(), GuestAbi::Native, "{name}");
        let batches: Vec<Batch> = inputs.iter().map(|values| batch(values)).collect();
        for policy in [ErrorPolicy::Skip, ErrorPolicy::Fail, ErrorPolicy::DeadLetter] {
            let ours = run(&engine, module(name), policy, &batches);
            let theirs = run(&engine, fluvio_built(name), policy, &batches);
            for (ours, theirs) in ours.iter().zip(&theirs) {
                assert_eq!(records(theirs), records(ours), "{name} under {policy:?}");
                assert_eq!(theirs.skipped, ours.skipped, "{name} under {policy:?}");
                let failed = |output: &ChainOutput| {
                    let mut offsets: Vec<i64> = output.dead_letters.iter().map(|f| f.offset).collect();
                    offsets.extend(output.failure.as_ref().map(|f| f.offset));
                    offsets
                };
                assert_eq!(failed(theirs), failed(ours), "{name} under {policy:?}");
                if ours.failure.is_some() {
                    // Under `fail` the stream ends here.
                    break;
                }
            }
        }
    }
    // The error's message is the guest's own.
    let output = run(&engine, fluvio_built("even-filter-map"), ErrorPolicy::Fail, &[batch(&["2", "x"])]);
    let failure = output[0].failure.as_ref().expect("the second record fails");
    assert_eq!((failure.offset, failure.value.as_slice()), (41, b"x".as_slice()));
    assert!(failure.message.contains("invalid digit"), "{failure:?}");
    assert_eq!(values(&output[0].batch), [(40, "1".to_string())]);
}

/// Modules built with older releases of Fluvio's crate (0.2.5, the first
/// to pass the host a protocol version, and 0.7.5, the last before 0.50)
/// run too, and give what the same sources give when built here.
#[test]
fn modules_built_with_fluvios_older_releases_run_too() {
    let engine = SmartEngine::new();
    let cases: &[(&str, &str, &[&str])] = &[
        ("v0-2-my-filter", "my-filter", &["apple", "cherry", "banana", "kiwi"]),
        ("v0-7-uppercase-map", "uppercase-map", &["apple", "Plum", "x"]),
    ];
    for (old, ours, values) in cases {
        let loaded = engine.load(old, &fluvio_built_wasm(old)).expect("an old Fluvio-built module loads");
        assert_eq!(loaded.abi(), GuestAbi::Fluvio, "{old}");
        let batches = [batch(values)];
        let expected = run(&engine, module(ours), ErrorPolicy::Fail, &batches);
        let got = run(&engine, fluvio_built(old), ErrorPolicy::Fail, &batches);
        assert_eq!(records(&got[0]), records(&expected[0]), "{old}");
        assert!(!records(&got[0]).is_empty(), "{old} kept something to compare");
    }
}

#[test]
fn init_takes_the_params_and_its_errors_stop_the_chain() {
    let engine = SmartEngine::new();
    let with_param = fluvio_built("params-filter").param("contains", "an");
    let output = run(&engine, with_param, ErrorPolicy::Fail, &[batch(&["banana", "kiwi", "mango"])]);
    assert_eq!(values(&output[0].batch), [(40, "banana".to_string()), (42, "mango".to_string())]);
    let error = ChainBuilder::new(&engine).invocation(fluvio_built("params-filter")).build().unwrap_err();
    match error {
        EngineError::InitFailed { module, message } => {
            assert_eq!(module, "fluvio-params-filter");
            assert!(message.contains("Missing param contains"), "{message}");
        }
        other => panic!("expected InitFailed, got {other:?}"),
    }
}

#[test]
fn look_back_learns_stored_records_and_names_the_one_it_refuses() {
    let engine = SmartEngine::new();
    let mut chain = ChainBuilder::new(&engine).invocation(fluvio_built("look-back-filter")).build().unwrap();
    chain.look_back(0, &batch(&["seen", "also seen"])).unwrap();
    let output = chain.process(&batch(&["seen", "new", "also seen", "new"])).unwrap();
    assert_eq!(values(&output.batch), [(41, "new".to_string())]);
    let error = chain.look_back(0, &batch(&["fine", ""])).unwrap_err();
    match error {
        EngineError::LookBackFailed { offset, message, .. } => {
            assert_eq!(offset, 41);
            assert!(message.contains("cannot be remembered"), "{message}");
        }
        other => panic!("expected LookBackFailed, got {other:?}"),
    }
}

#[test]
fn a_long_stream_outlives_the_answers_fluvios_glue_leaves_in_memory() {
    // Fluvio's glue leaves each answer in the module's memory and the host
    // cannot free it: 3,000 batches of 2.5 KiB answers need 7 MiB more
    // than this cap of 4 MiB. The instance is replaced when its memory
    // reaches half the cap, and no batch fails.
    let engine = SmartEngine::with_config(Limits { memory_bytes: 4 << 20, ..Limits::default() }, None);
    let mut chain = ChainBuilder::new(&engine).invocation(fluvio_built("uppercase-map")).build().unwrap();
    let values: Vec<String> = (0..100).map(|i| format!("value number {i:04}")).collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    let input = batch(&values);
    for _ in 0..3_000 {
        let output = chain.process(&input).expect("within the memory cap");
        assert_eq!(output.batch.record_count(), 100);
    }
    let starts = chain.metrics()[0].1.instantiations;
    assert!((2..=50).contains(&starts), "{starts} starts");
}

#[test]
fn fluvio_built_modules_are_held_to_the_same_cpu_cap() {
    let engine = SmartEngine::with_config(Limits { fuel_per_batch: 50_000, ..Limits::default() }, None);
    let values: Vec<String> = (0..2_000).map(|i| format!("{i}")).collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    let mut chain = ChainBuilder::new(&engine).invocation(fluvio_built("sum-aggregate")).build().unwrap();
    let error = chain.process(&batch(&values)).unwrap_err();
    assert_eq!(error, EngineError::CpuLimitExceeded { module: "fluvio-sum-aggregate".into(), limit: 50_000 });
}
