//! Runs the real `fluvio-server` binary on loopback for tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fluvio_client::{ConsumerConfig, ConsumerRecord, Fluvio, OffsetSpec, RecordKey};
use futures::StreamExt;

#[allow(unused_imports)]
pub use dev_support::{wasm, wasm_path};

/// A server process with its own data directory.
pub struct ServerProcess {
    child: Child,
    pub addr: String,
    pub data_dir: PathBuf,
}

impl ServerProcess {
    /// Starts a server on an ephemeral loopback port in `data_dir`.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> ServerProcess {
        ServerProcess::start_with_stderr(data_dir, extra_args, Stdio::inherit())
    }

    /// Starts a server whose log goes to `stderr`, a file to read back.
    pub fn start_with_stderr(data_dir: &Path, extra_args: &[&str], stderr: impl Into<Stdio>) -> ServerProcess {
        ServerProcess::start_at("127.0.0.1:0", data_dir, extra_args, stderr)
    }

    /// Starts a server on `addr` (a fixed port, for a server restarted
    /// where its clients look for it).
    pub fn start_at(addr: &str, data_dir: &Path, extra_args: &[&str], stderr: impl Into<Stdio>) -> ServerProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fluvio-server"));
        command.args(["--addr", addr, "--data-dir"]).arg(data_dir).args(extra_args).stderr(stderr);
        ServerProcess::spawn(command, data_dir)
    }

    /// Starts a server whose open-file limit, soft and hard, is `files`
    /// (as under `ulimit -n files`).
    pub fn start_with_open_file_limit(data_dir: &Path, files: u64, extra_args: &[&str]) -> ServerProcess {
        use std::os::unix::process::CommandExt;

        let mut command = Command::new(env!("CARGO_BIN_EXE_fluvio-server"));
        command.args(["--addr", "127.0.0.1:0", "--data-dir"]).arg(data_dir).args(extra_args);
        // SAFETY: setrlimit is async-signal-safe, and the closure touches
        // nothing of the parent's but the integer it copied.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit { rlim_cur: files, rlim_max: files };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        ServerProcess::spawn(command, data_dir)
    }

    fn spawn(mut command: Command, data_dir: &Path) -> ServerProcess {
        let mut child = command
            .env("RUST_LOG", std::env::var("TEST_SERVER_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::piped())
            .spawn()
            .expect("the server binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!("the server did not print its address within 60 s");
        };
        let addr = line
            .trim()
            .strip_prefix("fluvio-server listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        ServerProcess { child, addr, data_dir: data_dir.to_path_buf() }
    }

    /// Kills the server with SIGKILL and waits for it to die.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn client(&self) -> Fluvio {
        Fluvio::connect_to(&self.addr).await.expect("client connects")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A fresh data directory under the system temp dir.
pub fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fluvio-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Reads a topic from the beginning to its current end.
pub async fn read_all(fluvio: &Fluvio, topic: &str, config: ConsumerConfig) -> Vec<ConsumerRecord> {
    let config = ConsumerConfig { continuous: false, ..config };
    let stream = fluvio.consumer_stream(topic, config).await.expect("stream starts");
    tokio::time::timeout(Duration::from_secs(60), stream.map(|r| r.expect("record")).collect::<Vec<_>>())
        .await
        .expect("the stream ends within 60 s")
}

pub fn from_beginning() -> ConsumerConfig {
    ConsumerConfig { offset: OffsetSpec::Beginning, continuous: false, ..Default::default() }
}

pub fn values(records: &[ConsumerRecord]) -> Vec<String> {
    records.iter().map(|r| String::from_utf8_lossy(&r.value).into_owned()).collect()
}

/// Produces each value and waits for all acknowledgements.
pub async fn produce(fluvio: &Fluvio, topic: &str, values: &[&str]) -> Vec<Option<i64>> {
    let producer = fluvio.topic_producer(topic).await.expect("producer");
    let mut outputs = Vec::new();
    for value in values {
        outputs.push(producer.send(RecordKey::NULL, value.as_bytes()).await.expect("send"));
    }
    producer.flush().await.expect("flush");
    let mut offsets = Vec::new();
    for output in outputs {
        offsets.push(output.wait().await.expect("acknowledged").stored_offset());
    }
    offsets
}
