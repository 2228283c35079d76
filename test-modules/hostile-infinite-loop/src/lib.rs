//! A filter that never returns: the CPU cap must stop it.
use fluvio_smartmodule::{Record, Result, smartmodule};

#[smartmodule(filter)]
pub fn filter(record: &Record) -> Result<bool> {
    let mut spins = 0u64;
    loop {
        spins = std::hint::black_box(spins.wrapping_add(record.value.len() as u64 + 1));
        if spins == 0 {
            return Ok(true);
        }
    }
}
