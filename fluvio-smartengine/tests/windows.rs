//! Event-time windows around real aggregate modules: what is emitted and
//! when, against a reference computed here, however the stream is split
//! into batches and wherever the state is saved and restored; and what a
//! window does with records it cannot place.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::module;
use fluvio_protocol::window::{Window, WindowEmit, WindowShape, parse_window};
use fluvio_protocol::{Batch, BatchBuilder};
use fluvio_smartengine::{
    ChainBuilder, ChainOutput, EngineError, ErrorPolicy, Limits, SmartEngine, SmartModuleChain, SmartModuleInvocation,
};

/// An emitted window: key, start, end, value.
type Emitted = (String, i64, i64, String);

fn emitted(output: &ChainOutput) -> Vec<Emitted> {
    output
        .batch
        .records()
        .map(|record| {
            let header = |name: &str| -> i64 {
                let (_, value) = record.headers.iter().find(|(n, _)| *n == name.as_bytes()).expect("window header");
                std::str::from_utf8(value).unwrap().parse().unwrap()
            };
            let start = header("window-start");
            assert_eq!(record.timestamp, start, "an emitted window is stamped with its start");
            (
                String::from_utf8_lossy(record.key.unwrap_or_default()).into_owned(),
                start,
                header("window-end"),
                String::from_utf8_lossy(record.value).into_owned(),
            )
        })
        .collect()
}

fn windowed(name: &str, window: Window) -> SmartModuleInvocation {
    module(name).window(window)
}

fn chain(engine: &SmartEngine, invocation: SmartModuleInvocation, policy: ErrorPolicy) -> SmartModuleChain {
    ChainBuilder::new(engine).invocation(invocation).on_error(policy).build().unwrap()
}

/// Keyed records `(key, time, value)` from `base_offset`, timestamped with
/// their time.
fn keyed(base_offset: i64, records: &[(&str, i64, i64)]) -> Batch {
    let mut builder = BatchBuilder::new(base_offset, records.first().map_or(0, |r| r.1));
    for (i, (key, time, value)) in records.iter().enumerate() {
        builder.push(i as u32, *time, Some(key.as_bytes()), value.to_string().as_bytes(), &[]);
    }
    builder.finish()
}

/// Keyless records of `values` from offset 0, all at time 0 (their event
/// times are in their values).
fn unkeyed(values: &[&str]) -> Batch {
    let mut builder = BatchBuilder::new(0, 0);
    for (i, value) in values.iter().enumerate() {
        builder.push(i as u32, 0, None, value.as_bytes(), &[]);
    }
    builder.finish()
}

#[test]
fn a_tumbling_window_emits_each_key_once_the_watermark_passes_its_end() {
    let engine = SmartEngine::new();
    let window = parse_window("tumbling=1m,lateness=10s").unwrap();
    let mut chain = chain(&engine, windowed("sum-aggregate", window), ErrorPolicy::Fail);
    // Minute 0: a=1+2, b=5. The record at 65 s moves the watermark to 55 s:
    // nothing closes. The one at 75 s moves it to 65 s: minute 0 closes.
    let out = chain
        .process(&keyed(
            10,
            &[("a", 1_000, 1), ("b", 30_000, 5), ("a", 59_999, 2), ("a", 65_000, 10), ("b", 50_000, 7)],
        ))
        .unwrap();
    assert!(out.batch.is_empty(), "{:?}", emitted(&out));
    let out = chain.process(&keyed(15, &[("b", 75_000, 1)])).unwrap();
    assert_eq!(
        emitted(&out),
        [("a".into(), 0, 60_000, "3".into()), ("b".into(), 0, 60_000, "12".into())],
        "emitted at the record that closed them, key by key"
    );
    assert!(out.batch.records().all(|record| record.offset == 15));
    // The end of the input closes what is open.
    let out = chain.finish(16).unwrap();
    assert_eq!(emitted(&out), [("a".into(), 60_000, 120_000, "10".into()), ("b".into(), 60_000, 120_000, "1".into())]);
    let metrics = chain.metrics();
    assert_eq!((metrics[0].1.records_in, metrics[0].1.records_out, metrics[0].1.late), (6, 4, 0));
}

