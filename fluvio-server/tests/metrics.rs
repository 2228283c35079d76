//! The HTTP listener's `/metrics`, scraped by a real Prometheus (Debian's
//! `prometheus`) and checked by its `promtool`, against the real server
//! binary on loopback: the series say what was produced, consumed and
//! filtered; client-made series are capped; tokens (or the console's login
//! cookie) are asked for where an access file says so.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ServerProcess, data_dir, produce, read_all, values};
use dev_support::services::{Prometheus, free_port, http_get, http_request};
use fluvio_client::{ConsumerConfig, OffsetSpec, SmartModuleInvocation};

/// The value of the sample `name{labels}` (labels exactly as the server
/// writes them, in order), if the exposition has it.
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `promtool check metrics` on the exposition: its complaints, if any.
fn promtool_check(exposition: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is not installed; run scripts/test.sh, or `apt-get install -y prometheus`");
    child.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && said.trim().is_empty(), "promtool check metrics: {said}");
}

/// The single value of an instant query's answer, once Prometheus has one
/// equal to `expected` (scrapes come every second).
fn wait_for_value(prometheus: &Prometheus, promql: &str, expected: f64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        last = prometheus.query(promql);
        let answer: serde_json::Value = serde_json::from_str(&last).expect("Prometheus answers JSON");
        let value = answer["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse::<f64>().ok());
        if value == Some(expected) {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!(
        "Prometheus never answered {expected} to {promql}; last answer {last}; targets {}; log {}",
        prometheus.targets(),
        prometheus.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_what_was_produced_consumed_and_filtered() {
    let http = format!("127.0.0.1:{}", free_port());
    let server = ServerProcess::start(&data_dir("metrics"), &["--http", &http]);
    let fluvio = server.client().await;
    fluvio.create_smartmodule("my-filter", common::wasm("my-filter")).await.unwrap();
    fluvio.create_topic("t", 2).await.unwrap();
    let words: Vec<String> =
        (0..500).map(|i| if i % 5 == 0 { format!("{i}-banana") } else { format!("{i}-kiwi") }).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    produce(&fluvio, "t", &words).await;
    let config = ConsumerConfig {
        offset: OffsetSpec::Beginning,
        smartmodules: vec![SmartModuleInvocation::predefined("my-filter")],
        ..Default::default()
    };
    let kept = values(&read_all(&fluvio, "t", config).await);
    assert_eq!(kept.len(), 100, "the filter keeps one word in five");
    // A consumer id's lag: it committed offset 10 in partition 0.
    fluvio.commit_offset("reporting", "t", 0, 10).await.unwrap();
    let ends = fluvio.topic_info("t").await.unwrap().next_offsets;

    let (status, exposition) = http_get(&http, "/metrics", &[]);
    assert_eq!(status, 200, "{exposition}");
    promtool_check(&exposition);
    let appended: f64 = (0..2)
        .map(|p| {
            sample(&exposition, &format!("fluvio_records_appended_total{{topic=\"t\",partition=\"{p}\"}}"))
                .unwrap_or(0.0)
        })
        .sum();
    assert_eq!(appended, 500.0, "{exposition}");
    assert_eq!(sample(&exposition, "fluvio_smartmodule_records_in_total{module=\"my-filter\"}"), Some(500.0));
    assert_eq!(sample(&exposition, "fluvio_smartmodule_records_out_total{module=\"my-filter\"}"), Some(100.0));
    assert_eq!(sample(&exposition, "fluvio_stream_records_sent_total{topic=\"t\"}"), Some(100.0));
    let lag = sample(&exposition, "fluvio_consumer_lag{consumer=\"reporting\",topic=\"t\",partition=\"0\"}");
    assert_eq!(lag, Some((ends[0] - 10) as f64));
    assert!(sample(&exposition, "fluvio_smartmodule_compile_seconds_count").is_some_and(|n| n >= 1.0), "{exposition}");
    assert!(sample(&exposition, "fluvio_fsync_seconds_count").is_some_and(|n| n >= 1.0), "{exposition}");
    // What the partitions' segment files take on disk.
    let segments = |p: u32| -> f64 {
        let dir = server.data_dir.join("topics").join("t").join(p.to_string());
        std::fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().extension().is_some_and(|extension| extension == "log"))
            .map(|entry| entry.metadata().unwrap().len() as f64)
            .sum()
    };
    for p in 0..2 {
        let series = format!("fluvio_partition_stored_bytes{{topic=\"t\",partition=\"{p}\"}}");
        assert_eq!(sample(&exposition, &series), Some(segments(p)), "{exposition}");
    }
    assert!(sample(&exposition, "fluvio_connections").is_some_and(|n| n >= 1.0), "{exposition}");

    // A real Prometheus scrapes the same numbers.
    let prometheus = Prometheus::start(&[&http], None);
    wait_for_value(&prometheus, "sum(fluvio_records_appended_total{topic=\"t\"})", 500.0);
    wait_for_value(&prometheus, "fluvio_smartmodule_records_out_total{module=\"my-filter\"}", 100.0);
    produce(&fluvio, "t", &["late-banana"]).await;
    wait_for_value(&prometheus, "sum(fluvio_records_appended_total{topic=\"t\"})", 501.0);

    // Anything else is not found.
    let (status, body) = http_get(&http, "/nothing-here", &[]);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("/metrics"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_series_are_capped_however_many_consumer_ids_commit() {
    let http = format!("127.0.0.1:{}", free_port());
    let server = ServerProcess::start(&data_dir("metrics-cap"), &["--http", &http]);
    let fluvio = server.client().await;
    fluvio.create_topic("busy", 1).await.unwrap();
    produce(&fluvio, "busy", &["one", "two"]).await;
    let ids = fluvio_server::metrics::MAX_CONSUMER_SERIES + 50;
    for n in 0..ids {
        fluvio.commit_offset(&format!("consumer-{n:05}"), "busy", 0, 1).await.unwrap();
    }
    let (status, exposition) = http_get(&http, "/metrics", &[]);
    assert_eq!(status, 200);
    promtool_check(&exposition);
    let lag_series = exposition.lines().filter(|line| line.starts_with("fluvio_consumer_lag{")).count();
    assert_eq!(lag_series, fluvio_server::metrics::MAX_CONSUMER_SERIES, "capped");
    assert_eq!(sample(&exposition, "fluvio_consumer_lag_series_dropped"), Some(50.0));
    // The first by name are shown, each with its lag.
    assert_eq!(
        sample(&exposition, "fluvio_consumer_lag{consumer=\"consumer-00000\",topic=\"busy\",partition=\"0\"}"),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_an_access_file_only_admins_see_metrics_unless_they_are_public() {
    let dir = data_dir("metrics-access");
    std::fs::create_dir_all(&dir).unwrap();
    let access = dir.join("access.toml");
    std::fs::write(
        &access,
        "[[principal]]\nname = \"ops\"\nrole = \"admin\"\ntoken = \"ops-token-0123456789abcdef\"\n\n\
         [[principal]]\nname = \"app\"\nrole = \"client\"\ntoken = \"app-token-0123456789abcdef\"\ntopics = [\"t\"]\n",
    )
    .unwrap();
    let access = access.to_str().unwrap().to_string();
    let http = format!("127.0.0.1:{}", free_port());
    let server = ServerProcess::start(&dir.join("data"), &["--http", &http, "--access", &access]);
    let (status, body) = http_get(&http, "/metrics", &[]);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    let (status, body) = http_get(&http, "/metrics", &["Authorization: Bearer not-a-token"]);
    assert_eq!(status, 401, "{body}");
    let (status, body) = http_get(&http, "/metrics", &["Authorization: Bearer app-token-0123456789abcdef"]);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("app is not an admin"), "{body}");
    let (status, body) = http_get(&http, "/metrics", &["Authorization: Bearer ops-token-0123456789abcdef"]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("fluvio_connections"), "{body}");
    // The console asks a browser to log in, and takes the admin's token
    // in the cookie the login sets.
    let (status, body) = http_get(&http, "/", &[]);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("<form method=\"post\" action=\"/login\">"), "{body}");
    let (status, body) = http_request(&http, "POST", "/login", &[], Some("token=app-token-0123456789abcdef"));
    assert_eq!(status, 401, "a client's token does not open the console: {body}");
    let (status, _) = http_request(&http, "POST", "/login", &[], Some("token=ops-token-0123456789abcdef"));
    assert_eq!(status, 303);
    let (status, body) = http_get(&http, "/", &["Cookie: fluvio_token=ops-token-0123456789abcdef"]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("id=\"topics\""), "{body}");
    // Prometheus scrapes with the admin's token.
    let prometheus = Prometheus::start(&[&http], Some("ops-token-0123456789abcdef"));
    wait_for_value(&prometheus, "up{job=\"fluvio\"}", 1.0);
    drop(server);

    // With --metrics-public, /metrics needs no token; other pages still do.
    let http = format!("127.0.0.1:{}", free_port());
    let _server =
        ServerProcess::start(&dir.join("data-public"), &["--http", &http, "--access", &access, "--metrics-public"]);
    let (status, body) = http_get(&http, "/metrics", &[]);
    assert_eq!(status, 200, "{body}");
    let (status, _) = http_get(&http, "/anything-else", &[]);
    assert_eq!(status, 401);
}
