//! The engine against real modules built from this repository: every kind,
//! params, chains, error policies, caches, metrics and logs.

mod common;

use common::module;
use common::{batch, values, wasm};
use fluvio_protocol::{Batch, BatchBuilder};
use fluvio_smartengine::{
    ChainBuilder, EngineError, ErrorPolicy, Limits, ModuleKind, SmartEngine, SmartModuleChain, SmartModuleInvocation,
};

fn chain_of(engine: &SmartEngine, modules: &[SmartModuleInvocation], policy: ErrorPolicy) -> SmartModuleChain {
    ChainBuilder::new(engine).invocations(modules.iter().cloned()).on_error(policy).build().unwrap()
}

fn single(engine: &SmartEngine, name: &str) -> SmartModuleChain {
    chain_of(engine, &[module(name)], ErrorPolicy::Fail)
}

fn owned(pairs: &[(i64, &str)]) -> Vec<(i64, String)> {
    pairs.iter().map(|(o, v)| (*o, v.to_string())).collect()
}

#[test]
fn detects_each_kind() {
    let engine = SmartEngine::new();
    for (name, kind) in [
        ("my-filter", ModuleKind::Filter),
        ("uppercase-map", ModuleKind::Map),
        ("even-filter-map", ModuleKind::FilterMap),
        ("json-array-map", ModuleKind::ArrayMap),
        ("sum-aggregate", ModuleKind::Aggregate),
    ] {
        let module = engine.load(name, &wasm(name)).unwrap();
        assert_eq!(module.kind(), kind, "{name}");
        assert!(!module.has_init());
    }
    assert!(engine.load("params-filter", &wasm("params-filter")).unwrap().has_init());
}

#[test]
fn filter_keeps_matching_records_with_their_offsets() {
    let engine = SmartEngine::new();
    let mut chain = single(&engine, "my-filter");
    let out = chain.process(&batch(100, &["apple", "plum", "banana", ""])).unwrap();
    assert_eq!(values(&out.batch), owned(&[(100, "apple"), (102, "banana")]));
    assert!(out.failure.is_none());
    let timestamps: Vec<i64> = out.batch.records().map(|r| r.timestamp).collect();
    assert_eq!(timestamps, [1_000, 1_002]);
}

/// The guest crate's `RecordData::contains` searches 16 bytes at a time
/// in wasm, with a last, overlapping step for the rest: every length up to
/// five steps, with the byte at every place and nowhere, against the
/// standard library's answer.
#[test]
fn byte_search_in_a_module_finds_the_byte_at_every_place_of_every_length() {
    let engine = SmartEngine::new();
    let mut chain = single(&engine, "bench-filter");
    let mut values = Vec::new();
    for len in 0..80 {
        values.push(".".repeat(len));
        for place in 0..len {
            let mut value = vec![b'.'; len];
            value[place] = b'#';
            values.push(String::from_utf8(value).unwrap());
        }
    }
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    let out = chain.process(&batch(0, &values)).unwrap();
    let expected: Vec<(i64, String)> = values
        .iter()
        .enumerate()
        .filter(|(_, value)| value.as_bytes().contains(&b'#'))
        .map(|(index, value)| (index as i64, value.to_string()))
        .collect();
    assert_eq!(expected.len(), (0..80).sum::<usize>());
    assert_eq!(common::values(&out.batch), expected);
}

#[test]
fn map_transforms_values_and_keeps_keys_and_headers() {
    let engine = SmartEngine::new();
    let mut chain = single(&engine, "uppercase-map");
    let mut builder = BatchBuilder::new(7, 50);
    builder.push(0, 50, Some(b"key-1"), b"hello", &[(b"trace".as_slice(), b"abc".as_slice())]);
    builder.push(1, 51, None, b"World", &[]);
    // The glue moves one record along the batch: keys come and go.
    builder.push(2, 52, Some(b"key-3"), b"three", &[]);
    builder.push(3, 53, Some(b"key-four"), b"four", &[(b"h".as_slice(), b"v".as_slice())]);
    // No key but headers: the host's short way for keyless records must
    // not drop them.
    builder.push(4, 54, None, b"five", &[(b"h5".as_slice(), b"v5".as_slice())]);
    let out = chain.process(&builder.finish()).unwrap();
    let records: Vec<_> = out.batch.records().collect();
    assert_eq!(records.len(), 5);
    let timestamps: Vec<i64> = records.iter().map(|r| r.timestamp).collect();
    assert_eq!(timestamps, [50, 51, 52, 53, 54]);
    assert_eq!((records[0].offset, records[0].key, records[0].value), (7, Some(&b"key-1"[..]), &b"HELLO"[..]));
    assert_eq!(records[0].headers, vec![(&b"trace"[..], &b"abc"[..])]);
    assert_eq!((records[1].offset, records[1].key, records[1].value), (8, None, &b"WORLD"[..]));
    assert_eq!((records[2].offset, records[2].key, records[2].value), (9, Some(&b"key-3"[..]), &b"THREE"[..]));
    assert_eq!((records[3].offset, records[3].key, records[3].value), (10, Some(&b"key-four"[..]), &b"FOUR"[..]));
    assert_eq!(records[3].headers, vec![(&b"h"[..], &b"v"[..])]);
    assert_eq!((records[4].offset, records[4].key, records[4].value), (11, None, &b"FIVE"[..]));
    assert_eq!(records[4].headers, vec![(&b"h5"[..], &b"v5"[..])]);
}

