//! A map that makes every start of itself expensive and then panics on
//! every record: `init` spins `init_spins` rounds, and the first allocation
//! of 64 KiB or more after `init` (the input buffer the host reserves for a
//! large batch) spins `reserve_spins` rounds. After each panic the host starts the
//! module again; those starts must be paid from the batch's one budget.
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use fluvio_smartmodule::{Record, RecordData, Result, SmartModuleExtraParams, smartmodule};

static RESERVE_SPINS: AtomicU64 = AtomicU64::new(0);
static SPIN_ON_NEXT_LARGE: AtomicBool = AtomicBool::new(false);

/// The system allocator, slowed down for large allocations.
struct SlowForLarge;

fn spin(rounds: u64) -> u64 {
    let mut spins = 0u64;
    for _ in 0..rounds {
        spins = std::hint::black_box(spins.wrapping_add(1));
    }
    spins
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for SlowForLarge {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= 64 << 10 && SPIN_ON_NEXT_LARGE.swap(false, Ordering::Relaxed) {
            spin(RESERVE_SPINS.load(Ordering::Relaxed));
        }
        // SAFETY: forwarded from our caller.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from our caller.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: SlowForLarge = SlowForLarge;

#[smartmodule(init)]
pub fn init(params: SmartModuleExtraParams) -> Result<()> {
    RESERVE_SPINS.store(params.parse_or("reserve_spins", 0u64)?, Ordering::Relaxed);
    SPIN_ON_NEXT_LARGE.store(true, Ordering::Relaxed);
    spin(params.parse_or("init_spins", 0u64)?);
    Ok(())
}

#[smartmodule(map)]
pub fn map(record: &Record) -> Result<(Option<RecordData>, RecordData)> {
    panic!("refusing the record of {} bytes", record.value.len());
}
