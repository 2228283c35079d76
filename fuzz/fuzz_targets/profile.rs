//! A client's profile file (TOML) from any text: refused or read, never a
//! panic, and a read one names a cluster or says why not.
#![no_main]

use fluvio_client::ConfigFile;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(file) = toml::from_str::<ConfigFile>(text) {
        let _ = file.cluster(None);
        let _ = file.cluster(Some("local"));
    }
});
