//! The `fluvio` command against two servers on one NATS JetStream cluster:
//! `cluster start --jetstream`, `topic create -r`, and `--addr` with two
//! addresses surviving the loss of one server.

mod common;

use std::path::Path;

use common::Cluster;
use dev_support::services::NatsCluster;

fn stdout(output: &std::process::Output) -> String {
    assert!(output.status.success(), "fluvio failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_command_moves_to_the_other_server_when_one_is_gone() {
    let nats = NatsCluster::start(3);
    let urls = nats.urls();
    let server_a = Cluster::start_with("distributed-a", &["--jetstream", &urls]);
    let server_b = Cluster::start_with("distributed-b", &["--jetstream", &urls]);
    let both = format!("{},{}", server_a.addr(), server_b.addr());
    let here = Path::new(".");

    let created = server_a.fluvio(&["--addr", &both, "topic", "create", "orders", "-r", "3"], None, here);
    assert_eq!(stdout(&created).trim(), "topic \"orders\" created");
    let lines: Vec<String> = (0..500).map(|i| format!("order-{i}")).collect();
    let input = lines.join("\n") + "\n";
    stdout(&server_a.fluvio(&["--addr", &both, "produce", "orders"], Some(&input), here));

    // The topic, made and written through A, is B's too.
    let listed = stdout(&server_b.fluvio(&["topic", "list"], None, here));
    assert!(listed.contains("REPLICATION"), "{listed}");
    let row = listed.lines().find(|l| l.contains("orders")).expect("orders is listed");
    assert_eq!(row.split_whitespace().collect::<Vec<_>>(), ["orders", "1", "3", "500"]);

    // A is gone: the same --addr reaches B.
    stdout(&server_a.fluvio(&["cluster", "stop"], None, here));
    stdout(&server_a.fluvio(&["--addr", &both, "produce", "orders"], Some("after-a\n"), here));
    let consumed = stdout(&server_a.fluvio(&["--addr", &both, "consume", "orders", "-B", "-d"], None, here));
    let mut expected = lines.clone();
    expected.push("after-a".into());
    assert_eq!(consumed.lines().collect::<Vec<_>>(), expected);

    // More copies than NATS servers: refused, with what to do.
    let refused = server_b.fluvio(&["topic", "create", "wide", "-r", "5"], None, here);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("cannot have 5 copies"), "{message}");
}
