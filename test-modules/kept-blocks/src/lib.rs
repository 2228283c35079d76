//! What the placement test modules (`value-placement`,
//! `placement-filter-map`) share: blocks a module keeps past its calls,
//! each with a copy of what it held, checked on every record so that an
//! output record written over one fails the record; and a value's mode,
//! its first word up to a `:`.

use std::cell::RefCell;

use fluvio_smartmodule::{Result, ensure};

thread_local! {
    static KEPT: RefCell<Vec<(Vec<u8>, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
}

/// Keeps `block` for good.
pub fn keep(block: Vec<u8>) {
    let copy = block.clone();
    KEPT.with(|kept| kept.borrow_mut().push((block, copy)));
}

/// Fails when a kept block no longer holds what it held.
pub fn check() -> Result<()> {
    KEPT.with(|kept| {
        for (block, copy) in kept.borrow().iter() {
            ensure!(block == copy, "a kept block was overwritten");
        }
        Ok(())
    })
}

/// A value's mode and the bytes after its `:`.
pub fn split(value: &[u8]) -> (&[u8], &[u8]) {
    match value.iter().position(|&byte| byte == b':') {
        Some(at) => (&value[..at], &value[at + 1..]),
        None => (value, &[]),
    }
}