#[test]
fn late_records_are_counted_and_dropped_or_dead_lettered() {
    let engine = SmartEngine::new();
    let window = parse_window("tumbling=10s").unwrap();
    for policy in ErrorPolicy::ALL {
        let mut chain = chain(&engine, windowed("sum-aggregate", window.clone()), policy);
        let out =
            chain.process(&keyed(0, &[("a", 1_000, 1), ("a", 25_000, 2), ("a", 9_000, 4), ("a", 21_000, 8)])).unwrap();
        // 9 s is late (its window closed at 25 s); 21 s is not.
        assert_eq!(emitted(&out), [("a".into(), 0, 10_000, "1".into())]);
        assert_eq!(chain.metrics()[0].1.late, 1, "{policy}");
        assert!(out.failure.is_none(), "{policy}: a late record is not a failure");
        match policy {
            ErrorPolicy::DeadLetter => {
                assert_eq!(out.dead_letters.len(), 1);
                let late = &out.dead_letters[0];
                assert_eq!((late.offset, late.kind.as_str(), late.value.as_slice()), (2, "late", b"4".as_slice()));
                assert!(late.message.contains("behind the watermark 25000"), "{}", late.message);
            }
            _ => assert!(out.dead_letters.is_empty()),
        }
        let out = chain.finish(4).unwrap();
        assert_eq!(emitted(&out), [("a".into(), 20_000, 30_000, "10".into())]);
    }
}

#[test]
fn hopping_windows_hold_each_record_in_size_over_advance_windows() {
    let engine = SmartEngine::new();
    let window = parse_window("hopping=30s,advance=10s").unwrap();
    let mut chain = chain(&engine, windowed("sum-aggregate", window), ErrorPolicy::Fail);
    let out = chain.process(&keyed(0, &[("k", 5_000, 1), ("k", 12_000, 2), ("k", 40_000, 4)])).unwrap();
    // 40 s closes every window ending at or before it.
    assert_eq!(
        emitted(&out),
        [
            ("k".into(), -20_000, 10_000, "1".into()),
            ("k".into(), -10_000, 20_000, "3".into()),
            ("k".into(), 0, 30_000, "3".into()),
            ("k".into(), 10_000, 40_000, "2".into()),
        ]
    );
    let out = chain.finish(3).unwrap();
    assert_eq!(
        emitted(&out),
        [
            ("k".into(), 20_000, 50_000, "4".into()),
            ("k".into(), 30_000, 60_000, "4".into()),
            ("k".into(), 40_000, 70_000, "4".into()),
        ]
    );
}

#[test]
fn sessions_grow_and_merge_and_close_after_the_gap() {
    let engine = SmartEngine::new();
    let window = parse_window("session=10s,lateness=10s").unwrap();
    let mut chain = chain(&engine, windowed("sum-aggregate", window), ErrorPolicy::Fail);
    // Two sessions of `a` (0 s and 15 s), joined by a record at 8 s.
    let out = chain.process(&keyed(0, &[("a", 0, 1), ("a", 15_000, 2), ("b", 16_000, 100), ("a", 8_000, 4)])).unwrap();
    assert!(out.batch.is_empty());
    let out = chain.process(&keyed(4, &[("a", 40_000, 8)])).unwrap();
    assert_eq!(
        emitted(&out),
        [("a".into(), 0, 25_000, "7".into()), ("b".into(), 16_000, 26_000, "100".into())],
        "closed once the watermark (30 s) passed last + gap"
    );
    let out = chain.finish(5).unwrap();
    assert_eq!(emitted(&out), [("a".into(), 40_000, 50_000, "8".into())]);
}

#[test]
fn every_record_emits_the_running_accumulator_and_the_final_one() {
    let engine = SmartEngine::new();
    let mut window = parse_window("tumbling=10s").unwrap();
    window.emit = WindowEmit::EveryRecord;
    let mut chain = chain(&engine, windowed("sum-aggregate", window), ErrorPolicy::Fail);
    let out =
        chain.process(&keyed(0, &[("a", 1_000, 1), ("b", 2_000, 10), ("a", 3_000, 2), ("a", 12_000, 4)])).unwrap();
    let offsets: Vec<i64> = out.batch.records().map(|r| r.offset).collect();
    assert_eq!(offsets, [0, 1, 2, 3, 3, 3]);
    assert_eq!(
        emitted(&out),
        [
            ("a".into(), 0, 10_000, "1".into()),
            ("b".into(), 0, 10_000, "10".into()),
            ("a".into(), 0, 10_000, "3".into()),
            ("a".into(), 10_000, 20_000, "4".into()),
            ("a".into(), 0, 10_000, "3".into()),
            ("b".into(), 0, 10_000, "10".into()),
        ]
    );
}

