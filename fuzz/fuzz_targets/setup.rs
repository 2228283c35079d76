//! A SmartModule's setup blob (params, accumulator, look-back), as the
//! guest glue decodes it: refused with a reason or decoded, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = fluvio_smartmodule::guest::parse_setup(data);
});
