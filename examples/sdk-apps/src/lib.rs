//! SDK programs, written as Fluvio applications are (the crate depends on
//! `fluvio = { package = "fluvio-client", ... }`); see `src/bin/`.
//!
//! - `produce-scrubbed ADDR TOPIC MODULE.wasm`: reads lines from stdin and
//!   produces them through a SmartModule run in the producer, so only its
//!   outputs are sent.
//! - `consume-filtered ADDR TOPIC MODULE.wasm`: uploads a SmartModule with a
//!   stream request, so the server runs it and sends only its outputs.
//! - `order-totals [ADDR]`: produces `customer,amount` lines keyed by
//!   customer, then adds up the orders its consumer id has not seen yet,
//!   and stores where it got to.
//! - `quickstart [TOPIC]`: Fluvio's quick start, with `fluvio::producer`
//!   and `fluvio::consumer` on the cluster `$FLUVIO_ADDR` names.
