//! A map that keeps allocating 1 MiB blocks and never frees them: the memory
//! cap must stop it.
use std::sync::Mutex;

use fluvio_smartmodule::{Record, RecordData, Result, smartmodule};

static HOARD: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

#[smartmodule(map)]
pub fn map(record: &Record) -> Result<(Option<RecordData>, RecordData)> {
    let mut hoard = HOARD.lock().unwrap();
    loop {
        hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
        if hoard.len() == usize::MAX {
            return Ok((None, record.value.clone()));
        }
    }
}
