//! Connectors the cluster runs and supervises.
//!
//! Each connector runs as its own `fluvio-connector` process, so a crash in
//! a connector (or in the system it talks to) never takes the server down.
//! The server keeps each connector's config, secrets and log under
//! `<data-dir>/connectors/<name>/`, restarts a process that stops on its own
//! with backoff (1 s doubling to 60 s, back to 1 s after a minute of
//! running), and starts every connector again when the server starts.
//!
//! This module knows nothing of connector configs: `fluvio-connector
//! --describe` checks a config and names it, so the connector program stays
//! the one authority on its format.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fluvio_protocol::ConnectorInfo;
use fluvio_protocol::requests::CreateConnectorRequest;
use fluvio_protocol::secrets_file;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::storage::{NameError, validate_name};

const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A process that ran this long is healthy: its next restart waits the
/// shortest time again.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How long a connector gets to finish its work after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// A log larger than this is moved to `connector.log.1` at the next start.
const LOG_ROTATE_BYTES: u64 = 8 << 20;
/// Most log bytes one read returns.
const LOG_READ_BYTES: u64 = 1 << 20;
const CONFIG_FILE: &str = "config.yaml";
const SECRETS_FILE: &str = "secrets";
const DESCRIPTION_FILE: &str = "connector.json";
const LOG_FILE: &str = "connector.log";
const PID_FILE: &str = "pid";
const METRICS_FILE: &str = "metrics.json";

/// Why a connector request failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// A connector with that name exists.
    #[error("a connector named {0:?} exists; delete it first or pick another meta.name")]
    Exists(String),
    /// No connector with that name.
    #[error("no connector named {0:?}; `fluvio connector list` shows them")]
    NotFound(String),
    /// The connector program refused the config.
    #[error("the connector config was refused: {0}")]
    Invalid(String),
    /// The connector's name cannot be a directory name.
    #[error("connector name: {0}")]
    Name(#[from] NameError),
    /// The connector program could not be run.
    #[error(
        "cannot run the connector program {}: {source}; build it with `cargo build --release -p fluvio-connector` \
         or point FLUVIO_CONNECTOR_BIN at it",
        program.display()
    )]
    Program {
        /// The program.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A connector's files could not be read or written.
    #[error("connector files in {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ConnectorError + '_ {
    move |source| ConnectorError::Io { path: path.to_path_buf(), source }
}

/// What `fluvio-connector --describe` says of a config.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Description {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    topic: String,
}

/// What a supervised connector is doing.
#[derive(Debug, Clone)]
enum Status {
    Starting,
    Running,
    Restarting { after: String, at: Instant },
    Stopped,
}

#[derive(Debug)]
struct State {
    status: Status,
    pid: Option<u32>,
    restarts: u32,
}

