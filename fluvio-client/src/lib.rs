//! The SDK: the embedded SmartModule engine and the record batch format.
//!
//! - [`engine`] loads SmartModules (wasm built with `fluvio-smartmodule`)
//!   into wasmer, checks them, caches compiled code, and runs chains of them
//!   over batches under memory and CPU caps. Producers, the server and the
//!   CLI all run modules through it.
//! - [`batch`] builds and validates record batches in the one layout used on
//!   disk, on the wire and as SmartModule input.
//!
//! This crate does not store records; the server does.

#![warn(missing_docs)]

pub mod batch;
pub mod engine;

pub use fluvio_smartmodule::abi::SmartModuleKind;
