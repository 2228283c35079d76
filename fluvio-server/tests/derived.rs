//! Derived topics against real server processes on the local log: exactly
//! once around a kill -9, aggregates that go on across a restart, the
//! error policies, and every refusal at create time.

mod common;

use std::time::Duration;

use common::{ServerProcess, data_dir, from_beginning, read_all, values, wasm};
use fluvio_client::protocol::ErrorCode;
use fluvio_client::protocol::requests::{CreateDerivedTopicRequest, DerivedTopicInfo, PipelineState};
use fluvio_client::{ErrorPolicy, Fluvio, FluvioError, ProducerConfig, RecordKey, SmartModuleInvocation};

fn derive(name: &str, source: &str, transforms: &[&str]) -> CreateDerivedTopicRequest {
    CreateDerivedTopicRequest {
        name: name.into(),
        partitions: 0,
        replication: 1,
        retention: Default::default(),
        source: source.into(),
        transforms: transforms.iter().map(|module| SmartModuleInvocation::predefined(*module)).collect(),
        policy: ErrorPolicy::Fail,
        dead_letter_topic: None,
    }
}

async fn register(fluvio: &Fluvio, modules: &[&str]) {
    for module in modules {
        fluvio.create_smartmodule(module, wasm(module)).await.expect("register");
    }
}

/// Produces keyless `values` to one partition.
async fn produce_to(fluvio: &Fluvio, topic: &str, partition: u32, values: &[String]) {
    let records: Vec<(Option<&str>, &str)> = values.iter().map(|value| (None, value.as_str())).collect();
    produce_records(fluvio, topic, partition, &records).await;
}

/// Produces `(key, value)` records to one partition, in batches of about
/// 100 records, and waits for every acknowledgement.
async fn produce_records(fluvio: &Fluvio, topic: &str, partition: u32, records: &[(Option<&str>, &str)]) {
    let config = ProducerConfig {
        linger: Duration::from_millis(5),
        batch_bytes: 4096,
        partition: Some(partition),
        ..Default::default()
    };
    let producer = fluvio.topic_producer_with(topic, config).await.expect("producer");
    let mut pending = Vec::with_capacity(records.len());
    for (key, value) in records {
        let key = key.map_or(RecordKey::NULL, |key| RecordKey::from(key.as_bytes()));
        pending.push(producer.send(key, value.as_bytes()).await.expect("send"));
    }
    producer.flush().await.expect("flush");
    for output in pending {
        output.wait().await.expect("acknowledged");
    }
}

async fn derived(fluvio: &Fluvio, name: &str) -> DerivedTopicInfo {
    let topics = fluvio.list_derived_topics().await.expect("list derived topics");
    topics.into_iter().find(|topic| topic.name == name).expect("the derived topic is listed")
}