#[test]
fn pointers_into_json_key_and_time_the_window() {
    let engine = SmartEngine::new();
    let window = parse_window("tumbling=1m,key=/customer/id,time=/at").unwrap();
    let mut chain = chain(&engine, windowed("field-sum-aggregate", window), ErrorPolicy::Fail);
    chain
        .process(&unkeyed(&[
            r#"{"customer":{"id":"c1"},"at":"2024-05-01T12:00:10Z","v":3}"#,
            r#"{"customer":{"id":7},"at":1714564815000,"v":4}"#,
            r#"{"customer":{"id":"c1"},"at":"2024-05-01T14:00:50+02:00","v":5}"#,
        ]))
        .unwrap();
    let out = chain.finish(3).unwrap();
    let minute = 1_714_564_800_000;
    assert_eq!(
        emitted(&out),
        [("7".into(), minute, minute + 60_000, "4".into()), ("c1".into(), minute, minute + 60_000, "8".into())]
    );
}

#[test]
fn records_a_window_cannot_place_are_errors_under_the_policy() {
    let engine = SmartEngine::new();
    let window = parse_window("tumbling=1m,key=/k,time=/ts").unwrap();
    let values = [
        r#"{"k":"a","ts":1000,"v":1}"#,
        r#"{"ts":2000,"v":2}"#,
        r#"{"k":"a","ts":"noon","v":4}"#,
        r#"{"k":"a","ts":3000,"v":8}"#,
    ];
    let batch = unkeyed(&values);

    let mut failing = chain(&engine, windowed("field-sum-aggregate", window.clone()), ErrorPolicy::Fail);
    let out = failing.process(&batch).unwrap();
    let failure = out.failure.expect("the stream stops at the record without a key");
    assert_eq!((failure.offset, failure.kind.as_str()), (1, "window-key"));
    assert!(failure.message.contains("key pointer /k names nothing"), "{}", failure.message);
    // Only the record before it counts.
    assert_eq!(emitted(&failing.finish(1).unwrap()), [("a".into(), 0, 60_000, "1".into())]);

    let mut dead = chain(&engine, windowed("field-sum-aggregate", window.clone()), ErrorPolicy::DeadLetter);
    let out = dead.process(&batch).unwrap();
    let kinds: Vec<(i64, &str)> = out.dead_letters.iter().map(|d| (d.offset, d.kind.as_str())).collect();
    assert_eq!(kinds, [(1, "window-key"), (2, "window-time")]);
    assert!(out.dead_letters[1].message.contains("time at /ts is \"noon\""), "{}", out.dead_letters[1].message);
    assert_eq!(emitted(&dead.finish(4).unwrap()), [("a".into(), 0, 60_000, "9".into())]);

    let mut skipping = chain(&engine, windowed("field-sum-aggregate", window), ErrorPolicy::Skip);
    assert_eq!(skipping.process(&batch).unwrap().skipped, 2);
}

