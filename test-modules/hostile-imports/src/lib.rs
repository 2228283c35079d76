//! A module that imports a host function no SmartModule host provides
//! (a module trying to reach the outside world).

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn open_socket(port: i32) -> i32;
}

#[unsafe(no_mangle)]
pub extern "C" fn fluvio_abi_v1() {}

#[unsafe(no_mangle)]
pub extern "C" fn fluvio_filter(_input_len: i32, _flags: i32) -> i64 {
    unsafe { open_socket(80) as i64 }
}
