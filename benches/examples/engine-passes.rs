//! Runs the engine benchmark's modules over its million records a given
//! number of times, for counting with cachegrind the instructions a pass
//! takes. On this shared machine timings move by 20% from run to run, and
//! a change of a few percent needs a measure that does not: instruction
//! counts are the same every run. The count of two runs with different
//! numbers of passes, subtracted, is the passes' alone (compiling the
//! module and building the input cancel out):
//!
//! ```sh
//! cargo build --release -p fluvio-benches --example engine-passes
//! cd benches
//! valgrind --tool=cachegrind --cache-sim=no --smc-check=all-non-file \
//!     ../target/release/examples/engine-passes 3 regex
//! ```
//!
//! Arguments: the number of passes after a first, unmeasured one (default
//! 1); a part of a module's name to run only that module (`-` for all);
//! and the column of the engine benchmark to run: `wasm` (the default),
//! `wasm-deadline` (the same under `Metering::Deadline`), `wasm-layout-1`
//! (the same answering in ABI answer layout 1, as before layout 2),
//! `native` (the same function and glue, compiled natively), `batch` (a
//! plain loop from batch to batch) or `bare` (a plain loop over values).
//! It also prints each module's best time per pass (wall-clock: this
//! kernel counts a thread's CPU time in 4 ms ticks).

use fluvio_benches::bare::{self, Bare, BatchLoop};
use fluvio_benches::{STOP_ON_ERROR, engine_batches};
use fluvio_protocol::{Batch, SmartModuleInvocation};
use fluvio_smartengine::{ChainBuilder, Limits, Metering, ModuleKind, SmartEngine, run_native};
use fluvio_smartmodule::__private as glue;

/// A module of the benchmark: its name, its kind, its function run
/// through the glue natively, and its bare loop.
type BenchModule = (&'static str, ModuleKind, fn(i32) -> i64, Bare, BatchLoop);

/// One pass of a column over one batch (or its values): the outputs made.
type Pass = Box<dyn FnMut(&Batch, &[Vec<u8>]) -> usize>;

fn main() {
    let mut args = std::env::args().skip(1);
    let passes: usize = args.next().map_or(1, |passes| passes.parse().expect("the number of passes"));
    let only = args.next().filter(|only| only != "-");
    let column = args.next().unwrap_or_else(|| "wasm".to_owned());
    let input = engine_batches();
    let values = bare::plain_values(&input);
    let engine = SmartEngine::new();
    let deadline_engine = SmartEngine::with_config(Limits { metering: Metering::Deadline, ..Limits::default() }, None);
    let layout_1_engine = SmartEngine::with_config(Limits { answer_layout: 1, ..Limits::default() }, None);
    let modules: [BenchModule; 4] = [
        (
            "bench-filter",
            ModuleKind::Filter,
            |len| glue::run_filter(len, STOP_ON_ERROR, bench_filter::filter),
            bare::bare_filter,
            bare::batch_filter,
        ),
        (
            "uppercase-map",
            ModuleKind::Map,
            |len| glue::run_map(len, STOP_ON_ERROR, uppercase_map::map),
            bare::bare_uppercase,
            bare::batch_uppercase,
        ),
        (
            "regex-scrubbing",
            ModuleKind::Map,
            |len| glue::run_map(len, STOP_ON_ERROR, regex_scrubbing::map),
            bare::bare_regex_scrub,
            bare::batch_regex_scrub,
        ),
        (
            "bench-count",
            ModuleKind::Aggregate,
            |len| glue::run_aggregate(len, STOP_ON_ERROR, bench_count::aggregate),
            bare::bare_count,
            bare::batch_count,
        ),
    ];
    for (module, kind, native, bare, batch_loop) in modules {
        if only.as_ref().is_some_and(|only| !module.contains(only.as_str())) {
            continue;
        }
        let mut pass: Pass = match column.as_str() {
            "wasm" | "wasm-deadline" | "wasm-layout-1" => {
                let engine = match column.as_str() {
                    "wasm" => &engine,
                    "wasm-deadline" => &deadline_engine,
                    _ => &layout_1_engine,
                };
                let invocation = SmartModuleInvocation::adhoc(module, dev_support::wasm(module)).expect_kind(kind);
                let mut chain = ChainBuilder::new(engine).invocation(invocation).build().expect("the module loads");
                Box::new(move |batch, _| chain.process(batch).expect("the module runs").batch.record_count() as usize)
            }
            "native" => Box::new(move |batch, _| {
                run_native(kind, batch, native).expect("the function runs").record_count() as usize
            }),
            "bare" => Box::new(move |_, values| bare(values)),
            "batch" => Box::new(move |batch, _| batch_loop(batch).record_count() as usize),
            other => panic!("no column {other}: wasm, wasm-deadline, wasm-layout-1, native, batch or bare"),
        };
        let mut best = u64::MAX;
        // The first pass compiles and warms up, and is not counted.
        for counted in std::iter::once(false).chain(std::iter::repeat_n(true, passes)) {
            let start = std::time::Instant::now();
            for (batch, values) in input.iter().zip(&values) {
                std::hint::black_box(pass(batch, values));
            }
            if counted {
                best = best.min(start.elapsed().as_nanos() as u64);
            }
        }
        println!("{module} ({column}): {passes} passes, the best took {:.1} ms", best as f64 / 1e6);
    }
}
