//! A server in this process, for the tests, benchmarks and examples that
//! talk to a real one over loopback without starting a program: the
//! `fluvio-server` library bound to a free port of 127.0.0.1, with its data
//! in a scratch directory, run on the caller's tokio runtime. One place
//! sets it up, so every caller gets the same server.
//!
//! ```no_run
//! # async fn run() {
//! let server = dev_support::server::InProcessServer::start("my-test").await;
//! let client = fluvio_client::Fluvio::connect_to(&server.addr).await.unwrap();
//! # drop(client); }
//! ```

use std::path::PathBuf;

use fluvio_server::{Server, ServerConfig};

/// A running server; dropping it stops the server and removes its data.
pub struct InProcessServer {
    /// Where it listens, `127.0.0.1:PORT`.
    pub addr: String,
    /// Its data directory (topics, the registry).
    pub data_dir: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl InProcessServer {
    /// A server with the default settings and an empty data directory
    /// named after `name` (and this process), on the current runtime.
    pub async fn start(name: &str) -> InProcessServer {
        InProcessServer::start_with(name, |_| {}).await
    }

    /// A server whose settings `configure` changes first (its address
    /// stays a free port of 127.0.0.1).
    pub async fn start_with(name: &str, configure: impl FnOnce(&mut ServerConfig)) -> InProcessServer {
        let data_dir = std::env::temp_dir().join(format!("fluvio-in-process-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        let mut config = ServerConfig::new(&data_dir);
        configure(&mut config);
        config.addr = "127.0.0.1:0".parse().expect("a loopback address");
        let server = Server::bind(config).await.unwrap_or_else(|error| panic!("the in-process server {name}: {error}"));
        let addr = server.local_addr().to_string();
        let task = tokio::spawn(server.run());
        InProcessServer { addr, data_dir, task }
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
