//! Written against Fluvio's `fluvio` crate API, as a Fluvio application
//! that administers, watches, produces with its own partitioner and
//! consumes with stored offsets would be: only the dependency line in
//! Cargo.toml differs.
//!
//! Prints one line per step, which the test checks.
//!
//! `fluvio-api-tour 127.0.0.1:9003`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fluvio::consumer::{ConsumerConfigExtBuilder, ConsumerStream, OffsetManagementStrategy};
use fluvio::dataplane::link::ErrorCode;
use fluvio::dataplane::record::ConsumerRecord;
use fluvio::metadata::objects::CommonCreateRequest;
use fluvio::metadata::partition::PartitionSpec;
use fluvio::metadata::topic::TopicSpec;
use fluvio::producer::{ProducerError, RetryPolicy, RetryStrategy};
use fluvio::{
    DeliverySemantic, Fluvio, FluvioConfig, FluvioError, Isolation, Offset, PartitionId, Partitioner,
    PartitionerConfig, ProduceCompletionBatchEvent, ProducerCallback, RecordKey, SharedProducerCallback,
    TopicProducerConfigBuilder,
};
use futures::StreamExt;
use futures::future::BoxFuture;

const TOPIC: &str = "tour-events";

/// Partition 1 from its start, committed by hand: a signature as Fluvio
/// programs write it, naming the stream's item.
async fn partition_one(
    fluvio: &Fluvio,
) -> Result<impl ConsumerStream<Item = Result<ConsumerRecord, ErrorCode>>, FluvioError> {
    let config = ConsumerConfigExtBuilder::default()
        .topic(TOPIC)
        .partition(1)
        .offset_start(Offset::beginning())
        .offset_consumer("tour")
        .offset_strategy(OffsetManagementStrategy::Manual)
        .isolation(Isolation::ReadCommitted)
        .disable_continuous(true)
        .build()?;
    fluvio.consumer_with_config(config).await
}

/// Sends a record whose key is a number to that number's partition.
struct ByNumber;

impl Partitioner for ByNumber {
    fn partition(&self, config: &PartitionerConfig, key: Option<&[u8]>, _value: &[u8]) -> PartitionId {
        let number: u32 = key.and_then(|key| std::str::from_utf8(key).ok()?.parse().ok()).unwrap_or(0);
        number % config.partition_count()
    }
}

/// Counts the records of acknowledged batches.
#[derive(Default)]
struct Acknowledged(AtomicU64);

impl ProducerCallback for Acknowledged {
    fn finished(&self, event: ProduceCompletionBatchEvent) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            self.0.fetch_add(event.records_len, Ordering::SeqCst);
            Ok(())
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).ok_or("usage: fluvio-api-tour HOST:PORT")?;
    let fluvio = Fluvio::connect_with_config(&FluvioConfig::new(addr)).await?;
    println!("platform {}", fluvio.platform_version());
    let admin = fluvio.admin().await;
    let spus = admin.watch_spus().next().await.ok_or("the watch ended")?.parts().0;
    let online = spus.iter().filter(|spu| spu.status.is_online()).count();
    println!(
        "{online} SPU online, id {}",
        spus.iter().map(|spu| spu.spec.id.to_string()).collect::<Vec<_>>().join(",")
    );

    // Watch the topics, then create one: the watch sees it.
    let mut topics = admin.watch_topics();
    let first = topics.next().await.ok_or("the watch ended")?;
    println!("watching {} topics", first.parts().0.len());
    let request = CommonCreateRequest { name: TOPIC.to_string(), dry_run: false, ..Default::default() };
    let spec = TopicSpec::new_assigned(vec![(0, vec![5001]), (1, vec![5001]), (2, vec![5001])]);
    admin.create_with_config(request, spec).await?;
    let (created, _) = topics.next().await.ok_or("the watch ended")?.parts();
    println!("watch saw {} created", created.iter().map(|topic| topic.name.as_str()).collect::<Vec<_>>().join(","));
    let listed = admin.list_with_params::<TopicSpec, String>(vec![TOPIC.to_string()], true).await?;
    println!("listed {} with {} partitions", listed[0].name, listed[0].spec.partitions());
    let partitions = admin.list::<PartitionSpec, String>(vec![]).await?;
    println!("partitions {}", partitions.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(","));
    let everything = admin.watch::<TopicSpec>().await?.next().await.ok_or("the watch ended")??;
    println!("watch holds {} topics", everything.inner().all.len());

    match fluvio.topic_producer("no-such-topic").await {
        Err(FluvioError::TopicNotFound(name)) => println!("no topic {name}"),
        other => println!("unexpected: {:?}", other.map(|_| ())),
    }

    let acknowledged = Arc::new(Acknowledged::default());
    let callback: SharedProducerCallback = acknowledged.clone();
    let retries = RetryPolicy { strategy: RetryStrategy::FibonacciBackoff, ..Default::default() };
    let config = TopicProducerConfigBuilder::default()
        .partitioner(Arc::new(ByNumber))
        .max_request_size(64 << 10)
        .batch_queue_size(10)
        .timeout(Duration::from_secs(2))
        .isolation(Isolation::ReadCommitted)
        .delivery_semantic(DeliverySemantic::AtLeastOnce(retries))
        .callback(callback)
        .build()?;
    let producer = fluvio.topic_producer_with_config(TOPIC, config).await?;
    let outputs = producer.send_all((0..6).map(|n| (RecordKey::from(n.to_string()), format!("event {n}")))).await?;
    match producer.send(RecordKey::NULL, vec![0u8; 128 << 10]).await {
        Err(FluvioError::Producer(ProducerError::RecordTooLarge(limit))) => println!("too large for {limit}"),
        other => println!("unexpected: {:?}", other.map(|_| ())),
    }
    producer.flush().await?;
    for output in outputs {
        let stored = output.wait().await?;
        println!("key stored in partition {}", stored.partition_id());
    }
    producer.clear_errors().await;
    let metrics = producer.metrics();
    println!(
        "acknowledged {} records, the callback saw {}",
        metrics.producer_client().records.load(Ordering::SeqCst),
        acknowledged.0.load(Ordering::SeqCst)
    );

    let mut stream = partition_one(&fluvio).await?;
    let mut values = Vec::new();
    while let Some(record) = stream.next().await {
        values.push(record?.get_value().as_utf8_lossy_string().into_owned());
    }
    println!("partition 1 holds {}", values.join(", "));
    stream.offset_commit().await?;
    stream.offset_flush().await?;
    let offsets = fluvio.consumer_offsets().await?;
    let ours: Vec<String> = offsets
        .iter()
        .filter(|offset| offset.consumer_id == "tour")
        .map(|offset| format!("{}/{}@{}", offset.topic, offset.partition, offset.offset))
        .collect();
    println!("stored {}", ours.join(","));
    fluvio.delete_consumer_offset("tour", (TOPIC, 1)).await?;
    let offsets = fluvio.consumer_offsets().await?;
    if !offsets.iter().any(|offset| offset.consumer_id == "tour") {
        println!("offset forgotten");
    }

    admin.delete::<TopicSpec>(TOPIC).await?;
    let (_, deleted) = topics.next().await.ok_or("the watch ended")?.parts();
    println!("watch saw {} deleted", deleted.iter().map(|topic| topic.name.as_str()).collect::<Vec<_>>().join(","));
    Ok(())
}
