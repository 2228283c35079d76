//! Commands a Fluvio user types, with Fluvio's names: `partition list`,
//! `cluster spu list`, `profile ...`, `produce --max-request-size`, `smart-module list` with
//! Fluvio-built modules, `cluster shutdown`, `version`, `completions`.

mod common;

use std::path::Path;

use common::Cluster;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn partitions_profiles_version_and_completions_by_fluvios_names() {
    let cluster = Cluster::start("fluvio-commands");
    let run = |args: &[&str], stdin: Option<&str>| {
        let out = cluster.fluvio(args, stdin, Path::new("."));
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (code, _, err) = run(&["topic", "create", "orders", "-p", "2"], None);
    assert_eq!(code, Some(0), "{err}");
    // Keyless records take turns: a and c on partition 0, b on 1.
    let (code, _, err) = run(&["produce", "orders"], Some("a\nb\nc\n"));
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = run(&["partition", "list"], None);
    assert_eq!(code, Some(0), "{err}");
    let rows: Vec<Vec<&str>> = out.lines().skip(1).map(|line| line.split_whitespace().collect()).collect();
    assert_eq!(rows, [["orders", "0", "0", "1", "Online", "2"], ["orders", "1", "0", "1", "Online", "1"]], "{out}");

    // The cluster's servers as Fluvio's SPUs: one, id 0, on a local log.
    let (code, out, err) = run(&["cluster", "spu", "list"], None);
    assert_eq!(code, Some(0), "{err}");
    let rows: Vec<Vec<&str>> = out.lines().skip(1).map(|line| line.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 1, "{out}");
    let addr = cluster.addr();
    assert_eq!(rows[0][..5], ["0", addr.as_str(), "Online", "custom", addr.as_str()], "{out}");

    // A profile names the cluster; commands follow the current one.
    let (code, out, err) = run(&["profile", "add", "mine", &addr, "local"], None);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("current"), "{out}");
    assert_eq!(run(&["profile", "current"], None).1, "mine\n");
    assert_eq!(run(&["profile", "add", "nowhere", "127.0.0.1:1"], None).0, Some(0));
    let (code, _, err) = run(&["topic", "list"], None);
    assert_ne!(code, Some(0), "the current profile points nowhere: {err}");
    assert_eq!(run(&["profile", "switch", "mine"], None).0, Some(0));
    let (code, out, err) = run(&["topic", "list"], None);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("orders"), "{out}");
    let (_, list, _) = run(&["profile", "list"], None);
    let current: Vec<&str> = list.lines().filter(|line| line.trim_start().starts_with('*')).collect();
    assert_eq!(current.len(), 1, "{list}");
    assert!(current[0].contains("mine") && current[0].contains(&addr), "{list}");
    let (code, _, err) = run(&["profile", "delete-cluster", "nowhere"], None);
    assert_ne!(code, Some(0));
    assert!(err.contains("used by profiles"), "{err}");
    assert_eq!(run(&["profile", "delete", "nowhere"], None).0, Some(0));
    assert_eq!(run(&["profile", "delete-cluster", "nowhere"], None).0, Some(0));
    assert_eq!(run(&["profile", "rename", "mine", "ours"], None).0, Some(0));
    assert_eq!(run(&["profile", "current"], None).1, "ours\n");
    let (code, _, err) = run(&["profile", "switch", "gone"], None);
    assert_ne!(code, Some(0));
    assert!(err.contains("no profile \"gone\""), "{err}");
    // Profiles may hold tokens: the file is its owner's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(cluster.home.join("config")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // One partition's offset forgotten, with Fluvio's -p.
    let (code, _, err) = run(&["consume", "orders", "-B", "-d", "-c", "app"], None);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        run(&["consumer", "list"], None).1.lines().filter(|line| line.trim_start().starts_with("app")).count(),
        2
    );
    let (code, _, err) = run(&["consumer", "delete", "app", "--topic", "orders", "-p", "1"], None);
    assert_eq!(code, Some(0), "{err}");
    let (_, list, _) = run(&["consumer", "list"], None);
    let rows: Vec<Vec<&str>> = list
        .lines()
        .filter(|line| line.trim_start().starts_with("app"))
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(rows.iter().map(|row| row[2]).collect::<Vec<_>>(), ["0"], "{list}");

    // A record larger than the max request size is refused, as in Fluvio.
    let long_line = format!("{}\n", "x".repeat(200));
    let (code, _, err) = run(&["produce", "orders", "--max-request-size", "100"], Some(&long_line));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("max request size of 100 bytes"), "{err}");

    // `sm list` shows the ABI once a module built with Fluvio's crate is there.
    let ours = dev_support::wasm_path("my-filter");
    let theirs = cluster.home.join("their-filter.wasm");
    std::fs::write(&theirs, dev_support::fluvio_built_wasm("my-filter")).unwrap();
    assert_eq!(run(&["smart-module", "create", "ours", "--wasm-file", ours.to_str().unwrap()], None).0, Some(0));
    let (_, list, _) = run(&["smart-module", "list"], None);
    assert_eq!(list.lines().next().map(str::split_whitespace).map(Iterator::count), Some(3), "no ABI column: {list}");
    assert_eq!(run(&["smart-module", "create", "theirs", "--wasm-file", theirs.to_str().unwrap()], None).0, Some(0));
    let (_, list, _) = run(&["smart-module", "list"], None);
    let rows: Vec<Vec<&str>> = list.lines().map(|line| line.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["NAME", "STATUS", "SIZE", "ABI"], "{list}");
    assert_eq!((rows[1][0], rows[1][3], rows[2][0], rows[2][3]), ("ours", "native", "theirs", "fluvio"), "{list}");

    let (code, out, _) = run(&["version"], None);
    assert_eq!(code, Some(0));
    assert!(out.contains(&format!("Fluvio CLI        : {}", env!("CARGO_PKG_VERSION"))), "{out}");
    let (code, out, _) = run(&["completions", "bash"], None);
    assert_eq!(code, Some(0));
    assert!(out.contains("_fluvio") && out.contains("partition"), "the script knows the commands");
    let (code, _, err) = run(&["cluster", "shutdown"], None);
    assert_eq!(code, Some(0), "{err}");
    assert_ne!(run(&["topic", "list"], None).0, Some(0), "the cluster is down");
}