#[test]
fn unchanged_records_pass_through_byte_for_byte() {
    // hostile-panic returns every non-"panic" record's own key and value.
    let engine = SmartEngine::new();
    let mut chain = single(&engine, "hostile-panic");
    let mut builder = BatchBuilder::new(0, 0);
    builder.push(0, 3, Some(b"k"), b"one", &[(b"h".as_slice(), b"v".as_slice())]);
    builder.push(1, 4, None, b"two", &[]);
    builder.push(2, 5, Some(b"key"), b"three", &[]);
    builder.push(3, 6, Some(b"k4"), b"four", &[(b"h".as_slice(), b"v".as_slice())]);
    let input = builder.finish();
    let out = chain.process(&input).unwrap();
    assert_eq!(out.batch.as_bytes(), input.as_bytes());
}

/// A batch of `values` with what the common case leaves out: keys on
/// some records, headers on others, offset deltas with gaps (as after a
/// filter), the same delta on records 2 and 3 (which no producer writes,
/// but a batch may hold), and timestamps out of order.
fn varied_batch(values: &[&str]) -> fluvio_protocol::Batch {
    let mut builder = BatchBuilder::new(500, 10_000);
    for (n, value) in values.iter().enumerate() {
        let key = format!("key-{n}");
        let key = (n % 3 == 1).then_some(key.as_bytes());
        let header: &[(&[u8], &[u8])] = if n % 2 == 0 { &[(b"trace", b"t-1"), (b"n", b"")] } else { &[] };
        let timestamp = 10_000 + ((n * 7) % 5) as i64;
        builder.push(n as u32 * 2 + n as u32 % 3, timestamp, key, value.as_bytes(), header);
    }
    builder.finish()
}

/// What `alloc-churn` answers for `value`: its length, how many prefix
/// copies it held, then the value and its first half.
fn churned(value: &[u8]) -> Vec<u8> {
    let kept = (0..=value.len()).step_by(7).enumerate().filter(|(i, _)| i % 2 == 1).count();
    let again = (0..=value.len()).step_by(14).count();
    let mut out = format!("{}:{}:", value.len(), kept + again).into_bytes();
    out.extend_from_slice(value);
    out.extend_from_slice(&value[..value.len() / 2]);
    out
}

#[test]
fn the_module_allocator_hands_out_each_block_once_and_keeps_its_bytes() {
    // Values from empty to past the largest small block (512 bytes), of
    // bytes that differ from record to record, over several batches: the
    // blocks one record frees serve the next record and the next batch.
    let engine = SmartEngine::new();
    let mut chain = single(&engine, "alloc-churn");
    let mut seed = 0x9e37_79b9_u32;
    for round in 0..4 {
        let mut builder = BatchBuilder::new(round * 1_000, 0);
        let mut expected = Vec::new();
        for i in 0..250u32 {
            let len = (i as usize * 37 + round as usize * 11) % 1_300;
            let value: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 24) as u8
                })
                .collect();
            builder.push(i, i as i64, None, &value, &[]);
            expected.push(churned(&value));
        }
        let out = chain.process(&builder.finish()).unwrap();
        assert!(out.failure.is_none(), "round {round}: {:?}", out.failure);
        let answered: Vec<Vec<u8>> = out.batch.records().map(|record| record.value.to_vec()).collect();
        assert_eq!(answered.len(), expected.len(), "round {round}");
        for (i, (answer, expected)) in answered.iter().zip(&expected).enumerate() {
            assert!(
                answer == expected,
                "round {round}, record {i}: {} bytes, expected {}",
                answer.len(),
                expected.len()
            );
        }
    }
}

/// What a module answers for a record with this key and value: its key
/// and value, or `None` when it leaves the record out or fails it.
type Expected = fn(Option<&[u8]>, &[u8]) -> Option<(Option<Vec<u8>>, Vec<u8>)>;

