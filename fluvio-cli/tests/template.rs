//! The templates, rendered with the real cargo-generate. The SmartModule
//! template for every kind: built to wasm with plain `cargo build
//! --release`, unit-tested natively, and run through `fluvio smart-module
//! test`. The connector template as a source and as a sink: unit-tested,
//! then run against a real local cluster, moving records end to end.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, cargo, generate, generate_connector, run};

#[test]
fn every_kind_renders_builds_and_runs() {
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fluvio-template-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let shared_target = work.join("target");
    // kind, params, the record given to `smart-module test`, extra args, expected output
    let cases: [(&str, bool, &str, &[&str], &str); 6] = [
        ("filter", false, "banana", &[], "banana\n"),
        ("map", false, "banana", &[], "BANANA\n"),
        ("filter-map", false, "kiwi", &[], ""),
        ("array-map", false, "a banana and a kiwi", &[], "a\nbanana\nand\na\n"),
        ("aggregate", false, "banana", &["--aggregate-initial", "41"], "42\n"),
        ("filter", true, "kiwi", &["-e", "contains=iw"], "kiwi\n"),
    ];
    for (kind, params, record, extra, expected) in cases {
        let name = format!("sm-{kind}{}", if params { "-params" } else { "" });
        let project = generate(&work, &name, kind, params);
        assert!(project.join(".cargo/config.toml").is_file());
        // Plain `cargo build --release`: the config selects the wasm target.
        run(cargo().arg("build").arg("--release").current_dir(&project).env("CARGO_TARGET_DIR", &shared_target));
        run(cargo().arg("test-native").current_dir(&project).env("CARGO_TARGET_DIR", &shared_target));
        let wasm =
            shared_target.join("wasm32-unknown-unknown/release").join(format!("{}.wasm", name.replace('-', "_")));
        assert!(wasm.is_file(), "{} was not built", wasm.display());
        let output = run(Command::new(env!("CARGO_BIN_EXE_fluvio"))
            .args(["smart-module", "test", "--wasm-file"])
            .arg(&wasm)
            .args(["--text", record])
            .args(extra));
        assert_eq!(output, expected, "{name}");
    }
    // `fluvio smart-module build` builds a project and prints its module's path.
    let project = work.join("sm-map");
    let printed = run(Command::new(env!("CARGO_BIN_EXE_fluvio"))
        .args(["smart-module", "build", "--path"])
        .arg(&project)
        .env("CARGO_TARGET_DIR", &shared_target));
    assert_eq!(printed.trim(), shared_target.join("wasm32-unknown-unknown/release/sm_map.wasm").display().to_string());
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn connector_template_renders_as_source_and_sink_and_moves_records() {
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fluvio-connector-template-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let shared_target = work.join("target");
    let source = generate_connector(&work, "ticks-source", "source");
    let sink = generate_connector(&work, "lines-sink", "sink");
    for project in [&source, &sink] {
        run(cargo().arg("test").current_dir(project).env("CARGO_TARGET_DIR", &shared_target));
        run(cargo().arg("build").current_dir(project).env("CARGO_TARGET_DIR", &shared_target));
        // The sample config is valid as generated.
        let program = shared_target.join("debug").join(project.file_name().unwrap());
        let checked = run(Command::new(&program).args(["--check", "--config"]).arg(project.join("config.yaml")));
        assert!(checked.contains("is valid"), "{checked}");
    }

    let cluster = Cluster::start("connector-template");
    let addr = cluster.addr();
    let out = cluster.fluvio(&["topic", "create", "ticks"], None, Path::new("."));
    assert!(out.status.success());
    let yaml = |name: &str, kind_section: &str| {
        let path = work.join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: {name}\n  type: {name}\n  topic: ticks\n{kind_section}"
            ),
        )
        .unwrap();
        path
    };
    // The source sends five ticks and ends on its own.
    let source_config = yaml("ticks-source", "ticks:\n  interval: 10ms\n  count: 5\n  message: tock\n");
    run(Command::new(shared_target.join("debug/ticks-source"))
        .arg("--config")
        .arg(&source_config)
        .args(["--addr", &addr]));
    // The sink writes them into a file, then stops cleanly on SIGTERM.
    let lines = work.join("lines.txt");
    let sink_config = yaml("lines-sink", &format!("lines:\n  path: {}\n", lines.display()));
    let mut child = Command::new(shared_target.join("debug/lines-sink"))
        .arg("--config")
        .arg(&sink_config)
        .args(["--addr", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&lines).map_or(0, |text| text.lines().count()) < 5 {
        assert!(Instant::now() < deadline, "the sink did not write the records");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: SIGTERM to the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success(), "the sink stops cleanly on SIGTERM");
    let written: Vec<serde_json::Value> =
        std::fs::read_to_string(&lines).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let expected: Vec<serde_json::Value> = (0..5).map(|n| serde_json::json!({ "n": n, "message": "tock" })).collect();
    assert_eq!(written, expected);
    drop(cluster);
    std::fs::remove_dir_all(&work).unwrap();
}
