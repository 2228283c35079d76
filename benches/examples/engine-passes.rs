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
//! kernel counts a thread's CPU time in 4 ms ticks); with `EACH_PASS` set
//! in the environment, every pass's time too, on stderr.
//!
//! `engine-passes table [processes] [passes]` prints the engine table that
//! docs/benchmarks.md judges the goals by: every module in every column
//! except `wasm-layout-1`, each run in `processes` fresh processes of its
//! own (default 5) of `passes` passes (default 5), the best pass of all:
//! how fast each column can go. The processes run in rounds of every
//! module's every column, so that the machine's drift over minutes falls
//! on all columns alike. A fresh process for each, and the best of
//! several, because the bare loops that allocate a value per record run
//! at one of two speeds, a third to a half apart, by the state of glibc's
//! heap: the slow one every time in a process that has built the other
//! columns' inputs and compiled their modules, now and then in a fresh
//! one.

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

/// The benchmark's modules, in the order of its tables.
fn bench_modules() -> [BenchModule; 4] {
    [
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
    ]
}

/// The columns of the judged table, in its order.
const TABLE_COLUMNS: [&str; 5] = ["bare", "batch", "native", "wasm", "wasm-deadline"];

/// Runs every module in every column in fresh processes of this program
/// and prints the best pass of each as a Markdown table.
fn table(mut args: impl Iterator<Item = String>) {
    let processes: usize = args.next().map_or(5, |n| n.parse().expect("the number of processes"));
    let passes: usize = args.next().map_or(5, |n| n.parse().expect("the number of passes"));
    let program = std::env::current_exe().expect("this program's path");
    println!(
        "| function | {} | wasm / bare | deadline / bare | wasm / batch | deadline / batch |",
        TABLE_COLUMNS.join(" | ")
    );
    println!("|{}", " --- |".repeat(TABLE_COLUMNS.len() + 5));
    // Rounds of every module's every column, each in a process of its
    // own: the machine's speed drifts over minutes, and a column whose
    // processes all ran in one slow stretch would carry the drift into
    // its ratios. In turn, every column meets every stretch.
    let modules = bench_modules().map(|(module, ..)| module);
    let mut bests = modules.map(|_| [f64::INFINITY; TABLE_COLUMNS.len()]);
    for _ in 0..processes {
        for (module, module_bests) in modules.iter().zip(&mut bests) {
            for (column, best) in TABLE_COLUMNS.iter().zip(module_bests.iter_mut()) {
                let output = std::process::Command::new(&program)
                    .args([passes.to_string().as_str(), module, column])
                    .stderr(std::process::Stdio::inherit())
                    .output()
                    .expect("this program runs again");
                assert!(output.status.success(), "{module} ({column}) failed");
                let ms = best_of(&String::from_utf8_lossy(&output.stdout))
                    .unwrap_or_else(|| panic!("{module} ({column}) printed no time"));
                *best = best.min(ms);
            }
        }
    }
    for (module, module_bests) in modules.iter().zip(&bests) {
        let [bare, batch, _, wasm, deadline] = *module_bests;
        let times: Vec<String> = module_bests.iter().map(|ms| format!("{ms:.1} ms")).collect();
        println!(
            "| {module} | {} | {:.2}x | {:.2}x | {:.2}x | {:.2}x |",
            times.join(" | "),
            wasm / bare,
            deadline / bare,
            wasm / batch,
            deadline / batch
        );
    }
}

/// The best time a run of this program printed, in milliseconds.
fn best_of(output: &str) -> Option<f64> {
    let line = output.lines().find(|line| line.contains("the best took"))?;
    line.rsplit("took ").next()?.trim_end_matches(" ms").trim().parse().ok()
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().is_some_and(|first| first == "table") {
        args.next();
        return table(args);
    }
    let passes: usize = args.next().map_or(1, |passes| passes.parse().expect("the number of passes"));
    let only = args.next().filter(|only| only != "-");
    let column = args.next().unwrap_or_else(|| "wasm".to_owned());
    let input = engine_batches();
    let values = bare::plain_values(&input);
    let engine = SmartEngine::new();
    let deadline_engine = SmartEngine::with_config(Limits { metering: Metering::Deadline, ..Limits::default() }, None);
    let layout_1_engine = SmartEngine::with_config(Limits { answer_layout: 1, ..Limits::default() }, None);
    for (module, kind, native, bare, batch_loop) in bench_modules() {
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
                let took = start.elapsed().as_nanos() as u64;
                if std::env::var_os("EACH_PASS").is_some() {
                    eprint!("{:.1} ", took as f64 / 1e6);
                }
                best = best.min(took);
            }
        }
        println!("{module} ({column}): {passes} passes, the best took {:.1} ms", best as f64 / 1e6);
    }
}