struct Supervised {
    description: Description,
    state: Arc<Mutex<State>>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// How the server's connectors reach it: its address, and the
/// environment that gives them a token and the server's certificate.
#[derive(Debug, Clone, Default)]
pub struct ClusterAccess {
    /// `host:port`, on loopback.
    pub addr: String,
    /// Variables set for every connector process.
    pub env: Vec<(String, String)>,
}

/// The only variables of the server's environment a connector process
/// gets (then [`ClusterAccess::env`] and its state directory): a connector
/// config is the user's, and must not reach what the server's environment
/// holds (cloud credentials, say) through a secret or a header.
pub const CONNECTOR_ENVIRONMENT: [&str; 10] = [
    "PATH",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NO_COLOR",
];

/// The variable that hands connector programs the hosts and networks they
/// may reach (`fluvio-connector`'s `egress` module reads it).
pub const EGRESS_ENV: &str = "FLUVIO_CONNECTOR_EGRESS";

/// Gives `command` only the allow-listed variables of the server's
/// environment, and takes secrets from the secrets file alone.
fn sandbox(command: &mut tokio::process::Command) {
    command.env_clear();
    for name in CONNECTOR_ENVIRONMENT {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.arg("--cluster-run");
}

/// The counters a connector process writes to its metrics file every few
/// seconds.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReportedMetrics {
    /// Records read from the other system (sources) or the topic (sinks).
    #[serde(default)]
    pub records_in: u64,
    /// Records delivered.
    #[serde(default)]
    pub records_out: u64,
    /// Records that failed.
    #[serde(default)]
    pub failed: u64,
    /// Sinks: records stored but not yet written; -1 when unknown.
    #[serde(default)]
    pub lag: i64,
}

/// The connectors of one server.
pub struct Connectors {
    dir: PathBuf,
    program: PathBuf,
    cluster: Mutex<Option<ClusterAccess>>,
    supervised: tokio::sync::Mutex<BTreeMap<String, Supervised>>,
}

impl Connectors {
    /// Opens `dir`, dropping half-created connectors and stopping processes
    /// a previous server left running (it was killed before it could stop
    /// them). Connectors start with [`Connectors::start`].
    pub fn open(dir: &Path, program: PathBuf) -> Result<Connectors, ConnectorError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let mut supervised = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
            let entry = entry.map_err(io_error(dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            if !path.is_dir() {
                continue;
            }
            stop_leftover_process(&path);
            // One broken connector directory must not stop the server.
            let description = match std::fs::read(path.join(DESCRIPTION_FILE))
                .map_err(|e| e.to_string())
                .and_then(|bytes| serde_json::from_slice::<Description>(&bytes).map_err(|e| e.to_string()))
            {
                Ok(description) => description,
                Err(error) => {
                    tracing::error!(connector = %name, %error, "cannot read the connector's description; not starting it");
                    continue;
                }
            };
            supervised.insert(name, Supervised::new(description));
        }
        Ok(Connectors {
            dir: dir.to_path_buf(),
            program,
            cluster: Mutex::new(None),
            supervised: tokio::sync::Mutex::new(supervised),
        })
    }

    /// Starts supervising every connector; they connect as `cluster` says.
    pub async fn start(&self, cluster: ClusterAccess) {
        *self.cluster.lock() = Some(cluster);
        let mut supervised = self.supervised.lock().await;
        for (name, connector) in supervised.iter_mut() {
            if connector.task.is_none() {
                tracing::info!(connector = %name, "starting");
                connector.task = Some(self.spawn_supervisor(name, connector));
            }
        }
    }

    fn spawn_supervisor(&self, name: &str, connector: &Supervised) -> tokio::task::JoinHandle<()> {
        let cluster = self.cluster.lock().clone().unwrap_or_default();
        tokio::spawn(supervise(
            self.program.clone(),
            self.dir.join(name),
            cluster,
            Arc::clone(&connector.state),
            connector.stop.subscribe(),
        ))
    }

