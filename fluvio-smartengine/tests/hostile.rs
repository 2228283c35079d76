//! Hostile modules, each built from source in `test-modules/`: each fails
//! only itself with a specific error, and the engine then runs a good module.

mod common;

use common::{batch, module, values, wasm};
use fluvio_protocol::ErrorPolicy;
use fluvio_smartengine::{ChainBuilder, ChainOutput, EngineError, Limits, Metering, SmartEngine};

fn engine() -> SmartEngine {
    // Small limits keep the tests quick; the defaults are far larger.
    SmartEngine::with_config(Limits { memory_bytes: 32 << 20, fuel_per_batch: 200_000_000, ..Limits::default() }, None)
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
    let layout_1_lies = [
        (&["go-back", "second"][..], "entry 1 is for record 0 after record 1; records must not go back"),
        (&["bad-pointer"], "output area 0xffff0000+4096 is outside guest memory"),
        (&["bad-range"], "input range 1073741824+64 is outside"),
        (&["bad-index"], "entry 0 is for record 999999, but the batch has 1 records"),
        (&["bad-length"], "inline bytes"),
        (&["repeat-record"], "entry 1 is a second output for record 0; a map module gives at most one per record"),
    ];
    let layout_2_lies = [
        (&["go-back", "second"][..], "entry 1 is for record 0 after record 1; records must not go back"),
        (&["bad-pointer"], "output area 0xffff0000+4096 is outside guest memory"),
        (&["bad-range"], "none has its offset delta 1073741824, timestamp delta 0 and headers"),
        (&["bad-index"], "entry 0 passes on record 999999, but the batch has 1 records"),
        (&["bad-length"], "entry 0, a record of 2147483647 bytes, runs past the entries"),
        (&["repeat-record"], "entry 1 is a second output for record 0; a map module gives at most one per record"),
        (
            &["retime"],
            "entry 0 is the output of no input record from record 0 on: none has its offset delta 0, timestamp delta 12345",
        ),
    ];
    for (layout, lies) in [(1, &layout_1_lies[..]), (2, &layout_2_lies[..])] {
        let engine = SmartEngine::with_config(Limits { answer_layout: layout, ..engine().limits() }, None);
        for (values, expected) in lies {
            let lie = values[0];
            let error = run(&engine, "hostile-bad-output", values).unwrap_err();
            match &error {
                EngineError::InvalidOutput { module, reason } => {
                    assert_eq!(module, "hostile-bad-output");
                    assert!(reason.contains(expected), "layout {layout}, {lie}: {reason}");
                }
                other => panic!("layout {layout}, {lie}: expected invalid output, got {other:?}"),
            }
        }
        // An honest answer from the same module is accepted.
        assert_eq!(run(&engine, "hostile-bad-output", &["honest"]).unwrap().batch.record_count(), 0);
        good_module_still_works(&engine);
    }
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
    assert!(matches!(&error, EngineError::NotASmartModule { reason } if reason.contains("fluvio_abi_v")), "{error}");
    // Shaped like a module of Fluvio's crate (an `alloc`), but not one.
    let wasi = wasmer::wat2wasm(
        br#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "alloc") (param i32) (result i32) i32.const 0)
            (func (export "filter") (param i32 i32 i32) (result i32) i32.const 0))"#,
    )
    .unwrap();
    let error = engine.load("wasi", &wasi).unwrap_err();
    assert!(matches!(&error, EngineError::NotASmartModule { reason } if reason.contains("WASI target")), "{error}");
    let untyped = wasmer::wat2wasm(
        br#"(module (memory (export "memory") 1)
            (func (export "alloc") (param i32) (result i32) i32.const 0)
            (func (export "map") (param i64) (result i32) i32.const 0))"#,
    )
    .unwrap();
    let error = engine.load("untyped", &untyped).unwrap_err();
    assert!(matches!(&error, EngineError::BadExport { name, .. } if name == "map"), "{error}");
    let unversioned = wasmer::wat2wasm(
        br#"(module (memory (export "memory") 1)
            (func (export "alloc") (param i32) (result i32) i32.const 0)
            (func (export "filter") (param i32 i32) (result i32) i32.const 0))"#,
    )
    .unwrap();
    let error = engine.load("unversioned", &unversioned).unwrap_err();
    assert!(matches!(&error, EngineError::NotASmartModule { reason } if reason.contains("take no version")), "{error}");
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

