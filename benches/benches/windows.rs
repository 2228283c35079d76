//! A windowed aggregate against a native loop doing the same with a
//! `HashMap`, in the same run.
//!
//! 5,000,000 records of 100,000 keys (the record's key) whose event times
//! (the record's timestamp) rise through 10 minutes, each moved back by up
//! to 10 s; values are integers. Both sides sum the values per key per
//! 1-minute tumbling window with 30 s of lateness and emit each window when
//! the watermark passes its end (the rest at the input's end):
//!
//! - `native-hashmap`: a plain Rust loop over the same batches, a
//!   `HashMap<(key, window start), sum>` and the windows ordered by end:
//!   the limit;
//! - `engine`: the `sum-aggregate` module, unchanged, windowed by
//!   configuration.
//!
//! Printed beside: the bytes of saved state per open (key, window), and
//! what saving the windows costs at a batch boundary (serializing, then
//! writing and syncing a file).
//!
//! Run: `cargo bench -p fluvio-benches --bench windows`

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fluvio_protocol::window::parse_window;
use fluvio_protocol::{Batch, BatchBuilder, SmartModuleInvocation};
use fluvio_smartengine::{ChainBuilder, SmartEngine, SmartModuleChain};

const RECORDS: u64 = 5_000_000;
const KEYS: u64 = 100_000;
const SPAN_MS: i64 = 600_000;
const JITTER_MS: u64 = 10_000;
const BATCH: usize = 4_096;
const WINDOW_MS: i64 = 60_000;
const LATENESS_MS: i64 = 30_000;

fn batches() -> Vec<Batch> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut random = move |below: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    };
    let mut out = Vec::new();
    let mut builder: Option<BatchBuilder> = None;
    for i in 0..RECORDS {
        let time = SPAN_MS * i as i64 / RECORDS as i64 - random(JITTER_MS + 1) as i64;
        let key = format!("sensor-{:06}", random(KEYS));
        let value = random(1_000).to_string();
        let batch = builder.get_or_insert_with(|| BatchBuilder::new(i as i64, time));
        batch.push(batch.len(), time, Some(key.as_bytes()), value.as_bytes(), &[]);
        if batch.len() as usize == BATCH {
            out.push(builder.take().unwrap().finish());
        }
    }
    out.extend(builder.map(BatchBuilder::finish));
    out
}

/// The limit: the same windows, summed in a `HashMap`. Returns the number
/// of windows emitted and their total.
fn native_windows(input: &[Batch]) -> (u64, i64) {
    let mut sums: HashMap<(Vec<u8>, i64), i64> = HashMap::new();
    let mut by_end: BTreeMap<i64, Vec<Vec<u8>>> = BTreeMap::new();
    let mut max_time = i64::MIN;
    let (mut emitted, mut total) = (0u64, 0i64);
    for batch in input {
        for record in batch.records() {
            let start = record.timestamp.div_euclid(WINDOW_MS) * WINDOW_MS;
            let watermark = max_time.saturating_sub(LATENESS_MS);
            if start + WINDOW_MS <= watermark {
                continue;
            }
            let value: i64 = std::str::from_utf8(record.value).unwrap().parse().unwrap();
            let key = record.key.unwrap().to_vec();
            match sums.get_mut(&(key.clone(), start)) {
                Some(sum) => *sum += value,
                None => {
                    by_end.entry(start + WINDOW_MS).or_default().push(key.clone());
                    sums.insert((key, start), value);
                }
            }
            if record.timestamp > max_time {
                max_time = record.timestamp;
                let watermark = max_time - LATENESS_MS;
                while let Some(entry) = by_end.first_entry().filter(|entry| *entry.key() <= watermark) {
                    let (end, keys) = entry.remove_entry();
                    for key in keys {
                        total += sums.remove(&(key, end - WINDOW_MS)).unwrap();
                        emitted += 1;
                    }
                }
            }
        }
    }
    emitted += sums.len() as u64;
    total += sums.values().sum::<i64>();
    (emitted, total)
}

fn chain(engine: &SmartEngine) -> SmartModuleChain {
    let window = parse_window("tumbling=1m,lateness=30s").unwrap();
    let invocation = SmartModuleInvocation::adhoc("sum-aggregate", dev_support::wasm("sum-aggregate")).window(window);
    ChainBuilder::new(engine).invocation(invocation).build().unwrap()
}

fn engine_windows(engine: &SmartEngine, input: &[Batch]) -> (u64, i64) {
    let mut chain = chain(engine);
    let (mut emitted, mut total) = (0u64, 0i64);
    let mut count = |batch: &Batch| {
        for record in batch.records() {
            emitted += 1;
            total += std::str::from_utf8(record.value).unwrap().parse::<i64>().unwrap();
        }
    };
    for batch in input {
        count(&chain.process(batch).unwrap().batch);
    }
    count(&chain.finish(RECORDS as i64).unwrap().batch);
    (emitted, total)
}

fn windows(c: &mut Criterion) {
    let input = batches();
    let engine = SmartEngine::new();
    // Both sides must agree before either is timed.
    let native = native_windows(&input);
    assert_eq!(engine_windows(&engine, &input), native, "the engine and the native loop disagree");
    println!("{} windows emitted, summing to {}", native.0, native.1);

    // The state at a batch boundary in the middle of the stream, and what
    // saving it costs.
    let mut half = chain(&engine);
    for batch in &input[..input.len() / 2] {
        half.process(batch).unwrap();
    }
    let started = Instant::now();
    let states = half.window_states();
    let serialized = started.elapsed();
    let bytes: usize = states.iter().map(|(_, state)| state.len()).sum();
    let path = std::env::temp_dir().join(format!("fluvio-bench-windows-{}", std::process::id()));
    let started = Instant::now();
    fluvio_fs::write_atomic(&path, &states[0].1).unwrap();
    let written = started.elapsed();
    let _ = std::fs::remove_file(&path);
    let open = half.open_windows();
    println!(
        "state at the middle of the stream: {open} open (key, window) pairs in {bytes} bytes ({:.1} bytes each); serialized in {:.1} ms, written and synced in {:.1} ms",
        bytes as f64 / open as f64,
        serialized.as_secs_f64() * 1e3,
        written.as_secs_f64() * 1e3
    );

    let mut group = c.benchmark_group("windowed-sum-5M-100k-keys");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(RECORDS));
    group.bench_function("native-hashmap", |b| b.iter(|| native_windows(&input)));
    group.bench_function("engine", |b| b.iter(|| engine_windows(&engine, &input)));
    group.finish();
}

criterion_group!(benches, windows);
criterion_main!(benches);
