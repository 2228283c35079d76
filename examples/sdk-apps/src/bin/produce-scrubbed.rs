//! Produces stdin's lines to a topic through a SmartModule applied in this
//! process before sending (the topic is created if missing). Written
//! against Fluvio's API (`admin()`, `TopicProducerConfigBuilder`).
//!
//! `produce-scrubbed 127.0.0.1:9003 accounts regex_scrubbing.wasm < accounts.txt`

use fluvio::consumer::{SmartModuleInvocation, SmartModuleInvocationWasm, SmartModuleKind};
use fluvio::metadata::topic::TopicSpec;
use fluvio::{Fluvio, FluvioConfig, RecordKey, TopicProducerConfigBuilder};
use tokio::io::AsyncBufReadExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, topic, module] = args.as_slice() else {
        eprintln!("usage: produce-scrubbed ADDR TOPIC MODULE.wasm < lines");
        std::process::exit(2);
    };
    let fluvio = Fluvio::connect_with_config(&FluvioConfig::new(addr.clone())).await?;
    let admin = fluvio.admin().await;
    if admin.list::<TopicSpec, _>(vec![topic.clone()]).await?.is_empty() {
        admin.create(topic.clone(), false, TopicSpec::new_computed(1, 1, None)).await?;
    }
    let scrubber = SmartModuleInvocation {
        wasm: SmartModuleInvocationWasm::adhoc_from_bytes(&std::fs::read(module)?)?,
        kind: SmartModuleKind::Map,
        params: Default::default(),
    };
    let config = TopicProducerConfigBuilder::default().smartmodules(vec![scrubber]).build()?;
    let producer = fluvio.topic_producer_with_config(topic.as_str(), config).await?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut outputs = Vec::new();
    while let Some(line) = lines.next_line().await? {
        outputs.push(producer.send(RecordKey::NULL, line).await?);
    }
    producer.flush().await?;
    let mut sent = 0;
    for output in outputs {
        if output.wait().await?.offset() >= 0 {
            sent += 1;
        }
    }
    println!("sent {sent} records");
    Ok(())
}