#[test]
fn restarts_after_panics_are_paid_from_the_batchs_one_budget() {
    // Each start of the module spends a fifth to a third of the 200 M
    // budget in `init` (8 to 16 fuel a spin), and each record panics.
    let engine = engine();
    let invocation = module("hostile-burn-in-startup").param("init_spins", "5000000");
    let run_skipping = |values: &[&str]| run_skipping(&engine, invocation.clone(), values);
    // Two restarts fit in the batch's budget: three records panic and are
    // skipped.
    let (output, _) = run_skipping(&["a"; 3]);
    assert_eq!(output.expect("two restarts fit").skipped, 3);
    // Ten do not: each restart draws on what the batch has left (before,
    // each had a fresh budget and all ten records were skipped).
    let (output, starts) = run_skipping(&["a"; 10]);
    assert_eq!(
        output.unwrap_err(),
        EngineError::CpuLimitExceeded { module: "hostile-burn-in-startup".into(), limit: 200_000_000 }
    );
    assert!(starts <= 6, "{starts} starts on one budget");
    good_module_still_works(&engine);
}

/// Runs `values` through a fresh chain of the one module under `skip`:
/// the output, and how many times the module was started.
fn run_skipping(
    engine: &SmartEngine,
    invocation: fluvio_protocol::SmartModuleInvocation,
    values: &[&str],
) -> (Result<ChainOutput, EngineError>, u64) {
    let mut chain = ChainBuilder::new(engine)
        .invocation(invocation)
        .on_error(ErrorPolicy::Skip)
        .build()
        .expect("the first start has a budget of its own");
    let output = chain.process(&batch(0, values));
    (output, chain.metrics()[0].1.instantiations)
}

/// A module written against the ABI by hand (no guest library could make
/// its allocator slow): `fluvio_reserve` spins `spins` rounds before it
/// hands out the input buffer, and every record panics. The host calls
/// `reserve` at each start (for the setup blob) and before each batch (the
/// module never keeps a buffer).
fn burn_in_reserve_then_panic(spins: u64) -> Vec<u8> {
    // The output area at 0: status OK, next input at 1024 with capacity 0,
    // no entries, no errors.
    wat::parse_str(format!(
        r#"(module
          (import "fluvio" "panic" (func $panic (param i32 i32 i32)))
          (memory (export "memory") 2)
          (data (i32.const 0) "\00\00\00\00\00\04\00\00")
          (data (i32.const 512) "no records wanted")
          (func (export "fluvio_abi_v1"))
          (func (export "fluvio_reserve") (param i32) (result i32)
            (local $left i64)
            (local.set $left (i64.const {spins}))
            (loop $spin
              (local.set $left (i64.sub (local.get $left) (i64.const 1)))
              (br_if $spin (i64.gt_s (local.get $left) (i64.const 0))))
            (i32.const 1024))
          (func (export "fluvio_setup") (param i32) (result i64) (i64.const 24))
          (func (export "fluvio_map") (param i32 i32) (result i64)
            (call $panic (i32.const 512) (i32.const 17) (i32.const 0))
            unreachable))"#
    ))
    .expect("the test module parses")
}

#[test]
fn cpu_burned_in_reserve_is_paid_from_the_batchs_one_budget() {
    let engine = engine();
    let invocation =
        fluvio_protocol::SmartModuleInvocation::adhoc("burn-in-reserve", burn_in_reserve_then_panic(4_000_000));
    let run_skipping = |values: &[&str]| run_skipping(&engine, invocation.clone(), values);
    // Each reserve spends about a sixth of the budget: one record's round
    // (a reserve for the batch, a panic, a restart with its reserve) fits.
    let (output, _) = run_skipping(&["a"]);
    assert_eq!(output.expect("one round fits").skipped, 1);
    // Ten rounds do not: restarts and reserves draw on what the batch has
    // left, and panics never refill it.
    let (output, starts) = run_skipping(&["a"; 10]);
    assert_eq!(
        output.unwrap_err(),
        EngineError::CpuLimitExceeded { module: "burn-in-reserve".into(), limit: 200_000_000 }
    );
    assert!(starts <= 5, "{starts} starts on one budget");
    good_module_still_works(&engine);
}

#[test]
fn a_loop_of_bulk_fills_hits_the_cpu_limit() {
    // Each turn is one `memory.fill` of 16 MiB: priced as one instruction,
    // the 200 M budget would allow some 3 PB of writes.
    let engine = engine();
    let error = run(&engine, "hostile-fill-loop", &["x"]).unwrap_err();
    assert_eq!(error, EngineError::CpuLimitExceeded { module: "hostile-fill-loop".into(), limit: 200_000_000 });
    good_module_still_works(&engine);
}

#[test]
fn a_call_that_outlives_its_time_limit_is_stopped_whatever_fuel_is_left() {
    let limits = Limits {
        memory_bytes: 32 << 20,
        fuel_per_batch: u64::MAX / 2,
        call_time: std::time::Duration::from_millis(200),
        ..Limits::default()
    };
    let engine = SmartEngine::with_config(limits, None);
    let error = run(&engine, "hostile-infinite-loop", &["x"]).unwrap_err();
    assert_eq!(error, EngineError::TimeLimitExceeded { module: "hostile-infinite-loop".into(), limit_ms: 200 });
    assert!(error.to_string().contains("time limit of 200 ms"), "{error}");
    good_module_still_works(&engine);
}

