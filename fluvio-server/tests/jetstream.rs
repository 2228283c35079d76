//! The JetStream backend against a real three-node NATS cluster on
//! loopback, with real `fluvio-server` processes in front of it: node and
//! server crashes, several writers, the shared registry and bad input.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ServerProcess, data_dir, from_beginning, read_all, values, wasm};
use dev_support::services::NatsCluster;
use fluvio_client::protocol::{ErrorCode, RetentionSpec};
use fluvio_client::{ConsumerConfig, Fluvio, FluvioError, OffsetSpec, ProducerConfig, SmartModuleInvocation};
use futures::StreamExt;

/// A server on the cluster, with a data directory of its own (caches and
/// connectors only).
fn server_on(cluster: &NatsCluster, name: &str) -> ServerProcess {
    ServerProcess::start(&data_dir(name), &["--jetstream", &cluster.urls()])
}

/// Produces `count` records `PREFIX-i` one by one through `producer`, and
/// returns the acknowledged offset of each.
async fn produce_numbered(fluvio: &Fluvio, topic: &str, prefix: &str, count: usize) -> Vec<(i64, String)> {
    let config = ProducerConfig { linger: Duration::from_millis(2), ..Default::default() };
    let producer = fluvio.topic_producer_with(topic, config).await.expect("producer");
    let mut pending = Vec::new();
    for i in 0..count {
        let value = format!("{prefix}-{i}");
        pending.push((producer.send(None::<Vec<u8>>, value.clone()).await.expect("send"), value));
    }
    producer.flush().await.expect("flush");
    let mut acknowledged = Vec::new();
    for (output, value) in pending {
        let offset = output.wait().await.expect("acknowledged").expect("not filtered");
        acknowledged.push((offset, value));
    }
    acknowledged
}

/// Every record of a topic's partition 0, checked to be at dense offsets
/// from 0.
async fn read_dense(fluvio: &Fluvio, topic: &str) -> Vec<String> {
    let records = read_all(fluvio, topic, from_beginning()).await;
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.offset, i as i64, "offsets are dense from 0");
    }
    values(&records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_topic_loses_nothing_when_a_nats_node_is_killed() {
    let mut cluster = NatsCluster::start(3);
    let server = server_on(&cluster, "js-node-kill");
    let fluvio = server.client().await;
    fluvio.create_replicated_topic("orders", 1, 3, RetentionSpec::default()).await.expect("create -r 3");

    let before = produce_numbered(&fluvio, "orders", "before", 3000).await;
    // Whichever node leads the stream, a majority of two remains.
    cluster.kill9(1);
    let after = produce_numbered(&fluvio, "orders", "after", 3000).await;

    let stored = read_dense(&fluvio, "orders").await;
    let expected: Vec<String> = before.iter().chain(&after).map(|(_, v)| v.clone()).collect();
    assert_eq!(stored, expected, "every acknowledged record, once, in order");
    for (offset, value) in before.iter().chain(&after) {
        assert_eq!(&stored[*offset as usize], value, "the acknowledged offset holds the record");
    }
    cluster.restart(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_writing_one_partition_give_dense_unique_offsets() {
    let cluster = NatsCluster::start(3);
    let server_a = server_on(&cluster, "js-two-writers-a");
    let server_b = server_on(&cluster, "js-two-writers-b");
    let fluvio_a = server_a.client().await;
    let fluvio_b = server_b.client().await;
    fluvio_a.create_replicated_topic("shared", 1, 3, RetentionSpec::default()).await.expect("create");

    let (from_a, from_b) = tokio::join!(
        produce_numbered(&fluvio_a, "shared", "a", 4000),
        produce_numbered(&fluvio_b, "shared", "b", 4000)
    );
    let offsets: BTreeSet<i64> = from_a.iter().chain(&from_b).map(|(offset, _)| *offset).collect();
    assert_eq!(offsets.len(), 8000, "no offset handed out twice");
    assert_eq!(offsets.iter().copied().collect::<Vec<_>>(), (0..8000).collect::<Vec<_>>(), "dense");

    // Both servers read the same partition, every record at its offset.
    for fluvio in [&fluvio_a, &fluvio_b] {
        let stored = read_dense(fluvio, "shared").await;
        assert_eq!(stored.len(), 8000);
        for (offset, value) in from_a.iter().chain(&from_b) {
            assert_eq!(&stored[*offset as usize], value);
        }
        // Each producer's records stay in its order.
        for prefix in ["a-", "b-"] {
            let mine: Vec<&String> = stored.iter().filter(|v| v.starts_with(prefix)).collect();
            let expected: Vec<String> = (0..4000).map(|i| format!("{prefix}{i}")).collect();
            assert_eq!(mine, expected.iter().collect::<Vec<_>>());
        }
    }
}
