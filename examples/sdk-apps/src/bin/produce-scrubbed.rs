//! Produces stdin's lines to a topic through a SmartModule applied in this
//! process before sending (the topic is created if missing).
//!
//! `produce-scrubbed 127.0.0.1:9003 accounts regex_scrubbing.wasm < accounts.txt`

use fluvio::{Fluvio, FluvioError, ProducerConfig, RecordKey, SmartModuleInvocation};
use tokio::io::AsyncBufReadExt;

#[tokio::main]
async fn main() -> Result<(), FluvioError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, topic, module] = args.as_slice() else {
        eprintln!("usage: produce-scrubbed ADDR TOPIC MODULE.wasm < lines");
        std::process::exit(2);
    };
    let fluvio = Fluvio::connect_to(addr).await?;
    if !fluvio.list_topics().await?.iter().any(|t| &t.name == topic) {
        fluvio.create_topic(topic, 1).await?;
    }
    let config = ProducerConfig::default().smartmodule(SmartModuleInvocation::from_file(module)?);
    let producer = fluvio.topic_producer_with(topic, config).await?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut outputs = Vec::new();
    while let Some(line) = lines.next_line().await.expect("stdin is readable") {
        outputs.push(producer.send(RecordKey::NULL, line).await?);
    }
    producer.flush().await?;
    let mut sent = 0;
    for output in &mut outputs.drain(..) {
        if output.wait().await?.stored_offset().is_some() {
            sent += 1;
        }
    }
    println!("sent {sent} records");
    Ok(())
}