/// `wasm` with its table section replaced by `count` tables of `minimum`
/// entries each (inserted where the section belongs if it had none).
fn with_tables(wasm: &[u8], count: u32, minimum: u32) -> Vec<u8> {
    fn leb(mut value: u32, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    fn read_leb(bytes: &[u8], at: &mut usize) -> u32 {
        let (mut value, mut shift) = (0u32, 0);
        loop {
            let byte = bytes[*at];
            *at += 1;
            value |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return value;
            }
            shift += 7;
        }
    }
    let mut table_section = vec![4u8];
    let mut content = Vec::new();
    leb(count, &mut content);
    for _ in 0..count {
        content.extend([0x70, 0x00]); // funcref, a minimum and no maximum
        leb(minimum, &mut content);
    }
    leb(content.len() as u32, &mut table_section);
    table_section.extend(content);

    let mut out = wasm[..8].to_vec();
    let mut inserted = false;
    let mut at = 8;
    while at < wasm.len() {
        let start = at;
        let id = wasm[at];
        at += 1;
        let size = read_leb(wasm, &mut at) as usize;
        at += size;
        if !inserted && !matches!(id, 0..=4) {
            out.extend(&table_section);
            inserted = true;
        }
        if id != 4 {
            out.extend(&wasm[start..at]);
        }
    }
    out
}

#[test]
fn a_table_above_the_memory_cap_is_refused_before_it_is_allocated() {
    // 2^27 entries would hold 1 GiB of host memory against a 32 MiB cap.
    let engine = engine();
    let bomb = with_tables(&wasm("my-filter"), 1, 1 << 27);
    let error = engine.load("table-bomb", &bomb).unwrap_err();
    assert_eq!(
        error,
        EngineError::MemoryLimitExceeded {
            module: "table-bomb".into(),
            limit_bytes: 32 << 20,
            requested: Some(1 << 30)
        }
    );
    // A table of a reasonable size is still fine.
    let modest = with_tables(&wasm("my-filter"), 1, 4096);
    let mut chain = ChainBuilder::new(&engine)
        .invocation(fluvio_protocol::SmartModuleInvocation::adhoc("modest-table", modest))
        .build()
        .unwrap();
    let out = chain.process(&batch(0, &["alpha", "zzz"])).unwrap();
    assert_eq!(values(&out.batch), vec![(0, "alpha".to_string())]);
}

#[test]
fn a_module_with_two_tables_is_refused() {
    let engine = engine();
    let error = engine.load("two-tables", &with_tables(&wasm("my-filter"), 2, 16)).unwrap_err();
    match &error {
        EngineError::InvalidWasm { reason } => assert!(reason.contains("at most one"), "{error}"),
        other => panic!("expected the second table to be refused, got {other:?}"),
    }
}

