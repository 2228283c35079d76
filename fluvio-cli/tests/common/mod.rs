//! Helpers shared by the CLI tests: cargo-generate and a clean cargo.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

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
///
/// Debug info and incremental state are left out: a generated connector
/// builds the whole SDK and wasm runtime again in its own target directory,
/// and with debug info that throwaway build takes gigabytes of disk next to
/// the workspace's own (a CI machine with little disk failed there).
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CARGO_") && key != "CARGO_HOME" {
            command.env_remove(key);
        }
    }
    command.env("CARGO_PROFILE_DEV_DEBUG", "0").env("CARGO_INCREMENTAL", "0");
    command
}

/// Gives a generated project the workspace's `Cargo.lock`, so it builds
/// with the dependency versions the workspace was tested with rather than
/// whatever the registry holds on the day the tests run. Cargo drops the
/// entries the project does not use.
fn pin_to_workspace_lock(project: &Path) {
    std::fs::copy(repo().join("Cargo.lock"), project.join("Cargo.lock")).unwrap();
}

/// Renders the connector template (`kind`: source or sink) into
/// `destination/name`.
pub fn generate_connector(destination: &Path, name: &str, kind: &str) -> PathBuf {
    run(Command::new(cargo_generate())
        .arg("generate")
        .arg("--path")
        .arg(repo().join("templates/connector"))
        .args(["--name", name, "--vcs", "none", "--silent"])
        .args(["--define", &format!("connector_kind={kind}")])
        .args(["--define", &format!("fluvio_connector_path={}", repo().join("fluvio-connector").display())])
        .arg("--destination")
        .arg(destination));
    let project = destination.join(name);
    pin_to_workspace_lock(&project);
    project
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
    let project = destination.join(name);
    pin_to_workspace_lock(&project);
    project
}

/// A scratch `FLUVIO_HOME` with a local cluster started through the CLI,
/// stopped (through the CLI) on drop.
pub struct Cluster {
    /// The scratch `FLUVIO_HOME`.
    pub home: PathBuf,
}

impl Cluster {
    /// Starts a cluster in a new scratch home.
    pub fn start(name: &str) -> Cluster {
        Cluster::start_with(name, &[])
    }

    /// Starts a cluster in a new scratch home, with more `cluster start`
    /// arguments.
    pub fn start_with(name: &str, args: &[&str]) -> Cluster {
        let home = std::env::temp_dir().join(format!("fluvio-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        let cluster = Cluster { home };
        cluster.start_again_with(args);
        cluster
    }

    /// `fluvio cluster start` in this home (after a stop: same data).
    pub fn start_again(&self) {
        self.start_again_with(&[]);
    }

    fn start_again_with(&self, args: &[&str]) {
        let mut command = vec!["cluster", "start", "--listen", "127.0.0.1:0"];
        command.extend_from_slice(args);
        let out = self.fluvio(&command, None, Path::new("."));
        assert!(out.status.success(), "cluster start failed: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("listening on 127.0.0.1:"), "{stdout}");
        assert!(stdout.contains("logs in"), "{stdout}");
    }

    /// The address the cluster listens on.
    pub fn addr(&self) -> String {
        std::fs::read_to_string(self.home.join("server.addr"))
            .expect("a started cluster records its address")
            .trim()
            .to_string()
    }

    /// `fluvio ARGS` in `dir`, against this cluster.
    pub fn command(&self, args: &[&str], dir: &Path) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fluvio"));
        command.args(args).current_dir(dir).env("FLUVIO_HOME", &self.home).env_remove("FLUVIO_ADDR");
        // Credentials come from the test's profile file alone.
        for name in [
            "FLUVIO_PROFILE",
            "FLUVIO_TOKEN",
            "FLUVIO_TLS_CA",
            "FLUVIO_TLS_DOMAIN",
            "FLUVIO_TLS_CERT",
            "FLUVIO_TLS_KEY",
            "FLUVIO_TLS_PINNED_CERT",
        ] {
            command.env_remove(name);
        }
        let server = Path::new(env!("CARGO_BIN_EXE_fluvio")).with_file_name("fluvio-server");
        assert!(server.is_file(), "{} is missing: run the tests with `cargo test --workspace`", server.display());
        command.env("FLUVIO_SERVER_BIN", server);
        let connector = Path::new(env!("CARGO_BIN_EXE_fluvio")).with_file_name("fluvio-connector");
        assert!(connector.is_file(), "{} is missing: run the tests with `cargo test --workspace`", connector.display());
        command.env("FLUVIO_CONNECTOR_BIN", connector);
        command
    }

    /// Runs `fluvio ARGS` with optional stdin, in `dir`, within 60 s.
    pub fn fluvio(&self, args: &[&str], stdin: Option<&str>, dir: &Path) -> Output {
        let mut child = self
            .command(args, dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut input = child.stdin.take().unwrap();
            if let Some(text) = stdin {
                // A command that refuses its arguments exits without reading
                // its input: the caller asserts on the exit status instead.
                match input.write_all(text.as_bytes()) {
                    Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
                    other => other.unwrap(),
                }
            }
        }
        wait_with_timeout(child, Duration::from_secs(60)).expect("fluvio finishes within 60 s")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.fluvio(&["cluster", "stop"], None, Path::new("."));
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// Waits for a child; on timeout kills it and returns `None`. Its output
/// is read while it runs, so a child that writes more than a pipe holds
/// (a completion script) does not block on a full pipe.
pub fn wait_with_timeout(mut child: std::process::Child, timeout: Duration) -> Option<Output> {
    use std::io::Read;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|pipe| Box::new(pipe) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|pipe| Box::new(pipe) as Box<dyn Read + Send>));
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let stdout = stdout.join().expect("the stdout reader finishes");
            let stderr = stderr.join().expect("the stderr reader finishes");
            return Some(Output { status, stdout, stderr });
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