/// Runs `module` once per mode, each in a module of its own (the first
/// block that outlives its call turns placing off for the module's life),
/// over three batches where every fourth record's value is `MODE:letters`
/// and the others `upper:letters`, with keys, headers and values of every
/// length around them: every answer must be what `expected` says.
fn check_placing(module_name: &str, modes: &[&str], expected: Expected) {
    let engine = SmartEngine::new();
    let mut seed = 0x2545_f491_u32;
    for mode in modes {
        let mut chain = chain_of(&engine, &[module(module_name)], ErrorPolicy::Skip);
        for round in 0..3u32 {
            let mut builder = BatchBuilder::new(i64::from(round) * 1_000, 0);
            let mut wanted = Vec::new();
            for n in 0..300u32 {
                let len = ((n * 31 + round * 7) % 260) as usize;
                let letters: String = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        char::from(b'a' + (seed >> 24) as u8 % 26)
                    })
                    .collect();
                let value = if n % 4 == 1 { format!("{mode}:{letters}") } else { format!("upper:{letters}") };
                let key = format!("k{n}");
                let key = (n % 3 == 1).then_some(key.as_bytes());
                let headers: &[(&[u8], &[u8])] = if n % 5 == 0 { &[(b"h", b"v")] } else { &[] };
                builder.push(n, i64::from(n), key, value.as_bytes(), headers);
                if let Some(answer) = expected(key, value.as_bytes()) {
                    wanted.push((i64::from(round) * 1_000 + i64::from(n), answer, !headers.is_empty()));
                }
            }
            let out = chain.process(&builder.finish()).unwrap();
            assert!(out.failure.is_none(), "{module_name} {mode}, round {round}: {:?}", out.failure);
            let answered: Vec<_> = out
                .batch
                .records()
                .map(|record| {
                    let answer = (record.key.map(<[u8]>::to_vec), record.value.to_vec());
                    (record.offset, answer, !record.headers.is_empty())
                })
                .collect();
            assert_eq!(answered.len(), wanted.len(), "{module_name} {mode}, round {round}");
            for (answer, wanted) in answered.iter().zip(&wanted) {
                assert!(answer == wanted, "{module_name} {mode}, round {round}: {answer:?}, expected {wanted:?}");
            }
        }
    }
}

/// A map's new value is allocated where its output record goes and taken
/// in place (see `value-placement`). Each way a module may use that first
/// allocation otherwise: every answer must come out as the function gave
/// it, and the blocks the module keeps must keep their bytes.
#[test]
fn a_value_placed_in_the_output_area_comes_out_whatever_the_module_does_with_it() {
    let modes = ["upper", "keep", "key", "grow", "shrink", "spare", "scratch", "fail", "keep-fail"];
    check_placing("value-placement", &modes, value_placement::expected);
}

/// The same for a filter-map, whose own path is a record left out with a
/// block placed for it freed or kept (see `placement-filter-map`).
#[test]
fn a_filter_map_that_leaves_records_out_keeps_its_placed_blocks_and_answers() {
    check_placing("placement-filter-map", &["drop", "keep-drop", "keep", "upper"], placement_filter_map::expected);
}

#[test]
fn small_blocks_a_module_freed_serve_its_next_large_allocation() {
    // 40 MiB of small blocks, freed, then 40 MiB in one block, under a
    // 64 MiB cap: the freed blocks must not all stay on the allocator's
    // lists, or the large block does not fit.
    let engine = SmartEngine::with_config(Limits { memory_bytes: 64 << 20, ..Limits::default() }, None);
    let mut chain = single(&engine, "alloc-churn");
    let out = chain.process(&batch(0, &["phases:40", "phases:40"])).unwrap();
    assert!(out.failure.is_none(), "{:?}", out.failure);
    assert_eq!(values(&out.batch), owned(&[(0, "phases:done"), (1, "phases:done")]));
}

#[test]
fn every_kind_answers_the_same_in_both_answer_layouts() {
    let newest = SmartEngine::new();
    let oldest = SmartEngine::with_config(Limits { answer_layout: 1, ..Limits::default() }, None);
    let words = ["apple", "plum", "banana", "kiwi", "", "avocado", "fig"];
    let numbers = ["1", "2", "3", "40", "x", "6"];
    let arrays = ["[1,2,3]", "[]", "[\"x\"]", "[4]", "nope"];
    let chains: [(&[&str], &[&str]); 8] = [
        (&["my-filter"], &words),
        (&["uppercase-map"], &words),
        // Every value passed on unchanged: layout 2 answers with references.
        (&["hostile-panic"], &words),
        (&["even-filter-map"], &numbers),
        (&["json-array-map"], &arrays),
        (&["sum-aggregate"], &numbers),
        (&["regex-scrubbing"], &["ssn 123-45-6789 here", "none", "two 111-22-3333 and 444-55-6666"]),
        (&["my-filter", "uppercase-map", "hostile-panic"], &words),
    ];
    for (modules, values) in chains {
        let input = varied_batch(values);
        let invocations: Vec<_> = modules.iter().map(|name| module(name)).collect();
        let mut outputs = Vec::new();
        for (engine, layout) in [(&oldest, 1), (&newest, 2)] {
            let mut chain = chain_of(engine, &invocations, ErrorPolicy::Skip);
            let out = chain.process(&input).unwrap();
            let layouts: Vec<_> = chain.answer_layouts().into_iter().map(|(_, layout)| layout).collect();
            assert_eq!(layouts, vec![Some(layout); modules.len()], "{modules:?}");
            outputs.push((out.batch.as_bytes().to_vec(), out.skipped));
        }
        assert!(Batch::from_bytes(outputs[1].0.clone()).unwrap().record_count() > 0, "{modules:?} outputs records");
        assert_eq!(outputs[0], outputs[1], "{modules:?}");
    }
}