#[test]
fn features_a_smartmodule_does_not_need_are_off() {
    // Shared memory (threads) and a second memory are refused at load.
    let engine = engine();
    for (what, wat) in
        [("shared memory", r#"(module (memory 1 1 shared))"#), ("two memories", r#"(module (memory 1) (memory 1))"#)]
    {
        let wasm = wasmer::wat2wasm(wat.as_bytes()).unwrap();
        let error = engine.load(what, &wasm).unwrap_err();
        assert!(matches!(error, EngineError::InvalidWasm { .. }), "{what}: {error:?}");
    }
}

#[test]
fn output_that_repeats_input_past_the_budget_is_rejected() {
    // 2,000 entries of 16 bytes, each the whole ~50 KB batch: about 100 MB
    // asked of the host, against 32 MiB of memory cap plus the input. (In
    // layout 2 an entry cannot name input bytes at will, and a map's
    // references cannot repeat a record; the decoder's own tests cover an
    // array-map that repeats one.)
    let engine = SmartEngine::with_config(Limits { answer_layout: 1, ..engine().limits() }, None);
    let filler = "a record of twenty b";
    let values: Vec<&str> = std::iter::once("amplify").chain(std::iter::repeat_n(filler, 1999)).collect();
    let error = run(&engine, "hostile-bad-output", &values).unwrap_err();
    match &error {
        EngineError::InvalidOutput { reason, .. } => {
            assert!(reason.contains("the output grew past"), "{reason}")
        }
        other => panic!("expected the output budget to stop the module, got {other:?}"),
    }
    good_module_still_works(&engine);
}

#[test]
fn the_modules_of_a_chain_share_one_cpu_budget_per_batch() {
    let values: Vec<String> = (0..500).map(|i| format!("record number {i}")).collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    // What one upper-casing pass over the batch costs.
    let mut single = ChainBuilder::new(&SmartEngine::new()).invocation(module("uppercase-map")).build().unwrap();
    single.process(&batch(0, &values)).unwrap();
    let one_pass = single.metrics()[0].1.fuel_used;
    assert!(one_pass > 0);

    let limits = Limits { fuel_per_batch: one_pass * 3 / 2, ..Limits::default() };
    let engine = SmartEngine::with_config(limits, None);
    let mut one = ChainBuilder::new(&engine).invocation(module("uppercase-map")).build().unwrap();
    assert_eq!(one.process(&batch(0, &values)).unwrap().batch.record_count(), 500);
    // Two passes need twice the fuel: more than the batch's one budget.
    let mut two = ChainBuilder::new(&engine)
        .invocation(module("uppercase-map"))
        .invocation(module("uppercase-map"))
        .build()
        .unwrap();
    let error = two.process(&batch(0, &values)).unwrap_err();
    assert!(matches!(error, EngineError::CpuLimitExceeded { .. }), "{error:?}");
}

#[test]
fn a_module_that_panics_on_record_after_record_stops_the_batch() {
    let engine = engine();
    let many = vec!["panic"; fluvio_smartengine::MAX_PANICS_PER_BATCH + 20];
    let mut chain =
        ChainBuilder::new(&engine).invocation(module("hostile-panic")).on_error(ErrorPolicy::Skip).build().unwrap();
    let error = chain.process(&batch(0, &many)).unwrap_err();
    assert_eq!(
        error,
        EngineError::TooManyPanics { module: "hostile-panic".into(), limit: fluvio_smartengine::MAX_PANICS_PER_BATCH }
    );
    // A few panics are skipped as before.
    let mut chain =
        ChainBuilder::new(&engine).invocation(module("hostile-panic")).on_error(ErrorPolicy::Skip).build().unwrap();
    let out = chain.process(&batch(0, &["fine", "panic", "also fine"])).unwrap();
    assert_eq!(out.skipped, 1);
}

#[test]
fn an_input_buffer_outside_guest_memory_is_refused() {
    // A module whose `fluvio_reserve` answers with a place far past its one
    // page of memory: the host's copy of the setup blob must not go there.
    let wat = r#"(module
        (memory (export "memory") 1)
        (func (export "fluvio_abi_v1"))
        (func (export "fluvio_reserve") (param i32) (result i32) (i32.const 0x7ffffff0))
        (func (export "fluvio_setup") (param i32) (result i64) (unreachable))
        (func (export "fluvio_filter") (param i32 i32) (result i64) (unreachable)))"#;
    let wasm = wasmer::wat2wasm(wat.as_bytes()).unwrap().into_owned();
    let engine = engine();
    let invocation = fluvio_smartengine::SmartModuleInvocation::adhoc("bad-reserve", wasm);
    let error = ChainBuilder::new(&engine).invocation(invocation).build().unwrap_err();
    match &error {
        EngineError::InvalidOutput { module, reason } => {
            assert_eq!(module, "bad-reserve");
            assert!(reason.contains("input buffer 0x7ffffff0+") && reason.contains("outside guest memory"), "{reason}");
        }
        other => panic!("expected invalid output, got {other:?}"),
    }
    good_module_still_works(&engine);
}

#[test]
fn under_the_deadline_metering_every_cpu_hog_is_stopped_at_its_time_limit() {
    let limits = Limits {
        memory_bytes: 32 << 20,
        call_time: std::time::Duration::from_millis(200),
        metering: Metering::Deadline,
        ..Limits::default()
    };
    let engine = SmartEngine::with_config(limits, None);
    // A loop, a loop of bulk fills, and a loop in the module's `init`.
    let spinning_init = module("hostile-burn-in-startup").param("init_spins", "1000000000000");
    let hogs = [module("hostile-infinite-loop"), module("hostile-fill-loop"), spinning_init];
    for invocation in hogs {
        let name = invocation.name().to_string();
        let error = ChainBuilder::new(&engine)
            .invocation(invocation)
            .build()
            .and_then(|mut chain| chain.process(&batch(0, &["x"])))
            .unwrap_err();
        assert_eq!(error, EngineError::TimeLimitExceeded { module: name.clone(), limit_ms: 200 }, "{name}");
        good_module_still_works(&engine);
    }
    // The other caps hold as they do under fuel.
    let error = run(&engine, "hostile-memory-bomb", &["x"]).unwrap_err();
    assert!(matches!(error, EngineError::MemoryLimitExceeded { .. }), "{error:?}");
    let failure =
        run(&engine, "hostile-panic", &["fine", "panic"]).unwrap().failure.expect("the panic fails the batch");
    assert_eq!((failure.offset, failure.kind.as_str()), (1, "panic"));
    good_module_still_works(&engine);
}
