//! Write SmartModules: Rust functions, compiled to WebAssembly, that filter,
//! map, filter-map, array-map and aggregate streaming records inline.
//!
//! This is the only crate a SmartModule depends on. It owns the guest side of
//! the ABI (see `docs/abi.md`): the record types a function sees, the error
//! type it returns, its parameters, and the glue the `#[smartmodule]`
//! attribute wires a function into. It never runs a module; hosts do that
//! (`fluvio-smartengine`). What hosts share with it (the batch layout, the
//! byte codec, parameters) is the `smartmodule-abi` crate, re-exported here
//! as [`abi`], [`codec`] and the parameter types.
//!
//! ```
//! use fluvio_smartmodule::{smartmodule, Record, Result};
//!
//! #[smartmodule(filter)]
//! pub fn filter(record: &Record) -> Result<bool> {
//!     let text = std::str::from_utf8(record.value.as_ref())?;
//!     Ok(text.contains('a'))
//! }
//!
//! // The function stays an ordinary function, so it can be unit-tested natively.
//! assert!(filter(&Record::new("apple")).unwrap());
//! assert!(!filter(&Record::new("plum")).unwrap());
//! ```
//!
//! The signatures are the same as Fluvio's `fluvio-smartmodule`:
//!
//! | attribute | signature |
//! | --- | --- |
//! | `#[smartmodule(filter)]` | `fn(&Record) -> Result<bool>` |
//! | `#[smartmodule(map)]` | `fn(&Record) -> Result<(Option<RecordData>, RecordData)>` |
//! | `#[smartmodule(filter_map)]` | `fn(&Record) -> Result<Option<(Option<RecordData>, RecordData)>>` |
//! | `#[smartmodule(array_map)]` | `fn(&Record) -> Result<Vec<(Option<RecordData>, RecordData)>>` |
//! | `#[smartmodule(aggregate)]` | `fn(RecordData, &Record) -> Result<RecordData>` |
//! | `#[smartmodule(init)]` | `fn(SmartModuleExtraParams) -> Result<()>` |
//!
//! `&SmartModuleRecord` may stand in place of `&Record`.

mod error;
pub mod log;
mod record;
mod search;

/// The batch layout and the ABI's names, shared with hosts
/// (`smartmodule-abi`).
pub use smartmodule_abi::abi;
/// The byte codec, shared with hosts (`smartmodule-abi`).
pub use smartmodule_abi::codec;
use smartmodule_abi::params;

#[doc(hidden)]
pub mod guest;

pub use dataplane::core::Offset;
pub use error::{ContextCompat, Error, OptionExt, Report, Result, WrapErr, bail, ensure, eyre};
pub use params::{Lookback, ParamError, SmartModuleExtraParams, SmartModuleInitError};
pub use record::{Header, Record, RecordData, SmartModuleRecord};

/// The `eyre` crate, for code that names its items by path
/// (`fluvio_smartmodule::eyre::WrapErr`); `eyre!` is the macro.
pub use ::eyre;

/// Fluvio's paths to the types SmartModules import
/// (`fluvio_smartmodule::dataplane::...`).
pub mod dataplane {
    /// Parameters, init errors and the look-back.
    pub mod smartmodule {
        pub use crate::params::{Lookback, ParamError, SmartModuleExtraParams, SmartModuleInitError};
        pub use crate::record::SmartModuleRecord;
    }
    /// Records and their data.
    pub mod record {
        pub use crate::record::{Header, Record, RecordData, SmartModuleRecord};
    }
    /// The shared basics: offsets and timestamps as Fluvio types them.
    pub mod core {
        /// A record's offset in its partition.
        pub type Offset = i64;
        /// Milliseconds since the Unix epoch.
        pub type Timestamp = i64;
    }
}

#[cfg(feature = "derive")]
pub use smartmodule_derive::{SmartOpt, smartmodule};

/// Items the `#[smartmodule]` expansion refers to. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::guest::*;
}

/// Everything a SmartModule usually needs, in one `use`.
pub mod prelude {
    #[cfg(feature = "derive")]
    pub use crate::smartmodule;
    pub use crate::{
        Error, Record, RecordData, Result, SmartModuleExtraParams, SmartModuleRecord, WrapErr, bail, ensure, eyre,
    };
}
