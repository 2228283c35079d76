//! The JetStream backend against a real three-node NATS cluster on
//! loopback, with real `fluvio-server` processes in front of it: node and
//! server crashes, several writers, the shared registry and bad input.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{ServerProcess, data_dir, from_beginning, read_all, values, wasm};
use dev_support::services::NatsCluster;
use fluvio_client::protocol::{ErrorCode, RetentionSpec};
use fluvio_client::{
    ConsumerConfig, DeliverySemantic, Fluvio, OffsetSpec, ProduceOutput, ProducerConfig, RecordKey,
    SmartModuleInvocation, TopicProducer,
};
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
    let mut pending = send_numbered(&producer, prefix, 0..count).await;
    producer.flush().await.expect("flush");
    acknowledged(&mut pending).await
}

/// Sends records `PREFIX-i` for each `i` of `numbers`, without waiting for
/// their acknowledgements.
async fn send_numbered(
    producer: &TopicProducer,
    prefix: &str,
    numbers: std::ops::Range<usize>,
) -> Vec<(ProduceOutput, String)> {
    let mut pending = Vec::new();
    for i in numbers {
        let value = format!("{prefix}-{i}");
        pending.push((producer.send(RecordKey::NULL, value.clone()).await.expect("send"), value));
    }
    pending
}

/// Waits for each record sent and returns its acknowledged offset.
async fn acknowledged(pending: &mut Vec<(ProduceOutput, String)>) -> Vec<(i64, String)> {
    let mut acknowledged = Vec::new();
    for (output, value) in pending.drain(..) {
        let offset = output.wait().await.expect("acknowledged").stored_offset().expect("not filtered");
        acknowledged.push((offset, value));
    }
    acknowledged
}

