#!/usr/bin/env bash
# The seed walkthrough (docs: shared/seeds/004_*): build the regex-scrubbing
# SmartModule and apply it to the walkthrough's account record.
#
# Until the server and the `fluvio` command land, this runs the module
# through the same engine the server will use (the `scrub` example of
# fluvio-client) and says so.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true

mkdir -p target
echo '{"social_security_number":"123-45-6789","event_type":"account-created","account_id":"1509aaf8-5863-4b41-bfe2-b081691d7a6e","first_name":"Daniel","last_name":"Mahoney","email":"","password_hash":"db6b535bc9909ecfb7c2ee4550ed7b350a61785e"}' > target/account.json

(cd examples/regex-scrubbing && cargo build --release --target wasm32-unknown-unknown --quiet)
wasm=target/wasm32-unknown-unknown/release/regex_scrubbing.wasm

echo "note: the server and the fluvio command are not built yet; running the SmartModule through the engine directly" >&2
cargo run --release --quiet -p fluvio-client --example apply-smartmodule -- "$wasm" target/account.json
