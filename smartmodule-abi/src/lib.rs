//! What both sides of the SmartModule ABI share, and nothing else: the
//! record batch layout and its parser ([`abi`]), the one byte codec every
//! binary layout here is read and written with ([`codec`]), the parameters
//! and look-back a module is set up with ([`params`]), and the levels of
//! its log lines ([`log`]).
//!
//! The guest library (`fluvio-smartmodule`) re-exports it for modules; the
//! protocol, the engine and the server's segment index use it directly, so
//! that no host links the guest library (or its error type, eyre) for the
//! batch format. It has no dependencies of its own (serde behind the
//! `serde` feature, for hosts that send parameters on the wire), does no
//! I/O and runs the same inside a module and in a host.
//!
//! ```
//! use smartmodule_abi::abi::BatchHeader;
//! use smartmodule_abi::codec::PutBytes;
//!
//! // A batch header is 32 bytes; the parser checks every field it reads.
//! let mut header = Vec::new();
//! header.put_i64(0); // base offset
//! header.put_u32(20); // length after this field: header rest, no records
//! assert!(BatchHeader::parse(&header).is_err(), "a truncated header is refused");
//! ```

pub mod abi;
pub mod codec;
pub mod log;
pub mod params;
