//! Fluvio's names and shapes for what this crate offers natively, so that a
//! Fluvio application ports by changing its dependency line: the
//! `FluvioAdmin` API by spec type ([`admin`]), and the config builders,
//! [`Offset`](config::Offset) and the partition consumer ([`config`]). The
//! native code of this crate does not use anything here; each item says
//! which native call or type it stands for. The crate root and the
//! `consumer`, `producer` and `metadata` modules re-export these at
//! Fluvio's paths.

pub mod admin;
pub mod config;
pub mod link;
pub mod offsets;
pub mod spu;
pub mod watch;
