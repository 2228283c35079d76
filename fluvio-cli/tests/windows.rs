//! Windows from the command line: `sm test --window`, `consume
//! --aggregate ... --window`, a transforms file's `window:` for a derived
//! topic, and the refusals.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Cluster;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Readings of two sensors over three minutes of event time.
const READINGS: &str = r#"{"k":"s1","ts":1000,"v":1}
{"k":"s2","ts":2000,"v":10}
{"k":"s1","ts":61000,"v":2}
{"k":"s1","ts":59000,"v":4}
{"k":"s2","ts":125000,"v":20}
{"k":"s1","ts":185000,"v":8}
"#;

#[test]
fn windows_from_the_command_line() {
    let cluster = Cluster::start("windows-cli");
    let dir = std::env::temp_dir().join(format!("fluvio-windows-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str], stdin: Option<&str>| {
        let out = cluster.fluvio(args, stdin, &dir);
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let wasm = dev_support::wasm_path("field-sum-aggregate");
    let wasm = wasm.to_str().unwrap();

    // `sm test` is deterministic: the open windows go out when the input
    // ends, key by key.
    let window = "tumbling=1m,lateness=5s,key=/k,time=/ts";
    let (code, out, err) = run(&["sm", "test", "--wasm-file", wasm, "--window", window, "--key-value"], Some(READINGS));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "[s1] 5\n[s2] 10\n[s1] 2\n[s2] 20\n[s1] 8\n");
    let (code, out, err) = run(
        &["sm", "test", "--aggregate", wasm, "--window", "session=90s,lateness=5s,key=/k,time=/ts"],
        Some(READINGS),
    );
    assert_eq!(code, Some(0), "{err}");
    // s2's 2 s and 125 s are two sessions; s1's first three readings one.
    assert_eq!(out, "10\n7\n20\n8\n");

    // A consumer stream: windows close as the stream's event time moves on.
    assert_eq!(run(&["topic", "create", "readings"], None).0, Some(0));
    let (code, _, err) = run(&["produce", "readings"], Some(READINGS));
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = run(
        &["consume", "readings", "-B", "-d", "--aggregate", wasm, "--window", window, "-F", "{{key}}={{value}}"],
        None,
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "s1=5\ns2=10\ns1=2\ns2=20\n", "the windows the last reading (185 s) closed");

    // A derived topic of windows, from a transforms file.
    let (code, _, err) = run(&["sm", "create", "sum-v", "--wasm-file", wasm], None);
    assert_eq!(code, Some(0), "{err}");
    std::fs::write(
        dir.join("windows.yaml"),
        "transforms:\n  - uses: sum-v\n    window:\n      tumbling: 1m\n      lateness: 5s\n      key: /k\n      time: /ts\n",
    )
    .unwrap();
    let (code, _, err) =
        run(&["topic", "create", "per-minute", "--derive-from", "readings", "--transforms", "windows.yaml"], None);
    assert_eq!(code, Some(0), "{err}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, out, _) = run(&["consume", "per-minute", "-B", "-d", "-F", "{{key}}={{value}}"], None);
        if out == "s1=5\ns2=10\ns1=2\ns2=20\n" {
            break;
        }
        assert!(Instant::now() < deadline, "the derived topic holds {out:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Refusals, each saying what is wrong.
    let (code, _, err) = run(&["sm", "test", "--wasm-file", wasm, "--window", "tumbling=1m,colour=red"], Some("1\n"));
    assert_ne!(code, Some(0));
    assert!(err.contains("\"colour=red\" is not a window setting"), "{err}");
    let filter = dev_support::wasm_path("my-filter");
    let (code, _, err) =
        run(&["sm", "test", "--filter", filter.to_str().unwrap(), "--window", "tumbling=1m"], Some("a\n"));
    assert_ne!(code, Some(0));
    assert!(err.contains("only an aggregate can run in a window"), "{err}");
    let (code, _, err) = run(&["produce", "readings", "--aggregate", wasm, "--window", "tumbling=1m"], Some("1\n"));
    assert_ne!(code, Some(0));
    assert!(err.contains("window it in a consumer stream or a derived topic"), "{err}");
    let (code, _, err) =
        run(&["sm", "test", "--wasm-file", wasm, "--window", "tumbling=1m,key=/nothing"], Some(r#"{"v":1}"#));
    assert_ne!(code, Some(0));
    assert!(err.contains("key pointer /nothing names nothing in the value"), "{err}");
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}