    /// Checks a connector's config with the connector program, stores it
    /// with its secrets, and starts it (if the server is running).
    pub async fn create(&self, request: CreateConnectorRequest) -> Result<ConnectorInfo, ConnectorError> {
        static PENDING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let pending = self.dir.join(format!(
            ".pending-{}-{}",
            std::process::id(),
            PENDING.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let result = self.create_from(&pending, request).await;
        if pending.exists() {
            let _ = std::fs::remove_dir_all(&pending);
        }
        result
    }

    async fn create_from(
        &self,
        pending: &Path,
        request: CreateConnectorRequest,
    ) -> Result<ConnectorInfo, ConnectorError> {
        std::fs::create_dir_all(pending).map_err(io_error(pending))?;
        let config = pending.join(CONFIG_FILE);
        std::fs::write(&config, request.config.as_bytes()).map_err(io_error(&config))?;
        write_secrets(&pending.join(SECRETS_FILE), &request.secrets)?;
        let description = self.describe(pending).await?;
        validate_name(&description.name)?;
        let description_file = pending.join(DESCRIPTION_FILE);
        let json = serde_json::to_vec(&description).expect("a description serializes");
        fluvio_fs::write_atomic(&description_file, &json).map_err(io_error(&description_file))?;

        let mut supervised = self.supervised.lock().await;
        let home = self.dir.join(&description.name);
        if supervised.contains_key(&description.name) || home.exists() {
            return Err(ConnectorError::Exists(description.name));
        }
        std::fs::rename(pending, &home).map_err(io_error(&home))?;
        fluvio_fs::sync_dir(&self.dir).map_err(io_error(&self.dir))?;
        let name = description.name.clone();
        let mut connector = Supervised::new(description);
        if self.cluster.lock().is_some() {
            connector.task = Some(self.spawn_supervisor(&name, &connector));
        }
        let info = connector.info(&name);
        supervised.insert(name.clone(), connector);
        tracing::info!(connector = %name, "created");
        Ok(info)
    }

    /// Runs `fluvio-connector --describe` on a stored config.
    async fn describe(&self, dir: &Path) -> Result<Description, ConnectorError> {
        let mut command = tokio::process::Command::new(&self.program);
        sandbox(&mut command);
        // The config is checked as it will run: with the egress list too.
        let cluster = self.cluster.lock().clone().unwrap_or_default();
        command.envs(cluster.env.iter().filter(|(name, _)| name == EGRESS_ENV).map(|(name, value)| (name, value)));
        command
            .arg("--describe")
            .arg("--config")
            .arg(dir.join(CONFIG_FILE))
            .arg("--secrets")
            .arg(dir.join(SECRETS_FILE))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let program_error = |source| ConnectorError::Program { program: self.program.clone(), source };
        let output = tokio::time::timeout(Duration::from_secs(30), command.output())
            .await
            .map_err(|_| program_error(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 30 s")))?
            .map_err(program_error)?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let reason = stderr.lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join("; ");
            let reason = reason.strip_prefix("error: ").unwrap_or(&reason).to_string();
            return Err(ConnectorError::Invalid(if reason.is_empty() {
                format!("the connector program exited with {}", output.status)
            } else {
                reason
            }));
        }
        serde_json::from_slice(&output.stdout).map_err(|e| {
            program_error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("unexpected --describe output: {e}"),
            ))
        })
    }

    /// The connectors and what each is doing.
    pub async fn list(&self) -> Vec<ConnectorInfo> {
        self.supervised.lock().await.iter().map(|(name, connector)| connector.info(name)).collect()
    }

    /// Each connector's state and the counters its process last wrote
    /// (`None` before it wrote any).
    pub async fn metrics(&self) -> Vec<(ConnectorInfo, Option<ReportedMetrics>)> {
        let infos = self.list().await;
        infos
            .into_iter()
            .map(|info| {
                let file = self.dir.join(&info.name).join(METRICS_FILE);
                let reported = std::fs::read(&file).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok());
                (info, reported)
            })
            .collect()
    }

    /// Stops a connector (SIGTERM, so it finishes the work in hand) and
    /// deletes its files.
    pub async fn delete(&self, name: &str) -> Result<(), ConnectorError> {
        let connector = self.supervised.lock().await.remove(name);
        let Some(mut connector) = connector else {
            return Err(ConnectorError::NotFound(name.to_string()));
        };
        connector.stop_and_wait().await;
        let home = self.dir.join(name);
        std::fs::remove_dir_all(&home).map_err(io_error(&home))?;
        tracing::info!(connector = %name, "deleted");
        Ok(())
    }

    /// Up to 1 MiB of a connector's log from `offset`, and the offset after
    /// it. An offset past the end (the log was rotated) reads from the start.
    pub async fn logs(&self, name: &str, offset: u64) -> Result<(Vec<u8>, u64), ConnectorError> {
        if !self.supervised.lock().await.contains_key(name) {
            return Err(ConnectorError::NotFound(name.to_string()));
        }
        let path = self.dir.join(name).join(LOG_FILE);
        let reading = path.clone();
        // A read that panicked (or was cancelled at shutdown) is this
        // request's failure, not the server's.
        tokio::task::spawn_blocking(move || read_log(&reading, offset))
            .await
            .unwrap_or_else(|error| Err(ConnectorError::Io { path, source: std::io::Error::other(error.to_string()) }))
    }

    /// The last `bytes` of a connector's log (from a line's start).
    pub async fn log_tail(&self, name: &str, bytes: u64) -> Result<Vec<u8>, ConnectorError> {
        if !self.supervised.lock().await.contains_key(name) {
            return Err(ConnectorError::NotFound(name.to_string()));
        }
        let path = self.dir.join(name).join(LOG_FILE);
        let size = match std::fs::metadata(&path) {
            Ok(metadata) => metadata.len(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io_error(&path)(error)),
        };
        let (mut text, _) = self.logs(name, size.saturating_sub(bytes)).await?;
        if size > bytes
            && let Some(newline) = text.iter().position(|&byte| byte == b'\n')
        {
            text.drain(..=newline);
        }
        Ok(text)
    }