#[test]
fn a_module_error_under_fail_ends_the_window_stream_at_that_record() {
    let engine = SmartEngine::new();
    let window = parse_window("tumbling=10s,key=/k,time=/ts").unwrap();
    let values = [
        r#"{"k":"a","ts":1000,"v":1}"#,
        r#"{"k":"b","ts":2000,"v":2}"#,
        r#"{"k":"a","ts":15000,"v":4}"#,
        r#"{"k":"b","ts":16000}"#,
        r#"{"k":"a","ts":31000,"v":8}"#,
    ];
    let batch = unkeyed(&values);
    let mut failing = chain(&engine, windowed("field-sum-aggregate", window.clone()), ErrorPolicy::Fail);
    let out = failing.process(&batch).unwrap();
    let failure = out.failure.clone().expect("b at 16 s has no v");
    assert_eq!(failure.offset, 3);
    // The window of 0-10 s closed at 15 s, before the failure; the record
    // at 31 s, after it, closed nothing.
    assert_eq!(emitted(&out), [("a".into(), 0, 10_000, "1".into()), ("b".into(), 0, 10_000, "2".into())]);
    assert_eq!(emitted(&failing.finish(3).unwrap()), [("a".into(), 10_000, 20_000, "4".into())]);

    let mut skipping = chain(&engine, windowed("field-sum-aggregate", window), ErrorPolicy::Skip);
    let out = skipping.process(&batch).unwrap();
    assert_eq!(out.skipped, 1);
    assert_eq!(emitted(&out).len(), 3, "{:?}", emitted(&out));
}

#[test]
fn a_window_needs_an_aggregate() {
    let engine = SmartEngine::new();
    let window = parse_window("tumbling=1m").unwrap();
    let error = ChainBuilder::new(&engine).invocation(windowed("my-filter", window)).build().unwrap_err();
    assert!(matches!(error, EngineError::WindowNeedsAggregate { .. }), "{error:?}");
    assert!(error.to_string().contains("only an aggregate can run in a window"), "{error}");
}

#[test]
fn window_state_over_the_memory_cap_names_the_keys_and_changes_nothing() {
    let limits = Limits { memory_bytes: 8 << 20, ..Limits::default() };
    // 100,000 windows of about 140 bytes each.
    let engine = SmartEngine::with_config(limits, None);
    let window = parse_window("tumbling=1h").unwrap();
    let mut chain = chain(&engine, windowed("sum-aggregate", window), ErrorPolicy::Fail);
    let keys: Vec<String> = (0..100_000).map(|i| format!("key-{i}")).collect();
    let small: Vec<(&str, i64, i64)> = keys[..10].iter().map(|k| (k.as_str(), 1_000, 1)).collect();
    chain.process(&keyed(0, &small)).unwrap();
    let before = chain.window_states();
    let many: Vec<(&str, i64, i64)> = keys.iter().map(|k| (k.as_str(), 2_000, 1)).collect();
    let error = chain.process(&keyed(10, &many)).unwrap_err();
    assert!(matches!(error, EngineError::WindowStateTooLarge { keys: 100_000, .. }), "{error:?}");
    assert!(error.to_string().contains("hold 100000 keys"), "{error}");
    assert_eq!(chain.window_states(), before, "a batch that failed leaves the windows as they were");
}

/// A small deterministic generator, for streams the tests can repeat.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// `(key, time, value)` records: times rising through `span` ms, each moved
/// back by up to `jitter` ms.
fn stream(seed: u64, count: usize, keys: u64, span: i64, jitter: u64) -> Vec<(String, i64, i64)> {
    let mut random = Lcg(seed);
    (0..count)
        .map(|i| {
            let time = span * i as i64 / count as i64 - random.next(jitter + 1) as i64;
            (format!("k{}", random.next(keys)), time, random.next(100) as i64)
        })
        .collect()
}

/// What the windows hold at the end, computed the plain way.
fn reference(records: &[(String, i64, i64)], shape: WindowShape) -> Vec<Emitted> {
    let ms = |d: Duration| d.as_millis() as i64;
    let mut sums: BTreeMap<(String, i64, i64), i64> = BTreeMap::new();
    match shape {
        WindowShape::Tumbling { size } | WindowShape::Hopping { size, .. } => {
            let advance = match shape {
                WindowShape::Hopping { advance, .. } => ms(advance),
                _ => ms(size),
            };
            for (key, time, value) in records {
                let mut start = time.div_euclid(advance) * advance;
                while start > time - ms(size) {
                    *sums.entry((key.clone(), start, start + ms(size))).or_default() += value;
                    start -= advance;
                }
            }
        }
        WindowShape::Session { gap } => {
            let mut by_key: HashMap<&str, Vec<(i64, i64)>> = HashMap::new();
            for (key, time, value) in records {
                by_key.entry(key).or_default().push((*time, *value));
            }
            for (key, mut times) in by_key {
                times.sort();
                let (mut start, mut last, mut sum) = (times[0].0, times[0].0, 0);
                for (time, value) in times {
                    if time - last >= ms(gap) {
                        sums.insert((key.to_string(), start, last + ms(gap)), sum);
                        (start, sum) = (time, 0);
                    }
                    last = time;
                    sum += value;
                }
                sums.insert((key.to_string(), start, last + ms(gap)), sum);
            }
        }
    }
    let mut all: Vec<Emitted> = sums.into_iter().map(|((k, s, e), v)| (k, s, e, v.to_string())).collect();
    all.sort();
    all
}

