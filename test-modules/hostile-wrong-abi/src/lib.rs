//! A module that looks like a filter but claims ABI version 99.

#[unsafe(no_mangle)]
pub extern "C" fn fluvio_abi_v99() {}

#[unsafe(no_mangle)]
pub extern "C" fn fluvio_filter(_input_len: i32, _flags: i32) -> i64 {
    0
}
