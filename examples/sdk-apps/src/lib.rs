//! SDK programs that use SmartModules; see `src/bin/`.
//!
//! - `produce-scrubbed ADDR TOPIC MODULE.wasm`: reads lines from stdin and
//!   produces them through a SmartModule run in the producer, so only its
//!   outputs are sent.
//! - `consume-filtered ADDR TOPIC MODULE.wasm`: uploads a SmartModule with a
//!   stream request, so the server runs it and sends only its outputs.