    /// Stops every connector cleanly (for a server shutdown); they start
    /// again with the server.
    pub async fn stop_all(&self) {
        let mut supervised = self.supervised.lock().await;
        let stops = supervised.values_mut().map(|connector| connector.stop_and_wait());
        futures::future::join_all(stops).await;
    }

    /// Stops supervising at once; each process gets SIGKILL (the server's
    /// run future was dropped, as tests do).
    pub fn abort_all(&self) {
        if let Ok(mut supervised) = self.supervised.try_lock() {
            for connector in supervised.values_mut() {
                if let Some(task) = connector.task.take() {
                    task.abort();
                }
            }
        }
    }
}

impl Supervised {
    fn new(description: Description) -> Supervised {
        Supervised {
            description,
            state: Arc::new(Mutex::new(State { status: Status::Starting, pid: None, restarts: 0 })),
            stop: watch::channel(false).0,
            task: None,
        }
    }

    fn info(&self, name: &str) -> ConnectorInfo {
        let state = self.state.lock();
        let status = match &state.status {
            Status::Starting => "starting".to_string(),
            Status::Running => "running".to_string(),
            Status::Restarting { after, at } => {
                let left = at.saturating_duration_since(Instant::now());
                format!("restarting in {}s ({after})", left.as_secs_f64().ceil() as u64)
            }
            Status::Stopped => "stopped".to_string(),
        };
        ConnectorInfo {
            name: name.to_string(),
            kind: self.description.kind.clone(),
            topic: self.description.topic.clone(),
            status,
            pid: state.pid,
            restarts: state.restarts,
        }
    }

    async fn stop_and_wait(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(STOP_GRACE + Duration::from_secs(5), task).await;
        }
    }
}

/// Secrets are stored readable by the server's user only, one `NAME=value`
/// per line, which is what `fluvio-connector --secrets` reads.
fn write_secrets(path: &Path, secrets: &[(String, String)]) -> Result<(), ConnectorError> {
    let text = secrets_file::render(secrets).map_err(|error| ConnectorError::Invalid(error.to_string()))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error(path))?;
    file.write_all(text.as_bytes()).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

fn read_log(path: &Path, offset: u64) -> Result<(Vec<u8>, u64), ConnectorError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(error) => return Err(io_error(path)(error)),
    };
    let len = file.metadata().map_err(io_error(path))?.len();
    let offset = if offset > len { 0 } else { offset };
    file.seek(SeekFrom::Start(offset)).map_err(io_error(path))?;
    let mut text = Vec::new();
    file.take(LOG_READ_BYTES).read_to_end(&mut text).map_err(io_error(path))?;
    let next = offset + text.len() as u64;
    Ok((text, next))
}

/// A line from the supervisor in the connector's log.
fn log_line(log: &mut std::fs::File, line: &str) {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let _ = writeln!(log, "[supervisor, unix time {seconds}] {line}");
}

fn open_log(dir: &Path) -> std::io::Result<std::fs::File> {
    let path = dir.join(LOG_FILE);
    if std::fs::metadata(&path).map(|m| m.len() > LOG_ROTATE_BYTES).unwrap_or(false) {
        let _ = std::fs::rename(&path, dir.join(format!("{LOG_FILE}.1")));
    }
    // A connector may log what it was told; only the server's user reads it.
    let log = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&path)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(log)
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(2), _) => "exit status 2: the config was refused; see the log".to_string(),
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "stopped".to_string(),
    }
}

