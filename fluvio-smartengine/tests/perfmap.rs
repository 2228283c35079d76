//! With `FLUVIO_SMARTENGINE_PERFMAP` set, the engine writes a `perf` map
//! that names the guest's functions. A test binary of its own: the
//! variable is set for the whole process, before any engine exists.

mod common;

use common::{batch, module, values};
use fluvio_smartengine::{ChainBuilder, PERFMAP_VARIABLE, SmartEngine};

#[test]
fn the_perf_map_names_the_guest_functions_of_a_compiled_module() {
    // SAFETY: the only test of this binary, run before any thread of ours
    // reads the environment.
    unsafe { std::env::set_var(PERFMAP_VARIABLE, "1") };
    let map_path = std::path::PathBuf::from(format!("/tmp/perf-{}.map", std::process::id()));
    let _ = std::fs::remove_file(&map_path);

    let engine = SmartEngine::new();
    let mut chain = ChainBuilder::new(&engine).invocation(module("my-filter")).build().unwrap();
    let out = chain.process(&batch(0, &["alpha", "zzz"])).unwrap();
    assert_eq!(values(&out.batch), vec![(0, "alpha".to_string())]);

    let map = std::fs::read_to_string(&map_path).expect("the engine wrote a perf map");
    std::fs::remove_file(&map_path).unwrap();
    // Each line: start address, size (both hex), the function's name.
    let lines: Vec<Vec<&str>> = map.lines().map(|line| line.splitn(3, ' ').collect()).collect();
    assert!(lines.iter().all(|fields| fields.len() == 3 && u64::from_str_radix(fields[1], 16).is_ok()), "{map}");
    assert!(
        lines.iter().any(|fields| fields[2].contains("my_filter") && fields[2].contains("filter")),
        "no line names the module's filter function:\n{map}"
    );
}
