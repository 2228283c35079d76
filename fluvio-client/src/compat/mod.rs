//! Fluvio's names and shapes for what this crate offers natively, so that a
//! Fluvio application ports by changing its dependency line: the
//! `FluvioAdmin` API by spec type ([`admin`]). The native code of this
//! crate does not use anything here; each item says which native call it
//! stands for.

pub mod admin;
