//! The web console in a real headless browser (Chromium over WebDriver),
//! against a local cluster started with `fluvio cluster start --http`: the
//! topics page lists a topic made here, the live tail shows records
//! produced after it opened, through a SmartModule picked on the page, and
//! a connector's status changes after its process is killed. Screenshots
//! are left in the test's output directory for a person to look at.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Cluster;
use dev_support::browser::Browser;
use dev_support::services::{Mosquitto, free_port, http_get};

fn fluvio_ok(cluster: &Cluster, args: &[&str], stdin: Option<&str>) -> String {
    let out = cluster.fluvio(args, stdin, Path::new("."));
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    assert!(out.status.success(), "fluvio {args:?} failed: {}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// Where screenshots go: the test's output directory under `target/`.
fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_console_lists_topics_tails_through_a_smartmodule_and_shows_a_killed_connector() {
    let broker = Mosquitto::start();
    let http = format!("127.0.0.1:{}", free_port());
    let cluster = Cluster::start_with("console", &["--http", &http]);
    fluvio_ok(&cluster, &["topic", "create", "orders", "-p", "2"], None);
    let filter = dev_support::wasm_path("my-filter");
    fluvio_ok(&cluster, &["smartmodule", "create", "my-filter", "--wasm-file", filter.to_str().unwrap()], None);
    // A connector the server runs: an MQTT source.
    fluvio_ok(&cluster, &["topic", "create", "readings"], None);
    let work = cluster.home.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let config = work.join("source.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: readings-in\n  type: mqtt-source\n  topic: readings\n\
             mqtt:\n  url: {}\n  topics: [ \"console-test/#\" ]\n",
            broker.url()
        ),
    )
    .unwrap();
    fluvio_ok(&cluster, &["connector", "create", "--config", config.to_str().unwrap()], None);

    let shots = screenshots();
    let browser = Browser::start();
    let console = format!("http://{http}");

    // The topics page lists what was made here.
    browser.open(&format!("{console}/"));
    let topics = browser.wait_for_text("#topics", Duration::from_secs(30), |text| text.contains("orders"));
    assert!(topics.contains("readings"), "{topics}");
    assert!(browser.text("#health").contains("up"), "{}", browser.text("#health"));
    browser.screenshot(&shots.join("topics.png"));

    // The live tail, through the filter chosen on the page: records
    // produced after it opened, the filter's only.
    browser.open(&format!("{console}/tail/orders"));
    browser.run(
        "document.getElementById('module').value = 'my-filter'; document.getElementById('start').click(); return '';",
    );
    browser.wait_for_text("#state", Duration::from_secs(30), |text| text == "tailing");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut round = 0;
    let shown = loop {
        round += 1;
        fluvio_ok(&cluster, &["produce", "orders"], Some(&format!("{round}-banana\n{round}-kiwi\n")));
        let shown = browser.text("#records");
        if shown.contains("banana") {
            break shown;
        }
        assert!(std::time::Instant::now() < deadline, "the tail shows no record: {shown}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(!shown.contains("kiwi"), "the filter drops what has no `a`: {shown}");
    browser.screenshot(&shots.join("tail.png"));

    // The connector runs; killed, it is shown restarting.
    browser.open(&format!("{console}/connectors"));
    browser.wait_for_text("#connectors", Duration::from_secs(30), |text| text.contains("running"));
    browser.screenshot(&shots.join("connectors-running.png"));
    let pid = std::fs::read_to_string(cluster.home.join("data/connectors/readings-in/pid"))
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .expect("the connector's pid file");
    assert_eq!(std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().code(), Some(0));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        browser.open(&format!("{console}/connectors"));
        let status = browser.text("#connectors");
        // Restarting for a second (the first backoff), then running again
        // with one restart counted.
        let restarts = browser.text("#connectors tr:nth-child(2) td:nth-child(5)");
        if status.contains("restarting") || restarts.trim() == "1" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the killed connector is not shown restarting: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
    browser.screenshot(&shots.join("connectors-killed.png"));
    for shot in ["topics", "tail", "connectors-running", "connectors-killed"] {
        eprintln!("screenshot: {}", shots.join(format!("{shot}.png")).display());
    }

    // The registry page names the module; unknown pages are 404.
    browser.open(&format!("{console}/smartmodules"));
    assert!(browser.text("#smartmodules").contains("my-filter"), "{}", browser.text("#smartmodules"));
    let (status, _) = http_get(&http, "/no-such-page", &[]);
    assert_eq!(status, 404);
    let (status, _) = http_get(&http, "/topics/no-such-topic", &[]);
    assert_eq!(status, 404);
    let (status, body) = http_get(&http, "/tail/orders/events?module=my-filter,no-such-module", &[]);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no-such-module"), "{body}");
}