#[test]
fn filter_map_drops_and_transforms() {
    let engine = SmartEngine::new();
    let mut chain = single(&engine, "even-filter-map");
    let out = chain.process(&batch(0, &["1", "2", "3", "40"])).unwrap();
    assert_eq!(values(&out.batch), owned(&[(1, "1"), (3, "20")]));
}

#[test]
fn array_map_outputs_keep_their_source_offset_and_timestamp() {
    let engine = SmartEngine::new();
    let mut chain = single(&engine, "json-array-map");
    let out = chain.process(&batch(10, &["[1,2,3]", "[]", "[\"x\"]"])).unwrap();
    assert_eq!(values(&out.batch), owned(&[(10, "1"), (10, "2"), (10, "3"), (12, "\"x\"")]));
    let timestamps: Vec<i64> = out.batch.records().map(|r| r.timestamp).collect();
    assert_eq!(timestamps, [1_000, 1_000, 1_000, 1_002]);
}

#[test]
fn aggregate_accumulates_across_batches_from_an_initial_value() {
    let engine = SmartEngine::new();
    let mut chain = chain_of(&engine, &[module("sum-aggregate").initial_accumulator("100")], ErrorPolicy::Fail);
    let first = chain.process(&batch(0, &["1", "2"])).unwrap();
    assert_eq!(values(&first.batch), owned(&[(0, "101"), (1, "103")]));
    let second = chain.process(&batch(2, &["10"])).unwrap();
    assert_eq!(values(&second.batch), owned(&[(2, "113")]));
}

#[test]
fn smartmodule_record_sees_offset_and_timestamp() {
    let engine = SmartEngine::new();
    let mut chain = single(&engine, "record-position");
    let out = chain.process(&batch(40, &["a", "b"])).unwrap();
    assert_eq!(values(&out.batch), owned(&[(40, "40:1000:a"), (41, "41:1001:b")]));
}

#[test]
fn regex_scrubber_from_the_walkthrough_hides_the_ssn() {
    let engine = SmartEngine::new();
    let mut chain = single(&engine, "regex-scrubbing");
    let record = r#"{"social_security_number":"123-45-6789","event_type":"account-created","account_id":"1509aaf8-5863-4b41-bfe2-b081691d7a6e","first_name":"Daniel","last_name":"Mahoney","email":"","password_hash":"db6b535bc9909ecfb7c2ee4550ed7b350a61785e"}"#;
    let out = chain.process(&batch(0, &[record])).unwrap();
    let (_, value) = &values(&out.batch)[0];
    assert_eq!(value, &record.replace("123-45-6789", "***-**-****"));
}

#[test]
fn init_receives_params_and_logs_reach_the_host() {
    let engine = SmartEngine::new();
    let config = module("params-filter").param("contains", "Fluvio").param("ignore_case", "true");
    let mut chain = chain_of(&engine, &[config], ErrorPolicy::Fail);
    let out = chain.process(&batch(0, &["fluvio rocks", "kafka", "FLUVIO"])).unwrap();
    assert_eq!(values(&out.batch), owned(&[(0, "fluvio rocks"), (2, "FLUVIO")]));
    let logs = chain.take_logs();
    assert!(
        logs.iter()
            .any(|l| l.module == "params-filter" && l.message.contains("keeping records that contain \"fluvio\"")),
        "{logs:?}"
    );
}

#[test]
fn init_errors_name_the_parameter() {
    let engine = SmartEngine::new();
    let missing = ChainBuilder::new(&engine).invocation(module("params-filter")).build().unwrap_err();
    assert!(
        matches!(&missing, EngineError::InitFailed { message, .. } if message.contains("missing parameter `contains`")),
        "{missing}"
    );
    let invalid = ChainBuilder::new(&engine)
        .invocation(module("params-filter").param("contains", "x").param("ignore_case", "maybe"))
        .build()
        .unwrap_err();
    assert!(invalid.to_string().contains("parameter `ignore_case` is invalid: \"maybe\""), "{invalid}");
}

