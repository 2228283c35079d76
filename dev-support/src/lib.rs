//! Builds this repository's SmartModules (`examples/`, `test-modules/`,
//! `benches/modules/`) to `wasm32-unknown-unknown` from source, for tests and
//! benchmarks, starts throwaway PostgreSQL, Mosquitto, NATS and Prometheus
//! servers ([`services`]), a headless Chromium ([`browser`]) and, with the
//! `server` feature, a fluvio server in the process ([`server`]). Nothing
//! here ships to users.
//!
//! Modules are built once per process into `target/wasm-modules`, a target
//! directory of their own, so the build never waits on the lock held by the
//! `cargo test` or `cargo bench` that runs us.

pub mod browser;
pub mod damage;
pub mod pki;
#[cfg(feature = "server")]
pub mod server;
pub mod services;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Every SmartModule package in the repository.
pub const MODULES: &[&str] = &[
    "my-filter",
    "uppercase-map",
    "even-filter-map",
    "json-array-map",
    "sum-aggregate",
    "field-sum-aggregate",
    "params-filter",
    "typed-params-filter",
    "record-position",
    "dedup-filter",
    "regex-scrubbing",
    "json-scrubbing",
    "reading-filter",
    "reading-to-sql",
    "hostile-infinite-loop",
    "hostile-memory-bomb",
    "hostile-panic",
    "hostile-burn-then-panic",
    "hostile-burn-in-startup",
    "hostile-fill-loop",
    "hostile-wrong-abi",
    "hostile-bad-output",
    "hostile-imports",
    "alloc-churn",
    "value-placement",
    "placement-filter-map",
    "bench-filter",
    "bench-count",
];

/// CPU time (user plus system) a process or thread has used, read from its
/// `/proc/.../stat` file (`/proc/PID/stat`, `/proc/self/task/TID/stat`);
/// `None` once it is gone. Tests use it to see whether something still
/// runs.
pub fn cpu_time(stat_path: &Path) -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // The fields after the command name, which is in parentheses and may
    // itself hold spaces: utime and stime are the 12th and 13th, in ticks.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports 100 ticks a second to user space.
    Some(std::time::Duration::from_millis(ticks * 10))
}

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("dev-support is in the workspace").to_path_buf()
}

fn build_all() -> PathBuf {
    let target_dir = workspace_root().join("target").join("wasm-modules");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root())
        .args(["build", "--release", "--target", "wasm32-unknown-unknown", "--target-dir"])
        .arg(&target_dir);
    for module in MODULES {
        command.args(["-p", module]);
    }
    let status = command.status().expect("cargo runs");
    assert!(status.success(), "building the repository's SmartModules for wasm32-unknown-unknown failed");
    target_dir.join("wasm32-unknown-unknown").join("release")
}

/// Path of a module's `.wasm` file, building every module on first use.
pub fn wasm_path(package: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    assert!(MODULES.contains(&package), "{package} is not listed in dev_support::MODULES");
    DIR.get_or_init(build_all).join(format!("{}.wasm", package.replace('-', "_")))
}

/// The bytes of a module's `.wasm` file.
pub fn wasm(package: &str) -> Vec<u8> {
    let path = wasm_path(package);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The modules of `test-modules/fluvio-built`: built with Fluvio's own
/// guest crate (`fluvio-smartmodule` 0.50.1 from crates.io, pinned by that
/// workspace's lock file; `v0-2-*` and `v0-7-*` with its releases 0.2.5 and
/// 0.7.5), most from the same sources as the examples of the same name.
pub const FLUVIO_BUILT_MODULES: &[&str] = &[
    "my-filter",
    "uppercase-map",
    "even-filter-map",
    "json-array-map",
    "sum-aggregate",
    "params-filter",
    "record-position",
    "look-back-filter",
    "v0-2-my-filter",
    "v0-7-uppercase-map",
];

fn build_fluvio_built() -> PathBuf {
    let target_dir = workspace_root().join("target").join("wasm-modules-fluvio");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace_root().join("test-modules").join("fluvio-built"))
        .args(["build", "--release", "--locked", "--target", "wasm32-unknown-unknown", "--target-dir"])
        .arg(&target_dir)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building test-modules/fluvio-built with Fluvio's fluvio-smartmodule crate failed");
    target_dir.join("wasm32-unknown-unknown").join("release")
}

/// The bytes of `module` built with Fluvio's own guest crate, building
/// them all on first use.
pub fn fluvio_built_wasm(module: &str) -> Vec<u8> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    assert!(FLUVIO_BUILT_MODULES.contains(&module), "{module} is not listed in dev_support::FLUVIO_BUILT_MODULES");
    let path = DIR.get_or_init(build_fluvio_built).join(format!("fluvio_built_{}.wasm", module.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
