//! End to end against a real server process on loopback: topics, produce,
//! consume, SmartModules on the server and on the producer, the registry,
//! error policies, and restarts.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ServerProcess, data_dir, from_beginning, produce, read_all, values, wasm, wasm_path};
use fluvio_client::protocol::ErrorCode;
use fluvio_client::{
    ConsumerConfig, ErrorPolicy, FluvioError, ModuleKind, OffsetManagementStrategy, OffsetSpec, ProducerConfig,
    RecordFailure, RecordKey, SmartModuleInvocation, SmartModuleKind,
};
use futures::StreamExt;

fn spec(module: &str) -> SmartModuleInvocation {
    SmartModuleInvocation::from_file(wasm_path(module)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_listed_and_deleted_with_clear_errors() {
    let server = ServerProcess::start(&data_dir("topics"), &[]);
    let fluvio = server.client().await;
    fluvio.create_topic("orders", 2).await.unwrap();
    let exists = fluvio.create_topic("orders", 1).await.unwrap_err();
    assert_eq!(exists.code(), Some(ErrorCode::TopicExists));
    assert!(exists.to_string().contains("\"orders\" already exists"), "{exists}");
    let invalid = fluvio.create_topic("bad/name", 1).await.unwrap_err();
    assert_eq!(invalid.code(), Some(ErrorCode::InvalidTopicName));
    let topics = fluvio.list_topics().await.unwrap();
    assert_eq!(topics.len(), 1);
    assert_eq!((topics[0].name.as_str(), topics[0].partitions), ("orders", 2));
    fluvio.delete_topic("orders").await.unwrap();
    let missing = fluvio.delete_topic("orders").await.unwrap_err();
    assert_eq!(missing.code(), Some(ErrorCode::TopicNotFound));
    assert!(missing.to_string().contains("topic \"orders\" not found"), "{missing}");
    assert!(fluvio.list_topics().await.unwrap().is_empty());
    // Every partition of an unknown topic: refused when the stream is made.
    let error = fluvio.consumer_stream("nope", from_beginning()).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::TopicNotFound), "{error}");
    // One named partition: the server's answer ends the stream.
    let unknown = fluvio.consumer_stream("nope", from_beginning().partition(0)).await.unwrap();
    let error = unknown.collect::<Vec<_>>().await.pop().unwrap().unwrap_err();
    assert!(error.to_string().contains("topic \"nope\" not found"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_names_the_address() {
    let error = fluvio_client::Fluvio::connect_to("127.0.0.1:1").await.unwrap_err();
    assert!(matches!(error, FluvioError::Connect { .. }));
    assert!(error.to_string().contains("127.0.0.1:1"), "{error}");
    assert!(error.to_string().contains("fluvio cluster start"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_then_consume_from_each_starting_point() {
    let server = ServerProcess::start(&data_dir("offsets"), &[]);
    let fluvio = server.client().await;
    fluvio.create_topic("t", 1).await.unwrap();
    let offsets = produce(&fluvio, "t", &["a", "b", "c", "d", "e"]).await;
    assert_eq!(offsets, vec![Some(0), Some(1), Some(2), Some(3), Some(4)]);

    let all = read_all(&fluvio, "t", from_beginning()).await;
    assert_eq!(values(&all), ["a", "b", "c", "d", "e"]);
    assert_eq!(all.iter().map(|r| r.offset).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    let at = read_all(&fluvio, "t", ConsumerConfig { offset: OffsetSpec::Absolute(3), ..Default::default() }).await;
    assert_eq!(values(&at), ["d", "e"]);
    let last = read_all(&fluvio, "t", ConsumerConfig { offset: OffsetSpec::FromEnd(2), ..Default::default() }).await;
    assert_eq!(values(&last), ["d", "e"]);
    let end = read_all(&fluvio, "t", ConsumerConfig { offset: OffsetSpec::End, ..Default::default() }).await;
    assert!(end.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuous_consumer_sees_records_produced_later() {
    let server = ServerProcess::start(&data_dir("continuous"), &[]);
    let fluvio = server.client().await;
    fluvio.create_topic("live", 1).await.unwrap();
    let config = ConsumerConfig { offset: OffsetSpec::End, continuous: true, ..Default::default() };
    let mut stream = fluvio.consumer_stream("live", config).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    produce(&fluvio, "live", &["late-1", "late-2"]).await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let record = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("record arrives")
            .unwrap()
            .unwrap();
        seen.push(String::from_utf8(record.value.to_vec()).unwrap());
    }
    assert_eq!(seen, ["late-1", "late-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_runs_on_the_server_ad_hoc() {
    let server = ServerProcess::start(&data_dir("kinds"), &[]);
    let fluvio = server.client().await;
    fluvio.create_topic("numbers", 1).await.unwrap();
    produce(&fluvio, "numbers", &["2", "3", "4", "10"]).await;
    fluvio.create_topic("words", 1).await.unwrap();
    produce(&fluvio, "words", &["apple", "kiwi", "banana"]).await;
    fluvio.create_topic("arrays", 1).await.unwrap();
    produce(&fluvio, "arrays", &["[1,2]", "[]", "[3]"]).await;

    let run = |topic: &'static str, spec: SmartModuleInvocation| {
        let fluvio = fluvio.clone();
        async move { values(&read_all(&fluvio, topic, from_beginning().smartmodule(spec)).await) }
    };
    assert_eq!(run("words", spec("my-filter").expect_kind(ModuleKind::Filter)).await, ["apple", "banana"]);
    assert_eq!(run("words", spec("uppercase-map")).await, ["APPLE", "KIWI", "BANANA"]);
    assert_eq!(run("numbers", spec("even-filter-map")).await, ["1", "2", "5"]);
    assert_eq!(run("arrays", spec("json-array-map")).await, ["1", "2", "3"]);
    assert_eq!(run("numbers", spec("sum-aggregate").initial_accumulator("100")).await, ["102", "105", "109", "119"]);
    assert_eq!(run("words", spec("params-filter").param("contains", "an")).await, ["banana"]);

    // A chain: filter then map, on the server.
    let chain = from_beginning().smartmodule(spec("my-filter")).smartmodule(spec("uppercase-map"));
    assert_eq!(values(&read_all(&fluvio, "words", chain).await), ["APPLE", "BANANA"]);

    // A kind that does not match the module is refused with a clear error.
    let wrong = fluvio
        .consumer_stream("words", from_beginning().smartmodule(spec("my-filter").expect_kind(ModuleKind::Map)))
        .await
        .unwrap();
    let error = wrong.collect::<Vec<_>>().await.pop().unwrap().unwrap_err();
    assert!(error.to_string().contains("is a filter, but it was given as a map"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_smartmodules_run_by_name_and_survive_restart() {
    let dir = data_dir("registry");
    let mut server = ServerProcess::start(&dir, &[]);
    let fluvio = server.client().await;
    let info = fluvio.create_smartmodule("my-filter", wasm("my-filter")).await.unwrap();
    assert_eq!((info.status.as_str(), info.size), ("SmartModuleStatus", wasm("my-filter").len() as u64));
    let duplicate = fluvio.create_smartmodule("my-filter", wasm("my-filter")).await.unwrap_err();
    assert_eq!(duplicate.code(), Some(ErrorCode::SmartModuleExists));
    let invalid = fluvio.create_smartmodule("junk", b"not wasm".to_vec()).await.unwrap_err();
    assert_eq!(invalid.code(), Some(ErrorCode::InvalidSmartModule));
    let wrong_abi = fluvio.create_smartmodule("old", wasm("hostile-wrong-abi")).await.unwrap_err();
    assert!(wrong_abi.to_string().contains("ABI version 99"), "{wrong_abi}");
    fluvio.create_smartmodule("upper", wasm("uppercase-map")).await.unwrap();
    fluvio.create_topic("fruit", 1).await.unwrap();
    produce(&fluvio, "fruit", &["pear", "grape", "plum"]).await;

    server.kill9();
    let server = ServerProcess::start(&dir, &[]);
    let fluvio = server.client().await;
    let listed: Vec<_> = fluvio.list_smartmodules().await.unwrap().into_iter().map(|m| m.name).collect();
    assert_eq!(listed, ["my-filter", "upper"]);
    let config = from_beginning()
        .smartmodule(SmartModuleInvocation::predefined("my-filter"))
        .smartmodule(SmartModuleInvocation::predefined("upper"));
    assert_eq!(values(&read_all(&fluvio, "fruit", config).await), ["PEAR", "GRAPE"]);

    fluvio.delete_smartmodule("upper").await.unwrap();
    let missing = fluvio
        .consumer_stream("fruit", from_beginning().smartmodule(SmartModuleInvocation::predefined("upper")))
        .await
        .unwrap();
    let error = missing.collect::<Vec<_>>().await.pop().unwrap().unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::SmartModuleNotFound));
    assert!(error.to_string().contains("\"upper\" is not registered"), "{error}");
}

/// A module built with Fluvio's own crate registers, runs on the server for
/// a consumer and, ad hoc, in a producer, as the same source built here does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_built_with_fluvios_crate_run_on_the_server_and_in_producers() {
    let server = ServerProcess::start(&data_dir("fluvio-built"), &[]);
    let fluvio = server.client().await;
    let info = fluvio.create_smartmodule("their-upper", dev_support::fluvio_built_wasm("uppercase-map")).await.unwrap();
    assert_eq!(info.kind, ModuleKind::Map);
    fluvio.create_smartmodule("our-upper", dev_support::wasm("uppercase-map")).await.unwrap();
    let described = fluvio.describe_smartmodules(&[]).await.unwrap();
    let abis: Vec<(&str, &str)> = described.iter().map(|m| (m.info.name.as_str(), m.abi.as_str())).collect();
    assert_eq!(abis, [("our-upper", "native"), ("their-upper", "fluvio")]);
    let one = fluvio.describe_smartmodules(&["their-upper"]).await.unwrap();
    assert_eq!((one.len(), one[0].info.size), (1, info.size));
    fluvio.create_topic("fruit", 1).await.unwrap();
    let filter = SmartModuleInvocation::adhoc("their-filter", dev_support::fluvio_built_wasm("my-filter"));
    let config = ProducerConfig::default().smartmodule(filter);
    let producer = fluvio.topic_producer_with("fruit", config).await.unwrap();
    for value in ["pear", "grape", "plum", "banana"] {
        producer.send(RecordKey::NULL, value).await.unwrap();
    }
    producer.flush().await.unwrap();
    let config = from_beginning().smartmodule(SmartModuleInvocation::predefined("their-upper"));
    assert_eq!(values(&read_all(&fluvio, "fruit", config).await), ["PEAR", "GRAPE", "BANANA"]);
}

/// Fluvio's offset calls: every stored offset with Fluvio's field names,
/// and one partition's offset forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fluvios_offset_calls_list_offsets_and_forget_one_partition() {
    let server = ServerProcess::start(&data_dir("fluvio-offsets"), &[]);
    let fluvio = server.client().await;
    fluvio.create_topic("two", 2).await.unwrap();
    produce(&fluvio, "two", &["a", "b"]).await;
    fluvio.commit_offset("app", "two", 0, 1).await.unwrap();
    fluvio.commit_offset("app", "two", 1, 1).await.unwrap();
    let offsets = fluvio.consumer_offsets().await.unwrap();
    let seen: Vec<(&str, u32, i64)> = offsets.iter().map(|o| (o.consumer_id.as_str(), o.partition, o.offset)).collect();
    assert_eq!(seen, [("app", 0, 1), ("app", 1, 1)]);
    assert!(offsets[0].modified_time > std::time::SystemTime::UNIX_EPOCH);
    fluvio.delete_consumer_offset("app", ("two", 1)).await.unwrap();
    let left: Vec<u32> = fluvio.consumer_offsets().await.unwrap().iter().map(|o| o.partition).collect();
    assert_eq!(left, [0]);
    let again = fluvio.delete_consumer_offset("app", ("two", 1)).await.unwrap_err();
    assert_eq!(again.code(), Some(ErrorCode::ConsumerNotFound), "{again}");
}

/// The next record's value, within 30 s.
async fn next_value(stream: &mut fluvio_client::RecordStream) -> String {
    let record = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("a record within 30 s")
        .expect("the stream goes on")
        .expect("a record, not an error");
    String::from_utf8(record.value.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregate_stream_goes_on_from_its_last_sum_when_the_server_restarts() {
    let addr = format!("127.0.0.1:{}", dev_support::services::free_port());
    let dir = data_dir("aggregate-restart");
    let mut server = ServerProcess::start_at(&addr, &dir, &[], std::process::Stdio::inherit());
    let fluvio = server.client().await;
    fluvio.create_topic("numbers", 1).await.unwrap();
    produce(&fluvio, "numbers", &["1", "2", "3"]).await;

    let continuous = ConsumerConfig { continuous: true, ..from_beginning() };
    // As the CLI asks without --aggregate-initial: a module of any kind.
    let any_kind = continuous.clone().smartmodule(spec("sum-aggregate"));
    // As Fluvio code asks: an aggregate, from 100.
    let from_100 = continuous.smartmodule(SmartModuleInvocation {
        kind: SmartModuleKind::Aggregate { accumulator: b"100".to_vec() },
        ..spec("sum-aggregate")
    });
    let mut sums = fluvio.consumer_stream("numbers", any_kind).await.unwrap();
    let mut sums_from_100 = fluvio.consumer_stream("numbers", from_100).await.unwrap();
    for expected in ["1", "3", "6"] {
        assert_eq!(next_value(&mut sums).await, expected);
    }
    for expected in ["101", "103", "106"] {
        assert_eq!(next_value(&mut sums_from_100).await, expected);
    }

    // The streams move to the restarted server at offset 3: their
    // aggregates go on from the last sums they delivered.
    server.kill9();
    let server = ServerProcess::start_at(&addr, &dir, &[], std::process::Stdio::inherit());
    produce(&server.client().await, "numbers", &["4", "5"]).await;
    assert_eq!([next_value(&mut sums).await, next_value(&mut sums).await], ["10", "15"]);
    assert_eq!([next_value(&mut sums_from_100).await, next_value(&mut sums_from_100).await], ["110", "115"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_error_policies() {
    let server = ServerProcess::start(&data_dir("policies"), &[]);
    let fluvio = server.client().await;
    fluvio.create_topic("mixed", 1).await.unwrap();
    produce(&fluvio, "mixed", &["1", "x", "2", "y", "3"]).await;

    // fail: the records before the failure, then the error; the stream ends.
    let stream = fluvio.consumer_stream("mixed", from_beginning().smartmodule(spec("sum-aggregate"))).await.unwrap();
    let items: Vec<_> = stream.collect().await;
    assert_eq!(items.len(), 2);
    assert_eq!(&items[0].as_ref().unwrap().value[..], b"1");
    match &items[1] {
        Err(FluvioError::RecordFailed(failure)) => {
            assert_eq!(failure.offset, 1);
            assert!(failure.message.contains("invalid digit"), "{failure}");
        }
        other => panic!("expected a record failure, got {other:?}"),
    }
    // Through Fluvio's stream, the same failure is Fluvio's error code,
    // with the failed record.
    let fluvio_stream = fluvio_client::MultiplePartitionConsumerStream::new(
        fluvio.consumer_stream("mixed", from_beginning().smartmodule(spec("sum-aggregate"))).await.unwrap(),
    );
    let items: Vec<_> = fluvio_stream.collect().await;
    match &items[..] {
        [Ok(_), Err(fluvio_client::dataplane::link::ErrorCode::SmartModuleRuntimeError(error))] => {
            assert_eq!((error.offset, &error.record_value[..]), (1, &b"x"[..]));
            assert!(error.hint.contains("invalid digit"), "{}", error.hint);
        }
        other => panic!("expected one record and a runtime error, got {other:?}"),
    }

    // skip: failed records are dropped on the server.
    let skip = ConsumerConfig { policy: ErrorPolicy::Skip, ..from_beginning() }.smartmodule(spec("sum-aggregate"));
    assert_eq!(values(&read_all(&fluvio, "mixed", skip).await), ["1", "3", "6"]);

    // dead-letter: failed records reach the consumer's sink.
    let letters = Arc::new(Mutex::new(Vec::new()));
    let sink = {
        let letters = Arc::clone(&letters);
        Arc::new(move |failure: RecordFailure| letters.lock().unwrap().push((failure.offset, failure.value)))
    };
    let dead = ConsumerConfig { policy: ErrorPolicy::DeadLetter, dead_letters: Some(sink), ..from_beginning() }
        .smartmodule(spec("sum-aggregate"));
    assert_eq!(values(&read_all(&fluvio, "mixed", dead).await), ["1", "3", "6"]);
    assert_eq!(*letters.lock().unwrap(), vec![(1, b"x".to_vec()), (3, b"y".to_vec())]);
}

/// On a server started with `args`, an endless loop's stream fails with
/// an error that says `stopped_for`, and a good module's stream then runs.
async fn endless_loop_fails_only_its_own_stream(name: &str, args: &[&str], stopped_for: &str) {
    let server = ServerProcess::start(&data_dir(name), args);
    let fluvio = server.client().await;
    fluvio.create_topic("t", 1).await.unwrap();
    produce(&fluvio, "t", &["a", "b"]).await;
    let looping =
        fluvio.consumer_stream("t", from_beginning().smartmodule(spec("hostile-infinite-loop"))).await.unwrap();
    let error = looping.collect::<Vec<_>>().await.pop().unwrap().unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::SmartModuleFailed));
    assert!(error.to_string().contains(stopped_for), "{error}");
    assert_eq!(values(&read_all(&fluvio, "t", from_beginning().smartmodule(spec("uppercase-map"))).await), ["A", "B"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_module_fails_only_its_own_stream() {
    endless_loop_fails_only_its_own_stream("hostile", &["--smartmodule-fuel", "100000000"], "exceeded its CPU limit")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_deadline_metering_a_hostile_module_is_stopped_by_the_clock_and_good_ones_run() {
    let args = ["--smartmodule-metering", "deadline", "--smartmodule-call-ms", "300"];
    endless_loop_fails_only_its_own_stream("deadline", &args, "time limit of 300 ms").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_smartmodules_run_before_sending() {
    let server = ServerProcess::start(&data_dir("producer-sm"), &[]);
    let fluvio = server.client().await;
    fluvio.create_topic("filtered", 1).await.unwrap();
    let config = ProducerConfig::default().smartmodule(spec("my-filter")).smartmodule(spec("uppercase-map"));
    let producer = fluvio.topic_producer_with("filtered", config).await.unwrap();
    assert_eq!(producer.topic(), "filtered");
    let mut outputs = Vec::new();
    for value in ["cat", "dog", "bat", "owl"] {
        outputs.push(producer.send(RecordKey::NULL, value).await.unwrap());
    }
    producer.flush().await.unwrap();
    let mut offsets = Vec::new();
    for output in outputs {
        offsets.push(output.wait().await.unwrap().stored_offset());
    }
    assert_eq!(offsets, vec![Some(0), None, Some(1), None]);
    // Only the outputs were sent and stored.
    assert_eq!(values(&read_all(&fluvio, "filtered", from_beginning()).await), ["CAT", "BAT"]);

    // A registered module is fetched from the server and run locally.
    fluvio.create_smartmodule("splitter", wasm("json-array-map")).await.unwrap();
    fluvio.create_topic("split", 1).await.unwrap();
    let producer = fluvio
        .topic_producer_with(
            "split",
            ProducerConfig::default().smartmodule(SmartModuleInvocation::predefined("splitter")),
        )
        .await
        .unwrap();
    let output = producer.send(RecordKey::NULL, "[\"x\",\"y\",\"z\"]").await.unwrap();
    let dropped = producer.send(RecordKey::NULL, "[]").await.unwrap();
    producer.flush().await.unwrap();
    // Fluvio's wait_all: where each record made from the one sent went.
    let made: Vec<i64> = output.wait_all().await.unwrap().iter().map(|stored| stored.offset()).collect();
    assert_eq!(made, [0, 1, 2]);
    assert!(dropped.wait_all().await.unwrap().is_empty());
    let stored = read_all(&fluvio, "split", from_beginning()).await;
    assert_eq!(values(&stored), ["\"x\"", "\"y\"", "\"z\""]);
    assert_eq!(stored.iter().map(|r| r.offset).collect::<Vec<_>>(), [0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_error_policies_never_drop_errors_silently() {
    let server = ServerProcess::start(&data_dir("producer-policies"), &[]);
    let fluvio = server.client().await;
    fluvio.create_topic("p", 1).await.unwrap();

    let send_all = |config: ProducerConfig| {
        let fluvio = fluvio.clone();
        async move {
            let producer = fluvio.topic_producer_with("p", config).await.unwrap();
            let mut outputs = Vec::new();
            for value in ["2", "x", "4"] {
                outputs.push(producer.send(RecordKey::NULL, value).await.unwrap());
            }
            producer.flush().await.unwrap();
            let mut results = Vec::new();
            for output in outputs {
                results.push(output.wait().await.map(|stored| stored.stored_offset()));
            }
            (results, producer.skipped(), producer.dead_lettered())
        }
    };
    // fail: the failed record and the ones after it report the failure.
    let (results, _, _) = send_all(ProducerConfig::default().smartmodule(spec("even-filter-map"))).await;
    assert_eq!(results[0].as_ref().unwrap(), &Some(0));
    assert!(matches!(&results[1], Err(FluvioError::RecordFailed(f)) if f.offset == 1), "{:?}", results[1]);
    assert!(results[2].is_err());
    // skip: counted.
    let (results, skipped, _) = send_all(
        ProducerConfig { policy: ErrorPolicy::Skip, ..Default::default() }.smartmodule(spec("even-filter-map")),
    )
    .await;
    assert_eq!((results[1].as_ref().unwrap(), skipped), (&None, 1));
    // dead-letter: handed to the sink.
    let letters = Arc::new(Mutex::new(Vec::new()));
    let sink = {
        let letters = Arc::clone(&letters);
        Arc::new(move |failure: RecordFailure| letters.lock().unwrap().push(failure.value))
    };
    let (_, _, dead) = send_all(
        ProducerConfig { policy: ErrorPolicy::DeadLetter, dead_letters: Some(sink), ..Default::default() }
            .smartmodule(spec("even-filter-map")),
    )
    .await;
    assert_eq!((dead, letters.lock().unwrap().clone()), (1, vec![b"x".to_vec()]));
    assert_eq!(values(&read_all(&fluvio, "p", from_beginning()).await), ["1", "1", "2", "1", "2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_filtering_sends_fewer_bytes() {
    let server = ServerProcess::start(&data_dir("bytes"), &["--flush", "os"]);
    let fluvio = server.client().await;
    fluvio.create_topic("events", 1).await.unwrap();
    let producer = fluvio.topic_producer("events").await.unwrap();
    for i in 0..2_000 {
        // One record in ten contains an `a`.
        let value =
            if i % 10 == 0 { format!("{i:06} a {}", "x".repeat(90)) } else { format!("{i:06} {}", "z".repeat(92)) };
        producer.send(RecordKey::NULL, value).await.unwrap();
    }
    producer.flush().await.unwrap();

    let mut plain = fluvio.consumer_stream("events", from_beginning()).await.unwrap();
    let mut plain_count = 0;
    while let Some(record) = plain.next().await {
        record.unwrap();
        plain_count += 1;
    }
    let mut filtered = fluvio.consumer_stream("events", from_beginning().smartmodule(spec("my-filter"))).await.unwrap();
    let mut filtered_count = 0;
    while let Some(record) = filtered.next().await {
        assert!(String::from_utf8(record.unwrap().value.to_vec()).unwrap().contains('a'));
        filtered_count += 1;
    }
    assert_eq!((plain_count, filtered_count), (2_000, 200));
    let (plain_bytes, filtered_bytes) = (plain.bytes_received(), filtered.bytes_received());
    assert!(plain_bytes > 2_000 * 100, "{plain_bytes}");
    assert!(filtered_bytes * 5 < plain_bytes, "filtered {filtered_bytes} bytes vs {plain_bytes} unfiltered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_are_independent() {
    let server = ServerProcess::start(&data_dir("partitions"), &["--flush", "interval:50"]);
    let fluvio = server.client().await;
    fluvio.create_topic("split", 2).await.unwrap();
    let one =
        fluvio.topic_producer_with("split", ProducerConfig { partition: Some(1), ..Default::default() }).await.unwrap();
    let output = one.send(RecordKey::NULL, "in-one").await.unwrap();
    one.flush().await.unwrap();
    let stored = output.wait().await.unwrap();
    assert_eq!((stored.partition_id(), stored.offset()), (1, 0));
    let zero =
        fluvio.topic_producer_with("split", ProducerConfig { partition: Some(0), ..Default::default() }).await.unwrap();
    for value in ["in-zero-a", "in-zero-b"] {
        zero.send(RecordKey::NULL, value).await.unwrap();
    }
    zero.flush().await.unwrap();
    assert_eq!(values(&read_all(&fluvio, "split", from_beginning().partition(1)).await), ["in-one"]);
    assert_eq!(values(&read_all(&fluvio, "split", from_beginning().partition(0)).await), ["in-zero-a", "in-zero-b"]);
    let topics = fluvio.list_topics().await.unwrap();
    assert_eq!(topics[0].next_offsets, vec![2, 1]);
    let missing = fluvio
        .topic_producer_with("split", ProducerConfig { partition: Some(2), ..Default::default() })
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("no partition 2"), "{missing}");
    let stream = fluvio.consumer_stream("split", from_beginning().partition(7)).await.unwrap();
    let error = stream.collect::<Vec<_>>().await.pop().unwrap().unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::PartitionNotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_spread_records_by_key_and_in_turn_and_consumers_read_every_partition() {
    let server = ServerProcess::start(&data_dir("spread"), &["--flush", "interval:50"]);
    let fluvio = server.client().await;
    fluvio.create_topic("spread", 3).await.unwrap();
    // Keyed: every record of a key lands on the key's partition.
    let producer = fluvio.topic_producer("spread").await.unwrap();
    let mut outputs = Vec::new();
    for i in 0..300 {
        let key = format!("user-{}", i % 10);
        outputs.push((key.clone(), producer.send(key, format!("keyed-{i}")).await.unwrap()));
    }
    producer.flush().await.unwrap();
    let mut partition_of_key = std::collections::HashMap::new();
    for (key, output) in outputs {
        let stored = output.wait().await.unwrap();
        assert_eq!(stored.partition_id(), fluvio_client::partition_for_key(key.as_bytes(), 3));
        assert_eq!(*partition_of_key.entry(key).or_insert(stored.partition_id()), stored.partition_id());
    }
    let used: std::collections::HashSet<u32> = partition_of_key.values().copied().collect();
    assert!(used.len() > 1, "ten keys all hashed to one partition: {partition_of_key:?}");
    // Without keys: each record goes to the next partition, as in Fluvio,
    // however they are batched.
    let producer = fluvio.topic_producer("spread").await.unwrap();
    let mut outputs = Vec::new();
    for i in 0..6 {
        outputs.push(producer.send(RecordKey::NULL, format!("plain-{i}")).await.unwrap());
    }
    producer.flush().await.unwrap();
    let mut partitions = Vec::new();
    for output in outputs {
        partitions.push(output.wait().await.unwrap().partition_id());
    }
    assert_eq!(partitions, [0, 1, 2, 0, 1, 2]);
    // A partitioner of the program's own.
    struct Last;
    impl fluvio_client::Partitioner for Last {
        fn partition(&self, config: &fluvio_client::PartitionerConfig, _: Option<&[u8]>, _: &[u8]) -> u32 {
            config.partition_count() - 1
        }
    }
    let last = ProducerConfig { partitioner: std::sync::Arc::new(Last), ..Default::default() };
    let producer = fluvio.topic_producer_with("spread", last).await.unwrap();
    let output = producer.send("any key", "last").await.unwrap();
    producer.flush().await.unwrap();
    assert_eq!(output.wait().await.unwrap().partition_id(), 2);

    // One stream over all partitions: every record once, each partition in
    // order, each record saying its partition.
    let records = read_all(&fluvio, "spread", from_beginning()).await;
    assert_eq!(records.len(), 307);
    for partition in 0..3 {
        let offsets: Vec<i64> = records.iter().filter(|r| r.partition == partition).map(|r| r.offset).collect();
        assert_eq!(offsets, (0..offsets.len() as i64).collect::<Vec<_>>(), "partition {partition}");
    }
    // The default partitioner's keyed records (not the one `Last` placed).
    for record in records.iter().filter(|r| r.key.is_some() && r.value.as_ref() != b"last") {
        assert_eq!(record.partition, fluvio_client::partition_for_key(record.key.as_deref().unwrap(), 3));
    }
}

/// A consumer config with an id and a strategy, reading to the end.
fn as_consumer(id: &str, strategy: OffsetManagementStrategy) -> ConsumerConfig {
    ConsumerConfig {
        consumer_id: Some(id.to_string()),
        offset_strategy: strategy,
        offset_flush: Duration::from_millis(20),
        ..from_beginning()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_offsets_are_stored_resumed_listed_deleted_and_survive_kill_9() {
    let dir = data_dir("consumer-offsets");
    let mut server = ServerProcess::start(&dir, &[]);
    let fluvio = server.client().await;
    fluvio.create_topic("jobs", 2).await.unwrap();
    let zero = fluvio.topic_producer_with("jobs", ProducerConfig { partition: Some(0), ..Default::default() });
    let zero = zero.await.unwrap();
    for i in 0..10 {
        zero.send(RecordKey::NULL, format!("job-{i}")).await.unwrap();
    }
    zero.flush().await.unwrap();

    // Manual: only what is committed and flushed is stored.
    let mut stream =
        fluvio.consumer_stream("jobs", as_consumer("worker", OffsetManagementStrategy::Manual)).await.unwrap();
    for _ in 0..4 {
        stream.next().await.unwrap().unwrap();
    }
    stream.offset_commit().unwrap();
    stream.offset_flush().await.unwrap();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    assert_eq!(fluvio.fetch_offset("worker", "jobs", 0).await.unwrap(), Some(4));
    let rest = read_all(&fluvio, "jobs", as_consumer("worker", OffsetManagementStrategy::None)).await;
    assert_eq!(values(&rest), (4..10).map(|i| format!("job-{i}")).collect::<Vec<_>>());

    // Auto: every record handed out is stored, on a timer and on drop.
    let mut stream = fluvio.consumer_stream("jobs", as_consumer("auto", OffsetManagementStrategy::Auto)).await.unwrap();
    for _ in 0..7 {
        stream.next().await.unwrap().unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while fluvio.fetch_offset("auto", "jobs", 0).await.unwrap() != Some(7) {
        assert!(tokio::time::Instant::now() < deadline, "the auto strategy did not store offset 7");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(stream);

    // Stored durably: kill -9, restart, and resume where each left off.
    server.kill9();
    let server = ServerProcess::start(&dir, &[]);
    let fluvio = server.client().await;
    let resumed = read_all(&fluvio, "jobs", as_consumer("auto", OffsetManagementStrategy::None)).await;
    assert_eq!(values(&resumed), ["job-7", "job-8", "job-9"]);
    let listed = fluvio.list_consumers().await.unwrap();
    let listed: Vec<(&str, u32, i64)> = listed.iter().map(|c| (c.consumer.as_str(), c.partition, c.offset)).collect();
    assert_eq!(listed, [("auto", 0, 7), ("worker", 0, 4)]);

    // Refused: a bad id, an offset past the end, an unknown partition.
    let error = fluvio.commit_offset("no spaces", "jobs", 0, 1).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::InvalidRequest), "{error}");
    let error = fluvio.commit_offset("worker", "jobs", 0, 11).await.unwrap_err();
    assert!(error.to_string().contains("holds offsets up to 10"), "{error}");
    let error = fluvio.commit_offset("worker", "jobs", 5, 0).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::PartitionNotFound), "{error}");

    // Deleted: the consumer starts afresh; unknown ones are an error.
    fluvio.delete_consumer("worker", None).await.unwrap();
    assert_eq!(fluvio.fetch_offset("worker", "jobs", 0).await.unwrap(), None);
    let error = fluvio.delete_consumer("worker", None).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::ConsumerNotFound), "{error}");
    // A topic deleted and made again has no consumers left from before.
    fluvio.delete_topic("jobs").await.unwrap();
    fluvio.create_topic("jobs", 1).await.unwrap();
    assert_eq!(fluvio.fetch_offset("auto", "jobs", 0).await.unwrap(), None);
    assert!(fluvio.list_consumers().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fluvio_shaped_admin_producer_and_consumer_api() {
    use fluvio_client::metadata::smartmodule::SmartModuleSpec;
    use fluvio_client::metadata::topic::TopicSpec;
    use fluvio_client::producer::{DeliverySemantic, TopicProducerConfigBuilder};
    use fluvio_client::{ConsumerConfig, Fluvio, FluvioConfig, Offset};

    let server = ServerProcess::start(&data_dir("fluvio-shaped"), &[]);
    let fluvio = Fluvio::connect_with_config(&FluvioConfig::new(server.addr.clone())).await.unwrap();
    let admin = fluvio.admin().await;
    admin.create("letters".to_string(), false, TopicSpec::new_computed(2, 1, None)).await.unwrap();
    admin.create("dry".to_string(), true, TopicSpec::new_computed(1, 1, None)).await.unwrap();
    let topics = admin.all::<TopicSpec>().await.unwrap();
    assert_eq!(topics.iter().map(|t| (t.name.as_str(), t.spec.partitions())).collect::<Vec<_>>(), [("letters", 2)]);
    let error = admin.create("zero".to_string(), false, TopicSpec::new_computed(0, 1, None)).await.unwrap_err();
    assert!(error.to_string().contains("at least one partition"), "{error}");
    admin
        .create(
            "upper".to_string(),
            false,
            SmartModuleSpec {
                wasm: fluvio_client::metadata::smartmodule::SmartModuleWasm::from_raw_wasm_bytes(&wasm(
                    "uppercase-map",
                ))
                .unwrap(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let modules = admin.list::<SmartModuleSpec, _>(vec!["upper"]).await.unwrap();
    assert_eq!(modules.len(), 1);
    assert_eq!(modules[0].status.kind, ModuleKind::Map);
    assert_eq!(modules[0].spec.summary.unwrap().wasm_length as usize, wasm("uppercase-map").len());

    let config = TopicProducerConfigBuilder::default()
        .batch_size(64)
        .linger(Duration::from_millis(1))
        .delivery_semantic(DeliverySemantic::AtMostOnce)
        .partition(1)
        .build()
        .unwrap();
    let producer = fluvio.topic_producer_with_config("letters", config).await.unwrap();
    let outputs = producer.send_all(["a", "b", "c", "d"].map(|v| (RecordKey::from("k"), v))).await.unwrap();
    producer.flush().await.unwrap();
    for (i, output) in outputs.into_iter().enumerate() {
        let stored = output.wait().await.unwrap();
        assert_eq!((stored.partition_id(), stored.offset()), (1, i as i64));
    }

    let consumer = fluvio.partition_consumer("letters", 1).await.unwrap();
    let config = ConsumerConfig::builder()
        .disable_continuous(true)
        .smartmodule(vec![SmartModuleInvocation::predefined("upper")])
        .build()
        .unwrap();
    let stream = consumer.stream_with_config(Offset::from_beginning(2), config).await.unwrap();
    let records: Vec<_> = stream.map(|r| r.unwrap()).collect().await;
    let seen: Vec<(u32, i64, String, Option<&[u8]>)> = records
        .iter()
        .map(|r| (r.partition(), r.offset(), r.get_value().as_utf8_lossy_string().into_owned(), r.key()))
        .collect();
    assert_eq!(seen, [(1, 2, "C".to_string(), Some(&b"k"[..])), (1, 3, "D".to_string(), Some(&b"k"[..]))]);
    assert!(records[0].timestamp() > 1_600_000_000_000, "a real timestamp: {}", records[0].timestamp());
    assert!(fluvio.partition_consumer("letters", 2).await.is_err());

    // An invocation written as a Fluvio struct literal, with ad hoc wasm.
    admin.create("nums".to_string(), false, TopicSpec::new_computed(1, 1, None)).await.unwrap();
    produce(&fluvio, "nums", &["1", "2", "3"]).await;
    let literal = SmartModuleInvocation {
        wasm: fluvio_client::SmartModuleInvocationWasm::adhoc_from_bytes(&wasm("sum-aggregate")).unwrap(),
        kind: SmartModuleKind::Aggregate { accumulator: b"10".to_vec() },
        params: Default::default(),
    };
    let sums = read_all(&fluvio, "nums", from_beginning().smartmodule(literal)).await;
    assert_eq!(values(&sums), ["11", "13", "16"]);

    admin.delete::<TopicSpec>("letters").await.unwrap();
    admin.delete::<SmartModuleSpec>("upper").await.unwrap();
    assert_eq!(admin.all::<TopicSpec>().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_back_warms_a_module_with_stored_records_before_the_stream() {
    use fluvio_client::protocol::Lookback;

    let server = ServerProcess::start(&data_dir("look-back"), &[]);
    let fluvio = server.client().await;
    fluvio.create_topic("events", 1).await.unwrap();
    produce(&fluvio, "events", &["a", "b", "c"]).await;
    let dedup = || SmartModuleInvocation::adhoc("dedup-filter", wasm("dedup-filter"));

    // The last two stored records are fed to look_back: b and c are known,
    // a is not; the stream itself starts at the end.
    let config = ConsumerConfig { offset: OffsetSpec::End, ..Default::default() }
        .smartmodule(dedup().lookback(Lookback::last(2)));
    let mut stream = fluvio.consumer_stream("events", config).await.unwrap();
    produce(&fluvio, "events", &["a", "b", "c", "d", "d"]).await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let record = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
        seen.push(String::from_utf8(record.value.to_vec()).unwrap());
    }
    assert_eq!(seen, ["a", "d"]);

    // Without a lookback the module starts empty.
    let plain = read_all(&fluvio, "events", from_beginning().smartmodule(dedup())).await;
    assert_eq!(values(&plain), ["a", "b", "c", "d"]);

    // By age: everything stored is younger than an hour.
    let config = from_beginning().smartmodule(dedup().lookback(Lookback::age(Duration::from_secs(3600), None)));
    assert!(read_all(&fluvio, "events", config).await.is_empty());

    // A look_back error stops the stream before it starts, naming the offset.
    produce(&fluvio, "events", &[""]).await;
    let config = from_beginning().smartmodule(dedup().lookback(Lookback::last(1)));
    let stream = fluvio.consumer_stream("events", config).await.unwrap();
    let error = stream.collect::<Vec<_>>().await.pop().unwrap().unwrap_err();
    assert!(error.to_string().contains("failed in look_back at offset 8"), "{error}");

    // A lookback for a module without look_back is refused.
    let config = from_beginning().smartmodule(spec("my-filter").lookback(Lookback::last(1)));
    let stream = fluvio.consumer_stream("events", config).await.unwrap();
    let error = stream.collect::<Vec<_>>().await.pop().unwrap().unwrap_err();
    assert!(error.to_string().contains("has no look_back function"), "{error}");
    // And producers refuse lookbacks: only streams read stored records.
    let error = fluvio
        .topic_producer_with("events", ProducerConfig::default().smartmodule(dedup().lookback(Lookback::last(1))))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("only consumer streams"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_batches_are_stored_and_sent_compressed_and_opened_for_smartmodules() {
    use fluvio_client::Compression;

    let dir = data_dir("compression");
    let mut server = ServerProcess::start(&dir, &[]);
    let fluvio = server.client().await;
    let values: Vec<String> = (0..2_000).map(|i| format!("{{\"reading\":{i},\"site\":\"north-{}\"}}", i % 7)).collect();
    let mut sent = Vec::new();
    for codec in Compression::ALL {
        let topic = format!("readings-{codec}");
        fluvio.create_topic(&topic, 1).await.unwrap();
        let config = ProducerConfig { compression: codec, ..Default::default() };
        let producer = fluvio.topic_producer_with(&topic, config).await.unwrap();
        for value in &values {
            producer.send(RecordKey::NULL, value.as_str()).await.unwrap();
        }
        producer.flush().await.unwrap();
        sent.push((codec, producer.bytes_sent()));
    }
    let plain_bytes = sent[0].1;
    for (codec, bytes) in &sent[1..] {
        assert!(bytes * 3 < plain_bytes, "{codec}: {bytes} bytes sent against {plain_bytes} uncompressed");
    }
    // Stored compressed: the segment files are smaller too.
    let stored = |codec: Compression| -> u64 {
        std::fs::read_dir(dir.join("topics").join(format!("readings-{codec}")).join("0"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "log"))
            .map(|path| std::fs::metadata(path).unwrap().len())
            .sum()
    };
    assert!(stored(Compression::Zstd) * 3 < stored(Compression::None), "zstd segments are not smaller");

    // After a kill -9 the partitions recover with their compressed batches.
    server.kill9();
    let server = ServerProcess::start(&dir, &[]);
    let fluvio = server.client().await;
    for codec in Compression::ALL {
        let topic = format!("readings-{codec}");
        let mut plain = fluvio.consumer_stream(&topic, from_beginning()).await.unwrap();
        let mut count = 0;
        while let Some(record) = plain.next().await {
            let record = record.unwrap();
            assert_eq!(String::from_utf8(record.value.to_vec()).unwrap(), values[count], "{codec}");
            assert_eq!(record.offset, count as i64);
            count += 1;
        }
        assert_eq!(count, values.len(), "{codec}");
        if codec != Compression::None {
            // The consumer got the stored bytes, compressed.
            assert!(plain.bytes_received() * 3 < plain_bytes, "{codec}: {} bytes received", plain.bytes_received());
        }
        // SmartModules see records: the server opens the batches first.
        let filtered =
            read_all(&fluvio, &topic, from_beginning().smartmodule(spec("params-filter").param("contains", "north-3")))
                .await;
        assert_eq!(filtered.len(), values.iter().filter(|v| v.contains("north-3")).count(), "{codec}");
        // A consumer starting inside a compressed batch gets the rest.
        let tail =
            read_all(&fluvio, &topic, ConsumerConfig { offset: OffsetSpec::Absolute(1_995), ..from_beginning() }).await;
        assert_eq!(tail.iter().map(|r| r.offset).collect::<Vec<_>>(), (1_995..2_000).collect::<Vec<_>>(), "{codec}");
    }
}