#[test]
fn chain_runs_modules_in_order_with_separate_metrics() {
    let engine = SmartEngine::new();
    let mut chain = chain_of(&engine, &[module("even-filter-map"), module("sum-aggregate")], ErrorPolicy::Fail);
    let out = chain.process(&batch(0, &["2", "3", "4", "6"])).unwrap();
    assert_eq!(values(&out.batch), owned(&[(0, "1"), (2, "3"), (3, "6")]));
    let metrics = chain.metrics();
    assert_eq!(metrics[0].0, "even-filter-map");
    assert_eq!((metrics[0].1.records_in, metrics[0].1.records_out), (4, 3));
    assert_eq!((metrics[1].1.records_in, metrics[1].1.records_out), (3, 3));
    for (name, m) in &metrics {
        assert!(m.fuel_used > 0 && m.time.as_nanos() > 0, "{name}: {m:?}");
        assert_eq!((m.batches, m.errors, m.instantiations), (1, 0, 1), "{name}");
    }
    // Different modules do different amounts of work: the counts are their own.
    assert_ne!(metrics[0].1.fuel_used, metrics[1].1.fuel_used);
}

/// Adds up what a chain's observer is told, per module.
#[derive(Default)]
struct Totals(std::sync::Mutex<std::collections::BTreeMap<String, fluvio_smartengine::ModuleMetrics>>);

impl fluvio_smartengine::ChainObserver for Totals {
    fn observe(&self, module: &str, delta: &fluvio_smartengine::ModuleMetrics) {
        let mut totals = self.0.lock().unwrap();
        let total = totals.entry(module.to_string()).or_default();
        total.batches += delta.batches;
        total.records_in += delta.records_in;
        total.records_out += delta.records_out;
        total.errors += delta.errors;
        total.time += delta.time;
        total.fuel_used += delta.fuel_used;
        total.instantiations += delta.instantiations;
    }
}

#[test]
fn an_observer_is_told_each_batch_and_its_deltas_add_up_to_the_metrics() {
    let engine = SmartEngine::new();
    let totals = std::sync::Arc::new(Totals::default());
    let mut chain = ChainBuilder::new(&engine)
        .invocations([module("even-filter-map"), module("sum-aggregate")])
        .on_error(ErrorPolicy::Skip)
        .observer(totals.clone())
        .build()
        .unwrap();
    // The build's instantiations are reported before any batch.
    assert_eq!(totals.0.lock().unwrap()["even-filter-map"].instantiations, 1);
    chain.process(&batch(0, &["2", "3", "4"])).unwrap();
    // A record the first module fails on (skipped) counts as its error.
    chain.process(&batch(3, &["6", "x"])).unwrap();
    let totals = totals.0.lock().unwrap();
    for (name, metrics) in chain.metrics() {
        assert_eq!(totals[&name], metrics, "{name}");
    }
    assert_eq!((totals["even-filter-map"].records_in, totals["even-filter-map"].records_out), (5, 3));
    assert_eq!((totals["even-filter-map"].errors, totals["even-filter-map"].batches), (1, 2));
    assert_eq!(totals["sum-aggregate"].records_in, 3);
}

#[test]
fn filter_then_map_chain() {
    let engine = SmartEngine::new();
    let mut chain = chain_of(&engine, &[module("my-filter"), module("uppercase-map")], ErrorPolicy::Fail);
    let out = chain.process(&batch(0, &["cat", "dog", "bat"])).unwrap();
    assert_eq!(values(&out.batch), owned(&[(0, "CAT"), (2, "BAT")]));
}

#[test]
fn fail_policy_emits_outputs_before_the_failed_record_then_the_error() {
    let engine = SmartEngine::new();
    let mut chain = single(&engine, "sum-aggregate");
    let mut builder = BatchBuilder::new(20, 0);
    builder.push_value(None, b"1");
    builder.push_value(Some(b"bad-key"), b"x");
    builder.push_value(None, b"2");
    let out = chain.process(&builder.finish()).unwrap();
    assert_eq!(values(&out.batch), owned(&[(20, "1")]));
    let failure = out.failure.expect("the chain reports the failure");
    assert_eq!((failure.offset, failure.module.as_str()), (21, "sum-aggregate"));
    assert!(failure.kind.contains("ParseIntError"), "{failure:?}");
    assert!(failure.message.contains("invalid digit"), "{failure:?}");
    assert_eq!(failure.key_preview().as_deref(), Some("bad-key"));
    assert!(failure.to_string().contains("offset 21"), "{failure}");
}

