//! A chain worker that is dropped stops the batch it is running: a consumer
//! that goes away leaves no module spinning. In a test binary of its own,
//! because it watches this process's threads.

mod common;

use std::time::{Duration, Instant};

use common::{batch, module};
use fluvio_smartengine::{ChainBuilder, Limits, SmartEngine};

/// CPU time used so far by this process's threads named like a chain
/// worker's (`comm` holds the first 15 bytes of a thread's name; threads
/// the worker starts, such as the compiler's, inherit it).
fn chain_threads_cpu() -> Duration {
    let mut total = Duration::ZERO;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let path = task.unwrap().path();
        let Ok(name) = std::fs::read_to_string(path.join("comm")) else { continue };
        if name.trim() != "smartmodule-cha" {
            continue;
        }
        total += dev_support::cpu_time(&path.join("stat")).unwrap_or_default();
    }
    total
}

/// CPU those threads use over `window`.
fn chain_cpu_over(window: Duration) -> Duration {
    let before = chain_threads_cpu();
    std::thread::sleep(window);
    chain_threads_cpu().saturating_sub(before)
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_a_worker_stops_the_module_it_is_running() {
    // Fuel and time far beyond the test: only cancellation can stop it.
    let limits = Limits { fuel_per_batch: u64::MAX / 2, call_time: Duration::from_secs(3600), ..Limits::default() };
    let engine = SmartEngine::with_config(limits, None);
    let worker = ChainBuilder::new(&engine).invocation(module("hostile-infinite-loop")).spawn().await.unwrap();
    tokio::select! {
        result = worker.process(batch(0, &["x"])) => panic!("the endless module returned: {result:?}"),
        _ = tokio::time::sleep(Duration::from_millis(300)) => {}
    }
    // The module spins while its worker lives...
    assert!(chain_cpu_over(Duration::from_millis(500)) >= Duration::from_millis(250), "the module was not running");
    drop(worker);
    // ...and stops soon after the worker is dropped.
    let deadline = Instant::now() + Duration::from_secs(10);
    while chain_cpu_over(Duration::from_millis(500)) > Duration::from_millis(100) {
        assert!(
            Instant::now() < deadline,
            "the worker's thread still runs the module 10 s after the worker was dropped"
        );
    }
}
