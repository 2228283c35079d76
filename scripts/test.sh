#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the tests need (the wasm
# target, rustfmt and clippy, cargo-generate for the template test,
# PostgreSQL, Mosquitto and nats-server), checks
# formatting and lints, then runs all tests, benchmarks in test mode, and
# doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# Disk space before and after: the template tests build generated projects
# in their own target directories, so a full disk shows up there first.
df -h . "${TMPDIR:-/tmp}" || true
trap 'df -h . "${TMPDIR:-/tmp}" || true' EXIT

rustup target add wasm32-unknown-unknown
rustup component add rustfmt clippy
if ! command -v cargo-generate >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-generate" ]; then
  # 0.23.7 is the newest release whose locked dependencies build with the
  # toolchain this project uses (Rust 1.95).
  cargo install cargo-generate@0.23.7 --locked
fi
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
# Real services for the connector tests (each test starts its own instances).
scripts/install-services.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings

# The crate boundaries the architecture promises (docs/architecture.md): an
# SDK without its default features compiles, and compiles no wasm runtime;
# the server does not depend on the SDK.
cargo check -p fluvio-client --no-default-features
if cargo tree -p fluvio-client --no-default-features -e normal | grep -q wasmer; then
  echo "fluvio-client without default features depends on wasmer" >&2
  exit 1
fi
if cargo tree -p fluvio-server -e normal | grep -q fluvio-client; then
  echo "fluvio-server depends on fluvio-client outside dev-dependencies" >&2
  exit 1
fi

cargo test --release --workspace --all-targets
cargo test --release --workspace --doc
