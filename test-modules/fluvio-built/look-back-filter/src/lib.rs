//! Fluvio's look-back: stored records are fed to `look_back` before the
//! stream starts; the filter then drops values it has seen. An empty stored
//! value is refused, to show a look-back error.

use std::collections::HashSet;
use std::sync::Mutex;

use fluvio_smartmodule::{Record, Result, eyre, smartmodule};

static SEEN: Mutex<Option<HashSet<Vec<u8>>>> = Mutex::new(None);

fn remember(value: &[u8]) -> bool {
    let mut seen = SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    seen.get_or_insert_with(HashSet::new).insert(value.to_vec())
}

#[smartmodule(look_back)]
pub fn look_back(record: &Record) -> Result<()> {
    if record.value.as_ref().is_empty() {
        return Err(eyre!("an empty stored value cannot be remembered"));
    }
    remember(record.value.as_ref());
    Ok(())
}

#[smartmodule(filter)]
pub fn filter(record: &Record) -> Result<bool> {
    Ok(remember(record.value.as_ref()))
}
