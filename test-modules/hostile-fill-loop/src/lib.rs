//! A filter that fills a 16 MiB block again and again, forever. Each fill is
//! one `memory.fill` instruction, so a CPU cap that prices every instruction
//! the same lets it run for hours: the cap must charge bulk operations by
//! the bytes they touch.
use fluvio_smartmodule::{Record, Result, smartmodule};

const BLOCK: usize = 16 << 20;

#[smartmodule(filter)]
pub fn filter(record: &Record) -> Result<bool> {
    let mut block = vec![0u8; BLOCK];
    let mut round = 0u8;
    loop {
        round = round.wrapping_add(1);
        // SAFETY: the pointer and length are those of `block`.
        unsafe { std::ptr::write_bytes(block.as_mut_ptr(), round, BLOCK) };
        std::hint::black_box(&mut block);
        if block[BLOCK - 1] == 0 && record.value.is_empty() {
            return Ok(true);
        }
    }
}
