//! Written as a Fluvio application would be, against Fluvio's `fluvio`
//! crate API: only the dependency line in Cargo.toml differs.
//!
//! Reads `customer,amount` lines from stdin and produces each with the
//! customer as its key (so one customer's orders stay in one partition, in
//! order), then consumes every partition as the consumer `order-totals`,
//! adds up the amounts of the orders it has not seen before, and stores
//! where it got to. Run it again with new orders: only those are counted.
//!
//! `order-totals 127.0.0.1:9003 < orders.csv`

use std::collections::BTreeMap;
use std::time::Duration;

use fluvio::consumer::{ConsumerConfigExtBuilder, ConsumerStream, OffsetManagementStrategy};
use fluvio::metadata::topic::TopicSpec;
use fluvio::{Fluvio, FluvioConfig, Offset, RecordKey, TopicProducerConfigBuilder};
use futures::StreamExt;
use tokio::io::AsyncBufReadExt;

const TOPIC: &str = "orders";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fluvio = match std::env::args().nth(1) {
        Some(addr) => Fluvio::connect_with_config(&FluvioConfig::new(addr)).await?,
        None => Fluvio::connect().await?,
    };
    let admin = fluvio.admin().await;
    if admin.list::<TopicSpec, _>(vec![TOPIC]).await?.is_empty() {
        admin.create(TOPIC.to_string(), false, TopicSpec::new_computed(3, 1, None)).await?;
    }

    let config = TopicProducerConfigBuilder::default().linger(Duration::from_millis(10)).batch_size(16_384).build()?;
    let producer = fluvio.topic_producer_with_config(TOPIC, config).await?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut sent = Vec::new();
    while let Some(line) = lines.next_line().await? {
        let Some((customer, _)) = line.split_once(',') else {
            eprintln!("skipping {line:?}: expected customer,amount");
            continue;
        };
        let key = RecordKey::from(customer.to_string());
        sent.push(producer.send(key, line.clone()).await?);
    }
    producer.flush().await?;
    for output in sent {
        let metadata = output.wait().await?;
        eprintln!("stored at partition {} offset {}", metadata.partition_id(), metadata.offset());
    }

    let config = ConsumerConfigExtBuilder::default()
        .topic(TOPIC)
        .offset_start(Offset::beginning())
        .offset_consumer("order-totals")
        .offset_strategy(OffsetManagementStrategy::Manual)
        .disable_continuous(true)
        .build()?;
    let mut stream = fluvio.consumer_with_config(config).await?;
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    while let Some(record) = stream.next().await {
        let record = record?;
        let customer = record.get_key().map(|key| key.as_utf8_lossy_string().into_owned()).unwrap_or_default();
        let value = record.get_value().as_utf8_lossy_string();
        let amount: u64 = value.rsplit(',').next().and_then(|amount| amount.trim().parse().ok()).unwrap_or(0);
        *totals.entry(customer).or_default() += amount;
    }
    stream.offset_commit().await?;
    stream.offset_flush().await?;
    for (customer, total) in totals {
        println!("{customer} {total}");
    }
    Ok(())
}