/// Runs `records` through a windowed sum in batches of random sizes;
/// with `restart_every`, the chain is built again from its saved state
/// after that many batches. Returns everything emitted, in order.
fn run(
    engine: &SmartEngine,
    window: &Window,
    records: &[(String, i64, i64)],
    seed: u64,
    restart_every: Option<usize>,
) -> Vec<Emitted> {
    let build = |states: Vec<(usize, Vec<u8>)>| {
        ChainBuilder::new(engine)
            .invocation(windowed("sum-aggregate", window.clone()))
            .window_states(states)
            .build()
            .unwrap()
    };
    let mut chain = build(Vec::new());
    let mut random = Lcg(seed);
    let mut out = Vec::new();
    let (mut at, mut batches) = (0, 0);
    while at < records.len() {
        let size = (1 + random.next(300) as usize).min(records.len() - at);
        let slice: Vec<(&str, i64, i64)> =
            records[at..at + size].iter().map(|(k, t, v)| (k.as_str(), *t, *v)).collect();
        out.extend(emitted(&chain.process(&keyed(at as i64, &slice)).unwrap()));
        at += size;
        batches += 1;
        if restart_every.is_some_and(|every| batches % every == 0) {
            chain = build(chain.window_states());
        }
    }
    out.extend(emitted(&chain.finish(records.len() as i64).unwrap()));
    out
}

#[test]
fn windows_equal_the_reference_however_the_stream_is_split_or_restarted() {
    let engine = SmartEngine::new();
    let shapes = ["tumbling=10s,lateness=3s", "hopping=10s,advance=2500ms,lateness=3s", "session=700ms,lateness=3s"];
    for (i, text) in shapes.iter().enumerate() {
        let window = parse_window(text).unwrap();
        // 5,000 records over 100 s, 50 keys, each up to 3 s late.
        let records = stream(i as u64 + 1, 5_000, 50, 100_000, 3_000);
        let mut got = run(&engine, &window, &records, 7, None);
        let again = run(&engine, &window, &records, 8, Some(3));
        assert_eq!(got, again, "{text}: other batches and restarts emit the same records in the same order");
        got.sort();
        assert_eq!(got, reference(&records, window.shape), "{text}");
    }
}

#[test]
fn an_aggregate_built_with_fluvios_crate_is_windowed_by_configuration() {
    let engine = SmartEngine::new();
    let window = parse_window("hopping=10s,advance=5s,lateness=3s").unwrap();
    let records = stream(3, 2_000, 20, 60_000, 3_000);
    let fluvio_built = SmartModuleInvocation::adhoc("sum-aggregate", dev_support::fluvio_built_wasm("sum-aggregate"));
    let mut chains = [
        ChainBuilder::new(&engine).invocation(windowed("sum-aggregate", window.clone())).build().unwrap(),
        ChainBuilder::new(&engine).invocation(fluvio_built.window(window.clone())).build().unwrap(),
    ];
    let mut outputs = [Vec::new(), Vec::new()];
    for (chain, output) in chains.iter_mut().zip(&mut outputs) {
        for (i, part) in records.chunks(128).enumerate() {
            let part: Vec<(&str, i64, i64)> = part.iter().map(|(k, t, v)| (k.as_str(), *t, *v)).collect();
            output.extend(emitted(&chain.process(&keyed(i as i64 * 128, &part)).unwrap()));
        }
        output.extend(emitted(&chain.finish(records.len() as i64).unwrap()));
    }
    assert_eq!(outputs[0], outputs[1]);
    let mut sorted = outputs[1].clone();
    sorted.sort();
    assert_eq!(sorted, reference(&records, window.shape));
}
