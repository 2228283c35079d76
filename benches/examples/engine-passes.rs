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
//! 1), and a part of a module's name to run only that module. It also
//! prints each module's best CPU time per pass.

use fluvio_benches::engine_batches;
use fluvio_protocol::SmartModuleInvocation;
use fluvio_smartengine::{ChainBuilder, ModuleKind, SmartEngine};

/// CPU time this thread has run, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("read /proc/thread-self/schedstat");
    stat.split_whitespace().next().and_then(|ns| ns.parse().ok()).expect("schedstat starts with the run time")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let passes: usize = args.next().map_or(1, |passes| passes.parse().expect("the number of passes"));
    let only = args.next();
    let input = engine_batches();
    let engine = SmartEngine::new();
    for (module, kind) in [
        ("bench-filter", ModuleKind::Filter),
        ("uppercase-map", ModuleKind::Map),
        ("regex-scrubbing", ModuleKind::Map),
        ("bench-count", ModuleKind::Aggregate),
    ] {
        if only.as_ref().is_some_and(|only| !module.contains(only.as_str())) {
            continue;
        }
        let invocation = SmartModuleInvocation::adhoc(module, dev_support::wasm(module)).expect_kind(kind);
        let mut chain = ChainBuilder::new(&engine).invocation(invocation).build().expect("the module loads");
        for batch in &input {
            chain.process(batch).expect("the module runs");
        }
        let mut best = u64::MAX;
        for _ in 0..passes {
            let start = thread_cpu_ns();
            for batch in &input {
                std::hint::black_box(chain.process(batch).expect("the module runs"));
            }
            best = best.min(thread_cpu_ns() - start);
        }
        println!("{module}: {passes} passes, the best took {:.1} ms of CPU", best as f64 / 1e6);
    }
}
