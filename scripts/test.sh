#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the tests need (the wasm
# target, cargo-generate for the template test), then all tests, benchmarks
# in test mode, and doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-unknown-unknown
if ! command -v cargo-generate >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-generate" ]; then
  # 0.23.7 is the newest release whose locked dependencies build with the
  # toolchain this project uses (Rust 1.95).
  cargo install cargo-generate@0.23.7 --locked
fi
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

cargo test --release --workspace --all-targets
cargo test --release --workspace --doc
