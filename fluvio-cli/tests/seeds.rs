//! Acceptance: both seed documents' command sequences, replayed through the
//! real `fluvio` binary against a freshly started local server, with every
//! output the seeds show checked. Also the CLI's other commands and errors.

mod common;

use common::Cluster;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const ACCOUNT: &str = r#"{"social_security_number":"123-45-6789","event_type":"account-created","account_id":"1509aaf8-5863-4b41-bfe2-b081691d7a6e","first_name":"Daniel","last_name":"Mahoney","email":"","password_hash":"db6b535bc9909ecfb7c2ee4550ed7b350a61785e"}"#;

/// Runs a continuous command for `wait`, then kills it; returns its output.
fn run_for(mut command: Command, wait: Duration) -> (String, String) {
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A directory laid out like a built SmartModule project:
/// `target/wasm32-unknown-unknown/release/NAME.wasm`, built from this
/// repository's source.
fn project_with(package: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fluvio-cli-project-{package}-{}", std::process::id()));
    let release = dir.join("target/wasm32-unknown-unknown/release");
    std::fs::create_dir_all(&release).unwrap();
    let file = format!("{}.wasm", package.replace('-', "_"));
    std::fs::copy(dev_support::wasm_path(package), release.join(&file)).unwrap();
    dir
}

#[test]
fn seed_004_regex_scrubbing_walkthrough() {
    let work = std::env::temp_dir().join(format!("fluvio-seed004-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    // $ cargo generate ... (Project Name: regex-scrubbing, type: map)
    let project = common::generate(&work, "regex-scrubbing", "map", false);
    // $ cd regex-scrubbing && cat Cargo.toml; add the dependencies the post lists
    // (fluvio-smartmodule is already there, pointing at this repository).
    let manifest = project.join("Cargo.toml");
    let cargo_toml = std::fs::read_to_string(&manifest).unwrap();
    assert!(cargo_toml.contains("fluvio-smartmodule"), "{cargo_toml}");
    let cargo_toml = cargo_toml.replace(
        "[dependencies]\n",
        "[dependencies]\nserde = { version = \"1\", features = [\"derive\"] }\nserde_json = \"1\"\nregex = \"1\"\nonce_cell = \"1\"\n",
    );
    std::fs::write(&manifest, cargo_toml).unwrap();
    // Paste the post's code (with its #[smartmodule(map)] line) into src/lib.rs.
    std::fs::copy(common::repo().join("examples/regex-scrubbing/src/lib.rs"), project.join("src/lib.rs")).unwrap();
    // $ cargo build --release
    common::run(common::cargo().args(["build", "--release"]).current_dir(&project));
    assert!(project.join("target/wasm32-unknown-unknown/release/regex_scrubbing.wasm").is_file());

    let cluster = Cluster::start("seed004");
    // $ fluvio topic create accounts
    let out = cluster.fluvio(&["topic", "create", "accounts"], None, &project);
    assert_eq!(text(&out.stdout), "topic \"accounts\" created\n");
    // $ echo '{...}' > account.json
    std::fs::write(project.join("account.json"), format!("{ACCOUNT}\n")).unwrap();
    // $ fluvio produce accounts < account.json
    let out = cluster.fluvio(
        &["produce", "accounts"],
        Some(&std::fs::read_to_string(project.join("account.json")).unwrap()),
        &project,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // $ fluvio consume accounts -B --map=target/wasm32-unknown-unknown/release/regex_scrubbing.wasm
    let (stdout, stderr) = run_for(
        cluster.command(
            &["consume", "accounts", "-B", "--map=target/wasm32-unknown-unknown/release/regex_scrubbing.wasm"],
            &project,
        ),
        Duration::from_secs(8),
    );
    assert!(stderr.contains("Consuming records from the beginning of topic 'accounts'"), "{stderr}");
    assert_eq!(stdout, format!("{}\n", ACCOUNT.replace("123-45-6789", "***-**-****")));
    // The consumer never witnesses any of the SSN information.
    assert!(!stdout.contains("123-45-6789"));
    drop(cluster);
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn seed_000_registering_and_using_smartmodules() {
    let cluster = Cluster::start("seed000");
    let project = project_with("my-filter");
    let out = cluster.fluvio(&["topic", "create", "my-topic"], None, &project);
    assert!(out.status.success());
    cluster.fluvio(&["produce", "my-topic"], Some("apple\nplum\nbanana\ncherry\n"), &project);

    // $ fluvio smart-module create my-filter --wasm-file=target/wasm32-unknown-unknown/release/my_filter.wasm
    let out = cluster.fluvio(
        &["smart-module", "create", "my-filter", "--wasm-file=target/wasm32-unknown-unknown/release/my_filter.wasm"],
        None,
        &project,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // $ fluvio smart-module list
    let out = cluster.fluvio(&["smart-module", "list"], None, &project);
    let size = std::fs::metadata(project.join("target/wasm32-unknown-unknown/release/my_filter.wasm")).unwrap().len();
    let width = "my-filter".len().max(4);
    assert_eq!(
        text(&out.stdout),
        format!(" {:<width$}  STATUS             SIZE\n my-filter  SmartModuleStatus  {size}\n", "NAME")
    );
    // $ fluvio consume my-topic -B --filter=my-filter
    let (stdout, stderr) = run_for(
        cluster.command(&["consume", "my-topic", "-B", "--filter=my-filter"], &project),
        Duration::from_secs(6),
    );
    assert_eq!(stdout, "apple\nbanana\n", "{stderr}");
    // $ fluvio consume my-topic -B --filter=target/wasm32-unknown-unknown/release/my_filter.wasm
    let (stdout, _) = run_for(
        cluster.command(
            &["consume", "my-topic", "-B", "--filter=target/wasm32-unknown-unknown/release/my_filter.wasm"],
            &project,
        ),
        Duration::from_secs(6),
    );
    assert_eq!(stdout, "apple\nbanana\n");
    // $ fluvio smart-module delete my-filter
    let out = cluster.fluvio(&["smart-module", "delete", "my-filter"], None, &project);
    assert!(out.status.success());
    let out = cluster.fluvio(&["smart-module", "list"], None, &project);
    assert_eq!(text(&out.stdout), " NAME  STATUS  SIZE\n");
    std::fs::remove_dir_all(&project).unwrap();
}

#[test]
fn consume_flags_keys_offsets_and_errors() {
    let cluster = Cluster::start("flags");
    let here = Path::new(".");
    cluster.fluvio(&["topic", "create", "kv"], None, here);
    let out = cluster.fluvio(&["produce", "kv", "--key-separator", ":"], Some("a:1\nb:2\nc:3\nd:4\n"), here);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cluster.fluvio(&["consume", "kv", "-B", "-d", "-k"], None, here);
    assert_eq!(text(&out.stdout), "[a] 1\n[b] 2\n[c] 3\n[d] 4\n");
    let out = cluster.fluvio(&["consume", "kv", "-o", "2", "-d"], None, here);
    assert_eq!(text(&out.stdout), "3\n4\n");
    let out = cluster.fluvio(&["consume", "kv", "-T", "1", "-d"], None, here);
    assert_eq!(text(&out.stdout), "4\n");
    // Aggregate with an initial value and params through -e.
    let sum = dev_support::wasm_path("sum-aggregate");
    let out = cluster.fluvio(
        &["consume", "kv", "-B", "-d", "--aggregate", sum.to_str().unwrap(), "--aggregate-initial", "10"],
        None,
        here,
    );
    assert_eq!(text(&out.stdout), "11\n13\n16\n20\n");
    let params = dev_support::wasm_path("params-filter");
    let out = cluster.fluvio(
        &["consume", "kv", "-B", "-d", "--smartmodule-path", params.to_str().unwrap(), "-e", "contains=3"],
        None,
        here,
    );
    assert_eq!(text(&out.stdout), "3\n");
    // A missing parameter is a clear error with exit code 1.
    let out =
        cluster.fluvio(&["consume", "kv", "-B", "-d", "--smartmodule-path", params.to_str().unwrap()], None, here);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("missing parameter `contains`"), "{}", text(&out.stderr));
    // A kind flag that does not match the module.
    let filter = dev_support::wasm_path("my-filter");
    let out = cluster.fluvio(&["consume", "kv", "-B", "-d", "--map", filter.to_str().unwrap()], None, here);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is a filter, but it was given as a map"), "{}", text(&out.stderr));
    // A chain from a transforms file.
    let transforms = cluster.home.join("chain.yaml");
    std::fs::write(
        &transforms,
        format!(
            "transforms:\n  - uses: {}\n    with:\n      contains: \"2\"\n  - uses: {}\n    initial: \"100\"\n",
            params.display(),
            sum.display()
        ),
    )
    .unwrap();
    let out = cluster.fluvio(&["consume", "kv", "-B", "-d", "--transforms", transforms.to_str().unwrap()], None, here);
    assert_eq!(text(&out.stdout), "102\n", "{}", text(&out.stderr));
    // Unknown topic: exit 1 and the topic's name.
    let out = cluster.fluvio(&["consume", "nope", "-B", "-d"], None, here);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("topic \"nope\" not found"), "{}", text(&out.stderr));
}

#[test]
fn produce_applies_smartmodules_before_sending() {
    let cluster = Cluster::start("produce-sm");
    let here = Path::new(".");
    cluster.fluvio(&["topic", "create", "scrubbed"], None, here);
    let scrubber = dev_support::wasm_path("regex-scrubbing");
    let input = cluster.home.join("accounts.txt");
    std::fs::write(&input, format!("{ACCOUNT}\n{ACCOUNT}\n")).unwrap();
    let out = cluster.fluvio(
        &["produce", "scrubbed", "--file", input.to_str().unwrap(), "--smartmodule-path", scrubber.to_str().unwrap()],
        None,
        here,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The SSN never reached the server.
    let out = cluster.fluvio(&["consume", "scrubbed", "-B", "-d"], None, here);
    assert_eq!(text(&out.stdout).lines().count(), 2);
    assert!(!text(&out.stdout).contains("123-45-6789"));
}

#[test]
fn smart_module_test_runs_locally_with_server_semantics() {
    // No cluster needed for ad hoc modules.
    let home = std::env::temp_dir().join(format!("fluvio-cli-test-{}", std::process::id()));
    let fluvio = |args: &[&str], stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fluvio"))
            .args(args)
            .env("FLUVIO_HOME", &home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let upper = dev_support::wasm_path("uppercase-map");
    let out = fluvio(&["smart-module", "test", "--wasm-file", upper.to_str().unwrap(), "--text", "hello"], "");
    assert_eq!(text(&out.stdout), "HELLO\n");
    let sum = dev_support::wasm_path("sum-aggregate");
    let out =
        fluvio(&["smart-module", "test", "--wasm-file", sum.to_str().unwrap(), "--aggregate-initial", "5"], "1\n2\n");
    assert_eq!(text(&out.stdout), "6\n8\n");
    // Errors follow the same policies as on the server.
    let out = fluvio(&["smart-module", "test", "--wasm-file", sum.to_str().unwrap()], "1\nx\n2\n");
    assert_eq!((text(&out.stdout), out.status.code()), ("1\n".to_string(), Some(1)));
    assert!(text(&out.stderr).contains("offset 1"), "{}", text(&out.stderr));
    let out =
        fluvio(&["smart-module", "test", "--wasm-file", sum.to_str().unwrap(), "--on-error", "skip"], "1\nx\n2\n");
    assert_eq!(text(&out.stdout), "1\n3\n");
    let params = dev_support::wasm_path("params-filter");
    let out =
        fluvio(&["smart-module", "test", "--wasm-file", params.to_str().unwrap(), "-e", "contains=b"], "abc\nxyz\n");
    assert_eq!(text(&out.stdout), "abc\n");
    assert!(text(&out.stderr).contains("keeping records that contain"), "guest logs are shown: {}", text(&out.stderr));
    let out = fluvio(&["smart-module", "test", "--wasm-file", "/nonexistent.wasm", "--text", "x"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/nonexistent.wasm"), "{}", text(&out.stderr));
}

#[test]
fn commands_without_a_server_say_how_to_start_one() {
    let home = std::env::temp_dir().join(format!("fluvio-cli-noserver-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_fluvio"))
        .args(["--addr", "127.0.0.1:1", "topic", "list"])
        .env("FLUVIO_HOME", &home)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("fluvio cluster start"), "{}", text(&out.stderr));
    let out = Command::new(env!("CARGO_BIN_EXE_fluvio")).args(["consume"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "usage errors exit with 2");
}

#[test]
fn partitions_consumer_ids_and_the_sm_alias_from_the_command_line() {
    let cluster = Cluster::start("consumers");
    let here = Path::new(".");
    let out = cluster.fluvio(&["topic", "create", "events", "-p", "3"], None, here);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Keyed lines spread by key; a line without the separator is skipped
    // and reported, not fatal.
    let input: String = (0..30).map(|i| format!("k{}=v{i}\n", i % 6)).collect::<String>() + "no separator here\n";
    let out = cluster.fluvio(&["produce", "events", "--key-separator", "="], Some(&input), here);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("line 31 has no key separator"), "{}", text(&out.stderr));
    // Without -p, consume reads every partition.
    let out = cluster.fluvio(&["consume", "events", "-B", "-d"], None, here);
    let mut all: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    all.sort_by_key(|v| v[1..].parse::<u32>().unwrap());
    assert_eq!(all, (0..30).map(|i| format!("v{i}")).collect::<Vec<_>>());
    let per_partition: Vec<usize> = (0..3)
        .map(|p| {
            let out = cluster.fluvio(&["consume", "events", "-B", "-d", "-p", &p.to_string()], None, here);
            text(&out.stdout).lines().count()
        })
        .collect();
    assert_eq!(per_partition.iter().sum::<usize>(), 30);
    assert!(per_partition.iter().filter(|&&n| n > 0).count() > 1, "six keys on one partition: {per_partition:?}");

    // A consumer id: the second run goes on where the first stopped.
    let out = cluster.fluvio(&["consume", "events", "-B", "-d", "-p", "0", "-c", "reader"], None, here);
    assert_eq!(text(&out.stdout).lines().count(), per_partition[0], "{}", text(&out.stderr));
    cluster.fluvio(&["produce", "events", "-p", "0"], Some("late\n"), here);
    let out = cluster.fluvio(&["consume", "events", "-B", "-d", "-p", "0", "-c", "reader"], None, here);
    assert_eq!(text(&out.stdout), "late\n", "{}", text(&out.stderr));
    let out = cluster.fluvio(&["consumer", "list"], None, here);
    let listed = text(&out.stdout);
    let row = listed.lines().find(|line| line.contains("reader")).unwrap_or_else(|| panic!("{listed}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..5], ["reader", "events", "0", &(per_partition[0] + 1).to_string(), "0"], "{listed}");
    let out = cluster.fluvio(&["consumer", "delete", "reader"], None, here);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cluster.fluvio(&["consumer", "delete", "reader"], None, here);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("consumer \"reader\" has no stored offsets"), "{}", text(&out.stderr));

    // `fluvio sm` is `fluvio smart-module`; `--sm` and `--a-init` are
    // `--smartmodule` and `--aggregate-initial`.
    let sum = dev_support::wasm_path("sum-aggregate");
    let out = cluster.fluvio(&["sm", "create", "sum", "--wasm-file", sum.to_str().unwrap()], None, here);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cluster.fluvio(&["sm", "list"], None, here);
    assert!(text(&out.stdout).starts_with(" NAME") && text(&out.stdout).contains("sum"), "{}", text(&out.stdout));
    cluster.fluvio(&["topic", "create", "nums"], None, here);
    cluster.fluvio(&["produce", "nums"], Some("1\n2\n"), here);
    let out = cluster.fluvio(&["consume", "nums", "-B", "-d", "--sm", "sum", "--a-init", "10"], None, here);
    assert_eq!(text(&out.stdout), "11\n13\n", "{}", text(&out.stderr));
}

#[test]
fn fluvio_flags_for_topics_produce_and_consume() {
    let cluster = Cluster::start("fluvio-flags");
    let here = Path::new(".");
    let ok = |args: &[&str], stdin: Option<&str>| {
        let out = cluster.fluvio(args, stdin, here);
        assert!(out.status.success(), "fluvio {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    // Topics with human durations and sizes, described, listed as JSON,
    // several deleted at once.
    ok(
        &["topic", "create", "t", "--retention-time", "1h", "--segment-size", "10MiB", "--max-partition-size", "1GiB"],
        None,
    );
    ok(&["topic", "create", "gone-1"], None);
    ok(&["topic", "create", "gone-2"], None);
    let described = ok(&["topic", "describe", "t", "-O", "json"], None);
    let described: serde_json::Value = serde_json::from_str(&described).unwrap();
    assert_eq!(described["retention_time_ms"], 3_600_000);
    assert_eq!(described["segment_size"], 10 << 20);
    assert_eq!(described["max_partition_size"], 1u64 << 30);
    assert!(ok(&["topic", "describe", "t"], None).contains("Retention time: 3600000 ms"));
    assert_eq!(
        ok(&["topic", "delete", "gone-1", "gone-2"], None),
        "topic \"gone-1\" deleted\ntopic \"gone-2\" deleted\n"
    );
    let listed: serde_json::Value = serde_json::from_str(&ok(&["topic", "list", "-O", "json"], None)).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(ok(&["topic", "list", "-O", "yaml"], None).contains("name: t"));
    let out = cluster.fluvio(&["topic", "create", "bad", "--retention-time", "soon"], None, here);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("is not a duration"), "{}", text(&out.stderr));

    // Produce: a fixed key, batching flags, at-most-once, and --raw.
    ok(
        &[
            "produce",
            "t",
            "--key",
            "k1",
            "--linger",
            "5ms",
            "--batch-size",
            "1KiB",
            "--delivery-semantic",
            "at-most-once",
        ],
        Some("zero\none\n{\"n\": 2}\n"),
    );
    ok(&["produce", "t", "--raw"], Some("three\nstill three"));
    assert_eq!(
        ok(&["consume", "t", "-B", "-d", "-k"], None),
        "[k1] zero\n[k1] one\n[k1] {\"n\": 2}\n[null] three\nstill three\n"
    );

    // Consume: where to start and stop, and how to print.
    assert_eq!(ok(&["consume", "t", "-H", "1", "-d", "--end", "2"], None), "one\n{\"n\": 2}\n");
    assert_eq!(ok(&["consume", "t", "--start", "2", "-d", "-O", "json"], None), "{\"n\":2}\n");
    assert_eq!(ok(&["consume", "t", "--start", "3", "-d", "-O", "raw"], None), "three\nstill three");
    assert_eq!(
        ok(&["consume", "t", "-B", "-d", "--end", "0", "-F", "{{partition}}/{{offset}} {{key}}: {{value}}"], None),
        "0/0 k1: zero\n"
    );
    assert_eq!(ok(&["consume", "t", "-B", "-d", "-b", "1KiB"], None).lines().count(), 5);
    // Compressed batches read back as they were written.
    ok(&["topic", "create", "packed"], None);
    ok(&["produce", "packed", "--compression", "zstd"], Some("one\ntwo\n"));
    assert_eq!(ok(&["consume", "packed", "-B", "-d"], None), "one\ntwo\n");
    let out = cluster.fluvio(&["produce", "packed", "--compression", "brotli"], Some("x\n"), here);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // Chains from JSON lines; `with:` maps reach the module as JSON.
    ok(&["produce", "t"], Some("x {\"a\":1} y\n"));
    let params = dev_support::wasm_path("params-filter");
    let line = format!(r#"{{"uses":"{}","with":{{"contains":{{"a":1}}}}}}"#, params.display());
    assert_eq!(ok(&["consume", "t", "-B", "-d", "--transforms-line", &line], None), "x {\"a\":1} y\n");
    // A Hub module is named as such, not as a missing file.
    let out = cluster.fluvio(
        &["consume", "t", "-B", "-d", "--transforms-line", r#"{"uses":"infinyon/jolt@0.4.1"}"#],
        None,
        here,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("names a SmartModule on Fluvio's Hub"), "{}", text(&out.stderr));
}

#[test]
fn look_back_and_record_timestamps_from_the_command_line() {
    let here = Path::new(".");
    let dedup = dev_support::wasm_path("dedup-filter");
    let dedup = dedup.to_str().unwrap();
    let cluster = Cluster::start("look-back");
    let run = |args: &[&str], stdin: Option<&str>| {
        let out = cluster.fluvio(args, stdin, here);
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    // smart-module test: the last N input records warm the module first.
    let (code, out, err) = run(&["sm", "test", "--wasm-file", dedup, "--lookback-last", "2"], Some("a\nb\nc\n"));
    assert_eq!((code, out.as_str()), (Some(0), "a\n"), "{err}");
    // The module's init was told its look-back.
    assert!(err.contains("warming up from the last 2 stored records"), "{err}");
    // Fluvio's -r/--record: records the topic already holds, the last -l
    // of them fed to look_back.
    let args = ["sm", "test", "--wasm-file", dedup, "-r", "a", "-r", "b", "-l", "1", "--stdin"];
    let (code, out, err) = run(&args, Some("a\nb\nc\n"));
    assert_eq!((code, out.as_str()), (Some(0), "a\nc\n"), "{err}");
    // --raw: the whole input is one record.
    let filter = dev_support::wasm_path("my-filter");
    let (code, out, err) = run(&["sm", "test", "--wasm-file", filter.to_str().unwrap(), "--raw"], Some("xa\nyb\n"));
    assert_eq!((code, out.as_str()), (Some(0), "xa\nyb\n\n"), "{err}");
    // Records are stamped now, or as told.
    let position = dev_support::wasm_path("record-position");
    let (_, out, _) = run(
        &["sm", "test", "--wasm-file", position.to_str().unwrap(), "--text", "x", "--record-timestamp", "1234"],
        None,
    );
    assert_eq!(out, "0:1234:x\n");
    let (_, out, _) = run(&["sm", "test", "--wasm-file", position.to_str().unwrap(), "--text", "x"], None);
    let stamped: i64 = out.split(':').nth(1).unwrap().parse().unwrap();
    assert!(stamped > 1_600_000_000_000, "{out}");

    // A transforms file's lookback on a consumer stream.
    run(&["topic", "create", "seen"], None);
    run(&["produce", "seen"], Some("a\nb\nc\n"));
    let transforms = cluster.home.join("dedup.yaml");
    std::fs::write(
        &transforms,
        format!("transforms:\n  - uses: {dedup}\n    lookback:\n      last: 2\n      age: 1h\n"),
    )
    .unwrap();
    let (code, out, err) = run(&["consume", "seen", "-B", "-d", "-t", transforms.to_str().unwrap()], None);
    assert_eq!((code, out.as_str()), (Some(0), "a\n"), "{err}");
    std::fs::write(&transforms, format!("transforms:\n  - uses: {dedup}\n    lookback: {{}}\n")).unwrap();
    let (code, _, err) = run(&["consume", "seen", "-B", "-d", "-t", transforms.to_str().unwrap()], None);
    assert_eq!(code, Some(1));
    assert!(err.contains("needs `last: N`, `age: DURATION` or both"), "{err}");
}
