//! Reads a topic from the beginning to its end through a SmartModule that
//! the server runs, and reports how many bytes crossed the network.
//!
//! `consume-filtered 127.0.0.1:9003 events my_filter.wasm`

use fluvio::{ConsumerConfig, Fluvio, FluvioError, OffsetSpec, SmartModuleInvocation};
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), FluvioError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, topic, module] = args.as_slice() else {
        eprintln!("usage: consume-filtered ADDR TOPIC MODULE.wasm");
        std::process::exit(2);
    };
    let fluvio = Fluvio::connect_to(addr).await?;
    let config = ConsumerConfig { offset: OffsetSpec::Beginning, continuous: false, ..Default::default() }
        .smartmodule(SmartModuleInvocation::from_file(module)?);
    let mut stream = fluvio.consumer_stream(topic, config).await?;
    let mut count = 0;
    while let Some(record) = stream.next().await {
        println!("{}", String::from_utf8_lossy(&record?.value));
        count += 1;
    }
    eprintln!("received {count} records in {} bytes", stream.bytes_received());
    Ok(())
}