/// Waits until every pipeline of `name` has read its source to the end.
async fn caught_up(fluvio: &Fluvio, name: &str) -> DerivedTopicInfo {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let info = derived(fluvio, name).await;
        let done = info.pipelines.iter().all(|p| p.state == PipelineState::Running && p.source_offset == p.source_end);
        if done {
            return info;
        }
        assert!(tokio::time::Instant::now() < deadline, "the pipelines did not catch up: {info:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn partition_values(fluvio: &Fluvio, topic: &str, partition: u32) -> Vec<String> {
    values(
        &read_all(fluvio, topic, fluvio_client::ConsumerConfig { partitions: vec![partition], ..from_beginning() })
            .await,
    )
}

/// What `sum-aggregate` outputs for `numbers`: the running total after
/// each.
fn running_totals(numbers: &[String]) -> Vec<String> {
    let mut sum = 0i64;
    numbers
        .iter()
        .map(|n| {
            sum += n.parse::<i64>().unwrap();
            sum.to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_derived_topic_is_exact_around_a_kill_9_and_its_aggregate_goes_on() {
    let dir = data_dir("derived-kill");
    let mut server = ServerProcess::start(&dir, &[]);
    let addr = server.addr.clone();
    let fluvio = server.client().await;
    register(&fluvio, &["my-filter", "uppercase-map", "sum-aggregate"]).await;
    fluvio.create_topic("raw", 2).await.unwrap();
    fluvio.create_topic("numbers", 1).await.unwrap();
    fluvio.create_derived_topic(derive("clean", "raw", &["my-filter", "uppercase-map"])).await.unwrap();
    fluvio.create_derived_topic(derive("totals", "numbers", &["sum-aggregate"])).await.unwrap();
    // A derived topic of a derived topic.
    fluvio.create_derived_topic(derive("clean-again", "clean", &["my-filter"])).await.unwrap();

    let word = |i: usize| if i.is_multiple_of(3) { format!("{i}-banana") } else { format!("{i}-cherry") };
    let raw: Vec<Vec<String>> = (0..2).map(|p| (0..50_000).map(|i| word(i * 2 + p)).collect()).collect();
    let numbers: Vec<String> = (1..=30_000).map(|i| (i % 97).to_string()).collect();
    for (p, records) in raw.iter().enumerate() {
        produce_to(&fluvio, "raw", p as u32, &records[..5_000]).await;
    }
    produce_to(&fluvio, "numbers", 0, &numbers[..5_000]).await;
    // The rest is produced while the server is killed and started again:
    // the producers send what was not acknowledged again, and the
    // pipelines are at work when the server dies.
    let producing = {
        let (raw, numbers, addr) = (raw.clone(), numbers.clone(), addr.clone());
        tokio::spawn(async move {
            let fluvio = Fluvio::connect_to(&addr).await.expect("connect");
            // In steps, so that the kill lands while records still come.
            for step in 0..45 {
                let range = 5_000 + step * 1_000..6_000 + step * 1_000;
                for (p, records) in raw.iter().enumerate() {
                    produce_to(&fluvio, "raw", p as u32, &records[range.clone()]).await;
                }
                if let Some(numbers) = numbers.get(range) {
                    produce_to(&fluvio, "numbers", 0, numbers).await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mid = derived(&fluvio, "clean").await;
    server.kill9();
    drop(fluvio);
    eprintln!("killed with the pipelines at {:?}", mid.pipelines.iter().map(|p| p.source_offset).collect::<Vec<_>>());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server = ServerProcess::start_at(&addr, &dir, &[], std::process::Stdio::inherit());
    let fluvio = server.client().await;
    producing.await.expect("every record is produced, across the restart");
    caught_up(&fluvio, "clean").await;
    caught_up(&fluvio, "totals").await;
    caught_up(&fluvio, "clean-again").await;

    for (p, records) in raw.iter().enumerate() {
        // The reference: the source as stored (which holds every record
        // once), passed through the chain here.
        let stored = partition_values(&fluvio, "raw", p as u32).await;
        assert_eq!(&stored, records, "partition {p} of the source holds every record once");
        let expected: Vec<String> =
            stored.iter().filter(|value| value.contains('a')).map(|value| value.to_uppercase()).collect();
        let got = partition_values(&fluvio, "clean", p as u32).await;
        assert_eq!(got.len(), expected.len(), "partition {p}: no gap, no duplicate");
        assert_eq!(got, expected, "partition {p}: record for record, in order");
        // Upper-case values have no `a` left: the second filter keeps none.
        assert!(partition_values(&fluvio, "clean-again", p as u32).await.is_empty());
    }
    assert_eq!(partition_values(&fluvio, "numbers", 0).await, numbers);
    let expected = running_totals(&numbers);
    assert_eq!(partition_values(&fluvio, "totals", 0).await, expected, "the running totals go on exactly");

    // A consumer reads a derived topic like any other; the records say
    // where they came from.
    let records = read_all(&fluvio, "totals", from_beginning()).await;
    let origin = records.last().unwrap().headers.iter().find(|(name, _)| &name[..] == b"fluvio-derived-from");
    let origin = origin.map(|(_, value)| String::from_utf8_lossy(value).into_owned()).unwrap_or_default();
    assert!(origin.starts_with("numbers/0/"), "{origin}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_records_go_to_the_dead_letter_topic_or_stop_the_pipeline_until_resumed() {
    let server = ServerProcess::start(&data_dir("derived-policies"), &[]);
    let fluvio = server.client().await;
    register(&fluvio, &["sum-aggregate"]).await;
    fluvio.create_topic("mixed", 1).await.unwrap();
    common::produce(&fluvio, "mixed", &["1", "x", "2", "y", "3"]).await;

    let letters = CreateDerivedTopicRequest {
        policy: ErrorPolicy::DeadLetter,
        dead_letter_topic: Some("mixed-dlq".into()),
        ..derive("sums", "mixed", &["sum-aggregate"])
    };
    fluvio.create_derived_topic(letters).await.unwrap();
    let skipped =
        CreateDerivedTopicRequest { policy: ErrorPolicy::Skip, ..derive("sums-skip", "mixed", &["sum-aggregate"]) };
    fluvio.create_derived_topic(skipped).await.unwrap();
    fluvio.create_derived_topic(derive("sums-fail", "mixed", &["sum-aggregate"])).await.unwrap();

    let info = caught_up(&fluvio, "sums").await;
    assert_eq!(info.pipelines[0].dead_letters, 2);
    assert_eq!(partition_values(&fluvio, "sums", 0).await, ["1", "3", "6"]);
    let dead = read_all(&fluvio, "mixed-dlq", from_beginning()).await;
    assert_eq!(values(&dead), ["x", "y"]);
    let header = |record: &fluvio_client::ConsumerRecord, name: &str| {
        let value = record.headers.iter().find(|(n, _)| &n[..] == name.as_bytes()).map(|(_, v)| v.to_vec());
        String::from_utf8(value.unwrap_or_default()).unwrap()
    };
    assert_eq!(header(&dead[0], "fluvio-module"), "sum-aggregate");
    assert_eq!(header(&dead[0], "fluvio-source-topic"), "mixed");
    assert_eq!(header(&dead[0], "fluvio-source-partition"), "0");
    assert_eq!(header(&dead[0], "fluvio-source-offset"), "1");
    assert_eq!(header(&dead[1], "fluvio-source-offset"), "3");
    assert!(header(&dead[0], "fluvio-error").contains("invalid digit"), "{}", header(&dead[0], "fluvio-error"));

    let info = caught_up(&fluvio, "sums-skip").await;
    assert_eq!(info.pipelines[0].skipped, 2);
    assert_eq!(partition_values(&fluvio, "sums-skip", 0).await, ["1", "3", "6"]);

    // fail: the pipeline stops at offset 1 and says why.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let failed = loop {
        let info = derived(&fluvio, "sums-fail").await;
        if let PipelineState::Failed { offset, error } = &info.pipelines[0].state {
            break (*offset, error.clone());
        }
        assert!(tokio::time::Instant::now() < deadline, "the pipeline did not stop: {info:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failed.0, 1);
    assert!(failed.1.contains("invalid digit") && failed.1.contains("fluvio topic resume sums-fail"), "{}", failed.1);
    assert_eq!(partition_values(&fluvio, "sums-fail", 0).await, ["1"]);
    // Resumed with the same module, it stops at the same record, having
    // written nothing twice.
    assert_eq!(fluvio.resume_derived_topic("sums-fail").await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let info = derived(&fluvio, "sums-fail").await;
    assert!(matches!(&info.pipelines[0].state, PipelineState::Failed { offset: 1, .. }), "{info:?}");
    assert_eq!(partition_values(&fluvio, "sums-fail", 0).await, ["1"]);

    // Replaced by a module that counts (and so takes any record), under
    // the same name: the pipeline goes on from record 1, its accumulator
    // the "1" it had reached.
    let (code, message) = refused(fluvio.delete_smartmodule("sum-aggregate").await);
    assert_eq!(code, Some(ErrorCode::InvalidRequest), "{message}");
    assert!(message.contains("sums-fail") && message.contains("sums-skip"), "{message}");
    fluvio.force_delete_smartmodule("sum-aggregate").await.unwrap();
    let info = derived(&fluvio, "sums").await;
    match &info.pipelines[0].state {
        PipelineState::Failed { error, .. } => assert!(error.contains("was deleted"), "{error}"),
        other => panic!("the pipelines using the module stop: {other:?}"),
    }
    fluvio.create_smartmodule("sum-aggregate", wasm("bench-count")).await.unwrap();
    assert_eq!(fluvio.resume_derived_topic("sums-fail").await.unwrap(), 1);
    caught_up(&fluvio, "sums-fail").await;
    assert_eq!(partition_values(&fluvio, "sums-fail", 0).await, ["1", "2", "3", "4", "5"]);
}

fn refused(result: Result<(), FluvioError>) -> (Option<ErrorCode>, String) {
    let error = result.expect_err("refused");
    (error.code(), error.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_derivations_are_refused_with_nothing_created() {
    let server = ServerProcess::start(&data_dir("derived-refusals"), &[]);
    let fluvio = server.client().await;
    register(&fluvio, &["my-filter", "uppercase-map"]).await;
    fluvio.create_topic("raw", 2).await.unwrap();
    common::produce(&fluvio, "raw", &["a"]).await;

    let (code, message) = refused(fluvio.create_derived_topic(derive("clean", "raw", &["no-such-module"])).await);
    assert_eq!(code, Some(ErrorCode::SmartModuleNotFound), "{message}");
    assert!(message.contains("no-such-module"), "{message}");

    let mut wrong_kind = derive("clean", "raw", &["uppercase-map"]);
    wrong_kind.transforms[0] =
        SmartModuleInvocation::predefined("uppercase-map").expect_kind(fluvio_client::ModuleKind::Filter);
    let (code, message) = refused(fluvio.create_derived_topic(wrong_kind).await);
    assert_eq!(code, Some(ErrorCode::InvalidSmartModule), "{message}");

    let (code, message) = refused(fluvio.create_derived_topic(derive("clean", "nowhere", &["my-filter"])).await);
    assert_eq!(code, Some(ErrorCode::TopicNotFound), "{message}");
    assert!(message.contains("nowhere"), "{message}");

    let (code, message) = refused(fluvio.create_derived_topic(derive("raw", "raw", &["my-filter"])).await);
    assert_eq!(code, Some(ErrorCode::InvalidRequest), "{message}");
    assert!(message.contains("cycle"), "{message}");

    let mut adhoc = derive("clean", "raw", &[]);
    adhoc.transforms.push(SmartModuleInvocation::adhoc("local-filter", wasm("my-filter")));
    let (code, message) = refused(fluvio.create_derived_topic(adhoc).await);
    assert_eq!(code, Some(ErrorCode::InvalidRequest), "{message}");
    assert!(message.contains("registered"), "{message}");

    let no_topic =
        CreateDerivedTopicRequest { policy: ErrorPolicy::DeadLetter, ..derive("clean", "raw", &["my-filter"]) };
    let (code, message) = refused(fluvio.create_derived_topic(no_topic).await);
    assert_eq!(code, Some(ErrorCode::InvalidRequest), "{message}");

    // Nothing was created by any of them.
    let names: Vec<String> = fluvio.list_topics().await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["raw"]);
    assert!(fluvio.list_derived_topics().await.unwrap().is_empty());

    // A good one; then what would break it is refused.
    fluvio.create_derived_topic(derive("clean", "raw", &["my-filter", "uppercase-map"])).await.unwrap();
    let (code, message) = refused(fluvio.create_derived_topic(derive("clean", "raw", &["my-filter"])).await);
    assert_eq!(code, Some(ErrorCode::TopicExists), "{message}");
    let (code, message) = refused(fluvio.delete_smartmodule("uppercase-map").await);
    assert_eq!(code, Some(ErrorCode::InvalidRequest), "{message}");
    assert!(message.contains("clean"), "{message}");
    let (code, message) = refused(fluvio.delete_topic("raw").await);
    assert_eq!(code, Some(ErrorCode::InvalidRequest), "{message}");
    assert!(message.contains("clean"), "{message}");
    let producer = fluvio.topic_producer("clean").await.unwrap();
    let output = producer.send(RecordKey::NULL, "by hand").await.unwrap();
    producer.flush().await.ok();
    let error = output.wait().await.expect_err("only the pipelines write to a derived topic");
    assert!(error.to_string().contains("derived from \"raw\""), "{error}");

    // Forced, the source goes and the derived topic's pipelines stop.
    fluvio.create_topic("other", 1).await.unwrap();
    fluvio.create_derived_topic(derive("other-clean", "other", &["my-filter"])).await.unwrap();
    fluvio.force_delete_topic("other").await.unwrap();
    let info = derived(&fluvio, "other-clean").await;
    match &info.pipelines[0].state {
        PipelineState::Failed { error, .. } => assert!(error.contains("\"other\" was deleted"), "{error}"),
        state => panic!("the pipeline stops with its source: {state:?}"),
    }
    fluvio.delete_topic("other-clean").await.unwrap();

    // Deleting the derived topic stops it and frees the rest.
    fluvio.delete_topic("clean").await.unwrap();
    assert!(fluvio.list_derived_topics().await.unwrap().is_empty());
    fluvio.delete_smartmodule("uppercase-map").await.unwrap();
    fluvio.delete_topic("raw").await.unwrap();
}

/// A server on a JetStream cluster, with an id of its own.
fn server_on(cluster: &dev_support::services::NatsCluster, name: &str, id: &str) -> ServerProcess {
    ServerProcess::start(&data_dir(name), &["--jetstream", &cluster.urls(), "--id", id])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_jetstream_one_server_runs_each_pipeline_and_another_takes_over_exactly() {
    let mut cluster = dev_support::services::NatsCluster::start(3);
    let mut server_a = server_on(&cluster, "derived-js-a", "1");
    let server_b = server_on(&cluster, "derived-js-b", "2");
    let through_a = server_a.client().await;
    register(&through_a, &["my-filter", "uppercase-map", "sum-aggregate"]).await;
    through_a.create_replicated_topic("raw", 2, 3, Default::default()).await.unwrap();
    through_a.create_replicated_topic("numbers", 1, 3, Default::default()).await.unwrap();
    let request =
        CreateDerivedTopicRequest { replication: 3, ..derive("clean", "raw", &["my-filter", "uppercase-map"]) };
    through_a.create_derived_topic(request).await.unwrap();
    // An aggregate, whose running total must go on across the takeover.
    let request = CreateDerivedTopicRequest { replication: 3, ..derive("totals", "numbers", &["sum-aggregate"]) };
    through_a.create_derived_topic(request).await.unwrap();
    // And windows, which B takes over from what A saved in the cluster.
    register(&through_a, &["field-sum-aggregate"]).await;
    through_a.create_replicated_topic("readings", 1, 3, Default::default()).await.unwrap();
    let window = fluvio_client::protocol::window::parse_window("tumbling=1s,lateness=400ms,key=/k,time=/ts").unwrap();
    let windowed = SmartModuleInvocation::predefined("field-sum-aggregate").window(window.clone());
    let request = CreateDerivedTopicRequest {
        replication: 3,
        transforms: vec![windowed],
        ..derive("per-second", "readings", &[])
    };
    through_a.create_derived_topic(request).await.unwrap();
    let numbers: Vec<String> = (1..=3_000).map(|i| (i % 89).to_string()).collect();
    let thirds: Vec<&[String]> = numbers.chunks(1_000).collect();

    let word = |i: usize| if i.is_multiple_of(3) { format!("{i}-banana") } else { format!("{i}-cherry") };
    let raw: Vec<Vec<String>> = (0..2).map(|p| (0..30_000).map(|i| word(i * 2 + p)).collect()).collect();
    for (p, records) in raw.iter().enumerate() {
        produce_to(&through_a, "raw", p as u32, &records[..10_000]).await;
    }
    produce_to(&through_a, "numbers", 0, thirds[0]).await;
    produce_to(&through_a, "readings", 0, &readings(0, 10_000)).await;
    // Some readings reach A after a save of its windows, some before.
    caught_up(&through_a, "per-second").await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    produce_to(&through_a, "readings", 0, &readings(10_000, 5_000)).await;
    // B sees the derived topic, and that A runs its pipelines.
    let through_b = server_b.client().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let topics = through_b.list_derived_topics().await.unwrap();
        let elsewhere = topics.iter().find(|t| t.name == "clean").is_some_and(|t| {
            t.pipelines.len() == 2
                && t.pipelines.iter().all(|p| matches!(&p.state, PipelineState::Elsewhere { server: 1, .. }))
        });
        let totals_elsewhere = topics.iter().find(|t| t.name == "totals").is_some_and(|t| {
            t.pipelines.iter().all(|p| matches!(&p.state, PipelineState::Elsewhere { server: 1, .. }))
        });
        if elsewhere && totals_elsewhere {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "B does not see A run the pipelines: {topics:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A dies in the middle of the stream; B takes over.
    server_a.kill9();
    for (p, records) in raw.iter().enumerate() {
        produce_to(&through_b, "raw", p as u32, &records[10_000..20_000]).await;
    }
    produce_to(&through_b, "numbers", 0, thirds[1]).await;
    produce_to(&through_b, "readings", 0, &readings(15_000, 5_000)).await;
    let info = caught_up(&through_b, "clean").await;
    assert!(info.pipelines.iter().all(|p| p.state == PipelineState::Running), "{info:?}");
    // A NATS node dies too; the rest of the stream still comes out exact.
    cluster.kill9(1);
    for (p, records) in raw.iter().enumerate() {
        produce_to(&through_b, "raw", p as u32, &records[20_000..]).await;
    }
    produce_to(&through_b, "numbers", 0, thirds[2]).await;
    produce_to(&through_b, "readings", 0, &readings(20_000, 10_000)).await;
    caught_up(&through_b, "clean").await;
    caught_up(&through_b, "totals").await;
    caught_up(&through_b, "per-second").await;
    assert_windows_as_uninterrupted(&through_b, "readings", "per-second", window).await;
    let expected = running_totals(&numbers);
    assert_eq!(partition_values(&through_b, "totals", 0).await, expected, "the running totals go on exactly");
    for (p, records) in raw.iter().enumerate() {
        let expected: Vec<String> =
            records.iter().filter(|value| value.contains('a')).map(|value| value.to_uppercase()).collect();
        let got = partition_values(&through_b, "clean", p as u32).await;
        assert_eq!(got.len(), expected.len(), "partition {p}: no gap, no duplicate");
        assert_eq!(got, expected, "partition {p}: record for record, in order");
    }
}

/// Produces `(key, value)` records to one partition.
async fn produce_keyed(fluvio: &Fluvio, topic: &str, partition: u32, records: &[(String, String)]) {
    let records: Vec<(Option<&str>, &str)> =
        records.iter().map(|(key, value)| (Some(key.as_str()), value.as_str())).collect();
    produce_records(fluvio, topic, partition, &records).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_go_by_key_into_another_partition_count_exactly_once_around_a_kill_9() {
    let dir = data_dir("derived-routed");
    let mut server = ServerProcess::start(&dir, &[]);
    let addr = server.addr.clone();
    let fluvio = server.client().await;
    register(&fluvio, &["uppercase-map"]).await;
    fluvio.create_topic("keyed", 2).await.unwrap();
    let by_key = CreateDerivedTopicRequest { partitions: 3, ..derive("by-key", "keyed", &["uppercase-map"]) };
    fluvio.create_derived_topic(by_key).await.unwrap();

    let records: Vec<Vec<(String, String)>> =
        (0..2).map(|p| (0..20_000).map(|i| (format!("k{}", i % 7), format!("p{p}-{i}"))).collect()).collect();
    for (p, records) in records.iter().enumerate() {
        produce_keyed(&fluvio, "keyed", p as u32, &records[..2_000]).await;
    }
    let producing = {
        let (records, addr) = (records.clone(), addr.clone());
        tokio::spawn(async move {
            let fluvio = Fluvio::connect_to(&addr).await.expect("connect");
            for step in 0..18 {
                for (p, records) in records.iter().enumerate() {
                    produce_keyed(&fluvio, "keyed", p as u32, &records[2_000 + step * 1_000..3_000 + step * 1_000])
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mid = derived(&fluvio, "by-key").await;
    server.kill9();
    drop(fluvio);
    eprintln!("killed with the pipelines at {:?}", mid.pipelines.iter().map(|p| p.source_offset).collect::<Vec<_>>());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server = ServerProcess::start_at(&addr, &dir, &[], std::process::Stdio::inherit());
    let fluvio = server.client().await;
    producing.await.expect("every record is produced, across the restart");
    let info = caught_up(&fluvio, "by-key").await;
    assert_eq!(info.pipelines.len(), 2, "a pipeline per source partition");

    // Each derived partition holds, from each source partition, exactly
    // the records whose key hashes to it, in their source order.
    let mut total = 0;
    for q in 0..3u32 {
        let stored =
            read_all(&fluvio, "by-key", fluvio_client::ConsumerConfig { partitions: vec![q], ..from_beginning() })
                .await;
        total += stored.len();
        for (p, records) in records.iter().enumerate() {
            let expected: Vec<String> = records
                .iter()
                .filter(|(key, _)| fluvio_client::partition_for_key(key.as_bytes(), 3) == q)
                .map(|(_, value)| value.to_uppercase())
                .collect();
            let prefix = format!("P{p}-");
            let got: Vec<String> = values(&stored).into_iter().filter(|value| value.starts_with(&prefix)).collect();
            assert_eq!(
                got.len(),
                expected.len(),
                "derived partition {q}, from source partition {p}: no gap, no duplicate"
            );
            assert_eq!(got, expected, "derived partition {q}, from source partition {p}: in order");
        }
        for record in &stored {
            let key = record.key.as_ref().expect("keys are kept");
            assert_eq!(fluvio_client::partition_for_key(key, 3), q);
        }
    }
    assert_eq!(total, 40_000);
}

/// A record as a windowed topic compares it: key, value, timestamp and the
/// window headers (not the provenance headers, whose place depends on how
/// outputs were gathered into appends). Its place in the list is its offset.
type WindowRecord = (Option<Vec<u8>>, Vec<u8>, i64, Vec<(Vec<u8>, Vec<u8>)>);

fn window_record(timestamp: i64, key: Option<&[u8]>, value: &[u8], headers: &[(&[u8], &[u8])]) -> WindowRecord {
    let headers = headers
        .iter()
        .filter(|(name, _)| name.starts_with(b"window-"))
        .map(|(name, value)| (name.to_vec(), value.to_vec()))
        .collect();
    (key.map(<[u8]>::to_vec), value.to_vec(), timestamp, headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windowed_derived_topic_is_the_same_around_ten_kill_9s() {
    use fluvio_client::protocol::window::parse_window;

    let dir = data_dir("derived-windows-kill");
    let mut server = ServerProcess::start(&dir, &[]);
    let addr = server.addr.clone();
    let fluvio = server.client().await;
    register(&fluvio, &["field-sum-aggregate"]).await;
    fluvio.create_topic("readings", 1).await.unwrap();
    let window = parse_window("tumbling=1s,lateness=400ms,key=/k,time=/ts").unwrap();
    let windowed = SmartModuleInvocation::predefined("field-sum-aggregate").window(window.clone());
    let mut request = derive("per-second", "readings", &[]);
    request.transforms = vec![windowed];
    fluvio.create_derived_topic(request).await.unwrap();

    // 60,000 readings of 200 keys over 120 s of event time.
    let readings = readings(0, 60_000);
    // Produced while the server is killed and started again ten times: the
    // producer sends what was not acknowledged again, and the pipeline is
    // at work (and between saves of its windows) when the server dies.
    let producing = {
        let (readings, addr) = (readings.clone(), addr.clone());
        tokio::spawn(async move {
            let fluvio = Fluvio::connect_to(&addr).await.expect("connect");
            for chunk in readings.chunks(500) {
                produce_to(&fluvio, "readings", 0, chunk).await;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };
    let mut fluvio = fluvio;
    let mut last_at = 0;
    for round in 0..10u64 {
        // Killed once the pipeline has done some work since the last kill,
        // at a moment that moves from round to round.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let at = loop {
            let at = derived(&fluvio, "per-second").await.pipelines[0].source_offset;
            if at >= last_at + 2_500 || tokio::time::Instant::now() > deadline {
                break at;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        tokio::time::sleep(Duration::from_millis(17 * round)).await;
        last_at = at;
        server.kill9();
        drop(fluvio);
        eprintln!("kill {round}: the pipeline was at {at}");
        server = ServerProcess::start_at(&addr, &dir, &[], std::process::Stdio::inherit());
        fluvio = server.client().await;
    }
    producing.await.expect("every reading is produced, across the restarts");
    caught_up(&fluvio, "per-second").await;

    let stored = read_all(&fluvio, "readings", from_beginning()).await;
    assert_eq!(values(&stored), readings, "the source holds every reading once");
    assert_windows_as_uninterrupted(&fluvio, "readings", "per-second", window).await;
}

/// What one run of `window` over the source as stored gives, here in one
/// go: each emitted record with the source offset it was emitted at.
async fn uninterrupted(
    fluvio: &Fluvio,
    source: &str,
    window: fluvio_client::protocol::window::Window,
) -> Vec<(i64, WindowRecord)> {
    use fluvio_client::engine::{ChainBuilder, SmartEngine};
    use fluvio_client::protocol::BatchBuilder;

    let stored = read_all(fluvio, source, from_beginning()).await;
    let engine = SmartEngine::new();
    let invocation = SmartModuleInvocation::adhoc("field-sum-aggregate", wasm("field-sum-aggregate")).window(window);
    let mut chain = ChainBuilder::new(&engine).invocation(invocation).build().unwrap();
    let mut expected = Vec::new();
    for part in stored.chunks(1_000) {
        let mut builder = BatchBuilder::new(part[0].offset, part[0].timestamp);
        for record in part {
            let headers: Vec<(&[u8], &[u8])> = record.headers.iter().map(|(n, v)| (&n[..], &v[..])).collect();
            let key = record.key.as_deref();
            builder.push((record.offset - part[0].offset) as u32, record.timestamp, key, &record.value, &headers);
        }
        let output = chain.process(&builder.finish()).unwrap();
        assert!(output.failure.is_none());
        expected
            .extend(output.batch.records().map(|r| (r.offset, window_record(r.timestamp, r.key, r.value, &r.headers))));
    }
    assert!(expected.len() > stored.len() / 5, "{} windows closed", expected.len());
    expected
}

fn consumed_window(record: &fluvio_client::ConsumerRecord) -> (i64, WindowRecord) {
    let headers: Vec<(&[u8], &[u8])> = record.headers.iter().map(|(n, v)| (&n[..], &v[..])).collect();
    (record.offset, window_record(record.timestamp, record.key.as_deref(), &record.value, &headers))
}

/// Checks that the windowed derived topic `derived` holds what one run of
/// the same window over the source as stored gives.
async fn assert_windows_as_uninterrupted(
    fluvio: &Fluvio,
    source: &str,
    derived: &str,
    window: fluvio_client::protocol::window::Window,
) {
    let expected: Vec<WindowRecord> =
        uninterrupted(fluvio, source, window).await.into_iter().map(|(_, record)| record).collect();
    let got: Vec<WindowRecord> =
        read_all(fluvio, derived, from_beginning()).await.iter().map(|record| consumed_window(record).1).collect();
    assert_eq!(got.len(), expected.len(), "no window lost or emitted twice");
    assert!(got == expected, "the windows differ from the uninterrupted run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_ids_windows_go_on_in_its_next_stream() {
    use fluvio_client::{ConsumerConfig, OffsetManagementStrategy};
    use futures::StreamExt;

    let server = ServerProcess::start(&data_dir("consumer-windows"), &[]);
    let fluvio = server.client().await;
    register(&fluvio, &["field-sum-aggregate"]).await;
    fluvio.create_topic("readings", 1).await.unwrap();
    let window = fluvio_client::protocol::window::parse_window("tumbling=1s,lateness=400ms,key=/k,time=/ts").unwrap();
    let config = ConsumerConfig {
        consumer_id: Some("dashboard".into()),
        offset_strategy: OffsetManagementStrategy::Auto,
        offset_flush: Duration::from_millis(20),
        smartmodules: vec![SmartModuleInvocation::predefined("field-sum-aggregate").window(window.clone())],
        ..from_beginning()
    };
    // Readings arrive over about 5 s; the first stream reads for 2.5 s of
    // them, long enough to take and save its windows, then goes away.
    let producing = {
        let fluvio = fluvio.clone();
        tokio::spawn(async move {
            for chunk in readings(0, 30_000).chunks(600) {
                produce_to(&fluvio, "readings", 0, chunk).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut stream =
        fluvio.consumer_stream("readings", ConsumerConfig { continuous: true, ..config.clone() }).await.unwrap();
    let stop_at = tokio::time::Instant::now() + Duration::from_millis(2_500);
    let mut first = Vec::new();
    while tokio::time::Instant::now() < stop_at {
        let Ok(Some(record)) = tokio::time::timeout(Duration::from_millis(200), stream.next()).await else { continue };
        first.push(consumed_window(&record.unwrap()));
    }
    assert!(!first.is_empty(), "windows came");
    drop(stream);
    // Dropped, the stream stores where its consumer got to: the first
    // offset whose outputs were not all handed out.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivered = fluvio.fetch_offset("dashboard", "readings", 0).await.unwrap().expect("an offset is stored");
    producing.await.unwrap();

    // The next stream starts at the stored offset with the windows as they
    // were there: together, the two streams give what one would have.
    let second = read_all(&fluvio, "readings", ConsumerConfig { continuous: false, ..config }).await;
    let mut got: Vec<(i64, WindowRecord)> = first.into_iter().filter(|(offset, _)| *offset < delivered).collect();
    assert!(got.len() > 500, "{} windows in the first stream", got.len());
    got.extend(second.iter().map(consumed_window));
    let expected = uninterrupted(&fluvio, "readings", window).await;
    assert_eq!(got.len(), expected.len(), "no window lost or emitted twice across the two streams");
    assert!(got == expected, "the two streams differ from one");

    // The saved windows go with the consumer's offsets.
    let saves = || {
        std::fs::read_dir(server.data_dir.join("derived"))
            .unwrap()
            .filter(|entry| entry.as_ref().unwrap().file_name().to_string_lossy().starts_with("consumer-"))
            .count()
    };
    assert!(saves() > 0, "the consumer's windows were saved");
    fluvio.delete_consumer("dashboard", None).await.unwrap();
    assert_eq!(saves(), 0, "deleting the consumer deletes its saved windows");
}

/// `count` readings `{"k","ts","v"}` of 200 keys, 2 ms of event time apart,
/// each up to 300 ms late.
fn readings(from: u64, count: u64) -> Vec<String> {
    (from..from + count)
        .map(|i| {
            let jitter = (i * 7_919) % 300;
            let ts = (i * 2) as i64 - jitter as i64;
            format!(r#"{{"k":"s{}","ts":{ts},"v":{}}}"#, (i * 31) % 200, i % 10)
        })
        .collect()
}