#[test]
fn a_derived_topic_is_created_described_listed_resumed_and_deleted_from_the_cli() {
    let cluster = Cluster::start("derived-cli");
    let dir = std::env::temp_dir().join(format!("fluvio-derived-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str], stdin: Option<&str>| {
        let out = cluster.fluvio(args, stdin, &dir);
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    for module in ["my-filter", "uppercase-map", "sum-aggregate"] {
        let path = dev_support::wasm_path(module);
        let (code, _, err) = run(&["smart-module", "create", module, "--wasm-file", path.to_str().unwrap()], None);
        assert_eq!(code, Some(0), "{err}");
    }
    assert_eq!(run(&["topic", "create", "raw", "-p", "2"], None).0, Some(0));
    std::fs::write(dir.join("chain.yaml"), "transforms:\n  - uses: my-filter\n  - uses: uppercase-map\n").unwrap();
    let (code, out, err) =
        run(&["topic", "create", "clean", "--derive-from", "raw", "--transforms", "chain.yaml"], None);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "topic \"clean\" created, derived from \"raw\"\n");
    let (code, _, err) = run(&["produce", "raw"], Some("apple\nplum\nbanana\ncherry\n"));
    assert_eq!(code, Some(0), "{err}");

    // The records come through, as a consumer of the derived topic sees.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, out, _) = run(&["consume", "clean", "-B", "-d"], None);
        let mut got: Vec<&str> = out.lines().collect();
        got.sort();
        if got == ["APPLE", "BANANA"] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the derived topic holds {got:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (code, out, err) = run(&["topic", "describe", "clean"], None);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(" Derived from: raw\n Transforms: my-filter, uppercase-map\n On error: fail\n"), "{out}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip_while(|l| !l.contains("SOURCE PARTITION"))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    for row in &rows {
        // SOURCE PARTITION  STATE  SOURCE OFFSET  LAG
        assert_eq!((row[1], row[2], row[3]), ("running", "2", "0"), "{out}");
    }
    let (_, out, _) = run(&["topic", "list"], None);
    let derived_row = out.lines().find(|l| l.trim_start().starts_with("clean")).unwrap().to_string();
    assert!(out.contains("DERIVED FROM") && derived_row.trim_end().ends_with("raw"), "{out}");
    let (_, json, _) = run(&["topic", "describe", "clean", "-O", "json"], None);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["derived"]["source"], "raw");
    assert_eq!(json["derived"]["pipelines"][0]["state"], "running");

    // A line-given chain that fails, then resume; and the refusals.
    assert_eq!(run(&["topic", "create", "numbers"], None).0, Some(0));
    let (code, _, err) = run(
        &["topic", "create", "sums", "--derive-from", "numbers", "--transforms-line", r#"{"uses":"sum-aggregate"}"#],
        None,
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(run(&["produce", "numbers"], Some("1\nx\n")).0, Some(0));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let described = loop {
        let (_, out, _) = run(&["topic", "describe", "sums"], None);
        if out.contains("failed") {
            break out;
        }
        assert!(std::time::Instant::now() < deadline, "{out}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        described
            .contains("source partition 0: stopped: SmartModule \"sum-aggregate\" failed on the record at offset 1"),
        "{described}"
    );
    let (code, out, err) = run(&["topic", "resume", "sums"], None);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "topic \"sums\": 1 pipeline(s) started again\n");
    let (code, _, err) = run(&["topic", "delete", "raw"], None);
    assert_ne!(code, Some(0));
    assert!(err.contains("used by the derived topic(s) clean"), "{err}");
    let (code, _, err) = run(&["smart-module", "delete", "my-filter"], None);
    assert_ne!(code, Some(0));
    assert!(err.contains("clean"), "{err}");
    let (code, _, err) = run(&["produce", "clean"], Some("by hand\n"));
    assert_ne!(code, Some(0));
    assert!(err.contains("derived from \"raw\""), "{err}");
    assert_eq!(run(&["topic", "delete", "clean"], None).0, Some(0));
    assert_eq!(run(&["topic", "delete", "raw"], None).0, Some(0));
}