/// Runs one connector process after another until told to stop.
async fn supervise(
    program: PathBuf,
    dir: PathBuf,
    cluster: ClusterAccess,
    state: Arc<Mutex<State>>,
    mut stop: watch::Receiver<bool>,
) {
    let set = |status: Status, pid: Option<u32>| {
        let mut state = state.lock();
        state.status = status;
        state.pid = pid;
    };
    let mut backoff = MIN_BACKOFF;
    loop {
        if *stop.borrow() {
            break;
        }
        let mut log = match open_log(&dir) {
            Ok(log) => log,
            Err(error) => {
                tracing::error!(dir = %dir.display(), %error, "cannot open the connector's log");
                set(
                    Status::Restarting { after: format!("cannot open its log: {error}"), at: Instant::now() + backoff },
                    None,
                );
                if !wait_or_stop(&mut stop, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        log_line(&mut log, &format!("starting {}", program.display()));
        let spawned = log.try_clone().and_then(|stdout| {
            let stderr = log.try_clone()?;
            let mut command = tokio::process::Command::new(&program);
            // Credentials come from the server alone, never from whatever
            // the server's own environment held.
            sandbox(&mut command);
            command.envs(cluster.env.iter().map(|(name, value)| (name, value)));
            command
                .arg("--config")
                .arg(dir.join(CONFIG_FILE))
                .arg("--secrets")
                .arg(dir.join(SECRETS_FILE))
                .arg("--addr")
                .arg(&cluster.addr)
                .arg("--metrics-file")
                .arg(dir.join(METRICS_FILE))
                // Connectors that keep state of their own (http-sink's
                // offsets) keep it here, with the rest of the connector.
                .env("FLUVIO_CONNECTOR_STATE_DIR", &dir)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .kill_on_drop(true)
                .spawn()
        });
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) => {
                log_line(&mut log, &format!("cannot start {}: {error}", program.display()));
                set(Status::Restarting { after: format!("cannot start: {error}"), at: Instant::now() + backoff }, None);
                if !wait_or_stop(&mut stop, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let pid = child.id();
        if let Some(pid) = pid {
            let _ = std::fs::write(dir.join(PID_FILE), pid.to_string());
        }
        set(Status::Running, pid);
        let started = Instant::now();
        let exit = tokio::select! {
            exit = child.wait() => Some(exit),
            _ = stop.wait_for(|stop| *stop) => None,
        };
        let _ = std::fs::remove_file(dir.join(PID_FILE));
        let Some(exit) = exit else {
            terminate(&mut child).await;
            let _ = std::fs::remove_file(dir.join(PID_FILE));
            log_line(&mut log, "stopped");
            break;
        };
        let reason = match exit {
            Ok(status) => describe_exit(status),
            Err(error) => format!("lost track of the process: {error}"),
        };
        if started.elapsed() >= HEALTHY_RUN {
            backoff = MIN_BACKOFF;
        }
        log_line(&mut log, &format!("the connector stopped ({reason}); restarting in {}s", backoff.as_secs()));
        tracing::warn!(connector = %dir.display(), %reason, "connector stopped; restarting");
        {
            let mut state = state.lock();
            state.restarts += 1;
            state.status = Status::Restarting { after: reason, at: Instant::now() + backoff };
            state.pid = None;
        }
        if !wait_or_stop(&mut stop, backoff).await {
            break;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    set(Status::Stopped, None);
}

/// Sleeps `wait`; `false` when told to stop first.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = stop.wait_for(|stop| *stop) => false,
    }
}

/// SIGTERM, so the connector finishes its work in hand; SIGKILL after the
/// grace period.
async fn terminate(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        signal(pid, libc::SIGTERM);
    }
    if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) with a pid this server started (or recorded) and a
    // valid signal number; it touches no memory of ours.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// A previous server killed with SIGKILL leaves its connector processes
/// behind; stop the one recorded in `dir` (if it is still that connector)
/// before starting a new one, so a connector never runs twice.
fn stop_leftover_process(dir: &Path) {
    let Ok(pid) = std::fs::read_to_string(dir.join(PID_FILE)) else { return };
    let _ = std::fs::remove_file(dir.join(PID_FILE));
    let Ok(pid) = pid.trim().parse::<u32>() else { return };
    let is_ours = |pid: u32| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|cmdline| {
                let cmdline = String::from_utf8_lossy(&cmdline);
                cmdline.contains("fluvio-connector") && cmdline.contains(&*dir.join(CONFIG_FILE).to_string_lossy())
            })
            .unwrap_or(false)
    };
    if !is_ours(pid) {
        return;
    }
    tracing::warn!(pid, dir = %dir.display(), "stopping a connector process a previous server left running");
    signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while is_ours(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if is_ours(pid) {
        signal(pid, libc::SIGKILL);
    }
}
