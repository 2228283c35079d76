//! The SmartModule template, rendered with the real cargo-generate for every
//! kind, built to wasm with plain `cargo build --release`, unit-tested
//! natively, and run through `fluvio smart-module test`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn cargo_generate() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("cargo-generate"))
        .find(|p| p.is_file());
    let in_cargo_home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/cargo-generate")).filter(|p| p.is_file());
    on_path.or(in_cargo_home).expect("cargo-generate is not installed; `.ci/run` installs it (cargo install cargo-generate@0.23.7 --locked)")
}

fn run(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(out.status.success(), "{command:?} failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // The generated projects are not part of this workspace or its build.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CARGO_") && key != "CARGO_HOME" {
            command.env_remove(key);
        }
    }
    command
}

#[test]
fn every_kind_renders_builds_and_runs() {
    let work = std::env::temp_dir().join(format!("fluvio-template-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let shared_target = work.join("target");
    let library = repo().join("fluvio-smartmodule");
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
        run(Command::new(cargo_generate())
            .arg("generate")
            .arg("--path")
            .arg(repo().join("templates/smartmodule"))
            .args(["--name", &name, "--vcs", "none", "--silent"])
            .args(["--define", &format!("smartmodule_type={kind}")])
            .args(["--define", &format!("smartmodule_params={params}")])
            .args(["--define", &format!("fluvio_smartmodule_path={}", library.display())])
            .arg("--destination")
            .arg(&work));
        let project = work.join(&name);
        assert!(project.join(".cargo/config.toml").is_file());
        // Plain `cargo build --release`: the config selects the wasm target.
        run(cargo().arg("build").arg("--release").current_dir(&project).env("CARGO_TARGET_DIR", &shared_target));
        run(cargo().arg("test-native").current_dir(&project).env("CARGO_TARGET_DIR", &shared_target));
        let wasm = shared_target.join("wasm32-unknown-unknown/release").join(format!("{}.wasm", name.replace('-', "_")));
        assert!(wasm.is_file(), "{} was not built", wasm.display());
        let output = run(Command::new(env!("CARGO_BIN_EXE_fluvio"))
            .args(["smart-module", "test", "--wasm-file"])
            .arg(&wasm)
            .args(["--text", record])
            .args(extra));
        assert_eq!(output, expected, "{name}");
    }
    std::fs::remove_dir_all(&work).unwrap();
}
