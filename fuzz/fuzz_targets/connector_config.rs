//! A connector config and a secrets file, from any text: refused with a
//! reason naming the file, or parsed, never a panic.
#![no_main]

use std::path::Path;

use fluvio_connector::config::{ConnectorConfig, Secrets};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The first line, when it looks like one, is a secrets file.
    let (secrets_text, config_text) = match text.split_once("\n---secrets-end---\n") {
        Some((secrets, config)) => (secrets, config),
        None => ("", text),
    };
    let secrets = Secrets::parse(secrets_text, Path::new("secrets.env"))
        .unwrap_or_else(|_| Secrets::parse("", Path::new("secrets.env")).expect("no secrets parse"));
    if let Err(error) = ConnectorConfig::parse(config_text, Path::new("connector.yaml"), &secrets) {
        assert!(error.to_string().contains("connector.yaml"), "{error}");
    }
});
