//! Typed parameters, Fluvio's way: `#[derive(SmartOpt)]` builds the
//! options from the module's parameters and `#[smartmodule(filter, params)]`
//! hands them to the filter. Keeps records whose value contains `key`
//! (default `a`), at most `max_len` bytes long when that is given.

use fluvio_smartmodule::{Record, Result, SmartOpt, smartmodule};

/// The filter's options; a parameter not given keeps its default.
#[derive(SmartOpt)]
pub struct FilterOpt {
    key: String,
    max_len: Option<usize>,
}

impl Default for FilterOpt {
    fn default() -> Self {
        FilterOpt { key: "a".to_string(), max_len: None }
    }
}

/// Keeps a record whose value contains the key and is short enough.
#[smartmodule(filter, params)]
pub fn filter(record: &Record, opt: &FilterOpt) -> Result<bool> {
    let value = std::str::from_utf8(record.value.as_ref())?;
    Ok(value.contains(&opt.key) && opt.max_len.is_none_or(|max| value.len() <= max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluvio_smartmodule::SmartModuleExtraParams;

    #[test]
    fn options_come_from_params_with_defaults() {
        let mut params = SmartModuleExtraParams::default();
        params.insert("max_len", "5");
        let opt = FilterOpt::try_from(params).unwrap();
        assert_eq!((opt.key.as_str(), opt.max_len), ("a", Some(5)));
        assert!(filter(&Record::new("plan"), &opt).unwrap());
        assert!(!filter(&Record::new("banana"), &opt).unwrap());
        let mut bad = SmartModuleExtraParams::default();
        bad.insert("max_len", "many");
        let error = FilterOpt::try_from(bad).err().unwrap();
        assert!(error.contains("\"max_len\"") && error.contains("usize"), "{error}");
    }
}
