//! Helpers shared by the CLI tests: cargo-generate and a clean cargo.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The cargo-generate executable (installed by `scripts/test.sh`).
pub fn cargo_generate() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("cargo-generate"))
        .find(|p| p.is_file());
    let in_cargo_home =
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/cargo-generate")).filter(|p| p.is_file());
    on_path.or(in_cargo_home).expect("cargo-generate is not installed; scripts/test.sh installs it")
}

/// Runs a command that must succeed; returns its stdout.
pub fn run(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cargo` without the variables of the `cargo test` that runs us, so a
/// generated project builds as it would for a user.
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CARGO_") && key != "CARGO_HOME" {
            command.env_remove(key);
        }
    }
    command
}

/// Renders the SmartModule template into `destination/name`.
pub fn generate(destination: &Path, name: &str, kind: &str, params: bool) -> PathBuf {
    run(Command::new(cargo_generate())
        .arg("generate")
        .arg("--path")
        .arg(repo().join("templates/smartmodule"))
        .args(["--name", name, "--vcs", "none", "--silent"])
        .args(["--define", &format!("smartmodule_type={kind}")])
        .args(["--define", &format!("smartmodule_params={params}")])
        .args(["--define", &format!("fluvio_smartmodule_path={}", repo().join("fluvio-smartmodule").display())])
        .arg("--destination")
        .arg(destination));
    destination.join(name)
}