#[test]
fn fail_policy_in_a_chain_passes_earlier_outputs_through_later_modules() {
    let engine = SmartEngine::new();
    let mut chain = chain_of(&engine, &[module("sum-aggregate"), module("uppercase-map")], ErrorPolicy::Fail);
    let out = chain.process(&batch(0, &["5", "6", "oops", "7"])).unwrap();
    assert_eq!(values(&out.batch), owned(&[(0, "5"), (1, "11")]));
    assert_eq!(out.failure.unwrap().offset, 2);
}

#[test]
fn skip_policy_drops_and_counts_failed_records() {
    let engine = SmartEngine::new();
    let mut chain = chain_of(&engine, &[module("sum-aggregate")], ErrorPolicy::Skip);
    let out = chain.process(&batch(0, &["1", "x", "2", "y"])).unwrap();
    assert_eq!(values(&out.batch), owned(&[(0, "1"), (2, "3")]));
    assert_eq!(out.skipped, 2);
    assert!(out.failure.is_none());
    assert_eq!(chain.metrics()[0].1.errors, 2);
}

#[test]
fn dead_letter_policy_returns_failed_records_with_the_output() {
    let engine = SmartEngine::new();
    let mut chain = chain_of(&engine, &[module("even-filter-map")], ErrorPolicy::DeadLetter);
    let out = chain.process(&batch(5, &["2", "two", "4"])).unwrap();
    assert_eq!(values(&out.batch), owned(&[(5, "1"), (7, "2")]));
    let received = out.dead_letters;
    assert_eq!(received.len(), 1);
    assert_eq!((received[0].offset, received[0].value.as_slice()), (6, &b"two"[..]));
    assert!(received[0].message.contains("invalid digit"), "{:?}", received[0]);
}

#[test]
fn a_panic_reaches_the_host_with_its_message_and_record() {
    let engine = SmartEngine::new();
    let mut chain = single(&engine, "hostile-panic");
    let out = chain.process(&batch(30, &["a", "b", "please panic", "c"])).unwrap();
    assert_eq!(values(&out.batch), owned(&[(30, "a"), (31, "b")]));
    let failure = out.failure.unwrap();
    assert_eq!((failure.offset, failure.kind.as_str()), (32, "panic"));
    assert!(failure.message.contains("refusing record \"please panic\""), "{}", failure.message);
    assert!(failure.message.contains("src/lib.rs"), "the panic location is kept: {}", failure.message);
    // The module is usable again afterwards.
    let out = chain.process(&batch(34, &["d"])).unwrap();
    assert_eq!(values(&out.batch), owned(&[(34, "d")]));
}

#[test]
fn skip_policy_recovers_from_panics_and_keeps_going() {
    let engine = SmartEngine::new();
    let mut chain = chain_of(&engine, &[module("hostile-panic")], ErrorPolicy::Skip);
    let out = chain.process(&batch(0, &["a", "panic 1", "b", "panic 2", "c"])).unwrap();
    assert_eq!(values(&out.batch), owned(&[(0, "a"), (2, "b"), (4, "c")]));
    assert_eq!(out.skipped, 2);
    let metrics = &chain.metrics()[0].1;
    assert_eq!((metrics.errors, metrics.instantiations, metrics.records_in), (2, 3, 5));
}

#[test]
fn aggregate_keeps_its_accumulator_when_a_chain_recovers_from_a_panic() {
    let engine = SmartEngine::new();
    let mut chain = chain_of(&engine, &[module("hostile-panic"), module("sum-aggregate")], ErrorPolicy::Skip);
    assert_eq!(values(&chain.process(&batch(0, &["1", "2"])).unwrap().batch), owned(&[(0, "1"), (1, "3")]));
    let out = chain.process(&batch(2, &["4", "panic", "5"])).unwrap();
    assert_eq!(values(&out.batch), owned(&[(2, "7"), (4, "12")]));
}

#[test]
fn compiled_modules_are_cached_in_memory() {
    let engine = SmartEngine::new();
    let bytes = wasm("my-filter");
    let first = engine.load("a", &bytes).unwrap();
    let second = engine.load("b", &bytes).unwrap();
    assert_eq!(engine.compilations(), 1);
    assert_eq!(engine.cached_modules(), 1);
    assert_eq!((first.name(), second.name()), ("a", "b"));
    assert_eq!(first.hash_hex(), second.hash_hex());
}

