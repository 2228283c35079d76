//! A filter SmartModule configured by parameters: keeps records whose value
//! contains the `contains` parameter (required), optionally ignoring case
//! with `ignore_case=true`.

use std::sync::OnceLock;

use fluvio_smartmodule::{Record, Result, SmartModuleExtraParams, smartmodule};

struct Config {
    needle: String,
    ignore_case: bool,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// Reads the parameters once, before the first record.
#[smartmodule(init)]
pub fn init(params: SmartModuleExtraParams) -> Result<()> {
    let ignore_case: bool = params.parse_or("ignore_case", false)?;
    let needle = params.require("contains")?;
    let needle = if ignore_case { needle.to_lowercase() } else { needle.to_string() };
    fluvio_smartmodule::log_info!("keeping records that contain {needle:?} (ignore_case={ignore_case})");
    // A second init (the host re-creating the module) keeps the first config.
    let _ = CONFIG.set(Config { needle, ignore_case });
    Ok(())
}

/// Keeps records that contain the configured text.
#[smartmodule(filter)]
pub fn filter(record: &Record) -> Result<bool> {
    let config = CONFIG.get().ok_or_else(|| fluvio_smartmodule::eyre!("init did not run"))?;
    let value = std::str::from_utf8(record.value.as_ref())?;
    Ok(if config.ignore_case { value.to_lowercase().contains(&config.needle) } else { value.contains(&config.needle) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_parameter_is_named() {
        let error = init(SmartModuleExtraParams::default()).unwrap_err();
        assert!(error.to_string().contains("missing parameter `contains`"), "{error}");
    }

    #[test]
    fn filters_by_parameter() {
        init([("contains", "Fluvio"), ("ignore_case", "true")].into_iter().collect()).unwrap();
        assert!(filter(&Record::new("i like fluvio")).unwrap());
        assert!(!filter(&Record::new("i like rust")).unwrap());
    }
}
