//! Reads a topic from the beginning to its end through a SmartModule that
//! the server runs, and reports how many bytes crossed the network.
//! Written against Fluvio's API (`SmartModuleInvocation` literal,
//! `ConsumerConfigExtBuilder`).
//!
//! `consume-filtered 127.0.0.1:9003 events my_filter.wasm`

use fluvio::consumer::{ConsumerConfigExtBuilder, SmartModuleInvocation, SmartModuleInvocationWasm, SmartModuleKind};
use fluvio::{Fluvio, FluvioConfig, Offset};
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, topic, module] = args.as_slice() else {
        eprintln!("usage: consume-filtered ADDR TOPIC MODULE.wasm");
        std::process::exit(2);
    };
    let fluvio = Fluvio::connect_with_config(&FluvioConfig::new(addr.clone())).await?;
    let filter = SmartModuleInvocation {
        wasm: SmartModuleInvocationWasm::adhoc_from_bytes(&std::fs::read(module)?)?,
        kind: SmartModuleKind::Filter,
        params: Default::default(),
    };
    let config = ConsumerConfigExtBuilder::default()
        .topic(topic.as_str())
        .offset_start(Offset::beginning())
        .disable_continuous(true)
        .smartmodule(vec![filter])
        .build()?;
    let mut stream = fluvio.consumer_with_config(config).await?;
    let mut count = 0;
    while let Some(record) = stream.next().await {
        println!("{}", record?.get_value().as_utf8_lossy_string());
        count += 1;
    }
    eprintln!("received {count} records in {} bytes", stream.bytes_received());
    Ok(())
}