#[test]
fn compiled_modules_are_cached_on_disk_across_engines() {
    let dir = std::env::temp_dir().join(format!("fluvio-engine-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let bytes = wasm("uppercase-map");
    let first = SmartEngine::with_config(Limits::default(), Some(dir.clone()));
    first.load("m", &bytes).unwrap();
    assert_eq!(first.compilations(), 1);
    // The compile's thread writes the cache entry after the load returned.
    first.wait_for_compile_threads();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

    let second = SmartEngine::with_config(Limits::default(), Some(dir.clone()));
    let mut chain =
        ChainBuilder::new(&second).invocation(SmartModuleInvocation::adhoc("m", bytes.clone())).build().unwrap();
    assert_eq!(second.compilations(), 0, "the second engine loads the serialized module");
    assert_eq!(values(&chain.process(&batch(0, &["x"])).unwrap().batch), owned(&[(0, "X")]));

    // A corrupt cache entry is recompiled, not trusted.
    for entry in std::fs::read_dir(&dir).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    let third = SmartEngine::with_config(Limits::default(), Some(dir.clone()));
    third.load("m", &bytes).unwrap();
    assert_eq!(third.compilations(), 1);
    third.wait_for_compile_threads();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_module_caches_hold_at_most_their_byte_budget_least_recently_used_first() {
    let dir = std::env::temp_dir().join(format!("fluvio-engine-cache-budget-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let names = ["my-filter", "uppercase-map", "sum-aggregate"];
    // Measure each module's compiled size, then allow a little more than
    // the two largest together: three never fit.
    let sizes: Vec<u64> = names
        .iter()
        .map(|name| {
            let engine = SmartEngine::new();
            engine.load(name, &wasm(name)).unwrap();
            // The compiled code is counted once the compile's thread has
            // serialized it.
            engine.wait_for_compile_threads();
            let bytes = engine.cached_bytes();
            assert!(bytes > 2 * wasm(name).len() as u64, "{name}'s compiled code is not counted: {bytes} bytes");
            bytes
        })
        .collect();
    let mut sorted = sizes.clone();
    sorted.sort();
    let budget = sorted[1] + sorted[2];
    assert!(sizes.iter().sum::<u64>() > budget);
    let engine = SmartEngine::with_config(Limits { cache_bytes: budget, ..Limits::default() }, Some(dir.clone()));
    for name in names {
        engine.load(name, &wasm(name)).unwrap();
        engine.wait_for_compile_threads();
    }
    assert!(engine.cached_bytes() <= budget, "{} cached bytes against a budget of {budget}", engine.cached_bytes());
    assert!(engine.cached_modules() < names.len());
    let on_disk: u64 = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert!(on_disk <= budget, "{on_disk} bytes on disk against a budget of {budget}");
    // The last one loaded stays; the first was evicted from memory, so it
    // comes back from disk or the compiler, and still runs.
    let before = engine.compilations();
    engine.load("sum-aggregate", &wasm("sum-aggregate")).unwrap();
    assert_eq!(engine.compilations(), before, "the module just loaded is cached");
    let mut chain =
        ChainBuilder::new(&engine).invocation(SmartModuleInvocation::adhoc("f", wasm("my-filter"))).build().unwrap();
    assert_eq!(values(&chain.process(&batch(0, &["alpha", "zzz"])).unwrap().batch), owned(&[(0, "alpha")]));
    // A module compiled again is written to the directory after its load.
    engine.wait_for_compile_threads();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `wasm` with a custom section appended that makes it `len` bytes long;
/// the section's last four bytes are free for the caller to set.
fn padded_to(wasm: &[u8], len: usize) -> Vec<u8> {
    // Section id 0, a five-byte LEB128 size, a one-byte name length, "pad".
    let overhead = 1 + 5 + 1 + 3;
    let payload = len - wasm.len() - overhead;
    let size = (1 + 3 + payload) as u32;
    let mut out = wasm.to_vec();
    out.push(0);
    for i in 0..5 {
        let bits = ((size >> (7 * i)) & 0x7f) as u8;
        out.push(if i < 4 { bits | 0x80 } else { bits });
    }
    out.push(3);
    out.extend_from_slice(b"pad");
    out.resize(len, 0);
    out
}

/// Sets the last four bytes of `bytes` so that its CRC-32C is `target`.
/// For messages of one length the CRC is affine in their bits, so this
/// solves a 32 by 32 linear system over GF(2).
fn force_crc32c(bytes: &mut [u8], target: u32) {
    let end = bytes.len() - 4;
    let crc_with = |bytes: &mut [u8], tail: u32| {
        bytes[end..].copy_from_slice(&tail.to_le_bytes());
        crc32c::crc32c(bytes)
    };
    let base = crc_with(bytes, 0);
    // Row i: the effect of tail bit i on the CRC, beside the bit itself.
    let mut rows: Vec<(u32, u32)> = (0..32).map(|i| (crc_with(bytes, 1 << i) ^ base, 1u32 << i)).collect();
    let mut want = target ^ base;
    let mut tail = 0u32;
    for bit in 0..32 {
        let pivot =
            (bit..32).find(|&r| rows[r].0 & (1 << bit) != 0).expect("the CRC of the last four bytes is invertible");
        rows.swap(bit, pivot);
        let (effect, source) = rows[bit];
        for (r, row) in rows.iter_mut().enumerate() {
            if r != bit && row.0 & (1 << bit) != 0 {
                row.0 ^= effect;
                row.1 ^= source;
            }
        }
        if want & (1 << bit) != 0 {
            want ^= effect;
            tail ^= source;
        }
    }
    assert_eq!(crc_with(bytes, tail), target);
}

#[test]
fn a_module_with_the_length_and_crc_of_a_cached_one_is_compiled_not_mistaken_for_it() {
    // The cache finds modules by length and CRC-32C before hashing; a CRC
    // is easy to forge, so a hostile client could send bytes that match a
    // cached module's. The bytes themselves must decide.
    let (filter, map) = (wasm("my-filter"), wasm("uppercase-map"));
    let len = filter.len().max(map.len()) + 64;
    let filter = padded_to(&filter, len);
    let mut map = padded_to(&map, len);
    force_crc32c(&mut map, crc32c::crc32c(&filter));
    assert_ne!(filter, map);
    let engine = SmartEngine::new();
    assert_eq!(engine.load("f", &filter).unwrap().kind(), ModuleKind::Filter);
    assert_eq!(engine.load("m", &map).unwrap().kind(), ModuleKind::Map);
    assert_eq!(engine.compilations(), 2);
    // Both stay findable, each by its own bytes.
    assert_eq!(engine.load("f", &filter).unwrap().kind(), ModuleKind::Filter);
    assert_eq!(engine.load("m", &map).unwrap().kind(), ModuleKind::Map);
    assert_eq!(engine.compilations(), 2);
}

#[test]
fn compilations_beyond_the_cap_wait_their_turn() {
    let engine = SmartEngine::with_config(Limits { concurrent_compilations: 1, ..Limits::default() }, None);
    let names = ["my-filter", "uppercase-map", "sum-aggregate", "even-filter-map"];
    std::thread::scope(|scope| {
        for name in names {
            let engine = engine.clone();
            scope.spawn(move || engine.load(name, &wasm(name)).unwrap());
        }
    });
    assert_eq!(engine.compilations(), 4);
    assert_eq!(engine.peak_concurrent_compilations(), 1);
}

#[test]
fn kind_mismatch_is_a_clear_error() {
    let engine = SmartEngine::new();
    let module = engine.load("my-filter", &wasm("my-filter")).unwrap();
    let error = module.expect_kind(ModuleKind::Map).unwrap_err();
    assert_eq!(
        error.to_string(),
        "SmartModule `my-filter` is a filter, but it was given as a map; use --filter or --smartmodule instead"
    );
}

#[test]
fn empty_batches_pass_through() {
    let engine = SmartEngine::new();
    let mut chain = single(&engine, "my-filter");
    let out = chain.process(&batch(9, &[])).unwrap();
    assert_eq!(out.batch.record_count(), 0);
    assert_eq!(out.batch.base_offset(), 9);
}

#[test]
fn large_batches_grow_the_guest_buffer() {
    let engine = SmartEngine::new();
    let mut chain = single(&engine, "uppercase-map");
    let big = "a".repeat(1 << 20);
    let out = chain.process(&batch(0, &["small"])).unwrap();
    assert_eq!(values(&out.batch), owned(&[(0, "SMALL")]));
    let out = chain.process(&batch(1, &[&big, &big])).unwrap();
    let records: Vec<_> = out.batch.records().collect();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.value.len() == 1 << 20 && r.value.iter().all(|b| *b == b'A')));
}

#[test]
fn typed_params_fill_options_with_defaults_and_a_bad_one_fails_the_batch() {
    let engine = SmartEngine::new();
    let run = |invocation: fluvio_protocol::SmartModuleInvocation| {
        let mut chain = ChainBuilder::new(&engine).invocation(invocation).build()?;
        chain.process(&batch(0, &["apple", "banana", "kiwi", "plan"]))
    };
    let defaults = run(module("typed-params-filter")).unwrap();
    assert_eq!(values(&defaults.batch), [(0, "apple".into()), (1, "banana".into()), (3, "plan".into())]);
    let short = run(module("typed-params-filter").param("max_len", "5")).unwrap();
    assert_eq!(values(&short.batch), [(0, "apple".into()), (3, "plan".into())]);
    let keyed = run(module("typed-params-filter").param("key", "i")).unwrap();
    assert_eq!(values(&keyed.batch), [(2, "kiwi".into())]);
    let error = run(module("typed-params-filter").param("max_len", "many")).unwrap_err();
    assert!(
        matches!(&error, EngineError::Panic { message, .. } if message.contains("\"max_len\"") && message.contains("usize")),
        "{error:?}"
    );
}
