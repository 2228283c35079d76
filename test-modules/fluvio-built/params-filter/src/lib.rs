//! Fluvio's way of taking parameters: `init` reads `contains` (required)
//! and keeps it; the filter keeps records whose value contains it.

use std::sync::OnceLock;

use fluvio_smartmodule::dataplane::smartmodule::{SmartModuleExtraParams, SmartModuleInitError};
use fluvio_smartmodule::{Record, Result, eyre, smartmodule};

static NEEDLE: OnceLock<String> = OnceLock::new();

#[smartmodule(init)]
fn init(params: SmartModuleExtraParams) -> Result<()> {
    let needle = params.get("contains").ok_or_else(|| SmartModuleInitError::MissingParam("contains".into()))?;
    let _ = NEEDLE.set(needle.clone());
    Ok(())
}

#[smartmodule(filter)]
pub fn filter(record: &Record) -> Result<bool> {
    let needle = NEEDLE.get().ok_or_else(|| eyre!("init did not run"))?;
    Ok(std::str::from_utf8(record.value.as_ref())?.contains(needle.as_str()))
}
