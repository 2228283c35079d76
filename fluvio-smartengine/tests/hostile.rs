//! Hostile modules, each built from source in `test-modules/`: each fails
//! only itself with a specific error, and the engine then runs a good module.

mod common;

use common::{batch, module, values, wasm};
use fluvio_protocol::ErrorPolicy;
use fluvio_smartengine::{ChainBuilder, ChainOutput, EngineError, Limits, SmartEngine};

fn engine() -> SmartEngine {
    // Small limits keep the tests quick; the defaults are far larger.
    SmartEngine::with_config(Limits { memory_bytes: 32 << 20, fuel_per_batch: 200_000_000 }, None)
}

fn run(engine: &SmartEngine, name: &str, values: &[&str]) -> Result<ChainOutput, EngineError> {
    let mut chain = ChainBuilder::new(engine).invocation(module(name)).build()?;
    chain.process(&batch(0, values))
}

fn good_module_still_works(engine: &SmartEngine) {
    let out = run(engine, "my-filter", &["alpha", "omega", "zzz"]).unwrap();
    assert_eq!(values(&out.batch), vec![(0, "alpha".to_string()), (1, "omega".to_string())]);
}

#[test]
fn infinite_loop_hits_the_cpu_limit() {
    let engine = engine();
    let error = run(&engine, "hostile-infinite-loop", &["x"]).unwrap_err();
    assert_eq!(error, EngineError::CpuLimitExceeded { module: "hostile-infinite-loop".into(), limit: 200_000_000 });
    assert!(error.to_string().contains("exceeded its CPU limit"), "{error}");
    good_module_still_works(&engine);
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let engine = engine();
    let error = run(&engine, "hostile-memory-bomb", &["x"]).unwrap_err();
    match &error {
        EngineError::MemoryLimitExceeded { module, limit_bytes, requested } => {
            assert_eq!((module.as_str(), *limit_bytes), ("hostile-memory-bomb", 32 << 20));
            assert!(requested.is_some(), "the failed allocation is reported: {error}");
        }
        other => panic!("expected a memory limit error, got {other:?}"),
    }
    good_module_still_works(&engine);
}

#[test]
fn a_cpu_failure_does_not_disturb_other_chains() {
    let engine = engine();
    let mut good_chain = ChainBuilder::new(&engine).invocation(module("uppercase-map")).build().unwrap();
    assert!(run(&engine, "hostile-infinite-loop", &["x"]).is_err());
    let out = good_chain.process(&batch(0, &["still here"])).unwrap();
    assert_eq!(values(&out.batch), vec![(0, "STILL HERE".to_string())]);
}

#[test]
fn wrong_abi_version_is_refused_naming_the_supported_versions() {
    let engine = engine();
    let error = engine.load("hostile-wrong-abi", &wasm("hostile-wrong-abi")).unwrap_err();
    assert_eq!(error, EngineError::UnsupportedAbiVersion { found: 99, supported: vec![1] });
    assert!(error.to_string().contains("ABI version 99, but this host supports version 1"), "{error}");
    good_module_still_works(&engine);
}

#[test]
fn out_of_range_output_is_rejected() {
    let engine = engine();
    for (lie, expected) in [
        ("bad-pointer", "output area 0xffff0000+4096 is outside guest memory"),
        ("bad-range", "input range 1073741824+64 is outside"),
        ("bad-index", "entry 0 is for record 999999, but the batch has 1 records"),
        ("bad-length", "inline bytes"),
    ] {
        let error = run(&engine, "hostile-bad-output", &[lie]).unwrap_err();
        match &error {
            EngineError::InvalidOutput { module, reason } => {
                assert_eq!(module, "hostile-bad-output");
                assert!(reason.contains(expected), "{lie}: {reason}");
            }
            other => panic!("{lie}: expected invalid output, got {other:?}"),
        }
    }
    // An honest answer from the same module is accepted.
    assert_eq!(run(&engine, "hostile-bad-output", &["honest"]).unwrap().batch.record_count(), 0);
    good_module_still_works(&engine);
}

#[test]
fn invalid_wasm_bytes_are_refused() {
    let engine = engine();
    let error = engine.load("junk", b"this is not wasm").unwrap_err();
    assert!(matches!(error, EngineError::InvalidWasm { .. }), "{error:?}");
    assert!(error.to_string().contains("magic bytes"), "{error}");

    let mut truncated = wasm("my-filter");
    truncated.truncate(truncated.len() / 2);
    let error = engine.load("truncated", &truncated).unwrap_err();
    assert!(matches!(error, EngineError::InvalidWasm { .. }), "{error:?}");
    good_module_still_works(&engine);
}

#[test]
fn unknown_imports_are_refused_before_running() {
    let engine = engine();
    let error = engine.load("hostile-imports", &wasm("hostile-imports")).unwrap_err();
    assert_eq!(error, EngineError::UnknownImport { module: "env".into(), name: "open_socket".into() });
    good_module_still_works(&engine);
}

#[test]
fn a_plain_wasm_module_is_not_a_smartmodule() {
    let engine = engine();
    let plain = wasmer::wat2wasm(br#"(module (memory (export "memory") 1) (func (export "filter")))"#).unwrap();
    let error = engine.load("plain", &plain).unwrap_err();
    assert!(
        matches!(&error, EngineError::NotASmartModule { reason } if reason.contains("Fluvio's own fluvio-smartmodule")),
        "{error}"
    );
}

#[test]
fn retries_after_panics_share_one_cpu_budget_per_batch() {
    let engine = engine();
    let spins = "12000000";
    let skip = |values: &[&str]| {
        let mut chain = ChainBuilder::new(&engine)
            .invocation(module("hostile-burn-then-panic"))
            .on_error(ErrorPolicy::Skip)
            .build()?;
        chain.process(&batch(0, values))
    };
    // One such record fits in the budget: it panics, and is skipped.
    let one = skip(&[spins]).expect("one record's spinning fits in the budget");
    assert_eq!(one.skipped, 1);
    // Five do not: each retry (without the record that panicked) draws on
    // what the batch has left, not on a fresh budget.
    let error = skip(&[spins; 5]).unwrap_err();
    assert_eq!(error, EngineError::CpuLimitExceeded { module: "hostile-burn-then-panic".into(), limit: 200_000_000 });
    good_module_still_works(&engine);
}
