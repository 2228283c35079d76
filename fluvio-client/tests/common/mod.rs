//! Builds the repository's SmartModules to wasm from source, once per test
//! process, into their own target directory (so the build never waits on
//! the lock of the `cargo test` that runs us).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use fluvio_client::batch::{Batch, BatchBuilder};

/// Every module the tests use: examples and hostile modules.
pub const MODULES: &[&str] = &[
    "my-filter",
    "uppercase-map",
    "even-filter-map",
    "json-array-map",
    "sum-aggregate",
    "params-filter",
    "record-position",
    "regex-scrubbing",
    "hostile-infinite-loop",
    "hostile-memory-bomb",
    "hostile-panic",
    "hostile-wrong-abi",
    "hostile-bad-output",
    "hostile-imports",
];

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("crate is in the workspace").to_path_buf()
}

fn build_all() -> PathBuf {
    let target_dir = workspace_root().join("target").join("wasm-modules");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root()).args(["build", "--release", "--target", "wasm32-unknown-unknown", "--target-dir"]).arg(&target_dir);
    for module in MODULES {
        command.args(["-p", module]);
    }
    let status = command.status().expect("cargo runs");
    assert!(status.success(), "building the test SmartModules failed");
    target_dir.join("wasm32-unknown-unknown").join("release")
}

/// The bytes of a module built from `examples/` or `test-modules/`.
pub fn wasm(package: &str) -> Vec<u8> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(build_all);
    let path = dir.join(format!("{}.wasm", package.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A batch of values at `base_offset`, timestamps 1000 + index.
pub fn batch(base_offset: i64, values: &[&str]) -> Batch {
    let mut builder = BatchBuilder::new(base_offset, 1_000);
    for (i, value) in values.iter().enumerate() {
        builder.push(i as u32, 1_000 + i as i64, None, value.as_bytes(), &[]);
    }
    builder.finish()
}

/// `(offset, value)` of each record.
pub fn values(batch: &Batch) -> Vec<(i64, String)> {
    batch.records().map(|r| (r.offset, String::from_utf8_lossy(r.value).into_owned())).collect()
}
