//! Runs both SDK programs against a real server on loopback.

use std::io::Write;
use std::process::{Command, Stdio};

use dev_support::server::InProcessServer;

/// A server in this process, on a runtime of its own (the programs under
/// test run as processes of their own).
fn start_server(name: &str) -> (tokio::runtime::Runtime, InProcessServer, String) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = runtime.block_on(InProcessServer::start(&format!("sdk-apps-{name}")));
    let addr = server.addr.clone();
    (runtime, server, addr)
}

#[test]
fn producer_scrubs_before_sending_and_consumer_filters_on_the_server() {
    let (_runtime, _server, addr) = start_server("scrub");
    let scrubber = dev_support::wasm_path("json-scrubbing");
    let mut producer = Command::new(env!("CARGO_BIN_EXE_produce-scrubbed"))
        .args([&addr, "accounts", scrubber.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    producer
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"social_security_number\":\"123-45-6789\",\"name\":\"alice\"}\n{\"user\":\"bob\"}\n")
        .unwrap();
    let out = producer.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "sent 2 records\n");

    let filter = dev_support::wasm_path("my-filter");
    let out = Command::new(env!("CARGO_BIN_EXE_consume-filtered"))
        .args([&addr, "accounts", filter.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Only alice's record contains an `a`; the SSN never reached the server.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{\"name\":\"alice\"}\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("received 1 records"));
}

fn order_totals(addr: &str, orders: &str) -> String {
    let mut app = Command::new(env!("CARGO_BIN_EXE_order-totals"))
        .arg(addr)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    app.stdin.take().unwrap().write_all(orders.as_bytes()).unwrap();
    let out = app.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_fluvio_application_keys_partitions_and_resumes_from_its_stored_offsets() {
    let (_runtime, _server, addr) = start_server("orders");
    let first = order_totals(&addr, "ann,10\nbob,5\nann,7\ncid,1\nbob,2\n");
    assert_eq!(first, "ann 17\nbob 7\ncid 1\n");
    // The second run counts only the orders its consumer has not seen.
    let second = order_totals(&addr, "bob,100\n");
    assert_eq!(second, "bob 100\n");
}

#[test]
fn fluvios_quick_start_finds_the_cluster_through_fluvio_addr() {
    let (runtime, _server, addr) = start_server("quickstart");
    runtime.block_on(async {
        let fluvio = fluvio::Fluvio::connect_to(&addr).await.unwrap();
        fluvio.create_topic("greetings", 1).await.unwrap();
    });
    let out = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .arg("greetings")
        .env("FLUVIO_ADDR", &addr)
        .env("FLUVIO_HOME", std::env::temp_dir().join("sdk-apps-no-home"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Got record: key=None, value=Hello, Fluvio!\n");
}

#[test]
fn a_fluvio_program_using_admin_watches_partitioners_callbacks_and_offsets_runs_unchanged() {
    let (runtime, _server, addr) = start_server("tour");
    runtime.block_on(async {
        let fluvio = fluvio::Fluvio::connect_to(&addr).await.unwrap();
        fluvio.create_topic("already-here", 1).await.unwrap();
    });
    let out = Command::new(env!("CARGO_BIN_EXE_fluvio-api-tour")).arg(&addr).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = format!(
        "platform {}\n\
         1 SPU online, id 0\n\
         watching 1 topics\n\
         watch saw tour-events created\n\
         listed tour-events with 3 partitions\n\
         partitions already-here-0,tour-events-0,tour-events-1,tour-events-2\n\
         watch holds 2 topics\n\
         no topic no-such-topic\n\
         too large for 65536\n\
         key stored in partition 0\n\
         key stored in partition 1\n\
         key stored in partition 2\n\
         key stored in partition 0\n\
         key stored in partition 1\n\
         key stored in partition 2\n\
         acknowledged 6 records, the callback saw 6\n\
         partition 1 holds event 1, event 4\n\
         stored tour-events/1@2\n\
         offset forgotten\n\
         watch saw tour-events deleted\n",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}
