//! `fluvio cluster start|stop|status`: a local server in the background.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{CliError, CliResult};
use crate::home;

/// The `fluvio-server` program: `$FLUVIO_SERVER_BIN`, next to this
/// executable, then on PATH.
fn server_binary() -> PathBuf {
    home::sibling_program("fluvio-server", "FLUVIO_SERVER_BIN")
}

/// What the recorded local server is.
enum LocalServer {
    /// None recorded.
    None,
    /// Its process runs and it answers on its recorded address.
    Running { pid: i32 },
    /// Recorded, but of no use: `why` says what is wrong with it.
    Stale { pid: i32, alive: bool, why: String },
}

/// How long a recorded server has to accept a connection before it is
/// taken for stale.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

fn local_server() -> LocalServer {
    let Some(pid) = std::fs::read_to_string(home::pid_file()).ok().and_then(|text| text.trim().parse::<i32>().ok())
    else {
        return LocalServer::None;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    if !exists || is_zombie(pid) {
        return LocalServer::Stale { pid, alive: false, why: "is no longer running".into() };
    }
    // A pid is reused once its process is gone: it must still be ours.
    let program = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let is_server =
        program.split(|&b| b == 0).next().is_some_and(|arg0| String::from_utf8_lossy(arg0).contains("fluvio-server"));
    if !is_server {
        return LocalServer::Stale {
            pid,
            alive: false,
            why: "is no longer running (its pid now belongs to another program)".into(),
        };
    }
    let Ok(addr) = std::fs::read_to_string(home::addr_file()) else {
        return LocalServer::Stale { pid, alive: true, why: "never recorded its address".into() };
    };
    let addr = addr.trim();
    let answers = addr
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|socket| std::net::TcpStream::connect_timeout(&socket, ANSWER_TIMEOUT).is_ok());
    if answers {
        LocalServer::Running { pid }
    } else {
        LocalServer::Stale { pid, alive: true, why: format!("does not answer on {addr}") }
    }
}

