use fluvio_smartmodule::{smartmodule, Record};

#[smartmodule(filter)]
pub fn filter(_record: &Record) {}

fn main() {}
