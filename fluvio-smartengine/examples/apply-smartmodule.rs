//! Applies a SmartModule to the lines of a file with the embedded engine and
//! prints the output records, one per line.
//!
//! ```sh
//! cargo run --release -p fluvio-smartengine --example apply-smartmodule -- module.wasm input.txt
//! ```

use fluvio_protocol::{BatchBuilder, SmartModuleInvocation};
use fluvio_smartengine::{ChainBuilder, SmartEngine};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(wasm), Some(input)) = (args.next(), args.next()) else {
        eprintln!("usage: apply-smartmodule MODULE.wasm INPUT-FILE");
        std::process::exit(2);
    };
    let engine = SmartEngine::new();
    let mut chain = ChainBuilder::new(&engine).invocation(SmartModuleInvocation::from_file(&wasm)?).build()?;

    let mut batch = BatchBuilder::new(0, 0);
    for line in std::fs::read_to_string(&input)?.lines() {
        batch.push_value(None, line.as_bytes());
    }
    let output = chain.process(&batch.finish())?;
    for record in output.batch.records() {
        println!("{}", String::from_utf8_lossy(record.value));
    }
    if let Some(failure) = output.failure {
        eprintln!("error: {failure}");
        std::process::exit(1);
    }
    Ok(())
}
