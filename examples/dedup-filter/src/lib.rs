//! A filter that drops values it has seen before. With a lookback
//! (`lookback: { last: 1000 }` in a transforms file), the host feeds it the
//! partition's latest stored records before the stream starts, so a
//! consumer that starts again does not let through a value the topic
//! already holds.

use std::collections::HashSet;
use std::sync::Mutex;

use fluvio_smartmodule::{Record, Result, SmartModuleExtraParams, ensure, smartmodule};

static SEEN: Mutex<Option<HashSet<Vec<u8>>>> = Mutex::new(None);

fn remember(value: &[u8]) -> bool {
    let mut seen = SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    seen.get_or_insert_with(HashSet::new).insert(value.to_vec())
}

/// Says how much history the host will feed, when it was given a lookback.
#[smartmodule(init)]
pub fn init(params: SmartModuleExtraParams) -> Result<()> {
    if let Some(lookback) = params.lookback() {
        fluvio_smartmodule::log_info!("warming up from the last {} stored records", lookback.last);
    }
    Ok(())
}

/// Learns a stored record's value. An empty stored value is refused, to
/// show how a look-back error stops the stream before it starts.
#[smartmodule(look_back)]
pub fn look_back(record: &Record) -> Result<()> {
    ensure!(!record.value.is_empty(), "an empty stored value cannot be remembered");
    remember(record.value.as_ref());
    Ok(())
}

/// Keeps a record the first time its value appears.
#[smartmodule(filter)]
pub fn filter(record: &Record) -> Result<bool> {
    Ok(remember(record.value.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_seen_in_look_back_or_before_are_dropped() {
        look_back(&Record::new("known")).unwrap();
        assert!(!filter(&Record::new("known")).unwrap());
        assert!(filter(&Record::new("new")).unwrap());
        assert!(!filter(&Record::new("new")).unwrap());
        assert!(look_back(&Record::new("")).is_err());
    }
}