/// Every record of a topic's partition 0, checked to be at dense offsets
/// from 0.
async fn read_dense(fluvio: &Fluvio, topic: &str) -> Vec<String> {
    let records = read_all(fluvio, topic, from_beginning()).await;
    for (i, record) in records.iter().enumerate() {
        if record.offset != i as i64 {
            let around: Vec<(i64, &[u8])> = records[i.saturating_sub(3)..(i + 3).min(records.len())]
                .iter()
                .map(|r| (r.offset, &r.value[..]))
                .collect();
            panic!("offsets are dense from 0: record {i} has offset {}; around it: {around:?}", record.offset);
        }
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
    // The node that leads the stream, which the server sends its appends
    // to: a majority of two remains, and elects a new leader.
    let leader = stream_leader(&cluster, "orders").await;
    cluster.kill9(leader);
    let after = produce_numbered(&fluvio, "orders", "after", 3000).await;

    let stored = read_dense(&fluvio, "orders").await;
    let expected: Vec<String> = before.iter().chain(&after).map(|(_, v)| v.clone()).collect();
    assert_eq!(stored, expected, "every acknowledged record, once, in order");
    for (offset, value) in before.iter().chain(&after) {
        assert_eq!(&stored[*offset as usize], value, "the acknowledged offset holds the record");
    }
    cluster.restart(leader);
}

/// The node that leads the stream of a topic's partition 0.
async fn stream_leader(cluster: &NatsCluster, topic: &str) -> usize {
    partition_leader(cluster, topic, 0).await
}

/// The node that leads the stream of a topic's partition.
async fn partition_leader(cluster: &NatsCluster, topic: &str, partition: u32) -> usize {
    let urls: Vec<String> = cluster.urls().split(',').map(str::to_string).collect();
    let js = async_nats::jetstream::new(async_nats::connect(urls).await.expect("connect to the cluster"));
    let stream = fluvio_server::storage::jetstream::stream_name(topic, partition);
    let mut info = js.get_stream(&stream).await.expect("the topic's stream").info().await.expect("info").clone();
    let leader = info.cluster.take().and_then(|cluster| cluster.leader).expect("the stream has a leader");
    (0..cluster.node_count()).find(|&node| cluster.node_name(node) == leader).expect("the leader is one of the nodes")
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

/// Produces from `producers` producers at once through one client, `count`
/// records each (`PREFIXp-i` for producer `p`), each producer flushing
/// every 25 records: a server has the appends of all of them to one
/// partition in flight together, wave after wave. Counts the records
/// acknowledged in `progress`, and returns the acknowledged offset of each.
async fn produce_from_several(
    fluvio: &Fluvio,
    topic: &str,
    prefix: &str,
    (producers, count): (usize, usize),
    progress: &AtomicUsize,
) -> Vec<(i64, String)> {
    let each = (0..producers).map(|p| async move {
        let producer = fluvio.topic_producer(topic).await.expect("producer");
        let prefix = format!("{prefix}{p}");
        let mut stored = Vec::new();
        for start in (0..count).step_by(25) {
            let wave = start..(start + 25).min(count);
            let mut pending = send_numbered(&producer, &prefix, wave.clone()).await;
            producer.flush().await.expect("flush");
            stored.extend(acknowledged(&mut pending).await);
            progress.fetch_add(wave.len(), Ordering::Relaxed);
        }
        stored
    });
    futures::future::join_all(each).await.into_iter().flatten().collect()
}

/// Checks that every acknowledged record is stored once, at the offset it
/// was acknowledged with, and that each producer's records (`PREFIX-i`)
/// are stored in their order.
fn assert_stored_once_in_order(stored: &[String], acknowledged: &[(i64, String)], prefixes: &[String], count: usize) {
    for (offset, value) in acknowledged {
        assert_eq!(&stored[*offset as usize], value, "the acknowledged offset holds the record");
    }
    let distinct: BTreeSet<&String> = stored.iter().collect();
    assert_eq!(distinct.len(), stored.len(), "no record stored twice");
    for prefix in prefixes {
        let mine: Vec<&String> = stored.iter().filter(|v| v.starts_with(&format!("{prefix}-"))).collect();
        let expected: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
        if let Some(first) = (0..mine.len().max(count)).find(|&i| mine.get(i).copied() != expected.get(i)) {
            let around = first.saturating_sub(3)..(first + 8).min(mine.len());
            panic!(
                "producer {prefix}'s records in its order, {} of {count} stored: record {first} is {:?}; stored around it: {:?}",
                mine.len(),
                mine.get(first),
                &mine[around]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_in_flight_together_on_two_servers_keep_offsets_dense_and_producers_in_order() {
    const PRODUCERS: usize = 4;
    const RECORDS: usize = 1000;
    let cluster = NatsCluster::start(3);
    let server_a = server_on(&cluster, "js-pipelines-a");
    let server_b = server_on(&cluster, "js-pipelines-b");
    let fluvio_a = server_a.client().await;
    let fluvio_b = server_b.client().await;
    fluvio_a.create_replicated_topic("shared", 1, 3, RetentionSpec::default()).await.expect("create");

    // Each server keeps its producers' appends in flight together, and the
    // other server's appends keep taking the sequences they expected.
    let progress = AtomicUsize::new(0);
    let (from_a, from_b) = tokio::join!(
        produce_from_several(&fluvio_a, "shared", "a", (PRODUCERS, RECORDS), &progress),
        produce_from_several(&fluvio_b, "shared", "b", (PRODUCERS, RECORDS), &progress)
    );
    let total = 2 * PRODUCERS * RECORDS;
    let acknowledged: Vec<(i64, String)> = from_a.into_iter().chain(from_b).collect();
    let offsets: BTreeSet<i64> = acknowledged.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(offsets.len(), total, "no offset handed out twice");
    let prefixes: Vec<String> =
        ["a", "b"].iter().flat_map(|s| (0..PRODUCERS).map(move |p| format!("{s}{p}"))).collect();
    for fluvio in [&fluvio_a, &fluvio_b] {
        let stored = read_dense(fluvio, "shared").await;
        assert_eq!(stored.len(), total);
        assert_stored_once_in_order(&stored, &acknowledged, &prefixes, RECORDS);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_leader_killed_under_appends_in_flight_loses_and_repeats_nothing() {
    const PRODUCERS: usize = 4;
    const RECORDS: usize = 1000;
    let mut cluster = NatsCluster::start(3);
    let server = server_on(&cluster, "js-pipeline-leader-kill");
    let fluvio = server.client().await;
    fluvio.create_replicated_topic("orders", 1, 3, RetentionSpec::default()).await.expect("create -r 3");
    produce_numbered(&fluvio, "orders", "warm-up", 1).await;
    let leader = stream_leader(&cluster, "orders").await;

    // The leader goes while appends are in flight: those sent to it fail or
    // time out, and are sent again (through the producers' retries and the
    // server's own) until a new leader takes them.
    let progress = AtomicUsize::new(0);
    let producing = produce_from_several(&fluvio, "orders", "p", (PRODUCERS, RECORDS), &progress);
    let killing = async {
        while progress.load(Ordering::Relaxed) < PRODUCERS * RECORDS / 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cluster.kill9(leader);
        progress.load(Ordering::Relaxed)
    };
    let (acknowledged, acknowledged_before_the_kill) = tokio::join!(producing, killing);
    assert!(acknowledged_before_the_kill < PRODUCERS * RECORDS, "the leader went while records were produced");
    assert_eq!(acknowledged.len(), PRODUCERS * RECORDS, "every record acknowledged");

    let stored = read_dense(&fluvio, "orders").await;
    assert_eq!(stored.len(), 1 + PRODUCERS * RECORDS, "every record stored once");
    let prefixes: Vec<String> = (0..PRODUCERS).map(|p| format!("p{p}")).collect();
    assert_stored_once_in_order(&stored[1..], &[], &prefixes, RECORDS);
    for (offset, value) in &acknowledged {
        assert_eq!(&stored[*offset as usize], value, "the acknowledged offset holds the record");
    }
    cluster.restart(leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_with_batches_in_flight_keeps_its_order_when_the_stream_leader_is_killed() {
    const RECORDS: usize = 20_000;
    let mut cluster = NatsCluster::start(3);
    let server = server_on(&cluster, "js-producer-in-flight-leader-kill");
    let fluvio = server.client().await;
    fluvio.create_replicated_topic("orders", 1, 3, RetentionSpec::default()).await.expect("create -r 3");
    produce_numbered(&fluvio, "orders", "warm-up", 1).await;
    let leader = stream_leader(&cluster, "orders").await;

    // Small batches, four in flight: the leader goes with several of them
    // on their way, and some behind a failed one are refused and sent again.
    let config = ProducerConfig {
        batch_bytes: 2 << 10,
        max_batches_in_flight: 4,
        linger: Duration::from_millis(1),
        ..Default::default()
    };
    let producer = fluvio.topic_producer_with("orders", config).await.expect("producer");
    let mut pending = send_numbered(&producer, "p", 0..RECORDS / 4).await;
    // What is queued so far is on its way or stored.
    cluster.kill9(leader);
    pending.extend(send_numbered(&producer, "p", RECORDS / 4..RECORDS).await);
    producer.flush().await.expect("flush");
    let acknowledged = acknowledged(&mut pending).await;

    let stored = read_dense(&fluvio, "orders").await;
    assert_eq!(stored.len(), 1 + RECORDS, "every record stored once");
    assert_stored_once_in_order(&stored[1..], &[], &["p".to_string()], RECORDS);
    for (offset, value) in &acknowledged {
        assert_eq!(&stored[*offset as usize], value, "the acknowledged offset holds the record");
    }
    cluster.restart(leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_move_to_the_other_server_when_theirs_is_killed() {
    let cluster = NatsCluster::start(3);
    let mut server_a = server_on(&cluster, "js-failover-a");
    let server_b = server_on(&cluster, "js-failover-b");
    let fluvio = Fluvio::connect_to(&format!("{},{}", server_a.addr, server_b.addr)).await.expect("connect");
    assert_eq!(fluvio.addr(), server_a.addr, "the first address is used first");
    fluvio.create_replicated_topic("payments", 1, 3, RetentionSpec::default()).await.expect("create");

    let consumer = {
        let fluvio = fluvio.clone();
        tokio::spawn(async move {
            let config = ConsumerConfig { offset: OffsetSpec::Beginning, continuous: true, ..Default::default() };
            let mut stream = fluvio.consumer_stream("payments", config).await.expect("stream");
            let mut seen = Vec::new();
            while seen.len() < 6000 {
                let record = tokio::time::timeout(Duration::from_secs(60), stream.next())
                    .await
                    .expect("records keep coming")
                    .expect("the stream goes on")
                    .expect("a record, not an error");
                seen.push((record.offset, String::from_utf8(record.value.to_vec()).unwrap()));
            }
            seen
        })
    };
    let config = ProducerConfig { linger: Duration::from_millis(1), batch_bytes: 2048, ..Default::default() };
    let producer = fluvio.topic_producer_with("payments", config).await.expect("producer");
    let mut pending = Vec::new();
    for i in 0..6000 {
        if i == 3000 {
            // Batches are in flight: the producer resends what was not
            // acknowledged, through B.
            server_a.kill9();
        }
        let value = format!("p-{i}");
        pending.push((producer.send(RecordKey::NULL, value.clone()).await.expect("send"), value));
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    producer.flush().await.expect("flush through B");
    let mut acknowledged = Vec::new();
    for (output, value) in pending {
        acknowledged.push((output.wait().await.expect("acknowledged").stored_offset().expect("not filtered"), value));
    }
    assert_eq!(fluvio.addr(), server_b.addr, "the client moved to B");

    let stored = read_dense(&fluvio, "payments").await;
    let expected: Vec<String> = (0..6000).map(|i| format!("p-{i}")).collect();
    assert_eq!(stored, expected, "every record once, in order: nothing lost, nothing stored twice");
    for (offset, value) in &acknowledged {
        assert_eq!(&stored[*offset as usize], value, "acknowledged at the offset it holds");
    }
    let seen = consumer.await.expect("the consumer finished");
    let offsets: Vec<i64> = seen.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(offsets, (0..6000).collect::<Vec<_>>(), "the consumer saw every offset once");
    assert_eq!(seen.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smartmodule_registered_through_one_server_runs_on_another() {
    let cluster = NatsCluster::start(3);
    let server_a = server_on(&cluster, "js-registry-a");
    let server_b = server_on(&cluster, "js-registry-b");
    let fluvio_a = server_a.client().await;
    let fluvio_b = server_b.client().await;
    fluvio_a.create_replicated_topic("fruit", 1, 3, RetentionSpec::default()).await.expect("create");
    common::produce(&fluvio_a, "fruit", &["apple", "cherry", "banana", "kiwi", "grape"]).await;

    fluvio_a.create_smartmodule("keep-a", wasm("my-filter")).await.expect("register through A");
    let listed: Vec<String> = fluvio_b.list_smartmodules().await.unwrap().into_iter().map(|m| m.name).collect();
    assert_eq!(listed, ["keep-a"], "B lists the module registered through A");

    let filtered = from_beginning().smartmodule(SmartModuleInvocation::predefined("keep-a"));
    let on_a = values(&read_all(&fluvio_a, "fruit", filtered.clone()).await);
    let on_b = values(&read_all(&fluvio_b, "fruit", filtered.clone()).await);
    assert_eq!(on_a, ["apple", "banana", "grape"]);
    assert_eq!(on_b, on_a, "the same filter gives the same output on both servers");

    // Registered twice through another server: refused, as on one server.
    let again = fluvio_b.create_smartmodule("keep-a", wasm("my-filter")).await.unwrap_err();
    assert_eq!(again.code(), Some(ErrorCode::SmartModuleExists), "{again}");

    // Deleted through B: gone for A too, once A has seen the deletion.
    fluvio_b.delete_smartmodule("keep-a").await.expect("delete through B");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stream = fluvio_a.consumer_stream("fruit", filtered.clone()).await.expect("stream request sent");
        let first = stream.collect::<Vec<_>>().await;
        match first.first() {
            Some(Err(error)) if error.code() == Some(ErrorCode::SmartModuleNotFound) => break,
            _ => assert!(tokio::time::Instant::now() < deadline, "A still runs a module deleted through B"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(fluvio_a.list_smartmodules().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_batch_is_stored_once_and_answered_with_its_first_offsets() {
    use fluvio_client::protocol::requests::{ProduceRequest, ProduceResponse};
    use fluvio_client::protocol::{BatchBuilder, Frame, ProducerStamp};

    let cluster = NatsCluster::start(3);
    let server_a = server_on(&cluster, "js-dedup-a");
    let server_b = server_on(&cluster, "js-dedup-b");
    let fluvio = server_a.client().await;
    fluvio.create_replicated_topic("once", 1, 3, RetentionSpec::default()).await.expect("create");
    common::produce(&fluvio, "once", &["first"]).await;

    let mut batch = BatchBuilder::new(0, 0);
    batch.push_value(None, b"resent");
    let batch = batch.finish().into_bytes();
    let stamp = ProducerStamp { id: 0x5eed, sequence: 7 };
    let mut offsets = Vec::new();
    // The same batch, as a producer resends it after losing the answer:
    // to the same server, then to the other.
    for addr in [&server_a.addr, &server_a.addr, &server_b.addr] {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = ProduceRequest {
            topic: "once".into(),
            partition: 0,
            producer: Some(stamp),
            follows: None,
            batch: batch.clone(),
        };
        Frame::request(1, request).write(&mut socket).await.unwrap();
        let answer = Frame::read(&mut socket, 1 << 20).await.unwrap();
        offsets.push(answer.control::<ProduceResponse>().expect("a produce response").base_offset);
    }
    assert_eq!(offsets, [1, 1, 1], "answered with the offset it got the first time");
    // The next batch of that producer is new.
    let mut socket = tokio::net::TcpStream::connect(&server_b.addr).await.unwrap();
    let stamp = Some(ProducerStamp { sequence: 8, ..stamp });
    let request =
        ProduceRequest { topic: "once".into(), partition: 0, producer: stamp, follows: None, batch: batch.clone() };
    Frame::request(2, request).write(&mut socket).await.unwrap();
    let answer = Frame::read(&mut socket, 1 << 20).await.unwrap();
    assert_eq!(answer.control::<ProduceResponse>().unwrap().base_offset, 2);
    assert_eq!(read_dense(&fluvio, "once").await, ["first", "resent", "resent"]);
}

/// A batch that failed before it had a place in its partition (here the
/// server could not open the partition: every NATS node hangs) is noted by
/// the connection, and the same producer's batch sent behind it is refused
/// even once the cluster answers again: stored, it would go ahead of the
/// failed one's retry. Sent again in their order, both are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_behind_one_that_failed_before_its_place_is_refused_until_that_one_is_sent_again() {
    use fluvio_client::protocol::requests::{ProduceRequest, ProduceResponse};
    use fluvio_client::protocol::{ApiKind, BatchBuilder, ErrorResponse, Frame, ProducerStamp, RESPONSE_BIT};

    let cluster = NatsCluster::start(3);
    let server_a = server_on(&cluster, "js-refuse-a");
    let server_b = server_on(&cluster, "js-refuse-b");
    // Made through B, so that A has not looked the topic up yet.
    let through_b = server_b.client().await;
    through_b.create_replicated_topic("in-turn", 1, 3, RetentionSpec::default()).await.expect("create");

    let batch_of = |value: &str| {
        let mut batch = BatchBuilder::new(0, 0);
        batch.push_value(None, value.as_bytes());
        batch.finish().into_bytes()
    };
    let request = |sequence: u64, follows: Option<u64>, value: &str| ProduceRequest {
        topic: "in-turn".into(),
        partition: 0,
        producer: Some(ProducerStamp { id: 0xbe11, sequence }),
        follows,
        batch: batch_of(value),
    };
    let mut socket = tokio::net::TcpStream::connect(&server_a.addr).await.unwrap();
    let mut correlation = 0;
    let mut send = async |request: ProduceRequest| {
        correlation += 1;
        Frame::request(correlation, request).write(&mut socket).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(60), Frame::read(&mut socket, 1 << 20))
            .await
            .expect("an answer within 60 s")
            .unwrap();
        assert_eq!(answer.correlation_id, correlation);
        if answer.kind == ApiKind::Error as u16 | RESPONSE_BIT {
            Err(answer.control::<ErrorResponse>().expect("an error answer"))
        } else {
            Ok(answer.control::<ProduceResponse>().expect("a produce response").base_offset)
        }
    };

    for node in 0..3 {
        cluster.pause(node);
    }
    let failed = send(request(0, None, "first")).await.expect_err("no node answers");
    for node in 0..3 {
        cluster.resume(node);
    }
    assert_eq!(failed.code, ErrorCode::Unavailable, "{}", failed.message);
    // Opening the partition on A failed: before the batch had a place, so
    // the connection, not the partition's append task, noted it. Whether
    // at the topic's settings or at the stream's state depends on whether
    // A had the settings from the cluster before the nodes hung (on a
    // loaded machine, not always).
    assert!(
        failed.message.contains("could not read the state of stream")
            || failed.message.contains("could not read topic settings"),
        "{}",
        failed.message
    );

    // Sent behind the failed batch (as it was, before the failure was
    // answered): refused, with the cluster answering again.
    let refused = send(request(1, Some(0), "second")).await.expect_err("refused");
    assert_eq!(refused.code, ErrorCode::Unavailable);
    assert!(refused.message.contains("batch 0 sent before this one failed"), "{}", refused.message);

    // Again in their order: the first until the cluster has its leaders
    // back, then the second.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let first_offset = loop {
        match send(request(0, None, "first")).await {
            Ok(offset) => break offset,
            Err(error) if error.code == ErrorCode::Unavailable && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("the first batch sent again: {error:?}"),
        }
    };
    let second_offset = send(request(1, None, "second")).await.expect("the second, after the first");
    assert_eq!((first_offset, second_offset), (0, 1));
    assert_eq!(read_dense(&through_b, "in-turn").await, ["first", "second"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_copies_than_the_cluster_has_servers_is_a_clear_error() {
    let cluster = NatsCluster::start(3);
    let server = server_on(&cluster, "js-replicas");
    let fluvio = server.client().await;
    for replication in [5, 9, 0] {
        let error = fluvio
            .create_replicated_topic("too-many", 2, replication, RetentionSpec::default())
            .await
            .expect_err("more copies than servers");
        assert_eq!(error.code(), Some(ErrorCode::InvalidRequest), "{error}");
        assert!(error.to_string().contains(&format!("cannot have {replication} copies")), "{error}");
    }
    assert!(fluvio.list_topics().await.unwrap().is_empty(), "nothing is left of the refused topic");
    fluvio.create_replicated_topic("too-many", 2, 3, RetentionSpec::default()).await.expect("-r 3 fits");
    let topics = fluvio.list_topics().await.unwrap();
    assert_eq!((topics[0].partitions, topics[0].replication), (2, 3));
}

#[test]
fn a_duplicate_window_shorter_than_the_retry_horizon_is_refused_at_start() {
    let dir = data_dir("js-short-window");
    // No cluster is needed: the setting is refused before any is reached.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fluvio-server"))
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .args(["--jetstream", "nats://127.0.0.1:1", "--duplicate-window-secs", "10"])
        .output()
        .expect("the server runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("stored twice") && stderr.contains("--duplicate-window-secs 30"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_at_start_is_reported_and_retried() {
    let mut cluster = NatsCluster::start(1);
    cluster.kill9(0);
    let dir = data_dir("js-unreachable");
    std::fs::create_dir_all(&dir).unwrap();
    let log_path = dir.join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    // The server retries; it starts listening once NATS is back.
    let starting = {
        let dir = dir.clone();
        let url = cluster.url(0);
        std::thread::spawn(move || ServerProcess::start_with_stderr(&dir, &["--jetstream", &url], log))
    };
    let wanted = format!("cannot reach the JetStream cluster at {}", cluster.url(0));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&log_path).unwrap().matches(&wanted).count() < 2 {
        assert!(std::time::Instant::now() < deadline, "no clear, repeated error in the log");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(std::fs::read_to_string(&log_path).unwrap().contains("is nats-server running there"));
    cluster.restart(0);
    let server = starting.join().expect("the server started once NATS was back");
    let fluvio = server.client().await;
    fluvio.create_topic("late", 1).await.expect("serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_message_that_is_not_a_batch_is_skipped_and_named() {
    let cluster = NatsCluster::start(3);
    let dir = data_dir("js-garbage");
    std::fs::create_dir_all(&dir).unwrap();
    let log_path = dir.join("server.log");
    let server = ServerProcess::start_with_stderr(
        &dir,
        &["--jetstream", &cluster.urls()],
        std::fs::File::create(&log_path).unwrap(),
    );
    let fluvio = server.client().await;
    fluvio.create_replicated_topic("mixed", 1, 3, RetentionSpec::default()).await.expect("create");
    common::produce(&fluvio, "mixed", &["one", "two"]).await;

    // Something else writes to the partition's subject.
    let nats = async_nats::connect(cluster.url(0)).await.unwrap();
    let js = async_nats::jetstream::new(nats);
    let subject = fluvio_server::storage::jetstream::data_subject("mixed", 0);
    js.publish(subject, "not a batch".into()).await.unwrap().await.expect("stored by JetStream");

    common::produce(&fluvio, "mixed", &["three"]).await;
    let records = read_all(&fluvio, "mixed", from_beginning()).await;
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(values(&records), ["one", "two", "three"]);
    assert_eq!(offsets, [0, 1, 2], "offsets go on past the foreign message");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let stream = fluvio_server::storage::jetstream::stream_name("mixed", 0);
    assert!(log.contains(&format!("message 2 of JetStream stream {stream} is not a valid record batch")), "{log}");
    // A follower of the partition also passes over it.
    let config = ConsumerConfig { offset: OffsetSpec::Absolute(1), continuous: true, ..Default::default() };
    let mut follower = fluvio.consumer_stream("mixed", config).await.unwrap();
    common::produce(&fluvio, "mixed", &["four"]).await;
    let mut followed = Vec::new();
    for _ in 0..3 {
        let record = tokio::time::timeout(Duration::from_secs(10), follower.next()).await.unwrap().unwrap().unwrap();
        followed.push(String::from_utf8(record.value.to_vec()).unwrap());
    }
    assert_eq!(followed, ["two", "three", "four"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_go_on_after_retention_removed_every_record() {
    let cluster = NatsCluster::start(3);
    let server_a = server_on(&cluster, "js-aged-a");
    let fluvio_a = server_a.client().await;
    // Kept less than the SDK's retry horizon, a resend could outlive the
    // duplicate window: refused, saying why.
    let too_short = RetentionSpec { max_age_ms: Some(2000), ..Default::default() };
    let error = fluvio_a.create_replicated_topic("too-short", 1, 3, too_short).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::InvalidRequest), "{error}");
    assert!(error.to_string().contains("stored twice"), "{error}");
    let retention = RetentionSpec { max_age_ms: Some(30_000), ..Default::default() };
    fluvio_a.create_replicated_topic("short-lived", 1, 3, retention).await.expect("create");
    let written = produce_numbered(&fluvio_a, "short-lived", "old", 50).await;
    assert_eq!(written.last().unwrap().0, 49);

    // Every record ages out; a server that never saw the partition then
    // appends: it must not hand out offsets 0.. again.
    tokio::time::sleep(Duration::from_secs(33)).await;
    let server_b = server_on(&cluster, "js-aged-b");
    let fluvio_b = server_b.client().await;
    let after = produce_numbered(&fluvio_b, "short-lived", "new", 3).await;
    let offsets: Vec<i64> = after.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(offsets, [50, 51, 52], "offsets continue after the removed records");
    let records = read_all(&fluvio_b, "short-lived", from_beginning()).await;
    assert_eq!(values(&records), ["new-0", "new-1", "new-2"]);
    assert_eq!(records[0].offset, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_offsets_committed_through_one_server_resume_on_another() {
    let cluster = NatsCluster::start(3);
    let server_a = server_on(&cluster, "js-offsets-a");
    let server_b = server_on(&cluster, "js-offsets-b");
    let fluvio_a = server_a.client().await;
    let fluvio_b = server_b.client().await;
    fluvio_a.create_replicated_topic("orders.eu", 2, 3, RetentionSpec::default()).await.expect("create");
    let producer = fluvio_a
        .topic_producer_with(
            "orders.eu",
            ProducerConfig { partition: Some(1), compression: fluvio_client::Compression::Lz4, ..Default::default() },
        )
        .await
        .unwrap();
    for i in 0..6 {
        producer.send(RecordKey::NULL, format!("order-{i}")).await.unwrap();
    }
    producer.flush().await.unwrap();

    let config = ConsumerConfig {
        consumer_id: Some("billing".into()),
        offset_strategy: fluvio_client::OffsetManagementStrategy::Manual,
        ..from_beginning()
    };
    let mut stream = fluvio_a.consumer_stream("orders.eu", config.clone()).await.unwrap();
    for _ in 0..4 {
        stream.next().await.unwrap().unwrap();
    }
    stream.offset_commit().unwrap();
    stream.offset_flush().await.unwrap();
    drop(stream);

    // Another server reads the same stored offset (the topic name has a
    // `.`, which NATS keys use as a separator).
    assert_eq!(fluvio_b.fetch_offset("billing", "orders.eu", 1).await.unwrap(), Some(4));
    assert_eq!(fluvio_b.fetch_offset("billing", "orders.eu", 0).await.unwrap(), None);
    let rest = read_all(&fluvio_b, "orders.eu", config).await;
    assert_eq!(values(&rest), ["order-4", "order-5"]);
    let listed = fluvio_b.list_consumers().await.unwrap();
    let listed: Vec<(&str, &str, u32, i64)> =
        listed.iter().map(|c| (c.consumer.as_str(), c.topic.as_str(), c.partition, c.offset)).collect();
    assert_eq!(listed, [("billing", "orders.eu", 1, 4)]);

    // Deleting the topic forgets its consumers, for every server.
    fluvio_b.delete_topic("orders.eu").await.unwrap();
    assert!(fluvio_a.list_consumers().await.unwrap().is_empty());
    let error = fluvio_a.delete_consumer("billing", None).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::ConsumerNotFound), "{error}");
}

/// Bytes each node received from `fluvio-server` connections so far, by
/// the node's own count (`/connz`).
fn bytes_from_servers(cluster: &NatsCluster) -> Vec<u64> {
    (0..cluster.node_count())
        .map(|node| {
            let connz: serde_json::Value =
                serde_json::from_str(&cluster.monitor(node, "/connz?limit=1024")).expect("connz is JSON");
            connz["connections"]
                .as_array()
                .expect("connz lists connections")
                .iter()
                .filter(|connection| connection["name"] == "fluvio-server")
                .map(|connection| connection["in_bytes"].as_u64().expect("in_bytes"))
                .sum()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_go_straight_to_the_node_that_leads_the_stream() {
    const NODES: usize = 3;
    const RECORDS: usize = 4000;
    const VALUE_BYTES: usize = 250;
    let cluster = NatsCluster::start(NODES);
    let server = server_on(&cluster, "js-leader-appends");
    let fluvio = server.client().await;

    // One-copy topics until their streams are led by at least two nodes:
    // then whichever node the server's main connection is on, some batches
    // would cross it on their way to another node's stream.
    let mut leaders: Vec<(String, String)> = Vec::new();
    let leading_nodes =
        |leaders: &[(String, String)]| leaders.iter().map(|(_, leader)| leader.clone()).collect::<BTreeSet<_>>().len();
    for i in 0..12 {
        let topic = format!("led-{i}");
        fluvio.create_replicated_topic(&topic, 1, 1, RetentionSpec::default()).await.expect("create -r 1");
        let leader = cluster.node_name(stream_leader(&cluster, &topic).await);
        leaders.push((topic, leader));
        if leading_nodes(&leaders) >= 2 {
            break;
        }
    }
    assert!(leading_nodes(&leaders) >= 2, "twelve one-copy streams all on one node: {leaders:?}");

    // Open every partition on the server and let it learn the leaders.
    for (topic, _) in &leaders {
        produce_numbered(&fluvio, topic, "warm-up", 1).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let before = bytes_from_servers(&cluster);
    let value = vec![b'v'; VALUE_BYTES];
    for (topic, _) in &leaders {
        let producer = fluvio.topic_producer(topic.as_str()).await.expect("producer");
        for _ in 0..RECORDS {
            producer.send(RecordKey::NULL, value.clone()).await.expect("send");
        }
        producer.flush().await.expect("flush");
    }
    let after = bytes_from_servers(&cluster);

    // Every topic got the same records, so each costs the same bytes on
    // the wire (values, batch and NATS headers); each node should get
    // that much for each stream it leads, and nothing for the others.
    let received: Vec<u64> = after.iter().zip(&before).map(|(after, before)| after - before).collect();
    let per_topic = received.iter().sum::<u64>() / leaders.len() as u64;
    assert!(per_topic >= (RECORDS * VALUE_BYTES) as u64, "every record reached a node: {received:?}");
    let report = format!("leaders {leaders:?}, bytes received by node {received:?}, {per_topic} bytes per topic");
    for (node, received) in received.iter().enumerate() {
        let name = cluster.node_name(node);
        let led = leaders.iter().filter(|(_, leader)| *leader == name).count() as u64;
        assert!(
            received.abs_diff(led * per_topic) < per_topic / 2,
            "{name} should have got the batches of the {led} stream(s) it leads, no more: {report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_stuck_on_one_node_does_not_hold_up_appends_behind_it_on_the_connection() {
    let cluster = NatsCluster::start(3);
    // Only node 0 is named: the server's main connection is there, and it
    // finds the other nodes from the cluster.
    let server = ServerProcess::start(&data_dir("js-side-by-side"), &["--jetstream", &cluster.url(0)]);
    let fluvio = server.client().await;

    // One-copy topics until one is led by node 1 and another by node 2.
    let (mut stuck, mut moving) = (None, None);
    for i in 0..30 {
        let topic = format!("placed-{i}");
        fluvio.create_replicated_topic(&topic, 1, 1, RetentionSpec::default()).await.expect("create -r 1");
        match stream_leader(&cluster, &topic).await {
            1 if stuck.is_none() => stuck = Some(topic),
            2 if moving.is_none() => moving = Some(topic),
            _ => {}
        }
        if stuck.is_some() && moving.is_some() {
            break;
        }
    }
    let (Some(stuck), Some(moving)) = (stuck, moving) else {
        panic!("thirty one-copy streams, none led by node 1 or 2")
    };
    // Open both partitions on the server and let it learn their leaders.
    for topic in [&stuck, &moving] {
        produce_numbered(&fluvio, topic, "warm-up", 1).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // A reader on another connection, waiting after the warm-up record.
    let reader = server.client().await;
    let config = ConsumerConfig { offset: OffsetSpec::Absolute(1), continuous: true, ..Default::default() };
    let mut stream = reader.consumer_stream(&moving, config).await.expect("stream");

    // The node leading `stuck` hangs; an append to it waits on it until
    // the server's JetStream request times out (5 s), and is then answered
    // with an error, which this producer does not retry.
    // Both producers exist first: a request other than a produce waits for
    // the appends before it on the connection.
    let once = ProducerConfig { delivery_semantic: DeliverySemantic::AtMostOnce, ..Default::default() };
    let stuck_producer = fluvio.topic_producer_with(stuck.as_str(), once).await.expect("producer");
    let moving_producer = fluvio.topic_producer(moving.as_str()).await.expect("producer");
    cluster.pause(1);
    let stuck_append = tokio::spawn(async move {
        stuck_producer.send(RecordKey::NULL, "waits").await?.wait().await?;
        Ok::<_, fluvio_client::FluvioError>(())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Behind it on the same connection, an append to the other node's stream.
    let moving_append = tokio::spawn(async move {
        moving_producer.send(RecordKey::NULL, "goes by").await?.wait().await?;
        Ok::<_, fluvio_client::FluvioError>(())
    });

    // The reader sees the second append stored while
    // the first still waits (answers keep their order, so the producer
    // hears of it only after the first is answered). Handled one after the
    // other, the second would start only once the first had been answered.
    let record = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("the second append was stored while the first waited")
        .expect("a record")
        .expect("readable");
    assert_eq!(record.value(), b"goes by");
    assert!(!stuck_append.is_finished(), "the first append was still waiting on the stopped node");

    cluster.resume(1);
    let answered = tokio::time::timeout(Duration::from_secs(60), moving_append).await;
    answered.expect("the second append is answered once the first is").expect("task").expect("acknowledged");
    let _ = tokio::time::timeout(Duration::from_secs(60), stuck_append).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_keeps_writing_its_other_partitions_while_one_waits_on_a_hung_node() {
    let cluster = NatsCluster::start(3);
    // Only node 0 is named: the server's main connection is there.
    let server = ServerProcess::start(&data_dir("js-producer-partitions"), &["--jetstream", &cluster.url(0)]);
    let fluvio = server.client().await;

    // A two-partition, one-copy topic whose partition 0 is led by node 1 or
    // 2 (not the server's main node) and partition 1 by another node.
    let mut chosen = None;
    for i in 0..30 {
        let topic = format!("split-{i}");
        fluvio.create_replicated_topic(&topic, 2, 1, RetentionSpec::default()).await.expect("create -r 1");
        let leaders = (partition_leader(&cluster, &topic, 0).await, partition_leader(&cluster, &topic, 1).await);
        if leaders.0 != 0 && leaders.0 != leaders.1 {
            chosen = Some((topic, leaders.0));
            break;
        }
    }
    let (topic, stuck_node) = chosen.expect("thirty two-partition topics, none placed as needed");
    let key_for = |partition: u32| {
        (0..)
            .map(|k| format!("key-{k}"))
            .find(|key| fluvio_client::partition_for_key(key.as_bytes(), 2) == partition)
            .unwrap()
    };
    let (stuck_key, moving_key) = (key_for(0), key_for(1));
    // Open both partitions on the server and let it learn their leaders.
    let once = ProducerConfig { delivery_semantic: DeliverySemantic::AtMostOnce, ..Default::default() };
    let producer = fluvio.topic_producer_with(topic.as_str(), once).await.expect("producer");
    for key in [&stuck_key, &moving_key] {
        producer.send(key.as_str(), "warm-up").await.unwrap().wait().await.expect("warm-up stored");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reader = server.client().await;
    let config =
        ConsumerConfig { offset: OffsetSpec::Absolute(1), partitions: vec![1], continuous: true, ..Default::default() };
    let mut stream = reader.consumer_stream(&topic, config).await.expect("stream");

    // The node leading partition 0 hangs: the record for it waits until
    // the server's JetStream request times out (5 s).
    cluster.pause(stuck_node);
    let stuck = producer.send(stuck_key.as_str(), "waits").await.unwrap();
    let stuck = tokio::spawn(stuck.wait());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moving = producer.send(moving_key.as_str(), "goes by").await.unwrap();

    // Partition 1's record is stored, and acknowledged, while partition 0's
    // still waits. With all of a producer's partitions sent in rounds, it
    // would go only once the round's stuck batch had been answered.
    let record = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("partition 1's record was stored while partition 0's waited")
        .expect("a record")
        .expect("readable");
    assert_eq!(record.value(), b"goes by");
    let acknowledged = tokio::time::timeout(Duration::from_secs(3), moving.wait()).await;
    assert!(!stuck.is_finished(), "partition 0's record was still waiting on the stopped node");
    acknowledged.expect("acknowledged while partition 0 waits").expect("stored");

    cluster.resume(stuck_node);
    let _ = tokio::time::timeout(Duration::from_secs(60), stuck).await;
    // The producer goes on writing both partitions.
    for key in [&stuck_key, &moving_key] {
        let written = producer.send(key.as_str(), "after").await.unwrap().wait();
        tokio::time::timeout(Duration::from_secs(60), written)
            .await
            .expect("answered")
            .expect("stored after the node is back");
    }
}

/// Servers started together on a cluster that has only just formed all
/// come up: what the cluster answers while it settles (a timeout, no
/// leader yet for a bucket's stream) and what the other servers do at the
/// same time are waited out with backoff, never a reason to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_started_together_on_a_fresh_cluster_all_serve() {
    for round in 0..2 {
        let cluster = NatsCluster::start(3);
        let starting: Vec<_> = (0..3)
            .map(|i| {
                let urls = cluster.urls();
                let dir = data_dir(&format!("js-together-{round}-{i}"));
                std::thread::spawn(move || ServerProcess::start(&dir, &["--jetstream", &urls]))
            })
            .collect();
        let servers: Vec<ServerProcess> =
            starting.into_iter().map(|thread| thread.join().expect("every server starts")).collect();
        for (i, server) in servers.iter().enumerate() {
            let fluvio = server.client().await;
            let topic = format!("together-{i}");
            fluvio.create_topic(&topic, 1).await.unwrap_or_else(|error| panic!("round {round}, server {i}: {error}"));
            assert!(fluvio.list_smartmodules().await.is_ok(), "round {round}, server {i}: the registry serves");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_sharing_the_cluster_is_listed_until_it_stops() {
    use fluvio_client::metadata::spu::SpuSpec;

    let cluster = NatsCluster::start(3);
    let server_a = ServerProcess::start(&data_dir("js-spus-a"), &["--jetstream", &cluster.urls(), "--id", "1"]);
    let mut server_b = ServerProcess::start(&data_dir("js-spus-b"), &["--jetstream", &cluster.urls(), "--id", "2"]);
    let fluvio = Fluvio::connect_to(&server_a.addr).await.expect("connect");

    // B's first heartbeat may lag its start by a moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let servers = loop {
        let servers = fluvio.list_servers().await.expect("list servers");
        if servers.len() == 2 || tokio::time::Instant::now() > deadline {
            break servers;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let listed: Vec<(i32, &str)> = servers.iter().map(|server| (server.id, server.address.as_str())).collect();
    assert_eq!(listed, [(1, server_a.addr.as_str()), (2, server_b.addr.as_str())]);
    assert!(servers.iter().all(|server| server.version == env!("CARGO_PKG_VERSION")), "{servers:?}");

    // Fluvio's watch: the first item holds both; B's death is a deletion
    // once its heartbeat expires.
    let admin = fluvio.admin().await;
    let mut spus = admin.watch_spus();
    let (first, _) = spus.next().await.expect("a first item").parts();
    let mut ids: Vec<i32> = first.iter().map(|spu| spu.spec.id).collect();
    ids.sort();
    assert_eq!(ids, [1, 2]);
    server_b.kill9();
    let gone = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (_, deleted) = spus.next().await.expect("the watch goes on").parts();
            if !deleted.is_empty() {
                return deleted;
            }
        }
    })
    .await
    .expect("B is dropped within seconds of its last heartbeat");
    assert_eq!(gone.iter().map(|spu| spu.spec.id).collect::<Vec<_>>(), [2]);
    assert_eq!(gone[0].name, server_b.addr);
    let left = admin.all::<SpuSpec>().await.expect("list SPUs");
    assert_eq!(left.iter().map(|spu| (spu.spec.id, spu.status.is_online())).collect::<Vec<_>>(), [(1, true)]);
}
