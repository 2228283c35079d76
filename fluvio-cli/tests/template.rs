//! The SmartModule template, rendered with the real cargo-generate for every
//! kind, built to wasm with plain `cargo build --release`, unit-tested
//! natively, and run through `fluvio smart-module test`.

mod common;

use std::process::Command;

use common::{cargo, generate, run};

#[test]
fn every_kind_renders_builds_and_runs() {
    let work = std::env::temp_dir().join(format!("fluvio-template-{}", std::process::id()));
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