/// Removes what a stale server left: its process (when it still runs but
/// does not answer, it holds the data directory) and its files.
fn clean_up_stale(pid: i32, alive: bool) {
    if alive {
        // SAFETY: `pid` runs `fluvio-server` (checked by `local_server`).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(10);
        // SAFETY: signal 0 only checks that the process exists.
        while unsafe { libc::kill(pid, 0) } == 0 && !is_zombie(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = std::fs::remove_file(home::pid_file());
    let _ = std::fs::remove_file(home::addr_file());
}

/// Starts the server in the background and waits until it listens.
pub fn start(data_dir: Option<PathBuf>, addr: &str, server_args: &[std::ffi::OsString]) -> CliResult {
    match local_server() {
        LocalServer::Running { pid } => {
            let addr = home::server_addr(None);
            println!("a local Fluvio server is already running (pid {pid}) on {addr}");
            return Ok(());
        }
        LocalServer::Stale { pid, alive, why } => {
            println!("the local Fluvio server recorded before (pid {pid}) {why}; cleaning up and starting a new one");
            clean_up_stale(pid, alive);
        }
        LocalServer::None => {}
    }
    let data_dir = data_dir.unwrap_or_else(home::default_data_dir);
    std::fs::create_dir_all(home::dir())
        .map_err(|e| CliError::failed(format!("cannot create {}: {e}", home::dir().display())))?;
    let log_path = home::log_file();
    let log = std::fs::File::create(&log_path)
        .map_err(|e| CliError::failed(format!("cannot create {}: {e}", log_path.display())))?;
    let log_err = log.try_clone().map_err(|e| CliError::failed(e.to_string()))?;
    let binary = server_binary();
    let mut command = Command::new(&binary);
    command.arg("--addr").arg(addr).arg("--data-dir").arg(&data_dir);
    command.args(server_args);
    let child = command.stdin(Stdio::null()).stdout(log).stderr(log_err).process_group(0).spawn().map_err(|e| {
        CliError::failed(format!(
            "cannot start {}: {e}; build it with `cargo build --release -p fluvio-server`",
            binary.display()
        ))
    })?;
    let pid = child.id();
    std::fs::write(home::pid_file(), pid.to_string()).map_err(|e| CliError::failed(e.to_string()))?;
    let listening = wait_for_listening(&log_path, pid as i32, Duration::from_secs(60))?;
    std::fs::write(home::addr_file(), &listening).map_err(|e| CliError::failed(e.to_string()))?;
    println!("started the local Fluvio server (pid {pid})");
    println!("listening on {listening}");
    println!("data in {}", data_dir.display());
    println!("logs in {}", log_path.display());
    Ok(())
}

fn wait_for_listening(log_path: &Path, pid: i32, timeout: Duration) -> CliResult<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        if let Some(addr) = log.lines().find_map(|l| l.strip_prefix("fluvio-server listening on ")) {
            return Ok(addr.trim().to_string());
        }
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0 && !is_zombie(pid);
        if !alive {
            let _ = std::fs::remove_file(home::pid_file());
            return Err(CliError::failed(format!(
                "the server exited at start; its log ({}) says:\n{}",
                log_path.display(),
                log.trim()
            )));
        }
        if Instant::now() > deadline {
            return Err(CliError::failed(format!(
                "the server did not start listening within {} s; see {}",
                timeout.as_secs(),
                log_path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2) == Some("Z"))
        .unwrap_or(false)
}

/// Stops the local server cleanly (SIGTERM, then waits).
pub fn stop() -> CliResult {
    // A server that runs but does not answer is stopped all the same.
    let pid = match local_server() {
        LocalServer::Running { pid } | LocalServer::Stale { pid, alive: true, .. } => pid,
        LocalServer::Stale { .. } | LocalServer::None => {
            let _ = std::fs::remove_file(home::pid_file());
            let _ = std::fs::remove_file(home::addr_file());
            println!("no local Fluvio server is running");
            return Ok(());
        }
    };
    // SAFETY: sending SIGTERM to the pid we started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    // SAFETY: signal 0 only checks that the process exists.
    while unsafe { libc::kill(pid, 0) } == 0 && !is_zombie(pid) {
        if Instant::now() > deadline {
            return Err(CliError::failed(format!("the server (pid {pid}) did not stop within 30 s")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(home::pid_file());
    let _ = std::fs::remove_file(home::addr_file());
    println!("stopped the local Fluvio server (pid {pid})");
    Ok(())
}

/// Says whether the local server runs, and where.
pub async fn status() -> CliResult {
    match local_server() {
        LocalServer::Running { pid } => {
            let addr = home::server_addr(None);
            let client = fluvio_client::Fluvio::connect_to(&addr).await.ok();
            println!(
                "the local Fluvio server is running (pid {pid}) on {addr}{}",
                if client.is_some() { "" } else { ", but does not answer" }
            );
            println!("logs in {}", home::log_file().display());
            if let Some(client) = client {
                for line in summary(&client).await {
                    println!("{line}");
                }
            }
            Ok(())
        }
        LocalServer::Stale { pid, why, .. } => Err(CliError {
            message: format!(
                "the local Fluvio server (pid {pid}) {why}; `fluvio cluster start` cleans up and starts a new one"
            ),
            code: crate::error::EXIT_NO_SERVER,
        }),
        LocalServer::None => Err(CliError {
            message: "no local Fluvio server is running; start one with `fluvio cluster start`".into(),
            code: crate::error::EXIT_NO_SERVER,
        }),
    }
}

/// A few lines on what the cluster holds and how far behind its readers
/// are: the numbers `/metrics` gives Prometheus, for a person. A part the
/// server does not answer is left out.
async fn summary(client: &fluvio_client::Fluvio) -> Vec<String> {
    let mut lines = Vec::new();
    if let Ok(servers) = client.list_servers().await {
        let addresses: Vec<&str> = servers.iter().map(|server| server.address.as_str()).collect();
        lines.push(format!("servers: {} ({})", servers.len(), addresses.join(", ")));
    }
    let topics = client.list_topics().await.unwrap_or_default();
    let partitions: usize = topics.iter().map(|topic| topic.next_offsets.len()).sum();
    let appended: i64 = topics.iter().flat_map(|topic| topic.next_offsets.iter()).sum();
    lines.push(format!(
        "topics: {} ({partitions} {}), {appended} records appended",
        topics.len(),
        if partitions == 1 { "partition" } else { "partitions" }
    ));
    if let Ok(offsets) = client.list_consumers().await {
        let end = |topic: &str, partition: u32| {
            topics.iter().find(|t| t.name == topic).and_then(|t| t.next_offsets.get(partition as usize)).copied()
        };
        let ids: std::collections::BTreeSet<&str> = offsets.iter().map(|offset| offset.consumer.as_str()).collect();
        let laggiest = offsets
            .iter()
            .filter_map(|offset| Some((end(&offset.topic, offset.partition)? - offset.offset, offset)))
            .max_by_key(|(lag, _)| *lag);
        let mut line = format!("consumers: {} ids", ids.len());
        if let Some((lag, offset)) = laggiest {
            line +=
                &format!(", largest lag {} ({} on {}/{})", lag.max(0), offset.consumer, offset.topic, offset.partition);
        }
        lines.push(line);
    }
    if let Ok(derived) = client.list_derived_topics().await
        && !derived.is_empty()
    {
        let pipelines = derived.iter().flat_map(|topic| topic.pipelines.iter());
        let lag: i64 = pipelines.clone().map(|p| (p.source_end - p.source_offset).max(0)).sum();
        let failed = pipelines
            .filter(|p| matches!(p.state, fluvio_client::protocol::requests::PipelineState::Failed { .. }))
            .count();
        lines.push(format!("derived topics: {}, lag {lag} records, {failed} pipelines failed", derived.len()));
    }
    if let Ok(connectors) = client.list_connectors().await
        && !connectors.is_empty()
    {
        let running = connectors.iter().filter(|connector| connector.status == "running").count();
        let restarts: u32 = connectors.iter().map(|connector| connector.restarts).sum();
        lines.push(format!("connectors: {running} running of {}, {restarts} restarts", connectors.len()));
    }
    if let Ok(modules) = client.list_smartmodules().await {
        lines.push(format!("smartmodules: {} registered", modules.len()));
    }
    lines
}
