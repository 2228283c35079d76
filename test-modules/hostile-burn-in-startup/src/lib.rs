//! A map that makes every start of itself expensive and then panics on
//! every record: `init` spins `init_spins` rounds. After each panic the
//! host starts the module again; those starts must be paid from the
//! batch's one budget.
use fluvio_smartmodule::{Record, RecordData, Result, SmartModuleExtraParams, smartmodule};

#[smartmodule(init)]
pub fn init(params: SmartModuleExtraParams) -> Result<()> {
    let rounds: u64 = params.parse_or("init_spins", 0u64)?;
    let mut spins = 0u64;
    for _ in 0..rounds {
        spins = std::hint::black_box(spins.wrapping_add(1));
    }
    std::hint::black_box(spins);
    Ok(())
}

#[smartmodule(map)]
pub fn map(record: &Record) -> Result<(Option<RecordData>, RecordData)> {
    panic!("refusing the record of {} bytes", record.value.len());
}
