#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder that reads outside bytes, with
# libFuzzer (fuzz/: frames, control messages, batches, a SmartModule's
# output area and setup blob, connector configs, profile files).
#
#   scripts/fuzz.sh [RUNS] [TARGET...]     RUNS executions per target (default 10000000)
#
# Builds on the stable toolchain (coverage instrumentation is a stable
# codegen option; no sanitizer), seeds each target's corpus from
# fuzz/corpus/TARGET, keeps what the fuzzer learns in target/fuzz-corpus/
# (not in the repository), and writes any crashing input to
# target/fuzz-artifacts/TARGET/. Prints one line per target: executions,
# time, corpus size, and whether it found anything.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-10000000}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(frame requests batch output setup connector_config profile pre_login)
fi

export CARGO_TARGET_DIR="$PWD/target/fuzz"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps the instrumentation out of build scripts and
# proc macros.
host="$(rustc -vV | sed -n 's/^host: //p')"
cargo build --release --manifest-path fuzz/Cargo.toml --bins --target "$host"
bin="$CARGO_TARGET_DIR/$host/release"
"$bin/seeds" >/dev/null

status=0
for target in "${targets[@]}"; do
  corpus="target/fuzz-corpus/$target"
  artifacts="target/fuzz-artifacts/$target/"
  mkdir -p "$corpus" "$artifacts"
  log="target/fuzz-artifacts/$target.log"
  started=$(date +%s)
  if "$bin/$target" "$corpus" "fuzz/corpus/$target" \
      -runs="$runs" -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
      -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1; then
    found="nothing found"
  else
    found="FOUND A FAILURE: see $log and $artifacts"
    status=1
  fi
  elapsed=$(( $(date +%s) - started ))
  executed=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  units=$(ls "$corpus" | wc -l)
  echo "$target: $executed executions in ${elapsed} s, corpus $units inputs, $found"
done
exit $status
